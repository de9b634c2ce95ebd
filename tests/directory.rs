//! Whom to involve next: South Gloucestershire's Appendix 2 and Bradford's Appendix 3 key contacts as
//! policy data, told to each side in acknowledgements and reminders; a board's own directory (CSV) of named
//! people, loaded with the configuration, listed the same way, and used by ESCALATE naming a role.

mod common;

use std::fs;
use std::path::Path;

use escalation_bot::config;
use escalation_bot::core::case::Person;
use escalation_bot::core::lifecycle::{self, Command};
use escalation_bot::simulate::{self, Simulation};

use common::{at, copy_config};

/// The shipped configuration with a directory for Trafford and South Gloucestershire.
fn with_directory(csv: &str) -> (tempfile::TempDir, config::Config) {
    let (dir, root) = copy_config();
    fs::write(root.join("boards/directory.csv"), csv).expect("write");
    for board in ["trafford", "south-gloucestershire"] {
        let path = root.join(format!("boards/{board}.toml"));
        let s = fs::read_to_string(&path).expect("read");
        // A top-level key: before the first table.
        let at = s.find("\n[").expect("a table");
        let s = format!("{}\ndirectory = \"directory.csv\"\n{}", &s[..at], &s[at..]);
        fs::write(&path, s).expect("write");
    }
    let c = config::load(&root.join("default.toml")).expect("loads with the directory");
    (dir, c)
}

const DIRECTORY: &str = "\u{feff}Role,Agency,Name,Email,Stage\n\
Head of Safeguarding,Northfield Community Health NHS Trust,Hana Head,hana.head@nhs.net,\n\
Head of Safeguarding,Westshire Council,Harriet Hale,harriet.hale@westshire.gov.uk,\n\
Team manager,Westshire Council,Tess Team,tess.team@westshire.gov.uk,2\n\
Head of Safeguarding,Eastshire Council,Ed East,ed.east@eastshire.gov.uk,\n";

async fn simulate_with(
    c: config::Config,
    dir: &Path,
    board: &str,
    fixture: &str,
    steps: Vec<serde_json::Value>,
) -> Simulation {
    fs::copy(fixture, dir.join("record.eml")).expect("copy");
    let mut all = vec![serde_json::json!({"at": "2027-03-01T09:30:00Z", "email": "record.eml"})];
    all.extend(steps);
    let path = dir.join("scenario.json");
    fs::write(
        &path,
        serde_json::json!({"board": board, "until": "2027-03-05T12:00:00Z", "steps": all}).to_string(),
    )
    .expect("write");
    let scenario = simulate::load(&path).expect("scenario");
    simulate::run(c, &scenario, &path).await.expect("runs")
}

#[test]
fn a_directory_loads_with_the_board_and_a_bad_one_is_refused_with_its_line() {
    let (_dir, c) = with_directory(DIRECTORY);
    let t = c.board("trafford").expect("trafford");
    assert_eq!(t.rules.directory.len(), 4);
    assert_eq!(t.rules.directory[2].stage, Some(2));

    let (_dir, root) = copy_config();
    fs::write(
        root.join("boards/directory.csv"),
        "role,agency,name,email\nTeam manager,Westshire Council,Tess Team,tess.team(at)westshire\n",
    )
    .expect("write");
    let path = root.join("boards/trafford.toml");
    let s = fs::read_to_string(&path).expect("read");
    let at = s.find("\n[").expect("table");
    fs::write(
        &path,
        format!("{}\ndirectory = \"directory.csv\"\n{}", &s[..at], &s[at..]),
    )
    .expect("write");
    let errors = config::load(&root.join("default.toml")).expect_err("refused");
    let text = format!("{errors}");
    assert!(
        text.contains("directory") && text.contains("line 2") && text.contains("not an email address"),
        "{text}"
    );
}

