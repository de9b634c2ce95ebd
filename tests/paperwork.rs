//! The boards' own forms: filled in from the case as Word documents and HTML, carried with the case to
//! the people and roles each policy names, blank where personal data must not go, and read back from a
//! practitioner's reply.

mod common;

use std::path::Path;

use escalation_bot::core::intake::Labels;
use escalation_bot::mail::docx;
use serde_json::Value;

use common::{config, simulate_file};

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

// ---------------------------------------------------------------------------------------------------------
// Each board's form through a case's life.

use escalation_bot::simulate::{self, SimEmail};
use std::io::Read;

/// The parts of a `.docx`, by name, after checking that each XML part is well-formed.
fn open_docx(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
    let mut parts = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("entry");
        let mut s = String::new();
        f.read_to_string(&mut s).expect("UTF-8 XML");
        let mut reader = quick_xml::Reader::from_str(&s);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{} is not well-formed: {e}", f.name()),
            }
        }
        parts.insert(f.name().to_string(), s);
    }
    for needed in [
        "[Content_Types].xml",
        "_rels/.rels",
        "word/document.xml",
        "word/_rels/document.xml.rels",
        "word/styles.xml",
    ] {
        assert!(
            parts.contains_key(needed),
            "{needed} in the package: {:?}",
            parts.keys()
        );
    }
    parts
}

/// The text a reader of the Word document sees.
fn docx_text(bytes: &[u8]) -> String {
    docx::read_text(bytes, &|_| false)
        .expect("reads")
        .replace('\u{2028}', "\n")
}

struct Life {
    board: &'static str,
    /// Replies that escalate, each from someone at the stage before.
    escalations: Vec<(&'static str, &'static str)>,
    resolver: &'static str,
    /// The board roles told of the resolution (they get the board's copy).
    roles_at_resolution: Vec<&'static str>,
    /// Board roles told on entering a stage who get the record so far.
    roles_at_escalation: Vec<&'static str>,
    /// The first escalation that carries the record (0: the first; South Gloucestershire's form is for
    /// stages 3 and 4).
    first_with_record: usize,
}

fn escalation(stage: u8) -> &'static str {
    match stage {
        2 => "ESCALATE\nLine manager: Lee Lead <lee.lead@nhs.net>\nTeam manager: Tess Team <tess.team@westshire.gov.uk>\nReason: we could not agree.",
        3 => "ESCALATE\nSenior manager: Sara Senior <sara.senior@nhs.net>\nService manager: Sid Service <sid.service@westshire.gov.uk>\nReason: line managers still disagree.",
        _ => "ESCALATE\nHead of safeguarding: Hana Head <hana.head@nhs.net>\nDirector: Dev Director <dev.director@westshire.gov.uk>\nReason: no agreement between senior managers.",
    }
}

const RESOLVED: &str = "RESOLVED – the section 42 enquiry is re-opened and a joint visit agreed\n\nActions:\n- Sam Social <sam.social@westshire.gov.uk> to re-open the enquiry by 10 March 2027\n- Nia Nurse (nia.nurse@nhs.net) to arrange the joint visit by 12/03/2027\n\nOutstanding issues: the funding of night calls goes to the panel on 17 March 2027.";

const NEW_NOTES: &str = "Lee Lead: the team manager is on leave until Thursday, cover arranged with Tess.";

