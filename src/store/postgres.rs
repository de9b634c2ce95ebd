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

super::sql::impl_store!(
    PgStore,
    sqlx::Postgres,
    backend = "postgres",
    skip_locked = " FOR UPDATE SKIP LOCKED"
);
