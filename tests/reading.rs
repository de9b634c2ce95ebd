//! Reading people as they write (issue 22), through the real pipeline and a real SQLite store: a record
//! opens when a careful reader could see the four essentials, the acknowledgement says what was read and
//! asks for the rest, an incomplete record gets its form back filled in, a reply that completes it opens
//! the case from both emails with the clock from the first, and the other party's address is found in
//! the email's own Cc.

mod common;

use common::{at, config, TestDb};
use escalation_bot::mail::pipeline::{Pipeline, Source};
use escalation_bot::store::Store;

fn email(from: &str, to: &str, cc: Option<&str>, id: &str, extra: &str, body: &str) -> Vec<u8> {
    let cc = cc.map(|c| format!("Cc: {c}\r\n")).unwrap_or_default();
    format!(
        "From: {from}\r\nTo: {to}\r\n{cc}Subject: Escalation\r\nMessage-ID: <{id}>\r\n{extra}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_record_with_the_essentials_opens_and_its_acknowledgement_says_what_was_read_and_asks_for_the_rest() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    // Written from memory, labels of its own; the other party's address only in the Cc.
    let raw = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@rotherham-sab.invalid",
        Some("Mark Ellison <mark.ellison@rotherham.gov.uk>"),
        "memory-1@nhs.net",
        "",
        "Hi,\n\nPerson at risk: Alan Testperson\nRaised with: Mark Ellison, Team Manager, Rotherham MBC\n\
         What it's about: the enquiry was closed after one visit although the bruising is unexplained.\n\n\
         Thanks\nNia",
    );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &raw,
            None,
            at("2027-01-04T10:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    assert_eq!(r.outcome, "case_opened", "{:?}", r.problems);
    assert_eq!(r.fields["other_email"], "mark.ellison@rotherham.gov.uk", "{}", r.fields);
    assert_eq!(r.fields["other_agency"], "Rotherham MBC", "{}", r.fields);
    let acks: Vec<_> = store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "acknowledgement")
        .collect();
    assert!(
        acks.iter()
            .any(|a| a.email.to == ["mark.ellison@rotherham.gov.uk".to_string()]),
        "the other party, found in the Cc, is copied in"
    );
    let text = &acks[0].email.text;
    for said in [
        "We recorded:",
        "The adult: Alan Testperson",
        "The disagreement is with: Mark Ellison, Rotherham MBC (mark.ellison@rotherham.gov.uk)",
        "Immediate risk to the adult: not stated",
        "What it is about: the enquiry was closed after one visit",
        "If any of this is wrong, reply UPDATE",
        "The form also asks for these",
    ] {
        assert!(text.contains(said), "{said:?} in:\n{text}");
    }
    assert!(!text.contains("Thanks\nNia"), "no sign-off read as the summary");
    let own = acks
        .iter()
        .find(|a| a.email.to == ["nia.nurse@nhs.net".to_string()])
        .expect("the sender's copy");
    assert!(
        own.email.attachments.iter().any(|a| a.filename.ends_with(".docx")),
        "the sender's copy has the record so far, to complete"
    );
    let documents = acks.iter().filter(|a| !a.email.attachments.is_empty()).count();
    assert_eq!(documents, 1, "one Word document per case, in the sender's copy");
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn an_incomplete_record_gets_its_form_back_filled_in_and_a_reply_completing_it_opens_the_case_from_the_first() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    // No adult named.
    let first = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "first-1@nhs.net",
        "",
        "Disagreement with: Sam Social, Westshire Council, sam.social@westshire.gov.uk\n\
         Summary: The discharge went ahead without a care package.",
    );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &first,
            None,
            at("2027-01-04T10:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    assert_eq!(r.outcome, "refused");
    assert!(
        r.problems.iter().any(|p| p.contains("who the adult at risk is")),
        "{:?}",
        r.problems
    );
    let refusal = store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .find(|o| o.email.kind == "refusal")
        .expect("answered");
    assert!(
        refusal.email.text.contains("Sam Social") && refusal.email.text.contains("without a care package"),
        "the form comes back with what was read:\n{}",
        refusal.email.text
    );
    // The reply names the adult only; both emails together open the case, dated from the first.
    let reply = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "second-1@nhs.net",
        &format!("In-Reply-To: <{0}>\r\nReferences: <{0}>\r\n", refusal.email.message_id),
        "Name of adult at risk: Alan Testperson\n\n> Dear Nia Nurse,\n> It could not be recorded",
    );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &reply,
            None,
            at("2027-01-06T15:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    assert_eq!(r.outcome, "case_opened", "{:?}", r.problems);
    let reference = r.case.expect("a case");
    let stored = store.load_case(&reference).await.expect("load").expect("case");
    assert_eq!(stored.case.record.adult_name.as_deref(), Some("Alan Testperson"));
    assert_eq!(
        stored.case.record.other_email.as_deref(),
        Some("sam.social@westshire.gov.uk")
    );
    assert_eq!(
        stored.case.opened_at,
        at("2027-01-04T10:00:00Z"),
        "the clock starts from the first"
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_record_written_as_one_paragraph_opens() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    let raw = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "prose-1@nhs.net",
        "",
        "Hello,\n\nI am writing about my patient Mrs Doreen Testperson (NHS 999\u{202f}000\u{202f}0018). \
         I have a disagreement with Kelly Dunne, Team Manager at Trafford Council Adult Social Care \
         (kelly.dunne@trafford.gov.uk) about the decision to close the safeguarding enquiry after one visit. \
         Doreen has told me she wants help with her money. I don't think she is at immediate risk today.\n\n\
         Kind regards\nNia Nurse\nDistrict Nurse | Northfield NHS Trust | 01632 960001",
    );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &raw,
            None,
            at("2027-01-04T10:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    assert_eq!(r.outcome, "case_opened", "{:?}", r.problems);
    let f = &r.fields;
    assert_eq!(f["adult_name"], "Doreen Testperson", "{f}");
    assert_eq!(f["nhs_number"], "9990000018", "{f}");
    assert_eq!(f["other_name"], "Kelly Dunne", "{f}");
    assert_eq!(f["other_agency"], "Trafford Council Adult Social Care", "{f}");
    assert_eq!(f["other_email"], "kelly.dunne@trafford.gov.uk", "{f}");
    assert_eq!(f["immediate_risk"], false, "{f}");
    assert!(
        !f["summary"].as_str().unwrap_or_default().contains("Kind regards"),
        "{f}"
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn an_update_giving_the_other_partys_address_brings_them_in_with_the_acknowledgement() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    let raw = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "no-address-1@nhs.net",
        "",
        "Name of adult at risk: Alan Testperson\nDisagreement with: Sam Social, Westshire Council\n\
         Summary: The discharge went ahead without a care package.",
    );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &raw,
            None,
            at("2027-01-04T10:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    assert_eq!(r.outcome, "case_opened", "{:?}", r.problems);
    let ack = store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .find(|o| o.email.kind == "acknowledgement" && o.email.to == ["nia.nurse@nhs.net".to_string()])
        .expect("the referrer's acknowledgement");
    assert!(ack.email.text.contains("no email address given"), "{}", ack.email.text);
    let update = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "update-1@nhs.net",
        &format!("In-Reply-To: <{0}>\r\nReferences: <{0}>\r\n", ack.email.message_id),
        "UPDATE\nTheir email: sam.social@westshire.gov.uk\n\nThanks\nNia",
    );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &update,
            None,
            at("2027-01-04T11:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    assert_eq!(r.outcome, "command_applied", "{:?}", r.problems);
    let reference = r.case.expect("the case");
    let stored = store.load_case(&reference).await.expect("load").expect("case");
    assert_eq!(
        stored.case.other_party().map(|p| p.email.as_str()),
        Some("sam.social@westshire.gov.uk")
    );
    let to_sam: Vec<_> = store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "acknowledgement" && o.email.to == ["sam.social@westshire.gov.uk".to_string()])
        .collect();
    assert_eq!(to_sam.len(), 1, "the other party gets the acknowledgement once");
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn an_update_never_replaces_the_other_party_and_a_refusal_is_completed_once() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    let outbox = || async { store.outbox(None).await.expect("outbox") };
    // A case whose other party has an address: an UPDATE naming another address changes no one.
    let raw = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "with-address-1@nhs.net",
        "",
        "Name of adult at risk: Alan Testperson\nDisagreement with: Sam Social, Westshire Council, sam.social@westshire.gov.uk\n\
         Summary: The discharge went ahead without a care package.",
    );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &raw,
            None,
            at("2027-01-04T10:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    let reference = r.case.expect("opens");
    let ack = outbox()
        .await
        .into_iter()
        .find(|o| o.email.kind == "acknowledgement" && o.email.to == ["nia.nurse@nhs.net".to_string()])
        .expect("ack");
    let update = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "update-2@nhs.net",
        &format!("In-Reply-To: <{0}>\r\nReferences: <{0}>\r\n", ack.email.message_id),
        "UPDATE\nTheir email: someone.else@elsewhere.gov.uk",
    );
    pipeline
        .process(
            &store,
            &Source::default(),
            &update,
            None,
            at("2027-01-04T11:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    let stored = store.load_case(&reference).await.expect("load").expect("case");
    assert!(
        stored.case.is_participant("sam.social@westshire.gov.uk"),
        "the other party stays"
    );
    assert!(
        !stored.case.is_participant("someone.else@elsewhere.gov.uk"),
        "no one is brought in by UPDATE"
    );
    // A refused record completed by a reply opens one case; a second reply to the same refusal opens none.
    let first = email(
        "Nia Nurse <nia.nurse@nhs.net>",
        "escalations@trafford-ssp.invalid",
        None,
        "first-2@nhs.net",
        "",
        "Disagreement with: Sam Social, Westshire Council, sam.social@westshire.gov.uk\n\
         Summary: Another discharge went ahead without a care package.",
    );
    pipeline
        .process(
            &store,
            &Source::default(),
            &first,
            None,
            at("2027-01-05T10:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    let refusal = outbox()
        .await
        .into_iter()
        .find(|o| o.email.kind == "refusal")
        .expect("refused");
    let mut opened = 0;
    for (n, at_) in [(1, "2027-01-05T11:00:00Z"), (2, "2027-01-05T12:00:00Z")] {
        let reply = email(
            "Nia Nurse <nia.nurse@nhs.net>",
            "escalations@trafford-ssp.invalid",
            None,
            &format!("completion-{n}@nhs.net"),
            &format!("In-Reply-To: <{0}>\r\nReferences: <{0}>\r\n", refusal.email.message_id),
            "Name of adult at risk: Beryl Testperson",
        );
        let r = pipeline
            .process(&store, &Source::default(), &reply, None, at(at_), false)
            .await
            .expect("processes");
        if r.outcome == "case_opened" {
            opened += 1;
            let stored = store
                .load_case(r.case.as_deref().unwrap_or_default())
                .await
                .expect("load")
                .expect("case");
            assert!(stored
                .case
                .record
                .summary
                .unwrap_or_default()
                .contains("Another discharge"));
        }
    }
    assert_eq!(opened, 1, "the first reply completes it; the second finds it completed");
    store.close().await;
    db.cleanup().await;
}
