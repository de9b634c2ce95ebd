//! Replies that act on a case, in the formats of the common mail clients (tests/fixtures/replies), and the
//! rules on who may act: the bot's signed Message-ID, a case reference in the subject only from a
//! participant, never from anyone else; auto-replies ignored; the same reply twice has one effect.

mod common;

use common::{at, config, TestDb};
use escalation_bot::config::Config;
use escalation_bot::core::case::CaseStatus;
use escalation_bot::mail::pipeline::{Pipeline, Report, Source};
use escalation_bot::store::{SqliteStore, Store};

struct World {
    config: Config,
    store: SqliteStore,
    db: TestDb,
    reference: String,
    /// The acknowledgement's Message-ID: Nia's copy, and Sam's (each recipient has a copy of its own).
    ack_id: String,
    ack_sam: String,
}

async fn world() -> World {
    world_with(config()).await
}

async fn world_with(config: Config) -> World {
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&config, &store, at("2026-12-23T10:00:00Z"))
        .await
        .expect("prepare");
    let raw = std::fs::read("tests/fixtures/forms/south-gloucestershire-plain.eml").expect("fixture");
    let report = {
        let pipeline = Pipeline::new(&config, b"test-secret".to_vec()).expect("pipeline");
        pipeline
            .process(&store, &source(), &raw, None, at("2026-12-23T10:00:00Z"), false)
            .await
            .expect("processes")
    };
    let reference = report.case.expect("case opened");
    let copy_for = |to: &str| {
        let to = to.to_string();
        let store = &store;
        let reference = reference.clone();
        async move {
            store
                .outbox(Some(&reference))
                .await
                .expect("outbox")
                .into_iter()
                .find(|o| o.email.kind == "acknowledgement" && o.email.to == [to.clone()])
                .expect("acknowledgement queued")
                .email
                .message_id
        }
    };
    let ack_id = copy_for(NIA).await;
    let ack_sam = copy_for(SAM).await;
    World {
        config,
        store,
        db,
        reference,
        ack_id,
        ack_sam,
    }
}

fn source() -> Source {
    Source {
        mailbox: "INBOX".into(),
        ..Default::default()
    }
}

fn fixture(name: &str, w: &World, from: &str) -> Vec<u8> {
    std::fs::read_to_string(format!("tests/fixtures/replies/{name}"))
        .expect("fixture")
        .replace("{{ACK_ID}}", if from == SAM { &w.ack_sam } else { &w.ack_id })
        .replace("{{REF}}", &w.reference)
        .replace("{{FROM}}", from)
        .into_bytes()
}

async fn send(w: &World, raw: &[u8], when: &str) -> Report {
    let pipeline = Pipeline::new(&w.config, b"test-secret".to_vec()).expect("pipeline");
    pipeline
        .process(&w.store, &source(), raw, None, at(when), false)
        .await
        .expect("processes")
}

const NIA: &str = "nia.nurse@nhs.net";
const SAM: &str = "sam.social@westshire.gov.uk";

