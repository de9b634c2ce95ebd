//! The command-line contract (DESIGN.md), tested by running the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{config, open_case, upsert_boards};
use escalation_bot::store::{SqliteStore, Store};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A configuration using the shipped policies and boards with a database in a temporary folder.
fn temp_config(db: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let here = std::env::current_dir().expect("cwd");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "policies_dir = \"{}\"\nboards_dir = \"{}\"\n[database]\nurl = \"{db}\"\n[mailbox]\npath = \"mail\"\n[outbox]\npath = \"out\"\n",
            here.join("config/policies").display(),
            here.join("config/boards").display()
        ),
    )
    .expect("write config");
    (dir, path)
}

#[test]
fn calendar_holidays_json_is_an_array_of_dates() {
    let v = json(&run(&["calendar", "holidays", "--year", "2027", "--json"]));
    let expected = [
        "2027-01-01",
        "2027-03-26",
        "2027-03-29",
        "2027-05-03",
        "2027-05-31",
        "2027-08-30",
        "2027-12-27",
        "2027-12-28",
    ];
    assert_eq!(v, serde_json::json!(expected));
    let v = json(&run(&[
        "calendar", "holidays", "--year", "2024", "--region", "scotland", "--json",
    ]));
    assert_eq!(v.as_array().map(Vec::len), Some(9));
    let human = run(&["calendar", "holidays", "--year", "2026"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("2026-12-28  Monday    Boxing Day (substitute day)"),
        "{text}"
    );
}

#[test]
fn calendar_add_working_days_prints_the_date() {
    let out = run(&["calendar", "add-working-days", "--from", "2026-12-23", "--days", "5"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2027-01-04");
    let out = run(&[
        "calendar",
        "add-working-days",
        "--from",
        "2027-03-25",
        "--days",
        "1",
        "--region",
        "northern-ireland",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2027-03-30");
    let bad = run(&["calendar", "add-working-days", "--from", "23/12/2026", "--days", "5"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("use YYYY-MM-DD"));
    let bad = run(&["calendar", "holidays", "--year", "2027", "--region", "wales"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("england-and-wales, scotland or northern-ireland"));
}

#[test]
fn timeline_json_follows_the_contract() {
    let v = json(&run(&[
        "timeline",
        "--board",
        "trafford",
        "--opened",
        "2026-12-23T10:00:00Z",
        "--json",
    ]));
    assert_eq!(v["board"], "trafford");
    let pairs: Vec<String> = v["deadlines"]
        .as_array()
        .expect("deadlines array")
        .iter()
        .map(|d| {
            format!(
                "{}={}",
                d["label"].as_str().unwrap_or("?"),
                d["due_date"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            "stage-1=2026-12-24",
            "stage-2=2026-12-30",
            "stage-3=2027-01-04",
            "stage-4=2027-01-11",
            "stage-5=2027-01-18",
            "overall=2027-01-18"
        ]
    );
    let human = run(&["timeline", "--board", "bradford", "--opened", "2026-12-23T10:00:00Z"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("overall   Wed 20 Jan 2027"));
    let unknown = run(&["timeline", "--board", "leeds", "--opened", "2026-12-23T10:00:00Z"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no board \"leeds\" is configured; the boards are: bradford")
    );
    let bad = run(&["timeline", "--board", "trafford", "--opened", "tomorrow"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}

#[test]
fn policy_list_and_show() {
    let v = json(&run(&["policy", "list", "--json"]));
    let ids: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "bradford",
            "buckinghamshire",
            "rotherham",
            "south-gloucestershire",
            "trafford"
        ]
    );
    let v = json(&run(&["policy", "show", "south-gloucestershire", "--json"]));
    assert_eq!(v["stages"].as_array().map(Vec::len), Some(4));
    assert_eq!(v["deadlines"]["stage_limits_count_from"], "opening");
    let text = String::from_utf8_lossy(&run(&["policy", "show", "trafford"]).stdout).to_string();
    assert!(
        text.contains("Stage 5: Independent Chair of the Safeguarding Adults Board — within 5 working day(s)"),
        "{text}"
    );
    assert!(text.contains("Readings taken"));
}

#[test]
fn check_config_reports_problems_and_fails() {
    let ok = json(&run(&["check-config", "--json"]));
    assert_eq!(ok["ok"], true);
    let (_dir, path) = temp_config("mysql://nope");
    let out = run(&["--config", path.to_str().expect("path"), "check-config", "--json"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["key"], "database.url");
}

#[tokio::test]
async fn cases_list_and_show_read_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("cases.sqlite3");
    let store = SqliteStore::open(&db).await.expect("open");
    store.migrate().await.expect("migrate");
    let c = config();
    upsert_boards(&store, &c).await;
    assert_eq!(
        open_case(&store, &c, "rotherham", "2026-12-23T10:00:00Z")
            .await
            .case
            .reference,
        "ROTH-2026-0001"
    );
    store.close().await;

    let (_cdir, path) = temp_config(&format!("sqlite:{}", db.display()));
    let cfg = path.to_str().expect("path");
    let v = json(&run(&["--config", cfg, "cases", "list", "--json"]));
    assert_eq!(v[0]["reference"], "ROTH-2026-0001");
    assert_eq!(v[0]["next_due"], "2027-01-04");
    let v = json(&run(&[
        "--config", cfg, "cases", "list", "--status", "resolved", "--json",
    ]));
    assert_eq!(v, serde_json::json!([]));
    let v = json(&run(&["--config", cfg, "cases", "show", "ROTH-2026-0001", "--json"]));
    assert_eq!(v["case"]["stage"], 1);
    assert_eq!(v["events"][0]["event"]["kind"], "opened");
    let text = String::from_utf8_lossy(&run(&["--config", cfg, "cases", "show", "ROTH-2026-0001"]).stdout).to_string();
    assert!(
        text.contains("ROTH-2026-0001  (rotherham, open)") && text.contains("NHS no.: 999 000 0018"),
        "{text}"
    );
    let missing = run(&["--config", cfg, "cases", "show", "ROTH-2026-0099"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no case ROTH-2026-0099"));
}

#[test]
fn run_starts_on_the_embedded_default_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("data/bot.sqlite3");
    let (_cdir, path) = temp_config(&format!("sqlite:{}", db.display()));
    let mut child = bin()
        .args([
            "--config",
            path.to_str().expect("path"),
            "run",
            "--now",
            "2026-12-23T10:00:00Z",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let mut running = false;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.contains("escalation-bot is running") {
            assert!(line.contains("2026-12-23T10:00"), "the clock was set by --now: {line}");
            running = true;
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "did not start");
    }
    assert!(running, "the daemon said it was running");
    assert!(Path::new(&db).exists(), "the SQLite file and its folder were created");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "a clean stop on SIGTERM: {status:?}");
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("stopped"))));
}

#[test]
fn ingest_json_reports_fields_outcome_and_reply_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_cdir, path) = temp_config(&format!("sqlite:{}", dir.path().join("i.sqlite3").display()));
    let cfg = path.to_str().expect("path");
    let form = "tests/fixtures/forms/trafford-html.eml";
    let v = json(&run(&[
        "--config",
        cfg,
        "ingest",
        "--dry-run",
        "--json",
        "--now",
        "2026-12-23T10:00:00Z",
        form,
    ]));
    let r = &v[0];
    assert_eq!(
        (r["file"].as_str(), r["outcome"].as_str()),
        (Some(form), Some("case_opened"))
    );
    assert_eq!(r["case"], Value::Null, "a dry run opens nothing");
    assert_eq!(r["fields"]["nhs_number"], "9990000018");
    assert_eq!(r["fields"]["adult_name"], "Zoë Testperson");
    assert_eq!(r["command"], Value::Null);
    // Really ingested, then a reply naming a case that does not exist: refused, with the command and the new
    // text reported all the same.
    let v = json(&run(&[
        "--config",
        cfg,
        "ingest",
        "--json",
        "--now",
        "2026-12-23T10:00:00Z",
        form,
    ]));
    assert_eq!(v[0]["case"], "TRAF-2026-0001");
    let reply = dir.path().join("reply.eml");
    std::fs::write(
        &reply,
        "From: nia.nurse@nhs.net\r\nTo: escalations@trafford-ssp.invalid\r\nSubject: RE: TRAF-2026-0999 escalation\r\n\
         Message-ID: <r1@nhs.net>\r\n\r\nRESOLVED\r\nOutcome: agreed\r\n\r\nOn Wed, 23 Dec 2026, bot wrote:\r\n> old\r\n",
    )
    .expect("write");
    let v = json(&run(&[
        "--config",
        cfg,
        "ingest",
        "--json",
        reply.to_str().expect("path"),
    ]));
    let r = &v[0];
    assert_eq!(
        (r["outcome"].as_str(), r["command"].as_str()),
        (Some("refused"), Some("RESOLVED"))
    );
    assert_eq!(r["case"], Value::Null);
    assert_eq!(r["reply_text"], "RESOLVED\nOutcome: agreed");
    assert!(r["problems"][0]
        .as_str()
        .unwrap_or_default()
        .contains("no case TRAF-2026-0999"));
}

#[test]
fn the_embedded_default_turns_a_mailbox_file_into_a_case_and_an_acknowledgement_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cdir, path) = temp_config(&format!("sqlite:{}", dir.path().join("d.sqlite3").display()));
    let mut child = bin()
        .args(["--config", path.to_str().expect("path"), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    // The temp config puts the mailbox and outbox folders beside it ("mail", "out").
    let new = cdir.path().join("mail/trafford/new");
    let started = Instant::now();
    while !new.exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::copy("tests/fixtures/forms/trafford-plain.eml", new.join("1.eml")).expect("drop a message in");
    let out = cdir.path().join("out/new");
    let mut acks = Vec::new();
    // A copy for the practitioner and one for the other party.
    while acks.len() < 2 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        acks = std::fs::read_dir(&out)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
    }
    // A second message delivered as mail delivery agents do (written in tmp/, renamed into new/) is noticed
    // at once (inotify), not at the next look the daemon takes every ten seconds regardless.
    let mut second = Vec::new();
    let mut second_after = Duration::ZERO;
    if acks.len() == 2 {
        let raw = std::fs::read_to_string("tests/fixtures/forms/trafford-plain.eml")
            .expect("fixture")
            .replace("<trafford-plain@fixtures.nhs.net>", "<second@fixtures.nhs.net>");
        let tmp = cdir.path().join("mail/trafford/tmp/2.eml");
        std::fs::write(&tmp, raw).expect("write in tmp/");
        let delivered = Instant::now();
        std::fs::rename(&tmp, new.join("2.eml")).expect("deliver into new/");
        while second.len() < 4 && delivered.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
            second = std::fs::read_dir(&out)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
        }
        second_after = delivered.elapsed();
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    assert_eq!(
        acks.len(),
        2,
        "one acknowledgement (a copy each) written to the outbox folder"
    );
    assert_eq!(second.len(), 4, "the second message was acknowledged too");
    assert!(
        second_after < Duration::from_secs(9),
        "the second message was noticed when it arrived, not at the next scan: {second_after:?}"
    );
    let text = std::fs::read_to_string(&acks[0]).expect("read");
    assert!(text.contains("Subject: TRAF-2026-0001: escalation received"), "{text}");
    assert!(text.contains("Auto-Submitted: auto-replied") && text.contains("X-Auto-Response-Suppress: All"));
    assert!(!new.join("1.eml").exists(), "the message left new/");
    assert!(
        cdir.path().join("mail/trafford/cur/1.eml:2,S").exists(),
        "and is in cur/"
    );
    // Everything the daemon wrote is its owner's only (umask 077): the database, the outbox, the folders.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [
            dir.path().join("d.sqlite3"),
            acks[0].clone(),
            cdir.path().join("out/new"),
        ] {
            let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {:o}", p.display(), mode & 0o777);
        }
    }
}

/// Logs on standard error: plain text without terminal colour codes when it is not a terminal (a log file,
/// journald), or one JSON object a line with `--log-format json`.
#[test]
fn logs_are_plain_when_not_a_terminal_and_json_when_asked() {
    let scenario = "docs/examples/rotherham-month/scenario.json";
    let out = run(&["simulate", scenario]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("digest queued"), "the run logs: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "no escape sequences in a log that is not a terminal: {log:?}"
    );

    let out = run(&["--log-format", "json", "simulate", scenario]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{v}");
    }
    let bad = run(&["--log-format", "xml", "policy", "list"]);
    assert!(!bad.status.success(), "an unknown format is refused");
}
