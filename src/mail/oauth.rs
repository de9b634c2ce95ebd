//! OAuth2 for mailboxes whose servers refuse passwords (Microsoft 365 / Exchange Online, NHSmail): the
//! client-credentials grant against the tenant's token endpoint, the token cached and renewed before it
//! expires, and the SASL XOAUTH2 initial response that IMAP (`mail::imap`) and SMTP (`mail::send`) log in
//! with. The settings (`[imap.oauth2]`, `[smtp.oauth2]`) are `config::OAuth2Settings`.
//!
//! A token is fetched with one small blocking HTTPS call (ureq) on the blocking pool. The client secret is
//! read from its file or variable at every fetch, so that a corrected secret is used without a restart.
//! When a server refuses a token (expired early, revoked), the caller drops it with
//! [`TokenSource::invalidate`] and the next connection fetches a new one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{OAuth2Settings, Secret};

/// Microsoft's identity platform, for a tenant (its domain or id).
pub fn default_token_url(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
}

/// The scope for IMAP, POP and SMTP AUTH with an application's own permissions in Exchange Online.
pub const DEFAULT_SCOPE: &str = "https://outlook.office365.com/.default";

/// Why no token could be had, in plain words for the log and `check-config --connect`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// A cached token.
#[derive(Clone)]
struct Cached {
    token: Secret,
    /// When to fetch a new one: before the token expires (at 80% of its life, and at least a minute early).
    renew_at: Instant,
}

/// Tokens for one app registration and scope: fetched when needed, cached until shortly before they expire.
/// Cloning shares the cache.
#[derive(Clone)]
pub struct TokenSource {
    settings: OAuth2Settings,
    cached: Arc<Mutex<Option<Cached>>>,
    /// Held while a token is being fetched, so that the watcher, the sender and retention asking at the
    /// same moment on a cold cache make one request between them, not one each.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSource({} for {})", self.settings.client_id, self.token_url())
    }
}

/// The process's token caches, one per app registration, endpoint and scope.
static SHARED: std::sync::OnceLock<Mutex<std::collections::HashMap<String, TokenSource>>> = std::sync::OnceLock::new();

