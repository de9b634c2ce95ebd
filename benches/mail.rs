//! Benchmarks of the mail front door, printing figures (run: `cargo bench --bench mail`; the servers come
//! from scripts/test.sh's installs). Not a test: nothing here passes or fails on time.
//!
//! 1. Messages parsed per second in-process (MIME decoding and reading the record).
//! 2. A backlog of BACKLOG escalation emails already in a Dovecot mailbox, taken to cases with
//!    acknowledgements queued, by the real daemon (release build), on SQLite and on PostgreSQL.
//! 3. APPEND to acknowledgement delivered in the sender's mailbox: 50 samples, p50 / p95 / max.
//! 4. The daemon's resident memory when idle and after the backlog, and the CPU it uses when idle.
//!
//! `ESCALATION_BOT_BENCH_BACKLOG` sets the backlog size (default 10000); `ESCALATION_BOT_BENCH_ONLY=sqlite` or
//! `=postgres` runs that backlog alone (`=idle`: the idle daemon alone); `ESCALATION_BOT_BENCH_LOG=escalation_bot=debug` keeps the daemon's log
//! (each batch's fetch, processing and move times) in `ESCALATION_BOT_BENCH_LOG_FILE`.

#[path = "../tests/common/mailserver.rs"]
#[allow(dead_code)]
mod mailserver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailserver::MailServers;

fn fixtures() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir("tests/fixtures/forms")
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    v.sort();
    v
}

async fn parse_rate() {
    let config = escalation_bot::config::load(Path::new("config/default.toml")).expect("config");
    let pipeline = escalation_bot::mail::pipeline::Pipeline::new(&config, b"bench".to_vec()).expect("pipeline");
    let msgs = fixtures();
    let n = 30_000;
    let start = Instant::now();
    let mut fields = 0;
    for i in 0..n {
        let (_, parsed) = pipeline.read_escalation(&msgs[i % msgs.len()]).expect("decodes");
        fields += parsed.fields_found;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse (one core): {n} messages in {secs:.2} s = {:.0} messages/s ({fields} fields read)",
        n as f64 / secs
    );
    // As the daemon does it: each batch of 100 decoded and read on every core before the store is touched.
    let batch: Vec<&[u8]> = (0..100).map(|i| msgs[i % msgs.len()].as_slice()).collect();
    let start = Instant::now();
    let mut read = 0;
    for _ in 0..n / batch.len() {
        read += pipeline.prepare_all(&batch).await.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parse (batches of 100, as the daemon, {} cores): {read} messages in {secs:.2} s = {:.0} messages/s",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        read as f64 / secs
    );
}

fn release_binary() -> PathBuf {
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "escalation-bot"])
        .status()
        .expect("cargo");
    assert!(status.success(), "release build");
    PathBuf::from("target/release/escalation-bot")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// CPU time each thread of the process has used, in nanoseconds, and how many times it ran, by thread id
/// (from `/proc/PID/task/*/schedstat`, exact where `/proc/PID/stat` counts whole ticks).
fn thread_cpu(pid: u32) -> std::collections::HashMap<String, (u64, u64)> {
    let mut threads = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let f: Vec<u64> = stat.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        let reading = (f.first().copied().unwrap_or(0), f.get(2).copied().unwrap_or(0));
        threads.insert(task.file_name().to_string_lossy().into_owned(), reading);
    }
    threads
}

/// CPU nanoseconds and runs between two readings of [`thread_cpu`]: a thread that started meanwhile counts
/// whole; one that ended meanwhile (tokio ends idle blocking threads) counts nothing after the first reading,
/// as it can no longer be read.
fn cpu_between(
    before: &std::collections::HashMap<String, (u64, u64)>,
    after: &std::collections::HashMap<String, (u64, u64)>,
) -> (u64, u64) {
    after.iter().fold((0, 0), |(ns, runs), (tid, (n1, r1))| {
        let (n0, r0) = before.get(tid).copied().unwrap_or((0, 0));
        (ns + n1.saturating_sub(n0), runs + r1.saturating_sub(r0))
    })
}

/// The whole machine's busy and total CPU time so far, in clock ticks (the first line of /proc/stat).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The daemon, logging warnings to nowhere; or, with `ESCALATION_BOT_BENCH_LOG=FILTER` (`debug` shows each
/// batch's fetch, processing and move times), to `ESCALATION_BOT_BENCH_LOG_FILE` (default `bench-daemon.log`).
fn start(bin: &Path, config: &Path) -> Child {
    let (filter, log) = match std::env::var("ESCALATION_BOT_BENCH_LOG") {
        Ok(filter) => {
            let path = std::env::var("ESCALATION_BOT_BENCH_LOG_FILE").unwrap_or_else(|_| "bench-daemon.log".into());
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("daemon log file");
            (filter, Stdio::from(file))
        }
        Err(_) => ("warn".to_string(), Stdio::null()),
    };
    Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("ESCALATION_BOT_LOG", filter)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("daemon")
}

