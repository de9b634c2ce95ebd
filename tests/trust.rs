//! The trust model and robustness of mail in (issue 13), each finding as a test that failed before:
//! a command moves a case only with proof of its sender (a reply to the bot's email signed for this case
//! and board and sent to that address, or DMARC passed by the board's trusted server); otherwise the From
//! address is asked to CONFIRM. References are looked up only within the board that received them; a
//! refusal to a stranger carries no usable token; two replies in one batch are both confirmed; a message
//! that fails every time is quarantined after three attempts; a curly apostrophe never panics.

mod common;

use common::{at, config, TestDb};
use escalation_bot::config::Config;
use escalation_bot::core::case::CaseStatus;
use escalation_bot::mail::pipeline::{Pipeline, Report, Source};
use escalation_bot::store::{OutboxRecord, SqliteStore, Store};

const NIA: &str = "nia.nurse@nhs.net";
const SAM: &str = "sam.social@westshire.gov.uk";

struct World {
    config: Config,
    store: SqliteStore,
    db: TestDb,
}

impl World {
    async fn new() -> World {
        let config = config();
        let (store, db) = TestDb::sqlite().await;
        escalation_bot::app::prepare_store(&config, &store, at("2026-12-23T09:00:00Z"))
            .await
            .expect("prepare");
        World { config, store, db }
    }

    async fn send(&self, raw: &[u8], when: &str) -> Report {
        let pipeline = Pipeline::new(&self.config, b"test-secret".to_vec()).expect("pipeline");
        pipeline
            .process_isolated(&self.store, &source(), raw, None, at(when), false)
            .await
            .expect("processes")
    }

    /// Open a case on `board` from its plain fixture; the reference and the acknowledgement's Message-ID.
    async fn open(&self, board: &str) -> (String, String) {
        let raw = std::fs::read(format!("tests/fixtures/forms/{board}-plain.eml")).expect("fixture");
        let r = self.send(&raw, "2026-12-23T10:00:00Z").await;
        let reference = r.case.expect("case opened");
        (reference.clone(), self.ack_for(&reference, NIA).await)
    }

    /// The Message-ID of `to`'s own copy of the case's acknowledgement.
    async fn ack_for(&self, reference: &str, to: &str) -> String {
        self.store
            .outbox(Some(reference))
            .await
            .expect("outbox")
            .into_iter()
            .find(|o| o.email.kind == "acknowledgement" && o.email.to == [to.to_string()])
            .expect("acknowledgement copy")
            .email
            .message_id
    }

    async fn last(&self, reference: &str, kind: &str) -> Option<OutboxRecord> {
        self.store
            .outbox(Some(reference))
            .await
            .expect("outbox")
            .into_iter()
            .rfind(|o| o.email.kind == kind)
    }

    async fn status(&self, reference: &str) -> CaseStatus {
        self.store
            .load_case(reference)
            .await
            .expect("load")
            .expect("case")
            .case
            .status
    }

    async fn done(self) {
        self.store.close().await;
        self.db.cleanup().await;
    }
}

fn source() -> Source {
    Source {
        mailbox: "INBOX".into(),
        ..Default::default()
    }
}

/// A reply as a mail client writes it: From, the board mailbox, the subject, thread headers, and any
/// extra headers.
fn reply(from: &str, to: &str, subject: &str, in_reply_to: Option<&str>, extra: &str, body: &str, id: &str) -> Vec<u8> {
    let mut s = format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n{extra}");
    if let Some(parent) = in_reply_to {
        s.push_str(&format!("In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n"));
    }
    s.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    ));
    s.into_bytes()
}

const SGLOS: &str = "escalations@southglos-sab.invalid";
const TRAFFORD: &str = "escalations@trafford-ssp.invalid";
const BRADFORD: &str = "BSAB@bradford.gov.uk";

