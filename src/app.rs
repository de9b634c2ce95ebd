//! The daemon and the glue between configuration, clock and store.
//!
//! [`run`] is the library entry (a thin `main` calls it): it opens the store, brings the schema up to date,
//! records the configured boards, and then works until `shutdown` resolves. The mail and scheduler loops
//! plug in here as they land. Time comes from a [`Clock`], which tests and `run --now` can set.

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use tokio::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::config::{Config, Database};
use crate::mail::pipeline::{read_all, Pipeline, Reader, Reading};
use crate::mail::send::{run_sender, Transport};
use crate::mail::source::{self, Incoming};
use crate::mail::timebox::Timebox;
use crate::store::{Batching, PgStore, SqliteStore, Store};

/// Where "now" comes from. The daemon reads it; the core never does.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The instant the clock showed when `started` was taken.
    origin: DateTime<Utc>,
    started: Instant,
}

impl Clock {
    /// The real time.
    pub fn system() -> Self {
        Clock {
            origin: Utc::now(),
            started: Instant::now(),
        }
    }

    /// A clock that reads `at` now and runs on from there (for `run --now` and tests; under tokio's
    /// paused test clock it moves only when the test advances it).
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Clock {
            origin: at,
            started: Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.started);
        self.origin + Duration::from_std(elapsed).unwrap_or_else(|_| Duration::zero())
    }
}

/// Open the store `database` names, bring it up to date, and evaluate `$body` with it bound to `$store`.
/// The body is generic code over [`Store`]; this picks the backend once, at the edge.
macro_rules! with_store {
    ($database:expr, $store:ident => $body:expr) => {{
        match $database {
            $crate::config::Database::Sqlite(path) => {
                let $store = $crate::store::SqliteStore::open(path).await?;
                $crate::store::Store::migrate(&$store).await?;
                let r = $body;
                $store.close().await;
                r
            }
            $crate::config::Database::Postgres(url) => {
                let $store = $crate::store::PgStore::connect(&url.0).await?;
                $crate::store::Store::migrate(&$store).await?;
                let r = $body;
                $store.close().await;
                r
            }
        }
    }};
}
pub(crate) use with_store;

/// The shortest signing secret accepted: a Message-ID token is as strong as the key that signs it.
pub const MIN_SECRET_LEN: usize = 32;

/// The secret that signs the bot's Message-IDs and plus-address tokens, in this order:
/// `ESCALATION_BOT_SECRET` (at least [`MIN_SECRET_LEN`] characters: how several instances share one);
/// with PostgreSQL, the one kept in the database (the first instance to start makes it, the others read
/// it, so every instance verifies what any other signed); otherwise the secret file, created with 32
/// random bytes on first use, owner-only (0600) and atomically (written beside it and renamed, so no
/// other process ever reads half of it).
pub async fn load_secret<S: Store>(settings: &crate::config::Settings, store: &S) -> anyhow::Result<Vec<u8>> {
    if let Ok(s) = std::env::var("ESCALATION_BOT_SECRET") {
        let s = s.trim();
        if !s.is_empty() {
            if s.chars().count() < MIN_SECRET_LEN {
                anyhow::bail!(
                    "ESCALATION_BOT_SECRET is {} characters; use at least {MIN_SECRET_LEN} (for example `openssl rand -hex 32`)",
                    s.chars().count()
                );
            }
            return Ok(s.as_bytes().to_vec());
        }
    }
    if store.backend() == "postgres" {
        let made = random_hex()?;
        let kept = store.shared_secret(&made).await?;
        return Ok(kept.into_bytes());
    }
    let path = &settings.secret_file;
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim();
        if s.chars().count() >= MIN_SECRET_LEN {
            return Ok(s.as_bytes().to_vec());
        }
        if !s.is_empty() {
            anyhow::bail!(
                "the secret in {} is {} characters; use at least {MIN_SECRET_LEN}, or delete the file to have one made",
                path.display(),
                s.chars().count()
            );
        }
    }
    let hex = random_hex()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot write the secret file {}: {e}", tmp.display()))?;
        f.write_all(hex.as_bytes())?;
        f.sync_all()?;
    }
    // A hard link fails if another process made the secret meanwhile: then theirs is the one.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(hex.into_bytes()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(anyhow::anyhow!("cannot write the secret file {}: {e}", path.display())),
    }
}