impl TokenSource {
    pub fn new(settings: OAuth2Settings) -> TokenSource {
        TokenSource {
            settings,
            cached: Arc::new(Mutex::new(None)),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The process's token source for these settings: the mailbox's watcher, the sender and retention,
    /// when they log in as the same app with the same scope, share one token (one fetch, one renewal, one
    /// invalidation when a server refuses it).
    pub fn shared(settings: &OAuth2Settings) -> TokenSource {
        let fresh = TokenSource::new(settings.clone());
        let key = format!("{}\n{}\n{}", fresh.token_url(), settings.client_id, fresh.scope());
        let Ok(mut all) = SHARED.get_or_init(Default::default).lock() else {
            return fresh;
        };
        match all.get(&key) {
            // The same key with other settings (another secret file) is another registration's view: new.
            Some(existing) if existing.settings == *settings => existing.clone(),
            _ => {
                all.insert(key, fresh.clone());
                fresh
            }
        }
    }

    pub fn token_url(&self) -> String {
        self.settings
            .token_url
            .clone()
            .unwrap_or_else(|| default_token_url(&self.settings.tenant))
    }

    fn scope(&self) -> String {
        self.settings.scope.clone().unwrap_or_else(|| DEFAULT_SCOPE.to_string())
    }

    /// A token that is good for a while yet: the cached one, or a new one.
    pub async fn token(&self) -> Result<Secret, TokenError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        // One fetch at a time; whoever waited here finds the token the fetch before it cached.
        let _fetching = self.fetching.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let me = self.clone();
        let fetched = tokio::task::spawn_blocking(move || me.fetch())
            .await
            .map_err(|e| TokenError(format!("the token request failed: {e}")))??;
        if let Ok(mut slot) = self.cached.lock() {
            *slot = Some(fetched.clone());
        }
        Ok(fetched.token)
    }

    /// The cached token, if it is not yet due for renewal.
    fn fresh(&self) -> Option<Secret> {
        let cached = self.cached.lock().ok().and_then(|c| c.clone())?;
        (Instant::now() < cached.renew_at).then_some(cached.token)
    }

    /// A server refused `refused`: forget it, so that the next [`TokenSource::token`] fetches a new one.
    /// A token fetched since (another connection was refused first) is kept: it has not been refused.
    pub fn invalidate(&self, refused: &Secret) {
        if let Ok(mut slot) = self.cached.lock() {
            if slot.as_ref().is_some_and(|c| c.token == *refused) {
                *slot = None;
            }
        }
    }

    /// The client secret, read now from its file or variable.
    fn secret(&self) -> Result<String, TokenError> {
        if let Some(var) = &self.settings.client_secret_env {
            return match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                _ => Err(TokenError(format!(
                    "the client secret's variable {var} is not set (client_secret_env)"
                ))),
            };
        }
        if let Some(path) = &self.settings.client_secret_file {
            return match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                Ok(_) => Err(TokenError(format!(
                    "the client secret file {} is empty",
                    path.display()
                ))),
                Err(e) => Err(TokenError(format!(
                    "the client secret file {} cannot be read: {e}",
                    path.display()
                ))),
            };
        }
        Err(TokenError(
            "no client secret: give client_secret_file or client_secret_env".into(),
        ))
    }

    /// The client-credentials grant (RFC 6749 section 4.4), blocking: with the client secret, or with a
    /// client assertion signed by the app's certificate (RFC 7523).
    fn fetch(&self) -> Result<Cached, TokenError> {
        let url = self.token_url();
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        let scope = self.scope();
        let proof = match (
            &self.settings.client_certificate_file,
            &self.settings.client_private_key_file,
        ) {
            (Some(cert), Some(key)) => {
                let now = chrono::Utc::now().timestamp();
                let assertion =
                    client_assertion(&read_file(cert)?, &read_file(key)?, &self.settings.client_id, &url, now)?;
                vec![
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                    ),
                    ("client_assertion", assertion),
                ]
            }
            _ => vec![("client_secret", self.secret()?)],
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.settings.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        form.extend(proof.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let body = match agent.post(&url).send_form(&form) {
            Ok(r) => r
                .into_string()
                .map_err(|e| TokenError(format!("the token endpoint's answer could not be read: {e}")))?,
            Err(ureq::Error::Status(code, r)) => {
                let body = r.into_string().unwrap_or_default();
                return Err(TokenError(explain_token_refusal(code, &body, &self.settings.client_id)));
            }
            Err(ureq::Error::Transport(t)) => return Err(TokenError(explain_transport(&url, &t))),
        };
        parse_token(&body, started)
    }
}

fn read_file(path: &std::path::Path) -> Result<String, TokenError> {
    std::fs::read_to_string(path).map_err(|e| TokenError(format!("{} cannot be read: {e}", path.display())))
}

