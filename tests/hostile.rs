//! Hostile input: deep MIME nesting, thousands of parts, multi-megabyte headers, unknown charsets, NUL
//! bytes, CR/LF smuggled through encoded headers, bytes that are not mail at all. Each is answered or
//! ignored, kept, and never crashes the bot or reaches an outgoing header.

mod common;

use common::{at, config, TestDb};
use escalation_bot::mail::pipeline::{Pipeline, Report, Source};
use escalation_bot::store::Store;

const HEAD: &str = "From: Nia Nurse <nia.nurse@nhs.net>\r\nTo: BSAB@bradford.gov.uk\r\nSubject: escalation\r\n";

async fn run(messages: Vec<(&str, Vec<u8>)>) -> Vec<(String, Report)> {
    let c = config();
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2026-12-23T10:00:00Z"))
        .await
        .expect("prepare");
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let mut out = Vec::new();
    for (name, raw) in &messages {
        let source = Source {
            mailbox: format!("hostile/{name}"),
            ..Default::default()
        };
        let report = pipeline
            .process(&store, &source, raw, None, at("2026-12-23T10:00:00Z"), false)
            .await
            .expect("never an error");
        out.push((name.to_string(), report));
    }
    // Every outgoing email's headers and subject are free of CR and LF, and no header was injected.
    for o in store.outbox(None).await.expect("outbox") {
        assert!(
            !o.email.subject.contains(['\r', '\n']),
            "subject: {:?}",
            o.email.subject
        );
        for (k, v) in &o.email.headers {
            assert!(!v.contains(['\r', '\n']) && !k.contains(['\r', '\n']), "{k}: {v:?}");
            assert!(!k.eq_ignore_ascii_case("bcc"), "injected header {k}");
        }
        for addr in o.email.to.iter().chain(o.email.cc.iter()) {
            assert!(!addr.contains(['\r', '\n', ' ', ',']), "address {addr:?}");
        }
    }
    store.close().await;
    db.cleanup().await;
    out
}

fn nested(depth: usize) -> Vec<u8> {
    let mut s = String::from(HEAD);
    s.push_str("Message-ID: <deep@nhs.net>\r\nMIME-Version: 1.0\r\n");
    for i in 0..depth {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    s.push_str("Content-Type: text/plain\r\n\r\nName of adult at risk: Zoë Testperson\r\n");
    for i in (0..depth).rev() {
        s.push_str(&format!("--b{i}--\r\n"));
    }
    s.into_bytes()
}

fn many_parts(n: usize) -> Vec<u8> {
    let mut s = String::from(HEAD);
    s.push_str(
        "Message-ID: <parts@nhs.net>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n\r\n",
    );
    for i in 0..n {
        s.push_str(&format!("--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n"));
    }
    s.push_str("--p--\r\n");
    s.into_bytes()
}

#[tokio::test]
async fn hostile_messages_are_answered_or_ignored_never_fatal() {
    let huge_header = format!(
        "{HEAD}Message-ID: <huge@nhs.net>\r\nX-Junk: {}\r\n\r\nbody\r\n",
        "a".repeat(3 * 1024 * 1024)
    );
    let smuggled = "From: =?utf-8?q?Nia_Nurse=0D=0ABcc:_evil@attacker.example?= <nia.nurse@nhs.net>\r\n\
        To: BSAB@bradford.gov.uk\r\n\
        Subject: =?utf-8?q?escalation=0D=0ABcc:_evil@attacker.example=0D=0A=0D=0Ainjected?=\r\n\
        Message-ID: <smuggle\r\n Bcc: x@y>\r\n\r\nName of adult at risk: Zoë Testperson\r\n";
    let unknown_charset = format!(
        "{HEAD}Message-ID: <klingon@nhs.net>\r\nContent-Type: text/plain; charset=x-klingon-42\r\n\r\nName of adult at risk: Zo\u{eb} Testperson\r\nSummary: tlhIngan\r\n"
    );
    let nul = format!(
        "{HEAD}Message-ID: <nul@nhs.net>\r\nX-Nul: a\0b\r\n\r\nName of adult\0 at risk: Zoë\0\r\nSummary: a\0b\r\n"
    );
    let messages = vec![
        ("deep", nested(60)),
        ("parts", many_parts(5_000)),
        ("huge-header", huge_header.into_bytes()),
        ("smuggled", smuggled.as_bytes().to_vec()),
        ("unknown-charset", unknown_charset.into_bytes()),
        ("nul", nul.into_bytes()),
        (
            "garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("empty", Vec::new()),
    ];
    let reports = run(messages).await;
    let outcome = |name: &str| {
        reports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .expect("report")
    };
    let deep = outcome("deep");
    assert_eq!(deep.outcome, "refused");
    assert!(deep.quarantine, "unreadable mail goes to quarantine");
    assert!(
        !outcome("nul").quarantine,
        "a readable but incomplete form is answered, not quarantined"
    );
    assert!(deep.problems[0].contains("nested"), "{:?}", deep.problems);
    let parts = outcome("parts");
    assert_eq!(parts.outcome, "refused");
    assert!(parts.problems[0].contains("MIME parts"), "{:?}", parts.problems);
    let huge = outcome("huge-header");
    assert_eq!(huge.outcome, "refused");
    assert!(huge.problems[0].contains("headers are larger"), "{:?}", huge.problems);
    // Incomplete forms are answered (refused, with what is missing) whatever their charset or NUL bytes.
    for name in ["smuggled", "unknown-charset", "nul"] {
        let r = outcome(name);
        assert_eq!(r.outcome, "refused", "{name}: {r:?}");
        assert!(r.replies == 1, "{name} is answered");
    }
    for name in ["garbage", "empty"] {
        assert!(
            matches!(outcome(name).outcome.as_str(), "refused" | "ignored"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn every_raw_message_is_kept_even_when_unreadable() {
    let c = config();
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2026-12-23T10:00:00Z"))
        .await
        .expect("prepare");
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let raw = nested(60);
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            &raw,
            None,
            at("2026-12-23T10:00:00Z"),
            false,
        )
        .await
        .expect("ok");
    assert_eq!(r.outcome, "refused");
    let again = pipeline
        .process(
            &store,
            &Source::default(),
            &raw,
            None,
            at("2026-12-23T10:01:00Z"),
            false,
        )
        .await
        .expect("ok");
    assert_eq!(again.outcome, "ignored", "the same bytes are one message");
    let TestDb::Sqlite { path, .. } = &db else {
        unreachable!("a SQLite test")
    };
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("connect");
    let (len, outcome): (i64, String) = sqlx::query_as("SELECT length(raw), outcome FROM inbound")
        .fetch_one(&mut conn)
        .await
        .expect("kept");
    assert_eq!((len as usize, outcome.as_str()), (raw.len(), "refused"));
    store.close().await;
    db.cleanup().await;
}
