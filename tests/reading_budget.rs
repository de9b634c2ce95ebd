//! Each message's reading has a time limit (`[reading] budget_ms`): past it, the message counts as a failed
//! attempt, as an error does (the third quarantines it), nothing waits for the reading left running, and
//! the other messages of its batch are processed as usual. The parsers are linear, so these tests give a
//! limit far below what an ordinary message needs, or a message far larger than any form.

mod common;

use std::time::{Duration, Instant};

use common::{at, config, TestDb};
use escalation_bot::mail::pipeline::{attempt_key, Pipeline, Source, MAX_ATTEMPTS};
use escalation_bot::mail::source::Ack;
use escalation_bot::mail::timebox::Timebox;
use escalation_bot::store::Store;

/// A Bradford escalation as its practitioner sends it.
fn escalation(n: usize) -> Vec<u8> {
    std::fs::read_to_string("tests/fixtures/forms/bradford-plain.eml")
        .expect("fixture")
        .replace(
            "<bradford-plain@fixtures.nhs.net>",
            &format!("<budget-{n}@fixtures.nhs.net>"),
        )
        .into_bytes()
}

/// An email whose HTML part is `mb` megabytes of a table: read in linear time, but not in a millisecond.
fn large(mb: usize) -> Vec<u8> {
    let row = "<tr><td>Summary of the disagreement</td><td>The enquiry was closed &amp; risks remain.</td></tr>";
    let html = format!("<table>{}</table>", row.repeat(mb * 1024 * 1024 / row.len()));
    format!(
        "From: Nia Nurse <nia.nurse@nhs.net>\r\nTo: BSAB@bradford.gov.uk\r\nSubject: Escalation\r\nMessage-ID: <large-{mb}@nhs.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    )
    .into_bytes()
}

/// One test at a time: each keeps the machine's cores busy with readings left running, which would slow
/// the others' readings past their limits.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn source(n: u32) -> Source {
    Source {
        mailbox: "maildir:bradford".into(),
        uidvalidity: None,
        uid: Some(i64::from(n)),
    }
}

#[tokio::test]
async fn a_message_over_the_limit_is_a_failed_attempt_and_the_third_quarantines_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = config();
    let (store, db) = TestDb::sqlite().await;
    let now = at("2026-12-23T10:00:00Z");
    escalation_bot::app::prepare_store(&c, &store, now)
        .await
        .expect("prepare");
    let mut pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    pipeline.timebox = Timebox::new(Duration::from_millis(1), 8);
    let raw = large(4);
    let src = source(1);
    // How long reading it takes, with no limit.
    let started = Instant::now();
    let _ = pipeline.prepare(&raw);
    let reading = started.elapsed();
    for attempt in 1..=MAX_ATTEMPTS {
        let started = Instant::now();
        let report = pipeline
            .process_isolated(&store, &src, &raw, Some("bradford"), now, false)
            .await
            .expect("no error");
        let took = started.elapsed();
        println!("attempt {attempt}: {took:?} (reading it takes {reading:?})");
        if attempt < MAX_ATTEMPTS {
            // Nothing waited for the reading: an attempt takes the limit and its count, not the reading.
            assert!(
                took < reading / 2,
                "attempt {attempt} took {took:?}; reading takes {reading:?}"
            );
            assert!(report.retry && !report.quarantine, "{report:?}");
            assert!(
                report.problems.iter().any(|p| p.contains("took longer than the 1 ms")
                    && p.contains(&format!("attempt {attempt} of {MAX_ATTEMPTS}"))),
                "{:?}",
                report.problems
            );
            assert_eq!(report.ack(), Ack::Retry);
        } else {
            // The third failure quarantines it at once: it is never read a fourth time.
            assert!(report.quarantine, "{report:?}");
            assert_eq!(report.ack(), Ack::Quarantine);
        }
        assert_eq!(
            store.failed_attempts(&attempt_key(&src, &raw)).await.expect("attempts"),
            attempt
        );
    }
    // Kept, marked quarantined, with an audit event; no case opened.
    let kept = store
        .inbound_list(&escalation_bot::store::InboundQuery {
            board: Some("bradford".into()),
            outcomes: Vec::new(),
            since: None,
            limit: 10,
        })
        .await
        .expect("inbound");
    assert!(
        kept.iter().any(|m| m.outcome.as_deref() == Some("quarantined")),
        "{kept:?}"
    );
    assert!(store.outbox(None).await.expect("outbox").is_empty());
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn in_a_batch_only_the_message_over_the_limit_fails() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = config();
    let (store, db) = TestDb::sqlite().await;
    let now = at("2026-12-23T10:00:00Z");
    escalation_bot::app::prepare_store(&c, &store, now)
        .await
        .expect("prepare");
    let mut pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    // A form is read in milliseconds (tens, in a debug build on a busy machine); 20 MB of HTML takes far
    // longer than this limit.
    pipeline.timebox = Timebox::new(Duration::from_millis(1_000), 8);
    let batch = vec![
        (source(1), escalation(1)),
        (source(2), large(20)),
        (source(3), escalation(3)),
    ];
    let started = Instant::now();
    let acks = pipeline.process_batch(&store, "bradford", &batch, now).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(acks, vec![Ack::Done, Ack::Retry, Ack::Done]);
    let key = attempt_key(&batch[1].0, &batch[1].1);
    assert_eq!(store.failed_attempts(&key).await.expect("attempts"), 1);
    assert_eq!(
        store
            .failed_attempts(&attempt_key(&batch[0].0, &batch[0].1))
            .await
            .expect("attempts"),
        0
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn past_the_cap_of_abandoned_readings_a_message_waits_and_is_not_counted() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = config();
    let (store, db) = TestDb::sqlite().await;
    let now = at("2026-12-23T10:00:00Z");
    escalation_bot::app::prepare_store(&c, &store, now)
        .await
        .expect("prepare");
    let mut pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    pipeline.timebox = Timebox::new(Duration::from_millis(1), 1);
    let big = large(20);
    let first = pipeline
        .process_isolated(&store, &source(1), &big, Some("bradford"), now, false)
        .await
        .expect("no error");
    assert!(first.retry, "{first:?}");
    // Its reading still runs on its abandoned thread: the next message is not read now, and that is not
    // held against it.
    assert_eq!(pipeline.timebox.abandoned(), 1);
    let raw = escalation(2);
    let second = pipeline
        .process_isolated(&store, &source(2), &raw, Some("bradford"), now, false)
        .await
        .expect("no error");
    assert!(second.retry && !second.quarantine, "{second:?}");
    assert!(
        second.problems.iter().any(|p| p.contains("not read now")),
        "{:?}",
        second.problems
    );
    assert_eq!(
        store
            .failed_attempts(&attempt_key(&source(2), &raw))
            .await
            .expect("attempts"),
        0
    );
    // Once the abandoned reading has ended, messages are read again.
    let until = Instant::now() + Duration::from_secs(60);
    while pipeline.timebox.abandoned() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pipeline.timebox = Timebox::new(Duration::from_secs(30), 1);
    let third = pipeline
        .process_isolated(&store, &source(2), &raw, Some("bradford"), now, false)
        .await
        .expect("no error");
    assert_eq!(third.outcome, "case_opened", "{third:?}");
    store.close().await;
    db.cleanup().await;
}
