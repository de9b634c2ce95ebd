//! Who may open a case: care providers and voluntary organisations are partners in every seed, so a record
//! from a domain the board does not know is held for its staff's approval, not refused. Staff reply APPROVE
//! (the case opens, and the domain is trusted from then on) or REJECT (the sender is told why), in reply to
//! the bot's request sent to them; nobody else can decide.

mod common;

use common::{at, config, TestDb};
use escalation_bot::config::Config;
use escalation_bot::mail::pipeline::{Pipeline, Report, Source};
use escalation_bot::store::{OutboxRecord, SqliteStore, Store};

const TRAFFORD: &str = "escalations@trafford-ssp.invalid";
const STAFF: &str = "TSSP@trafford.gov.uk";

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
            .process_isolated(&self.store, &Source::default(), raw, None, at(when), false)
            .await
            .expect("processes")
    }

    async fn emails(&self, kind: &str) -> Vec<OutboxRecord> {
        self.store
            .outbox(None)
            .await
            .expect("outbox")
            .into_iter()
            .filter(|o| o.email.kind == kind)
            .collect()
    }
}

/// Trafford's record, sent by someone at a care provider the board does not know yet.
fn record_from(address: &str, id: &str) -> Vec<u8> {
    std::fs::read_to_string("tests/fixtures/forms/trafford-plain.eml")
        .expect("fixture")
        .replace("nia.nurse@nhs.net", address)
        .replace("Nia Nurse", "Jo Bloggs")
        .replace("<trafford-plain@fixtures.nhs.net>", &format!("<{id}>"))
        .into_bytes()
}

