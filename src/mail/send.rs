//! Delivering the outbox: a sender task claims queued emails and delivers each through the configured
//! transport, recipient by recipient, with a timeout on every exchange. What can fail, and what follows:
//!
//! - A recipient refused for good (an unknown mailbox): that recipient only is recorded as refused; the
//!   others still get the email, and each is sent it once (`delivered_to`).
//! - The server itself (it cannot be reached, a TLS or authentication failure such as 535, the sender
//!   address refused, a temporary 4xx): nothing is lost. The email is retried with backoff until
//!   `give_up_after_hours` (default 7 days) have passed, and the sender pauses — it tries no other email
//!   until the pause is over — and logs the outage once, not once per email.
//!
//! Transports: SMTP (lettre; STARTTLS, TLS or plain for loopback tests) and, as the embedded default, a
//! Maildir folder that receives one file per email.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Attachment as LettreAttachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::app::Clock;
use crate::config::Secret;
use crate::mail::oauth::TokenSource;
use crate::store::{OutboundEmail, Refused, Store};

/// How to reach the SMTP server (`[smtp]` in the configuration).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls`, or `none` (only for a server on this machine).
    #[serde(default = "default_tls")]
    pub tls: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// `password` (default) or `oauth2` (AUTH XOAUTH2 with `[smtp.oauth2]`, for Microsoft 365 and NHSmail).
    #[serde(default = "crate::config::default_auth")]
    pub auth: String,
    #[serde(default)]
    pub oauth2: Option<crate::config::OAuth2Settings>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// How long an email that cannot be delivered because of the server is retried before it is given up
    /// (and shown by `outbox list --failed`).
    #[serde(default = "default_give_up_hours")]
    pub give_up_after_hours: u64,
}

fn default_give_up_hours() -> u64 {
    DEFAULT_GIVE_UP_HOURS
}

/// Seven days.
pub const DEFAULT_GIVE_UP_HOURS: u64 = 7 * 24;

fn default_smtp_port() -> u16 {
    587
}
fn default_tls() -> String {
    "starttls".into()
}
fn default_timeout() -> u64 {
    30
}

/// Where outgoing email goes. The SMTP client keeps a small pool of connections for reuse.
#[derive(Clone)]
pub enum Transport {
    Smtp(std::sync::Arc<Smtp>),
    Maildir(PathBuf),
}

/// An SMTP server and how to log in to it. With a password the connection pool is made once; with OAuth2 it
/// is made again whenever the token is renewed (or dropped after the server refused it).
pub struct Smtp {
    pub settings: SmtpSettings,
    oauth: Option<TokenSource>,
    /// The pool, and the token it logs in with (none for password or no login).
    pool: tokio::sync::Mutex<Option<(Option<Secret>, AsyncSmtpTransport<Tokio1Executor>)>>,
}

impl Smtp {
    /// The pool to send with now: for OAuth2, logging in with a token that is good for a while yet.
    pub async fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let token = match &self.oauth {
            Some(source) => Some(
                source
                    .token()
                    .await
                    .map_err(|e| format!("OAuth2 token for SMTP: {e}"))?,
            ),
            None => None,
        };
        let mut pool = self.pool.lock().await;
        if let Some((used, t)) = pool.as_ref() {
            if *used == token {
                return Ok(t.clone());
            }
        }
        let t = smtp_builder(&self.settings, token.as_ref())?.build();
        *pool = Some((token, t.clone()));
        Ok(t)
    }

    /// The server refused to log in: the OAuth2 token the pool logged in with is dropped, so that the next
    /// try fetches one (a token fetched since by someone else is kept).
    pub async fn login_refused(&self) {
        if let Some(source) = &self.oauth {
            let mut pool = self.pool.lock().await;
            if let Some((Some(used), _)) = pool.as_ref() {
                source.invalidate(used);
            }
            *pool = None;
        }
    }
}

