//! Nothing sent is lost: the sender against a real SMTP server (aiosmtpd, delivering into Dovecot over
//! LMTP) that refuses as real relays do. A relay answering 535 (a wrong password) for an hour loses nothing
//! and sends nothing twice; one refused recipient fails only that recipient; an email the server fails for
//! the whole retry period is given up, listed, and sent again on `outbox retry`.

mod common;

use std::path::PathBuf;

use common::mailserver::MailServers;
use common::{at, TestDb};
use escalation_bot::app::Clock;
use escalation_bot::mail::send::{send_due, Health, SmtpSettings, Transport};
use escalation_bot::store::{OutboundEmail, Store};

fn email(n: usize, to: &[&str], cc: &[&str]) -> OutboundEmail {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("From".to_string(), "BSAB <BSAB@bradford.gov.uk>".to_string());
    headers.insert("Auto-Submitted".to_string(), "auto-generated".to_string());
    OutboundEmail {
        message_id: format!("esc.BRAD-2027-0001.delivery-{n}.0123456789@bradford.gov.uk"),
        board_id: "bradford".into(),
        case_reference: None,
        kind: "notification".into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        cc: cc.iter().map(|s| s.to_string()).collect(),
        subject: format!("BRAD-2027-0001: delivery test {n}"),
        text: format!("Delivery test {n}."),
        html: None,
        headers,
        hold: None,
        attachments: Vec::new(),
    }
}

fn smtp(servers: &MailServers, give_up_after_hours: u64) -> Transport {
    Transport::smtp(&SmtpSettings {
        host: "127.0.0.1".into(),
        port: servers.smtp_port,
        tls: "none".into(),
        username: None,
        password: None,
        auth: "password".into(),
        oauth2: None,
        timeout_seconds: 5,
        give_up_after_hours,
    })
    .expect("transport")
}

/// The test SMTP server's control folder: while `refuse-mail-from` is there, it answers MAIL FROM with it.
fn refusal_file(servers: &MailServers) -> PathBuf {
    std::env::temp_dir()
        .join(format!("escbot-smtp-{}", servers.smtp_port))
        .join("refuse-mail-from")
}

async fn deliver_at<S: Store>(store: &S, transport: &Transport, health: &mut Health, when: &str) -> usize {
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    send_due(store, transport, &Clock::starting_at(at(when)), health, &stop)
        .await
        .expect("send_due")
}