#[tokio::test]
async fn a_curly_apostrophe_in_a_review_date_is_answered_not_a_panic() {
    let w = World::new().await;
    let (reference, _) = w.open("south-gloucestershire").await;
    let ack = w.ack_for(&reference, SAM).await;
    let body = "RESOLVED\nOutcome: joint visit agreed\nReview date: in 3 months\u{2019} time\n\nSent from my iPhone";
    let r = w
        .send(
            &reply(
                SAM,
                SGLOS,
                &format!("RE: {reference}"),
                Some(&ack),
                "",
                body,
                "curly-1@westshire.gov.uk",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "refused", "{:?}", r.problems);
    assert!(r.problems.iter().any(|p| p.contains("review date")), "{:?}", r.problems);
    assert_eq!(w.status(&reference).await, CaseStatus::Open);
    // And the next message is handled as ever.
    let r = w
        .send(
            &reply(
                SAM,
                SGLOS,
                &format!("RE: {reference}"),
                Some(&ack),
                "",
                "RESOLVED\nOutcome: joint visit agreed\nReview date: 1st February 2027",
                "curly-2@westshire.gov.uk",
            ),
            "2026-12-23T11:05:00Z",
        )
        .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    assert_eq!(w.status(&reference).await, CaseStatus::Resolved);
    w.done().await;
}

#[tokio::test]
async fn a_forged_from_with_the_reference_in_the_subject_is_held_and_the_real_owner_asked() {
    let w = World::new().await;
    let (reference, _) = w.open("trafford").await;
    // Anyone can write this From header; references are sequential.
    let forged = reply(
        NIA,
        TRAFFORD,
        &format!("WITHDRAW {reference}"),
        None,
        "",
        "WITHDRAW\nNo longer needed.",
        "forged-1@attacker.example",
    );
    let r = w.send(&forged, "2026-12-23T11:00:00Z").await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    assert_eq!(
        w.status(&reference).await,
        CaseStatus::Open,
        "nothing happens without proof"
    );
    let challenge = w.last(&reference, "challenge").await.expect("challenge sent");
    assert_eq!(
        challenge.email.to,
        vec![NIA.to_string()],
        "to the real owner of the From address"
    );
    assert!(challenge.email.subject.contains(&reference) && challenge.email.subject.contains("WITHDRAW"));
    assert!(challenge.email.text.contains("CONFIRM"), "{}", challenge.email.text);
    assert!(
        !challenge.email.subject.contains("No longer needed"),
        "no free text in a subject"
    );
    let events = w.store.events(Some(&reference)).await.expect("events");
    assert!(
        events.iter().any(|e| e.event.kind == "held"),
        "the held command is audited"
    );
    // The attacker cannot confirm: a CONFIRM that is no reply to the challenge does nothing.
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                "",
                "CONFIRM",
                "forged-2@attacker.example",
            ),
            "2026-12-23T11:01:00Z",
        )
        .await;
    assert_ne!(r.outcome, "command_applied", "{:?}", r.problems);
    assert_eq!(w.status(&reference).await, CaseStatus::Open);
    // The real owner, replying to the challenge from that address, applies it; once.
    let confirm = reply(
        NIA,
        TRAFFORD,
        &format!("RE: {}", challenge.email.subject),
        Some(&challenge.email.message_id),
        "",
        "CONFIRM\n\nSent from Outlook for iOS",
        "confirm-1@nhs.net",
    );
    let r = w.send(&confirm, "2026-12-23T11:30:00Z").await;
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("WITHDRAW")),
        "{:?}",
        r.problems
    );
    assert_eq!(w.status(&reference).await, CaseStatus::Withdrawn);
    let again = reply(
        NIA,
        TRAFFORD,
        "RE: confirm",
        Some(&challenge.email.message_id),
        "",
        "CONFIRM",
        "confirm-2@nhs.net",
    );
    let r = w.send(&again, "2026-12-23T11:31:00Z").await;
    assert_eq!(r.outcome, "refused");
    assert!(r.problems[0].contains("already applied"), "{:?}", r.problems);
    w.done().await;
}

