//! Helpers shared by the integration tests: the shipped configuration, invented case records, and real
//! databases — a SQLite file in a temporary folder, or a PostgreSQL database of its own on the local server
//! (`ESCALATION_BOT_TEST_PG`, default postgres://postgres@127.0.0.1:5432/test), dropped afterwards.
#![allow(dead_code)]

pub mod daemon;
pub mod mailserver;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use escalation_bot::config::{self, Config};
use escalation_bot::core::case::{Person, Record};
use escalation_bot::core::lifecycle;
use escalation_bot::core::lifecycle::NewCase;
use escalation_bot::store::{Change, PgStore, SqliteStore, Store, StoredCase};
use sqlx::Connection;

pub fn config() -> Config {
    config::load(Path::new("config/default.toml")).expect("shipped configuration loads")
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("instant").with_timezone(&Utc)
}

/// A complete record with invented people and an NHS number from the test range.
pub fn record() -> Record {
    Record {
        adult_name: Some("Alex Testperson".into()),
        nhs_number: Some("999 000 0018".into()),
        escalating_name: Some("Nia Nurse".into()),
        escalating_agency: Some("Northfield Community Health NHS Trust".into()),
        escalating_email: Some("nia.nurse@nhs.net".into()),
        other_name: Some("Sam Social".into()),
        other_agency: Some("Westshire Council Adult Social Care".into()),
        other_email: Some("sam.social@westshire.gov.uk".into()),
        summary: Some("The section 42 enquiry was closed while risks of self-neglect remain.".into()),
        ..Record::default()
    }
}

pub fn new_case() -> NewCase {
    NewCase {
        record: record(),
        sender: Person::email("nia.nurse@nhs.net"),
    }
}

pub fn pg_admin_url() -> String {
    std::env::var("ESCALATION_BOT_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database made for one test.
pub enum TestDb {
    Sqlite { _dir: tempfile::TempDir, path: PathBuf },
    Postgres { name: String, url: String },
}

impl TestDb {
    pub async fn sqlite() -> (SqliteStore, TestDb) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("test.sqlite3");
        let store = SqliteStore::open(&path).await.expect("sqlite opens");
        (store, TestDb::Sqlite { _dir: dir, path })
    }

    /// A fresh PostgreSQL database on the local server. Fails loudly when the server is not there: the
    /// suite's set-up script (`scripts/test.sh`) starts it.
    pub async fn postgres() -> (PgStore, TestDb) {
        let admin = pg_admin_url();
        let name = format!(
            "escbot_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            Utc::now().timestamp_micros() % 1_000_000
        );
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for this test ({e}); run scripts/test.sh"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        let url = format!("{base}/{name}");
        let store = PgStore::connect(&url).await.expect("postgres connects");
        (store, TestDb::Postgres { name, url })
    }

    /// Run raw SQL on a separate connection, as an operator (or an attacker with database access) would.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            TestDb::Sqlite { path, .. } => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display())).await?;
                let r = sqlx::query(sql).execute(&mut c).await.map(|r| r.rows_affected());
                c.close().await.ok();
                r
            }
            TestDb::Postgres { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                let r = sqlx::query(sql).execute(&mut c).await.map(|r| r.rows_affected());
                c.close().await.ok();
                r
            }
        }
    }

    pub async fn cleanup(self) {
        if let TestDb::Postgres { name, .. } = self {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
                conn.close().await.ok();
            }
        }
    }
}

/// Record every configured board in the store.
pub async fn upsert_boards<S: Store>(store: &S, c: &Config) {
    for b in &c.boards {
        store
            .upsert_board(
                b.id(),
                &b.policy().board_name,
                &b.policy().id,
                at("2026-12-01T00:00:00Z"),
            )
            .await
            .expect("board");
    }
}

/// Open a case with [`new_case`] on `board` at `when`, through the store.
pub async fn open_case<S: Store>(store: &S, c: &Config, board: &str, when: &str) -> StoredCase {
    let b = c.board(board).expect("board");
    let year = b
        .rules
        .local_date(at(when))
        .format("%Y")
        .to_string()
        .parse()
        .expect("year");
    store
        .create_case(board, &b.policy().reference_prefix, year, |reference| {
            lifecycle::open(&b.rules, &new_case(), reference, at(when)).map(Change::new)
        })
        .await
        .expect("store works")
        .expect("case opens")
}

/// A copy of the shipped configuration in a temporary folder, to change.
pub fn copy_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("config");
    for sub in ["policies", "boards"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(Path::new("config").join(sub)).expect("read config") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, root.join(sub).join(p.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::copy("config/default.toml", root.join("default.toml")).expect("copy");
    (dir, root)
}

/// Run a `simulate` scenario file on the shipped configuration.
pub async fn simulate_file(path: &Path) -> escalation_bot::simulate::Simulation {
    let scenario = escalation_bot::simulate::load(path).expect("scenario reads");
    escalation_bot::simulate::run(config(), &scenario, path)
        .await
        .expect("simulation runs")
}
