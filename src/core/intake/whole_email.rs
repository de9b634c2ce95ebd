//! The whole email, not only the form. Several boards' forms have no row for the other party's email
//! address, so people put it where they can: under "copied to", in the email's own Cc, or beside the
//! person's name in a sentence. Where the form gives none, [`complete_other_email`] looks in that order:
//! the "copied to" lines, then the email's To and Cc, then an address beside their name in the text.
//! Pure: the record, the text and the envelope's addresses in; the record completed.

use super::find_emails;
use crate::core::case::Record;

/// The addresses on the email's envelope that are not the board's or the sender's own.
#[derive(Debug, Clone, Default)]
pub struct Envelope<'a> {
    /// The sender's address.
    pub from: &'a str,
    /// The To and Cc addresses.
    pub copied: &'a [String],
    /// Addresses that are never a party: the board's mailbox and role addresses.
    pub board: &'a [String],
}

/// The lower-cased words of a person's name that can show in their address: "Dr Amara Okafor" gives
/// "amara" and "okafor" (titles and initials dropped).
fn name_words(name: &str) -> Vec<String> {
    const TITLES: &[&str] = &[
        "dr", "mr", "mrs", "ms", "miss", "mx", "prof", "sister", "nurse", "pc", "ds", "dc", "sgt",
    ];
    name.split(|c: char| !c.is_alphabetic() && c != '\'')
        .map(|w| w.to_lowercase().replace('\'', ""))
        .filter(|w| w.chars().count() >= 2 && !TITLES.contains(&w.as_str()))
        .collect()
}

/// The letters of an address's local part, lower-cased: "kelly.dunne2@…" is "kellydunne".
pub fn local_letters(address: &str) -> String {
    address
        .split('@')
        .next()
        .unwrap_or_default()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect()
}

/// Whether `address` reads as belonging to someone called `name`: its local part holds their surname,
/// or their first name with the surname's initial ("kelly.dunne", "kdunne", "dunnek", "kelly.d").
pub fn address_fits_name(address: &str, name: &str) -> bool {
    let local = address.split('@').next().unwrap_or_default().to_lowercase();
    // The local part's words: "kelly.dunne2" is "kelly", "dunne".
    let parts: Vec<&str> = local
        .split(|c: char| !c.is_alphabetic())
        .filter(|p| !p.is_empty())
        .collect();
    let joined: String = parts.concat();
    let words = name_words(name);
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return false;
    };
    if last.chars().count() < 2 {
        return false;
    }
    let initial = first.chars().next().map(String::from).unwrap_or_default();
    let last_initial = last.chars().next().map(String::from).unwrap_or_default();
    parts.contains(&last.as_str())
        || joined == format!("{first}{last}")
        || joined == format!("{initial}{last}")
        || joined == format!("{last}{initial}")
        || joined == format!("{first}{last_initial}")
        || (words.len() >= 2 && parts.first() == Some(&first.as_str()) && parts.get(1) == Some(&last_initial.as_str()))
}

/// Whether `address` is one a record can give for the other party: not the sender's, not the
/// escalating person's, not the board's.
fn is_candidate(record: &Record, envelope: &Envelope<'_>, address: &str) -> bool {
    let same = |a: &str| a.eq_ignore_ascii_case(address);
    !same(envelope.from)
        && !record.escalating_email.as_deref().is_some_and(same)
        && !envelope.board.iter().any(|b| same(b))
}