#[tokio::test]
async fn replies_from_every_common_client_act_on_the_case() {
    let w = world().await;

    let r = send(
        &w,
        &fixture("outlook-mobile-extend.eml", &w, NIA),
        "2026-12-24T09:30:00Z",
    )
    .await;
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("EXTEND")),
        "{:?}",
        r.problems
    );
    assert_eq!(
        r.reply_text.as_deref(),
        Some("EXTEND 2 - senior manager on leave until 30 December")
    );
    let case = w.store.load_case(&w.reference).await.expect("load").expect("case").case;
    assert_eq!(case.extensions[0].working_days, 2);
    assert_eq!(case.extensions[0].reason, "senior manager on leave until 30 December");

    let r = send(&w, &fixture("apple-note.eml", &w, NIA), "2026-12-24T12:00:00Z").await;
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("NOTE")),
        "{:?}",
        r.problems
    );
    assert_eq!(
        r.reply_text.as_deref(),
        Some("Note: spoke to the GP this morning, who shares the concern.")
    );

    let r = send(&w, &fixture("thunderbird-status.eml", &w, NIA), "2026-12-24T12:30:00Z").await;
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("STATUS"))
    );
    assert_eq!(r.replies, 1);
    // The answer lists each command once, its wrapped lines joined to it (not a bullet a line).
    let answer = w
        .store
        .outbox(Some(&w.reference))
        .await
        .expect("outbox")
        .into_iter()
        .rev()
        .find(|o| o.email.to == vec![NIA.to_string()])
        .expect("the answer");
    let html = answer.email.html.clone().unwrap_or_default();
    assert!(
        html.contains("RESOLVED — then the outcome; then \"Actions:\" one a line with who and by when (\"- Sam Smith")
            || html.contains("RESOLVED — then the outcome; then &quot;Actions:&quot; one a line with who and by when (&quot;- Sam Smith"),
        "{html}"
    );
    assert!(!html.contains("<li>           "), "{html}");
    assert!(
        answer
            .email
            .text
            .contains("FORM — the board's record form for this case"),
        "{}",
        answer.email.text
    );

    let r = send(&w, &fixture("gmail-escalate.eml", &w, NIA), "2026-12-24T13:00:00Z").await;
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("ESCALATE")),
        "{:?}",
        r.problems
    );
    let case = w.store.load_case(&w.reference).await.expect("load").expect("case").case;
    assert_eq!(case.stage, 2);
    let lee = case
        .participants
        .iter()
        .find(|p| p.email == "lee.lead@nhs.net")
        .expect("new participant");
    assert_eq!(lee.name.as_deref(), Some("Lee Lead"));

    // The other party resolves it from Outlook, with outcome, actions and review date.
    let r = send(&w, &fixture("outlook-resolved.eml", &w, SAM), "2026-12-24T15:00:00Z").await;
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("RESOLVED")),
        "{:?}",
        r.problems
    );
    let case = w.store.load_case(&w.reference).await.expect("load").expect("case").case;
    assert_eq!(case.status, CaseStatus::Resolved);
    let res = case.resolution.expect("resolution");
    assert_eq!(res.outcome, "The enquiry is reopened and a joint visit is agreed.");
    assert_eq!(
        res.agreed_actions,
        "Joint visit by 8 January; safeguarding plan reviewed."
    );
    assert_eq!(res.review_date.map(|d| d.to_string()).as_deref(), Some("2027-01-15"));

    // Each applied command was confirmed to the sender, copied to the other participants: a copy each,
    // every copy showing the sender in To and the others in Cc.
    let outbox = w.store.outbox(Some(&w.reference)).await.expect("outbox");
    let confirmations: Vec<_> = outbox
        .iter()
        .filter(|o| {
            o.email.kind == "confirmation" && o.email.headers.get("To").is_none_or(|t| *t == o.email.to.join(", "))
        })
        .collect();
    assert_eq!(confirmations.len(), 5, "extend, note, status, escalate, resolve");
    let resolved = confirmations.last().expect("confirmation");
    assert_eq!(resolved.email.to, [SAM]);
    let shown_cc = resolved.email.headers.get("Cc").cloned().unwrap_or_default();
    assert!(
        shown_cc.contains(NIA) && shown_cc.contains("lee.lead@nhs.net"),
        "{shown_cc}"
    );
    assert!(
        outbox
            .iter()
            .any(|o| o.email.kind == "confirmation" && o.email.to == [NIA]),
        "Nia has her own copy"
    );
    assert!(resolved
        .email
        .headers
        .get("In-Reply-To")
        .is_some_and(|h| h.contains("outlook-resolved-1")));
    assert_eq!(
        resolved.email.headers.get("Auto-Submitted").map(String::as_str),
        Some("auto-replied")
    );
    // The case being resolved at stage 2 calls for the referrer to be told (SG policy).
    assert!(outbox
        .iter()
        .any(|o| o.email.kind == "notification" && o.email.to == [NIA]));

    // The same reply again changes nothing.
    let again = send(&w, &fixture("outlook-resolved.eml", &w, SAM), "2026-12-24T15:05:00Z").await;
    assert_eq!(again.outcome, "ignored");
    assert_eq!(
        w.store.outbox(Some(&w.reference)).await.expect("outbox").len(),
        outbox.len()
    );
    w.store.close().await;
    w.db.cleanup().await;
}

