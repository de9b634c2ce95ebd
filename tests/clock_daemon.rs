//! The case clock in the real daemon (the binary, started with `run --now`):
//! - on the embedded default (SQLite and local folders), stopped across several due reminders and started
//!   after them, it sends each once, marked late; restarted, it sends none again;
//! - two daemons on one PostgreSQL database with 1,000 timers due at once queue each email exactly once.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{at, config, TestDb};
use escalation_bot::core::case::Person;
use escalation_bot::core::lifecycle;
use escalation_bot::store::{Change, Store};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
}

/// A configuration with the shipped policies and boards, the given database, and folders in `dir`.
fn daemon_config(dir: &Path, db: &str) -> PathBuf {
    let here = std::env::current_dir().expect("cwd");
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "policies_dir = \"{}\"\nboards_dir = \"{}\"\n[database]\nurl = \"{db}\"\n[mailbox]\npath = \"mail\"\n[outbox]\npath = \"out\"\n",
            here.join("config/policies").display(),
            here.join("config/boards").display()
        ),
    )
    .expect("write config");
    path
}

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(config: &Path, now: &str) -> Daemon {
        let mut child = bin()
            .arg("--config")
            .arg(config)
            .args(["run", "--now", now])
            .env("ESCALATION_BOT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let d = Daemon { child, lines };
        d.wait_for("escalation-bot is running", Duration::from_secs(60));
        d
    }

    fn wait_for(&self, text: &str, limit: Duration) {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < limit {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(text) => return,
                Ok(line) => seen.push(line),
                Err(_) => {}
            }
        }
        panic!("the daemon never said {text:?}; it said:\n{}", seen.join("\n"));
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A test that fails leaves no daemon running to slow the tests after it.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The emails in the daemon's outbox folder (the Maildir transport of the embedded default).
fn sent(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("out/new"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    })
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {limit:?}");
}

fn kinds(mail: &[String]) -> Vec<String> {
    let mut k: Vec<String> = mail
        .iter()
        .map(|m| header(m, "X-Escalation-Kind").unwrap_or("none").to_string())
        .collect();
    k.sort();
    k
}

#[test]
fn a_daemon_stopped_across_due_reminders_sends_each_once_marked_late_and_never_again() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = daemon_config(dir.path(), "sqlite:db.sqlite3");
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args([
            "deliver",
            "--board",
            "bradford",
            "tests/fixtures/forms/bradford-plain.eml",
        ])
        .output()
        .expect("deliver");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Opened two days before Christmas; the acknowledgement goes to the nurse and the social worker.
    let d = Daemon::start(&cfg, "2026-12-23T10:00:00Z");
    wait_until("the acknowledgement is sent", Duration::from_secs(60), || {
        sent(dir.path()).len() >= 2
    });
    d.stop();
    assert_eq!(kinds(&sent(dir.path())), vec!["acknowledgement", "acknowledgement"]);

    // Down until the day after the overdue notice was due: the reminder five working days before (13
    // January), the one on the day (20 January), the overdue notice and the Business Unit Manager's notice
    // (21 January) are all owed.
    let d = Daemon::start(&cfg, "2027-01-22T10:00:00Z");
    wait_until("the missed emails are sent", Duration::from_secs(60), || {
        sent(dir.path()).len() >= 9
    });
    d.stop();
    let mail = sent(dir.path());
    assert_eq!(
        kinds(&mail),
        vec![
            "acknowledgement",
            "acknowledgement",
            "notification",
            "overdue",
            "overdue",
            "reminder",
            "reminder",
            "reminder",
            "reminder"
        ]
    );
    for m in mail
        .iter()
        .filter(|m| header(m, "X-Escalation-Kind") != Some("acknowledgement"))
    {
        assert_eq!(header(m, "X-Escalation-Case"), Some("BRAD-2026-0001"), "{m}");
        // Quoted-printable may wrap the sentence; read it unwrapped.
        let flat = m
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("\r\n", " ")
            .replace('\n', " ");
        assert!(flat.contains("should have reached you on"), "not marked late: {m}");
    }
    let late_days: Vec<bool> = [
        "Wednesday 13 January 2027",
        "Wednesday 20 January 2027",
        "Thursday 21 January 2027",
    ]
    .iter()
    .map(|day| {
        mail.iter().any(|m| {
            m.replace("=\r\n", "")
                .replace("=\n", "")
                .replace("\r\n", " ")
                .contains(day)
        })
    })
    .collect();
    assert_eq!(
        late_days,
        vec![true, true, true],
        "each late email names the day it was due"
    );

    // Started again: nothing is owed, nothing is sent twice.
    let d = Daemon::start(&cfg, "2027-01-22T11:00:00Z");
    std::thread::sleep(Duration::from_secs(3));
    d.stop();
    assert_eq!(sent(dir.path()).len(), 9, "a restart sent something again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_database_queue_each_of_1000_due_reminders_once() {
    const CASES: usize = 1000;
    let c = config();
    let (store, db) = TestDb::postgres().await;
    let TestDb::Postgres { url, .. } = &db else {
        unreachable!()
    };
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T10:00:00Z"))
        .await
        .expect("store");
    // 1,000 Rotherham cases opened on Monday 4 January 2027: each is due on Monday 11 January (5 working
    // days), when its reminder goes at 09:00 to the two parties.
    let board = c.board("rotherham").expect("rotherham");
    for i in 0..CASES {
        let mut new = common::new_case();
        new.record.escalating_email = Some(format!("nurse{i}@nhs.net"));
        new.sender = Person::email(format!("nurse{i}@nhs.net"));
        store
            .create_case("rotherham", &board.policy().reference_prefix, 2027, |reference| {
                lifecycle::open(&board.rules, &new, reference, at("2027-01-04T10:00:00Z")).map(Change::new)
            })
            .await
            .expect("store")
            .expect("opens");
    }
    store.close().await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = daemon_config(dir.path(), url);
    let (cfg2, url2) = (cfg.clone(), url.clone());
    let (a, b) = tokio::task::spawn_blocking(move || {
        let a = Daemon::start(&cfg2, "2027-01-11T10:00:00Z");
        let b = Daemon::start(&cfg2, "2027-01-11T10:00:00Z");
        (a, b)
    })
    .await
    .expect("daemons");
    let fired = || async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url2).await.expect("pg");
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM timers WHERE fired_at IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        conn.close().await.ok();
        n.0
    };
    let sent = || async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url2).await.expect("pg");
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE kind = 'reminder' AND sent_at IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        conn.close().await.ok();
        n.0
    };
    let start = Instant::now();
    while fired().await < CASES as i64 && start.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And the two senders deliver them (into the Maildir outbox), each once.
    while sent().await < 2 * CASES as i64 && start.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::task::spawn_blocking(move || {
        a.stop();
        b.stop();
    })
    .await
    .expect("stopped");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("pg");
    let timers: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE fired_at IS NOT NULL), COUNT(*) FILTER (WHERE fired_at IS NULL AND fire_at <= $1) FROM timers",
    )
    .bind(at("2027-01-11T10:00:00Z").timestamp_millis())
    .fetch_one(&mut conn)
    .await
    .expect("timers");
    assert_eq!(timers, (CASES as i64, 0), "every due timer fired, none left");
    let reminders: (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM outbox WHERE kind = 'reminder'")
            .fetch_one(&mut conn)
            .await
            .expect("outbox");
    assert_eq!(
        reminders,
        (2 * CASES as i64, 2 * CASES as i64),
        "one reminder per party per case"
    );
    let per_case: Vec<(String, i64)> = sqlx::query_as(
        "SELECT case_reference, COUNT(*) FROM outbox WHERE kind = 'reminder' GROUP BY case_reference HAVING COUNT(*) <> 2",
    )
    .fetch_all(&mut conn)
    .await
    .expect("per case");
    assert!(per_case.is_empty(), "cases with other than two reminders: {per_case:?}");
    let delivery: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE sent_at IS NOT NULL), COUNT(*) FILTER (WHERE attempts <> 1) FROM outbox WHERE kind = 'reminder'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("delivery");
    assert_eq!(
        delivery,
        (2 * CASES as i64, 0),
        "every reminder delivered, each in one attempt"
    );
    let events: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE kind = 'reminder_sent'")
        .fetch_one(&mut conn)
        .await
        .expect("events");
    assert_eq!(events.0, CASES as i64);
    conn.close().await.ok();
    db.cleanup().await;
}

