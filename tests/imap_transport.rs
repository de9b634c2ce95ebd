//! The IMAP transport against a real Dovecot (tests/common/mailserver.rs) and the real daemon:
//! - A message larger than the bot reads goes to Quarantine by its size alone: its body is never fetched
//!   (Dovecot's own count of body bytes served says so) and the daemon's memory stays bounded, while the
//!   message after it is processed as usual; the daemon records it by its headers.
//! - On a server without MOVE, the bot expunges exactly the UIDs it copied (UID EXPUNGE), never a
//!   message someone flagged \Deleted themselves; on one without MOVE or UIDPLUS it expunges nothing, and
//!   leaves what it copied flagged \Deleted and \Seen, never reading it again.
//! - IDLE re-issued every few seconds keeps one healthy connection.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mailserver::MailServers;
use futures_util::TryStreamExt;

/// The real daemon, its log kept line by line.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Start the real binary and wait until it watches Bradford's IMAP mailbox.
    fn start(config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("ESCALATION_BOT_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daemon starts");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().expect("log").push(plain(&line));
            }
        });
        let d = Daemon { child, lines };
        d.wait_for("watching the IMAP mailbox", Duration::from_secs(30));
        d
    }

    fn log(&self) -> Vec<String> {
        self.lines.lock().expect("log").clone()
    }

    fn said(&self, text: &str) -> usize {
        self.log().iter().filter(|l| l.contains(text)).count()
    }

    fn wait_for(&self, text: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.said(text) > 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon never said {text:?}; it said:\n{}", self.log().join("\n"));
    }

    /// The most memory the daemon has held so far (VmHWM), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
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

/// A log line without terminal colour codes.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escalation(n: usize) -> Vec<u8> {
    std::fs::read_to_string("tests/fixtures/forms/bradford-plain.eml")
        .expect("fixture")
        .replace(
            "<bradford-plain@fixtures.nhs.net>",
            &format!("<transport-{n}@fixtures.nhs.net>"),
        )
        .into_bytes()
}

const MB: usize = 1024 * 1024;

/// An escalation with a 30 MB attachment: more than the 25 MB the bot reads.
fn oversized() -> Vec<u8> {
    let mut raw = String::from(
        "From: Nia Nurse <nia.nurse@fixtures.nhs.net>\r\nTo: BSAB@bradford.gov.uk\r\n\
         Subject: Escalation with the whole case file attached\r\nMessage-ID: <transport-huge@fixtures.nhs.net>\r\n\
         Date: Mon, 1 Mar 2027 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         Please see the attached case file.\r\n--b\r\nContent-Type: application/pdf; name=\"case-file.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = format!("{}\r\n", "QUFB".repeat(19));
    while raw.len() < 30 * MB {
        raw.push_str(&line);
    }
    raw.push_str("--b--\r\n");
    raw.into_bytes()
}

fn header(raw: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find(|l| l.to_lowercase().starts_with(&format!("{}:", name.to_lowercase())))
        .map(|l| l[name.len() + 1..].trim().to_string())
        .unwrap_or_default()
}

fn case_count(config: &Path) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(config)
        .args(["cases", "list", "--json"])
        .output()
        .expect("cases list");
    let cases: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    cases.as_array().map(Vec::len).unwrap_or(0)
}

async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A message in a folder as the tests look at it, without fetching its body: its Message-ID, its size and
/// its flags.
#[derive(Debug)]
struct Seen {
    message_id: String,
    size: u32,
    flags: Vec<String>,
}