#[tokio::test]
async fn auto_replies_are_recorded_and_never_answered() {
    let w = world().await;
    let before = w.store.outbox(None).await.expect("outbox").len();
    let r = send(&w, &fixture("out-of-office.eml", &w, SAM), "2026-12-23T10:00:05Z").await;
    assert_eq!(r.outcome, "ignored");
    assert_eq!(w.store.outbox(None).await.expect("outbox").len(), before);
    let events = w.store.events(None).await.expect("events");
    assert!(events
        .iter()
        .any(|e| e.event.kind == "ignored" && e.event.summary.contains("Auto-Submitted")));
    w.store.close().await;
    w.db.cleanup().await;
}

fn reply(w: &World, from: &str, in_reply_to: Option<&str>, body: &str, id: &str) -> Vec<u8> {
    let mut s = format!(
        "From: {from}\r\nTo: escalations@southglos-sab.invalid\r\nSubject: RE: {} escalation\r\nMessage-ID: <{id}>\r\n",
        w.reference
    );
    if let Some(parent) = in_reply_to {
        s.push_str(&format!("In-Reply-To: <{parent}>\r\n"));
    }
    s.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"));
    s.into_bytes()
}

#[tokio::test]
async fn only_participants_and_board_staff_can_act_and_only_in_reply_to_the_bot() {
    let w = world().await;
    let forged = w.ack_id.replace(&w.reference[w.reference.len() - 4..], "0999");
    // A stranger with a valid token (a forwarded email) cannot act.
    let r = send(
        &w,
        &reply(
            &w,
            "mallory@nhs.net",
            Some(&w.ack_id),
            "WITHDRAW not needed",
            "m1@nhs.net",
        ),
        "2026-12-23T11:00:00Z",
    )
    .await;
    assert_eq!(r.outcome, "refused");
    assert!(r.problems[0].contains("Only the people involved"), "{:?}", r.problems);
    // A stranger quoting the reference in the subject cannot act either.
    let r = send(
        &w,
        &reply(&w, "mallory@nhs.net", None, "WITHDRAW not needed", "m2@nhs.net"),
        "2026-12-23T11:00:00Z",
    )
    .await;
    assert_eq!(r.outcome, "refused");
    // A forged token is no token, and a subject reference proves nothing about the sender: the command is
    // held, and the From address (its real owner) is asked to CONFIRM.
    let r = send(
        &w,
        &reply(&w, SAM, Some(&forged), "NOTE Called Nia back.", "s1@westshire.gov.uk"),
        "2026-12-23T11:00:00Z",
    )
    .await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    // A participant replying to the bot's email sent to them acts at once.
    let r = send(
        &w,
        &reply(
            &w,
            SAM,
            Some(&w.ack_sam),
            "NOTE Called Nia back.",
            "s1b@westshire.gov.uk",
        ),
        "2026-12-23T11:10:00Z",
    )
    .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    // Board staff may act, but a reply to an email the bot sent to someone else proves nothing about them:
    // held until they confirm.
    let r = send(
        &w,
        &reply(
            &w,
            "SGSAB@southglos.gov.uk",
            Some(&w.ack_id),
            "NOTE Logged by the board.",
            "b1@southglos.gov.uk",
        ),
        "2026-12-23T11:30:00Z",
    )
    .await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    let challenge = w
        .store
        .outbox(Some(&w.reference))
        .await
        .expect("outbox")
        .into_iter()
        .rfind(|o| o.email.kind == "challenge")
        .expect("challenge");
    assert_eq!(challenge.email.to.len(), 1);
    assert!(challenge.email.to[0].eq_ignore_ascii_case("SGSAB@southglos.gov.uk"));
    let r = send(
        &w,
        &reply(
            &w,
            "SGSAB@southglos.gov.uk",
            Some(&challenge.email.message_id),
            "CONFIRM",
            "b2@southglos.gov.uk",
        ),
        "2026-12-23T11:40:00Z",
    )
    .await;
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref()),
        ("command_applied", Some("NOTE")),
        "{:?}",
        r.problems
    );
    // An unknown command gets the right form back, and nothing changes.
    let r = send(
        &w,
        &reply(&w, NIA, Some(&w.ack_id), "Please close this one", "n1@nhs.net"),
        "2026-12-23T12:00:00Z",
    )
    .await;
    assert_eq!((r.outcome.as_str(), r.command.as_deref()), ("refused", None));
    let err = w
        .store
        .outbox(Some(&w.reference))
        .await
        .expect("outbox")
        .into_iter()
        .rfind(|o| o.email.kind == "command_error")
        .expect("answer");
    assert!(
        err.email.text.contains("does not start with a command") && err.email.text.contains("RESOLVED —"),
        "{}",
        err.email.text
    );
    let case = w.store.load_case(&w.reference).await.expect("load").expect("case").case;
    assert_eq!(case.status, CaseStatus::Open);
    assert_eq!(case.notes.len(), 2);
    // Every refusal is in the audit log.
    let refused = w
        .store
        .events(None)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event.kind == "refused")
        .count();
    assert_eq!(refused, 3);
    w.store.close().await;
    w.db.cleanup().await;
}