#[tokio::test]
async fn a_confirm_from_another_address_in_reply_to_the_challenge_does_nothing() {
    let w = World::new().await;
    let (reference, _) = w.open("trafford").await;
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                "",
                "WITHDRAW\nduplicate",
                "h-1@nhs.net",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held");
    let challenge = w.last(&reference, "challenge").await.expect("challenge");
    // Sam is on the case, and has the challenge's id (say it was forwarded), but it was not sent to Sam.
    let r = w
        .send(
            &reply(
                SAM,
                TRAFFORD,
                "RE: confirm",
                Some(&challenge.email.message_id),
                "",
                "CONFIRM",
                "h-2@westshire.gov.uk",
            ),
            "2026-12-23T11:10:00Z",
        )
        .await;
    assert_eq!(r.outcome, "refused", "{:?}", r.problems);
    assert_eq!(w.status(&reference).await, CaseStatus::Open);
    w.done().await;
}

#[tokio::test]
async fn a_reference_is_looked_up_only_within_the_board_that_received_it() {
    let w = World::new().await;
    let (bradford_ref, bradford_ack) = w.open("bradford").await;
    let _ = w.open("trafford").await;
    // Nia replies to Bradford's acknowledgement, but to Trafford's mailbox.
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {bradford_ref}"),
                Some(&bradford_ack),
                "",
                "WITHDRAW\nwrong board",
                "x-1@nhs.net",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_ne!(r.outcome, "command_applied", "{:?}", r.problems);
    assert_ne!(r.outcome, "held", "{:?}", r.problems);
    assert_eq!(w.status(&bradford_ref).await, CaseStatus::Open);
    // The same reply to Bradford's own mailbox acts.
    let r = w
        .send(
            &reply(
                NIA,
                BRADFORD,
                &format!("RE: {bradford_ref}"),
                Some(&bradford_ack),
                "",
                "WITHDRAW\nraised in error",
                "x-2@nhs.net",
            ),
            "2026-12-23T11:05:00Z",
        )
        .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    w.done().await;
}

#[tokio::test]
async fn a_refusal_to_a_stranger_carries_no_token_that_could_be_reused() {
    let w = World::new().await;
    let (reference, _) = w.open("trafford").await;
    let r = w
        .send(
            &reply(
                "mallory@nhs.net",
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                "",
                "STATUS",
                "m-1@nhs.net",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "refused");
    let refusal = w
        .store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .rfind(|o| o.email.kind == "command_error")
        .expect("refusal");
    assert_eq!(refusal.email.to, vec!["mallory@nhs.net".to_string()]);
    assert!(
        refusal.email.message_id.starts_with("esc.none."),
        "{}",
        refusal.email.message_id
    );
    // Mallory now writes as Nia, in reply to that refusal: no proof, so held, never applied.
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                Some(&refusal.email.message_id),
                "",
                "WITHDRAW",
                "m-2@nhs.net",
            ),
            "2026-12-23T11:05:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    assert_eq!(w.status(&reference).await, CaseStatus::Open);
    w.done().await;
}

#[tokio::test]
async fn dmarc_pass_from_the_trusted_server_is_proof_and_a_fail_refuses() {
    let mut w = World::new().await;
    for b in &mut w.config.boards {
        b.settings.trusted_authserv_id = Some("mx.trafford.example".into());
    }
    let (reference, _) = w.open("trafford").await;
    // A header from another server proves nothing.
    let other = "Authentication-Results: mx.attacker.example; dmarc=pass header.from=nhs.net\r\n";
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                other,
                "NOTE rang the GP",
                "d-1@nhs.net",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    // DMARC passed for the From domain, by the trusted server: applied at once.
    let pass = "Authentication-Results: mx.trafford.example; spf=pass smtp.mailfrom=nhs.net;\r\n dkim=pass header.d=nhs.net; dmarc=pass (p=reject) header.from=nhs.net\r\n";
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                pass,
                "NOTE rang the GP",
                "d-2@nhs.net",
            ),
            "2026-12-23T11:05:00Z",
        )
        .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    // A pass for another domain is no pass for this From.
    let elsewhere = "Authentication-Results: mx.trafford.example; dmarc=pass header.from=attacker.example\r\n";
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                elsewhere,
                "WITHDRAW",
                "d-3@nhs.net",
            ),
            "2026-12-23T11:10:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    // A DMARC fail from the trusted server refuses outright.
    let fail = "Authentication-Results: mx.trafford.example; dmarc=fail header.from=nhs.net\r\n";
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                fail,
                "WITHDRAW",
                "d-4@nhs.net",
            ),
            "2026-12-23T11:15:00Z",
        )
        .await;
    assert_eq!(r.outcome, "refused", "{:?}", r.problems);
    assert_eq!(w.status(&reference).await, CaseStatus::Open);
    w.done().await;
}

