//! Table-driven timelines for all five boards, as shipped in config/: across Christmas and New Year, Easter,
//! the late-May and August bank holidays, a weekend opening and late-evening openings in summer time.

use std::path::Path;

use chrono::{DateTime, Utc};
use escalation_bot::config;
use escalation_bot::core::timeline::timeline;

fn opened(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test instant")
        .with_timezone(&Utc)
}

/// (board, opened, expected "label=date" pairs in date order)
const CASES: &[(&str, &str, &str)] = &[
    // Christmas and New Year: Fri 25 Dec, Mon 28 Dec (Boxing Day substitute), Fri 1 Jan are holidays.
    ("bradford", "2026-12-23T10:00:00Z", "overall=2027-01-20"),
    ("rotherham", "2026-12-23T10:00:00Z", "overall=2027-01-04"),
    ("buckinghamshire", "2026-12-23T10:00:00Z", "overall=2027-01-04"),
    ("south-gloucestershire", "2026-12-23T10:00:00Z", "stage-1=2026-12-24 stage-2=2026-12-29 stage-3=2026-12-30 stage-4=2027-01-04 overall=2027-01-04"),
    ("trafford", "2026-12-23T10:00:00Z", "stage-1=2026-12-24 stage-2=2026-12-30 stage-3=2027-01-04 stage-4=2027-01-11 stage-5=2027-01-18 overall=2027-01-18"),
    // Easter 2027: Good Friday 26 March, Easter Monday 29 March.
    ("bradford", "2027-03-25T10:00:00Z", "overall=2027-04-22"),
    ("rotherham", "2027-03-25T10:00:00Z", "overall=2027-04-05"),
    ("buckinghamshire", "2027-03-25T10:00:00Z", "overall=2027-04-05"),
    ("south-gloucestershire", "2027-03-25T10:00:00Z", "stage-1=2027-03-30 stage-2=2027-03-31 stage-3=2027-04-01 stage-4=2027-04-05 overall=2027-04-05"),
    ("trafford", "2027-03-25T10:00:00Z", "stage-1=2027-03-30 stage-2=2027-04-01 stage-3=2027-04-05 stage-4=2027-04-12 stage-5=2027-04-19 overall=2027-04-19"),
    // Late May: the spring bank holiday is Monday 31 May 2027.
    ("bradford", "2027-05-28T10:00:00Z", "overall=2027-06-25"),
    ("rotherham", "2027-05-28T10:00:00Z", "overall=2027-06-07"),
    ("buckinghamshire", "2027-05-28T10:00:00Z", "overall=2027-06-07"),
    ("south-gloucestershire", "2027-05-28T10:00:00Z", "stage-1=2027-06-01 stage-2=2027-06-02 stage-3=2027-06-03 stage-4=2027-06-07 overall=2027-06-07"),
    ("trafford", "2027-05-28T10:00:00Z", "stage-1=2027-06-01 stage-2=2027-06-03 stage-3=2027-06-07 stage-4=2027-06-14 stage-5=2027-06-21 overall=2027-06-21"),
    // August: the summer bank holiday is Monday 30 August 2027.
    ("bradford", "2027-08-27T10:00:00Z", "overall=2027-09-24"),
    ("rotherham", "2027-08-27T10:00:00Z", "overall=2027-09-06"),
    ("buckinghamshire", "2027-08-27T10:00:00Z", "overall=2027-09-06"),
    ("south-gloucestershire", "2027-08-27T10:00:00Z", "stage-1=2027-08-31 stage-2=2027-09-01 stage-3=2027-09-02 stage-4=2027-09-06 overall=2027-09-06"),
    ("trafford", "2027-08-27T10:00:00Z", "stage-1=2027-08-31 stage-2=2027-09-02 stage-3=2027-09-06 stage-4=2027-09-13 stage-5=2027-09-20 overall=2027-09-20"),
    // Opened on a Saturday: working days count from the weekend date; 28 calendar days may end on a Saturday.
    ("bradford", "2027-02-13T10:00:00Z", "overall=2027-03-13"),
    ("rotherham", "2027-02-13T10:00:00Z", "overall=2027-02-19"),
    ("buckinghamshire", "2027-02-13T10:00:00Z", "overall=2027-02-19"),
    ("south-gloucestershire", "2027-02-13T10:00:00Z", "stage-1=2027-02-15 stage-2=2027-02-16 stage-3=2027-02-17 stage-4=2027-02-19 overall=2027-02-19"),
    ("trafford", "2027-02-13T10:00:00Z", "stage-1=2027-02-15 stage-2=2027-02-17 stage-3=2027-02-19 stage-4=2027-02-26 stage-5=2027-03-05 overall=2027-03-05"),
    // 23:30 UTC on Wednesday 14 July is 00:30 BST on Thursday 15 July: the local date counts.
    ("bradford", "2027-07-14T23:30:00Z", "overall=2027-08-12"),
    ("rotherham", "2027-07-14T23:30:00Z", "overall=2027-07-22"),
    ("buckinghamshire", "2027-07-14T23:30:00Z", "overall=2027-07-22"),
    ("south-gloucestershire", "2027-07-14T23:30:00Z", "stage-1=2027-07-16 stage-2=2027-07-19 stage-3=2027-07-20 stage-4=2027-07-22 overall=2027-07-22"),
    ("trafford", "2027-07-14T23:30:00Z", "stage-1=2027-07-16 stage-2=2027-07-20 stage-3=2027-07-22 stage-4=2027-07-29 stage-5=2027-08-05 overall=2027-08-05"),
    // 22:59 UTC is 23:59 BST, still Wednesday 14 July.
    ("bradford", "2027-07-14T22:59:00Z", "overall=2027-08-11"),
    ("trafford", "2027-07-14T22:59:00+00:00", "stage-1=2027-07-15 stage-2=2027-07-19 stage-3=2027-07-21 stage-4=2027-07-28 stage-5=2027-08-04 overall=2027-08-04"),
];

#[test]
fn timelines_of_all_five_boards() {
    let config = config::load(Path::new("config/default.toml")).expect("shipped configuration loads");
    let mut failures = Vec::new();
    for (board, at, expected) in CASES {
        let rules = &config.board(board).expect("board configured").rules;
        let t = timeline(rules, opened(at));
        let got: Vec<String> = t
            .deadlines
            .iter()
            .map(|d| format!("{}={}", d.label, d.due_date))
            .collect();
        if got.join(" ") != *expected {
            failures.push(format!(
                "{board} opened {at}:\n  expected {expected}\n  got      {}",
                got.join(" ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn timeline_duties_carry_their_dates() {
    let config = config::load(Path::new("config/default.toml")).expect("shipped configuration loads");
    let t = timeline(
        &config.board("south-gloucestershire").expect("board").rules,
        opened("2026-12-23T10:00:00Z"),
    );
    let passed = t
        .duties
        .iter()
        .find(|d| d.when.contains("stage-4"))
        .expect("stage-4 duty");
    // The stage-4 deadline is Monday 4 January; the duty arises the next working day.
    assert_eq!(passed.date.map(|d| d.to_string()).as_deref(), Some("2027-01-05"));
    let t = timeline(
        &config.board("trafford").expect("board").rules,
        opened("2026-12-23T10:00:00Z"),
    );
    let chair = t
        .duties
        .iter()
        .find(|d| d.when.contains("stage 5"))
        .expect("stage-5 duty");
    assert_eq!(chair.date.map(|d| d.to_string()).as_deref(), Some("2027-01-11"));
}