/// 32 random bytes as hex.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| {
                anyhow::anyhow!("cannot read /dev/urandom to make a secret: {e}; set ESCALATION_BOT_SECRET")
            })?;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Resolves on Ctrl-C or SIGTERM.
/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled, so a signal that arrives while the daemon is still starting is not fatal.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => {},
                _ = int => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How long the daemon waits, once told to stop, for its tasks to finish what they hold: within this (and
/// the batch being processed when the signal came, which finishes first), it exits. systemd's and Docker's
/// stop timeouts should be longer (the shipped unit: 30 s).
pub const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Run the daemon on `config` until `shutdown` resolves. `start` sets the clock (`--now`).
pub async fn run(
    config: Config,
    start: Option<DateTime<Utc>>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let clock = start.map(Clock::starting_at).unwrap_or_else(Clock::system);
    match &config.settings.database {
        Database::Sqlite(path) => {
            let store = SqliteStore::open(path).await?;
            serve(&config, &store, clock, shutdown).await?;
            store.close().await;
        }
        Database::Postgres(url) => {
            let store = PgStore::connect(&url.0).await?;
            serve(&config, &store, clock, shutdown).await?;
            store.close().await;
        }
    }
    Ok(())
}

/// Run the task `make` builds until `stop` is set: should it panic, or end on its own before then (a bug,
/// or an error a library did not expect), it is logged and started again after a pause, so that one
/// mailbox or the sender never stops silently until the next restart.
async fn supervise<F, Fut>(name: String, mut stop: watch::Receiver<bool>, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let ended = tokio::spawn(make()).await;
        if *stop.borrow() {
            return;
        }
        match ended {
            Err(e) if e.is_panic() => {
                tracing::error!(task = %name, "a task panicked; it is started again in 5 seconds")
            }
            _ => tracing::error!(task = %name, "a task stopped on its own; it is started again in 5 seconds"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A batch from one source, read: one [`Reading`] per message, in order.
struct ReadBatch {
    incoming: Incoming,
    read: Vec<Reading>,
}

/// One board's mail, read as it comes in and handed to the main loop in the order it came: each board has
/// a reader of its own, and the reading runs on threads of its own within the time limit ([`read_all`]),
/// so that a message slow to read delays neither another board's mail nor the case clock, and the main
/// loop (which decides, writes and answers) never waits for reading. A batch whose reading fails outright
/// is dropped unacknowledged: its messages stay in the mailbox and are read again.
async fn read_board(
    reader: std::sync::Arc<Reader>,
    timebox: Timebox,
    mut incoming: mpsc::Receiver<Incoming>,
    out: mpsc::Sender<ReadBatch>,
) {
    while let Some(batch) = incoming.recv().await {
        let started = std::time::Instant::now();
        let raws = batch.messages.iter().map(|(_, raw)| raw.clone()).collect();
        let read = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(read_all(
            reader.clone(),
            &timebox,
            raws,
        )))
        .await;
        let Ok(read) = read else {
            tracing::error!(board = %batch.board, "reading a batch failed; its messages stay in the mailbox and are read again");
            continue;
        };
        tracing::debug!(
            board = %batch.board,
            messages = batch.messages.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "batch read"
        );
        if out.send(ReadBatch { incoming: batch, read }).await.is_err() {
            return;
        }
    }
}

/// Sleep for `d`, or for ever when there is nothing to wait for.
async fn sleep_or_never(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending::<()>().await,
    }
}

/// When the scheduler should next look: the store's next timer moment or the next digest owed; in 30
/// seconds when the store cannot say (it is down), so that nothing due is forgotten.
async fn next_wake<S: Store>(pipeline: &Pipeline<'_>, store: &S, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let timer = store.next_timer_at().await;
    let digest = crate::scheduler::next_digest_at(pipeline, store, now).await;
    match (timer, digest) {
        (Ok(t), Ok(d)) => match (t, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot read the next timer or digest; looking again in 30 seconds");
            Some(now + Duration::seconds(30))
        }
    }
}

/// Bring the schema up to date and record the configured boards.
pub async fn prepare_store<S: Store>(config: &Config, store: &S, now: DateTime<Utc>) -> anyhow::Result<()> {
    store.migrate().await?;
    for b in &config.boards {
        store
            .upsert_board(b.id(), &b.policy().board_name, &b.policy().id, now)
            .await?;
        // Emails held for a role whose address was a placeholder go to the address the board file now gives.
        for (role, contact) in &b.settings.roles {
            if !crate::mail::compose::is_placeholder(&contact.email) {
                let n = store.release_held(b.id(), role.key(), &contact.email, now).await?;
                if n > 0 {
                    tracing::info!(board = %b.id(), role = %role.key(), to = %contact.email, emails = n,
                        "emails held for a placeholder address are sent to the address now set");
                }
            }
        }
    }
    Ok(())
}

async fn serve<S: Batching + Clone + Send + Sync + 'static>(
    config: &Config,
    store: &S,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    prepare_store(config, store, clock.now()).await?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let key = load_secret(&config.settings, store).await?;
    let pipeline = Pipeline::new(config, key).map_err(anyhow::Error::msg)?;
    let transport = match &config.settings.smtp {
        Some(s) => Transport::smtp(s).map_err(anyhow::Error::msg)?,
        None => Transport::Maildir(config.settings.outbox_dir.clone()),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // Bound before anything else starts, so that a port in use stops the daemon at once with the reason.
    let http = match &config.settings.http {
        Some(h) => {
            let listener = crate::http::bind(h).await?;
            Some(tokio::spawn(crate::http::serve(
                listener,
                h.clone(),
                store.clone(),
                clock,
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let (read_tx, mut rx) = mpsc::channel::<ReadBatch>(256);
    let mut sources = Vec::new();
    let mut readers = Vec::new();
    for b in &config.boards {
        let id = b.id().to_string();
        // The source hands its batches to the board's own reader (a few at most: an IMAP source sends
        // more before the first is answered), which hands them, read, to the main loop.
        let (tx, incoming) = mpsc::channel::<Incoming>(8);
        readers.push(tokio::spawn(read_board(
            pipeline.reader.clone(),
            pipeline.timebox.clone(),
            incoming,
            read_tx.clone(),
        )));
        let stop = stop_rx.clone();
        sources.push(match b.settings.imap.clone() {
            Some(imap) => tokio::spawn(supervise(format!("IMAP source {id}"), stop_rx.clone(), move || {
                crate::mail::imap::watch_mailbox(id.clone(), imap.clone(), tx.clone(), stop.clone())
            })),
            None => {
                let dir = config.settings.mailbox_dir.join(b.id());
                let folder = b.settings.notifications_folder.clone();
                tokio::spawn(supervise(format!("mailbox folder {id}"), stop_rx.clone(), move || {
                    source::maildir(id.clone(), dir.clone(), folder.clone(), tx.clone(), stop.clone())
                }))
            }
        });
    }
    drop(read_tx);
    tracing::info!(
        boards = config.boards.len(),
        database = %config.settings.database.describe(),
        mailbox = %config.settings.mailbox_dir.display(),
        now = %clock.now().to_rfc3339(),
        "escalation-bot is running; it stops on Ctrl-C or SIGTERM"
    );
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    // The case clock: woken by this daemon's own changes, and by other processes' (see `scheduler`).
    let timers_changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let store_watch = tokio::spawn(crate::scheduler::watch_store(
        config.settings.database.clone(),
        timers_changed.clone(),
        stop_rx.clone(),
    ));
    // Catch up at once on start: every timer whose moment passed while the daemon was down.
    let mut next_timer = Some(clock.now());
    let sender = {
        let (store, wake, stop) = (store.clone(), wake.clone(), stop_rx.clone());
        tokio::spawn(supervise("sender".into(), stop_rx.clone(), move || {
            run_sender(store.clone(), transport.clone(), clock, wake.clone(), stop.clone())
        }))
    };
    // Retention: on start, and once a day after.
    let retention = {
        let (store, config, mut stop) = (store.clone(), config.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = crate::retention::run(&config, &store, clock.now(), false).await {
                    tracing::error!(error = %e, "retention failed; trying again in a day");
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        let until_timer = next_timer.map(|at| (at - clock.now()).to_std().unwrap_or_default());
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sleep_or_never(until_timer) => {
                let now = clock.now();
                // A fault in deciding or writing a timer's emails must not stop the daemon: it is logged,
                // and the timers it held are tried again when their claim lapses.
                let fired = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                    crate::scheduler::fire_due(&pipeline, store, now),
                ))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::store::StoreError::Data(
                        "a fault (panic) while acting on due timers".into(),
                    ))
                });
                let digests = match crate::scheduler::send_due_digests(&pipeline, store, now).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(error = %e, "sending the due digests failed; trying again in 30 seconds");
                        0
                    }
                };
                if digests > 0 {
                    wake.notify_one();
                }
                match fired {
                    Ok(f) => {
                        if f.emails > 0 {
                            wake.notify_one();
                        }
                        if f.late > 0 {
                            crate::monitor::monitor().timers_late(f.late as u64);
                            tracing::warn!(timers = f.late, "timers whose moment passed while the daemon was down were acted on now, their emails marked late");
                        }
                        next_timer = next_wake(&pipeline, store, clock.now()).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "acting on due timers failed; trying again in 30 seconds");
                        next_timer = Some(now + Duration::seconds(30));
                    }
                }
            }
            _ = timers_changed.notified() => {
                // Another process (a CLI command, another daemon) may have queued email or timers.
                wake.notify_one();
                next_timer = next_wake(&pipeline, store, clock.now()).await;
            }
            Some(ReadBatch { incoming, read }) = rx.recv() => {
                let started = std::time::Instant::now();
                let ack = pipeline.process_read(store, &incoming.board, &incoming.messages, read, clock.now()).await;
                crate::monitor::monitor().batch_processed(started.elapsed());
                tracing::debug!(
                    board = %incoming.board,
                    messages = incoming.messages.len(),
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "batch processed"
                );
                let _ = incoming.ack.send(ack);
                wake.notify_one();
                // A case opened or moved may have brought the next timer forward.
                next_timer = next_wake(&pipeline, store, clock.now()).await;
            }
        }
    }
    // The batch in hand has finished (and its effects committed); what was fetched and not processed stays
    // in the mailbox, unacknowledged, for next time. The tasks stop at their next step: the sender after the
    // email in hand, each source at its next exchange (each bounded by its timeout). Whatever has not stopped
    // within STOP_WITHIN is left: nothing it holds is lost, only not yet acknowledged.
    let _ = stop_tx.send(true);
    // Batches fetched and not processed are dropped unacknowledged: their sources stop waiting for them,
    // and the messages stay in the mailbox for next time. Reading stops at once: a reading still running
    // is left to its thread, which holds nothing (and does not keep the process from exiting).
    for r in &readers {
        r.abort();
    }
    drop(rx);
    let stopped = tokio::time::timeout(STOP_WITHIN, async {
        let _ = sender.await;
        let _ = store_watch.await;
        let _ = retention.await;
        for s in sources {
            let _ = s.await;
        }
        if let Some(h) = http {
            let _ = h.await;
        }
    })
    .await;
    if stopped.is_err() {
        tracing::warn!(
            seconds = STOP_WITHIN.as_secs(),
            "some tasks had not stopped in time; stopping anyway (unacknowledged mail is read again next start)"
        );
    }
    tracing::info!("escalation-bot stopped");
    Ok(())
}
