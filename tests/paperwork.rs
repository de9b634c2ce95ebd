//! The boards' own forms: filled in from the case as Word documents and HTML, carried with the case to
//! the people and roles each policy names, blank where personal data must not go, and read back from a
//! practitioner's reply.

mod common;

use std::path::Path;

use escalation_bot::core::intake::Labels;
use escalation_bot::mail::docx;
use serde_json::Value;

use common::config;

fn tidy(s: &str) -> String {
    s.replace(['\u{2019}', '\u{2018}'], "'")
        .replace(['\u{201c}', '\u{201d}'], "\"")
        .replace(['\u{2013}', '\u{2014}'], "-")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Word documents filled in the way Word 2010–365, Word for Mac and LibreOffice save them (written by a
/// helper who had not seen the reader): each is read as its board's form.
#[test]
fn filled_in_word_documents_from_real_word_processors_are_read() {
    let c = config();
    let mut misses = Vec::new();
    let mut n = 0;
    let dir = Path::new("tests/fixtures/docx");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "docx"))
        .collect();
    files.sort();
    for path in files {
        n += 1;
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(path.with_extension("json")).expect("json beside the document"),
        )
        .expect("json");
        let board = c.board(expected["board"].as_str().unwrap_or_default()).expect("board");
        let labels = Labels::new([board.policy()]);
        let parsed = match docx::read_record(&std::fs::read(&path).expect("read"), &labels) {
            Ok(p) => p,
            Err(e) => {
                misses.push(format!("{name}: not read: {}", e.0));
                continue;
            }
        };
        let expect = expected["expect"].as_object().cloned().unwrap_or_default();
        if expect.is_empty() && parsed.fields_found >= 3 {
            misses.push(format!(
                "{name}: a letter read as a form with {} fields",
                parsed.fields_found
            ));
        }
        for (key, phrase) in &expect {
            let mut got = parsed.record.get(key).unwrap_or_default();
            let want = phrase.as_str().unwrap_or_default();
            if key == "nhs_number" {
                // Read as written; the case keeps its ten digits.
                got.retain(|c| c.is_ascii_digit());
            }
            if !tidy(&got).contains(&tidy(want)) {
                misses.push(format!("{name}: {key} = {got:?}, expected to contain {want:?}"));
            }
        }
        let all = tidy(&serde_json::to_string(&parsed.record).unwrap_or_default());
        for bad in expected["must_not_contain"].as_array().into_iter().flatten() {
            let bad = tidy(bad.as_str().unwrap_or_default());
            if !bad.is_empty() && all.contains(&bad) {
                misses.push(format!("{name}: read {bad:?}, which Word does not show"));
            }
        }
    }
    println!("{n} documents, {} misses", misses.len());
    assert!(n >= 8, "the corpus is there");
    assert!(misses.is_empty(), "{} misses:\n{}", misses.len(), misses.join("\n"));
}
