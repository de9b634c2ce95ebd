//! Running it in production: the health and metrics listener against a real PostgreSQL that is stopped and
//! started again (a private instance, tests/support/private_pg.sh), the daemon stopping on SIGTERM within
//! its stated time, and the board manager's view of unusable mail (`inbound list`, `show`, `retry`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;

/// SIGTERM to exit: the batch in hand, then at most the daemon's `STOP_WITHIN` for its tasks, with room for
/// a busy machine's process start and exit.
const STOPPED_WITHIN: Duration = Duration::from_secs(escalation_bot::app::STOP_WITHIN.as_secs() + 10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private PostgreSQL in a folder of its own, destroyed when dropped.
struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePg {
    fn run(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg("tests/support/private_pg.sh")
            .args(args)
            .output()
            .expect("private_pg.sh");
        assert!(
            out.status.success(),
            "private_pg.sh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> PrivatePg {
        let pg = PrivatePg {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
        };
        let dir = pg.dir.path().display().to_string();
        pg.run(&["init", &dir, &pg.port.to_string()]);
        pg
    }

    fn stop(&self) {
        self.run(&["stop", &self.dir.path().display().to_string()]);
    }

    fn restart(&self) {
        self.run(&["start", &self.dir.path().display().to_string()]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("tests/support/private_pg.sh")
            .arg("destroy")
            .arg(self.dir.path())
            .output();
    }
}

/// GET `path` from the listener on `port`: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = write!(c, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the metric line starting with `name` (labels included), or 0.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The shipped configuration (local mailbox folders, outbox folder) with `database` and `extra` main-file
/// settings.
fn config_with(database: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, root) = common::copy_config();
    let main = root.join("default.toml");
    let text = std::fs::read_to_string(&main).expect("read").replace(
        "url = \"sqlite:../data/escalation-bot.sqlite3\"",
        &format!("url = \"{database}\""),
    );
    std::fs::write(&main, format!("{text}\n{extra}\n")).expect("write");
    (dir, main)
}

fn bot(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("escalation-bot");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A command's standard output alone (JSON to parse), asserting it succeeded.
fn bot_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("escalation-bot");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn escalation(n: usize) -> String {
    std::fs::read_to_string("tests/fixtures/forms/bradford-plain.eml")
        .expect("fixture")
        .replace(
            "<bradford-plain@fixtures.nhs.net>",
            &format!("<ops-{n}@fixtures.nhs.net>"),
        )
}

/// Deliver an email into Bradford's local mailbox folder, as a mail delivery agent does.
fn deliver(config: &Path, dir: &Path, name: &str, raw: &str) {
    let file = dir.join(name);
    std::fs::write(&file, raw).expect("write");
    let (ok, out) = bot(
        config,
        &["deliver", "--board", "bradford", file.to_str().expect("path")],
    );
    assert!(ok, "{out}");
}

#[test]
fn healthz_turns_503_while_postgresql_is_down_and_200_when_it_returns_with_nothing_lost_and_the_metrics_move() {
    let pg = PrivatePg::start();
    let http = free_port();
    let (dir, config) = config_with(&pg.url(), &format!("[http]\nlisten = \"127.0.0.1:{http}\"\n"));
    let mut d = Daemon::start(&config, &[], "health and metrics at /healthz and /metrics");
    d.wait_for("escalation-bot is running", Duration::from_secs(30));

    assert_eq!(get(http, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(http, "/nothing").0, 404);
    let (status, before) = get(http, "/metrics");
    assert_eq!(status, 200);
    assert!(before.contains("# TYPE escalation_bot_emails_sent counter"), "{before}");
    assert_eq!(metric(&before, "escalation_bot_outbox_depth"), 0.0, "{before}");

    // Mail goes through: the counters move.
    deliver(&config, dir.path(), "one.eml", &escalation(1));
    assert!(
        wait_until(Duration::from_secs(60), || {
            metric(&get(http, "/metrics").1, "escalation_bot_emails_sent_total") >= 2.0
        }),
        "{}",
        get(http, "/metrics").1
    );
    let (_, after) = get(http, "/metrics");
    assert_eq!(
        metric(
            &after,
            "escalation_bot_messages_in_total{board=\"bradford\",outcome=\"case_opened\"}"
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, "escalation_bot_cases_opened_total{board=\"bradford\"}"),
        1.0
    );
    assert_eq!(
        metric(&after, "escalation_bot_processing_seconds_count"),
        1.0,
        "{after}"
    );
    assert!(metric(&after, "escalation_bot_timers_due") >= 0.0);

    // PostgreSQL stops: /healthz says so, with the reason.
    pg.stop();
    assert!(
        wait_until(Duration::from_secs(60), || get(http, "/healthz").0 == 503),
        "{:?}",
        get(http, "/healthz")
    );
    let (_, why) = get(http, "/healthz");
    assert!(why.contains("the store cannot be reached"), "{why}");
    // Mail arriving meanwhile waits in the mailbox folder.
    deliver(&config, dir.path(), "two.eml", &escalation(2));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/mailbox/bradford/new"))
            .expect("new")
            .count(),
        1,
        "the message waits, unprocessed"
    );

    // PostgreSQL returns: healthy again, and the waiting message becomes a case.
    pg.restart();
    assert!(
        wait_until(Duration::from_secs(30), || get(http, "/healthz").0 == 200),
        "{:?}",
        get(http, "/healthz")
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            metric(
                &get(http, "/metrics").1,
                "escalation_bot_messages_in_total{board=\"bradford\",outcome=\"case_opened\"}",
            ) == 2.0
        }),
        "{}",
        d.said.join("\n")
    );
    let cases = bot_json(&config, &["cases", "list", "--json"]);
    assert_eq!(cases.as_array().map(Vec::len), Some(2), "nothing lost, nothing twice");
    assert!(bot(&config, &["health"]).0, "escalation-bot health says healthy");
    let (status, took) = d.stop();
    assert!(status.success());
    assert!(took < STOPPED_WITHIN, "{took:?}");
    // Stopped: `health` says so with a non-zero exit.
    assert!(!bot(&config, &["health"]).0);
}

#[test]
fn sigterm_finishes_the_batch_in_hand_and_stops_within_the_stated_time() {
    let (dir, config) = config_with("sqlite:../data/db.sqlite3", "");
    let mut d = Daemon::start(&config, &[], "escalation-bot is running");
    // A batch of messages arrives, and SIGTERM with it.
    let files: Vec<PathBuf> = (0..40)
        .map(|n| {
            let f = dir.path().join(format!("m{n}.eml"));
            std::fs::write(&f, escalation(100 + n)).expect("write");
            f
        })
        .collect();
    let mut args = vec!["deliver".to_string(), "--board".into(), "bradford".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(bot(&config, &args).0);
    d.wait_for("message processed", Duration::from_secs(20));
    let (status, took) = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(took < STOPPED_WITHIN, "stopped in {took:?}");
    // What was processed is complete; what was not waits in new/ for the next start, which takes it all.
    let mut d = Daemon::start(&config, &[], "escalation-bot is running");
    assert!(wait_until(Duration::from_secs(30), || {
        std::fs::read_dir(dir.path().join("data/mailbox/bradford/new"))
            .map(|r| r.count() == 0)
            .unwrap_or(false)
    }));
    let _ = d.count("");
    d.stop();
    let cases = bot_json(&config, &["cases", "list", "--json"]);
    assert_eq!(cases.as_array().map(Vec::len), Some(40), "every message once");
}

#[test]
fn unusable_mail_is_listed_shown_with_the_reply_and_retried_after_a_configuration_fix() {
    let (dir, config) = config_with("sqlite:../data/db.sqlite3", "");
    // Sent to an address no board has yet (the board moved mailbox), and one missing its record's fields.
    let moved = escalation(1).replace("To: BSAB@bradford.gov.uk", "To: escalations@bradford-sab.example");
    let incomplete = "From: Grace Adeyemi <grace.adeyemi@nhs.net>\r\nTo: BSAB@bradford.gov.uk\r\nSubject: Escalation - disagreement about closure\r\nMessage-ID: <ops-incomplete@nhs.net>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nHi, I disagree with the decision to close the enquiry, can someone look at this please?\r\n\r\nGrace\r\n";
    for (name, raw) in [("moved.eml", moved.as_str()), ("incomplete.eml", incomplete)] {
        std::fs::write(dir.path().join(name), raw).expect("write");
    }
    // The daemon names the board of each mailbox it reads; a message for no board names none.
    for (name, board) in [("moved.eml", None), ("incomplete.eml", Some("bradford"))] {
        let file = dir.path().join(name).display().to_string();
        let mut args = vec!["ingest", "--now", "2026-12-07T10:00:00Z"];
        if let Some(b) = board {
            args.extend(["--board", b]);
        }
        args.push(&file);
        let (ok, out) = bot(&config, &args);
        assert!(ok, "{out}");
    }

    let rows = bot_json(&config, &["inbound", "list", "--json"]);
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let incomplete_row = rows
        .iter()
        .find(|r| r["from"] == "grace.adeyemi@nhs.net")
        .expect("the incomplete one");
    assert_eq!(incomplete_row["outcome"], "refused");
    assert_eq!(incomplete_row["board"], "bradford");
    let moved_row = rows
        .iter()
        .find(|r| r["from"] == "nia.nurse@nhs.net")
        .expect("the one to the moved mailbox");
    assert_eq!(moved_row["outcome"], "refused", "{moved_row}");
    assert!(
        moved_row["problems"]
            .to_string()
            .contains("not addressed to a board mailbox"),
        "{moved_row}"
    );

    // The filters.
    let one = bot_json(
        &config,
        &[
            "inbound",
            "list",
            "--board",
            "bradford",
            "--outcome",
            "refused",
            "--json",
        ],
    );
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    let none = bot_json(&config, &["inbound", "list", "--since", "2027-01-01", "--json"]);
    assert_eq!(none, serde_json::json!([]));
    let (ok, out) = bot(&config, &["inbound", "list"]);
    assert!(
        ok && out.contains("grace.adeyemi@nhs.net") && out.contains("refused"),
        "{out}"
    );

    // Shown: who, when, why, and the reply the sender got.
    let id = incomplete_row["id"].as_i64().expect("id").to_string();
    let (ok, out) = bot(&config, &["inbound", "show", &id]);
    assert!(ok, "{out}");
    assert!(out.contains("From:        grace.adeyemi@nhs.net"), "{out}");
    assert!(out.contains("Outcome:     refused"), "{out}");
    assert!(out.contains("Why it was not used:"), "{out}");
    assert!(out.contains("Reply to grace.adeyemi@nhs.net"), "{out}");

    // Retried unchanged, it is refused again, and answered again under a Message-ID of its own; it stays
    // in the list.
    let (ok, out) = bot(&config, &["inbound", "retry", &id]);
    assert!(ok && out.contains("was refused, now refused"), "{out}");
    assert!(!out.contains("could not be processed"), "{out}");
    let again = bot_json(&config, &["inbound", "show", &id, "--json"]);
    assert_eq!(again["outcome"], "refused");
    assert_eq!(again["replies"].as_array().map(Vec::len), Some(2), "{again}");
    let listed = bot_json(&config, &["inbound", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // The configuration is fixed (Bradford's mailbox address), and the message retried: a case.
    let board = config.parent().expect("dir").join("boards/bradford.toml");
    let text = std::fs::read_to_string(&board).expect("read");
    let old = text
        .lines()
        .find(|l| l.starts_with("mailbox = "))
        .expect("mailbox line")
        .to_string();
    std::fs::write(
        &board,
        text.replace(&old, "mailbox = \"escalations@bradford-sab.example\""),
    )
    .expect("write");
    let id = moved_row["id"].as_i64().expect("id").to_string();
    let (ok, out) = bot(&config, &["inbound", "retry", &id, "--now", "2026-12-07T11:00:00Z"]);
    assert!(ok, "{out}");
    assert!(out.contains("was refused, now case_opened (case BRAD-2026-"), "{out}");
    let shown = bot_json(&config, &["inbound", "show", &id, "--json"]);
    assert_eq!(shown["outcome"], "case_opened");
    assert!(shown["replies"].as_array().is_some_and(|r| !r.is_empty()), "{shown}");
    // Retried again: it has had its effect, and has none twice.
    let (ok, out) = bot(&config, &["inbound", "retry", &id]);
    assert!(
        !ok && out.contains("it has had its effect, and is not processed twice"),
        "{out}"
    );
    let cases = bot_json(&config, &["cases", "list", "--json"]);
    assert_eq!(cases.as_array().map(Vec::len), Some(1), "{out}");
    assert!(!bot(&config, &["inbound", "show", "999"]).0);
}