fn with_board(w: &mut World, f: impl Fn(&mut escalation_bot::config::BoardSettings)) {
    let b = w
        .config
        .boards
        .iter_mut()
        .find(|b| b.id() == "south-gloucestershire")
        .expect("board");
    f(&mut b.settings);
}

fn reply_with_headers(w: &World, from: &str, extra: &str, body: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: escalations@southglos-sab.invalid\r\nSubject: RE: {} escalation\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <{}>\r\n{extra}Content-Type: text/plain\r\n\r\n{body}\r\n",
        w.reference, w.ack_id
    )
    .into_bytes()
}

#[tokio::test]
async fn a_dmarc_or_dkim_failure_reported_by_the_trusted_server_blocks_commands() {
    let mut w = world().await;
    with_board(&mut w, |s| s.trusted_authserv_id = Some("mx.southglos.example".into()));
    let fail = "Authentication-Results: mx.southglos.example; dkim=fail header.d=nhs.net; dmarc=fail (p=reject) header.from=nhs.net\r\n";
    let r = send(
        &w,
        &reply_with_headers(&w, NIA, fail, "WITHDRAW sorted", "d1@nhs.net"),
        "2026-12-23T11:00:00Z",
    )
    .await;
    assert_eq!(r.outcome, "refused");
    assert!(r.problems[0].contains("DMARC failed"), "{:?}", r.problems);
    // A failure claimed by some other server is not trusted; a pass from the trusted one is fine.
    let other = "Authentication-Results: evil.example; dmarc=fail\r\nAuthentication-Results: mx.southglos.example; dkim=pass header.d=nhs.net; dmarc=pass\r\n";
    let r = send(
        &w,
        &reply_with_headers(&w, NIA, other, "NOTE all good", "d2@nhs.net"),
        "2026-12-23T11:05:00Z",
    )
    .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    let case = w.store.load_case(&w.reference).await.expect("load").expect("case").case;
    assert_eq!(case.status, CaseStatus::Open, "the failed WITHDRAW did nothing");
    w.store.close().await;
    w.db.cleanup().await;
}

