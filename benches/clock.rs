//! Benchmarks of the case clock, printing figures (run: `cargo bench --bench clock`; PostgreSQL from
//! `ESCALATION_BOT_TEST_PG`, default postgres://postgres@127.0.0.1:5432/test). Not a test: nothing here
//! passes or fails on time.
//!
//! For 1,000, 10,000 and 100,000 open cases on SQLite and on PostgreSQL, with 1,000 reminders due at once:
//! 1. the time from "due" to every email queued (the scheduler's `fire_due`, as the daemon calls it);
//! 2. the time to find the next wake-up (`next_timer_at`, mean of 200 calls);
//! 3. with 100,000 open cases, the real daemon's resident memory (release build) after acting on the 1,000
//!    due timers, and its wake-ups while idle.
//!
//! `ESCALATION_BOT_BENCH_OPEN=1000,10000` chooses the sizes; `ESCALATION_BOT_BENCH_ONLY=sqlite|postgres|paperwork|listener`
//! one backend, `=daemon` the daemon alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use escalation_bot::config::{self, Config};
use escalation_bot::core::case::{Person, Record};
use escalation_bot::core::lifecycle::{self, NewCase};
use escalation_bot::mail::pipeline::Pipeline;
use escalation_bot::scheduler;
use escalation_bot::store::{Batching, Change, PgStore, SqliteStore, Store, Unit};
use sqlx::Connection;

const DUE: usize = 1000;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("instant").with_timezone(&Utc)
}

fn new_case(i: usize) -> NewCase {
    let email = format!("nurse{i}@nhs.net");
    NewCase {
        record: Record {
            adult_name: Some("Alex Testperson".into()),
            nhs_number: Some("999 000 0018".into()),
            escalating_name: Some("Nia Nurse".into()),
            escalating_agency: Some("Northfield Community Health NHS Trust".into()),
            escalating_email: Some(email.clone()),
            other_name: Some("Sam Social".into()),
            other_agency: Some("Westshire Council Adult Social Care".into()),
            other_email: Some("sam.social@westshire.gov.uk".into()),
            summary: Some("The section 42 enquiry was closed while risks of self-neglect remain.".into()),
            ..Record::default()
        },
        sender: Person::email(&email),
    }
}

/// `open` Rotherham cases: `DUE` opened on Monday 4 January 2027 (their reminder is due at 09:00 on the
/// 11th), the rest on 1 March (due in March), in units of 500 cases a transaction.
async fn fill<S: Batching>(store: &S, c: &Config, open: usize) {
    let board = c.board("rotherham").expect("rotherham");
    let mut done = 0;
    while done < open {
        let unit = store.begin_unit().await.expect("unit");
        for i in done..(done + 500).min(open) {
            let when = if i < DUE {
                at("2027-01-04T10:00:00Z")
            } else {
                at("2027-03-01T10:00:00Z")
            };
            unit.create_case("rotherham", &board.policy().reference_prefix, 2027, |reference| {
                lifecycle::open(&board.rules, &new_case(i), reference, when).map(Change::new)
            })
            .await
            .expect("store")
            .expect("opens");
        }
        unit.commit().await.expect("commit");
        done = (done + 500).min(open);
    }
}