/// `check-config --connect`: connect, EHLO and log in (no mail is sent); what is wrong in plain words.
pub async fn check(s: &SmtpSettings) -> Result<String, String> {
    let transport = Transport::smtp(s)?;
    let Transport::Smtp(smtp) = &transport else {
        return Err("not an SMTP transport".into());
    };
    let t = smtp.transport().await?;
    let wait = Duration::from_secs(s.timeout_seconds * 2);
    let how = if s.auth == "oauth2" {
        "OAuth2"
    } else if s.username.is_some() {
        "password"
    } else {
        "no login"
    };
    match tokio::time::timeout(wait, t.test_connection()).await {
        Ok(Ok(true)) => Ok(format!(
            "{}:{} ({}, {how}): EHLO and AUTH accepted",
            s.host, s.port, s.tls
        )),
        Ok(Ok(false)) => Err(format!("{}:{} did not answer NOOP after logging in", s.host, s.port)),
        Ok(Err(e)) => {
            let text = e.to_string();
            let lower = text.to_lowercase();
            Err(
                if lower.contains("lookup") || lower.contains("name or service not known") {
                    format!("the SMTP server's name {} is not found in DNS ({text})", s.host)
                } else if lower.contains("connection refused") {
                    format!(
                        "nothing answers at {}:{} (connection refused): check smtp.host and smtp.port",
                        s.host, s.port
                    )
                } else if lower.contains("certificate") || lower.contains("tls") {
                    format!("the TLS connection to {}:{} failed: the certificate is not trusted or does not name {} ({text})", s.host, s.port, s.host)
                } else if is_login_refusal(&text) {
                    smtp.login_refused().await;
                    if s.auth == "oauth2" {
                        format!("the SMTP server refused the OAuth2 token ({text}): the app needs SMTP.SendAsApp and SMTP AUTH enabled on the mailbox, and permission to send as {}", s.username.as_deref().unwrap_or("?"))
                    } else {
                        format!("the SMTP server refused the user name or password ({text})")
                    }
                } else {
                    text
                },
            )
        }
        Err(_) => Err(format!(
            "no answer from {}:{} within {} s",
            s.host,
            s.port,
            wait.as_secs()
        )),
    }
}

/// Whether an SMTP failure is a connection the server (or something between) dropped: a pooled
/// connection from before a relay restarted.
pub fn is_dropped_connection(error: &str) -> bool {
    let e = error.to_lowercase();
    [
        "connection reset",
        "broken pipe",
        "unexpected eof",
        "connection closed",
        "connection aborted",
    ]
    .iter()
    .any(|w| e.contains(w))
}

/// Whether an SMTP failure is the server refusing the login (535 and its kin).
pub fn is_login_refusal(error: &str) -> bool {
    let e = error.to_lowercase();
    ["535", "534", "530 5.7", "5.7.3", "5.7.8", "authentication"]
        .iter()
        .any(|w| e.contains(w))
}

fn smtp_builder(
    s: &SmtpSettings,
    token: Option<&Secret>,
) -> Result<lettre::transport::smtp::AsyncSmtpTransportBuilder, String> {
    let params = || TlsParameters::new(s.host.clone()).map_err(|e| format!("TLS for {}: {e}", s.host));
    let builder = match s.tls.as_str() {
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host).tls(Tls::Wrapper(params()?)),
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host).tls(Tls::Required(params()?)),
        other => return Err(format!("smtp.tls {other:?}: use starttls, tls or none")),
    };
    let mut builder = builder
        .port(s.port)
        .timeout(Some(Duration::from_secs(s.timeout_seconds)));
    match token {
        Some(t) => {
            let user = s.username.clone().unwrap_or_default();
            builder = builder
                .credentials(Credentials::new(user, t.0.clone()))
                .authentication(vec![Mechanism::Xoauth2]);
        }
        None => {
            if let (Some(u), Some(p)) = (&s.username, &s.password) {
                builder = builder.credentials(Credentials::new(u.clone(), p.0.clone()));
            }
        }
    }
    Ok(builder)
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp(s) => write!(f, "SMTP {}:{}", s.settings.host, s.settings.port),
            Transport::Maildir(p) => write!(f, "Maildir {}", p.display()),
        }
    }
}

/// A failed delivery: permanent failures are not retried.
#[derive(Debug, Clone)]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

fn permanent(message: impl Into<String>) -> SendError {
    SendError {
        permanent: true,
        message: message.into(),
    }
}

