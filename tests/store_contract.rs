//! The store contract: one suite, run against SQLite and against PostgreSQL. Each run has a database of
//! its own. Backend-specific checks follow: SQLite's pragmas, PostgreSQL's concurrent claims and references.

mod common;

use std::collections::BTreeSet;

use common::{at, config, open_case, upsert_boards, TestDb};
use escalation_bot::core::case::{CaseStatus, Person};
use escalation_bot::core::lifecycle::{apply, Command, Event, Refusal};
use escalation_bot::store::{
    CaseFilter, Change, Hold, InboundInsert, InboundMessage, OutboundEmail, Store, StoreError, TimerDone,
};

fn email(id: &str, reference: &str) -> OutboundEmail {
    OutboundEmail {
        message_id: format!("<{id}@escalation-bot.test>"),
        board_id: "bradford".into(),
        case_reference: Some(reference.into()),
        kind: "notification".into(),
        to: vec!["bsab@bradford.gov.uk".into()],
        cc: vec!["nia.nurse@nhs.net".into()],
        subject: format!("{reference}: resolved"),
        text: "The disagreement was resolved.".into(),
        html: Some("<p>The disagreement was resolved.</p>".into()),
        headers: [("Auto-Submitted".to_string(), "auto-generated".to_string())].into(),
        hold: None,
        attachments: Vec::new(),
    }
}