#[tokio::test]
async fn two_replies_on_one_case_in_one_batch_are_both_confirmed() {
    let w = World::new().await;
    let (reference, ack) = w.open("trafford").await;
    let ack_sam = w.ack_for(&reference, SAM).await;
    let pipeline = Pipeline::new(&w.config, b"test-secret".to_vec()).expect("pipeline");
    let batch = vec![
        (
            source(),
            reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                Some(&ack),
                "",
                "NOTE first",
                "b-1@nhs.net",
            ),
        ),
        (
            source(),
            reply(
                SAM,
                TRAFFORD,
                &format!("RE: {reference}"),
                Some(&ack_sam),
                "",
                "NOTE second",
                "b-2@westshire.gov.uk",
            ),
        ),
    ];
    let acks = pipeline
        .process_batch(&w.store, "trafford", &batch, at("2026-12-23T11:00:00Z"))
        .await;
    assert_eq!(acks.len(), 2);
    let confirmations: Vec<OutboxRecord> = w
        .store
        .outbox(Some(&reference))
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "confirmation")
        .collect();
    // Each confirmed to its sender (and copied to the other: a copy each), every copy with an id of its own.
    assert_eq!(
        confirmations
            .iter()
            .filter(|c| c.email.to == [NIA.to_string()] && c.email.headers.get("To").map(String::as_str) == Some(NIA))
            .count(),
        1
    );
    assert_eq!(
        confirmations
            .iter()
            .filter(|c| c.email.to == [SAM.to_string()] && c.email.headers.get("To").map(String::as_str) == Some(SAM))
            .count(),
        1
    );
    let ids: std::collections::BTreeSet<&str> = confirmations.iter().map(|c| c.email.message_id.as_str()).collect();
    assert_eq!(ids.len(), confirmations.len());
    let case = w.store.load_case(&reference).await.expect("load").expect("case").case;
    assert_eq!(case.notes.len(), 2);
    w.done().await;
}

#[tokio::test]
async fn a_practitioners_own_reference_in_a_subject_is_no_case_of_ours() {
    let w = World::new().await;
    let raw = std::fs::read_to_string("tests/fixtures/forms/trafford-plain.eml")
        .expect("fixture")
        .replace(
            "Subject: Professional disagreement – escalation",
            "Subject: Escalation re INC-2026-12345 (our incident ref)",
        );
    let r = w.send(raw.as_bytes(), "2026-12-23T10:00:00Z").await;
    assert_eq!(r.outcome, "case_opened", "{:?}", r.problems);
    w.done().await;
}

#[tokio::test]
async fn a_message_that_fails_every_time_is_quarantined_after_three_attempts() {
    let w = World::new().await;
    // A real database failure that repeats on the same message (as a full disk or a value too long would).
    let url = match &w.db {
        TestDb::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        TestDb::Postgres { url, .. } => url.clone(),
    };
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.expect("connect");
        sqlx::query(
            "CREATE TRIGGER no_cases BEFORE INSERT ON cases BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
        )
        .execute(&mut c)
        .await
        .expect("trigger");
        c.close().await.ok();
    }
    let raw = std::fs::read("tests/fixtures/forms/trafford-plain.eml").expect("fixture");
    for n in 1..=3 {
        let r = w.send(&raw, "2026-12-23T10:00:00Z").await;
        assert!(r.retry, "attempt {n} is to be tried again: {:?}", r.problems);
        assert!(r.problems[0].contains(&format!("attempt {n} of 3")), "{:?}", r.problems);
    }
    let r = w.send(&raw, "2026-12-23T10:05:00Z").await;
    assert!(r.quarantine && !r.retry, "{r:?}");
    let events = w.store.events(None).await.expect("events");
    assert!(events.iter().any(|e| e.event.kind == "quarantined"));
    w.done().await;
}

