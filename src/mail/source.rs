//! Mailbox sources. Each source runs as its own task and hands every raw message to the daemon's main loop
//! as an [`Incoming`] with an acknowledgement channel; only when the main loop answers that the message's
//! effect has committed does the source move it out of the way (Maildir: `new/` to `cur/`; IMAP: moved to
//! the processed folder, or flagged). A message whose processing failed stays where it is and is tried
//! again. The embedded default is a local Maildir per board: `MAILBOX_DIR/BOARD/new`.
//!
//! Maildir readers read only complete messages. By the convention every mail delivery agent follows (and
//! `escalation-bot deliver`, [`deliver_to_maildir`]), a message is written in `tmp/` and renamed into
//! `new/`, so what appears there is whole. A file written into `new/` in place (a `cp` by hand) is read only
//! once its writer has closed it (inotify says so) or it has not changed for [`SETTLE`].

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::pipeline::Source;

/// What a message's processing came to, as the source needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Its effect committed: move it out of the inbox.
    Done,
    /// It could not be used at all and was kept in the database: move it to quarantine.
    Quarantine,
    /// Processing failed (the database was down…): leave it and try again.
    Retry,
    /// The bot's own notification to a board role whose address is this mailbox: file it, unread, in the
    /// board's notifications folder for the person who reads the mailbox.
    File,
}

/// Raw messages from one source, waiting to be processed together: the main loop answers with one
/// [`Ack`] per message, in order, once their effects have committed.
#[derive(Debug)]
pub struct Incoming {
    pub board: String,
    pub messages: Vec<(Source, Vec<u8>)>,
    pub ack: oneshot::Sender<Vec<Ack>>,
}

/// How many messages a source hands over at once.
pub const BATCH: usize = 100;

/// How often `new/` is looked at when nothing says a message arrived: each second where the kernel cannot
/// tell us (not Linux, or inotify refused), or after a message had to be left for another try; otherwise
/// every [`SAFETY_SCAN`], for what inotify cannot see (a folder shared over NFS, a lost event).
const POLL: Duration = Duration::from_secs(1);
const SAFETY_SCAN: Duration = Duration::from_secs(10);