async fn measure<S: Batching>(name: &str, store: &S, c: &Config, open: usize) -> (f64, f64) {
    escalation_bot::app::prepare_store(c, store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    let t = Instant::now();
    fill(store, c, open).await;
    let fill_s = t.elapsed().as_secs_f64();
    let pipeline = Pipeline::new(c, vec![7; 32]).expect("pipeline");
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        store.next_timer_at().await.expect("next");
    }
    let next_ms = t.elapsed().as_secs_f64() * 1e3 / f64::from(n);
    let t = Instant::now();
    let fired = scheduler::fire_due(&pipeline, store, at("2027-01-11T09:00:00Z"))
        .await
        .expect("fire");
    let fire_s = t.elapsed().as_secs_f64();
    assert_eq!(fired.timers, DUE, "{fired:?}");
    let board = c.board("rotherham").expect("rotherham");
    let t = Instant::now();
    let digest = scheduler::board_digest(store, board, at("2027-01-11T09:00:00Z"))
        .await
        .expect("digest");
    let digest_s = t.elapsed().as_secs_f64();
    println!(
        "{name:>10} {open:>7} open: the digest ({} open cases listed) built in {digest_s:.3} s",
        digest.open.len()
    );
    let t = Instant::now();
    let from = chrono::NaiveDate::from_ymd_opt(2027, 1, 1).expect("date");
    let to = chrono::NaiveDate::from_ymd_opt(2027, 3, 31).expect("date");
    let report = scheduler::board_report(store, board, from, to).await.expect("report");
    println!(
        "{name:>10} {open:>7} open: the report on {} cases opened in the quarter built in {:.3} s",
        report.opened,
        t.elapsed().as_secs_f64()
    );
    println!(
        "{name:>10} {open:>7} open: {DUE} due → {} emails queued in {fire_s:.3} s; next wake-up found in {next_ms:.3} ms (filled in {fill_s:.1} s)",
        fired.emails
    );
    (fire_s, next_ms)
}

fn pg_url(admin: &str, name: &str) -> String {
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin.to_string());
    format!("{base}/{name}")
}

async fn pg_database(name: &str) -> String {
    let admin =
        std::env::var("ESCALATION_BOT_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create");
    conn.close().await.ok();
    pg_url(&admin, name)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Voluntary context switches of each of the process's threads (a thread that went to sleep and was
/// woken), by thread id.
fn switches(pid: u32) -> std::collections::BTreeMap<String, u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let n = std::fs::read_to_string(e.path().join("status"))
                        .unwrap_or_default()
                        .lines()
                        .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
                        .unwrap_or(0);
                    (e.file_name().to_string_lossy().to_string(), n)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wake-ups between two snapshots: threads there at both ends by their difference, threads started
/// meanwhile by all of theirs (blocking-pool threads come and go).
fn wakeups_between(a: &std::collections::BTreeMap<String, u64>, b: &std::collections::BTreeMap<String, u64>) -> u64 {
    b.iter()
        .map(|(tid, n)| n.saturating_sub(a.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// The release daemon on the 100,000-case SQLite database, started when the 1,000 reminders are due:
/// its RSS once they are queued, and its wake-ups in 20 idle seconds after.
fn daemon_rss(db: &Path, dir: &Path) {
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "escalation-bot"])
        .status()
        .expect("cargo");
    assert!(status.success(), "release build");
    let here = std::env::current_dir().expect("cwd");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "policies_dir = \"{}\"\nboards_dir = \"{}\"\n[database]\nurl = \"sqlite:{}\"\n[mailbox]\npath = \"mail\"\n[outbox]\npath = \"out\"\n",
            here.join("config/policies").display(),
            here.join("config/boards").display(),
            db.display()
        ),
    )
    .expect("config");
    let mut child = Command::new("target/release/escalation-bot")
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--now", "2027-01-11T09:00:00Z"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let pid = child.id();
    let count = || std::fs::read_dir(dir.join("out/new")).map(|d| d.count()).unwrap_or(0);
    let t = Instant::now();
    while count() < 2 * DUE && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent_s = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(pid);
    let w0 = switches(pid);
    std::thread::sleep(Duration::from_secs(30));
    let w1 = switches(pid);
    let rss_idle = rss_kib(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    println!(
        "daemon, SQLite, 100000 open: {} reminders sent (Maildir) {sent_s:.1} s after start; RSS {:.1} MB after, {:.1} MB idle; {} wake-ups (voluntary context switches, all threads) in 30 idle s: the Maildir sources' safety scan of each board's folder every 10 s",
        count(),
        rss as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        wakeups_between(&w0, &w1)
    );
}

/// CPU time (user + system) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 after the ')'; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

/// The health and metrics listener's cost: the release daemon on the embedded default (five boards, local
/// folders, an empty SQLite store), without `[http]`, with it idle, and with it scraped every 15 s as
/// Prometheus would: RSS and CPU time over 60 idle seconds.
fn listener_cost() {
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "escalation-bot"])
        .status()
        .expect("cargo");
    assert!(status.success(), "release build");
    let here = std::env::current_dir().expect("cwd");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    for (label, http, scrape) in [
        ("without [http]", false, false),
        ("with [http], not scraped", true, false),
        ("with [http], scraped every 15 s", true, true),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = dir.path().join("config.toml");
        let mut text = format!(
            "policies_dir = \"{}\"\nboards_dir = \"{}\"\n[database]\nurl = \"sqlite:db.sqlite3\"\n[mailbox]\npath = \"mail\"\n[outbox]\npath = \"out\"\n",
            here.join("config/policies").display(),
            here.join("config/boards").display(),
        );
        if http {
            text.push_str(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));
        }
        std::fs::write(&cfg, text).expect("config");
        let mut child = Command::new(here.join("target/release/escalation-bot"))
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon");
        let pid = child.id();
        std::thread::sleep(Duration::from_secs(5));
        let scrape_once = || {
            use std::io::{Read, Write};
            for path in ["/metrics", "/healthz"] {
                if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    let mut out = Vec::new();
                    let _ = c.read_to_end(&mut out);
                }
            }
        };
        if scrape {
            scrape_once();
        }
        let (cpu0, w0) = (cpu_seconds(pid), switches(pid));
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_secs(15));
            if scrape {
                scrape_once();
            }
        }
        let (cpu1, w1) = (cpu_seconds(pid), switches(pid));
        let rss = rss_kib(pid);
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let _ = child.wait();
        println!(
            "listener: daemon {label:<32} RSS {:.1} MB; CPU {:.2} s in 60 s ({:.3}%); {} wake-ups",
            rss as f64 / 1024.0,
            cpu1 - cpu0,
            (cpu1 - cpu0) / 60.0 * 100.0,
            wakeups_between(&w0, &w1)
        );
    }
}

