//! The board manager's digest: when it goes (the board's cron schedule in its timezone, across both clock
//! changes and bank-holiday Mondays), what it says (checked against a store built by hand, through the
//! real binary's `digest --json`), that it goes once, and that it names no adult.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use common::{at, config, open_case, upsert_boards};
use escalation_bot::core::digest::{moments_after, next_moment};
use escalation_bot::core::lifecycle::{apply, Command as CaseCommand};
use escalation_bot::store::{Change, InboundMessage, SqliteStore, Store};
use serde_json::Value;

fn london(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::London)
        .format("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

#[test]
fn the_default_schedule_is_monday_nine_local_moved_off_bank_holidays_across_both_clock_changes() {
    let c = config();
    let b = c.board("bradford").expect("bradford");
    let moments: Vec<String> = moments_after(&b.rules, &b.digest_schedule, at("2027-03-15T12:00:00Z"), 8)
        .into_iter()
        .map(london)
        .collect();
    assert_eq!(
        moments,
        vec![
            "Mon 2027-03-22 09:00 GMT",
            // The clock goes forward on Sunday 28 March; Monday 29 March is Easter Monday.
            "Tue 2027-03-30 09:00 BST",
            "Mon 2027-04-05 09:00 BST",
            "Mon 2027-04-12 09:00 BST",
            "Mon 2027-04-19 09:00 BST",
            "Mon 2027-04-26 09:00 BST",
            // Monday 3 May is the early May bank holiday.
            "Tue 2027-05-04 09:00 BST",
            "Mon 2027-05-10 09:00 BST",
        ]
    );
    let autumn: Vec<String> = moments_after(&b.rules, &b.digest_schedule, at("2027-10-20T12:00:00Z"), 3)
        .into_iter()
        .map(london)
        .collect();
    // The clock goes back on Sunday 31 October.
    assert_eq!(
        autumn,
        vec![
            "Mon 2027-10-25 09:00 BST",
            "Mon 2027-11-01 09:00 GMT",
            "Mon 2027-11-08 09:00 GMT"
        ]
    );
    // Christmas: Monday 27 December 2027 is Christmas Day's substitute, Tuesday the 28th Boxing Day's.
    assert_eq!(
        next_moment(&b.rules, &b.digest_schedule, at("2027-12-21T12:00:00Z")).map(london),
        Some("Wed 2027-12-29 09:00 GMT".to_string())
    );
}

#[test]
fn a_board_can_set_its_own_schedule_and_a_bad_one_is_refused_with_what_to_write() {
    let dir = tempfile::tempdir().expect("dir");
    let here = std::env::current_dir().expect("cwd");
    let boards = dir.path().join("boards");
    std::fs::create_dir_all(&boards).expect("mkdir");
    let text = std::fs::read_to_string("config/boards/trafford.toml").expect("board");
    std::fs::write(
        boards.join("trafford.toml"),
        format!("{text}\n[digest]\nschedule = \"0 30 8 * * Fri\"\n"),
    )
    .expect("write");
    let main = dir.path().join("config.toml");
    std::fs::write(
        &main,
        format!(
            "policies_dir = \"{}\"\nboards_dir = \"boards\"\n[database]\nurl = \"sqlite:db.sqlite3\"\n",
            here.join("config/policies").display()
        ),
    )
    .expect("write");
    let c = escalation_bot::config::load(&main).expect("loads");
    let b = c.board("trafford").expect("trafford");
    assert_eq!(
        next_moment(&b.rules, &b.digest_schedule, at("2027-06-01T12:00:00Z")).map(london),
        Some("Fri 2027-06-04 08:30 BST".to_string())
    );
    std::fs::write(
        boards.join("trafford.toml"),
        format!("{text}\n[digest]\nschedule = \"every monday\"\n"),
    )
    .expect("write");
    let err = escalation_bot::config::load(&main).expect_err("refused").to_string();
    assert!(
        err.contains("digest.schedule") && err.contains("0 0 9 * * Mon"),
        "{err}"
    );
}

fn temp_config(dir: &Path) -> PathBuf {
    let here = std::env::current_dir().expect("cwd");
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "policies_dir = \"{}\"\nboards_dir = \"{}\"\n[database]\nurl = \"sqlite:db.sqlite3\"\n[mailbox]\npath = \"mail\"\n[outbox]\npath = \"out\"\n",
            here.join("config/policies").display(),
            here.join("config/boards").display()
        ),
    )
    .expect("write config");
    path
}

fn digest_json(cfg: &Path, now: &str, send: bool) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_escalation-bot"));
    cmd.arg("--config")
        .arg(cfg)
        .args(["digest", "--board", "rotherham", "--now", now, "--json"]);
    if send {
        cmd.arg("--send");
    }
    let out = cmd.output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[tokio::test]