fn plain(from: &str, to: &str, subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_message_that_only_looks_automatic_is_quarantined_and_answered_not_dropped() {
    let w = World::new().await;
    // No RFC 3834 header, only the subject's words: doubtful, so kept and answered.
    let r = w
        .send(
            &plain(
                NIA,
                TRAFFORD,
                "Out of Office: back on Monday",
                "ooo-doubt@nhs.net",
                "",
                "I am away until Monday.",
            ),
            "2026-12-23T10:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "refused", "{:?}", r.problems);
    assert!(r.quarantine, "kept for the board team");
    assert_eq!(r.replies, 1, "answered");
    assert!(
        r.problems[0].contains("looked like an automatic reply"),
        "{:?}",
        r.problems
    );
    // With the header, a real auto-reply: recorded, never answered.
    let r = w
        .send(
            &plain(
                NIA,
                TRAFFORD,
                "Out of Office: back on Monday",
                "ooo-real@nhs.net",
                "Auto-Submitted: auto-replied\r\n",
                "I am away until Monday.",
            ),
            "2026-12-23T10:01:00Z",
        )
        .await;
    assert_eq!((r.outcome.as_str(), r.replies), ("ignored", 0), "{:?}", r.problems);
    w.done().await;
}

#[tokio::test]
async fn two_different_messages_that_share_a_message_id_are_both_kept_and_processed() {
    let w = World::new().await;
    let first = std::fs::read_to_string("tests/fixtures/forms/trafford-plain.eml").expect("fixture");
    let second = first.replace("Zoë Testperson", "Yusuf Testperson");
    assert_ne!(first, second);
    let a = w.send(first.as_bytes(), "2026-12-23T10:00:00Z").await;
    let b = w.send(second.as_bytes(), "2026-12-23T10:05:00Z").await;
    assert_eq!(
        (a.outcome.as_str(), b.outcome.as_str()),
        ("case_opened", "case_opened"),
        "{:?}",
        b.problems
    );
    assert_ne!(a.case, b.case);
    // The same message again (other trace headers, same content) is still seen once.
    let again = format!("Received: from relay2.example by mx.example; Wed, 23 Dec 2026 10:06:00 +0000\r\n{first}");
    let c = w.send(again.as_bytes(), "2026-12-23T10:06:00Z").await;
    assert_eq!(c.outcome, "ignored", "{:?}", c.problems);
    w.done().await;
}

#[tokio::test]
async fn what_people_write_never_reaches_a_subject_line() {
    let w = World::new().await;
    let (reference, ack) = w.open("bradford").await;
    let secret = "Zebra-Quill private detail";
    for (n, body) in [
        format!("NOTE {secret} in a note"),
        format!("RESOLVED\nOutcome: {secret} agreed\nActions: {secret} actions"),
    ]
    .iter()
    .enumerate()
    {
        let r = w
            .send(
                &reply(
                    NIA,
                    BRADFORD,
                    &format!("RE: {reference} {secret}"),
                    Some(&ack),
                    "",
                    body,
                    &format!("s-{n}@nhs.net"),
                ),
                "2026-12-23T11:00:00Z",
            )
            .await;
        assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    }
    let out = w.store.outbox(None).await.expect("outbox");
    assert!(
        out.iter().any(|o| o.email.kind == "notification"),
        "Bradford's roles are told of the resolution"
    );
    for o in &out {
        assert!(
            !o.email.subject.contains("Zebra"),
            "{}: {}",
            o.email.kind,
            o.email.subject
        );
    }
    // Notifications to board roles carry no adult's name or NHS number (the board has not turned that on).
    for o in out.iter().filter(|o| o.email.kind == "notification") {
        assert!(
            !o.email.text.contains("Zoë") && !o.email.text.contains("999"),
            "{}",
            o.email.text
        );
    }
    w.done().await;
}

#[tokio::test]
async fn rate_limits_from_the_board_file_cover_every_kind_of_email() {
    let mut w = World::new().await;
    for b in &mut w.config.boards {
        b.settings.rate_limits.per_address = 3;
    }
    let (reference, ack) = w.open("trafford").await;
    // Nia has had the acknowledgement; two answers more reach her, the rest are held back and audited.
    for n in 0..4 {
        w.send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                Some(&ack),
                "",
                "STATUS",
                &format!("st-{n}@nhs.net"),
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    }
    let to_nia = w
        .store
        .outbox(None)
        .await
        .expect("outbox")
        .iter()
        .filter(|o| o.email.to.iter().chain(o.email.cc.iter()).any(|a| a == NIA))
        .count();
    assert_eq!(to_nia, 3);
    let events = w.store.events(None).await.expect("events");
    assert!(events.iter().any(|e| e.event.kind == "reply_suppressed"));
    // The whole board's limit stops a flood of new records' acknowledgements too.
    for b in &mut w.config.boards {
        b.settings.rate_limits.per_address = 100;
        b.settings.rate_limits.overall = 5;
    }
    let before = w.store.outbox(None).await.expect("outbox").len();
    let raw = std::fs::read_to_string("tests/fixtures/forms/trafford-plain.eml").expect("fixture");
    for n in 0..4 {
        let r = w
            .send(
                raw.replace("<trafford-plain@fixtures.nhs.net>", &format!("<flood-{n}@nhs.net>"))
                    .as_bytes(),
                "2026-12-23T12:00:00Z",
            )
            .await;
        assert_eq!(r.outcome, "case_opened", "the case still opens: {:?}", r.problems);
    }
    let after = w.store.outbox(None).await.expect("outbox").len();
    assert!(after <= 5 && after >= before, "{before} -> {after}");
    w.done().await;
}

#[tokio::test]
async fn one_recipient_cannot_answer_as_another_with_their_own_copy() {
    let w = World::new().await;
    let (reference, _) = w.open("trafford").await;
    let sam_copy = w.ack_for(&reference, SAM).await;
    // Sam received the acknowledgement too (copied in), and writes as Nia in reply to Sam's own copy.
    let forged = reply(
        NIA,
        TRAFFORD,
        &format!("RE: {reference}"),
        Some(&sam_copy),
        "",
        "WITHDRAW\nNot needed.",
        "pose-1@westshire.gov.uk",
    );
    let r = w.send(&forged, "2026-12-23T11:00:00Z").await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    assert_eq!(w.status(&reference).await, CaseStatus::Open);
    // The copies show the whole To and Cc, so everyone still sees who was told.
    let copy = w
        .store
        .outbox(Some(&reference))
        .await
        .expect("outbox")
        .into_iter()
        .find(|o| o.email.message_id == sam_copy)
        .expect("copy");
    assert_eq!(copy.email.to, vec![SAM.to_string()]);
    assert_eq!(copy.email.headers.get("To").map(String::as_str), Some(NIA));
    assert_eq!(copy.email.headers.get("Cc").map(String::as_str), Some(SAM));
    w.done().await;
}

#[tokio::test]
async fn a_team_mailbox_that_sent_the_record_can_act_on_the_case() {
    let w = World::new().await;
    let raw = std::fs::read_to_string("tests/fixtures/forms/trafford-plain.eml")
        .expect("fixture")
        .replace(
            "From: Nia Nurse <nia.nurse@nhs.net>",
            "From: Adult Team <adult.team@nhs.net>",
        );
    let r = w.send(raw.as_bytes(), "2026-12-23T10:00:00Z").await;
    let reference = r.case.expect("opened");
    let team_copy = w.ack_for(&reference, "adult.team@nhs.net").await;
    let r = w
        .send(
            &reply(
                "adult.team@nhs.net",
                TRAFFORD,
                &format!("RE: {reference}"),
                Some(&team_copy),
                "",
                "NOTE Nia is on leave; the team is covering.",
                "team-1@nhs.net",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    w.done().await;
}

#[tokio::test]
async fn only_the_trusted_servers_topmost_header_counts_and_a_banner_breaking_dkim_is_no_failure() {
    let mut w = World::new().await;
    for b in &mut w.config.boards {
        b.settings.trusted_authserv_id = Some("mx.trafford.example".into());
    }
    let (reference, _) = w.open("trafford").await;
    // A forged header with the trusted id, below the server's own: the server's own says nothing of DMARC.
    let forged = "Authentication-Results: mx.trafford.example; spf=none\r\nAuthentication-Results: mx.trafford.example; dmarc=pass header.from=nhs.net\r\n";
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                forged,
                "WITHDRAW",
                "ar-1@nhs.net",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    // A gateway's banner broke DKIM, but DMARC passed on SPF: proof, not a failure.
    let banner = "Authentication-Results: mx.trafford.example; spf=pass smtp.mailfrom=nhs.net; dkim=fail header.d=nhs.net; dmarc=pass header.from=nhs.net\r\n";
    let r = w
        .send(
            &reply(
                NIA,
                TRAFFORD,
                &format!("RE: {reference}"),
                None,
                banner,
                "NOTE called the GP",
                "ar-2@nhs.net",
            ),
            "2026-12-23T11:05:00Z",
        )
        .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    w.done().await;
}

#[tokio::test]
async fn an_absurd_extension_is_answered_not_a_panic() {
    let w = World::new().await;
    let (reference, ack) = w.open("trafford").await;
    for (n, days) in ["3", "4294967295", "99999999999999999999"].iter().enumerate() {
        let r = w
            .send(
                &reply(
                    NIA,
                    TRAFFORD,
                    &format!("RE: {reference}"),
                    Some(&ack),
                    "",
                    &format!("EXTEND {days} the report is late"),
                    &format!("ext-{n}@nhs.net"),
                ),
                "2026-12-23T11:00:00Z",
            )
            .await;
        assert!(!r.retry, "{:?}", r.problems);
    }
    let case = w.store.load_case(&reference).await.expect("load").expect("case").case;
    assert!(case.extension_total() <= 365, "{}", case.extension_total());
    w.done().await;
}

/// A message the bot cannot read: MIME parts nested deeper than it reads.
fn too_deep(from: &str) -> Vec<u8> {
    let mut raw = format!(
        "From: {from}\r\nTo: {TRAFFORD}\r\nSubject: Escalation\r\nMessage-ID: <deep-{}@x>\r\nMIME-Version: 1.0\r\n",
        from.len()
    );
    for d in 0..40 {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{d}\"\r\n\r\n--b{d}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\nName of adult at risk: A Person\r\n");
    raw.into_bytes()
}

#[tokio::test]
async fn an_unreadable_message_is_kept_and_its_known_sender_told_what_to_fix() {
    let w = World::new().await;
    let r = w.send(&too_deep(NIA), "2026-12-23T10:00:00Z").await;
    assert_eq!(
        (r.outcome.as_str(), r.quarantine, r.replies),
        ("refused", true, 1),
        "{:?}",
        r.problems
    );
    let told = w.store.outbox(None).await.expect("outbox").pop().expect("answer");
    assert_eq!(told.email.to, vec![NIA.to_string()]);
    assert!(told.email.text.contains("nested"), "{}", told.email.text);
    // From an organisation the board does not know: kept, but not answered (it may be junk).
    let r = w
        .send(&too_deep("someone@unknown.example"), "2026-12-23T10:05:00Z")
        .await;
    assert_eq!((r.quarantine, r.replies), (true, 0));
    w.done().await;
}
