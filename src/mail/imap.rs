//! The IMAP mailbox source (async-imap): TLS (rustls), or plain only for a server on this machine; IDLE
//! where the server offers it, re-issued every `idle_seconds` (9 minutes by default, well inside
//! firewall/NAT idle timeouts), with a NOOP to check a connection that sat idle, polling where it does not;
//! reconnection with backoff; a timeout on every command.
//!
//! Every message still in the watched folder and not flagged \Deleted is unprocessed. Its size is asked
//! for first (RFC822.SIZE), so that memory stays bounded whatever arrives: messages are fetched whole
//! (without setting \Seen) in batches of at most [`BATCH`] messages and [`BATCH_BYTES`] bytes, and a message
//! larger than the pipeline reads ([`Limits`]) is never downloaded: it is handed over by its headers alone,
//! marked as such ([`OVERSIZED_HEADER`]), so that the daemon records it, and then moved to quarantine.
//! Only once the main loop says a message's effect committed is it moved out of the folder: UID MOVE where
//! the server has MOVE; otherwise UID COPY, \Deleted and UID EXPUNGE of exactly those UIDs (UIDPLUS); and
//! where the server has neither, the copied messages are only flagged \Deleted and \Seen, never expunged,
//! because a plain EXPUNGE would also remove mail people flagged \Deleted themselves in a shared mailbox.
//! Identity is (mailbox, UIDVALIDITY, UID) plus Message-ID, so a crash between commit and move, or a
//! UIDVALIDITY change, has no second effect.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::Fetch;
use async_imap::Session;
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::mime::Limits;
use super::oauth::{TokenSource, XOAuth2Imap};
use super::pipeline::Source;
use super::source::{Ack, Incoming, BATCH};
pub use crate::config::ImapSettings;

/// The most bytes of whole messages fetched in one batch (besides at most [`BATCH`] messages): a backlog
/// of large messages comes in several small batches rather than one that holds them all.
pub const BATCH_BYTES: u64 = 25 * 1024 * 1024;

/// The most bytes of fetched messages handed to the daemon and not yet acknowledged, counting the batch
/// being fetched: with large messages the source runs fewer batches ahead of the daemon.
const IN_FLIGHT_BYTES: u64 = 2 * BATCH_BYTES;

/// How many messages' sizes one FETCH asks for.
const SIZES_AT_ONCE: usize = 1000;

/// The first header line of a message that the IMAP source hands to the daemon by its headers alone,
/// because the server says it is larger than the pipeline reads (`Limits::max_bytes`): its body was never
/// downloaded. The line reads `X-Escalation-Bot-Oversized: size=31457280; limit=26214400` (bytes), and
/// what follows it is the message's own header section (`BODY.PEEK[HEADER]`, at most
/// `Limits::max_header_bytes` of it), ending with the blank line.
///
/// The pipeline must record such a message as too large to read, and answer [`Ack::Quarantine`]; use
/// [`oversized`] to recognise it (in `mime::decode`, before any other check). Whatever the pipeline
/// answers, the source moves the message to the quarantine folder (unless it is to be retried), since it
/// was never read. A message that begins with this line on its own (a mail client can APPEND anything)
/// is treated the same way: it can only get itself quarantined.
pub const OVERSIZED_HEADER: &str = "X-Escalation-Bot-Oversized";

/// What the [`OVERSIZED_HEADER`] line says: the message's size on the server and the limit it exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    pub size: u64,
    pub limit: u64,
}

/// The [`OVERSIZED_HEADER`] line at the start of `raw`, if there is one: the message was handed over by
/// its headers alone because it is larger than the bot reads.
pub fn oversized(raw: &[u8]) -> Option<Oversized> {
    let rest = raw.strip_prefix(OVERSIZED_HEADER.as_bytes())?.strip_prefix(b":")?;
    let end = rest.iter().take(200).position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(rest.get(..end)?).ok()?;
    let (mut size, mut limit) = (None, None);
    for part in line.split(';') {
        match part.trim().split_once('=') {
            Some(("size", v)) => size = v.trim().parse().ok(),
            Some(("limit", v)) => limit = v.trim().parse().ok(),
            _ => {}
        }
    }
    Some(Oversized {
        size: size?,
        limit: limit?,
    })
}