/// The email as an RFC 5322 message: text and HTML alternatives, the fixed Message-ID, and our headers.
pub fn build_message(email: &OutboundEmail, date: DateTime<Utc>) -> Result<Message, SendError> {
    let from_header = email.headers.get("From").cloned().unwrap_or_default();
    let from: Mailbox = from_header
        .parse()
        .map_err(|e| permanent(format!("From {from_header:?}: {e}")))?;
    let mut b = Message::builder()
        .from(from)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}>", email.message_id)))
        .date(date.into());
    // The To and Cc shown: the whole lists where this is one recipient's copy of an email to several
    // (the envelope, given when sending, names that recipient alone).
    let shown = |name: &str, own: &[String]| -> Vec<String> {
        match email.headers.get(name) {
            Some(list) => list
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
            None => own.to_vec(),
        }
    };
    for to in shown("To", &email.to) {
        b = b.to(to.parse().map_err(|e| permanent(format!("To {to:?}: {e}")))?);
    }
    for cc in shown("Cc", &email.cc) {
        b = b.cc(cc.parse().map_err(|e| permanent(format!("Cc {cc:?}: {e}")))?);
    }
    if let Some(r) = email.headers.get("Reply-To") {
        b = b.reply_to(r.parse().map_err(|e| permanent(format!("Reply-To {r:?}: {e}")))?);
    }
    if let Some(r) = email.headers.get("In-Reply-To") {
        b = b.in_reply_to(r.clone());
    }
    if let Some(r) = email.headers.get("References") {
        b = b.references(r.clone());
    }
    for name in [
        "Auto-Submitted",
        "X-Auto-Response-Suppress",
        "X-Escalation-Kind",
        "X-Escalation-Case",
        "X-Escalation-Deadline",
    ] {
        if let Some(v) = email.headers.get(name) {
            b = b.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), v.clone()));
        }
    }
    let html = email
        .html
        .clone()
        .unwrap_or_else(|| format!("<pre>{}</pre>", email.text));
    let body = MultiPart::alternative_plain_html(email.text.clone(), html);
    let body = if email.attachments.is_empty() {
        body
    } else {
        // multipart/mixed: the text and HTML alternatives, then each file.
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in &email.attachments {
            let bytes = a
                .bytes()
                .ok_or_else(|| permanent(format!("the attachment {:?} is not valid base64", a.filename)))?;
            let content_type = ContentType::parse(&a.content_type)
                .map_err(|e| permanent(format!("the attachment's type {:?}: {e}", a.content_type)))?;
            mixed = mixed.singlepart(LettreAttachment::new(a.filename.clone()).body(bytes, content_type));
        }
        mixed
    };
    b.multipart(body)
        .map_err(|e| permanent(format!("the message could not be built: {e}")))
}

impl Transport {
    /// The SMTP transport for `s`, ready to send (connections are opened when needed and reused).
    pub fn smtp(s: &SmtpSettings) -> Result<Transport, String> {
        let oauth = match (s.auth.as_str(), &s.oauth2) {
            ("oauth2", Some(o)) => Some(TokenSource::shared(o)),
            _ => None,
        };
        // Settings that cannot make a transport are refused now, not at the first email.
        smtp_builder(s, None)?;
        Ok(Transport::Smtp(std::sync::Arc::new(Smtp {
            settings: s.clone(),
            oauth,
            pool: tokio::sync::Mutex::new(None),
        })))
    }

    /// Deliver `email` to `recipients` (those of its recipients who do not have it yet): in one SMTP
    /// transaction, or, when a recipient is refused, one transaction per recipient, so that one refused
    /// address fails only itself. Stops at the first failure of the server.
    pub async fn deliver_to(&self, email: &OutboundEmail, recipients: &[String], now: DateTime<Utc>) -> Attempt {
        let mut attempt = self.deliver_once(email, recipients, now).await;
        let Transport::Smtp(smtp) = self else {
            return attempt;
        };
        // Two failures are worth trying again at once rather than after the retry pause: a pooled connection
        // the server dropped (a relay restarted: a new connection is opened), and an OAuth2 token the server
        // no longer takes (expired early, revoked: a new one is fetched). At most twice, so that a server
        // that keeps failing is left to the retry.
        for _ in 0..2 {
            let Some(e) = attempt.server_error.clone() else { break };
            if is_login_refusal(&e) {
                smtp.login_refused().await;
                if smtp.oauth.is_none() {
                    break;
                }
                tracing::warn!(error = %e, "the SMTP server refused the OAuth2 token; trying again with a new one");
            } else if is_dropped_connection(&e) {
                tracing::info!(error = %e, "the SMTP connection was dropped; trying again on a new one");
            } else {
                break;
            }
            let left: Vec<String> = recipients
                .iter()
                .filter(|r| !attempt.delivered.contains(r) && !attempt.refused.iter().any(|x| &x.address == *r))
                .cloned()
                .collect();
            let mut again = self.deliver_once(email, &left, now).await;
            again.delivered.splice(0..0, attempt.delivered);
            again.refused.splice(0..0, attempt.refused);
            attempt = again;
        }
        if attempt.server_error.as_deref().is_some_and(is_login_refusal) {
            smtp.login_refused().await;
        }
        attempt
    }