/// The DER bytes of the first PEM block labelled `label` in `pem`.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem.get(start..)?.find(&end)?;
    let b64: String = pem.get(start..stop)?.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A client assertion (RFC 7523, as Microsoft's identity platform takes it): a JWT for `client_id` and
/// the token endpoint `aud`, valid for 10 minutes from `now`, naming the certificate by its SHA-1
/// thumbprint (`x5t`) and signed RS256 with its private key.
pub fn client_assertion(
    cert_pem: &str,
    key_pem: &str,
    client_id: &str,
    aud: &str,
    now: i64,
) -> Result<String, TokenError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::rand::SecureRandom;
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    let cert = pem_block(cert_pem, "CERTIFICATE")
        .ok_or_else(|| TokenError("client_certificate_file holds no PEM certificate".into()))?;
    let key = match (pem_block(key_pem, "PRIVATE KEY"), pem_block(key_pem, "RSA PRIVATE KEY")) {
        (Some(pkcs8), _) => RsaKeyPair::from_pkcs8(&pkcs8),
        (None, Some(pkcs1)) => RsaKeyPair::from_der(&pkcs1),
        (None, None) => {
            return Err(TokenError(
                "client_private_key_file holds no PEM private key (PKCS#8 or RSA; an encrypted key must be decrypted first)".into(),
            ))
        }
    }
    .map_err(|e| TokenError(format!("client_private_key_file is not an RSA key this bot can sign with: {e}")))?;
    let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
    let rng = ring::rand::SystemRandom::new();
    let mut jti = [0u8; 16];
    rng.fill(&mut jti)
        .map_err(|_| TokenError("no randomness for the client assertion".into()))?;
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(thumbprint.as_ref())});
    let claims = serde_json::json!({
        "aud": aud, "iss": client_id, "sub": client_id,
        "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "iat": now, "nbf": now, "exp": now + 600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut signature)
        .map_err(|_| TokenError("the client assertion could not be signed".into()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The token in a token endpoint's answer, and when to renew it.
fn parse_token(body: &str, fetched_at: Instant) -> Result<Cached, TokenError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let a: Answer = serde_json::from_str(body)
        .map_err(|_| TokenError("the token endpoint did not answer with a token (not JSON)".into()))?;
    let token = a
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError("the token endpoint's answer holds no access_token".into()))?;
    // Microsoft sends expires_in as a number; some servers as a string.
    let lifetime = match a.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(3600);
    Ok(Cached {
        token: Secret(token),
        renew_at: fetched_at + renew_after(lifetime),
    })
}

/// How long a token of `lifetime` seconds is used before a new one is fetched: 80% of its life, and at
/// least a minute before it expires (a token of a minute or less is used once).
pub fn renew_after(lifetime: u64) -> Duration {
    let early = (lifetime / 5).max(60);
    Duration::from_secs(lifetime.saturating_sub(early))
}

/// A token endpoint's refusal in plain words, from its OAuth2 error and Microsoft's AADSTS code.
pub fn explain_token_refusal(status: u16, body: &str, client_id: &str) -> String {
    #[derive(serde::Deserialize, Default)]
    struct Refusal {
        error: Option<String>,
        error_description: Option<String>,
    }
    let r: Refusal = serde_json::from_str(body).unwrap_or_default();
    let error = r.error.unwrap_or_default();
    let description = r.error_description.unwrap_or_default();
    let first_line = description.lines().next().unwrap_or_default().trim().to_string();
    let code = description
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.starts_with("AADSTS"))
        .unwrap_or_default()
        .to_string();
    let plain = match code.as_str() {
        "AADSTS700027" => "the certificate's signature was refused: upload this certificate (its .cer or .pem, not the key) to the app registration's Certificates".to_string(),
        "AADSTS700024" => "the client assertion is outside its valid time: check this machine's clock".to_string(),
        "AADSTS7000215" => "the client secret is wrong: copy the secret's Value (not its ID) from the app registration into the secret file".to_string(),
        "AADSTS7000222" => "the client secret has expired: create a new one in the app registration and put it in the secret file".to_string(),
        "AADSTS700016" => format!("no application with client_id {client_id} in this tenant: check client_id and tenant"),
        "AADSTS90002" | "AADSTS900023" => "the tenant is not known: check tenant (the organisation's domain or directory id)".to_string(),
        "AADSTS65001" | "AADSTS650057" | "AADSTS500011" => "the application has no consent for this scope: an administrator must grant admin consent for IMAP.AccessAsApp / SMTP.SendAsApp".to_string(),
        "AADSTS70011" | "AADSTS1002012" => "the scope is not valid: for Exchange Online use https://outlook.office365.com/.default".to_string(),
        _ => match error.as_str() {
            "invalid_client" => "the client secret or client_id is wrong".to_string(),
            "unauthorized_client" => format!("the application {client_id} may not use this grant or tenant"),
            "invalid_scope" => "the scope is not valid".to_string(),
            "" => format!("the token endpoint answered HTTP {status}"),
            other => format!("the token endpoint refused: {other}"),
        },
    };
    if first_line.is_empty() {
        plain
    } else {
        format!("{plain} (token endpoint: {first_line})")
    }
}

/// A failure to reach the token endpoint in plain words.
fn explain_transport(url: &str, t: &ureq::Transport) -> String {
    use ureq::ErrorKind;
    let host = url
        .split("//")
        .nth(1)
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or(url);
    match t.kind() {
        ErrorKind::Dns => format!("the token endpoint's host {host} is not found in DNS"),
        ErrorKind::ConnectionFailed => format!("the token endpoint {host} cannot be reached: {t}"),
        ErrorKind::InvalidUrl | ErrorKind::UnknownScheme => format!("token_url {url:?} is not a valid URL"),
        ErrorKind::Io if t.to_string().to_lowercase().contains("certificate") => {
            format!("the token endpoint {host}'s TLS certificate is not trusted: {t}")
        }
        _ => format!("the token endpoint {host} could not be asked: {t}"),
    }
}

/// The SASL XOAUTH2 initial response (Google's and Microsoft's format): `user=U^Aauth=Bearer T^A^A`.
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// XOAUTH2 for async-imap's AUTHENTICATE: the initial response first; after a refusal the server sends a
/// JSON error as a further challenge, answered with an empty line so that it gives its tagged NO.
pub struct XOAuth2Imap {
    pub response: String,
    sent: bool,
}

impl XOAuth2Imap {
    pub fn new(user: &str, token: &str) -> XOAuth2Imap {
        XOAuth2Imap {
            response: xoauth2(user, token),
            sent: false,
        }
    }
}

impl async_imap::Authenticator for XOAuth2Imap {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        if self.sent {
            String::new()
        } else {
            self.sent = true;
            self.response.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::Authenticator;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(renew_after(3600), Duration::from_secs(2880));
        assert_eq!(renew_after(300), Duration::from_secs(240));
        assert_eq!(renew_after(60), Duration::ZERO);
        assert_eq!(renew_after(0), Duration::ZERO);
    }

    #[test]
    fn microsoft_refusals_are_said_in_plain_words() {
        let wrong = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 1"}"#;
        let said = explain_token_refusal(401, wrong, "abc");
        assert!(said.starts_with("the client secret is wrong"), "{said}");
        assert!(
            said.contains("AADSTS7000215: Invalid client secret provided."),
            "{said}"
        );
        assert!(!said.contains("Trace ID"), "{said}");
        let consent = r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented"}"#;
        assert!(explain_token_refusal(400, consent, "abc").contains("admin consent"));
        assert_eq!(
            explain_token_refusal(500, "<html>", "abc"),
            "the token endpoint answered HTTP 500"
        );
    }

    #[test]
    fn a_token_answer_is_read_and_its_life_respected() {
        let now = Instant::now();
        let c = parse_token(
            r#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0"}"#,
            now,
        )
        .expect("token");
        assert_eq!(c.token.0, "eyJ0");
        assert!(c.renew_at > now + Duration::from_secs(2800));
        let c = parse_token(r#"{"access_token":"t","expires_in":"120"}"#, now).expect("token");
        assert_eq!(c.renew_at, now + Duration::from_secs(60));
        assert!(parse_token(r#"{"token_type":"Bearer"}"#, now).is_err());
        assert!(parse_token("not json", now).is_err());
    }

    #[test]
    fn xoauth2_answers_once_then_empty() {
        let mut a = XOAuth2Imap::new("bsab@example.org", "T0K");
        assert_eq!(a.process(b""), "user=bsab@example.org\x01auth=Bearer T0K\x01\x01");
        assert_eq!(a.process(b"{\"status\":\"401\"}"), "");
    }

    /// A token endpoint on loopback that answers slowly (so that callers overlap) and counts its requests;
    /// each answer is a new token.
    fn slow_token_endpoint() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(Duration::from_millis(300));
                let body = format!(r#"{{"token_type":"Bearer","expires_in":3600,"access_token":"token-{n}"}}"#);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, count)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_on_a_cold_cache_share_one_fetch_and_a_refused_token_is_replaced_once() {
        let (url, count) = slow_token_endpoint();
        let source = TokenSource::new(OAuth2Settings {
            tenant: "example.org".into(),
            client_id: "app".into(),
            client_secret_env: Some("PATH".into()),
            token_url: Some(url),
            ..Default::default()
        });
        // The watcher, the sender and retention all ask at once, as they do when the daemon starts.
        let asks: Vec<_> = (0..3)
            .map(|_| {
                let s = source.clone();
                tokio::spawn(async move { s.token().await })
            })
            .collect();
        let mut tokens = Vec::new();
        for ask in asks {
            tokens.push(ask.await.expect("task").expect("token").0);
        }
        assert_eq!(tokens, vec!["token-1"; 3]);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Two connections are refused with token-1; the first to say so gets token-2 fetched, and the
        // second's late word does not throw token-2 away.
        source.invalidate(&Secret("token-1".into()));
        assert_eq!(source.token().await.expect("token").0, "token-2");
        source.invalidate(&Secret("token-1".into()));
        assert_eq!(source.token().await.expect("token").0, "token-2");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