/// Fill in the other party's email address from the rest of the email where the form gave none.
pub fn complete_other_email(record: &mut Record, text: &str, envelope: &Envelope<'_>) {
    if record.get("other_email").is_some() {
        return;
    }
    let name = record.get("other_name").unwrap_or_default();
    let named = !name_words(&name).is_empty();
    // 1. "Copied to: Mark Ellison (mark.ellison@…)": an address there that fits their name, or the only
    //    address there when their name is not known or fits none.
    if let Some(copied) = record.get("copied_to") {
        let found: Vec<String> = find_emails(&copied)
            .into_iter()
            .filter(|a| is_candidate(record, envelope, a))
            .collect();
        // Their name known, only an address that fits it ("copied to: my manager Jane Smith" is not them);
        // not known, the only address there.
        let pick = if named {
            found.iter().find(|a| address_fits_name(a, &name))
        } else {
            (found.len() == 1).then(|| &found[0])
        };
        if let Some(a) = pick {
            record.other_email = Some(a.to_lowercase());
            return;
        }
    }
    // 2. The email's own To and Cc: the address that fits the person named as the other party.
    if named {
        if let Some(a) = envelope
            .copied
            .iter()
            .find(|a| is_candidate(record, envelope, a) && address_fits_name(a, &name))
        {
            record.other_email = Some(a.to_lowercase());
            return;
        }
    }
    // 3. An address beside their name in the text ("Kelly Dunne (kelly.dunne@trafford.gov.uk)"): on the
    //    line that names them, the address that fits the name.
    if named {
        let last = name_words(&name).pop().unwrap_or_default();
        for line in text.lines().filter(|l| l.to_lowercase().contains(&last)) {
            if let Some(a) = find_emails(line)
                .into_iter()
                .find(|a| is_candidate(record, envelope, a) && address_fits_name(a, &name))
            {
                record.other_email = Some(a.to_lowercase());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> Record {
        Record {
            other_name: Some(name.into()),
            escalating_email: Some("nia.nurse@nhs.net".into()),
            ..Record::default()
        }
    }

    #[test]
    fn addresses_fit_names_as_people_make_them() {
        assert!(address_fits_name("kelly.dunne@trafford.gov.uk", "Kelly Dunne"));
        assert!(address_fits_name("kdunne@trafford.gov.uk", "Kelly Dunne"));
        assert!(address_fits_name("amara.okafor@nhs.net", "Dr Amara Okafor"));
        assert!(!address_fits_name("sam.social@westshire.gov.uk", "Kelly Dunne"));
        assert!(!address_fits_name("team@x.gov.uk", ""));
        assert!(!address_fits_name("alison.smith@nhs.net", "Ali Khan"));
        assert!(address_fits_name("kelly.d@trafford.gov.uk", "Kelly Dunne"));
    }

    #[test]
    fn copied_to_then_cc_then_text() {
        let env = Envelope {
            from: "nia.nurse@nhs.net",
            copied: &[
                "escalations@board.gov.uk".to_string(),
                "mark.ellison@rotherham.gov.uk".to_string(),
            ],
            board: &["escalations@board.gov.uk".to_string()],
        };
        let mut r = record("Mark Ellison");
        r.copied_to = Some("Mark Ellison, Team Manager (mark.ellison@rotherham.gov.uk)".into());
        complete_other_email(&mut r, "", &Envelope::default());
        assert_eq!(r.other_email.as_deref(), Some("mark.ellison@rotherham.gov.uk"));

        let mut r = record("Mark Ellison");
        complete_other_email(&mut r, "", &env);
        assert_eq!(r.other_email.as_deref(), Some("mark.ellison@rotherham.gov.uk"));

        let mut r = record("Kelly Dunne");
        let text = "I disagree with Kelly Dunne, Team Manager (kelly.dunne@trafford.gov.uk), about this.";
        complete_other_email(&mut r, text, &env);
        assert_eq!(r.other_email.as_deref(), Some("kelly.dunne@trafford.gov.uk"));
    }

    #[test]
    fn the_senders_and_the_boards_addresses_are_never_the_other_party() {
        let env = Envelope {
            from: "nia.nurse@nhs.net",
            copied: &["nia.nurse@nhs.net".to_string()],
            board: &[],
        };
        let mut r = record("Nia Nurse");
        complete_other_email(&mut r, "Nia Nurse nia.nurse@nhs.net", &env);
        assert_eq!(r.other_email, None);
    }
}