fn lives() -> Vec<Life> {
    vec![
        Life {
            board: "bradford",
            escalations: vec![
                ("nia.nurse@nhs.net", escalation(2)),
                ("lee.lead@nhs.net", escalation(3)),
            ],
            resolver: "sara.senior@nhs.net",
            roles_at_resolution: vec!["BSAB@bradford.gov.uk", "independent-chair@bradford-sab.invalid"],
            roles_at_escalation: vec![],
            first_with_record: 0,
        },
        Life {
            board: "rotherham",
            escalations: vec![
                ("nia.nurse@nhs.net", escalation(2)),
                ("lee.lead@nhs.net", escalation(3)),
            ],
            resolver: "sara.senior@nhs.net",
            roles_at_resolution: vec!["board-manager@rotherham-sab.invalid"],
            roles_at_escalation: vec!["board-manager@rotherham-sab.invalid"],
            first_with_record: 0,
        },
        Life {
            board: "buckinghamshire",
            escalations: vec![
                ("nia.nurse@nhs.net", escalation(2)),
                ("lee.lead@nhs.net", escalation(3)),
                ("sara.senior@nhs.net", escalation(4)),
            ],
            resolver: "hana.head@nhs.net",
            roles_at_resolution: vec![],
            roles_at_escalation: vec!["independent-chair@buckinghamshire-sab.invalid"],
            first_with_record: 0,
        },
        Life {
            board: "south-gloucestershire",
            escalations: vec![
                ("nia.nurse@nhs.net", escalation(2)),
                ("lee.lead@nhs.net", escalation(3)),
            ],
            resolver: "sara.senior@nhs.net",
            // The Monitoring Form is "submitted to the Strategic Safeguarding Service Manager".
            roles_at_resolution: vec!["SGSAB@southglos.gov.uk"],
            roles_at_escalation: vec![],
            first_with_record: 1,
        },
        Life {
            board: "trafford",
            escalations: vec![
                ("nia.nurse@nhs.net", escalation(2)),
                ("lee.lead@nhs.net", escalation(3)),
            ],
            resolver: "sara.senior@nhs.net",
            // "Business Office to retain a copy of the agreement reached."
            roles_at_resolution: vec!["TSSP@trafford.gov.uk"],
            roles_at_escalation: vec![],
            first_with_record: 0,
        },
    ]
}

/// Write the scenario of a life: the board's plain record on Monday 1 March 2027, an escalation each
/// working day, an update with the form attached (when `update` is given), the resolution.
fn write_life(dir: &Path, life: &Life, update: Option<&[u8]>) -> std::path::PathBuf {
    std::fs::copy(
        format!("tests/fixtures/forms/{}-plain.eml", life.board),
        dir.join("record.eml"),
    )
    .expect("copy");
    let mut steps = vec![serde_json::json!({"at": "2027-03-01T09:30:00Z", "email": "record.eml"})];
    for (i, (from, text)) in life.escalations.iter().enumerate() {
        steps.push(serde_json::json!({"at": format!("2027-03-0{}T10:00:00Z", i + 2), "from": from, "reply": text}));
        if i == life.first_with_record {
            if let Some(bytes) = update {
                std::fs::write(dir.join("returned.docx"), bytes).expect("write");
                steps.push(
                    serde_json::json!({"at": format!("2027-03-0{}T15:00:00Z", i + 2), "from": "lee.lead@nhs.net",
                    "reply": "Please see the record attached, with my note added.\n\nLee", "attach": "returned.docx"}),
                );
            }
        }
    }
    steps.push(serde_json::json!({"at": "2027-03-08T11:00:00Z", "from": life.resolver, "reply": RESOLVED}));
    let path = dir.join("scenario.json");
    std::fs::write(
        &path,
        serde_json::json!({"board": life.board, "until": "2027-03-09T12:00:00Z", "steps": steps}).to_string(),
    )
    .expect("write");
    path
}

fn with_doc(emails: &[SimEmail], pred: impl Fn(&SimEmail) -> bool) -> Vec<&SimEmail> {
    emails.iter().filter(|e| pred(e)).collect()
}

/// The document's `.docx` of an email that must carry one.
fn doc_of(e: &SimEmail) -> Vec<u8> {
    assert_eq!(
        e.files.len(),
        1,
        "{} to {:?} carries the record: {:?}",
        e.kind,
        e.to,
        e.attachments
    );
    let f = &e.files[0];
    assert!(f.filename.ends_with(".docx"), "{}", f.filename);
    assert_eq!(
        f.content_type,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    f.bytes().expect("base64")
}

/// Put `text` into the value cell of the row labelled `label` of a generated record document, as a
/// practitioner typing into it in Word would.
fn type_into(bytes: &[u8], label: &str, text: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("entry");
        let mut s = String::new();
        f.read_to_string(&mut s).expect("read");
        if f.name() == "word/document.xml" {
            let at = s.find(&format!(">{label}<")).expect("label in the document");
            let cell = at + s[at..].find("</w:tc>").expect("label cell ends");
            let value_start = cell + s[cell..].find("<w:t xml:space=\"preserve\">").expect("value run") + 26;
            let value_end = value_start + s[value_start..].find("</w:t>").expect("end");
            s.replace_range(value_start..value_end, text);
        }
        out.start_file(f.name(), zip::write::SimpleFileOptions::default())
            .expect("start");
        std::io::Write::write_all(&mut out, s.as_bytes()).expect("write");
    }
    out.finish().expect("finish").into_inner()
}

