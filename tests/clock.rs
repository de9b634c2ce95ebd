//! The case clock through `simulate`: whole case lives on each board's shipped policy, against
//! expectations computed by hand (tests/scenarios/*/expected.json, written from POLICIES.md by someone who
//! had not read the scheduler), plus checks of what reminders say, data minimisation, placeholders held,
//! and the bot's own notifications coming back to its mailbox.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{at, config, simulate_file};
use escalation_bot::simulate::{self, SimEmail, Simulation};
use serde_json::Value;

fn london(e: &SimEmail) -> String {
    e.at.with_timezone(&chrono_tz::Europe::London)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn scenario_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("tests/scenarios")
        .expect("tests/scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.json").exists() && p.join("expected.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// Every email of the listed kinds is expected exactly once: same kind, same local minute, same deadline
/// (where given), same recipients (To and Cc as a set).
fn compare(name: &str, sim: &Simulation, expected: &Value) -> Vec<String> {
    let kinds: BTreeSet<String> = expected["exact_kinds"]
        .as_array()
        .expect("exact_kinds")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let mut wanted: Vec<(Value, bool)> = expected["expect"]
        .as_array()
        .expect("expect")
        .iter()
        .map(|e| (e.clone(), false))
        .collect();
    let mut problems = Vec::new();
    for e in sim.emails.iter().filter(|e| kinds.contains(&e.kind)) {
        let to: BTreeSet<String> = e.to.iter().chain(&e.cc).map(|a| a.to_lowercase()).collect();
        let found = wanted.iter_mut().find(|(w, used)| {
            !*used
                && w["kind"] == e.kind.as_str()
                && w["local"] == london(e).as_str()
                && (w.get("deadline").is_none() || w["deadline"] == serde_json::json!(e.deadline))
                && w["to"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_lowercase))
                            .collect::<BTreeSet<_>>()
                    })
                    .as_ref()
                    == Some(&to)
        });
        match found {
            Some((_, used)) => *used = true,
            None => problems.push(format!(
                "{name}: unexpected {} at {} (deadline {:?}) to {:?}: {}",
                e.kind,
                london(e),
                e.deadline,
                to,
                e.subject
            )),
        }
    }
    for (w, used) in &wanted {
        if !used {
            problems.push(format!("{name}: expected but not sent: {w}"));
        }
    }
    problems
}