async fn digest_json_says_what_a_hand_built_store_holds() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = temp_config(dir.path());
    let c = config();
    let rules = &c.board("rotherham").expect("rotherham").rules;
    let store = SqliteStore::open(&dir.path().join("db.sqlite3")).await.expect("db");
    store.migrate().await.expect("migrate");
    upsert_boards(&store, &c).await;
    // Four Rotherham cases (due 5 working days after opening):
    // 1. opened Mon 4 Jan 2027, still open at stage 1: due Mon 11 Jan, overdue by Mon 18 Jan;
    let a = open_case(&store, &c, "rotherham", "2027-01-04T10:00:00Z").await;
    // 2. opened Wed 13 Jan, escalated to stage 2 on the 14th: due Wed 20 Jan, not overdue;
    let b = open_case(&store, &c, "rotherham", "2027-01-13T10:00:00Z").await;
    let nia = escalation_bot::core::case::Person::email("nia.nurse@nhs.net");
    let escalate = CaseCommand::Escalate {
        to_stage: None,
        people: vec![escalation_bot::core::case::Person::email("lee.lead@nhs.net")],
        reason: None,
        immediate_risk: false,
    };
    let t = apply(rules, &b.case, &nia, &escalate, at("2027-01-14T10:00:00Z")).expect("escalates");
    store.save(&b, &Change::new(t)).await.expect("saved");
    // 3. opened Mon 4 Jan, resolved at stage 1 on Fri 15 Jan (9 working days), review date Fri 15 Jan;
    let r = open_case(&store, &c, "rotherham", "2027-01-04T11:00:00Z").await;
    let resolve = CaseCommand::Resolve {
        outcome: "Joint visit agreed.".into(),
        agreed_actions: "Visit by 20 January.".into(),
        actions: Vec::new(),
        outstanding: String::new(),
        review_date: Some(chrono::NaiveDate::from_ymd_opt(2027, 1, 15).expect("date")),
    };
    let t = apply(rules, &r.case, &nia, &resolve, at("2027-01-15T14:00:00Z")).expect("resolves");
    store.save(&r, &Change::new(t)).await.expect("saved");
    // 4. opened in December and withdrawn: not in the digest.
    let w = open_case(&store, &c, "rotherham", "2026-12-14T10:00:00Z").await;
    let withdraw = CaseCommand::Withdraw {
        reason: "Agreed locally.".into(),
    };
    let t = apply(rules, &w.case, &nia, &withdraw, at("2026-12-15T10:00:00Z")).expect("withdraws");
    store.save(&w, &Change::new(t)).await.expect("saved");
    // And an email that could not be used, on the 12th.
    store
        .record_inbound(&InboundMessage {
            board_id: Some("rotherham".into()),
            mailbox: "file:junk".into(),
            uidvalidity: None,
            uid: None,
            message_id: "junk@example.org".into(),
            received_at: at("2027-01-12T10:00:00Z"),
            raw: b"Subject: ?\r\n\r\n?".to_vec(),
        })
        .await
        .expect("kept");
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", dir.path().join("db.sqlite3").display()))
            .await
            .expect("connect");
        sqlx::query("UPDATE inbound SET outcome = 'refused'")
            .execute(&mut conn)
            .await
            .expect("refused");
        conn.close().await.ok();
    }
    store.close().await;

    // Monday 18 January 2027, 09:00: the week since Monday 11 January.
    let d = digest_json(&cfg, "2027-01-18T09:00:00Z", false);
    let open: Vec<(String, u64, bool, String)> = d["open"]
        .as_array()
        .expect("open")
        .iter()
        .map(|o| {
            (
                o["reference"].as_str().unwrap_or_default().to_string(),
                o["working_days_open"].as_u64().unwrap_or(99),
                o["overdue"].as_bool().unwrap_or(false),
                o["next_deadline"][1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        open,
        vec![
            // Overdue first.
            (a.case.reference.clone(), 10, true, "2027-01-11".to_string()),
            (b.case.reference.clone(), 3, false, "2027-01-20".to_string()),
        ]
    );
    assert_eq!(d["overdue"], 1);
    assert_eq!(d["resolved"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["resolved"][0]["reference"], r.case.reference.as_str());
    assert_eq!(d["resolved"][0]["at_stage"], 1);
    assert_eq!(d["resolved"][0]["working_days_taken"], 9);
    // The review date (Friday 15th) passed with no IMPLEMENTED: missed.
    assert_eq!(d["reviews"][0]["reference"], r.case.reference.as_str());
    assert_eq!(d["reviews"][0]["missed"], true);
    assert_eq!(d["unusable_emails"], 1);
    assert_eq!(d["open_by_stage"][0]["count"], 1);
    assert_eq!(d["open_by_stage"][1]["count"], 1);
    // Agencies of the three cases open or resolved in the week; the withdrawn one is not counted.
    assert_eq!(d["agencies"]["Northfield Community Health NHS Trust"], 3);
    assert_eq!(d["queued"], 0);
    // No adult's name or NHS number anywhere in it.
    let text = d.to_string();
    assert!(!text.contains("Testperson") && !text.contains("9990000018") && !text.contains("999 000 0018"));

    // Sent on demand: queued once to the board manager (held: the shipped address is a placeholder).
    let sent = digest_json(&cfg, "2027-01-18T09:05:00Z", true);
    assert_eq!(sent["queued"], 1);
    let store = SqliteStore::open(&dir.path().join("db.sqlite3")).await.expect("db");
    let digests: Vec<_> = store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "digest")
        .collect();
    assert_eq!(digests.len(), 1);
    assert_eq!(
        digests[0].email.to,
        vec!["board-manager@rotherham-sab.invalid".to_string()]
    );
    assert!(digests[0].email.hold.is_some());
    assert!(
        digests[0].email.subject.contains("2 open, 1 overdue"),
        "{}",
        digests[0].email.subject
    );
    // The line about unusable mail, with where to look.
    assert!(
        digests[0]
            .email
            .text
            .contains("1 email(s) to the board could not be used since Monday 11 January 2027. Your IT team can list them, with why and the answer each sender got: `escalation-bot inbound list --board rotherham`."),
        "{}",
        digests[0].email.text
    );
    store.close().await;
}

#[tokio::test]
async fn a_scheduled_digest_is_recorded_once_whoever_asks_twice() {
    let (store, db) = common::TestDb::postgres().await;
    store.migrate().await.expect("migrate");
    let moment = at("2027-01-18T09:00:00Z");
    assert!(store
        .record_digest("rotherham", moment, false, &[], moment)
        .await
        .expect("first"));
    assert!(!store
        .record_digest("rotherham", moment, false, &[], moment)
        .await
        .expect("second"));
    assert_eq!(store.last_digest("rotherham").await.expect("last"), Some(moment));
    // An on-demand digest does not move "since the last digest".
    assert!(store
        .record_digest("rotherham", at("2027-01-19T10:00:00Z"), true, &[], moment)
        .await
        .expect("on demand"));
    assert_eq!(store.last_digest("rotherham").await.expect("last"), Some(moment));
    db.cleanup().await;
}

fn plain(from: &str, to: &str, body: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: digest\r\nMessage-ID: <{id}>\r\nDate: Mon, 18 Jan 2027 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn board_staff_get_the_digest_by_emailing_digest_and_nobody_else_does() {
    use escalation_bot::mail::pipeline::{Pipeline, Source};
    let c = config();
    let (store, db) = common::TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("store");
    open_case(&store, &c, "trafford", "2027-01-04T10:00:00Z").await;
    let pipeline = Pipeline::new(&c, vec![9; 32]).expect("pipeline");
    // The Business Office (a board role) asks.
    let r = pipeline
        .process_isolated(
            &store,
            &Source::default(),
            &plain(
                "TSSP Business Office <TSSP@trafford.gov.uk>",
                "escalations@trafford-ssp.invalid",
                "Digest please\n\nThanks, Pat",
                "ask-1@trafford.gov.uk",
            ),
            Some("trafford"),
            at("2027-01-18T10:00:00Z"),
            false,
        )
        .await
        .expect("processed");
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("DIGEST")),
        "{r:?}"
    );
    let digests: Vec<_> = store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "digest")
        .collect();
    assert_eq!(digests.len(), 1);
    assert!(digests[0].email.to[0].eq_ignore_ascii_case("TSSP@trafford.gov.uk"));
    assert!(
        digests[0].email.text.contains("Open cases: 1"),
        "{}",
        digests[0].email.text
    );
    assert_eq!(
        digests[0].email.headers.get("In-Reply-To").map(String::as_str),
        Some("<ask-1@trafford.gov.uk>")
    );
    // A practitioner is not board staff: no digest.
    let r = pipeline
        .process_isolated(
            &store,
            &Source::default(),
            &plain(
                "Nia Nurse <nia.nurse@nhs.net>",
                "escalations@trafford-ssp.invalid",
                "DIGEST",
                "ask-2@nhs.net",
            ),
            Some("trafford"),
            at("2027-01-18T10:05:00Z"),
            false,
        )
        .await
        .expect("processed");
    assert_ne!(r.command.as_deref(), Some("DIGEST"));
    assert_eq!(
        store
            .outbox(None)
            .await
            .expect("outbox")
            .iter()
            .filter(|o| o.email.kind == "digest")
            .count(),
        1
    );
    db.cleanup().await;
}
