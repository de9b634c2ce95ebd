//! The board manager's digest, as a pure function of the board's cases and `now`.
//!
//! What a board manager needs each week (POLICIES.md, digests): open cases by stage with the working days
//! they have been open and their next deadline, overdue ones first; cases resolved since the last digest,
//! with the stage reached and the working days taken; reviews of agreed actions that are due or missed;
//! extensions granted; themes and agencies; how many emails could not be used. Cases are named by
//! reference, agencies and stage only: a digest carries no adult's name or NHS number.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::case::{Case, CaseStatus};
use super::rules::BoardRules;
use super::schedule::{self, DeadlineKind};

/// An open case, as the digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenCase {
    pub reference: String,
    pub stage: u8,
    pub stage_name: String,
    pub agencies: String,
    pub opened_on: NaiveDate,
    /// Working days from opening to today.
    pub working_days_open: u32,
    /// The earliest binding deadline: its label and date.
    pub next_deadline: Option<(String, NaiveDate)>,
    /// A binding deadline has passed.
    pub overdue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedCase {
    pub reference: String,
    pub agencies: String,
    pub at_stage: u8,
    pub resolved_on: NaiveDate,
    pub working_days_taken: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    pub reference: String,
    pub agencies: String,
    pub review_date: NaiveDate,
    /// The review date has passed with no IMPLEMENTED.
    pub missed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionGranted {
    pub reference: String,
    pub stage: u8,
    pub working_days: u32,
    pub agreed_on: NaiveDate,
}

/// Cases open, by how many whole weeks (of working days) they have been open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bar {
    pub label: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    pub board: String,
    pub board_name: String,
    /// The day it describes (the board's local date at `now`).
    pub as_of: NaiveDate,
    /// What "since the last digest" means: resolutions and extensions from this instant.
    pub since: Option<DateTime<Utc>>,
    /// The open cases listed: at most [`OPEN_LISTED`], overdue first.
    pub open: Vec<OpenCase>,
    /// How many cases are open in all.
    pub open_total: usize,
    pub overdue: usize,
    pub resolved: Vec<ResolvedCase>,
    pub reviews: Vec<Review>,
    pub extensions: Vec<ExtensionGranted>,
    /// Theme → cases open or resolved in the period.
    pub themes: BTreeMap<String, usize>,
    /// Agency → cases open or resolved in the period it is a party to.
    pub agencies: BTreeMap<String, usize>,
    /// Emails to the board that could not be used (refused or quarantined) since the last digest.
    pub unusable_emails: usize,
    pub open_by_stage: Vec<Bar>,
    pub open_by_weeks: Vec<Bar>,
}

impl Digest {
    /// Nothing to report at all.
    pub fn is_empty(&self) -> bool {
        self.open_total == 0
            && self.resolved.is_empty()
            && self.reviews.is_empty()
            && self.extensions.is_empty()
            && self.unusable_emails == 0
    }
}

/// How many open cases a digest lists by name (overdue first, then by next deadline); the rest are
/// counted. A board manager reads a list, not a register; `cases list` has them all.
pub const OPEN_LISTED: usize = 100;

/// Builds a digest one case at a time, so that a board with very many cases is read in pages and never
/// held in memory whole.
pub struct DigestBuilder<'a> {
    rules: &'a BoardRules,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    today: NaiveDate,
    open: Vec<OpenCase>,
    open_total: usize,
    overdue: usize,
    by_stage: BTreeMap<u8, usize>,
    by_weeks: [usize; 4],
    resolved: Vec<ResolvedCase>,
    reviews: Vec<Review>,
    extensions: Vec<ExtensionGranted>,
    themes: BTreeMap<String, usize>,
    agencies: BTreeMap<String, usize>,
}

fn open_order(a: &OpenCase, b: &OpenCase) -> std::cmp::Ordering {
    b.overdue
        .cmp(&a.overdue)
        .then(
            a.next_deadline
                .as_ref()
                .map(|d| d.1)
                .cmp(&b.next_deadline.as_ref().map(|d| d.1)),
        )
        .then(a.reference.cmp(&b.reference))
}

