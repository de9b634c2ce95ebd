//! Mailbox sources. Each source runs as its own task and hands every raw message to the daemon's main loop
//! as an [`Incoming`] with an acknowledgement channel; only when the main loop answers that the message's
//! effect has committed does the source move it out of the way (Maildir: `new/` to `cur/`; IMAP: moved to
//! the processed folder, or flagged). A message whose processing failed stays where it is and is tried
//! again. The embedded default is a local Maildir per board: `MAILBOX_DIR/BOARD/new`.

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

/// Word of arrivals in a Maildir's `new/`: inotify on Linux (a message delivered Maildir-style, written in
/// `tmp/` and renamed into `new/`, or a file written there and closed), so that an idle daemon sleeps
/// instead of listing folders; a poll elsewhere.
struct Arrivals {
    #[cfg(target_os = "linux")]
    events: Option<inotify::EventStream<Vec<u8>>>,
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
                Ok(events) => Arrivals { events: Some(events) },
                Err(e) => {
                    tracing::warn!(board, dir = %new.display(), error = %e,
                        "no inotify for the local mailbox folder: it is looked at every second instead");
                    Arrivals { events: None }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (board, new);
            Arrivals {}
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
                    while let Some(Some(Ok(_))) = futures_util::FutureExt::now_or_never(events.next()) {}
                    !matches!(event, Some(Ok(_)))
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
pub async fn maildir(board: String, dir: PathBuf, tx: mpsc::Sender<Incoming>, mut stop: watch::Receiver<bool>) {
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
