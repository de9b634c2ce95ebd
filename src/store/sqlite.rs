//! The SQLite adapter: the embedded default. WAL mode, `synchronous=FULL`, foreign keys on, and a single
//! connection, so there is exactly one writer and never "database is locked".

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if needed) the database file at `path`, and its folder.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Data(format!("cannot create the database folder {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    async fn run_migrations(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    /// The pragma values in force, for tests and `check-config`: (journal_mode, synchronous).
    pub async fn pragmas(&self) -> Result<(String, i64)> {
        let j: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let s: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok((j, s))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl SqliteStore {
    fn pending(&self) -> Option<&std::sync::Mutex<super::sql::Pending>> {
        None
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
        Ok(self.pool.acquire().await?)
    }
}

super::sql::impl_store!(
    SqliteStore,
    sqlx::Sqlite,
    backend = "sqlite",
    skip_locked = "",
    unit = false
);

/// A unit of work on Sqlite: one open transaction; see [`super::Batching`].
pub struct SqliteUnit {
    tx: tokio::sync::Mutex<sqlx::Transaction<'static, sqlx::Sqlite>>,
    pending: std::sync::Mutex<super::sql::Pending>,
}

/// The unit's transaction, lent out as a connection.
pub struct UnitConn<'a>(tokio::sync::MutexGuard<'a, sqlx::Transaction<'static, sqlx::Sqlite>>);

impl std::ops::Deref for UnitConn<'_> {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.0
    }
}

impl std::ops::DerefMut for UnitConn<'_> {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.0
    }
}

impl SqliteUnit {
    fn pending(&self) -> Option<&std::sync::Mutex<super::sql::Pending>> {
        Some(&self.pending)
    }

    async fn conn(&self) -> Result<UnitConn<'_>> {
        Ok(UnitConn(self.tx.lock().await))
    }

    async fn run_migrations(&self) -> Result<()> {
        Ok(())
    }
}

impl super::Batching for SqliteStore {
    type Unit = SqliteUnit;
    async fn begin_unit(&self) -> Result<SqliteUnit> {
        Ok(SqliteUnit {
            tx: tokio::sync::Mutex::new(self.pool.begin().await?),
            pending: Default::default(),
        })
    }
}

impl super::Unit for SqliteUnit {
    async fn commit(self) -> Result<()> {
        // Write what waits, then commit.
        drop(self.lend().await?);
        self.tx.into_inner().commit().await?;
        Ok(())
    }
}

mod unit_impl {
    use super::SqliteUnit;
    super::super::sql::impl_store!(
        SqliteUnit,
        sqlx::Sqlite,
        backend = "sqlite",
        skip_locked = "",
        unit = true
    );
}