/// The board's form for one email: filling it in and writing the Word document, and reading one back, per
/// board, for a case resolved at stage 3 with agreed actions (the largest form a case makes).
fn paperwork(c: &Config) {
    use escalation_bot::core::paperwork::{fill, Audience};
    use escalation_bot::mail::docx;
    let labels = escalation_bot::core::intake::Labels::new(c.boards.iter().map(|b| b.policy()));
    for b in &c.boards {
        let Some(doc) = b.policy().record_document.clone() else {
            continue;
        };
        let new = NewCase {
            record: Record {
                adult_name: Some("Zoë Testperson".into()),
                nhs_number: Some("9990000018".into()),
                escalating_name: Some("Nia Nurse".into()),
                escalating_agency: Some("Northfield Community Health NHS Trust".into()),
                escalating_email: Some("nia.nurse@nhs.net".into()),
                other_name: Some("Sam Social".into()),
                other_agency: Some("Westshire Council".into()),
                other_email: Some("sam.social@westshire.gov.uk".into()),
                summary: Some("The section 42 enquiry was closed while the risks of self-neglect remain. ".repeat(8)),
                ..Record::default()
            },
            sender: Person::email("nia.nurse@nhs.net"),
        };
        let mut case = lifecycle::open(&b.rules, &new, "BENCH-2027-0001", at("2027-03-01T10:00:00Z"))
            .expect("opens")
            .case;
        for (stage, who) in [(2u8, "lee.lead@nhs.net"), (3, "sara.senior@nhs.net")] {
            let cmd = lifecycle::Command::Escalate {
                to_stage: Some(stage),
                people: vec![Person::email(who)],
                reason: None,
                immediate_risk: false,
            };
            if let Ok(t) = lifecycle::apply(
                &b.rules,
                &case,
                &Person::email("nia.nurse@nhs.net"),
                &cmd,
                at("2027-03-02T10:00:00Z"),
            ) {
                case = t.case;
            }
        }
        let resolve = escalation_bot::core::reply::parse_reply(
            "RESOLVED – joint visit agreed\nActions:\n- Sam Social <sam.social@westshire.gov.uk> to re-open the enquiry by 10 March 2027\n- Nia Nurse (nia.nurse@nhs.net) to arrange the visit by 12/03/2027\nOutstanding issues: funding goes to the panel on 17 March 2027.",
        );
        if let Ok(escalation_bot::core::reply::ReplyCommand::Apply { command }) = resolve.command {
            if let Ok(t) = lifecycle::apply(
                &b.rules,
                &case,
                &Person::email("sara.senior@nhs.net"),
                &command,
                at("2027-03-04T10:00:00Z"),
            ) {
                case = t.case;
            }
        }
        let today = chrono::NaiveDate::from_ymd_opt(2027, 3, 4).expect("date");
        let n = 500;
        let t = Instant::now();
        let mut bytes = Vec::new();
        for _ in 0..n {
            let form = fill(&b.rules, &doc, &case, Audience::Board { personal_data: false }, today);
            bytes = docx::write(&form).expect("writes");
            let _ = docx::html(&form);
        }
        let write_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        let t = Instant::now();
        for _ in 0..n {
            let _ = docx::read_record(&bytes, &labels).expect("reads");
        }
        let read_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!(
            "{:>22}: form filled and written (.docx + HTML) in {write_us:.0} µs, {:.1} KB; read back in {read_us:.0} µs",
            b.id(),
            bytes.len() as f64 / 1024.0
        );
    }
}

