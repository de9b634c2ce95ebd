//! The signing secret: made once, owner-only, never half-written; shared by every instance on one
//! PostgreSQL database; from the environment only when long enough.

mod common;

use common::TestDb;
use escalation_bot::app::{load_secret, MIN_SECRET_LEN};
use escalation_bot::store::Store;

#[tokio::test]
async fn the_secret_is_made_once_owner_only_shared_through_postgres_and_long_enough() {
    // One test, in order: the environment is the process's, shared by every test in this file.
    std::env::remove_var("ESCALATION_BOT_SECRET");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = common::config();
    config.settings.secret_file = dir.path().join("state/secret");
    let (sqlite, sdb) = TestDb::sqlite().await;
    sqlite.migrate().await.expect("migrate");
    let first = load_secret(&config.settings, &sqlite).await.expect("made");
    assert_eq!(first.len(), 64, "32 random bytes as hex");
    assert_eq!(
        load_secret(&config.settings, &sqlite).await.expect("read"),
        first,
        "made once"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config.settings.secret_file)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state")).expect("dir").collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left beside it");
    sqlite.close().await;
    sdb.cleanup().await;

    // Two instances on one PostgreSQL database verify each other's tokens: one secret between them.
    let (a, db) = TestDb::postgres().await;
    a.migrate().await.expect("migrate");
    let url = match &db {
        TestDb::Postgres { url, .. } => url.clone(),
        TestDb::Sqlite { .. } => unreachable!("a PostgreSQL database"),
    };
    let b = escalation_bot::store::PgStore::connect(&url)
        .await
        .expect("second instance");
    let from_a = load_secret(&config.settings, &a).await.expect("a");
    let from_b = load_secret(&config.settings, &b).await.expect("b");
    assert_eq!(from_a, from_b);
    assert_ne!(from_a, first);

    // From the environment: used as given when long enough, refused when short.
    let long = "x".repeat(MIN_SECRET_LEN);
    std::env::set_var("ESCALATION_BOT_SECRET", &long);
    assert_eq!(load_secret(&config.settings, &a).await.expect("env"), long.as_bytes());
    std::env::set_var("ESCALATION_BOT_SECRET", "short");
    let e = load_secret(&config.settings, &a).await.expect_err("too short");
    assert!(e.to_string().contains("at least"), "{e}");
    std::env::remove_var("ESCALATION_BOT_SECRET");
    a.close().await;
    b.close().await;
    db.cleanup().await;
}