#[tokio::test]
async fn a_relay_refusing_with_535_for_an_hour_loses_nothing_and_sends_nothing_twice() {
    let servers = MailServers::start();
    let (store, db) = TestDb::sqlite().await;
    store.migrate().await.expect("migrate");
    let transport = smtp(&servers, 168);
    let refuse = refusal_file(&servers);
    std::fs::write(&refuse, "535 5.7.8 Authentication credentials invalid\n").expect("control file");
    let t0 = at("2027-01-04T09:00:00Z");
    let emails: Vec<OutboundEmail> = (0..3).map(|n| email(n, &["nia.nurse@nhs.net"], &[])).collect();
    store.enqueue(&emails, t0).await.expect("enqueue");
    let mut health = Health::default();
    // For an hour, every try is refused: nothing sent, nothing given up, the sender paused in between.
    for when in [
        "2027-01-04T09:00:00Z",
        "2027-01-04T09:00:30Z",
        "2027-01-04T09:10:00Z",
        "2027-01-04T09:30:00Z",
        "2027-01-04T09:59:00Z",
    ] {
        assert_eq!(deliver_at(&store, &transport, &mut health, when).await, 0);
        assert!(health.down_since.is_some(), "the outage is noticed");
        let out = store.outbox(None).await.expect("outbox");
        assert!(
            out.iter().all(|o| o.sent_at.is_none() && o.failed_at.is_none()),
            "{out:?}"
        );
    }
    assert!(
        health.last_error.as_deref().is_some_and(|e| e.contains("535")),
        "{health:?}"
    );
    // While paused, not even a try.
    let tries: i64 = store
        .outbox(None)
        .await
        .expect("outbox")
        .iter()
        .map(|o| o.attempts)
        .sum();
    assert!(
        tries <= 5,
        "one email tried per round while the server fails, not every email: {tries}"
    );
    // The password is put right: at the next try (backoff is at most 30 minutes), everything goes, once.
    std::fs::remove_file(&refuse).expect("remove control file");
    assert_eq!(
        deliver_at(&store, &transport, &mut health, "2027-01-04T10:30:00Z").await,
        3
    );
    assert_eq!(health.down_since, None);
    assert_eq!(
        deliver_at(&store, &transport, &mut health, "2027-01-04T11:30:00Z").await,
        0
    );
    let out = store.outbox(None).await.expect("outbox");
    assert!(out.iter().all(|o| o.sent_at.is_some()), "{out:?}");
    assert_eq!(servers.count("nia.nurse", "INBOX").await, 3, "each email arrived once");
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn one_refused_recipient_fails_only_that_recipient() {
    let servers = MailServers::start();
    let (store, db) = TestDb::sqlite().await;
    store.migrate().await.expect("migrate");
    let transport = smtp(&servers, 168);
    let e = email(
        10,
        &["nia.nurse@nhs.net"],
        &["nobody.here@nhs.net", "sam.social@westshire.gov.uk"],
    );
    store
        .enqueue(std::slice::from_ref(&e), at("2027-01-04T09:00:00Z"))
        .await
        .expect("enqueue");
    let mut health = Health::default();
    assert_eq!(
        deliver_at(&store, &transport, &mut health, "2027-01-04T09:00:00Z").await,
        1
    );
    let rec = store.outbox(None).await.expect("outbox").pop().expect("row");
    assert!(rec.sent_at.is_some());
    assert_eq!(
        rec.delivered_to,
        vec!["nia.nurse@nhs.net", "sam.social@westshire.gov.uk"]
    );
    assert_eq!(rec.refused.len(), 1);
    assert_eq!(rec.refused[0].address, "nobody.here@nhs.net");
    assert!(rec.refused[0].error.contains("5.1.1"), "{:?}", rec.refused);
    assert_eq!(servers.count("nia.nurse", "INBOX").await, 1);
    assert_eq!(servers.count("sam.social", "INBOX").await, 1);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn an_email_the_server_fails_for_the_whole_retry_period_is_given_up_then_retried_on_request() {
    let servers = MailServers::start();
    let (store, db) = TestDb::sqlite().await;
    store.migrate().await.expect("migrate");
    let transport = smtp(&servers, 1);
    let refuse = refusal_file(&servers);
    std::fs::write(&refuse, "451 4.3.0 Temporary relay failure\n").expect("control file");
    store
        .enqueue(&[email(20, &["nia.nurse@nhs.net"], &[])], at("2027-01-04T09:00:00Z"))
        .await
        .expect("enqueue");
    let mut health = Health::default();
    deliver_at(&store, &transport, &mut health, "2027-01-04T09:00:00Z").await;
    deliver_at(&store, &transport, &mut health, "2027-01-04T10:05:00Z").await;
    let rec = store.outbox(None).await.expect("outbox").pop().expect("row");
    assert!(
        rec.failed_at.is_some() && rec.sent_at.is_none(),
        "given up after the period: {rec:?}"
    );
    std::fs::remove_file(&refuse).expect("remove control file");
    assert_eq!(
        store
            .outbox_retry(None, at("2027-01-04T11:00:00Z"))
            .await
            .expect("retry"),
        1
    );
    assert_eq!(
        deliver_at(&store, &transport, &mut health, "2027-01-04T11:00:00Z").await,
        1
    );
    assert_eq!(servers.count("nia.nurse", "INBOX").await, 1);
    store.close().await;
    db.cleanup().await;
}

/// The board's form travels intact: an email carrying a Word document, sent through the real SMTP server
/// into Dovecot, arrives as multipart/mixed with the document byte for byte, and reads back as the form.
#[tokio::test]
async fn a_record_document_arrives_attached_byte_for_byte() {
    let servers = MailServers::start();
    let (store, db) = TestDb::sqlite().await;
    store.migrate().await.expect("migrate");
    let transport = smtp(&servers, 168);
    let form = std::fs::read("tests/fixtures/docx/bradford-word365.docx").expect("fixture");
    let mut e = email(20, &["nia.nurse@nhs.net"], &[]);
    e.html = Some("<html><body><p>The record so far.</p></body></html>".into());
    e.attachments = vec![escalation_bot::store::Attachment::new(
        "BRAD-2027-0001 Record of Escalation.docx",
        escalation_bot::mail::docx::DOCX_TYPE,
        &form,
    )];
    store
        .enqueue(std::slice::from_ref(&e), at("2027-01-04T09:00:00Z"))
        .await
        .expect("enqueue");
    let mut health = Health::default();
    assert_eq!(
        deliver_at(&store, &transport, &mut health, "2027-01-04T09:00:00Z").await,
        1
    );
    let received = servers.messages("nia.nurse", "INBOX").await;
    assert_eq!(received.len(), 1);
    let msg = escalation_bot::mail::mime::decode(&received[0], &Default::default()).expect("decodes");
    assert!(msg.text.as_deref().is_some_and(|t| t.contains("Delivery test 20")));
    assert!(msg.html.as_deref().is_some_and(|h| h.contains("The record so far")));
    assert_eq!(msg.documents.len(), 1, "the document is attached");
    assert_eq!(msg.documents[0].filename, "BRAD-2027-0001 Record of Escalation.docx");
    assert_eq!(msg.documents[0].bytes, form, "byte for byte");
    let text = escalation_bot::mail::docx::read_text(&msg.documents[0].bytes, &|_| false).expect("reads");
    assert!(text.contains("Name of adult at risk"), "{text}");
    store.close().await;
    db.cleanup().await;
}
