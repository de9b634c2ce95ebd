//! Deadlines and timers as a pure function of a case's state.
//!
//! [`schedule`] says, for a case as it stands, which deadlines apply and which reminders, overdue notices
//! and review prompts are due when. A transition's timer changes are the difference between the schedule
//! before and after it ([`diff`]), so there is one place that decides timing, and cancelling is simply a
//! timer no longer being in the schedule. Timers are identified by a key that names the deadline and its
//! date, so moving a deadline (an extension, a re-chained stage) cancels the old timers and creates new ones.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::case::{Case, CaseStatus};
use super::policy::{CountFrom, DayUnit, Limit};
use super::rules::BoardRules;

/// Whether a deadline binds the case now or is the date it would reach if each stage ran to its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Active,
    Projected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// `stage-N` or `overall`.
    pub label: String,
    pub stage: Option<u8>,
    /// The last local date on which the deadline is met.
    pub due_date: NaiveDate,
    pub kind: DeadlineKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// A deadline is coming (or is today).
    Reminder,
    /// A deadline passed with the case unresolved.
    Overdue,
    /// The review date of agreed actions has come.
    Review,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Reminder => "reminder",
            TimerKind::Overdue => "overdue",
            TimerKind::Review => "review",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reminder" => Some(TimerKind::Reminder),
            "overdue" => Some(TimerKind::Overdue),
            "review" => Some(TimerKind::Review),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Unique within the case, e.g. `reminder:stage-2:2027-01-05:0`.
    pub key: String,
    pub kind: TimerKind,
    /// The deadline it concerns (`stage-N`, `overall`) or `review`.
    pub label: String,
    /// The date the deadline falls due (or the review date).
    pub due_date: NaiveDate,
    pub fire_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub deadlines: Vec<Deadline>,
    pub timers: Vec<Timer>,
}

/// The key prefix of the second (and last) review prompt.
pub const REVIEW_AGAIN: &str = "review-again:";
/// Working days after the first review prompt that an unanswered review is asked again.
pub const REVIEW_AGAIN_AFTER: u32 = 5;

/// The date `limit` after `from`, plus `extra` working days of agreed extension.
pub fn apply_limit(rules: &BoardRules, from: NaiveDate, limit: &Limit, extra: u32) -> NaiveDate {
    let cal = &rules.calendar;
    match limit.unit {
        DayUnit::Working => cal.add_working_days(from, limit.days.saturating_add(extra)),
        DayUnit::Calendar => {
            let d = from + Duration::days(i64::from(limit.days));
            cal.add_working_days(d, extra)
        }
    }
}

/// The deadlines of a case that is open, in date order. Active: the current stage's, the overall limit,
/// and (when stage limits count from opening) the last stage's. Projected: the other later stages, as if
/// each ran to its limit, and `overall` when the policy has no overall limit of its own.
pub fn deadlines(rules: &BoardRules, case: &Case) -> Vec<Deadline> {
    if case.status != CaseStatus::Open {
        return Vec::new();
    }
    let policy = &rules.policy;
    let cal = &rules.calendar;
    let mut out = Vec::new();
    let ext_total = case.extension_total();
    let mut chain_end: Option<NaiveDate> = None;
    if let Some(count_from) = policy.deadlines.stage_limits_count_from {
        let mut previous_due: Option<NaiveDate> = None;
        for stage in policy.stages.iter().filter(|s| s.number >= case.stage) {
            let Some(limit) = stage.limit_working_days else {
                continue;
            };
            let due = match count_from {
                CountFrom::Opening => cal.add_working_days(case.opened_on, limit.saturating_add(ext_total)),
                CountFrom::StageEntry => {
                    let from = previous_due.unwrap_or_else(|| case.stage_entered_on());
                    cal.add_working_days(from, limit.saturating_add(case.extension_at(stage.number)))
                }
            };
            previous_due = Some(due);
            out.push(Deadline {
                label: format!("stage-{}", stage.number),
                stage: Some(stage.number),
                due_date: due,
                // Counted from opening, the last stage's date binds from the start ("no longer than 5
                // working days … to be resolved or escalated to stage 4"), whatever the current stage.
                kind: if policy.deadlines.last_stage_met_on_reaching
                    && stage.number == policy.last_stage()
                    && case.stage == stage.number
                {
                    // Reaching the last stage met this deadline: nothing more is due by it.
                    DeadlineKind::Projected
                } else if stage.number == case.stage
                    || (count_from == CountFrom::Opening && stage.number == policy.last_stage())
                {
                    DeadlineKind::Active
                } else {
                    DeadlineKind::Projected
                },
            });
        }
        chain_end = previous_due;
    }
    match &policy.deadlines.overall {
        Some(limit) => out.push(Deadline {
            label: "overall".into(),
            stage: None,
            due_date: apply_limit(rules, case.opened_on, limit, ext_total),
            kind: DeadlineKind::Active,
        }),
        None => {
            if let Some(end) = chain_end {
                out.push(Deadline {
                    label: "overall".into(),
                    stage: None,
                    due_date: end,
                    kind: DeadlineKind::Projected,
                });
            }
        }
    }
    // Date order; on the same date a stage's deadline comes before `overall`.
    out.sort_by_key(|d| (d.due_date, d.stage.is_none(), d.stage));
    out
}

