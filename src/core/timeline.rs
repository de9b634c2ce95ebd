//! The timeline a case opened at a given moment would get if each stage ran to its limit: the
//! deadlines in date order and the duties with the date they would fall due. Backs `escalation-bot
//! timeline` and lets a board check its policy file against its own worked examples.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::case::{Case, CaseStatus, Record, StageEntry};
use super::policy::{CountFrom, DayUnit, Role, Trigger};
use super::rules::BoardRules;
use super::schedule::{self, Deadline};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineDeadline {
    pub label: String,
    pub due_date: NaiveDate,
    pub stage: Option<u8>,
    /// What the deadline is, in words: "stage 2 (Line Management): 2 working days from entering the stage".
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineDuty {
    /// When the duty arises, in words.
    pub when: String,
    /// The date it would arise on this timeline, where it depends on a date.
    pub date: Option<NaiveDate>,
    pub notify: Vec<Role>,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub board: String,
    pub opened: DateTime<Utc>,
    pub opened_on: NaiveDate,
    pub deadlines: Vec<TimelineDeadline>,
    pub duties: Vec<TimelineDuty>,
}

/// The timeline of a case opened at `opened` at stage 1.
pub fn timeline(rules: &BoardRules, opened: DateTime<Utc>) -> Timeline {
    let policy = &rules.policy;
    let opened_on = rules.local_date(opened);
    let case = Case {
        reference: String::new(),
        board: rules.board_id.clone(),
        status: CaseStatus::Open,
        stage: 1,
        opened_at: opened,
        opened_on,
        immediate_risk: false,
        record: Record::default(),
        participants: Vec::new(),
        stages: vec![StageEntry {
            stage: 1,
            entered_at: opened,
            entered_on: opened_on,
            by: String::new(),
        }],
        extensions: Vec::new(),
        notes: Vec::new(),
        resolution: None,
        withdrawal: None,
        actions_implemented: None,
        personal_data_removed: false,
    };
    let deadlines: Vec<Deadline> = schedule::deadlines(rules, &case);
    let describe = |d: &Deadline| -> String {
        match d.stage {
            Some(n) => {
                let limit = policy.stage(n).and_then(|s| s.limit_working_days).unwrap_or(0);
                let from = match policy.deadlines.stage_limits_count_from {
                    Some(CountFrom::StageEntry) => "from entering the stage",
                    _ => "from opening",
                };
                format!("{}: {limit} working day(s) {from}", policy.stage_name(n))
            }
            None => match &policy.deadlines.overall {
                Some(l) => format!(
                    "whole procedure: {} {} day(s) from opening",
                    l.days,
                    match l.unit {
                        DayUnit::Calendar => "calendar",
                        DayUnit::Working => "working",
                    }
                ),
                None => "whole procedure: the last stage's deadline".to_string(),
            },
        }
    };
    let due_of = |label: &str| deadlines.iter().find(|d| d.label == label).map(|d| d.due_date);
    let duties = policy
        .duties
        .iter()
        .map(|duty| {
            let (when, date) = match &duty.when {
                Trigger::EnteringStage(1) => ("on opening".to_string(), Some(opened_on)),
                Trigger::EnteringStage(n) => (
                    format!("on entering {}", policy.stage_name(*n)),
                    due_of(&format!("stage-{}", n - 1)),
                ),
                Trigger::ResolvedAtOrAbove(1) => ("on resolution at any stage".to_string(), None),
                Trigger::ResolvedAtOrAbove(n) => (format!("on resolution at stage {n} or above"), None),
                Trigger::DeadlinePassed(l) => (
                    format!("when the {l} deadline passes unresolved"),
                    due_of(l).map(|d| rules.calendar.add_working_days(d, 1)),
                ),
                Trigger::Withdrawn(_) => ("on withdrawal".to_string(), None),
            };
            TimelineDuty {
                when,
                date,
                notify: duty.notify.clone(),
                why: duty.why.clone(),
            }
        })
        .collect();
    Timeline {
        board: rules.board_id.clone(),
        opened,
        opened_on,
        deadlines: deadlines
            .iter()
            .map(|d| TimelineDeadline {
                label: d.label.clone(),
                due_date: d.due_date,
                stage: d.stage,
                description: describe(d),
            })
            .collect(),
        duties,
    }
}
