//! Every transition of the case lifecycle and every refusal, on the shipped policies: opening (with scope,
//! stage and field checks), escalation (next stage, skipping for immediate risk, the last stage), Trafford's
//! re-chaining, South Gloucestershire's extension, resolution with its duties, withdrawal, notes, agreed
//! actions implemented, and what a fired timer calls for. Pure: no database, no clock.

mod common;

use chrono::{DateTime, NaiveDate, Utc};
use common::{config, record};
use escalation_bot::config::Config;
use escalation_bot::core::case::{Case, CaseStatus, Person, Record};
use escalation_bot::core::lifecycle::{apply, on_timer, open, Command, NewCase, Transition};
use escalation_bot::core::policy::Role;
use escalation_bot::core::rules::BoardRules;
use escalation_bot::core::schedule::{DeadlineKind, TimerKind};

fn rules<'a>(c: &'a Config, board: &str) -> &'a BoardRules {
    &c.board(board).expect("board").rules
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("instant").with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn new_case(r: Record) -> NewCase {
    NewCase {
        record: r,
        sender: Person::email("nia.nurse@nhs.net"),
    }
}

fn opened(rules: &BoardRules, reference: &str, when: &str) -> Transition {
    open(rules, &new_case(record()), reference, at(when)).expect("opens")
}

fn person(email: &str) -> Person {
    Person {
        email: email.into(),
        name: Some("Invented Manager".into()),
        agency: None,
    }
}

fn escalate(to: Option<u8>, risk: bool) -> Command {
    Command::Escalate {
        to_stage: to,
        people: vec![person("manager.one@westshire.gov.uk")],
        reason: None,
        immediate_risk: risk,
    }
}

fn due(t: &Transition, label: &str) -> Option<String> {
    t.deadlines
        .iter()
        .find(|d| d.label == label)
        .map(|d| d.due_date.to_string())
}

fn roles(t: &Transition) -> Vec<Role> {
    t.notifications.iter().map(|n| n.role).collect()
}

fn actor() -> Person {
    person("nia.nurse@nhs.net")
}

#[test]
fn opening_a_bradford_case() {
    let c = config();
    let r = rules(&c, "bradford");
    let t = opened(r, "BRAD-2026-0001", "2026-12-23T10:00:00Z");
    let case = &t.case;
    assert_eq!(case.status, CaseStatus::Open);
    assert_eq!(case.stage, 1);
    assert_eq!(
        case.record.nhs_number.as_deref(),
        Some("9990000018"),
        "NHS number normalised"
    );
    assert_eq!(case.participants.len(), 2);
    assert_eq!(case.referrer().map(|p| p.email.as_str()), Some("nia.nurse@nhs.net"));
    assert_eq!(due(&t, "overall").as_deref(), Some("2027-01-20"));
    assert_eq!(t.event.kind, "opened");
    // Reminders five working days before and on the morning of the due date (09:00 GMT), then overdue.
    let timers: Vec<(TimerKind, String)> = t
        .timers
        .created
        .iter()
        .map(|x| (x.kind, x.fire_at.to_rfc3339()))
        .collect();
    assert_eq!(
        timers,
        vec![
            (TimerKind::Reminder, "2027-01-13T09:00:00+00:00".to_string()),
            (TimerKind::Reminder, "2027-01-20T09:00:00+00:00".to_string()),
            (TimerKind::Overdue, "2027-01-21T09:00:00+00:00".to_string()),
        ]
    );
    assert!(t.timers.cancelled.is_empty());
    assert!(t.notifications.is_empty(), "Bradford notifies no one on opening");
    assert!(t.guidance.iter().any(|g| g.title.contains("stage 1")));
}

#[test]
fn reminders_fire_at_nine_local_time_in_summer() {
    let c = config();
    let t = opened(rules(&c, "rotherham"), "ROTH-2027-0001", "2027-07-14T23:30:00Z");
    // Due Thursday 22 July; 09:00 BST is 08:00 UTC.
    let reminder = t
        .timers
        .created
        .iter()
        .find(|x| x.kind == TimerKind::Reminder)
        .expect("reminder");
    assert_eq!(reminder.fire_at, at("2027-07-22T08:00:00Z"));
}

