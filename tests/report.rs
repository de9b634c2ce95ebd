//! The board's monitoring report (`escalation-bot report`), checked against cases counted by hand.

mod common;

use std::path::Path;
use std::process::Command;

use common::{at, config, upsert_boards};
use escalation_bot::core::case::Person;
use escalation_bot::core::lifecycle::{self, apply, Command as CaseCommand, Event, NewCase};
use escalation_bot::store::{Change, SqliteStore, Store, StoredCase};
use serde_json::Value;

async fn open(store: &SqliteStore, when: &str, ours: &str, theirs: &str, theme: &str) -> StoredCase {
    let c = config();
    let b = c.board("trafford").expect("trafford");
    let mut new: NewCase = common::new_case();
    new.record.escalating_agency = Some(ours.into());
    new.record.other_agency = Some(theirs.into());
    new.record.theme = Some(theme.into());
    let year = if when.starts_with("2026") { 2026 } else { 2027 };
    store
        .create_case("trafford", &b.policy().reference_prefix, year, |reference| {
            lifecycle::open(&b.rules, &new, reference, at(when)).map(Change::new)
        })
        .await
        .expect("store")
        .expect("opens")
}

async fn act(store: &SqliteStore, case: &StoredCase, command: CaseCommand, when: &str) -> StoredCase {
    let c = config();
    let rules = &c.board("trafford").expect("trafford").rules;
    let t = apply(
        rules,
        &case.case,
        &Person::email("nia.nurse@nhs.net"),
        &command,
        at(when),
    )
    .expect("applies");
    store.save(case, &Change::new(t)).await.expect("saved")
}

fn resolve() -> CaseCommand {
    CaseCommand::Resolve {
        outcome: "Agreed.".into(),
        agreed_actions: String::new(),
        actions: Vec::new(),
        outstanding: String::new(),
        review_date: None,
    }
}

fn report(cfg: &Path, format: &str) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(cfg)
        .args([
            "report",
            "--board",
            "trafford",
            "--from",
            "2027-01-01",
            "--to",
            "2027-01-31",
        ])
        .args((!format.is_empty()).then_some(format))
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test]
async fn the_report_counts_what_was_counted_by_hand() {
    let dir = tempfile::tempdir().expect("dir");
    let here = std::env::current_dir().expect("cwd");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "policies_dir = \"{}\"\nboards_dir = \"{}\"\n[database]\nurl = \"sqlite:db.sqlite3\"\n",
            here.join("config/policies").display(),
            here.join("config/boards").display()
        ),
    )
    .expect("config");
    let store = SqliteStore::open(&dir.path().join("db.sqlite3")).await.expect("db");
    store.migrate().await.expect("migrate");
    upsert_boards(&store, &config()).await;
    let (a, b, c) = ("Ashgrove NHS Trust", "Brookside Council", "Cedar Care Ltd");
    // 1. Opened Mon 4 Jan, resolved at stage 1 on Tue 5 Jan: 1 working day.
    let one = open(&store, "2027-01-04T10:00:00Z", a, b, "Levels of risk").await;
    act(&store, &one, resolve(), "2027-01-05T10:00:00Z").await;
    // 2. Opened Wed 6 Jan, to stage 2 on the 7th, resolved Wed 13 Jan: 5 working days.
    let two = open(&store, "2027-01-06T10:00:00Z", b, a, "levels of risk").await;
    let two = act(
        &store,
        &two,
        CaseCommand::Escalate {
            to_stage: None,
            people: vec![Person::email("lee.lead@nhs.net")],
            reason: None,
            immediate_risk: false,
        },
        "2027-01-07T10:00:00Z",
    )
    .await;
    act(&store, &two, resolve(), "2027-01-13T10:00:00Z").await;
    // 3. Opened Mon 11 Jan, withdrawn the next day.
    let three = open(
        &store,
        "2027-01-11T10:00:00Z",
        c,
        a,
        "Communication and information sharing",
    )
    .await;
    act(
        &store,
        &three,
        CaseCommand::Withdraw {
            reason: "Sorted out by phone.".into(),
        },
        "2027-01-12T10:00:00Z",
    )
    .await;
    // 4. Opened Mon 25 Jan, still open at the end; an overdue notice went on the 27th.
    let four = open(&store, "2027-01-25T10:00:00Z", a, b, "levels of risk").await;
    store
        .record_event(
            "trafford",
            Some(&four.case.reference),
            &Event {
                kind: "overdue_notice_sent".into(),
                at: at("2027-01-27T09:00:00Z"),
                actor: "escalation-bot".into(),
                summary: "Overdue notice".into(),
                detail: serde_json::json!({}),
            },
        )
        .await
        .expect("event");
    // 5. Opened and resolved in December, 6. opened in February: outside the period.
    let five = open(&store, "2026-12-14T10:00:00Z", a, b, "levels of risk").await;
    act(&store, &five, resolve(), "2026-12-15T10:00:00Z").await;
    open(&store, "2027-02-03T10:00:00Z", a, c, "levels of risk").await;
    store.close().await;

    let r: Value = serde_json::from_slice(&report(&cfg, "--json").stdout).expect("JSON");
    assert_eq!(r["opened"], 4);
    assert_eq!(r["resolved"], 2);
    assert_eq!(r["resolved_by_stage"][0], serde_json::json!([1, 1]));
    assert_eq!(r["resolved_by_stage"][1], serde_json::json!([2, 1]));
    assert_eq!(r["resolved_by_stage"][2], serde_json::json!([3, 0]));
    assert_eq!(r["median_working_days"], 3.0);
    assert_eq!(r["longest_working_days"], 5);
    assert_eq!(r["withdrawn"], 1);
    assert_eq!(r["still_open"], 1);
    assert_eq!(r["overdue"], 1);
    assert_eq!(r["themes"][0], serde_json::json!(["levels of risk", 3]));
    assert_eq!(
        r["themes"][1],
        serde_json::json!(["communication and information sharing", 1])
    );
    assert_eq!(r["agencies"][0], serde_json::json!([a, 4]));
    assert_eq!(r["agencies"][1], serde_json::json!([b, 3]));
    assert_eq!(r["pairs"][0], serde_json::json!([a, b, 3]));
    assert_eq!(r["pairs"][1], serde_json::json!([a, c, 1]));
    // The same figures as CSV and HTML; no case is named in any of them.
    let csv = String::from_utf8(report(&cfg, "--csv").stdout).expect("text");
    assert!(csv.starts_with("section,item,value\n"));
    assert!(csv.contains("\"cases\",\"opened\",\"4\""), "{csv}");
    assert!(csv.contains("\"working days to resolution\",\"median\",\"3\""), "{csv}");
    let html = String::from_utf8(report(&cfg, "--html").stdout).expect("text");
    assert!(
        html.contains("<td>Cases opened</td><td align=\"right\">4</td>"),
        "{html}"
    );
    for out in [&csv, &html, &r.to_string()] {
        assert!(!out.contains("TRAF-") && !out.contains("Testperson"), "{out}");
    }
}