async fn contract<S: Store>(store: &S) {
    let c = config();
    store.migrate().await.expect("migrating twice is harmless");
    upsert_boards(store, &c).await;
    store
        .upsert_board(
            "bradford",
            "Bradford SAB (renamed)",
            "bradford",
            at("2026-12-02T00:00:00Z"),
        )
        .await
        .expect("upsert");

    // References: per board and year, in order; a refusal does not use a number up.
    let first = open_case(store, &c, "bradford", "2026-12-23T10:00:00Z").await;
    assert_eq!(first.case.reference, "BRAD-2026-0001");
    assert_eq!(first.version, 1);
    let refused = store
        .create_case("bradford", "BRAD", 2026, |_reference| -> Result<Change, Refusal> {
            Err(Refusal {
                problems: vec!["Name of adult at risk is missing.".into()],
                out_of_scope: false,
            })
        })
        .await
        .expect("store works");
    assert!(refused.is_err());
    let second = open_case(store, &c, "bradford", "2026-12-23T11:00:00Z").await;
    assert_eq!(second.case.reference, "BRAD-2026-0002");
    let next_year = open_case(store, &c, "bradford", "2027-01-04T10:00:00Z").await;
    assert_eq!(next_year.case.reference, "BRAD-2027-0001");
    let traf = open_case(store, &c, "trafford", "2026-12-23T10:00:00Z").await;
    assert_eq!(traf.case.reference, "TRAF-2026-0001");

    // Round trip.
    let loaded = store.load_case("BRAD-2026-0001").await.expect("load").expect("found");
    assert_eq!(loaded, first);
    assert!(store.load_case("BRAD-2026-0999").await.expect("load").is_none());
    let deadlines = store.deadlines("TRAF-2026-0001").await.expect("deadlines");
    assert_eq!(
        deadlines
            .iter()
            .map(|d| format!("{}={}", d.label, d.due_date))
            .collect::<Vec<_>>(),
        [
            "stage-1=2026-12-24",
            "stage-2=2026-12-30",
            "stage-3=2027-01-04",
            "stage-4=2027-01-11",
            "stage-5=2027-01-18",
            "overall=2027-01-18"
        ]
    );
    let timers = store.timers("TRAF-2026-0001").await.expect("timers");
    assert_eq!(
        timers.iter().map(|t| t.timer.key.as_str()).collect::<Vec<_>>(),
        ["reminder:stage-1:2026-12-24:0", "overdue:stage-1:2026-12-24"]
    );
    assert!(timers.iter().all(|t| t.fired_at.is_none()));

    // A change: escalation replaces stage 1's timers with stage 2's, in one transaction.
    let b = c.board("trafford").expect("board");
    let actor = Person::email("nia.nurse@nhs.net");
    let escalate = Command::Escalate {
        to_stage: None,
        people: vec![Person::email("line.manager@westshire.gov.uk")],
        reason: None,
        immediate_risk: false,
    };
    let t = apply(&b.rules, &traf.case, &actor, &escalate, at("2026-12-24T10:00:00Z")).expect("escalates");
    let saved = store.save(&traf, &Change::new(t.clone())).await.expect("saves");
    assert_eq!(saved.version, 2);
    let keys: Vec<String> = store
        .timers("TRAF-2026-0001")
        .await
        .expect("timers")
        .into_iter()
        .map(|t| t.timer.key)
        .collect();
    assert_eq!(keys, ["reminder:stage-2:2026-12-30:0", "overdue:stage-2:2026-12-30"]);
    assert_eq!(
        store
            .load_case("TRAF-2026-0001")
            .await
            .expect("load")
            .expect("found")
            .case
            .stage,
        2
    );
    assert_eq!(
        store
            .cases_of_participant("LINE.MANAGER@westshire.gov.uk")
            .await
            .expect("lookup"),
        ["TRAF-2026-0001"]
    );

    // Saving over a stale version is a conflict and writes nothing.
    let stale = store.save(&traf, &Change::new(t)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict(ref r)) if r == "TRAF-2026-0001"),
        "{stale:?}"
    );
    assert_eq!(store.events(Some("TRAF-2026-0001")).await.expect("events").len(), 2);

    // Resolution with an email, written in the same transaction.
    let br = c.board("bradford").expect("board");
    let resolve = Command::Resolve {
        outcome: "Agreed a joint visit.".into(),
        agreed_actions: "Visit by 8 January.".into(),
        actions: Vec::new(),
        outstanding: String::new(),
        review_date: None,
    };
    let done = apply(&br.rules, &first.case, &actor, &resolve, at("2026-12-29T10:00:00Z")).expect("resolves");
    let mut change = Change::new(done);
    change.outbox.push(email("resolved-1", "BRAD-2026-0001"));
    store.save(&first, &change).await.expect("saves");
    assert!(store.timers("BRAD-2026-0001").await.expect("timers").is_empty());
    assert!(store.deadlines("BRAD-2026-0001").await.expect("deadlines").is_empty());
    let outbox = store.outbox(Some("BRAD-2026-0001")).await.expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].email, email("resolved-1", "BRAD-2026-0001"));

    // Listing and filtering.
    let all = store.list_cases(&CaseFilter::default()).await.expect("list");
    assert_eq!(
        all.iter().map(|s| s.reference.as_str()).collect::<Vec<_>>(),
        ["BRAD-2026-0001", "TRAF-2026-0001", "BRAD-2026-0002", "BRAD-2027-0001"]
    );
    let open_brad = store
        .list_cases(&CaseFilter {
            board: Some("bradford".into()),
            status: Some(CaseStatus::Open),
        })
        .await
        .expect("list");
    assert_eq!(
        open_brad.iter().map(|s| s.reference.as_str()).collect::<Vec<_>>(),
        ["BRAD-2026-0002", "BRAD-2027-0001"]
    );
    assert_eq!(
        open_brad[0].next_due.map(|d| d.to_string()).as_deref(),
        Some("2027-01-20")
    );
    let resolved = &all[0];
    assert_eq!((resolved.status, resolved.next_due), (CaseStatus::Resolved, None));

    // Events: append-only trail, refusals without a case included.
    let refusal = Event {
        kind: "refused".into(),
        at: at("2026-12-23T12:00:00Z"),
        actor: "someone@example.com".into(),
        summary: "Refused: sender's domain is not allowed to open cases".into(),
        detail: serde_json::json!({"problems": ["domain"]}),
    };
    store.record_event("bradford", None, &refusal).await.expect("event");
    assert!(matches!(
        store.record_event("bradford", Some("BRAD-2026-0999"), &refusal).await,
        Err(StoreError::NotFound(_))
    ));
    let events = store.events(None).await.expect("events");
    assert_eq!(
        events.last().map(|e| (e.case_reference.clone(), e.event.kind.as_str())),
        Some((None, "refused"))
    );
    assert_eq!(events.last().map(|e| e.event.clone()), Some(refusal));
    let brad = store.events(Some("BRAD-2026-0001")).await.expect("events");
    assert_eq!(
        brad.iter().map(|e| e.event.kind.as_str()).collect::<Vec<_>>(),
        ["opened", "resolved"]
    );

    // Timers: claimed once per lease; completing twice sends once.
    let before = store
        .claim_due_timers(at("2026-12-23T12:00:00Z"), 100, 60_000)
        .await
        .expect("claim");
    assert!(before.is_empty(), "nothing is due yet");
    let now = at("2027-02-01T09:00:00Z");
    let claimed = store.claim_due_timers(now, 100, 60_000).await.expect("claim");
    // Due by then: BRAD-2026-0002's three, BRAD-2027-0001's two reminders (its overdue notice is on
    // 2 February), TRAF-2026-0001's two.
    assert_eq!(claimed.len(), 7);
    assert!(claimed.windows(2).all(|w| w[0].timer.fire_at <= w[1].timer.fire_at));
    assert!(
        store
            .claim_due_timers(now, 100, 60_000)
            .await
            .expect("claim")
            .is_empty(),
        "claimed timers are leased"
    );
    let first_timer = &claimed[0];
    let sent = email("reminder-1", &first_timer.case_reference);
    store
        .complete_timer(first_timer.id, now, true, None, std::slice::from_ref(&sent))
        .await
        .expect("complete");
    store
        .complete_timer(
            first_timer.id,
            now,
            true,
            None,
            &[email("reminder-1-again", &first_timer.case_reference)],
        )
        .await
        .expect("complete twice");
    assert!(store
        .outbox(None)
        .await
        .expect("outbox")
        .iter()
        .all(|o| o.email.message_id != "<reminder-1-again@escalation-bot.test>"));
    let fired = store.timers(&first_timer.case_reference).await.expect("timers");
    let fired = fired.iter().find(|t| t.id == first_timer.id).expect("timer");
    assert!(fired.late && fired.fired_at == Some(now));
    let after_lease = store
        .claim_due_timers(at("2027-02-01T09:01:01Z"), 100, 60_000)
        .await
        .expect("claim");
    assert_eq!(
        after_lease.len(),
        6,
        "an expired lease frees the claim; the fired timer stays fired"
    );

    // The next wake-up: every due timer is claimed until 09:02:01, the others come later.
    assert_eq!(
        store.next_timer_at().await.expect("next"),
        Some(at("2027-02-01T09:02:01Z"))
    );
    // Completing in one batch skips the timer fired already, with its emails.
    let mut done: Vec<TimerDone> = after_lease
        .iter()
        .map(|t| TimerDone {
            timer_id: t.id,
            board_id: t.board_id.clone(),
            late: false,
            event: None,
            outbox: Vec::new(),
        })
        .collect();
    done.push(TimerDone {
        timer_id: first_timer.id,
        board_id: first_timer.board_id.clone(),
        late: false,
        event: None,
        outbox: vec![email("batch-again", &first_timer.case_reference)],
    });
    assert_eq!(store.complete_timers(&done, now).await.expect("complete"), 6);
    let queued = store.outbox(None).await.expect("outbox");
    assert!(queued.iter().all(|o| !o.email.message_id.contains("batch-again")));
    let next = store.next_timer_at().await.expect("next").expect("timers remain");
    assert!(next > now, "{next}");
    // A deferred timer wakes the scheduler at the end of its deferral, and is not claimed before.
    let pending = store.claim_due_timers(next, 1, 60_000).await.expect("claim");
    assert_eq!(pending.len(), 1);
    let until = next + chrono::Duration::days(3);
    store.defer_timer(pending[0].id, until).await.expect("defer");
    assert!(store
        .claim_due_timers(until - chrono::Duration::seconds(1), 100, 60_000)
        .await
        .expect("claim")
        .iter()
        .all(|t| t.id != pending[0].id));
    assert!(store.next_timer_at().await.expect("next").is_some_and(|t| t <= until));

    // Outbox: lease, retry with backoff, give up, sent.
    let t0 = at("2027-02-01T10:00:00Z");
    let batch = store.claim_outbox(t0, 10, 30_000).await.expect("claim");
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|o| o.attempts == 1));
    assert!(store.claim_outbox(t0, 10, 30_000).await.expect("claim").is_empty());
    store
        .outbox_failed(batch[0].id, "451 try later", Some(at("2027-02-01T10:05:00Z")), t0)
        .await
        .expect("failed");
    store
        .outbox_failed(batch[1].id, "550 no such user", None, t0)
        .await
        .expect("gave up");
    assert!(store
        .claim_outbox(at("2027-02-01T10:04:00Z"), 10, 30_000)
        .await
        .expect("claim")
        .is_empty());
    let retry = store
        .claim_outbox(at("2027-02-01T10:05:00Z"), 10, 30_000)
        .await
        .expect("claim");
    assert_eq!(
        (retry.len(), retry[0].attempts, retry[0].last_error.as_deref()),
        (1, 2, Some("451 try later"))
    );
    store
        .outbox_sent(retry[0].id, at("2027-02-01T10:05:01Z"))
        .await
        .expect("sent");
    assert!(store
        .claim_outbox(at("2027-03-01T00:00:00Z"), 10, 30_000)
        .await
        .expect("claim")
        .is_empty());
    let all_out = store.outbox(None).await.expect("outbox");
    assert!(all_out
        .iter()
        .any(|o| o.failed_at.is_some() && o.last_error.as_deref() == Some("550 no such user")));
    assert!(all_out.iter().any(|o| o.sent_at.is_some()));
    // Every email's Message-ID is its own: queueing a second with the same id is an error (never a silent
    // drop of the second email), and the first stays as it was.
    assert!(store.enqueue(std::slice::from_ref(&sent), t0).await.is_err());
    assert_eq!(
        store
            .outbox(None)
            .await
            .expect("outbox")
            .iter()
            .filter(|o| o.email.message_id == sent.message_id)
            .count(),
        1
    );

    // Inbound: kept once, by Message-ID or by mailbox/UIDVALIDITY/UID.
    let msg = InboundMessage {
        board_id: Some("bradford".into()),
        mailbox: "INBOX".into(),
        uidvalidity: Some(7),
        uid: Some(42),
        message_id: "<abc@nhs.net>".into(),
        received_at: at("2026-12-23T10:00:00Z"),
        raw: b"From: nia.nurse@nhs.net\r\nSubject: Escalation\r\n\r\nBody\0with NUL\r\n".to_vec(),
    };
    let InboundInsert::New(id) = store.record_inbound(&msg).await.expect("inbound") else {
        panic!("first sight is new")
    };
    assert_eq!(
        store.record_inbound(&msg).await.expect("inbound"),
        InboundInsert::Seen { id, outcome: None }
    );
    let same_uid = InboundMessage {
        message_id: "<other@nhs.net>".into(),
        ..msg.clone()
    };
    assert!(matches!(
        store.record_inbound(&same_uid).await.expect("inbound"),
        InboundInsert::Seen { .. }
    ));
    store
        .set_inbound_outcome(
            id,
            "case_opened",
            Some("BRAD-2026-0002"),
            &[],
            at("2026-12-23T10:00:01Z"),
        )
        .await
        .expect("outcome");
    let redelivered = InboundMessage {
        uid: Some(43),
        uidvalidity: Some(8),
        ..msg.clone()
    };
    assert_eq!(
        store.record_inbound(&redelivered).await.expect("inbound"),
        InboundInsert::Seen {
            id,
            outcome: Some("case_opened".into())
        }
    );
    let other = InboundMessage {
        uid: Some(44),
        message_id: "<new@nhs.net>".into(),
        ..msg.clone()
    };
    assert!(matches!(store.record_inbound(&other).await.expect("inbound"), InboundInsert::New(n) if n != id));

    // Many at once, as a batch is kept: new ones, one seen before, and a copy of one in the same batch.
    let fresh = |uid: i64, mid: &str| InboundMessage {
        uid: Some(uid),
        message_id: mid.into(),
        ..msg.clone()
    };
    let batch = [
        fresh(50, "<b50@nhs.net>"),
        redelivered.clone(),
        fresh(51, "<b51@nhs.net>"),
        fresh(52, "<b50@nhs.net>"),
        fresh(51, "<b51-again@nhs.net>"),
    ];
    let answers = store.record_inbound_many(&batch).await.expect("inbound batch");
    assert_eq!(answers.len(), 5);
    let InboundInsert::New(b50) = answers[0] else {
        panic!("new: {answers:?}")
    };
    assert_eq!(
        answers[1],
        InboundInsert::Seen {
            id,
            outcome: Some("case_opened".into())
        }
    );
    let InboundInsert::New(b51) = answers[2] else {
        panic!("new: {answers:?}")
    };
    assert!(b50 != b51 && b50 != id);
    assert!(matches!(&answers[3], InboundInsert::Seen { id, outcome: Some(_) } if *id == b50));
    assert!(matches!(&answers[4], InboundInsert::Seen { id, outcome: Some(_) } if *id == b51));
    // And each is then seen, as one at a time.
    assert_eq!(
        store.record_inbound(&batch[2]).await.expect("inbound"),
        InboundInsert::Seen { id: b51, outcome: None }
    );

    // An email for a role whose address is a placeholder waits, and goes to the address once it is set.
    let t = at("2027-03-01T10:00:00Z");
    let mut held = email("held-1", "BRAD-2026-0002");
    held.to = vec!["independent-chair@bradford-sab.invalid".into()];
    held.hold = Some(Hold {
        role: "independent-chair".into(),
        reason: "placeholder".into(),
    });
    store.enqueue(&[held], t).await.expect("enqueue");
    let claimable = store.claim_outbox(t, 100, 1).await.expect("claim");
    assert!(
        claimable.iter().all(|r| !r.email.message_id.contains("held-1")),
        "held, not sent"
    );
    let kept = store.outbox(None).await.expect("outbox");
    let kept = kept
        .iter()
        .find(|r| r.email.message_id.contains("held-1"))
        .expect("kept");
    assert_eq!(
        kept.email.hold.as_ref().map(|h| h.role.as_str()),
        Some("independent-chair")
    );
    assert_eq!(
        store
            .release_held("bradford", "independent-chair", "chair@bradford.gov.uk", t)
            .await
            .expect("release"),
        1
    );
    let later = t + chrono::Duration::minutes(1);
    let now_sent = store.claim_outbox(later, 100, 1).await.expect("claim");
    let released = now_sent
        .iter()
        .find(|r| r.email.message_id.contains("held-1"))
        .expect("released and claimable");
    assert_eq!(released.email.to, vec!["chair@bradford.gov.uk".to_string()]);
    assert!(released.email.hold.is_none());
}

