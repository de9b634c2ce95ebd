//! The blind corpora (tests/corpus): escalation records written on each board's own seed form the ways
//! busy practitioners fill them in, and replies as real mail clients write them, in several languages,
//! each with its expected fields in JSON beside it. They were written by someone who had not seen the
//! parser; see each folder's README.md. Every expectation is checked, and every miss reported at once.

mod common;

use std::path::{Path, PathBuf};

use common::{at, config, TestDb};
use escalation_bot::core::case::Person;
use escalation_bot::core::lifecycle::{self, Command};

const SAM: &str = "sam.social@westshire.gov.uk";
use escalation_bot::core::reply::ReplyCommand;
use escalation_bot::mail::mime::{decode, Limits};
use escalation_bot::mail::pipeline::{fields_json, Pipeline, Source};
use escalation_bot::store::Store;
use serde_json::Value;

fn pairs(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("corpus folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                let json = std::fs::read_to_string(path.with_extension("json")).expect("expectations beside the email");
                out.push((path, serde_json::from_str(&json).expect("expectations parse")));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn tidy(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn with_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Every record under `dir` read as its writer meant, each file as written and with CRLF line endings, and
/// processed into its expected outcome (a case opened on its board, or refused when an essential is
/// missing): the records, the expectations checked and every miss.
async fn check_intake(dir: &str) -> (usize, usize, Vec<String>) {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let corpus = pairs(Path::new(dir));
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    let mut misses = Vec::new();
    let mut checked = 0;
    for (path, expected) in &corpus {
        let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let raw = std::fs::read(path).expect("read");
        for (endings, raw) in [("", raw.clone()), (" (CRLF)", with_crlf(&raw))] {
            let Ok((_, parsed)) = pipeline.read_escalation(&raw) else {
                misses.push(format!("{name}{endings}: could not be decoded"));
                continue;
            };
            let got = fields_json(&parsed);
            for (key, want) in expected["fields"].as_object().into_iter().flatten() {
                checked += 1;
                let have = &got[key];
                let same = match (want, have) {
                    (Value::String(w), Value::String(h)) => tidy(w) == tidy(h),
                    (w, h) => w == h,
                };
                if !same {
                    misses.push(format!("{name}{endings}: {key}: expected {want}, read {have}"));
                }
            }
            for (key, phrase) in expected["contains"].as_object().into_iter().flatten() {
                checked += 1;
                let phrase = tidy(phrase.as_str().unwrap_or_default());
                if !tidy(got[key].as_str().unwrap_or_default()).contains(&phrase) {
                    misses.push(format!("{name}{endings}: {key} lacks {phrase:?}, read {}", got[key]));
                }
            }
            // No agency holds a job title, an address or "Email".
            for bad in expected["agency_excludes"].as_array().into_iter().flatten() {
                checked += 1;
                let bad = tidy(bad.as_str().unwrap_or_default());
                for key in ["escalating_agency", "other_agency"] {
                    if tidy(got[key].as_str().unwrap_or_default()).contains(&bad) {
                        misses.push(format!("{name}{endings}: {key} holds {bad:?}: {}", got[key]));
                    }
                }
            }
        }
        // And the record opens a case on its board, or is refused for a missing essential.
        let report = pipeline
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
        checked += 1;
        let board = expected["board"].as_str().unwrap_or_default();
        let want = expected["outcome"].as_str().unwrap_or("case_opened");
        if report.outcome != want || report.board.as_deref() != Some(board) {
            misses.push(format!(
                "{name}: {} on {:?}, expected {want} on {board}: {:?}",
                report.outcome, report.board, report.problems
            ));
        }
    }
    store.close().await;
    db.cleanup().await;
    (corpus.len(), checked, misses)
}

#[tokio::test]
async fn every_intake_record_reads_as_its_writer_meant_and_opens_a_case() {
    let (records, checked, misses) = check_intake("tests/corpus/intake").await;
    assert!(records >= 50, "at least ten records per board");
    println!("{records} records, {checked} expectations, {} missed", misses.len());
    assert!(misses.is_empty(), "{} missed:\n{}", misses.len(), misses.join("\n"));
}

#[tokio::test]
async fn the_fourth_blind_corpus_records_read_as_their_writers_meant() {
    let (records, checked, misses) = check_intake("tests/corpus/round4/intake").await;
    assert!(records >= 40, "at least eight records per board");
    let wrong: std::collections::BTreeSet<&str> = misses
        .iter()
        .filter_map(|m| m.split(':').next())
        .map(|f| f.trim_end_matches(" (CRLF)"))
        .collect();
    let right = records - wrong.len();
    println!(
        "round 4: {records} records, {right} read right; {checked} expectations, {} missed",
        misses.len()
    );
    // Not every record of this round is read yet (the issue's note lists what is left); the count may only
    // go up. Each miss is printed, for the next engineer.
    for m in &misses {
        println!("  {m}");
    }
    assert!(
        right >= ROUND4_RECORDS_READ_RIGHT,
        "{right} of {records} records read right, fewer than the {ROUND4_RECORDS_READ_RIGHT} already reached:\n{}",
        misses.join("\n")
    );
}

/// How many of the fourth round's records are read right in full today (every expectation met, with LF
/// and CRLF). Raise it as the reader learns; never lower it.
const ROUND4_RECORDS_READ_RIGHT: usize = 33;

#[test]
fn every_reply_format_yields_its_command_and_new_text() {
    let (replies, misses) = check_replies("tests/corpus/replies");
    assert!(replies >= 15, "at least fifteen reply formats");
    println!("{replies} replies, {} missed", misses.len());
    assert!(misses.is_empty(), "{} missed:\n{}", misses.len(), misses.join("\n"));
}

#[test]
fn the_fourth_blind_corpus_replies_do_what_their_writers_meant() {
    let (replies, misses) = check_replies("tests/corpus/round4/replies");
    assert!(replies >= 30, "at least thirty replies");
    let wrong: std::collections::BTreeSet<&str> = misses.iter().filter_map(|m| m.split(':').next()).collect();
    println!(
        "round 4: {replies} replies, {} did what their writer meant; {} misses",
        replies - wrong.len(),
        misses.len()
    );
    assert!(misses.is_empty(), "{} missed:\n{}", misses.len(), misses.join("\n"));
}

/// Every reply under `dir` read as its writer meant: the number of replies and every miss.
fn check_replies(dir: &str) -> (usize, Vec<String>) {
    let corpus = pairs(Path::new(dir));
    let c = config();
    let trafford = c.board("trafford").expect("trafford");
    let mut new = common::new_case();
    new.record.other_email = Some(SAM.into());
    let case = lifecycle::open(&trafford.rules, &new, "TRAF-2027-0007", at("2027-01-05T10:00:00Z"))
        .expect("opens")
        .case;
    let resolve = Command::Resolve {
        outcome: "agreed".into(),
        agreed_actions: "a joint visit".into(),
        actions: Vec::new(),
        outstanding: String::new(),
        review_date: None,
    };
    let resolved = lifecycle::apply(
        &trafford.rules,
        &case,
        &Person::email(SAM),
        &resolve,
        at("2027-01-05T10:30:00Z"),
    )
    .expect("resolves")
    .case;
    let mut misses = Vec::new();
    for (path, expected) in &corpus {
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        let raw = std::fs::read(path).expect("read");
        // Placeholders replaced on the bytes: some files are not UTF-8.
        let mut raw = raw;
        for (from, to) in [
            ("{{FROM}}", SAM),
            ("{{MAILBOX}}", "escalations@trafford-ssp.invalid"),
            ("{{REF}}", "TRAF-2027-0007"),
            (
                "{{ACK_ID}}",
                "esc.TRAF-2027-0007.ack.0123456789abcdef0123@trafford-ssp.invalid",
            ),
        ] {
            let mut out = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                if raw[i..].starts_with(from.as_bytes()) {
                    out.extend_from_slice(to.as_bytes());
                    i += from.len();
                } else {
                    out.push(raw[i]);
                    i += 1;
                }
            }
            raw = out;
        }
        let Ok(msg) = decode(&raw, &Limits::default()) else {
            misses.push(format!("{name}: could not be decoded"));
            continue;
        };
        let intent = Pipeline::reply_intent(&msg);
        let want_word = expected["command"].as_str();
        if intent.command_word.as_deref() != want_word {
            misses.push(format!(
                "{name}: command {:?}, expected {want_word:?}; new text {:?}",
                intent.command_word, intent.reply_text
            ));
        }
        let text = tidy(&intent.reply_text);
        for phrase in expected["reply_text_contains"].as_array().into_iter().flatten() {
            let p = tidy(phrase.as_str().unwrap_or_default());
            if !text.contains(&p) {
                misses.push(format!("{name}: new text lacks {p:?}: {text:?}"));
            }
        }
        for phrase in expected["reply_text_excludes"].as_array().into_iter().flatten() {
            let p = tidy(phrase.as_str().unwrap_or_default());
            if text.contains(&p) {
                misses.push(format!("{name}: new text keeps {p:?} from the quote or signature"));
            }
        }
        if let Some(valid) = expected["valid"].as_bool() {
            // Valid: the bot would act on it, applied to a case at stage 1 of Trafford's procedure.
            let applies = match &intent.command {
                Ok(ReplyCommand::Apply { command }) => {
                    // Agreed actions are implemented after a resolution.
                    let case = match command {
                        Command::ActionsImplemented { .. } => &resolved,
                        _ => &case,
                    };
                    lifecycle::apply(
                        &trafford.rules,
                        case,
                        &Person::email(SAM),
                        command,
                        at("2027-01-05T11:00:00Z"),
                    )
                    .map(|_| ())
                    .map_err(|e| e.0)
                }
                Ok(ReplyCommand::Unsure { word }) => Err(format!("asked whether {word} was meant")),
                Ok(_) => Ok(()),
                Err(e) => Err(e.clone()),
            };
            if applies.is_ok() != valid {
                misses.push(format!(
                    "{name}: valid {}, expected {valid}: {:?}",
                    applies.is_ok(),
                    intent.command
                ));
            }
        }
        let command = match &intent.command {
            Ok(ReplyCommand::Apply { command }) => Some(command.clone()),
            _ => None,
        };
        // A command written with doubt is asked about: neither applied nor called unknown.
        if expected["doubtful"].as_bool() == Some(true) && !matches!(&intent.command, Ok(ReplyCommand::Unsure { .. })) {
            misses.push(format!("{name}: doubtful, but read as {:?}", intent.command));
        }
        let recorded = match &command {
            Some(Command::Resolve { outcome, .. }) => Some(("outcome", outcome.clone())),
            Some(Command::Note { text }) => Some(("note", text.clone())),
            Some(Command::Withdraw { reason }) => Some(("note", reason.clone())),
            Some(Command::Extend { reason, .. }) => Some(("note", reason.clone())),
            Some(Command::ActionsImplemented { text }) => Some(("note", text.clone())),
            Some(Command::Escalate { reason, .. }) => Some(("note", reason.clone().unwrap_or_default())),
            _ => None,
        };
        for key in ["outcome_excludes", "note_excludes"] {
            for bad in expected[key].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if let Some((what, text)) = &recorded {
                    if tidy(text).contains(&tidy(bad)) {
                        misses.push(format!("{name}: the recorded {what} keeps {bad:?}"));
                    }
                }
            }
        }
        if let Some(names) = expected.get("escalate_names").and_then(Value::as_array) {
            let read: Vec<String> = match &command {
                Some(Command::Escalate { people, .. }) => people.iter().filter_map(|p| p.name.clone()).collect(),
                _ => Vec::new(),
            };
            for n in names.iter().filter_map(Value::as_str) {
                if !read.iter().any(|r| r.contains(n)) {
                    misses.push(format!("{name}: escalation lacks the name {n:?}: read {read:?}"));
                }
            }
        }
        if let Some(days) = expected.get("extend_days").and_then(Value::as_u64) {
            if !matches!(&command, Some(Command::Extend { working_days, .. }) if u64::from(*working_days) == days) {
                misses.push(format!("{name}: expected EXTEND {days}, read {command:?}"));
            }
        }
        if let Some(date) = expected.get("review_date") {
            let read = match &command {
                Some(Command::Resolve { review_date, .. }) => review_date.map(|d| d.to_string()),
                _ => None,
            };
            if read.as_deref() != date.as_str() {
                misses.push(format!("{name}: review date {read:?}, expected {date}"));
            }
        }
        if let Some(phrase) = expected.get("outcome_contains").and_then(Value::as_str) {
            let ok =
                matches!(&command, Some(Command::Resolve { outcome, .. }) if tidy(outcome).contains(&tidy(phrase)));
            if !ok {
                misses.push(format!("{name}: outcome lacks {phrase:?}: {command:?}"));
            }
        }
        if let Some(want) = expected.get("actions").and_then(Value::as_array) {
            // Each agreed action, in order, with its owner and date as a reader would take them.
            let read = match &command {
                Some(Command::Resolve { actions, .. }) => actions.clone(),
                _ => Vec::new(),
            };
            if read.len() != want.len() {
                misses.push(format!(
                    "{name}: {} actions read, expected {}: {read:?}",
                    read.len(),
                    want.len()
                ));
            } else {
                for (a, w) in read.iter().zip(want) {
                    let phrase = tidy(w["text_contains"].as_str().unwrap_or_default());
                    if !tidy(&a.text).contains(&phrase) {
                        misses.push(format!("{name}: action {:?} lacks {phrase:?}", a.text));
                    }
                    let email = w["owner_email"].as_str().map(str::to_lowercase);
                    if a.owner_email != email {
                        misses.push(format!(
                            "{name}: action {:?} owner {:?}, expected {email:?}",
                            a.text, a.owner_email
                        ));
                    }
                    if let Some(n) = w["owner_name_contains"].as_str() {
                        if !a.owner.as_deref().unwrap_or_default().contains(n) {
                            misses.push(format!(
                                "{name}: action {:?} owner name {:?}, expected {n:?}",
                                a.text, a.owner
                            ));
                        }
                    }
                    let due = w["due"].as_str().map(str::to_string);
                    if a.due.map(|d| d.to_string()) != due {
                        misses.push(format!("{name}: action {:?} due {:?}, expected {due:?}", a.text, a.due));
                    }
                }
            }
        }
        if let Some(want) = expected.get("outstanding_contains") {
            let read = match &command {
                Some(Command::Resolve { outstanding, .. }) => tidy(outstanding),
                _ => String::new(),
            };
            match want.as_str() {
                Some(p) if !read.contains(&tidy(p)) => {
                    misses.push(format!("{name}: outstanding issues {read:?} lack {p:?}"))
                }
                None if !read.is_empty() => {
                    misses.push(format!("{name}: outstanding issues {read:?} read from nothing"))
                }
                _ => {}
            }
        }
        if let Some(stage) = expected.get("to_stage").filter(|v| !v.is_null()) {
            let ok = matches!(&command, Some(Command::Escalate { to_stage, .. }) if to_stage.map(u64::from) == stage.as_u64());
            if !ok {
                misses.push(format!("{name}: expected escalation to stage {stage}: {command:?}"));
            }
        }
        if let Some(emails) = expected.get("escalate_emails").and_then(Value::as_array) {
            let read: Vec<String> = match &command {
                Some(Command::Escalate { people, .. }) => people.iter().map(|p| p.email.to_lowercase()).collect(),
                _ => Vec::new(),
            };
            for e in emails.iter().filter_map(Value::as_str) {
                if !read.contains(&e.to_lowercase()) {
                    misses.push(format!("{name}: escalation lacks {e}: read {read:?}"));
                }
            }
        }
    }
    (corpus.len(), misses)
}

/// A plain-text record email from `from` with `body`.
fn record_email(from: &str, to: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: Escalation\r\nMessage-ID: <example-{}@nhs.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        body.len()
    )
    .into_bytes()
}