#[tokio::test]
async fn each_boards_case_lives_send_what_was_computed_by_hand() {
    let dirs = scenario_dirs();
    assert!(dirs.len() >= 5, "the hand-computed scenarios are missing: {dirs:?}");
    let mut problems = Vec::new();
    let mut boards = BTreeSet::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let sim = simulate_file(&dir.join("scenario.json")).await;
        boards.insert(sim.board.clone());
        for s in &sim.steps {
            if !matches!(s.outcome.as_str(), "case_opened" | "command_applied") {
                problems.push(format!(
                    "{name}: a step at {} came to {}: {:?}",
                    s.at, s.outcome, s.problems
                ));
            }
        }
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"))
                .expect("expected.json is JSON");
        problems.extend(compare(&name, &sim, &expected));
    }
    assert_eq!(boards.len(), 5, "every board has a life: {boards:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A scenario of our own: Bradford's record, opened two days before Christmas and left alone.
fn write_bradford(dir: &Path, until: &str, replies: &[(&str, &str, &str)]) -> PathBuf {
    std::fs::copy("tests/fixtures/forms/bradford-plain.eml", dir.join("record.eml")).expect("copy");
    let mut steps = vec![serde_json::json!({"at": "2026-12-23T10:00:00Z", "email": "record.eml"})];
    for (when, from, text) in replies {
        steps.push(serde_json::json!({"at": when, "from": from, "reply": text}));
    }
    let path = dir.join("scenario.json");
    std::fs::write(
        &path,
        serde_json::json!({"board": "bradford", "until": until, "steps": steps}).to_string(),
    )
    .expect("write");
    path
}

#[tokio::test]
async fn timer_emails_say_what_is_due_what_the_policy_asks_and_the_next_step() {
    let dir = tempfile::tempdir().expect("dir");
    let sim = simulate_file(&write_bradford(dir.path(), "2027-02-01T12:00:00Z", &[])).await;
    let kinds: Vec<(&str, String)> = sim
        .emails
        .iter()
        .filter(|e| e.kind != "digest")
        .map(|e| (e.kind.as_str(), london(e)))
        .collect();
    // The board's weekly digest goes on Mondays at 09:00; Monday 28 December 2026 is a bank holiday (Boxing
    // Day's substitute), so that week's goes on Tuesday.
    let digests: Vec<String> = sim.emails.iter().filter(|e| e.kind == "digest").map(london).collect();
    assert_eq!(
        digests,
        vec![
            "2026-12-29 09:00",
            "2027-01-04 09:00",
            "2027-01-11 09:00",
            "2027-01-18 09:00",
            "2027-01-25 09:00",
            "2027-02-01 09:00"
        ]
    );
    assert_eq!(
        kinds,
        vec![
            ("acknowledgement", "2026-12-23 10:00".to_string()),
            ("reminder", "2027-01-13 09:00".to_string()),
            ("reminder", "2027-01-20 09:00".to_string()),
            ("overdue", "2027-01-21 09:00".to_string()),
            ("notification", "2027-01-21 09:00".to_string()),
        ]
    );
    let clock: Vec<&SimEmail> = sim.emails.iter().filter(|e| e.kind != "digest").collect();
    let today = clock[2];
    assert!(today.subject.contains("due today"), "{}", today.subject);
    assert!(today.text.contains("Wednesday 20 January 2027"), "{}", today.text);
    assert!(
        today.text.contains("What the policy asks at this stage"),
        "{}",
        today.text
    );
    assert!(today.text.contains("ESCALATE"), "{}", today.text);
    assert!(today.text.contains("RESOLVED"), "{}", today.text);
    assert_eq!(today.deadline.as_deref(), Some("overall"));
    assert!(!today.late);
    let overdue = clock[3];
    assert!(
        overdue.text.contains("passed at the end of Wednesday 20 January 2027"),
        "{}",
        overdue.text
    );
    assert!(
        overdue.text.contains("Business Unit Manager has been told"),
        "{}",
        overdue.text
    );
    let note = clock[4];
    assert_eq!(note.to, vec!["BSAB@bradford.gov.uk".to_string()]);
    assert!(note.text.contains("28 days"), "{}", note.text);
}

#[tokio::test]
async fn escalation_moves_the_reminders_to_the_people_taking_it_on_and_resolution_ends_them() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_bradford(
        dir.path(),
        "2027-03-01T12:00:00Z",
        &[
            (
                "2027-01-05T14:00:00Z",
                "nia.nurse@nhs.net",
                "ESCALATE\nLine manager: Lee Lead <lee.lead@nhs.net>\nTeam manager: Tess Team <tess.team@westshire.gov.uk>\nWe could not agree.",
            ),
            (
                "2027-01-14T11:00:00Z",
                "lee.lead@nhs.net",
                "RESOLVED\nThe enquiry is reopened and a joint visit booked.",
            ),
        ],
    );
    let sim = simulate_file(&path).await;
    let reminders: Vec<&SimEmail> = sim.emails.iter().filter(|e| e.kind == "reminder").collect();
    // The overall deadline stays (28 days from opening); its first reminder goes to the stage-2 people.
    assert_eq!(reminders.len(), 1, "{reminders:#?}");
    assert_eq!(london(reminders[0]), "2027-01-13 09:00");
    let to: BTreeSet<&str> = reminders[0].to.iter().map(String::as_str).collect();
    assert_eq!(to, BTreeSet::from(["lee.lead@nhs.net", "tess.team@westshire.gov.uk"]));
    // Resolved on the 14th: no due-today reminder, no overdue notice, and the roles told at once.
    assert!(!sim.emails.iter().any(|e| e.kind == "overdue"));
    let told: BTreeSet<String> = sim
        .emails
        .iter()
        .filter(|e| e.kind == "notification")
        .flat_map(|e| e.to.clone())
        .collect();
    assert_eq!(
        told,
        BTreeSet::from([
            "BSAB@bradford.gov.uk".to_string(),
            "independent-chair@bradford-sab.invalid".to_string(),
            "nia.nurse@nhs.net".to_string(),
        ])
    );
    for e in sim.emails.iter().filter(|e| e.kind == "notification") {
        assert_eq!(london(e), "2027-01-14 11:00", "{}", e.subject);
        // The placeholder is held with its reason, never sent to .invalid.
        assert_eq!(e.held.is_some(), e.to[0].ends_with(".invalid"), "{e:#?}");
    }
}