impl<'a> DigestBuilder<'a> {
    pub fn new(rules: &'a BoardRules, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        DigestBuilder {
            rules,
            since,
            now,
            today: rules.local_date(now),
            open: Vec::new(),
            open_total: 0,
            overdue: 0,
            by_stage: BTreeMap::new(),
            by_weeks: [0; 4],
            resolved: Vec::new(),
            reviews: Vec::new(),
            extensions: Vec::new(),
            themes: BTreeMap::new(),
            agencies: BTreeMap::new(),
        }
    }

    fn in_period(&self, t: DateTime<Utc>) -> bool {
        self.since.is_none_or(|s| t >= s) && t <= self.now
    }

    /// Take one case into account (one of another board is ignored).
    pub fn add(&mut self, case: &Case) {
        if case.board != self.rules.board_id {
            return;
        }
        let cal = &self.rules.calendar;
        let today = self.today;
        let mut counted = false;
        match case.status {
            CaseStatus::Open => {
                let next = schedule::deadlines(self.rules, case)
                    .into_iter()
                    .filter(|d| d.kind == DeadlineKind::Active)
                    .min_by_key(|d| d.due_date);
                let line = OpenCase {
                    reference: case.reference.clone(),
                    stage: case.stage,
                    stage_name: self.rules.policy.stage_name(case.stage),
                    agencies: case.agencies(),
                    opened_on: case.opened_on,
                    working_days_open: cal.working_days_between(case.opened_on, today),
                    overdue: next.as_ref().is_some_and(|d| d.due_date < today),
                    next_deadline: next.map(|d| (d.label, d.due_date)),
                };
                self.open_total += 1;
                self.overdue += usize::from(line.overdue);
                *self.by_stage.entry(case.stage).or_default() += 1;
                let week = match line.working_days_open {
                    0..5 => 0,
                    5..10 => 1,
                    10..20 => 2,
                    _ => 3,
                };
                self.by_weeks[week] += 1;
                self.open.push(line);
                if self.open.len() >= 2 * OPEN_LISTED {
                    self.open.sort_by(open_order);
                    self.open.truncate(OPEN_LISTED); // byte-slice: a Vec of cases, not text
                }
                counted = true;
            }
            CaseStatus::Resolved => {
                if let Some(r) = case.resolution.as_ref() {
                    if self.in_period(r.resolved_at) {
                        self.resolved.push(ResolvedCase {
                            reference: case.reference.clone(),
                            agencies: case.agencies(),
                            at_stage: r.at_stage,
                            resolved_on: r.resolved_on,
                            working_days_taken: r.working_days_taken,
                        });
                        counted = true;
                    }
                    if let (Some(review), None) = (r.review_date, &case.actions_implemented) {
                        if review <= today {
                            self.reviews.push(Review {
                                reference: case.reference.clone(),
                                agencies: case.agencies(),
                                review_date: review,
                                missed: review < today,
                            });
                        }
                    }
                }
            }
            CaseStatus::Withdrawn => {}
        }
        for e in &case.extensions {
            if self.in_period(e.agreed_at) {
                self.extensions.push(ExtensionGranted {
                    reference: case.reference.clone(),
                    stage: e.stage,
                    working_days: e.working_days,
                    agreed_on: self.rules.local_date(e.agreed_at),
                });
            }
        }
        if counted {
            let theme = case
                .record
                .theme
                .clone()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| "not given".into());
            *self.themes.entry(theme.trim().to_lowercase()).or_default() += 1;
            for a in [&case.record.escalating_agency, &case.record.other_agency]
                .into_iter()
                .flatten()
                .filter(|a| !a.trim().is_empty())
            {
                *self.agencies.entry(a.trim().to_string()).or_default() += 1;
            }
        }
    }

    pub fn finish(mut self, unusable_emails: usize) -> Digest {
        let policy = &self.rules.policy;
        self.open.sort_by(open_order);
        self.open.truncate(OPEN_LISTED); // byte-slice: a Vec of cases, not text
        self.resolved
            .sort_by(|a, b| a.resolved_on.cmp(&b.resolved_on).then(a.reference.cmp(&b.reference)));
        self.reviews
            .sort_by(|a, b| a.review_date.cmp(&b.review_date).then(a.reference.cmp(&b.reference)));
        self.extensions
            .sort_by(|a, b| a.agreed_on.cmp(&b.agreed_on).then(a.reference.cmp(&b.reference)));
        let open_by_stage = policy
            .stages
            .iter()
            .map(|s| Bar {
                label: policy.stage_name(s.number),
                count: self.by_stage.get(&s.number).copied().unwrap_or(0),
            })
            .collect();
        let open_by_weeks = ["under 1 week", "1–2 weeks", "2–4 weeks", "4 weeks or more"]
            .iter()
            .zip(self.by_weeks)
            .map(|(label, count)| Bar {
                label: (*label).to_string(),
                count,
            })
            .collect();
        Digest {
            board: self.rules.board_id.clone(),
            board_name: policy.board_name.clone(),
            as_of: self.today,
            since: self.since,
            open_total: self.open_total,
            overdue: self.overdue,
            open: self.open,
            resolved: self.resolved,
            reviews: self.reviews,
            extensions: self.extensions,
            themes: self.themes,
            agencies: self.agencies,
            unusable_emails,
            open_by_stage,
            open_by_weeks,
        }
    }
}