async fn audit_log_is_append_only(db: &TestDb) {
    let update = db.execute("UPDATE events SET summary = 'rewritten'").await;
    assert!(update.is_err(), "an UPDATE on events must fail: {update:?}");
    let delete = db.execute("DELETE FROM events").await;
    assert!(delete.is_err(), "a DELETE on events must fail: {delete:?}");
    assert!(update.unwrap_err().to_string().contains("append-only"));
}

#[tokio::test]
async fn sqlite_store_contract() {
    let (store, db) = TestDb::sqlite().await;
    store.migrate().await.expect("migrates");
    assert_eq!(store.backend(), "sqlite");
    let (journal, synchronous) = store.pragmas().await.expect("pragmas");
    assert_eq!((journal.as_str(), synchronous), ("wal", 2), "WAL and synchronous=FULL");
    contract(&store).await;
    store.close().await;
    audit_log_is_append_only(&db).await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_store_contract() {
    let (store, db) = TestDb::postgres().await;
    store.migrate().await.expect("migrates");
    assert_eq!(store.backend(), "postgres");
    contract(&store).await;
    audit_log_is_append_only(&db).await;
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_instances_never_share_a_reference_or_a_claim() {
    let (store, db) = TestDb::postgres().await;
    store.migrate().await.expect("migrates");
    let c = config();
    upsert_boards(&store, &c).await;
    // Twenty cases opened at once, as by several daemons: twenty distinct references, 0001 to 0020.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let when = format!("2026-12-23T10:{i:02}:00Z");
            open_case(&store, &c, "south-gloucestershire", &when)
                .await
                .case
                .reference
        }));
    }
    let mut refs = BTreeSet::new();
    for t in tasks {
        refs.insert(t.await.expect("task"));
    }
    let expected: BTreeSet<String> = (1..=20).map(|n| format!("SGLO-2026-{n:04}")).collect();
    assert_eq!(refs, expected);

    // Four workers claim due timers concurrently: every timer is claimed by exactly one.
    let now = at("2027-03-01T09:00:00Z");
    let mut workers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_due_timers(now, 3, 600_000).await.expect("claim");
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.into_iter().map(|t| t.id));
            }
            mine
        }));
    }
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.expect("worker"));
    }
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    // Each SG case has a reminder and an overdue notice for stage 1 and for stage 4.
    assert_eq!(seen.len(), 80, "no timer claimed twice");
    assert_eq!(unique.len(), 80);
    store.close().await;
    db.cleanup().await;
}

