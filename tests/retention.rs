//! Retention under UK GDPR, on SQLite and PostgreSQL: a store with cases closed seven years ago and last
//! week, an open one, and raw messages tied to them and to none. Only the old ones' personal data goes; the
//! report's figures are unchanged; every removal is in the audit log without the data; the audit log stays
//! append-only for everything else; `--dry-run` removes nothing; a second run finds nothing more.

mod common;

use chrono::NaiveDate;
use common::{at, config, upsert_boards, TestDb};
use escalation_bot::core::case::Person;
use escalation_bot::core::lifecycle::{apply, Command as CaseCommand};
use escalation_bot::core::retention::REMOVED;
use escalation_bot::store::{Change, InboundMessage, Store, StoredCase};

const RAW: &str = "From: Nia Nurse <nia.nurse@nhs.net>\r\nSubject: about Alex Testperson\r\n\r\nAlex Testperson, NHS 999 000 0018.\r\n";

async fn resolve<S: Store>(store: &S, case: &StoredCase, when: &str) -> StoredCase {
    let c = config();
    let rules = &c.board("trafford").expect("trafford").rules;
    let note = apply(
        rules,
        &case.case,
        &Person::email("nia.nurse@nhs.net"),
        &CaseCommand::Note {
            text: "Spoke to Alex Testperson's daughter.".into(),
        },
        at(when),
    )
    .expect("note");
    let case = store.save(case, &Change::new(note)).await.expect("saved");
    let t = apply(
        rules,
        &case.case,
        &Person::email("sam.social@westshire.gov.uk"),
        &CaseCommand::Resolve {
            outcome: "Agreed to reopen the enquiry for Alex Testperson.".into(),
            agreed_actions: String::new(),
            actions: Vec::new(),
            outstanding: "None.".into(),
            review_date: None,
        },
        at(when),
    )
    .expect("resolves");
    store.save(&case, &Change::new(t)).await.expect("saved")
}

/// Keep a raw message received at `when`, tied to `reference` (or to none, refused).
async fn kept<S: Store>(store: &S, n: usize, when: &str, reference: Option<&str>) -> i64 {
    let id = match store
        .record_inbound(&InboundMessage {
            board_id: Some("trafford".into()),
            mailbox: "INBOX".into(),
            uidvalidity: Some(1),
            uid: Some(n as i64),
            message_id: format!("retention-{n}@nhs.net"),
            received_at: at(when),
            raw: RAW.as_bytes().to_vec(),
        })
        .await
        .expect("kept")
    {
        escalation_bot::store::InboundInsert::New(id) | escalation_bot::store::InboundInsert::Seen { id, .. } => id,
    };
    let outcome = if reference.is_some() { "case_opened" } else { "refused" };
    store
        .set_inbound_outcome(
            id,
            outcome,
            reference,
            &["Alex Testperson's record is incomplete".into()],
            at(when),
        )
        .await
        .expect("outcome");
    id
}

async fn report<S: Store>(store: &S, from: &str, to: &str) -> serde_json::Value {
    let c = config();
    let b = c.board("trafford").expect("trafford");
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let r = escalation_bot::scheduler::board_report(store, b, d(from), d(to))
        .await
        .expect("report");
    serde_json::to_value(r).expect("json")
}