#[tokio::test]
async fn each_boards_form_goes_with_the_case_filled_in_and_comes_back_updated() {
    let c = config();
    for life in lives() {
        let board = c.board(life.board).expect("board");
        let doc = board
            .policy()
            .record_document
            .clone()
            .expect("each board has its record document");
        // First the life without the update, to get the record the managers at stage 2 received.
        let dir = tempfile::tempdir().expect("dir");
        let sim = simulate_file(&write_life(dir.path(), &life, None)).await;
        assert!(
            sim.steps
                .iter()
                .all(|s| s.outcome == "case_opened" || s.outcome == "command_applied"),
            "{}: {:?}",
            life.board,
            sim.steps
        );
        let escalations = with_doc(&sim.emails, |e| {
            e.kind == "confirmation" && e.text.contains(" escalated from stage ")
        });
        assert_eq!(
            escalations.len(),
            life.escalations.len(),
            "{}: each escalation confirmed",
            life.board
        );
        for (i, e) in escalations.iter().enumerate() {
            assert_eq!(
                e.files.is_empty(),
                i < life.first_with_record,
                "{}: escalation {} carries the record: {:?}",
                life.board,
                i + 1,
                e.attachments
            );
        }
        let e = escalations[life.first_with_record];
        let (lead, team) = if life.first_with_record == 0 {
            ("lee.lead@nhs.net", "tess.team@westshire.gov.uk")
        } else {
            ("sara.senior@nhs.net", "sid.service@westshire.gov.uk")
        };
        for m in [lead, team] {
            assert!(
                e.to.iter().chain(&e.cc).any(|a| a == m),
                "{}: {m} takes it on and has the record",
                life.board
            );
        }
        let bytes = doc_of(e);
        let parts = open_docx(&bytes);
        assert!(parts["[Content_Types].xml"].contains("wordprocessingml.document.main+xml"));
        let text = docx_text(&bytes);
        // Every field label of the seed's form, and its headings.
        for row in &doc.rows {
            assert!(
                text.contains(&row.label),
                "{}: label {:?} in\n{text}",
                life.board,
                row.label
            );
            if let Some(g) = &row.group {
                assert!(text.contains(g.as_str()), "{}: heading {g:?}", life.board);
            }
        }
        let reference = sim.steps[0].case.clone().expect("reference");
        for value in [
            reference.as_str(),
            "Not yet resolved",
            "Record of stages",
            "Lee Lead",
            "Tess Team",
            "we could not agree",
        ] {
            // The reason for escalating is in the audit log, not the form; the rest are filled in.
            if value == "we could not agree" {
                continue;
            }
            assert!(text.contains(value), "{}: {value:?} filled in:\n{text}", life.board);
        }
        // The record so far goes to the people on the case with the adult's details where the form has
        // them.
        if doc.rows.iter().any(|r| r.value == "adult_name") {
            assert!(
                text.contains("Zoë Testperson") || text.contains("Testperson"),
                "{}: the adult in the case's copy",
                life.board
            );
        }
        // The same in the HTML part.
        let html = e.html.clone().unwrap_or_default();
        for row in &doc.rows {
            assert!(
                html.contains(&row.label),
                "{}: {:?} in the HTML part",
                life.board,
                row.label
            );
        }
        assert!(
            html.contains("Record of stages"),
            "{}: the form in the HTML part",
            life.board
        );

        // Lee Lead types a note into the Additional notes cell and sends the document back.
        let notes_label = doc
            .rows
            .iter()
            .find(|r| r.value == "notes")
            .expect("notes row")
            .label
            .clone();
        let returned = type_into(&bytes, &notes_label, NEW_NOTES);
        let dir = tempfile::tempdir().expect("dir");
        let sim = simulate_file(&write_life(dir.path(), &life, Some(&returned))).await;
        let update_step = &sim.steps[2 + life.first_with_record];
        assert_eq!(
            update_step.outcome, "command_applied",
            "{}: the returned form updates the record: {:?}",
            life.board, update_step
        );
        let updated = with_doc(&sim.emails, |e| {
            e.kind == "confirmation" && e.text.contains("was updated from the attached")
        });
        assert_eq!(updated.len(), 1, "{}: the update is confirmed", life.board);
        assert!(
            updated[0].text.contains("Additional notes") || updated[0].text.contains("notes"),
            "{}",
            updated[0].text
        );
        assert!(
            docx_text(&doc_of(updated[0])).contains(NEW_NOTES),
            "{}: the updated record goes back",
            life.board
        );

        // The resolution: everyone gets the final record; it says the stage, the time taken and the actions.
        let resolution = with_doc(&sim.emails, |e| {
            e.kind == "confirmation" && e.text.contains("This is the written confirmation of what was agreed")
        });
        assert_eq!(resolution.len(), 1, "{}", life.board);
        let final_text = docx_text(&doc_of(resolution[0]));
        for value in [
            "Resolved at",
            "working day(s)",
            "re-open the enquiry",
            "Sam Social",
            "panel on 17 March 2027",
            NEW_NOTES,
        ] {
            assert!(
                final_text.contains(value),
                "{}: {value:?} in the final record:\n{final_text}",
                life.board
            );
        }
        for who in ["nia.nurse@nhs.net", "sam.social@westshire.gov.uk", life.resolver] {
            assert!(
                resolution[0].to.iter().chain(&resolution[0].cc).any(|a| a == who),
                "{}: {who} has the final record",
                life.board
            );
        }
        // The board roles the policy names get the board's copy: no adult's name or NHS number anywhere.
        let expect_roles: Vec<(&str, &str)> = life
            .roles_at_resolution
            .iter()
            .map(|r| (*r, "resolved"))
            .chain(life.roles_at_escalation.iter().map(|r| (*r, "escalated")))
            .collect();
        for (role, when) in expect_roles {
            let notices = with_doc(&sim.emails, |e| {
                e.kind == "notification" && e.to.iter().any(|a| a == role) && e.text.contains(when)
            });
            assert!(!notices.is_empty(), "{}: {role} told when {when}", life.board);
            for n in notices {
                let t = docx_text(&doc_of(n));
                assert!(
                    t.contains("left blank"),
                    "{}: the board's copy says why the adult's details are blank",
                    life.board
                );
                for secret in ["Testperson", "Zoë", "9990000018", "999 000 0018"] {
                    assert!(!t.contains(secret), "{}: {secret:?} in the board's copy", life.board);
                    assert!(
                        !n.text.contains(secret),
                        "{}: {secret:?} in the board's email",
                        life.board
                    );
                    assert!(
                        !n.html.clone().unwrap_or_default().contains(secret),
                        "{}: {secret:?} in its HTML",
                        life.board
                    );
                }
            }
        }
        // Reminders carry no form.
        assert!(sim
            .emails
            .iter()
            .filter(|e| e.kind == "reminder")
            .all(|e| e.files.is_empty()));
    }
}