fn escalation(template: &[u8], n: usize) -> Vec<u8> {
    String::from_utf8_lossy(template)
        .replace(
            "<bradford-plain@fixtures.nhs.net>",
            &format!("<bench-{n}@fixtures.nhs.net>"),
        )
        .into_bytes()
}

async fn backlog(bin: &Path, label: &str, database: &str, n: usize, latency: bool) {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("dir");
    let config = servers.daemon_config(dir.path(), database);
    let template = std::fs::read("tests/fixtures/forms/bradford-plain.eml").expect("fixture");
    {
        let mut s = servers.session("bsab").await;
        for i in 0..n {
            s.append("INBOX", None, None, escalation(&template, i))
                .await
                .expect("APPEND");
        }
        s.logout().await.ok();
    }
    let started = Instant::now();
    let machine_before = machine_ticks();
    let mut child = start(bin, &config);
    let pid = child.id();
    // Cases with acknowledgements queued: a message leaves the INBOX only after its effect committed. One
    // watching session asking STATUS, so that the watching costs Dovecot (on the same two cores) little.
    let mut watch = servers.session("bsab").await;
    loop {
        let left = watch
            .status("INBOX", "(MESSAGES)")
            .await
            .map(|m| m.exists)
            .unwrap_or(u32::MAX);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.logout().await.ok();
    let drained = started.elapsed();
    let machine_after = machine_ticks();
    println!(
        "backlog ({label}): {n} messages to cases with acknowledgements queued in {:.2} s = {:.0} messages/s",
        drained.as_secs_f64(),
        n as f64 / drained.as_secs_f64()
    );
    println!(
        "backlog ({label}): {} of {n} acknowledgements already delivered over SMTP by then",
        servers.count("nia.nurse", "INBOX").await
    );
    println!(
        "backlog ({label}): the daemon used {:.2} s of CPU meanwhile (all threads)",
        cpu_ticks(pid) as f64 / 100.0
    );
    println!(
        "backlog ({label}): the machine was busy {:.0}% of the time on all its cores (the daemon, Dovecot, this bench)",
        100.0 * (machine_after.0 - machine_before.0) as f64 / (machine_after.1 - machine_before.1).max(1) as f64
    );
    println!("memory ({label}): {} KiB resident after the backlog", rss_kib(pid));
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    if latency {
        latency_samples(bin, label, database).await;
    }
}

/// APPEND to acknowledgement delivered, on a fresh daemon with an empty mailbox: 50 samples.
async fn latency_samples(bin: &Path, label: &str, database: &str) {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("dir");
    let config = servers.daemon_config(dir.path(), database);
    let template = std::fs::read("tests/fixtures/forms/bradford-plain.eml").expect("fixture");
    let mut child = start(bin, &config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut samples = Vec::new();
    for i in 0..50u32 {
        let t = Instant::now();
        servers
            .append("bsab", &escalation(&template, 2_000_000 + i as usize))
            .await;
        while servers.count("nia.nurse", "INBOX").await <= i {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "latency ({label}): APPEND to acknowledgement delivered, 50 samples: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ms(samples[24]),
        ms(samples[47]),
        ms(samples[49])
    );
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

async fn idle_memory(bin: &Path) {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("dir");
    let config = servers.daemon_config(dir.path(), "sqlite:../data/db.sqlite3");
    let mut child = start(bin, &config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = thread_cpu(child.id());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (ns, runs) = cpu_between(&before, &thread_cpu(child.id()));
    println!(
        "idle: {} KiB resident; {:.2} ms of CPU in 30 s idle ({} thread wake-ups)",
        rss_kib(child.id()),
        ns as f64 / 1e6,
        runs
    );
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; anything else (a stray `cargo test --all-targets`) gets a pointer instead
    // of minutes of benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with: cargo bench --bench mail");
        return;
    }
    let n: usize = std::env::var("ESCALATION_BOT_BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // `ESCALATION_BOT_BENCH_ONLY=sqlite` (or `postgres`): that backlog alone, while working on it; `idle`: the
    // idle daemon alone.
    let only = std::env::var("ESCALATION_BOT_BENCH_ONLY").unwrap_or_default();
    let bin = release_binary();
    if only.is_empty() {
        parse_rate().await;
    }
    if only.is_empty() || only == "idle" {
        idle_memory(&bin).await;
    }
    if only.is_empty() || only == "sqlite" {
        backlog(&bin, "SQLite", "sqlite:../data/db.sqlite3", n, only.is_empty()).await;
    }
    if !(only.is_empty() || only == "postgres") {
        return;
    }
    let admin =
        std::env::var("ESCALATION_BOT_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("escbot_bench_{}", std::process::id());
    let psql = |sql: &str| Command::new("psql").arg(&admin).args(["-qc", sql]).status();
    if psql(&format!("CREATE DATABASE {name}")).is_ok_and(|s| s.success()) {
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        backlog(&bin, "PostgreSQL", &format!("{base}/{name}"), n, false).await;
        let _ = psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
    } else {
        println!("PostgreSQL not reachable at {admin}: skipped");
    }
}