#[test]
fn a_running_daemon_is_woken_by_a_case_another_process_opens_and_keeps_to_working_hours() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = daemon_config(dir.path(), "sqlite:db.sqlite3");
    // Wednesday 20 January 2027, a few seconds before working hours start.
    let d = Daemon::start(&cfg, "2027-01-20T08:59:57Z");
    // Another process opens a case dated 23 December: its 13 January reminder is owed already, and its
    // due-today reminder is owed at 09:00.
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args([
            "ingest",
            "--board",
            "bradford",
            "--now",
            "2026-12-23T10:00:00Z",
            "tests/fixtures/forms/bradford-plain.eml",
        ])
        .output()
        .expect("ingest");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The daemon hears of it at once: the acknowledgement the other process queued goes out.
    wait_until("the acknowledgement is sent", Duration::from_secs(30), || {
        sent(dir.path()).len() >= 2
    });
    wait_until("the reminders are sent at 09:00", Duration::from_secs(40), || {
        sent(dir.path()).len() >= 6
    });
    d.stop();
    let mail = sent(dir.path());
    let reminders: Vec<&String> = mail
        .iter()
        .filter(|m| header(m, "X-Escalation-Kind") == Some("reminder"))
        .collect();
    assert_eq!(reminders.len(), 4, "two reminders, each to both parties");
    // Nothing went before working hours, not even the reminder owed since 13 January.
    for m in &reminders {
        let date = header(m, "Date").expect("Date");
        let date = chrono::DateTime::parse_from_rfc2822(date).expect("a date");
        assert!(date >= at("2027-01-20T09:00:00Z"), "sent before working hours: {date}");
    }
    let flat: Vec<String> = reminders
        .iter()
        .map(|m| {
            m.replace("=\r\n", "")
                .replace("=\n", "")
                .replace("\r\n", " ")
                .replace('\n', " ")
        })
        .collect();
    assert_eq!(
        flat.iter()
            .filter(|m| m.contains("should have reached you on Wednesday 13 January 2027"))
            .count(),
        2,
        "the missed reminder is marked late"
    );
    assert_eq!(
        flat.iter().filter(|m| m.contains("should have reached you")).count(),
        2,
        "the other is on time"
    );
}