#[tokio::test]
async fn answers_to_one_address_are_capped_per_day() {
    let mut w = world().await;
    // Nia has had the acknowledgement; with a cap of 3 she gets two more answers, then none that day.
    with_board(&mut w, |s| s.reply_cap_per_day = 3);
    for i in 0..4 {
        let r = send(
            &w,
            &reply_with_headers(&w, NIA, "", "please close", &format!("loop{i}@nhs.net")),
            "2026-12-23T12:00:00Z",
        )
        .await;
        assert_eq!(r.outcome, "refused");
    }
    let errors = w
        .store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "command_error")
        .count();
    assert_eq!(errors, 2);
    let suppressed = w
        .store
        .events(None)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event.kind == "reply_suppressed")
        .count();
    assert_eq!(suppressed, 2);
    // A day later she is answered again.
    let r = send(
        &w,
        &reply_with_headers(&w, NIA, "", "please close", "loop9@nhs.net"),
        "2026-12-24T12:00:01Z",
    )
    .await;
    assert_eq!(r.outcome, "refused");
    let errors = w
        .store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "command_error")
        .count();
    assert_eq!(errors, 3);
    w.store.close().await;
    w.db.cleanup().await;
}

#[tokio::test]
async fn a_reply_to_the_plus_addressed_token_finds_its_case_without_thread_headers() {
    let mut config = config();
    for b in &mut config.boards {
        b.settings.reply_to_token = true;
    }
    let w = world_with(config).await;
    let ack = w
        .store
        .outbox(Some(&w.reference))
        .await
        .expect("outbox")
        .into_iter()
        .find(|o| o.email.kind == "acknowledgement")
        .expect("acknowledgement");
    let reply_to = ack.email.headers.get("Reply-To").expect("Reply-To").clone();
    let board_mailbox = &w.config.board("south-gloucestershire").expect("board").settings.mailbox;
    let (local, domain) = board_mailbox.rsplit_once('@').expect("mailbox");
    assert!(
        reply_to.starts_with(&format!("{local}+{}.", w.reference.to_lowercase())) && reply_to.ends_with(domain),
        "{reply_to}"
    );
    // No In-Reply-To, no References, no reference in the subject: only the address replied to.
    let plain = |from: &str, to: &str, body: &str, id: &str| {
        format!(
            "From: {from}\r\nTo: {to}\r\nSubject: Re: our disagreement\r\nMessage-ID: <{id}>\r\n\
             Date: Wed, 23 Dec 2026 11:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        )
        .into_bytes()
    };
    let r = send(
        &w,
        &plain(
            NIA,
            &reply_to.to_uppercase(),
            "NOTE The GP called back.",
            "plus-1@nhs.net",
        ),
        "2026-12-23T11:00:00Z",
    )
    .await;
    // The token finds the case, but proves nothing about the sender (every recipient shares it): the
    // command is held for a CONFIRM from the From address.
    assert_eq!(
        (r.outcome.as_str(), r.command.as_deref(), r.case.as_deref()),
        ("held", Some("NOTE"), Some(w.reference.as_str())),
        "{:?}",
        r.problems
    );
    // The token proves the case, not the sender: a stranger writing to it cannot act.
    let r = send(
        &w,
        &plain("mallory@nhs.net", &reply_to, "WITHDRAW", "plus-2@nhs.net"),
        "2026-12-23T11:05:00Z",
    )
    .await;
    assert_eq!(r.outcome, "refused", "{:?}", r.problems);
    // A token made up for another case is no token: not matched, not acted on.
    let other = format!("{}9999", &w.reference[..w.reference.len() - 4]).to_lowercase();
    let forged = reply_to.replace(&w.reference.to_lowercase(), &other);
    let r = send(
        &w,
        &plain(NIA, &forged, "WITHDRAW", "plus-3@nhs.net"),
        "2026-12-23T11:10:00Z",
    )
    .await;
    assert_ne!(r.outcome, "command_applied");
    assert!(r.case.as_deref() != Some(other.to_uppercase().as_str()));
    let case = w.store.load_case(&w.reference).await.expect("load").expect("case").case;
    assert_eq!(case.status, CaseStatus::Open, "nobody but a participant withdrew it");
    w.store.close().await;
    w.db.cleanup().await;
}