/// The raw message handed over for one too large to read: the [`OVERSIZED_HEADER`] line, then its header
/// section, which ends with a blank line even where the server cut it short.
fn oversized_handover(header: &[u8], size: u64, limit: u64) -> Vec<u8> {
    let marker = format!("{OVERSIZED_HEADER}: size={size}; limit={limit}\r\n");
    let mut raw = Vec::with_capacity(marker.len() + header.len() + 2);
    raw.extend_from_slice(marker.as_bytes());
    if header.ends_with(b"\n\r\n") || header.ends_with(b"\n\n") {
        raw.extend_from_slice(header);
    } else {
        // Cut short (or empty): keep whole lines only, then end the header section.
        let whole = header.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
        raw.extend_from_slice(header.get(..whole).unwrap_or_default());
        raw.extend_from_slice(b"\r\n");
    }
    raw
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

/// Why `tls = "none"` may not be used for `s`, if it may not: only a server on this machine is reached
/// without TLS.
fn plain_refused(s: &ImapSettings) -> Option<String> {
    (s.tls == "none" && !crate::config::is_loopback_host(&s.host)).then(|| {
        format!(
            "tls = \"none\" is allowed only for a server on this machine (127.0.0.1, ::1 or localhost), not {}: \
             the password and every message would cross the network unencrypted; remove the tls line to use TLS",
            s.host
        )
    })
}

/// A connection error in plain words: what an operator should look at.
pub fn explain_connect(s: &ImapSettings, e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let lower = text.to_lowercase();
    let at = format!("{}:{}", s.host, s.port);
    if lower.contains("lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no address associated")
        || lower.contains("nodename nor servname")
    {
        format!(
            "the IMAP server's name {} is not found in DNS: check imap.host ({text})",
            s.host
        )
    } else if lower.contains("connection refused") {
        format!("nothing answers at {at} (connection refused): check imap.host and imap.port")
    } else if lower.contains("imap connect: no answer") {
        format!(
            "no answer from {at} within {} s: a firewall, or the wrong host or port",
            s.timeout_seconds
        )
    } else if lower.contains("certificate") || lower.contains("imap tls") {
        format!(
            "the TLS connection to {at} failed: the server's certificate is not trusted or does not name {} ({text})",
            s.host
        )
    } else {
        text
    }
}

/// Connect and log in: with the password, or with an OAuth2 token from `oauth` (XOAUTH2). A refused token
/// is dropped from the cache and the login tried once more at once with a new one (a token expired early
/// or revoked); a second refusal is the error.
async fn connect(s: &ImapSettings, oauth: Option<&TokenSource>) -> anyhow::Result<ImapSession> {
    match connect_once(s, oauth).await {
        Err(e) if oauth.is_some() && e.to_string().contains(TOKEN_REFUSED) => {
            tracing::warn!(host = %s.host, user = %s.username, "the IMAP server refused the OAuth2 token; trying again with a new one");
            connect_once(s, oauth).await
        }
        other => other,
    }
}

/// How a refused OAuth2 login is said (and recognised).
const TOKEN_REFUSED: &str = "the mailbox refused the OAuth2 token";

async fn connect_once(s: &ImapSettings, oauth: Option<&TokenSource>) -> anyhow::Result<ImapSession> {
    if let Some(why) = plain_refused(s) {
        anyhow::bail!("{why}");
    }
    let tcp = within(
        s.timeout_seconds,
        "connect",
        TcpStream::connect((s.host.as_str(), s.port)),
    )
    .await?;
    let stream: Box<dyn Conn> = if s.tls == "none" {
        // The name said this machine; the address connected to must say so too (a name can resolve anywhere).
        let peer = tcp.peer_addr()?;
        if !peer.ip().to_canonical().is_loopback() {
            anyhow::bail!(
                "tls = \"none\" is allowed only for a server on this machine, but {} is at {peer}: refusing to \
                 send the password unencrypted",
                s.host
            );
        }
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
    let wait = Duration::from_secs(s.timeout_seconds);
    if let Some(source) = oauth {
        let token = source
            .token()
            .await
            .map_err(|e| anyhow::anyhow!("OAuth2 token for IMAP: {e}"))?;
        let login = client.authenticate("XOAUTH2", XOAuth2Imap::new(&s.username, &token.0));
        return match tokio::time::timeout(wait, login).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err((e, _))) => {
                source.invalidate(&token);
                Err(anyhow::anyhow!(
                    "{TOKEN_REFUSED} for {} ({e}): the app registration may have no permission \
                     on this mailbox (Exchange Online: New-ServicePrincipal and Add-MailboxPermission), or the token \
                     expired early or was revoked; a new token is fetched for the next try",
                    s.username
                ))
            }
            Err(_) => Err(anyhow::anyhow!(
                "IMAP AUTHENTICATE: no answer within {} s",
                s.timeout_seconds
            )),
        };
    }
    let password = s.password.as_ref().map(|p| p.0.clone()).unwrap_or_default();
    let login = client.login(&s.username, &password);
    match tokio::time::timeout(wait, login).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((e, _))) => Err(anyhow::anyhow!(
            "the mailbox refused the user name or password for {} ({e}): check imap.username and the password; \
             Microsoft 365 and NHSmail refuse passwords: use auth = \"oauth2\"",
            s.username
        )),
        Err(_) => Err(anyhow::anyhow!("IMAP login: no answer within {} s", s.timeout_seconds)),
    }
}

