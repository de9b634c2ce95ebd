//! Signed Message-IDs: every email the bot sends carries a Message-ID naming the case and signed with the
//! bot's secret (HMAC-SHA256) over the board, the case and a nonce unique to the email, so that a reply's
//! In-Reply-To/References proves it answers the bot's own email about that case *on that board*: an id
//! signed for one board does not verify on another. Which recipients an id was sent to is not in the id;
//! the pipeline checks that against the outbox row that carries it (see ARCHITECTURE.md, "Trust model").
//! A case reference quoted in a subject proves nothing by itself.

use sha2::{Digest, Sha256};

/// Makes and checks signed Message-IDs.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    board: String,
    domain: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &"<hidden>")
            .field("board", &self.board)
            .field("domain", &self.domain)
            .finish()
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key)); // byte-slice: a fixed 64-byte block
    } else {
        k[..key.len()].copy_from_slice(key); // byte-slice: the key is at most 64 bytes here
    }
    let mut inner = Sha256::new();
    inner.update(k.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two signatures are equal, in time that does not depend on where they differ.
fn same_signature(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Signer {
    /// A signer for `board`'s emails, whose Message-IDs end `@domain`.
    pub fn new(key: impl Into<Vec<u8>>, board: impl Into<String>, domain: impl Into<String>) -> Self {
        Signer {
            key: key.into(),
            board: board.into(),
            domain: domain.into(),
        }
    }

    fn signature(&self, reference: &str, nonce: &str) -> String {
        let mac = hmac_sha256(&self.key, format!("{}.{reference}.{nonce}", self.board).as_bytes());
        hex(mac.get(..10).unwrap_or_default())
    }

    /// `esc.REFERENCE.NONCE.SIGNATURE@DOMAIN` (no angle brackets). `nonce` makes it unique: derive it from
    /// what the email is (event, recipient), so that the same email queued twice has the same id.
    pub fn message_id(&self, reference: &str, nonce: &str) -> String {
        let nonce: String = nonce
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        format!(
            "esc.{reference}.{nonce}.{}@{}",
            self.signature(reference, &nonce),
            self.domain
        )
    }

    /// The Message-ID of `recipient`'s own copy of the email whose Message-ID is `message_id` (one of ours):
    /// the same case and board, a nonce that also names the recipient. Each recipient of an email gets a
    /// copy with an id of its own, so that a reply proves which recipient wrote it (see the pipeline's
    /// `proof`): one recipient cannot answer as another.
    pub fn for_recipient(&self, message_id: &str, recipient: &str) -> Option<String> {
        let id = message_id.trim().trim_matches(['<', '>']);
        let reference = self.verify(id)?;
        let (local, _) = id.rsplit_once('@')?;
        let (rest, _) = local.rsplit_once('.')?;
        let (_, nonce) = rest.rsplit_once('.')?;
        let who = hmac_sha256(
            &self.key,
            format!("recipient.{}", recipient.trim().to_ascii_lowercase()).as_bytes(),
        );
        Some(self.message_id(
            &reference,
            &format!("{nonce}-r{}", hex(who.get(..5).unwrap_or_default())),
        ))
    }

    /// The signature of a plus-address token: lower case, because some servers lower-case local parts.
    fn address_signature(&self, reference: &str) -> String {
        let mac = hmac_sha256(
            &self.key,
            format!("reply-to.{}.{}", self.board, reference.to_ascii_lowercase()).as_bytes(),
        );
        hex(mac.get(..8).unwrap_or_default())
    }

    /// `mailbox` with a signed token for `reference` as its plus part: `local+ref.sig@domain`.
    pub fn reply_address(&self, mailbox: &str, reference: &str) -> String {
        match mailbox.rsplit_once('@') {
            Some((local, domain)) => format!(
                "{local}+{}.{}@{domain}",
                reference.to_ascii_lowercase(),
                self.address_signature(reference)
            ),
            None => mailbox.to_string(),
        }
    }

    /// The case reference (upper case) a plus address of `mailbox` carries, if its token's signature is right.
    pub fn verify_address(&self, mailbox: &str, address: &str) -> Option<String> {
        let (local, domain) = mailbox.rsplit_once('@')?;
        let (a_local, a_domain) = address.trim().trim_matches(['<', '>']).rsplit_once('@')?;
        if !a_domain.eq_ignore_ascii_case(domain) {
            return None;
        }
        let token = a_local
            .get(..local.len())
            .filter(|l| l.eq_ignore_ascii_case(local))
            .and_then(|_| a_local.get(local.len()..))?
            .strip_prefix('+')?;
        let (reference, sig) = token.rsplit_once('.')?;
        let expected = self.address_signature(reference);
        same_signature(&expected, &sig.to_ascii_lowercase()).then(|| reference.to_ascii_uppercase())
    }

    /// The case reference a Message-ID of ours names, if its signature is right.
    pub fn verify(&self, id: &str) -> Option<String> {
        let id = id.trim().trim_matches(['<', '>']);
        let (local, _domain) = id.rsplit_once('@')?;
        let rest = local.strip_prefix("esc.")?;
        let (rest, sig) = rest.rsplit_once('.')?;
        let (reference, nonce) = rest.rsplit_once('.')?;
        same_signature(&self.signature(reference, nonce), sig).then(|| reference.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signed_ids_verify_and_forgeries_do_not() {
        let s = Signer::new(b"secret".to_vec(), "bradford", "bot.example");
        let id = s.message_id("BRAD-2027-0042", "ack-1");
        assert_eq!(s.verify(&format!("<{id}>")).as_deref(), Some("BRAD-2027-0042"));
        let forged = id.replace("BRAD-2027-0042", "BRAD-2027-0043");
        assert_eq!(s.verify(&forged), None);
        assert_eq!(
            Signer::new(b"other".to_vec(), "bradford", "bot.example").verify(&id),
            None
        );
        assert_eq!(s.verify("random@nhs.net"), None);
        // Each recipient's copy has an id of its own, which verifies for the same case.
        let nia = s.for_recipient(&id, "nia@nhs.net").expect("ours");
        let sam = s.for_recipient(&id, "SAM@x.gov.uk").expect("ours");
        assert_ne!(nia, sam);
        assert_eq!(s.for_recipient(&id, "sam@x.gov.uk").as_deref(), Some(sam.as_str()));
        assert_eq!(s.verify(&nia).as_deref(), Some("BRAD-2027-0042"));
        assert_eq!(s.for_recipient("random@nhs.net", "nia@nhs.net"), None);
        // The same id does not verify for another board, even with the same key and domain.
        assert_eq!(
            Signer::new(b"secret".to_vec(), "trafford", "bot.example").verify(&id),
            None
        );
    }

    #[test]
    fn plus_address_tokens_verify_and_forgeries_do_not() {
        let s = Signer::new(b"secret".to_vec(), "bradford", "bot.example");
        let mailbox = "escalations@bsab.example";
        let a = s.reply_address(mailbox, "BRAD-2027-0042");
        assert!(a.starts_with("escalations+brad-2027-0042."), "{a}");
        assert!(a.ends_with("@bsab.example"));
        assert_eq!(s.verify_address(mailbox, &a).as_deref(), Some("BRAD-2027-0042"));
        // Servers and clients may change the case of an address.
        assert_eq!(
            s.verify_address(mailbox, &a.to_uppercase()).as_deref(),
            Some("BRAD-2027-0042")
        );
        assert_eq!(
            s.verify_address(mailbox, &format!("<{a}>")).as_deref(),
            Some("BRAD-2027-0042")
        );
        // Another case's reference with this signature, another key, another mailbox, no token: nothing.
        assert_eq!(s.verify_address(mailbox, &a.replace("0042", "0043")), None);
        assert_eq!(
            Signer::new(b"other".to_vec(), "bradford", "bot.example").verify_address(mailbox, &a),
            None
        );
        assert_eq!(s.verify_address("other@bsab.example", &a), None);
        assert_eq!(
            s.verify_address(mailbox, &a.replace("bsab.example", "evil.example")),
            None
        );
        assert_eq!(s.verify_address(mailbox, mailbox), None);
        assert_eq!(
            Signer::new(b"secret".to_vec(), "trafford", "bot.example").verify_address(mailbox, &a),
            None
        );
        assert_eq!(s.verify_address(mailbox, "escalations+@bsab.example"), None);
    }
}