async fn look(servers: &MailServers, user: &str, folder: &str) -> Vec<Seen> {
    let mut s = servers.session(user).await;
    let Ok(mb) = s.select(folder).await else {
        return Vec::new();
    };
    if mb.exists == 0 {
        s.logout().await.ok();
        return Vec::new();
    }
    let fetched: Vec<_> = s
        .fetch("1:*", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        .await
        .expect("fetch")
        .try_collect()
        .await
        .expect("fetch");
    let out = fetched
        .iter()
        .map(|f| Seen {
            message_id: f.header().map(|h| header(h, "Message-ID")).unwrap_or_default(),
            size: f.size.unwrap_or_default(),
            flags: f.flags().map(|fl| format!("{fl:?}")).collect(),
        })
        .collect();
    s.logout().await.ok();
    out
}

/// Put `raw` into `user`'s INBOX with `flags`, as a person's mail client would.
async fn append_flagged(servers: &MailServers, user: &str, raw: &[u8], flags: &str) {
    let mut s = servers.session(user).await;
    s.append("INBOX", Some(flags), None, raw).await.expect("APPEND");
    s.logout().await.ok();
}

/// How many bytes of message bodies Dovecot served to `user` over IMAP, by its own count in the log line
/// of each finished session (`body_bytes=`). Waits until every session that logged in has logged its end.
fn body_bytes_served(servers: &MailServers, user: &str) -> u64 {
    let log = servers.dir.path().join("dovecot.log");
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let logins = text
            .lines()
            .filter(|l| l.contains("imap-login:") && l.contains(&format!("Login: user=<{user}>")))
            .count();
        let ends: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("imap({user})")) && l.contains("body_bytes="))
            .collect();
        if (logins > 0 && ends.len() >= logins) || start.elapsed() > Duration::from_secs(10) {
            assert!(
                logins > 0 && ends.len() >= logins,
                "Dovecot did not log the end of every session:\n{text}"
            );
            return ends
                .iter()
                .filter_map(|l| l.split("body_bytes=").nth(1))
                .filter_map(|v| v.split(|c: char| !c.is_ascii_digit()).next())
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn daemon_config(servers: &MailServers, dir: &Path) -> PathBuf {
    servers.daemon_config(dir, "sqlite:../data/db.sqlite3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_goes_to_quarantine_by_its_size_alone_and_the_next_one_is_processed() {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    let daemon = Daemon::start(&config);
    // Settled after start-up: the high-water mark from here on is what the mail costs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = daemon.peak_rss();

    let big = oversized();
    servers.append("bsab", &big).await;
    servers.append("bsab", &escalation(1)).await;
    let settled = wait_until(Duration::from_secs(30), || async {
        servers.count("bsab", "INBOX").await == 0
            && servers.count("bsab", "Quarantine").await == 1
            && servers.count("bsab", "Processed").await == 1
    })
    .await;
    let after = daemon.peak_rss();
    assert!(
        settled,
        "INBOX {}, Quarantine {}, Processed {}; the daemon said:\n{}",
        servers.count("bsab", "INBOX").await,
        servers.count("bsab", "Quarantine").await,
        servers.count("bsab", "Processed").await,
        daemon.log().join("\n")
    );
    println!(
        "daemon peak RSS {} MB before, {} MB after a {} MB message",
        before / MB as u64,
        after / MB as u64,
        big.len() / MB
    );
    // Reading the body would cost at least its 30 MB (and a copy or two on the way).
    assert!(
        after < before + 12 * MB as u64,
        "the daemon's peak RSS grew from {} to {} MB",
        before / MB as u64,
        after / MB as u64
    );

    // The big one is whole in Quarantine; the escalation after it became a case.
    let quarantined = look(&servers, "bsab", "Quarantine").await;
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].message_id, "<transport-huge@fixtures.nhs.net>");
    assert_eq!(quarantined[0].size as usize, big.len());
    let processed = look(&servers, "bsab", "Processed").await;
    assert_eq!(processed[0].message_id, "<transport-1@fixtures.nhs.net>");
    assert_eq!(case_count(&config), 1);
    assert_eq!(
        daemon.said("handed over by its headers alone"),
        1,
        "{:#?}",
        daemon.log()
    );
    daemon.stop();

    // Dovecot's own count: the escalation's body was served, the big one's never was.
    let served = body_bytes_served(&servers, "bsab");
    println!("Dovecot served {served} bytes of bodies to bsab");
    assert!(served > 0, "the escalation's body was fetched");
    assert!(
        served < MB as u64,
        "{served} bytes of bodies served: the big message was fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_recorded_by_its_headers_as_too_large() {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    servers.append("bsab", &oversized()).await;
    let daemon = Daemon::start(&config);
    let moved = wait_until(Duration::from_secs(30), || async {
        servers.count("bsab", "Quarantine").await == 1
    })
    .await;
    daemon.stop();
    assert!(moved, "the message was not quarantined");

    use sqlx::Connection;
    let db = dir.path().join("data/db.sqlite3");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
        .await
        .expect("db");
    let rows: Vec<(Option<String>, Option<String>, Vec<u8>)> =
        sqlx::query_as("SELECT outcome, problems, raw FROM inbound")
            .fetch_all(&mut c)
            .await
            .expect("inbound");
    assert_eq!(rows.len(), 1, "one message kept");
    let (outcome, problems, raw) = &rows[0];
    // Kept by its headers alone, marked as too large to read.
    assert!(raw.len() < 64 * 1024, "{} bytes kept", raw.len());
    assert!(raw.starts_with(b"X-Escalation-Bot-Oversized: size="));
    assert_eq!(header(raw, "Message-ID"), "<transport-huge@fixtures.nhs.net>");
    assert_eq!(outcome.as_deref(), Some("refused"));
    let problems = problems.clone().unwrap_or_default();
    assert!(
        problems.contains("more than the 25 MB the bot accepts"),
        "the record does not say the message was too large: {problems}"
    );
    assert_eq!(case_count(&config), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_move_the_bot_expunges_exactly_the_uids_it_copied() {
    // No MOVE; UIDPLUS, so UID EXPUNGE.
    let servers = MailServers::start_with("imap_capability = IMAP4rev1 IDLE UIDPLUS");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    // Someone using the shared mailbox deleted a message of their own, without expunging it yet.
    let own = b"From: Sam Social <sam.social@westshire.gov.uk>\r\nTo: BSAB@bradford.gov.uk\r\n\
                Subject: lunch?\r\nMessage-ID: <own-deleted@westshire.gov.uk>\r\n\r\nSee you at one.\r\n";
    append_flagged(&servers, "bsab", own, "(\\Deleted)").await;
    let daemon = Daemon::start(&config);
    assert_eq!(daemon.said("removal=CopyAndUidExpunge"), 1, "{:#?}", daemon.log());

    servers.append("bsab", &escalation(1)).await;
    let moved = wait_until(Duration::from_secs(20), || async {
        servers.count("bsab", "Processed").await == 1 && servers.count("bsab", "INBOX").await <= 1
    })
    .await;
    assert!(
        moved,
        "the escalation was not moved out; the daemon said:\n{}",
        daemon.log().join("\n")
    );
    // A moment for anything else the bot might do.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inbox = look(&servers, "bsab", "INBOX").await;
    daemon.stop();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0].message_id, "<own-deleted@westshire.gov.uk>");
    assert!(inbox[0].flags.iter().any(|f| f == "Deleted"), "{inbox:#?}");
    assert_eq!(case_count(&config), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_move_or_uidplus_the_bot_expunges_nothing_and_flags_what_it_copied() {
    let servers = MailServers::start_with("imap_capability = IMAP4rev1 IDLE");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    let own = b"From: Sam Social <sam.social@westshire.gov.uk>\r\nTo: BSAB@bradford.gov.uk\r\n\
                Subject: lunch?\r\nMessage-ID: <own-deleted@westshire.gov.uk>\r\n\r\nSee you at one.\r\n";
    append_flagged(&servers, "bsab", own, "(\\Deleted)").await;
    let daemon = Daemon::start(&config);

    servers.append("bsab", &escalation(1)).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            servers.count("bsab", "Processed").await == 1
        })
        .await,
        "the escalation was not copied; the daemon said:\n{}",
        daemon.log().join("\n")
    );
    // A second arrival wakes the bot again: the first, still in the INBOX flagged \Deleted, is not read or
    // copied again.
    servers.append("bsab", &escalation(2)).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            servers.count("bsab", "Processed").await >= 2
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let inbox = look(&servers, "bsab", "INBOX").await;
    let processed = look(&servers, "bsab", "Processed").await;
    let said = daemon.said("neither MOVE nor UIDPLUS");
    daemon.stop();
    assert_eq!(processed.len(), 2, "{processed:#?}");
    assert_eq!(case_count(&config), 2);
    // Nothing expunged: the person's own message and both escalations are still there, the escalations
    // flagged \Deleted and \Seen.
    assert_eq!(inbox.len(), 3, "{inbox:#?}");
    for m in &inbox {
        assert!(m.flags.iter().any(|f| f == "Deleted"), "{inbox:#?}");
        if m.message_id.starts_with("<transport-") {
            assert!(m.flags.iter().any(|f| f == "Seen"), "{inbox:#?}");
        }
    }
    assert!(inbox.iter().any(|m| m.message_id == "<own-deleted@westshire.gov.uk>"));
    // The operator is told, once.
    assert_eq!(said, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_re_issued_every_second_keeps_one_healthy_connection() {
    let servers = MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = daemon_config(&servers, dir.path());
    let bradford = config.parent().expect("config dir").join("boards/bradford.toml");
    let text = std::fs::read_to_string(&bradford).expect("read");
    assert!(text.contains("idle_seconds = 60"));
    std::fs::write(&bradford, text.replace("idle_seconds = 60", "idle_seconds = 1")).expect("write");
    let daemon = Daemon::start(&config);
    // Several IDLEs end quietly, each followed by DONE and a NOOP.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    servers.append("bsab", &escalation(1)).await;
    let done = wait_until(Duration::from_secs(60), || async {
        servers.count("bsab", "Processed").await == 1
    })
    .await;
    let log = daemon.log();
    daemon.stop();
    assert!(done, "the escalation was not processed:\n{}", log.join("\n"));
    assert!(
        !log.iter().any(|l| l.contains("IMAP connection lost")),
        "the connection was lost:\n{}",
        log.join("\n")
    );
    assert_eq!(
        log.iter().filter(|l| l.contains("watching the IMAP mailbox")).count(),
        1,
        "one connection throughout:\n{}",
        log.join("\n")
    );
}