    async fn deliver_once(&self, email: &OutboundEmail, recipients: &[String], now: DateTime<Utc>) -> Attempt {
        let mut attempt = Attempt::default();
        let message = match build_message(email, now) {
            Ok(m) => m,
            Err(e) => {
                // The email itself cannot be written (an address that is no address): every recipient
                // refuses it, for good.
                attempt.refused = recipients
                    .iter()
                    .map(|r| Refused {
                        address: r.clone(),
                        error: e.message.clone(),
                    })
                    .collect();
                return attempt;
            }
        };
        match self {
            Transport::Maildir(dir) => match write_maildir(dir, email, &message.formatted()).await {
                Ok(()) => attempt.delivered = recipients.to_vec(),
                Err(e) => attempt.server_error = Some(e.message),
            },
            Transport::Smtp(smtp) => {
                let s = &smtp.settings;
                let transport = match smtp.transport().await {
                    Ok(t) => t,
                    Err(e) => {
                        attempt.server_error = Some(e);
                        return attempt;
                    }
                };
                let transport = &transport;
                let bytes = message.formatted();
                let from = message.envelope().from().cloned();
                let wait = Duration::from_secs(s.timeout_seconds * 2);
                // Usually every recipient takes it: one transaction for all. Only when one is refused are
                // they tried one by one, so that the refusal is that recipient's alone.
                if recipients.len() > 1 {
                    let all: Result<Vec<lettre::Address>, _> = recipients.iter().map(|r| r.parse()).collect();
                    if let Ok(Ok(envelope)) = all.map(|to| lettre::address::Envelope::new(from.clone(), to)) {
                        match transact(transport, &envelope, &bytes, wait).await {
                            Transaction::Delivered => {
                                attempt.delivered = recipients.to_vec();
                                return attempt;
                            }
                            Transaction::Refused(_) => {}
                            Transaction::ServerFailed(e) => {
                                attempt.server_error = Some(e);
                                return attempt;
                            }
                        }
                    }
                }
                for rcpt in recipients {
                    let to: lettre::Address = match rcpt.parse() {
                        Ok(a) => a,
                        Err(e) => {
                            attempt.refused.push(Refused {
                                address: rcpt.clone(),
                                error: format!("not an address: {e}"),
                            });
                            continue;
                        }
                    };
                    let envelope = match lettre::address::Envelope::new(from.clone(), vec![to]) {
                        Ok(env) => env,
                        Err(e) => {
                            attempt.server_error = Some(format!("the envelope could not be made: {e}"));
                            return attempt;
                        }
                    };
                    match transact(transport, &envelope, &bytes, wait).await {
                        Transaction::Delivered => attempt.delivered.push(rcpt.clone()),
                        Transaction::Refused(error) => attempt.refused.push(Refused {
                            address: rcpt.clone(),
                            error,
                        }),
                        Transaction::ServerFailed(e) => {
                            attempt.server_error = Some(e);
                            return attempt;
                        }
                    }
                }
            }
        }
        attempt
    }
}

/// What one SMTP transaction came to.
enum Transaction {
    Delivered,
    /// A recipient refused it for good (the server's words).
    Refused(String),
    /// The server failed: unreachable, too slow, authentication, the sender refused, a temporary error.
    ServerFailed(String),
}

/// One SMTP transaction for `envelope`, within `wait`.
async fn transact(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    envelope: &lettre::address::Envelope,
    bytes: &[u8],
    wait: Duration,
) -> Transaction {
    match tokio::time::timeout(wait, transport.send_raw(envelope, bytes)).await {
        Ok(Ok(_)) => Transaction::Delivered,
        Ok(Err(e)) if e.is_permanent() && is_recipient_refusal(&e.to_string()) => Transaction::Refused(e.to_string()),
        Ok(Err(e)) => Transaction::ServerFailed(e.to_string()),
        Err(_) => Transaction::ServerFailed("the SMTP server did not answer in time".into()),
    }
}