async fn scenario<S: Store>(store: &S, db: &TestDb) {
    store.migrate().await.expect("migrate");
    let c = config();
    upsert_boards(store, &c).await;
    assert_eq!(c.board("trafford").expect("trafford").settings.retention_days, 2190);
    let old = common::open_case(store, &c, "trafford", "2019-11-04T10:00:00Z").await;
    let old = resolve(store, &old, "2019-11-11T10:00:00Z").await;
    let recent = common::open_case(store, &c, "trafford", "2026-11-16T10:00:00Z").await;
    let recent = resolve(store, &recent, "2026-11-23T10:00:00Z").await;
    let open = common::open_case(store, &c, "trafford", "2026-11-25T10:00:00Z").await;
    let raw_old = kept(store, 1, "2019-11-04T10:00:00Z", Some(&old.case.reference)).await;
    let raw_recent = kept(store, 2, "2026-11-16T10:00:00Z", Some(&recent.case.reference)).await;
    let refused_old = kept(store, 3, "2019-10-01T10:00:00Z", None).await;
    let refused_recent = kept(store, 4, "2026-11-20T10:00:00Z", None).await;
    let before = (
        report(store, "2019-10-01", "2019-12-31").await,
        report(store, "2026-10-01", "2026-12-31").await,
    );
    assert_eq!(before.0["opened"], 1);
    assert_eq!(before.1["opened"], 2);

    let now = at("2026-11-30T02:00:00Z");
    // --dry-run: says what would go, removes nothing.
    let dry = escalation_bot::retention::run(&c, store, now, true)
        .await
        .expect("dry run");
    let trafford = dry.iter().find(|r| r.board == "trafford").expect("trafford");
    assert_eq!(trafford.cases, vec![old.case.reference.clone()]);
    assert_eq!(trafford.unlinked_raw_messages, 1);
    let still = store.cases_by_id(&[old.id]).await.expect("case");
    assert_eq!(still[0].record.adult_name.as_deref(), Some("Alex Testperson"));
    assert!(!store
        .inbound_row(raw_old)
        .await
        .expect("row")
        .expect("row")
        .raw
        .is_empty());

    let done = escalation_bot::retention::run(&c, store, now, false)
        .await
        .expect("retention");
    let trafford = done.iter().find(|r| r.board == "trafford").expect("trafford");
    assert_eq!(trafford.cases, vec![old.case.reference.clone()]);
    assert_eq!(trafford.removed.raw_messages, 1);
    assert_eq!(trafford.unlinked_raw_messages, 1);
    assert!(trafford.removed.audit_events_erased >= 3, "{trafford:?}");

    // The old case keeps its figures and loses its people.
    let gone = &store.cases_by_id(&[old.id]).await.expect("case")[0];
    let text = serde_json::to_string(gone).expect("json");
    for personal in [
        "Testperson",
        "999 000 0018",
        "nia.nurse",
        "sam.social",
        "Nia Nurse",
        "Sam Social",
        "section 42",
    ] {
        assert!(!text.contains(personal), "{personal} is still in {text}");
    }
    assert_eq!(
        gone.record.escalating_agency.as_deref(),
        Some("Northfield Community Health NHS Trust")
    );
    assert_eq!(gone.resolution.as_ref().map(|r| r.outcome.as_str()), Some(REMOVED));
    assert_eq!(gone.resolution.as_ref().map(|r| r.at_stage), Some(1));
    // The recent and the open case are untouched.
    for (id, stored) in [(recent.id, &recent), (open.id, &open)] {
        assert_eq!(&store.cases_by_id(&[id]).await.expect("case")[0], &stored.case);
    }
    // Raw messages: the old ones emptied, the recent ones kept.
    for (id, emptied) in [
        (raw_old, true),
        (refused_old, true),
        (raw_recent, false),
        (refused_recent, false),
    ] {
        let row = store.inbound_row(id).await.expect("row").expect("row");
        assert_eq!(row.raw.is_empty(), emptied, "message {id}");
        assert_eq!(row.problems.is_empty(), emptied, "message {id}");
    }
    // The audit log: the old case's events erased (kind and time kept), the removal recorded without data.
    let events = store.events(Some(&old.case.reference)).await.expect("events");
    let text = serde_json::to_string(&events.iter().map(|e| &e.event).collect::<Vec<_>>()).expect("json");
    assert!(!text.contains("Testperson") && !text.contains("nia.nurse"), "{text}");
    assert!(events
        .iter()
        .any(|e| e.event.kind == "opened" && e.event.summary == REMOVED));
    let removal = events
        .iter()
        .find(|e| e.event.kind == "retention")
        .expect("the removal is audited");
    assert!(removal.event.summary.contains("2190 days"), "{:?}", removal.event);
    let recent_events = store.events(Some(&recent.case.reference)).await.expect("events");
    assert!(recent_events.iter().all(|e| e.event.summary != REMOVED));
    let all = store.events(None).await.expect("events");
    assert!(
        all.iter()
            .any(|e| e.event.kind == "retention" && e.case_reference.is_none()),
        "the unlinked removal"
    );

    // The report's figures are unchanged.
    let after = (
        report(store, "2019-10-01", "2019-12-31").await,
        report(store, "2026-10-01", "2026-12-31").await,
    );
    assert_eq!(before, after);

    // Append-only for everything else: no event is changed other than erased, and none deleted.
    let recent_id = recent_events[0].id;
    assert!(db
        .execute(&format!(
            "UPDATE events SET summary = 'rewritten' WHERE id = {recent_id}"
        ))
        .await
        .is_err());
    assert!(db
        .execute(&format!("UPDATE events SET kind = 'other', actor = 'removed', summary = '{REMOVED}', detail = '{{}}' WHERE id = {recent_id}"))
        .await
        .is_err());
    assert!(db
        .execute(&format!("DELETE FROM events WHERE id = {recent_id}"))
        .await
        .is_err());
    assert!(db.execute("DELETE FROM events").await.is_err());
    // Not even erased: the case is not purged.
    assert!(db
        .execute(&format!(
            "UPDATE events SET actor = 'removed', summary = '{REMOVED}', detail = '{{}}' WHERE id = {recent_id}"
        ))
        .await
        .is_err());
    // Nor the record of a removal.
    assert!(db
        .execute(&format!(
            "UPDATE events SET actor = 'removed', summary = '{REMOVED}', detail = '{{}}' WHERE id = {}",
            removal.id
        ))
        .await
        .is_err());
    // The purged case's people are gone, and it takes no more commands.
    let c2 = config();
    let rules = &c2.board("trafford").expect("trafford").rules;
    let refused = apply(
        rules,
        gone,
        &Person::email("sam.social@westshire.gov.uk"),
        &CaseCommand::Note {
            text: "Alex Testperson again".into(),
        },
        at("2026-11-30T10:00:00Z"),
    )
    .expect_err("a purged case takes no command");
    assert!(refused.0.contains("personal data was removed"), "{}", refused.0);
    assert_eq!(
        db.execute(&format!("DELETE FROM participants WHERE case_id = {}", old.id))
            .await
            .expect("query"),
        0
    );
    assert_eq!(store.outbox(Some(&old.case.reference)).await.expect("outbox").len(), 0);

    // Nothing more a second time.
    let again = escalation_bot::retention::run(&c, store, now, false)
        .await
        .expect("again");
    assert!(
        again.iter().all(|r| r.cases.is_empty() && r.unlinked_raw_messages == 0),
        "{again:?}"
    );
}