/// The full schedule of a case as it stands.
pub fn schedule(rules: &BoardRules, case: &Case) -> Schedule {
    let cal = &rules.calendar;
    let reminders = &rules.policy.reminders;
    let deadlines = deadlines(rules, case);
    let mut timers = Vec::new();
    for d in deadlines.iter().filter(|d| d.kind == DeadlineKind::Active) {
        for &before in &reminders.before_due_working_days {
            // The morning of the due date, or the working day before it when it is not a working day.
            let day = if cal.is_working_day(d.due_date) {
                cal.sub_working_days(d.due_date, before)
            } else {
                cal.sub_working_days(d.due_date, before.max(1))
            };
            timers.push(Timer {
                key: format!("reminder:{}:{}:{}", d.label, d.due_date, before),
                kind: TimerKind::Reminder,
                label: d.label.clone(),
                due_date: d.due_date,
                fire_at: rules.working_start(day),
            });
        }
        if reminders.overdue {
            let day = cal.add_working_days(d.due_date, 1);
            timers.push(Timer {
                key: format!("overdue:{}:{}", d.label, d.due_date),
                kind: TimerKind::Overdue,
                label: d.label.clone(),
                due_date: d.due_date,
                fire_at: rules.working_start(day),
            });
        }
    }
    if case.status == CaseStatus::Resolved && reminders.review_date && case.actions_implemented.is_none() {
        if let Some(review) = case.resolution.as_ref().and_then(|r| r.review_date) {
            timers.push(Timer {
                key: format!("review:{review}"),
                kind: TimerKind::Review,
                label: "review".into(),
                due_date: review,
                fire_at: rules.working_start(cal.working_day_on_or_after(review)),
            });
            // Unanswered (no IMPLEMENTED), the review is asked once more, a working week later; after that
            // it shows in the digest as missed.
            timers.push(Timer {
                key: format!("{REVIEW_AGAIN}{review}"),
                kind: TimerKind::Review,
                label: "review".into(),
                due_date: review,
                fire_at: rules
                    .working_start(cal.add_working_days(cal.working_day_on_or_after(review), REVIEW_AGAIN_AFTER)),
            });
        }
    }
    timers.sort_by(|a, b| a.fire_at.cmp(&b.fire_at).then(a.key.cmp(&b.key)));
    Schedule { deadlines, timers }
}

/// What a transition does to the timers: those to create and the keys of those to cancel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerChanges {
    pub created: Vec<Timer>,
    pub cancelled: Vec<String>,
}

/// The timer changes from `before` to `after` at `now`. A reminder whose moment has already passed is not
/// created (it would say nothing new); an overdue notice is, because the deadline really was missed.
pub fn diff(before: &Schedule, after: &Schedule, now: DateTime<Utc>) -> TimerChanges {
    let old: BTreeSet<&str> = before.timers.iter().map(|t| t.key.as_str()).collect();
    let new: BTreeSet<&str> = after.timers.iter().map(|t| t.key.as_str()).collect();
    TimerChanges {
        created: after
            .timers
            .iter()
            .filter(|t| !old.contains(t.key.as_str()))
            .filter(|t| t.kind != TimerKind::Reminder || t.fire_at > now)
            .cloned()
            .collect(),
        cancelled: before
            .timers
            .iter()
            .filter(|t| !new.contains(t.key.as_str()))
            .map(|t| t.key.clone())
            .collect(),
    }
}