#[test]
fn escalate_may_name_a_role_and_the_directory_gives_the_people() {
    let (_dir, c) = with_directory(DIRECTORY);
    let board = c.board("trafford").expect("trafford");
    let opened = lifecycle::open(
        &board.rules,
        &common::new_case(),
        "TRAF-2027-0001",
        at("2027-03-01T09:30:00Z"),
    )
    .expect("opens")
    .case;
    let mut case = opened.clone();
    case.record.escalating_agency = Some("Northfield Community Health NHS Trust".into());
    case.record.other_agency = Some("Westshire Council Adult Social Care".into());
    // "Team manager" is Westshire's (the directory says stage 2); "Head of Safeguarding" alone would be
    // both agencies' — here it is named with its agency.
    let escalate = Command::Escalate {
        to_stage: None,
        people: Vec::new(),
        reason: Some("Team manager\nHead of Safeguarding, Northfield Community Health\nWe could not agree.".into()),
        immediate_risk: false,
    };
    let t = lifecycle::apply(
        &board.rules,
        &case,
        &Person::email("nia.nurse@nhs.net"),
        &escalate,
        at("2027-03-01T14:00:00Z"),
    )
    .expect("escalates");
    let at_stage_2: Vec<&str> = t
        .case
        .participants
        .iter()
        .filter(|p| p.stage == 2)
        .map(|p| p.email.as_str())
        .collect();
    assert_eq!(at_stage_2, vec!["tess.team@westshire.gov.uk", "hana.head@nhs.net"]);
    // Eastshire's Head of Safeguarding is not on this case.
    assert!(!t.case.is_participant("ed.east@eastshire.gov.uk"));

    // A role the directory does not have, and no address: the sender is told what is needed.
    let unknown = Command::Escalate {
        to_stage: None,
        people: Vec::new(),
        reason: Some("Chief executive".into()),
        immediate_risk: false,
    };
    let e = lifecycle::apply(
        &board.rules,
        &case,
        &Person::email("nia.nurse@nhs.net"),
        &unknown,
        at("2027-03-01T14:00:00Z"),
    )
    .expect_err("nobody to take it on");
    assert!(e.0.contains("name and email address"), "{}", e.0);
}

#[tokio::test]
async fn each_side_is_told_whom_to_approach_at_the_next_stage() {
    // South Gloucestershire: Appendix 2 for each side's kind of agency, and the directory's people.
    let (_dir, c) = with_directory(DIRECTORY);
    let dir = tempfile::tempdir().expect("dir");
    let sim = simulate_with(
        c,
        dir.path(),
        "south-gloucestershire",
        "tests/fixtures/forms/south-gloucestershire-plain.eml",
        vec![],
    )
    .await;
    let ack = sim.emails.iter().find(|e| e.kind == "acknowledgement").expect("ack");
    for line in [
        "Whom to approach at stage 2 (Manager to manager) if it cannot be resolved at this stage:",
        "Northfield Community Health NHS Trust (secondary care): Line manager and Safeguarding Lead or supervisor",
        "Westshire Council Adult Social Care (local authority): Line manager and team manager",
        "Tess Team (Team manager, Westshire Council) <tess.team@westshire.gov.uk>",
        "Hana Head (Head of Safeguarding, Northfield Community Health NHS Trust) <hana.head@nhs.net>",
    ] {
        assert!(ack.text.contains(line), "{line:?} in\n{}", ack.text);
    }
    assert!(!ack.text.contains("Ed East"), "another agency's people are not listed");
    let reminder = sim.emails.iter().find(|e| e.kind == "reminder").expect("reminder");
    assert!(
        reminder.text.contains("To approach at stage 2 (Manager to manager) if it is not resolved: Westshire Council Adult Social Care (local authority): Line manager and team manager"),
        "{}",
        reminder.text
    );

    // Bradford: Appendix 3's key contact for the council the disagreement is with.
    let dir = tempfile::tempdir().expect("dir");
    let record = fs::read_to_string("tests/fixtures/forms/bradford-plain.eml")
        .expect("read")
        .replace(
            "Westshire Council Adult Social Care",
            "Bradford Council Adult Social Care",
        );
    fs::write(dir.path().join("bradford.eml"), record).expect("write");
    let sim = simulate_with(
        common::config(),
        dir.path(),
        "bradford",
        dir.path().join("bradford.eml").to_str().expect("path"),
        vec![],
    )
    .await;
    let ack = sim.emails.iter().find(|e| e.kind == "acknowledgement").expect("ack");
    assert!(
        ack.text
            .contains("City of Bradford Metropolitan District Council (CBMDC): Service Manager, Adult Safeguarding"),
        "{}",
        ack.text
    );
    assert!(
        !ack.text.contains("Airedale"),
        "only the organisations on the case: {}",
        ack.text
    );
}

#[test]
fn the_example_directory_shipped_for_boards_reads() {
    let text = fs::read_to_string("config/directories/example.csv").expect("shipped");
    let entries = escalation_bot::core::directory::parse_csv(&text).expect("reads");
    assert_eq!(entries.len(), 4);
    assert!(
        entries.iter().all(|e| e.email.ends_with(".invalid")),
        "invented people only"
    );
}