#[test]
fn the_forms_the_issue_found_refused_are_read() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let read = |to: &str, body: &str| {
        let (_, parsed) = pipeline
            .read_escalation(&record_email("Ann Example <ann.example@nhs.net>", to, body))
            .expect("decodes");
        fields_json(&parsed)
    };
    // Rotherham's Appendix B: the Referrer block.
    let f = read(
        "escalations@rotherham-sab.invalid",
        "Name of adult at risk.\nAlan Testperson\n\nSummary of reason for dispute – include views of all agencies\nThe enquiry was closed too soon.\n\nReferrer\nName: Ann Example\nJob Title: Community Nurse\nAgency: The Rotherham NHS Foundation Trust\nDate: 04/01/2027",
    );
    assert_eq!(f["escalating_agency"], "The Rotherham NHS Foundation Trust", "{f}");
    assert_eq!(f["escalating_name"], "Ann Example");
    // Buckinghamshire's signature blocks, the challenged manager's too.
    let f = read(
        "escalations@buckinghamshire-sab.invalid",
        "Name of adult at risk: Alan Testperson\nSummary of reason for dispute: Discharge without a plan.\n\nSignature of challenger manager Name: Ann Example\nJob Title: Ward Manager\nAgency: Buckinghamshire Healthcare NHS Trust\nDate: 05/01/2027\n\nSignature of challenged manager Name: Bob Sample\nJob Title: Team Manager\nAgency: Buckinghamshire Council\nDate: 05/01/2027",
    );
    assert_eq!(f["escalating_agency"], "Buckinghamshire Healthcare NHS Trust", "{f}");
    assert_eq!(
        (f["other_name"].as_str(), f["other_agency"].as_str()),
        (Some("Bob Sample"), Some("Buckinghamshire Council"))
    );
    // An agency with "of" in it.
    let f = read(
        "BSAB@bradford.gov.uk",
        "Name of adult at risk: Alan Testperson\nName and agency name of the person escalating the dispute: Callum Reid, City of Bradford MDC Adult Social Care\nSummary of reason for dispute: Closed too soon.",
    );
    assert_eq!(f["escalating_agency"], "City of Bradford MDC Adult Social Care", "{f}");
    // Each label alone on its line, the value on the lines below.
    let f = read(
        "escalations@trafford-ssp.invalid",
        "Name of adult at risk:\n\nAlan Testperson\n\nNHS number:\n\n999 000 0018\n\nSummary of reason for dispute:\n\nClosed too soon.\nThe adult wants help at home.",
    );
    assert_eq!(
        (f["adult_name"].as_str(), f["nhs_number"].as_str()),
        (Some("Alan Testperson"), Some("9990000018")),
        "{f}"
    );
    assert!(f["summary"].as_str().is_some_and(|s| s.contains("help at home")));
    // Outlook's table row "Name and agency of person the dispute is with".
    let html = "<table><tr><td>Name of adult at risk</td><td>Alan Testperson</td></tr>\
        <tr><td>Name and agency of person the dispute is with</td><td>Bob Sample, Westshire Council (Adult Social Care) \
        <a href=\"mailto:bob.sample@westshire.gov.uk\">bob.sample@westshire.gov.uk</a> 01632 960000</td></tr></table>";
    let raw = format!(
        "From: Ann Example <ann.example@nhs.net>\r\nTo: BSAB@bradford.gov.uk\r\nSubject: Escalation\r\n\
         Message-ID: <html-example@nhs.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    );
    let (_, parsed) = pipeline.read_escalation(raw.as_bytes()).expect("decodes");
    let f = fields_json(&parsed);
    assert_eq!(f["other_name"], "Bob Sample", "{f}");
    assert_eq!(f["other_agency"], "Westshire Council (Adult Social Care)", "{f}");
    assert_eq!(f["other_email"], "bob.sample@westshire.gov.uk", "{f}");
    // A record already at stage 2.
    let f = read(
        "BSAB@bradford.gov.uk",
        "Name of adult at risk: Alan Testperson\nCurrent stage of escalation: Stage 2 - line managers\nSummary of reason for dispute: Managers could not agree.",
    );
    assert_eq!(f["stage"], 2, "{f}");
}

