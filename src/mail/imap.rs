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

/// Wait for a batch's acknowledgement, then move its messages out: processed ones to the processed folder,
/// unusable ones to quarantine. A message to retry stays, and the connection starts over.
async fn settle(
    session: &mut ImapSession,
    s: &ImapSettings,
    can_move: bool,
    uids: Vec<u32>,
    ack: oneshot::Receiver<Vec<Ack>>,
) -> anyhow::Result<()> {
    let secs = s.timeout_seconds;
    let acks = ack.await.map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
    let mut done = Vec::new();
    let mut quarantined = Vec::new();
    let mut retry = false;
    for (uid, ack) in uids.into_iter().zip(acks) {
        match ack {
            Ack::Done => done.push(uid),
            Ack::Quarantine => quarantined.push(uid),
            Ack::Retry => retry = true,
        }
    }
    for (uids, folder) in [(&done, &s.processed_folder), (&quarantined, &s.quarantine_folder)] {
        if uids.is_empty() {
            continue;
        }
        let set = uids.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(",");
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
    if retry {
        anyhow::bail!(
            "a message could not be processed; it stays in {} and will be tried again",
            s.folder
        );
    }
    Ok(())
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
        for chunk in uids.chunks(BATCH) {
            let set = chunk.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(",");
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
                    settle(&mut session, s, can_move, uids, rx).await?;
                }
            }
        }
        while let Some((uids, rx)) = in_flight.pop_front() {
            settle(&mut session, s, can_move, uids, rx).await?;
        }
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
