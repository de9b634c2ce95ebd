//! Golden fixtures: every board's form as plain text, as a Word-style HTML table and as
//! multipart/alternative, in several charsets and transfer encodings, each read with LF and with CRLF line
//! endings; and each opens a case through the pipeline. Fixtures: tests/fixtures/forms (generate.py).

mod common;

use std::path::PathBuf;

use common::{at, config, TestDb};
use escalation_bot::mail::pipeline::{fields_json, Pipeline, Source};
use escalation_bot::store::Store;
use serde_json::Value;

fn fixtures() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("tests/fixtures/forms").expect("fixtures folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "eml") {
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).expect("expected json"))
                    .expect("json parses");
            out.push((path, expected));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 15, "five boards, three formats each");
    out
}

fn with_crlf(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    text.replace('\n', "\r\n").into_bytes()
}

#[test]
fn every_form_fixture_reads_the_same_fields_with_lf_and_crlf() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let mut failures = Vec::new();
    for (path, expected) in fixtures() {
        let lf = std::fs::read(&path).expect("read");
        for (endings, raw) in [("LF", lf.clone()), ("CRLF", with_crlf(&lf))] {
            let (_, parsed) = pipeline.read_escalation(&raw).expect("decodes");
            let got = fields_json(&parsed);
            if got != expected["fields"] {
                failures.push(format!(
                    "{} ({endings}):\n  expected {}\n  got      {}",
                    path.display(),
                    expected["fields"],
                    got
                ));
            }
            assert!(parsed.problems.is_empty(), "{}: {:?}", path.display(), parsed.problems);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_form_fixture_opens_a_case_on_its_board() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2026-12-23T10:00:00Z"))
        .await
        .expect("prepare");
    for (path, expected) in fixtures() {
        let raw = std::fs::read(&path).expect("read");
        let source = Source {
            mailbox: "fixtures".into(),
            ..Default::default()
        };
        let report = pipeline
            .process(&store, &source, &raw, None, at("2026-12-23T10:00:00Z"), false)
            .await
            .expect("processes");
        assert_eq!(
            report.outcome,
            "case_opened",
            "{}: {:?}",
            path.display(),
            report.problems
        );
        assert_eq!(
            Some(report.board.as_deref().unwrap_or_default()),
            expected["board"].as_str(),
            "{}",
            path.display()
        );
    }
    let cases = store.list_cases(&Default::default()).await.expect("list");
    assert_eq!(cases.len(), 15);
    // One acknowledgement per case, to the practitioner, copied to the other party: a copy each, each
    // showing both.
    let outbox = store.outbox(None).await.expect("outbox");
    let acks: Vec<_> = outbox.iter().filter(|o| o.email.kind == "acknowledgement").collect();
    assert_eq!(acks.len(), 30);
    assert_eq!(acks.iter().filter(|a| a.email.to == ["nia.nurse@nhs.net"]).count(), 15);
    assert_eq!(
        acks.iter()
            .filter(|a| a.email.to == ["sam.social@westshire.gov.uk"])
            .count(),
        15
    );
    assert!(acks.iter().all(
        |a| a.email.headers.get("To").map(String::as_str) == Some("nia.nurse@nhs.net")
            && a.email.headers.get("Cc").map(String::as_str) == Some("sam.social@westshire.gov.uk")
    ));
    store.close().await;
    db.cleanup().await;
}