#[tokio::test]
async fn no_adult_name_or_nhs_number_in_reminders_overdue_notices_or_notifications() {
    let mut scanned = 0;
    let mut leaks = Vec::new();
    let mut dirs = scenario_dirs();
    let own = tempfile::tempdir().expect("dir");
    write_bradford(own.path(), "2027-02-01T12:00:00Z", &[]);
    dirs.push(own.path().to_path_buf());
    for dir in dirs {
        let record = std::fs::read_to_string(dir.join("record.eml")).unwrap_or_default();
        let sim = simulate_file(&dir.join("scenario.json")).await;
        // The adult's name and NHS number as the record gives them.
        let mut secrets = Vec::new();
        for line in record.lines() {
            let lower = line.to_lowercase();
            if let Some((label, value)) = line.split_once(':') {
                let value = value.trim();
                if value.is_empty() {
                    continue;
                }
                if lower.contains("nhs number") {
                    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
                    secrets.push(digits.clone());
                    secrets.push(value.to_string());
                } else if label.to_lowercase().contains("adult") && label.to_lowercase().contains("name")
                    || label.to_lowercase().contains("service user name")
                {
                    secrets.push(value.to_string());
                    // Each part of the name on its own: a surname in an outcome is as telling.
                    secrets.extend(
                        value
                            .split(|c: char| !c.is_alphanumeric())
                            .filter(|p| p.chars().count() >= 3)
                            .map(str::to_string),
                    );
                }
            }
        }
        assert!(
            !secrets.is_empty(),
            "{}: no adult name or NHS number found in the record",
            dir.display()
        );
        for e in sim.emails.iter().filter(|e| {
            matches!(
                e.kind.as_str(),
                "reminder" | "overdue" | "notification" | "review" | "digest"
            )
        }) {
            scanned += 1;
            let all = format!("{}\n{}", e.subject, e.text);
            let digits: String = all.chars().filter(char::is_ascii_digit).collect();
            for s in &secrets {
                let hit = if s.chars().all(|c| c.is_ascii_digit()) {
                    s.len() == 10 && digits.contains(s.as_str())
                } else {
                    // As a word (a name part inside another word, "Ann" in "Annual", is no leak).
                    all.split(|c: char| !c.is_alphanumeric())
                        .any(|w| w.eq_ignore_ascii_case(s))
                        || (s.contains(' ') && all.contains(s.as_str()))
                };
                if hit {
                    leaks.push(format!("{}: {} {} contains {s:?}", dir.display(), e.kind, e.subject));
                }
            }
        }
    }
    assert!(scanned >= 10, "too few emails scanned: {scanned}");
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

#[tokio::test]
async fn a_board_that_turns_personal_data_on_gets_the_adults_name_in_its_reminders() {
    let mut c = config();
    for b in &mut c.boards {
        b.settings.personal_data_in_notifications = true;
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = write_bradford(dir.path(), "2027-02-01T12:00:00Z", &[]);
    let scenario = simulate::load(&path).expect("scenario");
    let sim = simulate::run(c, &scenario, &path).await.expect("runs");
    let reminder = sim.emails.iter().find(|e| e.kind == "reminder").expect("a reminder");
    assert!(reminder.text.contains("Zoë Testperson"), "{}", reminder.text);
}

#[tokio::test]
async fn simulate_never_touches_the_configured_database_or_folders() {
    let dir = tempfile::tempdir().expect("dir");
    let mut c = config();
    let db = dir.path().join("real.sqlite3");
    c.settings.database = escalation_bot::config::Database::Sqlite(db.clone());
    c.settings.mailbox_dir = dir.path().join("mail");
    c.settings.outbox_dir = dir.path().join("out");
    let path = write_bradford(dir.path(), "2027-01-10T12:00:00Z", &[]);
    let scenario = simulate::load(&path).expect("scenario");
    let sim = simulate::run(c, &scenario, &path).await.expect("runs");
    assert!(!sim.emails.is_empty());
    assert!(!db.exists());
    assert!(!dir.path().join("mail").exists());
    assert!(!dir.path().join("out").exists());
}

#[tokio::test]
async fn the_bots_own_notification_in_its_mailbox_is_filed_not_processed() {
    use escalation_bot::mail::pipeline::{Pipeline, Source};
    use escalation_bot::mail::source::Ack;
    use escalation_bot::scheduler;
    use escalation_bot::store::Store;
    let c = config();
    let (store, db) = common::TestDb::sqlite().await;
    escalation_bot::app::prepare_store(&c, &store, at("2026-12-23T10:00:00Z"))
        .await
        .expect("store");
    let pipeline = Pipeline::new(&c, vec![7; 32]).expect("pipeline");
    let raw = std::fs::read("tests/fixtures/forms/bradford-plain.eml").expect("fixture");
    let r = pipeline
        .process_isolated(
            &store,
            &Source::default(),
            &raw,
            Some("bradford"),
            at("2026-12-23T10:00:00Z"),
            false,
        )
        .await
        .expect("processed");
    assert_eq!(r.outcome, "case_opened");
    let fired = scheduler::run_until(
        &pipeline,
        &store,
        at("2026-12-23T10:00:00Z"),
        at("2027-01-22T12:00:00Z"),
    )
    .await
    .expect("scheduler");
    assert!(fired.emails >= 5, "{fired:?}");
    // The Business Unit Manager's notice, as the board mailbox would receive it.
    let outbox = store.outbox(None).await.expect("outbox");
    let notice = outbox
        .iter()
        .find(|r| r.email.kind == "notification" && r.email.to == vec!["BSAB@bradford.gov.uk".to_string()])
        .expect("the notice to the board mailbox");
    let message = escalation_bot::mail::send::build_message(&notice.email, at("2027-01-21T09:00:00Z"))
        .expect("builds")
        .formatted();
    let report = pipeline
        .process_isolated(
            &store,
            &Source {
                mailbox: "maildir:bradford".into(),
                uidvalidity: Some(1),
                uid: Some(99),
            },
            &message,
            Some("bradford"),
            at("2027-01-21T09:01:00Z"),
            false,
        )
        .await
        .expect("processed");
    assert_eq!(report.ack(), Ack::File, "{report:?}");
    assert_eq!(report.outcome, "ignored");
    // Nothing answered it, and the case did not move.
    assert_eq!(store.outbox(None).await.expect("outbox").len(), outbox.len());
    // Seen again (the daemon stopped before the source filed it): filed again, not moved to Processed.
    let again = pipeline
        .process_isolated(
            &store,
            &Source {
                mailbox: "maildir:bradford".into(),
                uidvalidity: Some(1),
                uid: Some(99),
            },
            &message,
            Some("bradford"),
            at("2027-01-21T09:05:00Z"),
            false,
        )
        .await
        .expect("processed");
    assert_eq!(again.ack(), Ack::File, "{again:?}");
    db.cleanup().await;
}

#[tokio::test]
async fn an_extension_moves_the_reminders_and_a_review_date_brings_a_review_prompt() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(
        "tests/fixtures/forms/south-gloucestershire-plain.eml",
        dir.path().join("record.eml"),
    )
    .expect("copy");
    let path = dir.path().join("scenario.json");
    // Opened Wednesday 2 June 2027: stage 1 is due Thursday 3 June, the 5-working-day mark Wednesday 9
    // June. Extended by 2 working days on the 2nd: stage 1 moves to Monday 7 June, the mark to Friday 11.
    std::fs::write(
        &path,
        serde_json::json!({"board": "south-gloucestershire", "until": "2027-07-10T12:00:00Z", "steps": [
            {"at": "2027-06-02T09:30:00Z", "email": "record.eml"},
            {"at": "2027-06-02T13:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "EXTEND 2\nThe social worker is on leave until Friday."},
            {"at": "2027-06-07T13:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "RESOLVED\nA joint visit is agreed.\nActions: visit by 14 June (Sam Social)\nReview date: 2027-07-01"},
        ]})
        .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    assert!(
        sim.steps
            .iter()
            .all(|s| s.outcome == "case_opened" || s.outcome == "command_applied"),
        "{:?}",
        sim.steps
    );
    let clock: Vec<(String, String, Option<String>)> = sim
        .emails
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "reminder" | "overdue" | "review"))
        .map(|e| (e.kind.clone(), london(e), e.deadline.clone()))
        .collect();
    assert_eq!(
        clock,
        vec![
            // Not Thursday 3 June: the extension moved it.
            (
                "reminder".to_string(),
                "2027-06-07 09:00".to_string(),
                Some("stage-1".to_string())
            ),
            // The review prompt on the review date, at the start of working hours.
            ("review".to_string(), "2027-07-01 09:00".to_string(), None),
            // Unanswered, it is asked once more a working week later, and then no more.
            ("review".to_string(), "2027-07-08 09:00".to_string(), None),
        ]
    );
    let review = sim.emails.iter().find(|e| e.kind == "review").expect("review");
    assert!(review.text.contains("IMPLEMENTED"), "{}", review.text);
    let again = sim.emails.iter().filter(|e| e.kind == "review").nth(1).expect("again");
    assert!(again.text.contains("this is the last prompt"), "{}", again.text);
    assert!(again.subject.contains("reminder"), "{}", again.subject);

    // Answered IMPLEMENTED after the first prompt: the second is not sent.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(
        "tests/fixtures/forms/south-gloucestershire-plain.eml",
        dir.path().join("record.eml"),
    )
    .expect("copy");
    let path = dir.path().join("scenario.json");
    std::fs::write(
        &path,
        serde_json::json!({"board": "south-gloucestershire", "until": "2027-07-20T12:00:00Z", "steps": [
            {"at": "2027-06-02T09:30:00Z", "email": "record.eml"},
            {"at": "2027-06-02T13:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "RESOLVED\nA joint visit is agreed.\nReview date: 2027-07-01"},
            {"at": "2027-07-01T13:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "IMPLEMENTED\nThe visit took place on 14 June."},
        ]})
        .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    assert_eq!(sim.steps[2].outcome, "command_applied", "{:?}", sim.steps[2]);
    let reviews: Vec<String> = sim.emails.iter().filter(|e| e.kind == "review").map(london).collect();
    assert_eq!(reviews, vec!["2027-07-01 09:00".to_string()]);
}

#[tokio::test]
async fn south_gloucestershires_five_day_mark_is_met_by_reaching_stage_4() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(
        "tests/fixtures/forms/south-gloucestershire-plain.eml",
        dir.path().join("record.eml"),
    )
    .expect("copy");
    let path = dir.path().join("scenario.json");
    // Opened Wednesday 2 June 2027 (the mark: Wednesday 9 June). Stages 2, 3 and then 4 by Monday 7 June:
    // at stage 4 nothing more is due by the mark, and the Strategic Safeguarding Service Manager is not
    // told of a missed mark (the representatives contact them if it stays unresolved).
    let steps = serde_json::json!([
        {"at": "2027-06-02T09:30:00Z", "email": "record.eml"},
        {"at": "2027-06-02T13:00:00Z", "from": "nia.nurse@nhs.net",
         "reply": "ESCALATE\nLine manager: Lee Lead <lee.lead@nhs.net>"},
        {"at": "2027-06-03T13:00:00Z", "from": "nia.nurse@nhs.net",
         "reply": "ESCALATE\nSenior manager: Sol Senior <sol.senior@nhs.net>"},
        {"at": "2027-06-07T13:00:00Z", "from": "nia.nurse@nhs.net",
         "reply": "ESCALATE\nSGSAB representative: Rae Rep <rae.rep@nhs.net>"},
    ]);
    std::fs::write(
        &path,
        serde_json::json!({"board": "south-gloucestershire", "until": "2027-06-30T12:00:00Z", "steps": steps})
            .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    assert!(
        sim.steps
            .iter()
            .all(|s| s.outcome == "case_opened" || s.outcome == "command_applied"),
        "{:?}",
        sim.steps
    );
    let after: Vec<(String, String, Option<String>)> = sim
        .emails
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "reminder" | "overdue" | "notification"))
        .filter(|e| london(e).as_str() >= "2027-06-07 14:00")
        .map(|e| (e.kind.clone(), london(e), e.deadline.clone()))
        .collect();
    assert!(after.is_empty(), "nothing after reaching stage 4: {after:?}");
    // Before it, the stage-3 deadline (Monday 7 June) was reminded at 09:00 to the senior manager.
    assert!(sim.emails.iter().any(|e| e.kind == "reminder"
        && london(e) == "2027-06-07 09:00"
        && e.to == vec!["sol.senior@nhs.net".to_string()]));
}

#[test]
fn a_timer_is_late_when_its_moment_passed_unattended_not_when_it_was_written_after_it() {
    use escalation_bot::core::lifecycle::is_late;
    let nine = at("2027-01-20T09:00:00Z");
    // Down from eight to three: the reminder goes at three, late, though on the same day.
    assert!(is_late(
        nine,
        Some(at("2027-01-05T10:00:00Z")),
        at("2027-01-20T15:00:00Z")
    ));
    // A moment after nine, as a busy daemon would: on time.
    assert!(!is_late(
        nine,
        Some(at("2027-01-05T10:00:00Z")),
        at("2027-01-20T09:00:40Z")
    ));
    // Written at noon for a deadline already missed (an escalation into an overdue stage): on time.
    assert!(!is_late(
        nine,
        Some(at("2027-01-20T12:00:00Z")),
        at("2027-01-20T12:00:01Z")
    ));
    // Written before this was recorded: judged by the clock alone.
    assert!(is_late(nine, None, at("2027-01-21T09:00:00Z")));
}

#[test]
fn redaction_takes_each_part_of_the_adults_name_and_any_ten_digit_number_out_of_free_text() {
    use escalation_bot::core::case::Record;
    use escalation_bot::mail::compose::redact;
    let record = Record {
        adult_name: Some("Albert Fairweather".into()),
        ..Record::default()
    };
    assert_eq!(
        redact(
            "Offer Mrs Fairweather a carer's assessment; NHS 999 000 0018 noted.",
            &record
        ),
        "Offer Mrs [name] a carer's assessment; NHS [number] noted."
    );
    assert_eq!(
        redact("ALBERT agreed. Call 0113 496 0000 ext 12.", &record),
        "[name] agreed. Call 0113 496 0000 ext 12."
    );
    assert_eq!(
        redact("Albertine is unrelated; Zoë Ünïcode ✓", &record),
        "Albertine is unrelated; Zoë Ünïcode ✓"
    );
}

#[tokio::test]
async fn add_brings_people_in_at_the_current_stage_and_they_get_its_reminders() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_bradford(
        dir.path(),
        "2027-01-14T12:00:00Z",
        &[(
            "2026-12-24T11:00:00Z",
            "nia.nurse@nhs.net",
            "ADD\nTeam manager: Tess Team <tess.team@westshire.gov.uk>\n\nThanks",
        )],
    );
    let sim = simulate_file(&path).await;
    assert_eq!(sim.steps[1].outcome, "command_applied", "{:?}", sim.steps[1]);
    // Still at stage 1: the confirmation tells everyone, and the 13 January reminder reaches all three.
    let reminder = sim.emails.iter().find(|e| e.kind == "reminder").expect("reminder");
    let to: BTreeSet<&str> = reminder.to.iter().map(String::as_str).collect();
    assert_eq!(
        to,
        BTreeSet::from([
            "nia.nurse@nhs.net",
            "sam.social@westshire.gov.uk",
            "tess.team@westshire.gov.uk"
        ])
    );
    assert!(reminder.subject.contains("stage 1"), "{}", reminder.subject);
}

#[tokio::test]
async fn agreed_actions_with_owners_and_dates_are_reviewed_with_their_owners() {
    // Trafford, opened Monday 11 January 2027. Resolved on the 12th with two actions, one owner with an
    // address and a date, one without either, and no review date: the review falls on the last action's
    // date (Friday 29 January), and goes to the owner who gave an address.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy("tests/fixtures/forms/trafford-plain.eml", dir.path().join("record.eml")).expect("copy");
    let path = dir.path().join("scenario.json");
    let resolved = "RESOLVED – joint visit agreed\n\nActions:\n- Dr Priya Nair <priya.nair@nhs.net> to review the medication by 29/01/2027\n- district nurse to book the joint visit\n\nOutstanding issues: the housing question goes to the MARM meeting on 3 March 2027.";
    std::fs::write(
        &path,
        serde_json::json!({"board": "trafford", "until": "2027-03-20T12:00:00Z", "steps": [
            {"at": "2027-01-11T09:30:00Z", "email": "record.eml"},
            {"at": "2027-01-12T10:00:00Z", "from": "nia.nurse@nhs.net", "reply": resolved},
            {"at": "2027-02-01T11:00:00Z", "from": "priya.nair@nhs.net", "reply": "IMPLEMENTED\nMedication reviewed on 28 January."},
        ]})
        .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    assert!(
        sim.steps
            .iter()
            .all(|s| s.outcome == "case_opened" || s.outcome == "command_applied"),
        "{:?}",
        sim.steps
    );
    // The written confirmation of the outcome lists each action with its owner and date, and the
    // outstanding issues.
    let confirmation = sim
        .emails
        .iter()
        .find(|e| e.kind == "confirmation" && e.text.contains("written confirmation"))
        .expect("confirmation of the resolution");
    for phrase in [
        "Outcome:      joint visit agreed",
        "- Dr Priya Nair <priya.nair@nhs.net> to review the medication by 29/01/2027\n",
        "district nurse to book the joint visit",
        "Outstanding issues, and how they will be pursued: the housing question goes to the MARM meeting",
        "Review date:  Friday 29 January 2027",
    ] {
        assert!(
            confirmation.text.contains(phrase),
            "{phrase:?} in\n{}",
            confirmation.text
        );
    }
    assert!(
        confirmation
            .cc
            .iter()
            .chain(&confirmation.to)
            .any(|a| a == "priya.nair@nhs.net"),
        "the owner has it too"
    );
    let reviews: Vec<(String, Vec<String>)> = sim
        .emails
        .iter()
        .filter(|e| e.kind == "review")
        .map(|e| (london(e), e.to.clone()))
        .collect();
    assert_eq!(
        reviews,
        // The owner with an address, and (for the district nurse's action, which has none) the people
        // who resolved it.
        vec![(
            "2027-01-29 09:00".to_string(),
            vec![
                "priya.nair@nhs.net".to_string(),
                "nia.nurse@nhs.net".to_string(),
                "sam.social@westshire.gov.uk".to_string()
            ]
        )]
    );
    let review = sim.emails.iter().find(|e| e.kind == "review").expect("review");
    assert!(review.text.contains("Agreed action: Dr Priya Nair"), "{}", review.text);
    assert!(review.text.contains("Outstanding issues"), "{}", review.text);

    // No dates at all: Trafford checks agreed actions 20 working days after resolution (a reading), with
    // the people at the stage when no owner gave an address.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy("tests/fixtures/forms/trafford-plain.eml", dir.path().join("record.eml")).expect("copy");
    let path = dir.path().join("scenario.json");
    std::fs::write(
        &path,
        serde_json::json!({"board": "trafford", "until": "2027-03-20T12:00:00Z", "steps": [
            {"at": "2027-01-11T09:30:00Z", "email": "record.eml"},
            {"at": "2027-01-12T10:00:00Z", "from": "nia.nurse@nhs.net",
             "reply": "RESOLVED\nJoint visit agreed.\nActions: district nurse to book the joint visit; ASC to start four calls a day"},
        ]})
        .to_string(),
    )
    .expect("write");
    let sim = simulate_file(&path).await;
    let reviews: Vec<String> = sim.emails.iter().filter(|e| e.kind == "review").map(london).collect();
    // Tuesday 12 January + 20 working days = Tuesday 9 February; asked again a week later.
    assert_eq!(
        reviews,
        vec!["2027-02-09 09:00".to_string(), "2027-02-16 09:00".to_string()]
    );

    // Another board without a date: no review (the check is Trafford's reading).
    let dir = tempfile::tempdir().expect("dir");
    let path = write_bradford(
        dir.path(),
        "2027-03-20T12:00:00Z",
        &[(
            "2026-12-23T14:00:00Z",
            "nia.nurse@nhs.net",
            "RESOLVED\nJoint visit agreed.\nActions: district nurse to book the joint visit",
        )],
    );
    let sim = simulate_file(&path).await;
    assert!(sim.emails.iter().all(|e| e.kind != "review"));
}