/// Retention in the mailbox: the messages the bot filed in its own folders (processed, quarantine, the
/// board's notifications) that arrived before `before` are deleted (with `dry_run`, counted). The watched
/// folder is left alone: what is there has not been processed yet. Returns how many.
pub async fn purge_filed_before(s: &ImapSettings, before: chrono::NaiveDate, dry_run: bool) -> anyhow::Result<usize> {
    let oauth = token_source(s);
    let mut session = connect(s, oauth.as_ref()).await?;
    let secs = s.timeout_seconds;
    let caps = within(secs, "CAPABILITY", session.capabilities()).await?;
    let uidplus = caps.has_str("UIDPLUS");
    let existing = list_folders(&mut session, secs).await?;
    let mut removed = 0;
    let mut folders: Vec<&String> = vec![&s.processed_folder, &s.quarantine_folder, &s.notifications_folder];
    folders.dedup();
    for folder in folders {
        if folder.is_empty() || folder == &s.folder || !existing.contains(folder) {
            continue;
        }
        within(secs, "SELECT", session.select(folder)).await?;
        // IMAP's BEFORE compares the internal date (when the message arrived) with a day.
        let query = format!("UNDELETED BEFORE {}", before.format("%-d-%b-%Y"));
        let uids: Vec<u32> = within(secs, "UID SEARCH", session.uid_search(&query))
            .await?
            .into_iter()
            .collect();
        removed += uids.len();
        if dry_run || uids.is_empty() {
            continue;
        }
        let mut sorted = uids;
        sorted.sort_unstable();
        let set = uid_set(&sorted);
        within(secs, "UID STORE", async {
            session
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        // These folders are the bot's own: without UIDPLUS a plain EXPUNGE removes only what it flagged
        // and whatever someone else deleted there.
        if uidplus {
            within(secs, "UID EXPUNGE", async {
                session.uid_expunge(&set).await?.try_collect::<Vec<_>>().await
            })
            .await?;
        } else {
            within(secs, "EXPUNGE", async {
                session.expunge().await?.try_collect::<Vec<_>>().await
            })
            .await?;
        }
    }
    let _ = within(secs, "LOGOUT", session.logout()).await;
    Ok(removed)
}

/// Every folder of the mailbox.
async fn list_folders(session: &mut ImapSession, secs: u64) -> anyhow::Result<Vec<String>> {
    within(secs, "LIST", async {
        let names: Vec<_> = session.list(Some(""), Some("*")).await?.try_collect().await?;
        Ok::<_, async_imap::error::Error>(names.iter().map(|n| n.name().to_string()).collect::<Vec<String>>())
    })
    .await
}

/// The token source for a mailbox that logs in with OAuth2.
pub fn token_source(s: &ImapSettings) -> Option<TokenSource> {
    match (s.auth.as_str(), &s.oauth2) {
        ("oauth2", Some(o)) => Some(TokenSource::shared(o)),
        _ => None,
    }
}

/// What `check-config --connect` found in a board's mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The folders the mailbox has, after any were created.
    pub folders: Vec<String>,
    /// The folders the bot needed and created.
    pub created: Vec<String>,
}

/// Log in to the mailbox, list its folders and create the processed, quarantine and notifications folders
/// if missing: `check-config --connect`. The watched folder must exist already (it is where mail arrives).
pub async fn check(s: &ImapSettings) -> Result<Checked, String> {
    let oauth = token_source(s);
    let mut session = connect(s, oauth.as_ref()).await.map_err(|e| explain_connect(s, &e))?;
    let secs = s.timeout_seconds;
    let mut folders = list_folders(&mut session, secs).await.map_err(|e| e.to_string())?;
    let has = |folders: &[String], f: &str| {
        folders
            .iter()
            .any(|x| x == f || (f.eq_ignore_ascii_case("INBOX") && x.eq_ignore_ascii_case("INBOX")))
    };
    if !has(&folders, &s.folder) {
        let _ = within(secs, "LOGOUT", session.logout()).await;
        return Err(format!(
            "the folder {:?} (imap.folder) does not exist in {}'s mailbox; it has: {}",
            s.folder,
            s.username,
            folders.join(", ")
        ));
    }
    let mut created = Vec::new();
    for f in [&s.processed_folder, &s.quarantine_folder, &s.notifications_folder] {
        if f.is_empty() || has(&folders, f) || created.contains(f) {
            continue;
        }
        within(secs, "CREATE", session.create(f)).await.map_err(|e| {
            format!(
                "the folder {f:?} is missing and could not be created ({e}): the mailbox permission may be read-only"
            )
        })?;
        created.push(f.clone());
    }
    if !created.is_empty() {
        folders = list_folders(&mut session, secs).await.map_err(|e| e.to_string())?;
    }
    let _ = within(secs, "LOGOUT", session.logout()).await;
    Ok(Checked { folders, created })
}

/// Watch `settings.folder` for `board` until `stop`, reconnecting with backoff.
pub async fn watch_mailbox(
    board: String,
    settings: ImapSettings,
    tx: mpsc::Sender<Incoming>,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(why) = plain_refused(&settings) {
        tracing::error!(board, host = %settings.host, "the IMAP mailbox is not watched: {why}");
        // Said unhealthy by /healthz once the grace has passed, not silently absent.
        crate::monitor::monitor().source(&board, false);
        return;
    }
    let mut backoff = 1u64;
    let mut warned = false;
    // One token cache per mailbox, kept across reconnections: a renewed token is used on the next one.
    let oauth = token_source(&settings);
    loop {
        if *stop.borrow() {
            return;
        }
        let began = std::time::Instant::now();
        let ended = session(&board, &settings, oauth.as_ref(), &tx, &mut stop, &mut warned).await;
        crate::monitor::monitor().source(&board, false);
        // A connection that lasted is no sign of trouble: its loss is retried quickly again.
        if began.elapsed() > Duration::from_secs(60) {
            backoff = 1;
        }
        match ended {
            Ok(()) => return,
            Err(e) => {
                let error = explain_connect(&settings, &e);
                tracing::warn!(board, host = %settings.host, %error, retry_in_seconds = backoff, "IMAP connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(backoff)) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(60);
            }
        }
    }
}

/// How settled messages leave the watched folder, by what the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// UID MOVE (RFC 6851).
    Move,
    /// UID COPY, then \Deleted and UID EXPUNGE of exactly the UIDs copied (UIDPLUS, RFC 4315).
    CopyAndUidExpunge,
    /// UID COPY, then \Deleted and \Seen, and no expunge at all: a plain EXPUNGE would also remove what
    /// people flagged \Deleted themselves. The flagged messages are not read again (the search skips
    /// \Deleted), and wait for someone to expunge the folder.
    CopyAndFlag,
}

impl Removal {
    fn offered(can_move: bool, uidplus: bool) -> Removal {
        if can_move {
            Removal::Move
        } else if uidplus {
            Removal::CopyAndUidExpunge
        } else {
            Removal::CopyAndFlag
        }
    }
}

/// A batch handed to the daemon and not yet acknowledged.
struct InFlight {
    /// Each message's UID, and whether it was handed over by its headers alone (too large to read).
    uids: Vec<(u32, bool)>,
    /// The bytes handed over.
    bytes: u64,
    ack: oneshot::Receiver<Vec<Ack>>,
}

/// Messages whose effects have committed, waiting to be moved out of the watched folder together: a
/// server's MOVE costs it much per command as well as per message (Dovecot on this machine: about 31 ms
/// for 100 messages, 18 ms per 100 for 250), so during a backlog several batches go in one command.
#[derive(Default)]
struct Settled {
    done: Vec<u32>,
    quarantined: Vec<u32>,
    /// The bot's own notifications, for the board's notifications folder.
    filed: Vec<u32>,
    /// A message could not be processed: it stays, and the connection starts over once the rest is out.
    retry: bool,
}

/// How many settled messages wait for one MOVE while more batches are on their way.
const MOVE_AT_LEAST: usize = 250;

impl Settled {
    fn len(&self) -> usize {
        self.done.len() + self.quarantined.len() + self.filed.len()
    }

    /// Wait for a batch's acknowledgement and add its messages. A message handed over by its headers alone
    /// goes to quarantine even when the daemon says done: it was never read.
    async fn add(&mut self, batch: InFlight) -> anyhow::Result<()> {
        let waited = std::time::Instant::now();
        let acks = batch.ack.await.map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
        tracing::debug!(
            waited_ms = waited.elapsed().as_secs_f64() * 1e3,
            messages = batch.uids.len(),
            "batch acknowledged"
        );
        if acks.len() != batch.uids.len() {
            // Messages without an answer stay, and are fetched again on the next connection.
            self.retry = true;
        }
        for ((uid, too_large), ack) in batch.uids.into_iter().zip(acks) {
            match ack {
                Ack::Done if too_large => self.quarantined.push(uid),
                Ack::Done => self.done.push(uid),
                Ack::Quarantine => self.quarantined.push(uid),
                Ack::File => self.filed.push(uid),
                Ack::Retry => self.retry = true,
            }
        }
        Ok(())
    }

    /// Move what has settled: processed messages to the processed folder, unusable ones to quarantine.
    /// Then, if a message is to be retried, fail, so that the connection starts over and fetches it again.
    async fn move_out(&mut self, session: &mut ImapSession, s: &ImapSettings, removal: Removal) -> anyhow::Result<()> {
        let secs = s.timeout_seconds;
        let started = std::time::Instant::now();
        let (done, quarantined) = (std::mem::take(&mut self.done), std::mem::take(&mut self.quarantined));
        let filed = std::mem::take(&mut self.filed);
        for (uids, folder) in [
            (&done, &s.processed_folder),
            (&quarantined, &s.quarantine_folder),
            (&filed, &s.notifications_folder),
        ] {
            if uids.is_empty() {
                continue;
            }
            let set = uid_set(uids);
            if removal == Removal::Move {
                within(secs, "UID MOVE", session.uid_mv(&set, folder)).await?;
                continue;
            }
            within(secs, "UID COPY", session.uid_copy(&set, folder)).await?;
            let flags = if removal == Removal::CopyAndUidExpunge {
                "+FLAGS.SILENT (\\Deleted)"
            } else {
                "+FLAGS.SILENT (\\Deleted \\Seen)"
            };
            within(secs, "UID STORE", async {
                session.uid_store(&set, flags).await?.try_collect::<Vec<_>>().await
            })
            .await?;
            if removal == Removal::CopyAndUidExpunge {
                // Exactly the UIDs copied: a plain EXPUNGE would also remove what people flagged \Deleted.
                within(secs, "UID EXPUNGE", async {
                    session.uid_expunge(&set).await?.try_collect::<Vec<_>>().await
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
        while i + 1 < sorted.len() && Some(sorted[i + 1]) == last.checked_add(1) {
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

/// A message in the watched folder and its size on the server (RFC822.SIZE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listed {
    uid: u32,
    size: u64,
}

/// One batch to fetch, in UID order: messages read whole, and those larger than `limit`, read by their
/// headers alone.
#[derive(Debug, Default, PartialEq, Eq)]
struct Planned {
    messages: Vec<Listed>,
    /// The most bytes the batch's fetch brings: whole messages' sizes, and a header section's limit for
    /// each message too large to read.
    bytes: u64,
}

/// Split the folder's messages into batches of at most [`BATCH`] messages and [`BATCH_BYTES`] bytes (a
/// message alone in its batch may be larger, up to `limit`).
fn plan(listed: &[Listed], limit: u64, header_bytes: u64) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut current = Planned::default();
    for m in listed {
        let cost = if m.size > limit { header_bytes } else { m.size };
        if !current.messages.is_empty() && (current.messages.len() >= BATCH || current.bytes + cost > BATCH_BYTES) {
            out.push(std::mem::take(&mut current));
        }
        current.messages.push(*m);
        current.bytes += cost;
    }
    if !current.messages.is_empty() {
        out.push(current);
    }
    out
}

/// The sizes of the messages `uids`, in UID order (a message expunged meanwhile is left out).
async fn sizes(session: &mut ImapSession, uids: &[u32], secs: u64) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::with_capacity(uids.len());
    for chunk in uids.chunks(SIZES_AT_ONCE) {
        let set = uid_set(chunk);
        within(secs * 4, "UID FETCH RFC822.SIZE", async {
            let mut fetched = session.uid_fetch(&set, "(UID RFC822.SIZE)").await?;
            while let Some(f) = fetched.try_next().await? {
                if let (Some(uid), Some(size)) = (f.uid, f.size) {
                    out.push(Listed {
                        uid,
                        size: u64::from(size),
                    });
                }
            }
            Ok::<_, async_imap::error::Error>(())
        })
        .await?;
    }
    out.sort_unstable_by_key(|m| m.uid);
    out.dedup_by_key(|m| m.uid);
    Ok(out)
}

/// Fetch `uids` with `query` and keep, by UID, the bytes `part` takes from each answer. Answers are taken
/// one at a time and dropped once their bytes are out, so a batch is never held twice.
async fn fetch_parts(
    session: &mut ImapSession,
    uids: &[u32],
    query: &str,
    part: fn(&Fetch) -> Option<&[u8]>,
    secs: u64,
) -> anyhow::Result<HashMap<u32, Vec<u8>>> {
    let mut out = HashMap::with_capacity(uids.len());
    if uids.is_empty() {
        return Ok(out);
    }
    let set = uid_set(uids);
    within(secs, "UID FETCH", async {
        let mut fetched = session.uid_fetch(&set, query).await?;
        while let Some(f) = fetched.try_next().await? {
            if let (Some(uid), Some(bytes)) = (f.uid, part(&f)) {
                out.insert(uid, bytes.to_vec());
            }
        }
        Ok::<_, async_imap::error::Error>(())
    })
    .await?;
    Ok(out)
}

/// Fetch a planned batch: whole messages, and the headers alone of those too large to read, handed over
/// with the [`OVERSIZED_HEADER`] line. In UID order, each with whether it was too large.
async fn fetch_batch(
    session: &mut ImapSession,
    board: &str,
    s: &ImapSettings,
    batch: &Planned,
    uidvalidity: Option<i64>,
    limits: &Limits,
) -> anyhow::Result<(Vec<(u32, bool)>, Vec<(Source, Vec<u8>)>)> {
    let secs = s.timeout_seconds;
    let limit = limits.max_bytes as u64;
    let started = std::time::Instant::now();
    let (large, whole): (Vec<Listed>, Vec<Listed>) = batch.messages.iter().partition(|m| m.size > limit);
    let whole_uids: Vec<u32> = whole.iter().map(|m| m.uid).collect();
    let large_uids: Vec<u32> = large.iter().map(|m| m.uid).collect();
    let mut bodies = fetch_parts(session, &whole_uids, "(UID BODY.PEEK[])", Fetch::body, secs * 4).await?;
    let header_query = format!("(UID BODY.PEEK[HEADER]<0.{}>)", limits.max_header_bytes);
    let mut headers = fetch_parts(session, &large_uids, &header_query, Fetch::header, secs).await?;
    let mut uids = Vec::with_capacity(batch.messages.len());
    let mut messages = Vec::with_capacity(batch.messages.len());
    for m in &batch.messages {
        let too_large = m.size > limit;
        let raw = if too_large {
            let Some(header) = headers.remove(&m.uid) else {
                continue;
            };
            tracing::warn!(
                board,
                folder = %s.folder,
                uid = m.uid,
                size = m.size,
                limit,
                "a message larger than the bot reads is handed over by its headers alone, and goes to {}",
                s.quarantine_folder
            );
            oversized_handover(&header, m.size, limit)
        } else {
            let Some(body) = bodies.remove(&m.uid) else {
                continue;
            };
            body
        };
        let source = Source {
            mailbox: format!("imap:{}:{}", s.username, s.folder),
            uidvalidity,
            uid: Some(i64::from(m.uid)),
        };
        uids.push((m.uid, too_large));
        messages.push((source, raw));
    }
    // Word the server volunteered (new messages, flags) is not needed: the next search sees it.
    while session.unsolicited_responses.try_recv().is_ok() {}
    tracing::debug!(
        folder = %s.folder,
        messages = messages.len(),
        too_large = large_uids.len(),
        bytes = batch.bytes,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "batch fetched"
    );
    Ok((uids, messages))
}

/// One connection's life: drain the folder, then wait (IDLE or poll) for more, until `stop` or an error.
/// `warned` says whether the lack of MOVE and UIDPLUS has been logged already (once per board).
async fn session(
    board: &str,
    s: &ImapSettings,
    oauth: Option<&TokenSource>,
    tx: &mpsc::Sender<Incoming>,
    stop: &mut watch::Receiver<bool>,
    warned: &mut bool,
) -> anyhow::Result<()> {
    let secs = s.timeout_seconds;
    let limits = Limits::default();
    let mut session = connect(s, oauth).await?;
    let caps = within(secs, "CAPABILITY", session.capabilities()).await?;
    let can_idle = caps.has_str("IDLE");
    let removal = Removal::offered(caps.has_str("MOVE"), caps.has_str("UIDPLUS"));
    if removal == Removal::CopyAndFlag && !*warned {
        *warned = true;
        tracing::warn!(
            board,
            host = %s.host,
            "the IMAP server offers neither MOVE nor UIDPLUS: processed messages are copied to {} and {} and \
             left in {} flagged \\Deleted and \\Seen, never expunged, because a plain EXPUNGE would also remove \
             mail people flagged \\Deleted themselves; expunge the folder from a mail client now and then",
            s.processed_folder,
            s.quarantine_folder,
            s.folder
        );
    }
    for folder in [&s.processed_folder, &s.quarantine_folder, &s.notifications_folder] {
        // Already there is fine.
        let _ = within(secs, "CREATE", session.create(folder)).await;
    }
    tracing::info!(board, host = %s.host, folder = %s.folder, idle = can_idle, removal = ?removal, "watching the IMAP mailbox");
    loop {
        let mailbox = within(secs, "SELECT", session.select(&s.folder)).await?;
        // Connected is logged in and able to read the folder.
        crate::monitor::monitor().source(board, true);
        let uidvalidity = mailbox.uid_validity.map(i64::from);
        // A message flagged \Deleted is on its way out (copied by the bot on a server without MOVE, or
        // deleted by someone): it is not read.
        let uids: Vec<u32> = within(secs, "UID SEARCH", session.uid_search("UNDELETED"))
            .await?
            .into_iter()
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect();
        let listed = sizes(&mut session, &uids, secs).await?;
        // Pipelined: while the main loop processes one batch, the next two are fetched and handed over (fewer
        // when they are large: at most IN_FLIGHT_BYTES are out at once), so it rarely waits on this
        // connection; each batch is moved out once its acknowledgement says its effects committed.
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut in_flight_bytes = 0u64;
        let mut settled = Settled::default();
        for batch in plan(&listed, limits.max_bytes as u64, limits.max_header_bytes as u64) {
            while in_flight.len() > 2 || (!in_flight.is_empty() && in_flight_bytes + batch.bytes > IN_FLIGHT_BYTES) {
                let Some(oldest) = in_flight.pop_front() else {
                    break;
                };
                in_flight_bytes = in_flight_bytes.saturating_sub(oldest.bytes);
                settled.add(oldest).await?;
                if settled.len() >= MOVE_AT_LEAST || settled.retry {
                    settled.move_out(&mut session, s, removal).await?;
                }
            }
            let (uids, messages) = fetch_batch(&mut session, board, s, &batch, uidvalidity, &limits).await?;
            if messages.is_empty() {
                continue;
            }
            let bytes = messages.iter().map(|(_, raw)| raw.len() as u64).sum();
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
            in_flight_bytes += bytes;
            in_flight.push_back(InFlight {
                uids,
                bytes,
                ack: ack_rx,
            });
        }
        while let Some(batch) = in_flight.pop_front() {
            settled.add(batch).await?;
        }
        settled.move_out(&mut session, s, removal).await?;
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
            let quiet = match outcome {
                None => return Ok(()),
                Some(Err(e)) => anyhow::bail!("IMAP IDLE: {e}"),
                Some(Ok(IdleResponse::Timeout)) => true,
                Some(Ok(IdleResponse::NewData(_) | IdleResponse::ManualInterrupt)) => false,
            };
            session = within(secs, "DONE", idle.done()).await?;
            if quiet {
                // Nothing was heard for the whole IDLE: check the connection is still there before using it.
                within(secs, "NOOP", session.noop()).await?;
            }
            crate::monitor::monitor().imap_activity(board);
        } else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(s.idle_seconds.min(60))) => {}
                _ = stop.changed() => return Ok(()),
            }
            // The connection sat idle since the last look: check it is still there.
            within(secs, "NOOP", session.noop()).await?;
            crate::monitor::monitor().imap_activity(board);
        }
        while session.unsolicited_responses.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_write_runs_as_ranges() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[3, 1, 2, 5, 9, 10, 10]), "1:3,5,9:10");
        let backlog: Vec<u32> = (1..=300).chain(400..=450).collect();
        assert_eq!(uid_set(&backlog), "1:300,400:450");
    }

    fn listed(sizes: &[u64]) -> Vec<Listed> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Listed {
                uid: i as u32 + 1,
                size,
            })
            .collect()
    }

    #[test]
    fn batches_hold_at_most_batch_messages_and_batch_bytes() {
        const MB: u64 = 1024 * 1024;
        let limit = 25 * MB;
        // Many small messages: batches of BATCH.
        let small = plan(&listed(&vec![10_000; 250]), limit, 256 * 1024);
        assert_eq!(
            small.iter().map(|b| b.messages.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        // Large ones: by bytes, each batch within BATCH_BYTES, a message at the limit alone.
        let large = plan(&listed(&[10 * MB, 10 * MB, 10 * MB, 25 * MB, MB]), limit, 256 * 1024);
        assert_eq!(large.iter().map(|b| b.messages.len()).collect::<Vec<_>>(), [2, 1, 1, 1]);
        assert!(large.iter().all(|b| b.bytes <= BATCH_BYTES));
        // One too large to read costs only its header section.
        let too_large = plan(&listed(&[30 * MB, MB]), limit, 256 * 1024);
        assert_eq!(too_large.len(), 1);
        assert_eq!(too_large[0].bytes, 256 * 1024 + MB);
        // Order is kept.
        let uids: Vec<u32> = large.iter().flat_map(|b| b.messages.iter().map(|m| m.uid)).collect();
        assert_eq!(uids, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_message_too_large_is_handed_over_by_its_headers_with_a_marker() {
        let header = b"From: a@example.org\r\nSubject: big\r\n\r\n";
        let raw = oversized_handover(header, 31_457_280, 26_214_400);
        assert!(raw.starts_with(b"X-Escalation-Bot-Oversized: size=31457280; limit=26214400\r\nFrom: "));
        assert!(raw.ends_with(b"Subject: big\r\n\r\n"));
        assert_eq!(
            oversized(&raw),
            Some(Oversized {
                size: 31_457_280,
                limit: 26_214_400
            })
        );
        // A header section cut short ends at its last whole line, then a blank line.
        let cut = oversized_handover(b"From: a@example.org\r\nSubject: bi", 9, 1);
        assert!(cut.ends_with(b"From: a@example.org\r\n\r\n"));
        assert!(oversized(&oversized_handover(b"", 9, 1)).is_some());
        // Ordinary messages, and a marker line that says nothing, are not oversized.
        assert_eq!(oversized(b"From: a@example.org\r\n\r\nhello"), None);
        assert_eq!(oversized(b"X-Escalation-Bot-Oversized: yes\r\n\r\n"), None);
        assert_eq!(oversized(b"X-Escalation-Bot-Oversized: size=1"), None);
    }

    #[test]
    fn plain_imap_is_refused_unless_the_server_is_on_this_machine() {
        let mut s: ImapSettings = toml::from_str("host = \"imap.example.org\"\nusername = \"u\"\ntls = \"none\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(plain_refused(&s).is_some());
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "localhost",
            "LOCALHOST",
            "::ffff:127.0.0.1",
        ] {
            s.host = host.into();
            assert_eq!(plain_refused(&s), None, "{host}");
        }
        for host in ["10.0.0.1", "128.0.0.1", "::2", "localhost.example.org", "[::1]"] {
            s.host = host.into();
            assert!(plain_refused(&s).is_some(), "{host}");
        }
        s.tls = "tls".into();
        assert_eq!(plain_refused(&s), None);
    }

    #[test]
    fn removal_follows_what_the_server_offers() {
        assert_eq!(Removal::offered(true, true), Removal::Move);
        assert_eq!(Removal::offered(true, false), Removal::Move);
        assert_eq!(Removal::offered(false, true), Removal::CopyAndUidExpunge);
        assert_eq!(Removal::offered(false, false), Removal::CopyAndFlag);
    }

    #[test]
    fn the_default_idle_is_re_issued_within_ten_minutes() {
        let s: ImapSettings =
            toml::from_str("host = \"imap.example.org\"\nusername = \"u\"").unwrap_or_else(|e| panic!("{e}"));
        assert!(s.idle_seconds <= 10 * 60, "{}", s.idle_seconds);
        assert_eq!(s.tls, "tls");
    }
}