async fn units_of_work<S: escalation_bot::store::Batching>(store: &S) {
    use escalation_bot::store::Unit;
    let c = config();
    store.migrate().await.expect("migrates");
    upsert_boards(store, &c).await;
    // Committed: everything inside lands, in order.
    let unit = store.begin_unit().await.expect("begin");
    let a = open_case(&unit, &c, "trafford", "2026-12-23T10:00:00Z").await;
    let refused = unit
        .create_case("trafford", "TRAF", 2026, |_r| -> Result<Change, Refusal> {
            Err(Refusal {
                problems: vec!["no".into()],
                out_of_scope: false,
            })
        })
        .await
        .expect("store works");
    assert!(refused.is_err());
    let b = open_case(&unit, &c, "trafford", "2026-12-23T10:01:00Z").await;
    assert_eq!(
        (a.case.reference.as_str(), b.case.reference.as_str()),
        ("TRAF-2026-0001", "TRAF-2026-0002")
    );
    // Reads inside the unit see its own writes.
    assert!(unit.load_case("TRAF-2026-0002").await.expect("load").is_some());
    unit.commit().await.expect("commit");
    assert_eq!(store.list_cases(&CaseFilter::default()).await.expect("list").len(), 2);
    // Dropped without commit: nothing lands, and the numbers are not used up.
    {
        let unit = store.begin_unit().await.expect("begin");
        open_case(&unit, &c, "trafford", "2026-12-23T11:00:00Z").await;
    }
    assert_eq!(store.list_cases(&CaseFilter::default()).await.expect("list").len(), 2);
    assert_eq!(
        open_case(store, &c, "trafford", "2026-12-23T12:00:00Z")
            .await
            .case
            .reference,
        "TRAF-2026-0003"
    );
    // A unit's new cases wait under ids reserved in advance: across more than one block of ids, with a
    // read in the middle (which writes what waits), every case keeps the id it was given, and ids given
    // out afterwards, in a unit or not, are new.
    let unit = store.begin_unit().await.expect("begin");
    let mut given = Vec::new();
    for i in 0..130 {
        let stored = open_case(&unit, &c, "trafford", &format!("2026-12-24T09:{:02}:00Z", i % 60)).await;
        given.push((stored.case.reference.clone(), stored.id));
        if i == 70 {
            let seen = unit
                .load_case(&stored.case.reference)
                .await
                .expect("load")
                .expect("visible");
            assert_eq!(seen.id, stored.id);
        }
    }
    unit.commit().await.expect("commit");
    let later = open_case(store, &c, "trafford", "2026-12-24T10:00:00Z").await;
    let unit = store.begin_unit().await.expect("begin");
    let in_unit = open_case(&unit, &c, "trafford", "2026-12-24T10:01:00Z").await;
    unit.commit().await.expect("commit");
    given.push((later.case.reference.clone(), later.id));
    given.push((in_unit.case.reference.clone(), in_unit.id));
    let mut ids: Vec<i64> = given.iter().map(|(_, id)| *id).collect();
    ids.extend([a.id, b.id]);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), given.len() + 2, "every case has an id of its own");
    for (reference, id) in &given {
        let stored = store.load_case(reference).await.expect("load").expect("committed");
        assert_eq!(stored.id, *id, "{reference} keeps the id it was given");
    }
    assert_eq!(
        store.list_cases(&CaseFilter::default()).await.expect("list").len(),
        3 + given.len()
    );
}

#[tokio::test]
async fn sqlite_units_of_work() {
    let (store, db) = TestDb::sqlite().await;
    units_of_work(&store).await;
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_units_of_work() {
    let (store, db) = TestDb::postgres().await;
    units_of_work(&store).await;
    store.close().await;
    db.cleanup().await;
}