#[tokio::main]
async fn main() {
    let c: Config = config::load(Path::new("config/default.toml")).expect("config");
    let sizes: Vec<usize> = std::env::var("ESCALATION_BOT_BENCH_OPEN")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000, 100_000]);
    let only = std::env::var("ESCALATION_BOT_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "paperwork" {
        paperwork(&c);
    }
    if only == "paperwork" {
        return;
    }
    // `ESCALATION_BOT_BENCH_ONLY=listener`: what /healthz and /metrics cost the daemon.
    if only == "listener" {
        listener_cost();
        return;
    }
    let sizes = if only == "daemon" { vec![100_000] } else { sizes };
    let dir = tempfile::tempdir().expect("dir");
    let mut last_sqlite: Option<PathBuf> = None;
    // `ESCALATION_BOT_BENCH_ONLY=daemon`: the daemon's memory and idle wake-ups alone.
    if only.is_empty() || only == "sqlite" {
        let mut first = None;
        for &open in &sizes {
            let path = dir.path().join(format!("clock-{open}.sqlite3"));
            let store = SqliteStore::open(&path).await.expect("sqlite");
            let (fire, _) = measure("SQLite", &store, &c, open).await;
            store.close().await;
            let base = *first.get_or_insert(fire);
            println!(
                "{:>10} {open:>7} open: {:.2}× the time at {}",
                "",
                fire / base,
                sizes[0]
            );
            last_sqlite = Some(path);
        }
    }
    if only.is_empty() || only == "postgres" {
        let mut first = None;
        for &open in &sizes {
            let url = pg_database(&format!("escbot_bench_clock_{open}")).await;
            let store = PgStore::connect(&url).await.expect("postgres");
            let (fire, _) = measure("PostgreSQL", &store, &c, open).await;
            store.close().await;
            let base = *first.get_or_insert(fire);
            println!(
                "{:>10} {open:>7} open: {:.2}× the time at {}",
                "",
                fire / base,
                sizes[0]
            );
        }
    }
    if only == "daemon" || last_sqlite.is_some() && sizes.contains(&100_000) {
        // A copy with the timers not yet fired: fill a fresh database for the daemon.
        let fresh = dir.path().join("daemon.sqlite3");
        let store = SqliteStore::open(&fresh).await.expect("sqlite");
        escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
            .await
            .expect("prepare");
        fill(&store, &c, 100_000).await;
        store.close().await;
        let work = dir.path().join("daemon");
        std::fs::create_dir_all(&work).expect("dir");
        daemon_rss(&fresh, &work);
    }
}
