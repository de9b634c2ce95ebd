//! The PostgreSQL adapter, for scale-out and high availability: several daemons may share one database,
//! claiming timers and outgoing emails with `FOR UPDATE SKIP LOCKED` and a lease, so no work is done twice.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Connect to the database at `url`.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        Ok(PgStore { pool })
    }

    async fn run_migrations(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl PgStore {
    fn pending(&self) -> Option<&std::sync::Mutex<super::sql::Pending>> {
        None
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }
}

super::sql::impl_store!(
    PgStore,
    sqlx::Postgres,
    backend = "postgres",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    unit = false
);

/// A unit of work on Postgres: one open transaction; see [`super::Batching`].
pub struct PgUnit {
    tx: tokio::sync::Mutex<sqlx::Transaction<'static, sqlx::Postgres>>,
    pending: std::sync::Mutex<super::sql::Pending>,
}

/// The unit's transaction, lent out as a connection.
pub struct UnitConn<'a>(tokio::sync::MutexGuard<'a, sqlx::Transaction<'static, sqlx::Postgres>>);

impl std::ops::Deref for UnitConn<'_> {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &sqlx::PgConnection {
        &self.0
    }
}

impl std::ops::DerefMut for UnitConn<'_> {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        &mut self.0
    }
}

impl PgUnit {
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

impl super::Batching for PgStore {
    type Unit = PgUnit;
    async fn begin_unit(&self) -> Result<PgUnit> {
        Ok(PgUnit {
            tx: tokio::sync::Mutex::new(self.pool.begin().await?),
            pending: Default::default(),
        })
    }
}

impl super::Unit for PgUnit {
    async fn commit(self) -> Result<()> {
        // Write what waits, then commit.
        drop(self.lend().await?);
        self.tx.into_inner().commit().await?;
        Ok(())
    }
}

mod unit_impl {
    use super::PgUnit;
    super::super::sql::impl_store!(
        PgUnit,
        sqlx::Postgres,
        backend = "postgres",
        skip_locked = " FOR UPDATE SKIP LOCKED",
        unit = true
    );
}