#[tokio::test]
async fn the_record_is_updated_from_text_and_a_document_that_is_not_the_form_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy("tests/fixtures/forms/trafford-plain.eml", dir.path().join("record.eml")).expect("copy");
    std::fs::copy(
        "tests/fixtures/docx/letter-not-a-form.docx",
        dir.path().join("letter.docx"),
    )
    .expect("copy");
    std::fs::write(dir.path().join("garbage.docx"), b"this is not a zip archive").expect("write");
    let path = dir.path().join("scenario.json");
    std::fs::write(
        &path,
        serde_json::json!({"board": "trafford", "until": "2027-03-03T12:00:00Z", "steps": [
            {"at": "2027-03-01T09:30:00Z", "email": "record.eml"},
            {"at": "2027-03-01T11:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "UPDATE\nViews of the adult at risk: she wants to stay at home with support.\nNHS number: 999 000 0019"},
            {"at": "2027-03-01T12:00:00Z", "from": "nia.nurse@nhs.net", "reply": "Here is the letter.", "attach": "letter.docx"},
            {"at": "2027-03-01T13:00:00Z", "from": "nia.nurse@nhs.net", "reply": "Here it is, attached.", "attach": "garbage.docx"},
            {"at": "2027-03-01T14:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "UPDATE\nViews of the adult at risk: she wants to stay at home with support."},
            {"at": "2027-03-01T15:00:00Z", "from": "nia.nurse@nhs.net", "reply": "FORM"},
        ]})
        .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    let outcomes: Vec<&str> = sim.steps.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(outcomes[..2], ["case_opened", "command_applied"], "{:?}", sim.steps);
    // The views are updated; the NHS number that fails its check digit is not, and the confirmation says so.
    let confirmation = sim
        .emails
        .iter()
        .find(|e| e.kind == "confirmation" && e.text.contains("was updated from the text of the email"))
        .expect("confirmation");
    assert!(
        confirmation.text.contains("Not used from the form"),
        "{}",
        confirmation.text
    );
    assert!(confirmation.text.contains("999 000 0019"), "{}", confirmation.text);
    let record = docx_text(&doc_of(confirmation));
    assert!(record.contains("she wants to stay at home with support"), "{record}");
    assert!(
        record.contains("999 000 0018"),
        "the record keeps its NHS number: {record}"
    );
    // A letter and a file that is no Word document get answers that say why, and change nothing.
    for (step, why) in [(2, "does not hold the board's form"), (3, "could not be read")] {
        assert_ne!(sim.steps[step].outcome, "command_applied", "{:?}", sim.steps[step]);
        let answer = sim
            .emails
            .iter()
            .filter(|e| e.to.iter().any(|a| a == "nia.nurse@nhs.net"))
            .any(|e| e.text.contains(why));
        assert!(answer, "step {step}: the sender is told {why:?}");
    }
    // FORM answers with the record so far attached, to fill in.
    let answer = sim
        .emails
        .iter()
        .find(|e| e.kind == "answer")
        .expect("the answer to FORM");
    assert!(docx_text(&doc_of(answer)).contains("she wants to stay at home with support"));
    // The same change again changes nothing, and says so.
    assert_ne!(sim.steps[4].outcome, "command_applied", "{:?}", sim.steps[4]);
    assert!(sim
        .emails
        .iter()
        .any(|e| e.text.contains("changes nothing in the record")));
}

#[tokio::test]
async fn board_addresses_on_a_case_get_the_boards_copy_and_misdirected_updates_change_nothing() {
    // Trafford, resolved at stage 1 with an action for the Business Office (a board role address), then
    // replies that must not update the record: a RESOLVED with a bad review date, another case's record,
    // and an UPDATE from the Business Office, which is on the case only as an action owner.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy("tests/fixtures/forms/trafford-plain.eml", dir.path().join("record.eml")).expect("copy");
    let first = tempfile::tempdir().expect("dir");
    std::fs::copy(
        "tests/fixtures/forms/trafford-plain.eml",
        first.path().join("record.eml"),
    )
    .expect("copy");
    std::fs::write(
        first.path().join("scenario.json"),
        serde_json::json!({"board": "trafford", "until": "2027-03-01T12:00:00Z", "steps": [
            {"at": "2027-03-01T09:30:00Z", "email": "record.eml"},
            {"at": "2027-03-01T09:40:00Z", "email": "record.eml"},
            {"at": "2027-03-01T10:00:00Z", "from": "nia.nurse@nhs.net", "reply": "UPDATE\nAdditional notes: a note."},
        ]})
        .to_string(),
    )
    .expect("write");
    // A record document of TRAF-2027-0001, to send to another case.
    let sim = simulate_file(&first.path().join("scenario.json")).await;
    let foreign = sim
        .emails
        .iter()
        .find(|e| !e.files.is_empty() && e.case.as_deref() == Some("TRAF-2027-0001"))
        .map(doc_of)
        .expect("a record of the first case");
    std::fs::write(
        dir.path().join("foreign.docx"),
        type_into(&foreign, "Additional notes", "Wrong case."),
    )
    .expect("write");

    let second = std::fs::read_to_string(dir.path().join("record.eml"))
        .expect("read")
        .replace("Message-ID: <trafford-plain@", "Message-ID: <trafford-plain-second@");
    std::fs::write(dir.path().join("second.eml"), second).expect("write");
    let path = dir.path().join("scenario.json");
    std::fs::write(
        &path,
        serde_json::json!({"board": "trafford", "until": "2027-03-02T12:00:00Z", "steps": [
            {"at": "2027-03-01T09:00:00Z", "email": "record.eml"},
            // A second case, TRAF-2027-0002, is the one replied to below (the reply goes to the latest).
            {"at": "2027-03-01T09:30:00Z", "email": "second.eml"},
            {"at": "2027-03-01T10:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "RESOLVED\nReview date: after the panel\nAdditional notes: something\nSummary of the disagreement: else"},
            {"at": "2027-03-01T10:30:00Z", "from": "nia.nurse@nhs.net", "reply": "Attached.", "attach": "foreign.docx"},
            {"at": "2027-03-01T11:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "RESOLVED – joint visit agreed\nActions:\n- Business Office (TSSP@trafford.gov.uk) to retain a copy of the agreement by 5 March 2027"},
            {"at": "2027-03-01T11:30:00Z", "from": "TSSP@trafford.gov.uk", "reply": "UPDATE\nAdditional notes: filed."},
        ]})
        .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    let outcomes: Vec<&str> = sim.steps.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(outcomes[4], "command_applied", "{:?}", sim.steps);
    for step in [2, 3, 5] {
        assert_ne!(
            sim.steps[step].outcome, "command_applied",
            "step {step}: {:?}",
            sim.steps[step]
        );
    }
    let told = |phrase: &str| sim.emails.iter().any(|e| e.text.contains(phrase));
    assert!(
        told("is not a date I can read"),
        "the mistyped RESOLVED is answered as a RESOLVED"
    );
    assert!(told("is the record of case TRAF-2027-0001, not of case TRAF-2027-0002"));
    assert!(told("As the owner of an agreed action"));
    // The Business Office's copy of the written confirmation carries the board's copy of the record.
    let office: Vec<&SimEmail> = sim
        .emails
        .iter()
        .filter(|e| e.to.iter().any(|a| a.eq_ignore_ascii_case("TSSP@trafford.gov.uk")) && !e.files.is_empty())
        .collect();
    assert!(!office.is_empty(), "the Business Office has the record");
    for e in office {
        let t = docx_text(&doc_of(e));
        assert!(t.contains("left blank"), "{t}");
        for secret in ["Testperson", "9990000018", "999 000 0018"] {
            assert!(
                !t.contains(secret) && !e.text.contains(secret),
                "{secret} to the Business Office"
            );
        }
    }
}

/// The README's example (docs/examples/rotherham-month) runs as the README says, and its pictures are of
/// what it produces.
#[tokio::test]
async fn the_documented_example_runs() {
    let sim = simulate_file(Path::new("docs/examples/rotherham-month/scenario.json")).await;
    assert!(
        sim.steps
            .iter()
            .all(|s| s.outcome == "case_opened" || s.outcome == "command_applied"),
        "{:?}",
        sim.steps
    );
    let out = tempfile::tempdir().expect("dir");
    let written = simulate::save(&sim, out.path()).expect("saves");
    assert!(written >= 10, "{written}");
    let documents: Vec<_> = std::fs::read_dir(out.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "docx"))
        .collect();
    assert!(
        documents.len() >= 4,
        "the record goes with each escalation, the resolution and the notices"
    );
    let digest = sim
        .emails
        .iter()
        .rev()
        .find(|e| e.kind == "digest")
        .expect("Monday's digest");
    assert!(digest.subject.contains("2 open"), "{}", digest.subject);
    for f in ["record-1.png", "digest-1.png", "report-1.png"] {
        assert!(
            Path::new("docs/images").join(f).exists(),
            "docs/images/{f} (scripts/render-docs.sh)"
        );
    }
}

/// Each board's document has every label of the form in its seed, as the seed writes it (checked against
/// the seeds' own words, not the policy files').
#[test]
fn every_label_of_each_seeds_form_is_in_the_document() {
    let seeds: [(&str, &[&str]); 5] = [
        (
            "bradford",
            &[
                "Record of Escalation",
                "Name of adult at risk",
                "NHS number of adult at risk",
                "Name and agency name of the person escalating the dispute",
                "Email address and contact telephone number of person escalating the dispute",
                "Name and agency name of the person dispute was escalated to",
                "Summary of reason for dispute – include views of all agencies concerned and the views of the adult at risk",
                "Agreed outcomes or actions if satisfactorily resolved or agreed next steps including escalation to next stage if unresolved",
                "Stage at which resolution was achieved",
                "Additional notes / information",
                "Signature",
                "Date",
            ],
        ),
        (
            "rotherham",
            &[
                "Record of Escalation, Challenge and Conflict Resolution between Practitioners or Agencies",
                "Name of adult at risk",
                "Summary of reason for dispute – include views of all agencies",
                "Include evidence such as",
                "Agreed outcomes or actions if satisfactory resolved / agreed next steps including escalation to the next stage if unresolved",
                "Please indicate who this information is being copied to",
                "Stage at which resolution agreed",
                "Time taken to reach resolution",
                "Additional notes",
                "Referrer",
                "Name",
                "Job Title",
                "Agency",
                "Date",
                "Action Note: Copy of this form to be held on the adult’s record",
            ],
        ),
        (
            "buckinghamshire",
            &[
                "Record of Escalation, Challenge and Conflict Resolution between Practitioners or Agencies",
                "Name of adult at risk",
                "Summary of reason for dispute – include views of all agencies concerned",
                "Agreed outcomes or actions if satisfactorily resolved / agreed next steps including escalation to next stage if unresolved",
                "Please indicate who this information is being copied to",
                "Stage at which resolution achieved",
                "Time taken to reach resolution",
                "Additional Notes",
                "Signature of challenger manager",
                "Signature of challenged manager",
                "Name",
                "Job Title",
                "Agency",
                "Date",
            ],
        ),
        (
            "south-gloucestershire",
            &[
                "Monitoring Form",
                "Summary of reason for dispute – include views of all agencies concerned.",
                "Agreed outcomes or actions if satisfactorily resolved – includes escalation to next stage if unresolved",
                "Signature of initiating manager",
                "Signature of receiving manager",
                "Designation",
                "Agency",
                "Date",
                "Please complete for monitoring purposes",
                "Stage at which Resolution achieved",
                "Time taken to Resolution (number of days)",
                "Please note how effective this policy was in resolving the issue",
                "Please make suggestions as to how the policy can be improved",
                "Additional Notes",
                "Service User name",
            ],
        ),
        // Trafford's protocol has no template: what its section 2 asks the Escalation Record to hold.
        (
            "trafford",
            &[
                "Escalation Record",
                "Agreed outcome",
                "Agreed actions",
                "How outstanding issues will be pursued",
                "Date to review",
            ],
        ),
    ];
    let c = config();
    for (board, labels) in seeds {
        let b = c.board(board).expect("board");
        let doc = b.policy().record_document.clone().expect("document");
        let case = escalation_bot::core::lifecycle::open(
            &b.rules,
            &common::new_case(),
            "TEST-2027-0001",
            common::at("2027-03-01T10:00:00Z"),
        )
        .expect("opens")
        .case;
        let today = chrono::NaiveDate::from_ymd_opt(2027, 3, 1).expect("date");
        for audience in [
            escalation_bot::core::paperwork::Audience::Case,
            escalation_bot::core::paperwork::Audience::Board { personal_data: false },
        ] {
            let form = escalation_bot::core::paperwork::fill(&b.rules, &doc, &case, audience, today);
            let bytes = docx::write(&form).expect("writes");
            open_docx(&bytes);
            let text = docx_text(&bytes);
            for label in labels {
                assert!(text.contains(label), "{board}: the seed's {label:?} in\n{text}");
            }
        }
    }
}

/// A practitioner who attaches the board's Word form to a new email, with a line of text in the body,
/// opens a case from the form.
#[tokio::test]
async fn a_new_escalation_on_the_boards_word_form_attached_opens_a_case() {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("dir");
    let form = std::fs::read("tests/fixtures/docx/bradford-word365.docx").expect("fixture");
    let encoded = base64::engine::general_purpose::STANDARD.encode(form);
    let lines: Vec<String> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).to_string())
        .collect();
    let eml = format!(
        "From: Kwabena Asante-Mills <k.asante-mills@nhs.net>\r\nTo: BSAB@bradford.gov.uk\r\nSubject: Escalation - form attached\r\n\
         Message-ID: <attached-form-1@nhs.net>\r\nDate: Mon, 1 Mar 2027 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello, please find the Record of Escalation attached.\r\n\r\nKwabena\r\n--b1\r\n\
         Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document; name=\"Record of Escalation.docx\"\r\n\
         Content-Disposition: attachment; filename=\"Record of Escalation.docx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    );
    std::fs::write(dir.path().join("record.eml"), eml).expect("write");
    let path = dir.path().join("scenario.json");
    std::fs::write(
        &path,
        serde_json::json!({"board": "bradford", "until": "2027-03-01T12:00:00Z", "steps": [
            {"at": "2027-03-01T09:30:00Z", "email": "record.eml"},
        ]})
        .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    assert_eq!(sim.steps[0].outcome, "case_opened", "{:?}", sim.steps[0]);
    let ack = sim
        .emails
        .iter()
        .find(|e| e.kind == "acknowledgement")
        .expect("acknowledged");
    assert!(ack.to.iter().any(|a| a == "k.asante-mills@nhs.net"));
    // The form said stage 2: the case opens there.
    assert!(ack.subject.contains("stage 2"), "{}", ack.subject);
}