/// How long a file in `new/` that no event announced as complete must have stayed unchanged before it is
/// read: a file still being written in place is left for the next look.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Deliver `raw` into the Maildir `dir` as a mail delivery agent does: written and synced in `tmp/` under a
/// unique name (owner-only), then renamed into `new/`. The path in `new/`.
pub fn deliver_to_maildir(dir: &std::path::Path, raw: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let name = format!(
        "{}.M{}P{}Q{n}.{host}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    );
    let tmp = dir.join("tmp").join(&name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(raw)?;
    f.sync_all()?;
    let to = dir.join("new").join(&name);
    std::fs::rename(&tmp, &to)?;
    Ok(to)
}

/// Whether a file in `new/` no event announced may be read: it has not changed for [`SETTLE`].
async fn settled(path: &std::path::Path) -> bool {
    match tokio::fs::metadata(path).await.and_then(|m| m.modified()) {
        Ok(modified) => modified.elapsed().is_ok_and(|age| age >= SETTLE),
        Err(_) => false,
    }
}

/// Word of arrivals in a Maildir's `new/`: inotify on Linux (a message delivered Maildir-style, written in
/// `tmp/` and renamed into `new/`, or a file written there and closed), so that an idle daemon sleeps
/// instead of listing folders; a poll elsewhere.
struct Arrivals {
    #[cfg(target_os = "linux")]
    events: Option<inotify::EventStream<Vec<u8>>>,
    /// Files the kernel said are complete (renamed into `new/`, or closed by their writer), not yet read.
    complete: std::collections::HashSet<std::ffi::OsString>,
}

impl Arrivals {
    fn watch(board: &str, new: &std::path::Path) -> Self {
        #[cfg(target_os = "linux")]
        {
            let events = inotify::Inotify::init().and_then(|i| {
                i.watches()
                    .add(new, inotify::WatchMask::MOVED_TO | inotify::WatchMask::CLOSE_WRITE)?;
                i.into_event_stream(vec![0u8; 4096])
            });
            match events {
                Ok(events) => Arrivals {
                    events: Some(events),
                    complete: Default::default(),
                },
                Err(e) => {
                    tracing::warn!(board, dir = %new.display(), error = %e,
                        "no inotify for the local mailbox folder: it is looked at every second instead");
                    Arrivals {
                        events: None,
                        complete: Default::default(),
                    }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (board, new);
            Arrivals {
                complete: Default::default(),
            }
        }
    }

    /// Wait until `new/` is worth another look: a message arrived, or the next scan is due.
    async fn wait(&mut self, retry: bool) {
        #[cfg(target_os = "linux")]
        if let Some(events) = self.events.as_mut() {
            use futures_util::StreamExt;
            let scan = if retry { POLL } else { SAFETY_SCAN };
            let lost = tokio::select! {
                _ = tokio::time::sleep(scan) => false,
                event = events.next() => {
                    // A delivery of many messages is many events: one scan takes them all.
                    let mut lost = true;
                    let mut next = event;
                    while let Some(Ok(e)) = next {
                        lost = false;
                        if let Some(name) = e.name {
                            self.complete.insert(name);
                        }
                        next = futures_util::FutureExt::now_or_never(events.next()).flatten();
                    }
                    lost
                }
            };
            if lost {
                // The watch is gone (an error reading events): poll from now on.
                tracing::warn!("inotify stopped for a local mailbox folder: it is looked at every second instead");
                self.events = None;
            }
            return;
        }
        let _ = retry;
        tokio::time::sleep(POLL).await;
    }
}

/// Watch `dir/new` for `board`: every message there goes to `tx`; done ones move to `cur/`.
pub async fn maildir(
    board: String,
    dir: PathBuf,
    notifications_folder: String,
    tx: mpsc::Sender<Incoming>,
    mut stop: watch::Receiver<bool>,
) {
    for sub in ["new", "cur", "tmp"] {
        if let Err(e) = tokio::fs::create_dir_all(dir.join(sub)).await {
            tracing::error!(board, dir = %dir.display(), error = %e, "cannot create the mailbox folder");
            return;
        }
    }
    // Watching starts before the first look, so that nothing delivered in between goes unnoticed.
    let mut arrivals = Arrivals::watch(&board, &dir.join("new"));
    tracing::info!(board, dir = %dir.display(), "watching the local mailbox folder");
    loop {
        let mut retry = false;
        let mut names = Vec::new();
        if let Ok(mut rd) = tokio::fs::read_dir(dir.join("new")).await {
            while let Ok(Some(entry)) = rd.next_entry().await {
                names.push(entry.file_name());
            }
        }
        names.sort();
        for chunk in names.chunks(BATCH) {
            if *stop.borrow() {
                return;
            }
            let mut files = Vec::new();
            let mut messages = Vec::new();
            for name in chunk {
                let path = dir.join("new").join(name);
                // Only whole messages: announced complete by the kernel, or unchanged for a while.
                if !arrivals.complete.remove(name) && !settled(&path).await {
                    retry = true;
                    continue;
                }
                if let Ok(raw) = tokio::fs::read(&path).await {
                    let source = Source {
                        mailbox: format!("maildir:{board}"),
                        uidvalidity: None,
                        uid: None,
                    };
                    messages.push((source, raw));
                    files.push((name.clone(), path));
                }
            }
            if messages.is_empty() {
                continue;
            }
            let (ack_tx, ack_rx) = oneshot::channel();
            if tx
                .send(Incoming {
                    board: board.clone(),
                    messages,
                    ack: ack_tx,
                })
                .await
                .is_err()
            {
                return;
            }
            let Ok(acks) = ack_rx.await else { return };
            for ((name, path), ack) in files.into_iter().zip(acks) {
                match ack {
                    Ack::Done | Ack::Quarantine => {
                        let mut done = name.clone();
                        done.push(":2,S");
                        let to = if ack == Ack::Done {
                            dir.join("cur").join(done)
                        } else {
                            dir.join("quarantine").join(&name)
                        };
                        if ack == Ack::Quarantine {
                            let _ = tokio::fs::create_dir_all(dir.join("quarantine")).await;
                        }
                        if let Err(e) = tokio::fs::rename(&path, &to).await {
                            tracing::warn!(file = %path.display(), error = %e, "processed, but could not be moved out of new/");
                        }
                    }
                    Ack::File => {
                        // A Maildir++ folder of the mailbox, the message left in new/ (unread).
                        let folder = dir.join(format!(".{}", notifications_folder.replace(['/', '.'], " ")));
                        for sub in ["new", "cur", "tmp"] {
                            let _ = tokio::fs::create_dir_all(folder.join(sub)).await;
                        }
                        if let Err(e) = tokio::fs::rename(&path, folder.join("new").join(&name)).await {
                            tracing::warn!(file = %path.display(), error = %e, "processed, but could not be filed");
                        }
                    }
                    Ack::Retry => retry = true,
                }
            }
            if retry {
                break;
            }
        }
        tokio::select! {
            _ = arrivals.wait(retry) => {}
            _ = stop.changed() => return,
        }
    }
}