#[tokio::test]
async fn the_acknowledgement_goes_to_the_sender_not_only_to_an_address_typed_into_the_form() {
    let c = config();
    let pipeline = Pipeline::new(&c, b"test-secret".to_vec()).expect("pipeline");
    let (store, db) = TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2027-01-04T09:00:00Z"))
        .await
        .expect("prepare");
    let raw = std::fs::read_to_string("tests/fixtures/forms/trafford-plain.eml")
        .expect("fixture")
        .replace(
            "From: Nia Nurse <nia.nurse@nhs.net>",
            "From: Team Inbox <adult.team@nhs.net>",
        );
    let r = pipeline
        .process(
            &store,
            &Source::default(),
            raw.as_bytes(),
            None,
            at("2027-01-04T10:00:00Z"),
            false,
        )
        .await
        .expect("processes");
    assert_eq!(r.outcome, "case_opened", "{:?}", r.problems);
    let acks: Vec<_> = store
        .outbox(None)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|o| o.email.kind == "acknowledgement")
        .collect();
    let shown_to = acks.iter().filter_map(|a| a.email.headers.get("To")).next().cloned();
    assert_eq!(shown_to.as_deref(), Some("adult.team@nhs.net"), "to whoever sent it");
    for to in ["adult.team@nhs.net", "nia.nurse@nhs.net", "sam.social@westshire.gov.uk"] {
        assert!(
            acks.iter().any(|a| a.email.to == [to.to_string()]),
            "a copy for {to}: the sender, the practitioner the form names, the other party"
        );
    }
    store.close().await;
    db.cleanup().await;
}
