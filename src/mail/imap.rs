//! The IMAP mailbox source (async-imap): TLS (rustls) or plain for a server on this machine; IDLE where the
//! server offers it, re-issued well inside the 29 minutes RFC 2177 allows, polling where it does not;
//! reconnection with backoff; a timeout on every command.
//!
//! Every message still in the watched folder is unprocessed: each is fetched (without setting \Seen),
//! handed to the main loop, and only once the main loop says its effect committed is it moved to the
//! processed folder (UID MOVE), or to quarantine. Identity is (mailbox, UIDVALIDITY, UID) plus Message-ID,
//! so a crash between commit and move, or a UIDVALIDITY change, has no second effect.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::Session;
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::pipeline::Source;
use super::source::{Ack, Incoming, BATCH};
use crate::config::Secret;

/// A board's IMAP mailbox (`[imap]` in the board's file).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// `tls` (default, port 993) or `none` (only for a server on this machine).
    #[serde(default = "default_tls")]
    pub tls: String,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default = "default_folder")]
    pub folder: String,
    #[serde(default = "default_processed")]
    pub processed_folder: String,
    #[serde(default = "default_quarantine")]
    pub quarantine_folder: String,
    /// How often to poll when the server has no IDLE, and the longest IDLE before it is re-issued.
    #[serde(default = "default_idle")]
    pub idle_seconds: u64,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_port() -> u16 {
    993
}
fn default_tls() -> String {
    "tls".into()
}
fn default_folder() -> String {
    "INBOX".into()
}
fn default_processed() -> String {
    "Processed".into()
}
fn default_quarantine() -> String {
    "Quarantine".into()
}
fn default_idle() -> u64 {
    // 25 minutes: well inside the 29 minutes a server may wait before dropping an idle client.
    25 * 60
}
fn default_timeout() -> u64 {
    30
}

/// A connection, plain or TLS.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Conn for T {}

type ImapSession = Session<Box<dyn Conn>>;

async fn within<T, E: std::fmt::Display>(
    secs: u64,
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow::anyhow!("IMAP {what}: {e}")),
        Err(_) => Err(anyhow::anyhow!("IMAP {what}: no answer within {secs} s")),
    }
}

async fn connect(s: &ImapSettings) -> anyhow::Result<ImapSession> {
    let tcp = within(
        s.timeout_seconds,
        "connect",
        TcpStream::connect((s.host.as_str(), s.port)),
    )
    .await?;
    let stream: Box<dyn Conn> = if s.tls == "none" {
        Box::new(tcp)
    } else {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(s.host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
        Box::new(within(s.timeout_seconds, "TLS", tls.connect(name, tcp)).await?)
    };
    let mut client = async_imap::Client::new(stream);
    let greeting = within(s.timeout_seconds, "greeting", client.read_response()).await?;
    if greeting.is_none() {
        anyhow::bail!("IMAP server closed the connection before its greeting");
    }
    let password = s.password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
    let login = client.login(&s.username, &password);
    match tokio::time::timeout(Duration::from_secs(s.timeout_seconds), login).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((e, _))) => Err(anyhow::anyhow!("IMAP login as {}: {e}", s.username)),
        Err(_) => Err(anyhow::anyhow!("IMAP login: no answer within {} s", s.timeout_seconds)),
    }
}

/// Watch `settings.folder` for `board` until `stop`, reconnecting with backoff.
pub async fn watch_mailbox(
    board: String,
    settings: ImapSettings,
    tx: mpsc::Sender<Incoming>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = 1u64;
    loop {
        if *stop.borrow() {
            return;
        }
        match session(&board, &settings, &tx, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(board, host = %settings.host, error = %e, retry_in_seconds = backoff, "IMAP connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(backoff)) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(60);
            }
        }
    }
}

/// Messages whose effects have committed, waiting to be moved out of the watched folder together: a
/// server's MOVE costs it much per command as well as per message (Dovecot on this machine: about 31 ms
/// for 100 messages, 18 ms per 100 for 250), so during a backlog several batches go in one command.
#[derive(Default)]
struct Settled {
    done: Vec<u32>,
    quarantined: Vec<u32>,
    /// A message could not be processed: it stays, and the connection starts over once the rest is out.
    retry: bool,
}

/// How many settled messages wait for one MOVE while more batches are on their way.
const MOVE_AT_LEAST: usize = 250;

impl Settled {
    fn len(&self) -> usize {
        self.done.len() + self.quarantined.len()
    }

    /// Wait for a batch's acknowledgement and add its messages.
    async fn add(&mut self, uids: Vec<u32>, ack: oneshot::Receiver<Vec<Ack>>) -> anyhow::Result<()> {
        let waited = std::time::Instant::now();
        let acks = ack.await.map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
        tracing::debug!(
            waited_ms = waited.elapsed().as_secs_f64() * 1e3,
            messages = uids.len(),
            "batch acknowledged"
        );
        for (uid, ack) in uids.into_iter().zip(acks) {
            match ack {
                Ack::Done => self.done.push(uid),
                Ack::Quarantine => self.quarantined.push(uid),
                Ack::Retry => self.retry = true,
            }
        }
        Ok(())
    }

