//! Delivering the outbox: a sender task claims queued emails, delivers each through the configured transport
//! with a timeout, and records it sent — or failed, to be retried with backoff, or given up on after a
//! permanent refusal or too many attempts. Transports: SMTP (lettre; STARTTLS, TLS or plain for loopback
//! tests) and, as the embedded default, a Maildir folder that receives one file per email.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::app::Clock;
use crate::config::Secret;
use crate::store::{OutboundEmail, Store};

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
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

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
    Smtp(SmtpSettings, AsyncSmtpTransport<Tokio1Executor>),
    Maildir(PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp(s, _) => write!(f, "SMTP {}:{}", s.host, s.port),
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
    for to in &email.to {
        b = b.to(to.parse().map_err(|e| permanent(format!("To {to:?}: {e}")))?);
    }
    for cc in &email.cc {
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
    for name in ["Auto-Submitted", "X-Auto-Response-Suppress"] {
        if let Some(v) = email.headers.get(name) {
            b = b.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), v.clone()));
        }
    }
    let html = email
        .html
        .clone()
        .unwrap_or_else(|| format!("<pre>{}</pre>", email.text));
    b.multipart(MultiPart::alternative_plain_html(email.text.clone(), html))
        .map_err(|e| permanent(format!("the message could not be built: {e}")))
}

impl Transport {
    /// The SMTP transport for `s`, ready to send (connections are opened when needed and reused).
    pub fn smtp(s: &SmtpSettings) -> Result<Transport, String> {
        let params = || TlsParameters::new(s.host.clone()).map_err(|e| format!("TLS for {}: {e}", s.host));
        let builder = match s.tls.as_str() {
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host).tls(Tls::Wrapper(params()?)),
            "starttls" => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host).tls(Tls::Required(params()?))
            }
            other => return Err(format!("smtp.tls {other:?}: use starttls, tls or none")),
        };
        let mut builder = builder
            .port(s.port)
            .timeout(Some(Duration::from_secs(s.timeout_seconds)));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.0.clone()));
        }
        Ok(Transport::Smtp(s.clone(), builder.build()))
    }

    /// Deliver one email, within the transport's timeout.
    pub async fn deliver(&self, email: &OutboundEmail, now: DateTime<Utc>) -> Result<(), SendError> {
        let message = build_message(email, now)?;
        match self {
            Transport::Maildir(dir) => write_maildir(dir, email, &message.formatted()).await,
            Transport::Smtp(s, transport) => {
                let send = transport.send(message);
                match tokio::time::timeout(Duration::from_secs(s.timeout_seconds * 2), send).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(SendError {
                        permanent: e.is_permanent(),
                        message: e.to_string(),
                    }),
                    Err(_) => Err(SendError {
                        permanent: false,
                        message: "the SMTP server did not answer in time".into(),
                    }),
                }
            }
        }
    }
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

/// When to try again after `attempts` attempts, or `None` to give up.
pub fn retry_at(now: DateTime<Utc>, attempts: i64, permanent: bool) -> Option<DateTime<Utc>> {
    const MAX_ATTEMPTS: i64 = 12;
    if permanent || attempts >= MAX_ATTEMPTS {
        return None;
    }
    // 1, 2, 4, 8… minutes, at most 6 hours apart.
    let minutes = (1i64 << (attempts - 1).clamp(0, 9)).min(360);
    Some(now + chrono::Duration::minutes(minutes))
}

impl Transport {
    /// How long a claimed email stays ours: long enough to deliver it, short enough that an email claimed
    /// by a daemon that died is retried soon.
    pub fn lease_ms(&self) -> i64 {
        match self {
            Transport::Smtp(s, _) => (s.timeout_seconds as i64) * 3 * 1000,
            Transport::Maildir(_) => 30_000,
        }
    }
}

/// Deliver what is due, one email at a time, until none is left or `stop` is set: returns how many were
/// sent. Stopping between emails keeps a shutdown prompt however long the outbox is.
pub async fn send_due<S: Store>(
    store: &S,
    transport: &Transport,
    clock: &Clock,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    loop {
        if *stop.borrow() {
            return Ok(sent);
        }
        let batch = store.claim_outbox(clock.now(), 1, transport.lease_ms()).await?;
        let Some(rec) = batch.into_iter().next() else {
            return Ok(sent);
        };
        let now = clock.now();
        match transport.deliver(&rec.email, now).await {
            Ok(()) => {
                store.outbox_sent(rec.id, clock.now()).await?;
                sent += 1;
                tracing::info!(message_id = %rec.email.message_id, kind = %rec.email.kind, "email sent");
            }
            Err(e) => {
                let next = retry_at(now, rec.attempts, e.permanent);
                tracing::warn!(message_id = %rec.email.message_id, attempts = rec.attempts, error = %e.message,
                    retry_at = ?next, "email not sent");
                store.outbox_failed(rec.id, &e.message, next, now).await?;
            }
        }
    }
}

/// The sender task: deliver what is due whenever woken, and at least every five seconds, until `stop`.
pub async fn run_sender<S: Store>(
    store: S,
    transport: Transport,
    clock: Clock,
    wake: std::sync::Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = send_due(&store, &transport, &clock, &stop).await {
            tracing::error!(error = %e, "the outbox could not be delivered");
        }
        tokio::select! {
            _ = wake.notified() => {}
            // Woken as soon as there is mail; the timer only picks up retries that have come due.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}
