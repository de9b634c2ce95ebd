//! The case: the record of one professional disagreement and everything that has happened to it.
//!
//! A [`Case`] is plain data; it changes only through the transitions in [`super::lifecycle`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The fields of an escalation record, keyed as DESIGN.md's contract names them. A board's form may add
/// fields of its own (`extra`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adult_name: Option<String>,
    /// Ten digits, no spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalating_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalating_agency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalating_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalating_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_agency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adult_views: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The stage the sender asks to start at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immediate_risk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

impl Record {
    /// The value of a field by its key, as text, if present and not blank.
    pub fn get(&self, key: &str) -> Option<String> {
        let s = |v: &Option<String>| v.clone().filter(|x| !x.trim().is_empty());
        match key {
            "adult_name" => s(&self.adult_name),
            "nhs_number" => s(&self.nhs_number),
            "escalating_name" => s(&self.escalating_name),
            "escalating_agency" => s(&self.escalating_agency),
            "escalating_email" => s(&self.escalating_email),
            "escalating_phone" => s(&self.escalating_phone),
            "other_name" => s(&self.other_name),
            "other_agency" => s(&self.other_agency),
            "other_email" => s(&self.other_email),
            "summary" => s(&self.summary),
            "adult_views" => s(&self.adult_views),
            "evidence" => s(&self.evidence),
            "outcome" => s(&self.outcome),
            "stage" => self.stage.map(|n| n.to_string()),
            "immediate_risk" => self.immediate_risk.map(|b| b.to_string()),
            "theme" => s(&self.theme),
            "copied_to" => s(&self.copied_to),
            "notes" => s(&self.notes),
            other => self.extra.get(other).cloned().filter(|x| !x.trim().is_empty()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Open,
    Resolved,
    Withdrawn,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(CaseStatus::Open),
            "resolved" => Some(CaseStatus::Resolved),
            "withdrawn" => Some(CaseStatus::Withdrawn),
            _ => None,
        }
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Someone acting on a case: an address, and a name where known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub agency: Option<String>,
}

impl Person {
    pub fn email(email: impl Into<String>) -> Self {
        Person {
            email: email.into(),
            name: None,
            agency: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    /// The practitioner who raised the disagreement (the referrer).
    Escalating,
    /// The professional whose decision is disagreed with.
    Other,
    /// Someone brought in at a stage (a line manager, a senior manager…).
    StageLead,
    /// Someone who owns an action agreed at resolution: asked on the review date whether it was done, and
    /// may answer IMPLEMENTED.
    ActionOwner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub email: String,
    pub name: Option<String>,
    pub agency: Option<String>,
    pub role: ParticipantRole,
    /// The stage at which they joined.
    pub stage: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageEntry {
    pub stage: u8,
    pub entered_at: DateTime<Utc>,
    /// The local date (board timezone) the stage was entered: deadlines count from here.
    pub entered_on: NaiveDate,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub stage: u8,
    pub working_days: u32,
    pub reason: String,
    pub agreed_at: DateTime<Utc>,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub at: DateTime<Utc>,
    pub by: String,
    pub text: String,
}

/// One action agreed at resolution: what, who owns it, by when (Trafford section 2: "Confirm the actions in
/// writing with agencies and include a date to review").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreedAction {
    /// The action as written.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub outcome: String,
    /// The agreed actions as written.
    pub agreed_actions: String,
    /// The same, read one by one with their owners and dates.
    #[serde(default)]
    pub actions: Vec<AgreedAction>,
    /// How any outstanding issues will be pursued (Trafford section 2, Buckinghamshire 1.7).
    #[serde(default)]
    pub outstanding: String,
    /// The review date given, or the one the policy sets (see [`Resolution::review_on`]).
    pub review_date: Option<NaiveDate>,
    pub at_stage: u8,
    pub resolved_at: DateTime<Utc>,
    pub resolved_on: NaiveDate,
    pub by: String,
    /// Working days from opening to resolution (the boards' "time taken").
    pub working_days_taken: u32,
    pub calendar_days_taken: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub reason: String,
    pub at: DateTime<Utc>,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Implemented {
    pub at: DateTime<Utc>,
    pub by: String,
    pub text: String,
}

/// One professional disagreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// E.g. `BRAD-2027-0042`.
    pub reference: String,
    pub board: String,
    pub status: CaseStatus,
    pub stage: u8,
    pub opened_at: DateTime<Utc>,
    pub opened_on: NaiveDate,
    pub immediate_risk: bool,
    pub record: Record,
    pub participants: Vec<Participant>,
    pub stages: Vec<StageEntry>,
    #[serde(default)]
    pub extensions: Vec<Extension>,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default)]
    pub resolution: Option<Resolution>,
    #[serde(default)]
    pub withdrawal: Option<Withdrawal>,
    #[serde(default)]
    pub actions_implemented: Option<Implemented>,
    /// Its personal data was removed at the end of the board's retention period (`core::retention`): it
    /// keeps its figures, and no command changes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub personal_data_removed: bool,
}

impl Case {
    /// The day the current stage was entered.
    pub fn stage_entered_on(&self) -> NaiveDate {
        self.stages
            .iter()
            .rev()
            .find(|e| e.stage == self.stage)
            .map(|e| e.entered_on)
            .unwrap_or(self.opened_on)
    }

    /// Working days of extension agreed while the case was at `stage`.
    pub fn extension_at(&self, stage: u8) -> u32 {
        self.extensions
            .iter()
            .filter(|e| e.stage == stage)
            .fold(0u32, |n, e| n.saturating_add(e.working_days))
    }

    /// Working days of extension agreed in all.
    pub fn extension_total(&self) -> u32 {
        self.extensions
            .iter()
            .fold(0u32, |n, e| n.saturating_add(e.working_days))
    }

    /// "Northfield NHS Trust and Westshire Council": how emails and reports name the parties without
    /// naming the adult.
    pub fn agencies(&self) -> String {
        [
            self.record.escalating_agency.as_deref(),
            self.record.other_agency.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|a| !a.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" and ")
    }

    pub fn referrer(&self) -> Option<&Participant> {
        self.participants.iter().find(|p| p.role == ParticipantRole::Escalating)
    }

    pub fn other_party(&self) -> Option<&Participant> {
        self.participants.iter().find(|p| p.role == ParticipantRole::Other)
    }

    pub fn is_participant(&self, email: &str) -> bool {
        self.participants.iter().any(|p| p.email.eq_ignore_ascii_case(email))
    }
}

/// A case reference: prefix, year of opening, and a number that grows per board and year.
pub fn format_reference(prefix: &str, year: i32, number: i64) -> String {
    format!("{prefix}-{year}-{number:04}")
}