    /// Move what has settled: processed messages to the processed folder, unusable ones to quarantine.
    /// Then, if a message is to be retried, fail, so that the connection starts over and fetches it again.
    async fn move_out(&mut self, session: &mut ImapSession, s: &ImapSettings, can_move: bool) -> anyhow::Result<()> {
        let secs = s.timeout_seconds;
        let started = std::time::Instant::now();
        let (done, quarantined) = (std::mem::take(&mut self.done), std::mem::take(&mut self.quarantined));
        for (uids, folder) in [(&done, &s.processed_folder), (&quarantined, &s.quarantine_folder)] {
            if uids.is_empty() {
                continue;
            }
            let set = uid_set(uids);
            if can_move {
                within(secs, "UID MOVE", session.uid_mv(&set, folder)).await?;
            } else {
                within(secs, "UID COPY", session.uid_copy(&set, folder)).await?;
                within(secs, "UID STORE", async {
                    session
                        .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                })
                .await?;
                within(secs, "EXPUNGE", async {
                    session.expunge().await?.try_collect::<Vec<_>>().await
                })
                .await?;
            }
        }
        tracing::debug!(
            folder = %s.folder,
            ms = started.elapsed().as_secs_f64() * 1e3,
            done = done.len(),
            quarantined = quarantined.len(),
            "messages moved out"
        );
        if std::mem::take(&mut self.retry) {
            anyhow::bail!(
                "a message could not be processed; it stays in {} and will be tried again",
                s.folder
            );
        }
        Ok(())
    }
}

/// An IMAP sequence set of UIDs, runs written as ranges (`1:100,205`): a MOVE of a backlog's batches is a
/// short command rather than hundreds of numbers.
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut last = first;
        while i + 1 < sorted.len() && sorted[i + 1] == last + 1 {
            i += 1;
            last = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if last == first {
            out.push_str(&first.to_string());
        } else {
            out.push_str(&format!("{first}:{last}"));
        }
        i += 1;
    }
    out
}

/// One connection's life: drain the folder, then wait (IDLE or poll) for more, until `stop` or an error.
async fn session(
    board: &str,
    s: &ImapSettings,
    tx: &mpsc::Sender<Incoming>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let secs = s.timeout_seconds;
    let mut session = connect(s).await?;
    let caps = within(secs, "CAPABILITY", session.capabilities()).await?;
    let can_idle = caps.has_str("IDLE");
    let can_move = caps.has_str("MOVE");
    for folder in [&s.processed_folder, &s.quarantine_folder] {
        // Already there is fine.
        let _ = within(secs, "CREATE", session.create(folder)).await;
    }
    tracing::info!(board, host = %s.host, folder = %s.folder, idle = can_idle, "watching the IMAP mailbox");
    loop {
        let mailbox = within(secs, "SELECT", session.select(&s.folder)).await?;
        let uidvalidity = mailbox.uid_validity.map(i64::from);
        let mut uids: Vec<u32> = within(secs, "UID SEARCH", session.uid_search("ALL"))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        // Pipelined: while the main loop processes one batch, the next two are fetched and handed over, so
        // it never waits on this connection; each batch is moved out once its acknowledgement says its
        // effects committed.
        let mut in_flight: std::collections::VecDeque<(Vec<u32>, oneshot::Receiver<Vec<Ack>>)> = Default::default();
        let mut settled = Settled::default();
        for chunk in uids.chunks(BATCH) {
            let started = std::time::Instant::now();
            let set = uid_set(chunk);
            let fetched: Vec<_> = within(secs * 4, "UID FETCH", async {
                session
                    .uid_fetch(&set, "(UID BODY.PEEK[])")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            let mut uids_in_order = Vec::new();
            let mut messages = Vec::new();
            for f in &fetched {
                let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                    continue;
                };
                let source = Source {
                    mailbox: format!("imap:{}:{}", s.username, s.folder),
                    uidvalidity,
                    uid: Some(i64::from(uid)),
                };
                uids_in_order.push(uid);
                messages.push((source, body.to_vec()));
            }
            tracing::debug!(
                folder = %s.folder,
                messages = messages.len(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "batch fetched"
            );
            if messages.is_empty() {
                continue;
            }
            let (ack_tx, ack_rx) = oneshot::channel();
            if tx
                .send(Incoming {
                    board: board.to_string(),
                    messages,
                    ack: ack_tx,
                })
                .await
                .is_err()
            {
                return Ok(());
            }
            in_flight.push_back((uids_in_order, ack_rx));
            if in_flight.len() > 2 {
                if let Some((uids, rx)) = in_flight.pop_front() {
                    settled.add(uids, rx).await?;
                    if settled.len() >= MOVE_AT_LEAST || settled.retry {
                        settled.move_out(&mut session, s, can_move).await?;
                    }
                }
            }
        }
        while let Some((uids, rx)) = in_flight.pop_front() {
            settled.add(uids, rx).await?;
        }
        settled.move_out(&mut session, s, can_move).await?;
        if *stop.borrow() {
            let _ = within(secs, "LOGOUT", session.logout()).await;
            return Ok(());
        }
        if can_idle {
            let mut idle = session.idle();
            within(secs, "IDLE", idle.init()).await?;
            let outcome = {
                let (wait, _interrupt) = idle.wait_with_timeout(Duration::from_secs(s.idle_seconds));
                tokio::select! {
                    r = wait => Some(r),
                    _ = stop.changed() => None,
                }
            };
            match outcome {
                None => return Ok(()),
                Some(Err(e)) => anyhow::bail!("IMAP IDLE: {e}"),
                Some(Ok(IdleResponse::NewData(_) | IdleResponse::Timeout | IdleResponse::ManualInterrupt)) => {}
            }
            session = within(secs, "DONE", idle.done()).await?;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(s.idle_seconds.min(60))) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::uid_set;

    #[test]
    fn uid_sets_write_runs_as_ranges() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[3, 1, 2, 5, 9, 10, 10]), "1:3,5,9:10");
        let backlog: Vec<u32> = (1..=300).chain(400..=450).collect();
        assert_eq!(uid_set(&backlog), "1:300,400:450");
    }
}