/// What one attempt at an email came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    /// Recipients who have it now.
    pub delivered: Vec<String>,
    /// Recipients whose server refused it for good.
    pub refused: Vec<Refused>,
    /// The server failed (unreachable, TLS, authentication, sender refused, a temporary error): the
    /// recipients not yet tried are tried again later.
    pub server_error: Option<String>,
}

/// Whether a permanent SMTP error refuses the recipient (an unknown or disabled mailbox), rather than the
/// sender, the credentials or the server's policy. Enhanced status codes (RFC 3463) say so where servers
/// give them; the words servers use otherwise.
pub fn is_recipient_refusal(error: &str) -> bool {
    let e = error.to_lowercase();
    [
        "5.1.1",
        "5.1.2",
        "5.1.3",
        "5.1.6",
        "5.1.10",
        "5.2.1",
        "5.2.2",
        "user unknown",
        "unknown user",
        "no such user",
        "no such mailbox",
        "mailbox unavailable",
        "mailbox not found",
        "recipient address rejected",
        "unknown recipient",
        "invalid recipient",
        "recipient not found",
        "does not exist",
    ]
    .iter()
    .any(|w| e.contains(w))
        && !["5.7.", "authentication", "sender address rejected", "5.1.7", "5.1.8"]
            .iter()
            .any(|w| e.contains(w))
}

/// Write into a Maildir: to `tmp/`, then renamed into `new/`. The name is fixed by the email, so
/// delivering the same email twice leaves one file.
async fn write_maildir(dir: &Path, email: &OutboundEmail, bytes: &[u8]) -> Result<(), SendError> {
    let transient = |e: std::io::Error| SendError {
        permanent: false,
        message: format!("{}: {e}", dir.display()),
    };
    for sub in ["tmp", "new", "cur"] {
        tokio::fs::create_dir_all(dir.join(sub)).await.map_err(transient)?;
    }
    let name: String = email
        .message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = dir.join("tmp").join(&name);
    tokio::fs::write(&tmp, bytes).await.map_err(transient)?;
    tokio::fs::rename(&tmp, dir.join("new").join(format!("{name}.eml")))
        .await
        .map_err(transient)?;
    Ok(())
}

/// When to try again after `attempts` failed attempts: 1, 2, 4… minutes, at most 30 minutes apart.
pub fn retry_at(now: DateTime<Utc>, attempts: i64) -> DateTime<Utc> {
    let minutes = (1i64 << (attempts - 1).clamp(0, 9)).min(30);
    now + chrono::Duration::minutes(minutes)
}

impl Transport {
    /// How long a claimed email stays ours: long enough to deliver it, short enough that an email claimed
    /// by a daemon that died is retried soon.
    pub fn lease_ms(&self) -> i64 {
        match self {
            // With OAuth2 a delivery may fetch a token (up to 30 s) and log in twice: the lease covers it,
            // so that another instance never takes the email over mid-way.
            Transport::Smtp(s) if s.oauth.is_some() => (s.settings.timeout_seconds as i64 * 6 + 60) * 1000,
            Transport::Smtp(s) => (s.settings.timeout_seconds as i64) * 3 * 1000,
            Transport::Maildir(_) => 30_000,
        }
    }

    /// How long an email is retried when the server fails.
    pub fn give_up_after(&self) -> chrono::Duration {
        let hours = match self {
            Transport::Smtp(s) => s.settings.give_up_after_hours,
            Transport::Maildir(_) => DEFAULT_GIVE_UP_HOURS,
        };
        chrono::Duration::hours(i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000))
    }
}

/// The sender's view of the mail server: working, or failing since a moment and paused until another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// When the current outage began (`None`: the server takes mail).
    pub down_since: Option<DateTime<Utc>>,
    /// No email is tried before this.
    pub paused_until: Option<DateTime<Utc>>,
    /// The last error the server gave.
    pub last_error: Option<String>,
}