#[tokio::test]
async fn retention_on_sqlite_removes_only_the_old_cases_personal_data_and_keeps_the_figures() {
    let (store, db) = TestDb::sqlite().await;
    scenario(&store, &db).await;
}

#[tokio::test]
async fn retention_on_postgresql_removes_only_the_old_cases_personal_data_and_keeps_the_figures() {
    let (store, db) = TestDb::postgres().await;
    scenario(&store, &db).await;
    store.close().await;
    db.cleanup().await;
}

#[test]
fn the_retention_command_dry_run_names_what_would_go() {
    let (dir, root) = common::copy_config();
    let config = root.join("default.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(&config)
        .args(["retention", "--dry-run"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("trafford"), "{text}");
    assert!(text.contains("retention 2190 days"), "{text}");
    assert!(text.contains("would remove the personal data of 0 case(s)"), "{text}");
    assert!(text.contains("Nothing was removed (--dry-run)."), "{text}");
    drop(dir);
}

/// `retention [--dry-run] --json` on `config`.
fn retention_json(config: &std::path::Path, dry: bool) -> serde_json::Value {
    let mut args = vec!["retention", "--json"];
    if dry {
        args.push("--dry-run");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_escalation-bot"))
        .arg("--config")
        .arg(config)
        .args(&args)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn board_of(run: &serde_json::Value, board: &str) -> serde_json::Value {
    run["boards"]
        .as_array()
        .expect("boards")
        .iter()
        .find(|b| b["board"] == board)
        .cloned()
        .unwrap_or_else(|| panic!("{board} in {run}"))
}

#[test]
fn retention_removes_old_copies_in_the_local_mailbox_and_outbox_folders_but_not_unprocessed_mail() {
    let (dir, root) = common::copy_config();
    let config = root.join("default.toml");
    let data = dir.path().join("data");
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7 * 366 * 24 * 3600);
    let file = |rel: &str, old: bool| {
        let p = data.join(rel);
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        std::fs::write(&p, RAW).expect("write");
        if old {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(long_ago))
                .expect("mtime");
        }
        p
    };
    let processed_old = file("mailbox/bradford/cur/1.eml:2,S", true);
    let processed_new = file("mailbox/bradford/cur/2.eml:2,S", false);
    let quarantined_old = file("mailbox/bradford/quarantine/3.eml", true);
    let unprocessed_old = file("mailbox/bradford/new/4.eml", true);
    let sent_old = file("outbox/new/5.eml", true);
    let sent_new = file("outbox/new/6.eml", false);
    let dry = retention_json(&config, true);
    assert_eq!(board_of(&dry, "bradford")["filed_messages"], 2, "{dry}");
    assert!(
        processed_old.exists() && quarantined_old.exists() && sent_old.exists(),
        "a dry run removes nothing"
    );
    let done = retention_json(&config, false);
    assert_eq!(board_of(&done, "-")["filed_messages"], 1, "{done}");
    assert!(!processed_old.exists() && !quarantined_old.exists() && !sent_old.exists());
    assert!(processed_new.exists() && sent_new.exists(), "recent copies stay");
    assert!(unprocessed_old.exists(), "mail not yet processed is never removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_copies_the_bot_filed_in_the_boards_imap_folders() {
    let servers = common::mailserver::MailServers::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = servers.daemon_config(dir.path(), "sqlite:../data/db.sqlite3");
    let mut s = servers.session("bsab").await;
    for folder in ["Processed", "Quarantine"] {
        s.create(folder).await.expect("create");
    }
    s.append(
        "Processed",
        None,
        Some("\"04-Nov-2019 10:00:00 +0000\""),
        RAW.as_bytes(),
    )
    .await
    .expect("old");
    s.append("Processed", None, None, RAW.as_bytes()).await.expect("recent");
    s.append(
        "Quarantine",
        None,
        Some("\"01-Oct-2019 10:00:00 +0000\""),
        RAW.as_bytes(),
    )
    .await
    .expect("old");
    s.append("INBOX", None, Some("\"01-Oct-2019 10:00:00 +0000\""), RAW.as_bytes())
        .await
        .expect("unprocessed");
    s.logout().await.ok();
    let dry = retention_json(&config, true);
    assert_eq!(board_of(&dry, "bradford")["filed_messages"], 2, "{dry}");
    assert_eq!(servers.count("bsab", "Processed").await, 2);
    retention_json(&config, false);
    assert_eq!(servers.count("bsab", "Processed").await, 1, "the recent copy stays");
    assert_eq!(servers.count("bsab", "Quarantine").await, 0);
    assert_eq!(
        servers.count("bsab", "INBOX").await,
        1,
        "the watched folder is never touched"
    );
}