fn reply(from: &str, in_reply_to: &str, body: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {TRAFFORD}\r\nSubject: RE: approval\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <{in_reply_to}>\r\n\
         References: <{in_reply_to}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_record_from_an_unknown_organisation_is_held_then_approved_by_board_staff() {
    let w = World::new().await;
    let r = w
        .send(
            &record_from("jo.bloggs@sunrise-care.co.uk", "care-1@sunrise-care.co.uk"),
            "2026-12-23T10:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held", "{:?}", r.problems);
    assert_eq!(r.case, None, "no case yet");
    assert!(w.store.list_cases(&Default::default()).await.expect("cases").is_empty());
    let request = w.emails("approval_request").await.pop().expect("request to staff");
    assert!(request.email.to[0].eq_ignore_ascii_case(STAFF));
    assert!(
        request.email.subject.contains("sunrise-care.co.uk"),
        "{}",
        request.email.subject
    );
    assert!(
        !request.email.text.contains("Zoë"),
        "no adult's name unless the board turns it on"
    );
    let notice = w.emails("held_for_approval").await.pop().expect("sender told");
    assert_eq!(notice.email.to, vec!["jo.bloggs@sunrise-care.co.uk".to_string()]);
    assert!(notice.email.text.contains("business team"), "{}", notice.email.text);

    // Someone who is not board staff cannot approve, even in reply to the request.
    let r = w
        .send(
            &reply(
                "sam.social@westshire.gov.uk",
                &request.email.message_id,
                "APPROVE",
                "x-1@westshire.gov.uk",
            ),
            "2026-12-23T10:10:00Z",
        )
        .await;
    assert_eq!(r.outcome, "refused", "{:?}", r.problems);
    assert!(w.store.list_cases(&Default::default()).await.expect("cases").is_empty());

    // Staff approve: the case opens with the care provider's worker as referrer, who gets the
    // acknowledgement; staff get a confirmation.
    let r = w
        .send(
            &reply(
                STAFF,
                &request.email.message_id,
                "APPROVE\n\nThanks, Sunrise Care are a commissioned provider.",
                "s-1@trafford.gov.uk",
            ),
            "2026-12-23T11:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    let reference = r.case.expect("case opened");
    let case = w.store.load_case(&reference).await.expect("load").expect("case").case;
    assert_eq!(
        case.record.escalating_email.as_deref(),
        Some("jo.bloggs@sunrise-care.co.uk")
    );
    let acks = w.emails("acknowledgement").await;
    assert!(
        acks.iter()
            .any(|a| a.email.to == vec!["jo.bloggs@sunrise-care.co.uk".to_string()]),
        "the acknowledgement goes to the care provider's worker"
    );
    // Approving twice does nothing more.
    let r = w
        .send(
            &reply(STAFF, &request.email.message_id, "APPROVE", "s-2@trafford.gov.uk"),
            "2026-12-23T11:05:00Z",
        )
        .await;
    assert_eq!(r.outcome, "refused");
    assert_eq!(w.store.list_cases(&Default::default()).await.expect("cases").len(), 1);
    // The domain is remembered: its next record opens a case at once.
    let r = w
        .send(
            &record_from("al.other@sunrise-care.co.uk", "care-2@sunrise-care.co.uk"),
            "2026-12-24T10:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "case_opened", "{:?}", r.problems);
    w.store.close().await;
    w.db.cleanup().await;
}

#[tokio::test]
async fn a_rejected_record_is_not_opened_and_its_sender_is_told_why() {
    let w = World::new().await;
    let r = w
        .send(
            &record_from("info@unknown-charity.org.uk", "charity-1@unknown-charity.org.uk"),
            "2026-12-23T10:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held");
    let request = w.emails("approval_request").await.pop().expect("request");
    let r = w
        .send(
            &reply(
                STAFF,
                &request.email.message_id,
                "REJECT\nThis organisation is not a partner of the board; please raise it through your commissioner.",
                "s-3@trafford.gov.uk",
            ),
            "2026-12-23T12:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    assert!(w.store.list_cases(&Default::default()).await.expect("cases").is_empty());
    let told = w
        .emails("refusal")
        .await
        .into_iter()
        .find(|o| o.email.to == vec!["info@unknown-charity.org.uk".to_string()])
        .expect("sender told");
    assert!(
        told.email.text.contains("not a partner of the board"),
        "{}",
        told.email.text
    );
    // Board staff are told it is done, under a subject that says what (there is no case to name).
    let done = w
        .store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .find(|o| o.email.to.iter().any(|t| t.eq_ignore_ascii_case(STAFF)) && o.email.subject.contains("Rejected"))
        .unwrap_or_else(|| panic!("staff told"));
    assert_eq!(
        done.email.subject,
        "Rejected: the record from info@unknown-charity.org.uk"
    );
    assert!(!done.email.text.contains("Case  ("), "{}", done.email.text);
    // Not trusted: the next record is held again.
    let r = w
        .send(
            &record_from("info@unknown-charity.org.uk", "charity-2@unknown-charity.org.uk"),
            "2026-12-24T10:00:00Z",
        )
        .await;
    assert_eq!(r.outcome, "held");
    w.store.close().await;
    w.db.cleanup().await;
}

#[tokio::test]
async fn a_request_to_approve_for_a_staff_role_whose_address_is_a_placeholder_is_held_not_sent() {
    // Buckinghamshire's business manager address is still the shipped placeholder.
    let w = World::new().await;
    let raw = std::fs::read_to_string("tests/fixtures/forms/buckinghamshire-plain.eml")
        .expect("fixture")
        .replace("nia.nurse@nhs.net", "jo.bloggs@carehome-example.co.uk")
        .into_bytes();
    let r = w.send(&raw, "2026-12-23T10:00:00Z").await;
    assert_eq!(r.outcome, "held", "{r:?}");
    let requests = w.emails("approval_request").await;
    assert_eq!(requests.len(), 1);
    let hold = requests[0].email.hold.as_ref().expect("held for the placeholder");
    assert_eq!(hold.role, "business-manager");
    assert!(hold.reason.contains("placeholder"), "{}", hold.reason);
    assert!(
        w.store
            .claim_outbox(at("2026-12-23T10:01:00Z"), 100, 1000)
            .await
            .expect("claim")
            .iter()
            .all(|o| o.email.kind != "approval_request"),
        "never sent to .invalid"
    );
    w.db.cleanup().await;
}