#[test]
fn opening_refusals_list_every_problem() {
    let c = config();
    let r = rules(&c, "bradford");
    let bad = Record {
        nhs_number: Some("999 000 0019".into()),
        other_email: Some("not an address".into()),
        summary: Some("   ".into()),
        ..Record::default()
    };
    let refusal = open(
        r,
        &NewCase {
            record: bad,
            sender: Person::email(""),
        },
        "BRAD-2026-0001",
        at("2026-12-23T10:00:00Z"),
    )
    .expect_err("refused");
    assert!(!refusal.out_of_scope);
    let all = refusal.problems.join("\n");
    for expected in [
        "who the adult at risk is",
        "what the disagreement is about",
        "check digit",
        "\"not an address\" does not look like an email address",
        "who is raising the disagreement",
        "who the disagreement is with",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn only_the_four_essentials_refuse_and_a_bad_nhs_number_beside_a_name_is_asked_for_again() {
    let c = config();
    // Bradford's form has many more rows; a record with the four essentials opens.
    let r = Record {
        adult_name: Some("Doreen Haworth".into()),
        nhs_number: Some("999 000 0019".into()),
        other_agency: Some("Westshire Council".into()),
        summary: Some("Closing the enquiry after one visit".into()),
        ..Record::default()
    };
    let t = open(
        rules(&c, "bradford"),
        &NewCase {
            record: r,
            sender: Person::email("nia.nurse@nhs.net"),
        },
        "BRAD-2026-0001",
        at("2026-12-23T10:00:00Z"),
    )
    .expect("opens with the essentials");
    assert_eq!(
        t.case.record.nhs_number, None,
        "the bad number is not kept as the adult's"
    );
    assert!(t
        .case
        .record
        .extra
        .get(escalation_bot::core::lifecycle::UNUSABLE_NHS_NUMBER)
        .is_some_and(|w| w.contains("check digit")));
}

#[test]
fn the_senders_address_stands_in_for_a_missing_escalating_email() {
    let c = config();
    let mut r = record();
    r.escalating_email = None;
    let t = open(
        rules(&c, "trafford"),
        &new_case(r),
        "TRAF-2026-0001",
        at("2026-12-23T10:00:00Z"),
    )
    .expect("opens");
    assert_eq!(t.case.record.escalating_email.as_deref(), Some("nia.nurse@nhs.net"));
}

#[test]
fn same_organisation_is_refused_where_the_policy_says_so() {
    let c = config();
    let mut r = record();
    r.other_agency = Some("Northfield Community Health NHS Trust".into());
    r.other_email = Some("colleague@nhs.net".into());
    for board in ["bradford", "trafford"] {
        let refusal = open(
            rules(&c, board),
            &new_case(r.clone()),
            "X-1",
            at("2026-12-23T10:00:00Z"),
        )
        .expect_err(board);
        assert!(refusal.out_of_scope, "{board}");
        assert!(refusal.problems[0].contains(if board == "bradford" {
            "internal policy"
        } else {
            "whistleblowing"
        }));
    }
    // South Gloucestershire's procedure is for workers in the same organisation too.
    assert!(open(
        rules(&c, "south-gloucestershire"),
        &new_case(r),
        "SGLO-2026-0001",
        at("2026-12-23T10:00:00Z")
    )
    .is_ok());
}

#[test]
fn a_shared_nhs_domain_is_not_the_same_organisation_but_a_private_domain_is() {
    let c = config();
    let r = rules(&c, "bradford");
    let mut rec = record();
    rec.other_agency = Some("Eastbrook Hospitals NHS Foundation Trust".into());
    rec.other_email = Some("someone.else@nhs.net".into());
    assert!(open(r, &new_case(rec.clone()), "BRAD-2026-0001", at("2026-12-23T10:00:00Z")).is_ok());
    rec.escalating_email = Some("a@carehome-example.co.uk".into());
    rec.other_email = Some("b@carehome-example.co.uk".into());
    assert!(
        open(r, &new_case(rec), "BRAD-2026-0001", at("2026-12-23T10:00:00Z"))
            .unwrap_err()
            .out_of_scope
    );
}

#[test]
fn a_record_already_past_stage_one_opens_at_its_stage() {
    // POLICIES.md: the earlier stages happened before the board mailbox heard of it; the deadline counts
    // from the record's arrival, and the acknowledgement says so.
    let c = config();
    let when = at("2026-12-23T10:00:00Z");
    let mut rec = record();
    rec.stage = Some(3);
    let t = open(rules(&c, "bradford"), &new_case(rec.clone()), "BRAD-2026-0001", when).expect("opens at 3");
    assert_eq!(t.case.stage, 3);
    assert!(t.guidance.iter().any(|g| g.title.starts_with("Opened at")
        && g.items
            .iter()
            .any(|i| i.contains("starts every disagreement at stage 1"))));
    rec.immediate_risk = Some(true);
    let t = open(
        rules(&c, "south-gloucestershire"),
        &new_case(rec.clone()),
        "SGLO-2026-0001",
        when,
    )
    .expect("opens at 3");
    assert_eq!(t.case.stage, 3);
    assert_eq!(t.guidance[0].title, "The adult is at immediate risk");
    // Counted from opening: stage 3 is due in 3 working days, stage 4 in 5.
    assert_eq!(due(&t, "stage-3").as_deref(), Some("2026-12-30"));
    assert_eq!(due(&t, "stage-4").as_deref(), Some("2027-01-04"));
    rec.stage = Some(9);
    assert!(open(rules(&c, "trafford"), &new_case(rec), "T-1", when)
        .unwrap_err()
        .problems[0]
        .contains("does not exist"));
}

#[test]
fn immediate_risk_guidance_is_prominent_for_bradford() {
    let c = config();
    let mut rec = record();
    rec.immediate_risk = Some(true);
    let t = open(
        rules(&c, "bradford"),
        &new_case(rec),
        "BRAD-2026-0001",
        at("2026-12-23T10:00:00Z"),
    )
    .expect("opens");
    assert_eq!(t.guidance[0].title, "The adult is at immediate risk");
    assert!(t.guidance[0].items[0].contains("saferbradford.co.uk/adults"));
}

#[test]
fn rotherham_escalation_notifies_the_board_manager_at_stage_three_and_the_chair_at_four() {
    let c = config();
    let r = rules(&c, "rotherham");
    let t1 = opened(r, "ROTH-2026-0001", "2026-12-23T10:00:00Z");
    let t2 = apply(
        r,
        &t1.case,
        &actor(),
        &escalate(None, false),
        at("2026-12-24T10:00:00Z"),
    )
    .expect("to 2");
    assert_eq!(t2.case.stage, 2);
    assert!(t2.notifications.is_empty());
    assert!(t2.case.is_participant("manager.one@westshire.gov.uk"));
    let t3 = apply(
        r,
        &t2.case,
        &actor(),
        &escalate(None, false),
        at("2026-12-29T10:00:00Z"),
    )
    .expect("to 3");
    assert_eq!(roles(&t3), vec![Role::BusinessManager]);
    let t4 = apply(
        r,
        &t3.case,
        &actor(),
        &escalate(None, false),
        at("2026-12-30T10:00:00Z"),
    )
    .expect("to 4");
    assert_eq!(roles(&t4), vec![Role::IndependentChair]);
    assert!(t4.guidance.iter().any(|g| g.title == "The Resolution Panel"));
    // Beyond the last stage: refused, with the policy's word on what happens there.
    let err = apply(
        r,
        &t4.case,
        &actor(),
        &escalate(None, false),
        at("2026-12-30T11:00:00Z"),
    )
    .expect_err("no stage 5");
    assert!(err.0.contains("last stage") && err.0.contains("binding"), "{}", err.0);
    // Overall deadline (5 working days) is unchanged by escalation.
    assert_eq!(due(&t4, "overall").as_deref(), Some("2027-01-04"));
}

#[test]
fn skipping_stages_is_refused_unless_the_policy_allows_it_for_immediate_risk() {
    let c = config();
    let when = at("2026-12-24T10:00:00Z");
    let roth = opened(rules(&c, "rotherham"), "ROTH-2026-0001", "2026-12-23T10:00:00Z");
    let err = apply(
        rules(&c, "rotherham"),
        &roth.case,
        &actor(),
        &escalate(Some(3), true),
        when,
    )
    .expect_err("one at a time");
    assert!(err.0.contains("one stage at a time"), "{}", err.0);
    let r = rules(&c, "trafford");
    let traf = opened(r, "TRAF-2026-0001", "2026-12-23T10:00:00Z");
    let err = apply(r, &traf.case, &actor(), &escalate(Some(4), false), when).expect_err("needs risk");
    assert!(err.0.contains("immediate risk"), "{}", err.0);
    let t = apply(r, &traf.case, &actor(), &escalate(Some(5), true), when).expect("skips to 5");
    assert_eq!(t.case.stage, 5);
    assert!(t.case.immediate_risk);
    assert_eq!(
        roles(&t),
        vec![Role::IndependentChair],
        "entering stage 5 notifies the chair"
    );
    let err = apply(r, &t.case, &actor(), &escalate(Some(2), false), when).expect_err("downwards");
    assert!(err.0.contains("last stage"), "{}", err.0);
    let two = apply(r, &traf.case, &actor(), &escalate(None, false), when).expect("to 2");
    let err = apply(r, &two.case, &actor(), &escalate(Some(2), false), when).expect_err("same stage");
    assert!(err.0.contains("already at stage 2"), "{}", err.0);
}

#[test]
fn trafford_deadlines_rechain_from_the_day_a_stage_is_entered() {
    let c = config();
    let r = rules(&c, "trafford");
    let t = opened(r, "TRAF-2026-0001", "2026-12-23T10:00:00Z");
    assert_eq!(due(&t, "stage-1").as_deref(), Some("2026-12-24"));
    assert_eq!(due(&t, "stage-2").as_deref(), Some("2026-12-30"));
    // Escalated early, the same afternoon: stage 2 is due 2 working days from 23 December.
    let early = apply(r, &t.case, &actor(), &escalate(None, false), at("2026-12-23T15:00:00Z")).expect("to 2");
    assert_eq!(due(&early, "stage-2").as_deref(), Some("2026-12-29"));
    assert_eq!(due(&early, "stage-3").as_deref(), Some("2026-12-31"));
    assert_eq!(due(&early, "stage-4").as_deref(), Some("2027-01-08"));
    assert_eq!(due(&early, "overall").as_deref(), Some("2027-01-15"));
    assert!(early.deadlines.iter().all(|d| d.label != "stage-1"));
    assert_eq!(
        early
            .deadlines
            .iter()
            .filter(|d| d.kind == DeadlineKind::Active)
            .count(),
        1
    );
    // Stage 1's timers are cancelled and stage 2's created.
    assert!(early.timers.cancelled.iter().all(|k| k.contains("stage-1")));
    assert!(!early.timers.cancelled.is_empty());
    assert!(early.timers.created.iter().all(|x| x.label == "stage-2"));
    // Escalated late, after stage 1's deadline: stage 2 runs from the day it is entered.
    let late = apply(r, &t.case, &actor(), &escalate(None, false), at("2027-01-06T10:00:00Z")).expect("to 2");
    assert_eq!(due(&late, "stage-2").as_deref(), Some("2027-01-08"));
}

#[test]
fn south_gloucestershire_extension_moves_the_deadlines() {
    let c = config();
    let r = rules(&c, "south-gloucestershire");
    let t = opened(r, "SGLO-2026-0001", "2026-12-23T10:00:00Z");
    let extend = |days, reason: &str| Command::Extend {
        working_days: days,
        reason: reason.into(),
    };
    let x = apply(
        r,
        &t.case,
        &actor(),
        &extend(2, "Senior manager on leave until 30 December"),
        at("2026-12-24T10:00:00Z"),
    )
    .expect("extends");
    assert_eq!(due(&x, "stage-1").as_deref(), Some("2026-12-30"));
    assert_eq!(due(&x, "stage-4").as_deref(), Some("2027-01-06"));
    assert!(x.timers.cancelled.iter().any(|k| k.contains("stage-1:2026-12-24")));
    assert!(x.timers.created.iter().any(|k| k.key.contains("stage-1:2026-12-30")));
    assert_eq!(x.event.kind, "extended");
    // Later stages keep the extension once escalated.
    let esc = apply(r, &x.case, &actor(), &escalate(None, false), at("2026-12-29T10:00:00Z")).expect("to 2");
    assert_eq!(due(&esc, "stage-2").as_deref(), Some("2026-12-31"));
    // Refusals: no reason, zero days, over the policy's total.
    assert!(apply(r, &x.case, &actor(), &extend(1, " "), at("2026-12-24T11:00:00Z"))
        .unwrap_err()
        .0
        .contains("reason"));
    assert!(apply(r, &x.case, &actor(), &extend(0, "x"), at("2026-12-24T11:00:00Z"))
        .unwrap_err()
        .0
        .contains("at least 1"));
    let err = apply(
        r,
        &x.case,
        &actor(),
        &extend(9, "more time"),
        at("2026-12-24T11:00:00Z"),
    )
    .unwrap_err();
    assert!(
        err.0.contains("at most 10 working days") && err.0.contains("2 already"),
        "{}",
        err.0
    );
}

#[test]
fn bradford_does_not_provide_for_extensions() {
    let c = config();
    let r = rules(&c, "bradford");
    let t = opened(r, "BRAD-2026-0001", "2026-12-23T10:00:00Z");
    let err = apply(
        r,
        &t.case,
        &actor(),
        &Command::Extend {
            working_days: 2,
            reason: "leave".into(),
        },
        at("2026-12-24T10:00:00Z"),
    )
    .unwrap_err();
    assert!(
        err.0.contains("does not provide for extending") && err.0.contains("28 days"),
        "{}",
        err.0
    );
}

fn resolve(review: Option<&str>) -> Command {
    Command::Resolve {
        outcome: "Enquiry reopened; joint visit agreed.".into(),
        agreed_actions: "Joint visit by 8 January; safeguarding plan reviewed.".into(),
        actions: Vec::new(),
        outstanding: String::new(),
        review_date: review.map(day),
    }
}

#[test]
fn resolving_a_bradford_case_notifies_business_manager_and_chair_and_records_time_taken() {
    let c = config();
    let r = rules(&c, "bradford");
    let t = opened(r, "BRAD-2026-0001", "2026-12-23T10:00:00Z");
    let done = apply(
        r,
        &t.case,
        &actor(),
        &resolve(Some("2027-02-01")),
        at("2027-01-05T14:00:00Z"),
    )
    .expect("resolves");
    assert_eq!(done.case.status, CaseStatus::Resolved);
    let res = done.case.resolution.as_ref().expect("resolution");
    assert_eq!(res.at_stage, 1);
    assert_eq!(res.working_days_taken, 6, "24, 29, 30, 31 Dec, 4, 5 Jan");
    assert_eq!(res.calendar_days_taken, 13);
    // And the referrer is told the outcome (added on checking the seed, issue 14).
    assert_eq!(
        roles(&done),
        vec![Role::BusinessManager, Role::IndependentChair, Role::Referrer]
    );
    assert!(done.deadlines.is_empty());
    // Every deadline timer is cancelled; a review prompt is created for 1 February, and its one reminder
    // a working week later (8 February).
    assert_eq!(done.timers.cancelled.len(), 3);
    assert_eq!(done.timers.created.len(), 2);
    assert!(done.timers.created.iter().all(|t| t.kind == TimerKind::Review));
    assert_eq!(done.timers.created[0].fire_at, at("2027-02-01T09:00:00Z"));
    assert_eq!(done.timers.created[1].fire_at, at("2027-02-08T09:00:00Z"));
    // A resolved case cannot be resolved, escalated, extended or withdrawn again.
    for cmd in [
        resolve(None),
        escalate(None, false),
        Command::Withdraw { reason: "x".into() },
    ] {
        let err = apply(r, &done.case, &actor(), &cmd, at("2027-01-06T10:00:00Z")).unwrap_err();
        assert!(
            err.0
                .contains("BRAD-2026-0001 is already resolved (at stage 1 on 5 January 2027)"),
            "{}",
            err.0
        );
    }
}

#[test]
fn resolution_refusals() {
    let c = config();
    let r = rules(&c, "bradford");
    let t = opened(r, "BRAD-2026-0001", "2026-12-23T10:00:00Z");
    let empty = Command::Resolve {
        outcome: " ".into(),
        agreed_actions: String::new(),
        actions: Vec::new(),
        outstanding: String::new(),
        review_date: None,
    };
    assert!(apply(r, &t.case, &actor(), &empty, at("2027-01-05T10:00:00Z"))
        .unwrap_err()
        .0
        .contains("outcome"));
    let err = apply(
        r,
        &t.case,
        &actor(),
        &resolve(Some("2027-01-01")),
        at("2027-01-05T10:00:00Z"),
    )
    .unwrap_err();
    assert!(err.0.contains("in the past"), "{}", err.0);
}

#[test]
fn trafford_resolution_at_stage_three_brings_the_checklist_and_the_business_office() {
    let c = config();
    let r = rules(&c, "trafford");
    let mut case: Case = opened(r, "TRAF-2026-0001", "2026-12-23T10:00:00Z").case;
    for when in ["2026-12-24T10:00:00Z", "2026-12-29T10:00:00Z"] {
        case = apply(r, &case, &actor(), &escalate(None, false), at(when))
            .expect("escalates")
            .case;
    }
    let done = apply(r, &case, &actor(), &resolve(None), at("2026-12-30T10:00:00Z")).expect("resolves");
    let mut got = roles(&done);
    got.sort();
    assert_eq!(got, vec![Role::BusinessOffice, Role::Referrer]);
    let checklist = done
        .guidance
        .iter()
        .find(|g| g.title.contains("After resolution"))
        .expect("checklist");
    assert!(checklist
        .items
        .iter()
        .any(|i| i.contains("Business Office retains a copy")));
    assert!(done.guidance.iter().any(|g| g.title == "Gaps in policy"));
    // At stage 1 only the referrer is told.
    let one = opened(r, "TRAF-2026-0002", "2026-12-23T10:00:00Z");
    let done1 = apply(r, &one.case, &actor(), &resolve(None), at("2026-12-24T10:00:00Z")).expect("resolves");
    assert_eq!(roles(&done1), vec![Role::Referrer]);
}

#[test]
fn withdrawing_cancels_everything_and_cannot_be_repeated() {
    let c = config();
    let r = rules(&c, "south-gloucestershire");
    let t = opened(r, "SGLO-2026-0001", "2026-12-23T10:00:00Z");
    let w = apply(
        r,
        &t.case,
        &actor(),
        &Command::Withdraw {
            reason: "Resolved informally by phone".into(),
        },
        at("2026-12-24T10:00:00Z"),
    )
    .expect("withdraws");
    assert_eq!(w.case.status, CaseStatus::Withdrawn);
    assert!(w.deadlines.is_empty());
    assert!(w.timers.created.is_empty());
    assert_eq!(w.timers.cancelled.len(), t.timers.created.len());
    let err = apply(
        r,
        &w.case,
        &actor(),
        &Command::Withdraw { reason: "again".into() },
        at("2026-12-24T11:00:00Z"),
    )
    .unwrap_err();
    assert!(err.0.contains("was withdrawn"), "{}", err.0);
}

#[test]
fn notes_change_no_deadline() {
    let c = config();
    let r = rules(&c, "trafford");
    let t = opened(r, "TRAF-2026-0001", "2026-12-23T10:00:00Z");
    let n = apply(
        r,
        &t.case,
        &actor(),
        &Command::Note {
            text: "Spoke to the GP.".into(),
        },
        at("2026-12-23T12:00:00Z"),
    )
    .expect("note");
    assert_eq!(n.case.notes.len(), 1);
    assert_eq!(n.deadlines, t.deadlines);
    assert!(n.timers.created.is_empty() && n.timers.cancelled.is_empty());
    assert!(apply(
        r,
        &t.case,
        &actor(),
        &Command::Note { text: "\n".into() },
        at("2026-12-23T12:00:00Z")
    )
    .is_err());
}

#[test]
fn agreed_actions_implemented_closes_the_review() {
    let c = config();
    let r = rules(&c, "trafford");
    let t = opened(r, "TRAF-2026-0001", "2026-12-23T10:00:00Z");
    let implemented = Command::ActionsImplemented {
        text: "Joint visit done; plan updated.".into(),
    };
    let err = apply(r, &t.case, &actor(), &implemented, at("2026-12-24T10:00:00Z")).unwrap_err();
    assert!(err.0.contains("once it is resolved"), "{}", err.0);
    let done = apply(
        r,
        &t.case,
        &actor(),
        &resolve(Some("2027-01-15")),
        at("2026-12-24T10:00:00Z"),
    )
    .expect("resolves");
    let imp = apply(r, &done.case, &actor(), &implemented, at("2027-01-10T10:00:00Z")).expect("implemented");
    assert_eq!(
        imp.timers.cancelled,
        vec!["review:2027-01-15".to_string(), "review-again:2027-01-15".to_string()]
    );
    assert!(imp.case.actions_implemented.is_some());
    assert!(apply(r, &imp.case, &actor(), &implemented, at("2027-01-11T10:00:00Z"))
        .unwrap_err()
        .0
        .contains("already confirmed"));
}

#[test]
fn fired_timers_call_for_the_policys_duties() {
    let c = config();
    let sg = rules(&c, "south-gloucestershire");
    let t = opened(sg, "SGLO-2026-0001", "2026-12-23T10:00:00Z");
    let overdue4 = t
        .timers
        .created
        .iter()
        .find(|x| x.key == "overdue:stage-4:2027-01-04")
        .expect("stage-4 overdue timer");
    assert_eq!(overdue4.fire_at, at("2027-01-05T09:00:00Z"));
    let out = on_timer(sg, &t.case, overdue4, overdue4.fire_at);
    assert!(out.tell_participants && !out.late);
    assert_eq!(
        out.notifications.iter().map(|n| n.role).collect::<Vec<_>>(),
        vec![Role::StrategicSafeguardingServiceManager]
    );
    // The stage-1 overdue notice tells the participants but notifies no board role.
    let overdue1 = t
        .timers
        .created
        .iter()
        .find(|x| x.key.starts_with("overdue:stage-1"))
        .expect("timer");
    assert!(on_timer(sg, &t.case, overdue1, overdue1.fire_at)
        .notifications
        .is_empty());
    // Fired two days late (the daemon was down): marked late.
    assert!(on_timer(sg, &t.case, overdue4, at("2027-01-07T09:00:00Z")).late);
    // Once the case is resolved, a stray timer calls for nothing.
    let done = apply(sg, &t.case, &actor(), &resolve(None), at("2026-12-24T10:00:00Z")).expect("resolves");
    let stale = on_timer(sg, &done.case, overdue4, overdue4.fire_at);
    assert!(!stale.tell_participants && stale.notifications.is_empty());
    // Bradford: 28 days passing unresolved alerts the Business Unit Manager.
    let b = rules(&c, "bradford");
    let bt = opened(b, "BRAD-2026-0001", "2026-12-23T10:00:00Z");
    let ov = bt
        .timers
        .created
        .iter()
        .find(|x| x.kind == TimerKind::Overdue)
        .expect("timer");
    assert_eq!(
        on_timer(b, &bt.case, ov, ov.fire_at).notifications[0].role,
        Role::BusinessManager
    );
}

#[test]
fn a_reminder_whose_moment_has_passed_is_not_created_but_an_overdue_notice_is() {
    let c = config();
    let r = rules(&c, "south-gloucestershire");
    let t = opened(r, "SGLO-2026-0001", "2026-12-23T10:00:00Z");
    // Escalated to stage 2 on 30 December, after stage 2's deadline (29 December) had passed.
    let late = apply(r, &t.case, &actor(), &escalate(None, false), at("2026-12-30T10:00:00Z")).expect("to 2");
    let created: Vec<&str> = late.timers.created.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(created, vec!["overdue:stage-2:2026-12-29"]);
}
