//! The daemon and the glue between configuration, clock and store.
//!
//! [`run`] is the library entry (a thin `main` calls it): it opens the store, brings the schema up to date,
//! records the configured boards, and then works until `shutdown` resolves. The mail and scheduler loops
//! plug in here as they land. Time comes from a [`Clock`], which tests and `run --now` can set.

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use tokio::time::Instant;

use crate::config::{Config, Database};
use crate::store::{PgStore, SqliteStore, Store};

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

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

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

async fn serve<S: Store>(
    config: &Config,
    store: &S,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    store.migrate().await?;
    for b in &config.boards {
        store
            .upsert_board(b.id(), &b.policy().board_name, &b.policy().id, clock.now())
            .await?;
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        boards = config.boards.len(),
        database = %config.settings.database.describe(),
        mailbox = %config.settings.mailbox_dir.display(),
        now = %clock.now().to_rfc3339(),
        "escalation-bot is running; it stops on Ctrl-C or SIGTERM"
    );
    shutdown.await;
    tracing::info!("escalation-bot stopped");
    Ok(())
}
