//! The board's monitoring report for a period, as a pure function of its cases: what each seed says a
//! board monitors — how many disagreements were raised, the stage at which resolution was achieved, the
//! time taken to reach resolution, deadlines missed, themes, agencies, and which agencies disagree most —
//! in a form a board manager pastes into the annual report. Cases are counted, never named.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;

use super::case::{Case, CaseStatus};
use super::rules::BoardRules;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub board: String,
    pub board_name: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Cases opened in the period.
    pub opened: usize,
    /// Cases resolved in the period, by the stage reached (every stage of the policy listed).
    pub resolved_by_stage: Vec<(u8, usize)>,
    pub resolved: usize,
    pub withdrawn: usize,
    /// Of the cases opened in the period, those still open at its end.
    pub still_open: usize,
    /// Working days from opening to resolution, of the cases resolved in the period.
    pub median_working_days: Option<f64>,
    pub longest_working_days: Option<u32>,
    /// Cases that missed a deadline in the period (an overdue notice went).
    pub overdue: usize,
    /// Theme → cases opened in the period.
    pub themes: Vec<(String, usize)>,
    /// Agency → cases opened in the period it is a party to.
    pub agencies: Vec<(String, usize)>,
    /// The pairs of agencies with the most disagreements opened in the period (at most ten).
    pub pairs: Vec<(String, String, usize)>,
}

/// Builds the report one case at a time.
pub struct ReportBuilder<'a> {
    rules: &'a BoardRules,
    from: NaiveDate,
    to: NaiveDate,
    opened: usize,
    resolved_by_stage: BTreeMap<u8, usize>,
    withdrawn: usize,
    still_open: usize,
    taken: Vec<u32>,
    overdue: usize,
    themes: BTreeMap<String, usize>,
    agencies: BTreeMap<String, usize>,
    pairs: BTreeMap<(String, String), usize>,
}

fn counted<K: Ord + Clone>(m: &BTreeMap<K, usize>) -> Vec<(K, usize)> {
    let mut v: Vec<(K, usize)> = m.iter().map(|(k, n)| (k.clone(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

impl<'a> ReportBuilder<'a> {
    pub fn new(rules: &'a BoardRules, from: NaiveDate, to: NaiveDate) -> Self {
        ReportBuilder {
            rules,
            from,
            to,
            opened: 0,
            resolved_by_stage: BTreeMap::new(),
            withdrawn: 0,
            still_open: 0,
            taken: Vec::new(),
            overdue: 0,
            themes: BTreeMap::new(),
            agencies: BTreeMap::new(),
            pairs: BTreeMap::new(),
        }
    }

    fn within(&self, d: NaiveDate) -> bool {
        d >= self.from && d <= self.to
    }

    /// Take one case into account; `overdue` says whether an overdue notice went for it in the period.
    pub fn add(&mut self, case: &Case, overdue: bool) {
        if case.board != self.rules.board_id {
            return;
        }
        if overdue {
            self.overdue += 1;
        }
        if self.within(case.opened_on) {
            self.opened += 1;
            let open_at_end = match case.status {
                CaseStatus::Open => true,
                CaseStatus::Resolved => case.resolution.as_ref().is_some_and(|r| r.resolved_on > self.to),
                CaseStatus::Withdrawn => case
                    .withdrawal
                    .as_ref()
                    .is_some_and(|w| self.rules.local_date(w.at) > self.to),
            };
            self.still_open += usize::from(open_at_end);
            let theme = case
                .record
                .theme
                .clone()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| "not given".into());
            *self.themes.entry(theme.trim().to_lowercase()).or_default() += 1;
            let a = case
                .record
                .escalating_agency
                .clone()
                .unwrap_or_default()
                .trim()
                .to_string();
            let b = case.record.other_agency.clone().unwrap_or_default().trim().to_string();
            for x in [&a, &b].into_iter().filter(|x| !x.is_empty()) {
                *self.agencies.entry(x.clone()).or_default() += 1;
            }
            if !a.is_empty() && !b.is_empty() && a != b {
                let pair = if a <= b { (a, b) } else { (b, a) };
                *self.pairs.entry(pair).or_default() += 1;
            }
        }
        if let Some(r) = case.resolution.as_ref().filter(|r| self.within(r.resolved_on)) {
            *self.resolved_by_stage.entry(r.at_stage).or_default() += 1;
            self.taken.push(r.working_days_taken);
        }
        if let Some(w) = case.withdrawal.as_ref() {
            if self.within(self.rules.local_date(w.at)) {
                self.withdrawn += 1;
            }
        }
    }

    pub fn finish(mut self) -> Report {
        let policy = &self.rules.policy;
        self.taken.sort_unstable();
        let n = self.taken.len();
        let median = match n {
            0 => None,
            _ if n % 2 == 1 => self.taken.get(n / 2).map(|v| f64::from(*v)),
            _ => match (self.taken.get(n / 2 - 1), self.taken.get(n / 2)) {
                (Some(a), Some(b)) => Some((f64::from(*a) + f64::from(*b)) / 2.0),
                _ => None,
            },
        };
        let mut pairs: Vec<(String, String, usize)> =
            counted(&self.pairs).into_iter().map(|((a, b), n)| (a, b, n)).collect();
        pairs.truncate(10); // byte-slice: a Vec of pairs, not text
        let mut stages: BTreeSet<u8> = policy.stages.iter().map(|s| s.number).collect();
        stages.extend(self.resolved_by_stage.keys().copied());
        Report {
            board: self.rules.board_id.clone(),
            board_name: policy.board_name.clone(),
            from: self.from,
            to: self.to,
            opened: self.opened,
            resolved: n,
            resolved_by_stage: stages
                .into_iter()
                .map(|s| (s, self.resolved_by_stage.get(&s).copied().unwrap_or(0)))
                .collect(),
            withdrawn: self.withdrawn,
            still_open: self.still_open,
            median_working_days: median,
            longest_working_days: self.taken.last().copied(),
            overdue: self.overdue,
            themes: counted(&self.themes),
            agencies: counted(&self.agencies),
            pairs,
        }
    }
}

/// The report as CSV: one `section,item,value` row per figure.
pub fn to_csv(r: &Report) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::from("section,item,value\n");
    let mut row = |section: &str, item: &str, value: String| {
        out.push_str(&format!("{},{},{}\n", q(section), q(item), q(&value)));
    };
    row("period", "from", r.from.to_string());
    row("period", "to", r.to.to_string());
    row("cases", "opened", r.opened.to_string());
    row("cases", "resolved", r.resolved.to_string());
    row("cases", "withdrawn", r.withdrawn.to_string());
    row("cases", "opened and still open at the end", r.still_open.to_string());
    row("cases", "missed a deadline", r.overdue.to_string());
    for (stage, n) in &r.resolved_by_stage {
        row("resolved at stage", &stage.to_string(), n.to_string());
    }
    row(
        "working days to resolution",
        "median",
        r.median_working_days.map(|m| format!("{m}")).unwrap_or_default(),
    );
    row(
        "working days to resolution",
        "longest",
        r.longest_working_days.map(|m| m.to_string()).unwrap_or_default(),
    );
    for (t, n) in &r.themes {
        row("theme", t, n.to_string());
    }
    for (a, n) in &r.agencies {
        row("agency", a, n.to_string());
    }
    for (a, b, n) in &r.pairs {
        row("agencies in disagreement", &format!("{a} / {b}"), n.to_string());
    }
    out
}