/// The digest of `cases` (the board's open cases and any that changed since `since`) at `now`.
pub fn build(
    rules: &BoardRules,
    cases: &[Case],
    since: Option<DateTime<Utc>>,
    unusable_emails: usize,
    now: DateTime<Utc>,
) -> Digest {
    let mut b = DigestBuilder::new(rules, since, now);
    for c in cases {
        b.add(c);
    }
    b.finish(unusable_emails)
}

/// The moment a scheduled digest goes: the schedule's occurrence (local time, the board's timezone), or,
/// when that falls on a day that is not a working day (a bank holiday Monday), the same time on the next
/// working day. A local time a clock change skips becomes the first valid time after it.
fn moved_to_working_day(rules: &BoardRules, occurrence: chrono::NaiveDateTime) -> DateTime<Utc> {
    let day = rules.calendar.working_day_on_or_after(occurrence.date());
    rules.instant(day.and_time(occurrence.time()))
}

/// The digest moments of `schedule` after `after`, in order (at most `limit`).
pub fn moments_after(
    rules: &BoardRules,
    schedule: &cron::Schedule,
    after: DateTime<Utc>,
    limit: usize,
) -> Vec<DateTime<Utc>> {
    // Occurrences are read in local wall-clock time (as UTC-free naive times), so that a clock change
    // neither skips nor repeats one; each is then placed on a working day and converted.
    let local_after = after.with_timezone(&rules.timezone).naive_local();
    let start = chrono::TimeZone::from_utc_datetime(&Utc, &(local_after - chrono::Duration::days(7)));
    let mut out: Vec<DateTime<Utc>> = schedule
        .after(&start)
        .take(limit + 16)
        .map(|o| moved_to_working_day(rules, o.naive_utc()))
        .filter(|m| *m > after)
        .collect();
    out.sort();
    out.dedup();
    out.truncate(limit); // byte-slice: a Vec of moments, not text
    out
}

/// The next digest moment after `after`.
pub fn next_moment(rules: &BoardRules, schedule: &cron::Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    moments_after(rules, schedule, after, 1).into_iter().next()
}

/// The latest digest moment in `(after, now]`, if any: the one a daemon that was down sends on start.
pub fn latest_due(
    rules: &BoardRules,
    schedule: &cron::Schedule,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut at = after;
    let mut latest = None;
    // A bound on a long outage: digests are weekly by default.
    for _ in 0..400 {
        match next_moment(rules, schedule, at) {
            Some(m) if m <= now => {
                latest = Some(m);
                at = m;
            }
            _ => break,
        }
    }
    latest
}