/// Deliver what is due, one email at a time, until none is left, `stop` is set, or the server fails (then
/// the sender pauses: `health` says until when). Returns how many were sent. Stopping between emails keeps a
/// shutdown prompt however long the outbox is.
pub async fn send_due<S: Store>(
    store: &S,
    transport: &Transport,
    clock: &Clock,
    health: &mut Health,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    if health.paused_until.is_some_and(|t| clock.now() < t) {
        return Ok(0);
    }
    loop {
        if *stop.borrow() {
            return Ok(sent);
        }
        let batch = store.claim_outbox(clock.now(), 1, transport.lease_ms()).await?;
        let Some(rec) = batch.into_iter().next() else {
            return Ok(sent);
        };
        let now = clock.now();
        let done = |a: &str| {
            rec.delivered_to.iter().any(|d| d.eq_ignore_ascii_case(a))
                || rec.refused.iter().any(|r| r.address.eq_ignore_ascii_case(a))
        };
        let mut pending: Vec<String> = Vec::new();
        for a in rec.email.to.iter().chain(rec.email.cc.iter()) {
            if !done(a) && !pending.iter().any(|p: &String| p.eq_ignore_ascii_case(a)) {
                pending.push(a.clone());
            }
        }
        let attempt = transport.deliver_to(&rec.email, &pending, now).await;
        let mut delivered = rec.delivered_to.clone();
        delivered.extend(attempt.delivered.iter().cloned());
        let mut refused = rec.refused.clone();
        refused.extend(attempt.refused.iter().cloned());
        if !attempt.delivered.is_empty() || !attempt.refused.is_empty() {
            store.outbox_progress(rec.id, &delivered, &refused).await?;
        }
        for r in &attempt.refused {
            crate::monitor::monitor().recipient_refused();
            tracing::warn!(message_id = %rec.email.message_id, recipient = %r.address, error = %r.error,
                "a recipient refused the email for good; the others still get it");
        }
        match attempt.server_error {
            None => {
                crate::monitor::monitor().sender(false);
                if health.down_since.take().is_some() {
                    tracing::info!("the mail server takes mail again; the outbox is being delivered");
                }
                health.paused_until = None;
                if delivered.is_empty() {
                    let why = refused
                        .iter()
                        .map(|r| format!("{}: {}", r.address, r.error))
                        .collect::<Vec<_>>()
                        .join("; ");
                    store
                        .outbox_failed(rec.id, &format!("every recipient refused it ({why})"), None, now)
                        .await?;
                } else {
                    store.outbox_sent(rec.id, clock.now()).await?;
                    crate::monitor::monitor().email_sent();
                    sent += 1;
                    tracing::info!(message_id = %rec.email.message_id, kind = %rec.email.kind, "email sent");
                }
            }
            Some(error) => {
                crate::monitor::monitor().sender(true);
                let since = rec.retried_at.unwrap_or(rec.created_at);
                let give_up = now - since >= transport.give_up_after();
                let next = retry_at(now, rec.attempts);
                if health.down_since.is_none() {
                    tracing::error!(error = %error, retry_at = %next.to_rfc3339(),
                        "the mail server is not taking mail; nothing is lost: the outbox is kept and retried");
                    health.down_since = Some(now);
                } else {
                    tracing::debug!(error = %error, "the mail server is still not taking mail");
                }
                health.paused_until = Some(next);
                health.last_error = Some(error.clone());
                if give_up {
                    tracing::error!(message_id = %rec.email.message_id, error = %error,
                        "an email could not be delivered for the whole retry period and is given up; `outbox retry` sends it again");
                    store.outbox_failed(rec.id, &error, None, now).await?;
                } else {
                    store.outbox_failed(rec.id, &error, Some(next), now).await?;
                }
                return Ok(sent);
            }
        }
    }
}

/// The sender task: deliver what is due whenever woken (an email queued by this daemon, or by another
/// process: the daemon's store watch wakes it), and at the moment the next retry comes due (pausing while
/// the mail server fails), until `stop`. With nothing to send it sleeps: no polling.
pub async fn run_sender<S: Store>(
    store: S,
    transport: Transport,
    clock: Clock,
    wake: std::sync::Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut health = Health::default();
    loop {
        if let Err(e) = send_due(&store, &transport, &clock, &mut health, &stop).await {
            tracing::error!(error = %e, "the outbox could not be delivered");
        }
        let now = clock.now();
        let next = match store.next_outbox_at().await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox; looking again in 30 seconds");
                Some(now + chrono::Duration::seconds(30))
            }
        };
        // While the server is failing, nothing goes before the pause ends; an email due now that was not
        // sent (claimed by another instance a moment ago) is looked at again in a second, not in a spin.
        let next = next.map(|t| t.max(health.paused_until.unwrap_or(t)));
        let wait = next.map(|t| (t - now).to_std().unwrap_or_default().max(Duration::from_secs(1)));
        tokio::select! {
            _ = wake.notified() => {}
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
            _ = stop.changed() => return,
        }
    }
}
