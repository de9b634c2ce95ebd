//! A board's escalation policy as data: stages, deadline rules, reminder marks, notification duties,
//! scope, immediate-risk guidance, extensions, the record form and the notes to surface.
//!
//! One TOML file per board in `config/policies/` deserialises into [`Policy`]; [`Policy::validate`] lists
//! every problem at once with the key it concerns. Every reading POLICIES.md takes of a seed document is a
//! setting here, never a constant in code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The people a duty can notify. Board roles get their address from the board's configuration; the
/// referrer and the other party are the case's own participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    BusinessManager,
    IndependentChair,
    StrategicSafeguardingServiceManager,
    BusinessOffice,
    Referrer,
    OtherParty,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::BusinessManager,
        Role::IndependentChair,
        Role::StrategicSafeguardingServiceManager,
        Role::BusinessOffice,
        Role::Referrer,
        Role::OtherParty,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Role::BusinessManager => "business-manager",
            Role::IndependentChair => "independent-chair",
            Role::StrategicSafeguardingServiceManager => "strategic-safeguarding-service-manager",
            Role::BusinessOffice => "business-office",
            Role::Referrer => "referrer",
            Role::OtherParty => "other-party",
        }
    }

    /// Whether the address comes from the board's configuration (rather than from the case).
    pub fn is_board_role(self) -> bool {
        !matches!(self, Role::Referrer | Role::OtherParty)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// How a limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DayUnit {
    Calendar,
    Working,
}

/// What a stage's own limit counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountFrom {
    /// From the day the case was opened (South Gloucestershire: 1, 2, 3 and 5 working days).
    Opening,
    /// From the day the case entered the stage (Trafford: deadlines re-chain on escalation).
    StageEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub days: u32,
    pub unit: DayUnit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineRules {
    /// What the stages' `limit_working_days` count from; required when any stage has a limit.
    #[serde(default)]
    pub stage_limits_count_from: Option<CountFrom>,
    /// A limit on the whole procedure, counted from opening.
    #[serde(default)]
    pub overall: Option<Limit>,
    /// With stage limits counted from opening: the last stage's deadline is met by reaching the last stage
    /// ("either resolved or ... escalated to stage 4", South Gloucestershire), so it binds below it only.
    #[serde(default)]
    pub last_stage_met_on_reaching: bool,
    /// Where the policy says it, in its own words.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub number: u8,
    pub name: String,
    /// Who meets at this stage, in the policy's words.
    pub who: String,
    /// What the people at this stage should do.
    pub guidance: String,
    /// The stage's own limit in working days (see [`DeadlineRules::stage_limits_count_from`]).
    #[serde(default)]
    pub limit_working_days: Option<u32>,
    /// Who is involved at this stage for each kind of agency (South Gloucestershire's Appendix 2).
    #[serde(default)]
    pub involved: BTreeMap<String, String>,
    /// The checklist the policy gives once a disagreement is resolved at this stage.
    #[serde(default)]
    pub after_resolution: Vec<String>,
    /// Forms to complete at this stage (for example the Monitoring Form).
    #[serde(default)]
    pub forms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reminders {
    /// Working days before each deadline on which a reminder goes out; 0 is the morning of the due date.
    pub before_due_working_days: Vec<u32>,
    /// Whether a notice goes out the working day after a deadline passes unresolved.
    pub overdue: bool,
    /// Whether the people who agreed actions are asked on the review date if they were implemented.
    #[serde(default = "yes")]
    pub review_date: bool,
    /// Where the policy asks for agreed actions to be checked but sets no date (Trafford: "Check to
    /// ensure agreed actions have been fully implemented"): with no review date and no action dates, the
    /// action owners are asked this many working days after resolution.
    #[serde(default)]
    pub check_actions_after_working_days: Option<u32>,
}

fn yes() -> bool {
    true
}

fn first_stage() -> u8 {
    1
}

/// The event a duty follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// The case enters this stage (by escalation, or by opening there).
    EnteringStage(u8),
    /// The case is resolved at this stage or a higher one (1: at any stage).
    ResolvedAtOrAbove(u8),
    /// This deadline (`"overall"`, `"stage-4"`, or `"any"`) passes with the case unresolved.
    DeadlinePassed(String),
    /// The case is withdrawn.
    Withdrawn(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duty {
    pub when: Trigger,
    pub notify: Vec<Role>,
    /// Why, in the policy's words: it goes into the notification.
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SameOrganisation {
    Allow,
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub same_organisation: SameOrganisation,
    /// What to tell a practitioner whose disagreement is with a colleague in the same organisation.
    #[serde(default)]
    pub same_organisation_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmediateRisk {
    /// Shown prominently whenever immediate risk is flagged.
    pub guidance: String,
    /// Whether a case flagged as immediate risk may open above stage 1 or skip stages on escalation.
    pub may_start_at_higher_stage: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extensions {
    pub allowed: bool,
    /// The most working days one case may be extended by, in total.
    #[serde(default)]
    pub max_total_working_days: u32,
    /// Said when an extension is refused or granted.
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// The JSON key (DESIGN.md's field keys, or a board's own).
    pub key: String,
    /// The label on the board's form.
    pub label: String,
    #[serde(default)]
    pub required: bool,
    /// Other labels people write for this field.
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    pub name: String,
    pub fields: Vec<FormField>,
}

/// The board's own record of the case as its seed lays it out (Bradford's Record of Escalation, Rotherham's
/// and Buckinghamshire's Appendix B, South Gloucestershire's Monitoring Form, Trafford's Escalation
/// Record): each row a label of the seed's form and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDocument {
    pub title: String,
    /// Where the seed has it ("Appendix 2").
    pub source: String,
    /// The seed's words above the form.
    #[serde(default)]
    pub intro: Vec<String>,
    /// The seed's words below the form ("Action Note: …").
    #[serde(default)]
    pub action_note: Vec<String>,
    pub rows: Vec<DocumentRow>,
    /// The people on the case get the record so far with the confirmation of each escalation ("If
    /// escalating to next stage use as basis of report to manager at next stage").
    #[serde(default = "yes")]
    pub with_escalation: bool,
    /// The first stage whose escalation carries it (South Gloucestershire's Monitoring Form is "to be
    /// used at stage three and stage four").
    #[serde(default = "first_stage")]
    pub escalation_from_stage: u8,
    /// Everyone involved gets the final record with the written confirmation of the outcome.
    #[serde(default = "yes")]
    pub with_resolution: bool,
    /// The board roles' notifications that carry it, by what happened: `opened`, `escalated`, `resolved`,
    /// `withdrawn`.
    #[serde(default)]
    pub to_roles_on: Vec<String>,
}

/// One row of a record document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRow {
    /// A heading over several rows ("Signature of challenger manager").
    #[serde(default)]
    pub group: Option<String>,
    /// The seed's label.
    pub label: String,
    /// Where the value comes from: a record field key, or one of [`super::paperwork::COMPUTED`].
    pub value: String,
}

/// A key contact of the partnership for one organisation, as the policy publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyContact {
    /// "Airedale NHS Foundation Trust (ANHSFT)".
    pub organisation: String,
    /// Other names the organisation goes by on a record ("ANHSFT", "Airedale").
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The job role to approach ("Head of Safeguarding").
    pub role: String,
    /// A team mailbox, where the policy publishes one.
    #[serde(default)]
    pub email: Option<String>,
}

/// The events whose board-role notifications may carry the record document.
pub const DOCUMENT_EVENTS: [&str; 4] = ["opened", "escalated", "resolved", "withdrawn"];

/// Where a note is surfaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoteWhen {
    /// In every acknowledgement of a new case.
    Opening,
    /// When the case is resolved.
    Resolution,
    /// On entering the stages listed in `stages`.
    Stage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyNote {
    pub id: String,
    pub title: String,
    pub text: String,
    pub when: NoteWhen,
    #[serde(default)]
    pub stages: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub document: String,
    pub seed: String,
}

/// One board's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub id: String,
    pub board_name: String,
    pub short_name: String,
    /// The prefix of case references, e.g. `BRAD` in `BRAD-2027-0042`.
    pub reference_prefix: String,
    pub source: Source,
    /// The discussion expected before a case is opened, if the policy names one.
    #[serde(default)]
    pub pre_escalation: String,
    pub stages: Vec<Stage>,
    /// Said when someone asks to escalate beyond the last stage.
    #[serde(default)]
    pub final_stage_note: String,
    pub deadlines: DeadlineRules,
    pub reminders: Reminders,
    #[serde(default)]
    pub duties: Vec<Duty>,
    pub scope: Scope,
    pub immediate_risk: ImmediateRisk,
    pub extensions: Extensions,
    pub form: Form,
    /// The board's key contacts for each organisation (Bradford's Appendix 3): whom to approach.
    #[serde(default)]
    pub key_contacts: Vec<KeyContact>,
    /// The board's own record form, filled in from the case and carried with it (see
    /// [`super::paperwork`]).
    #[serde(default)]
    pub record_document: Option<RecordDocument>,
    #[serde(default)]
    pub notes: Vec<PolicyNote>,
    /// Disagreement themes, for reporting.
    pub themes: Vec<String>,
    /// The readings taken where the seed is silent or ambiguous, for operators to review.
    #[serde(default)]
    pub readings: Vec<String>,
}

/// A problem found in a policy: the key it concerns and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Policy {
    pub fn stage(&self, number: u8) -> Option<&Stage> {
        self.stages.iter().find(|s| s.number == number)
    }

    pub fn last_stage(&self) -> u8 {
        self.stages.last().map(|s| s.number).unwrap_or(1)
    }

    pub fn stage_name(&self, number: u8) -> String {
        self.stage(number)
            .map(|s| format!("stage {} ({})", s.number, s.name))
            .unwrap_or_else(|| format!("stage {number}"))
    }

    /// Every problem in the policy, at once. An empty list means the policy can be used.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.id.trim().is_empty() {
            p.push(Problem::new("id", "give the policy an id, e.g. \"bradford\""));
        }
        let prefix_ok = (2..=8).contains(&self.reference_prefix.len())
            && self.reference_prefix.chars().all(|c| c.is_ascii_uppercase());
        if !prefix_ok {
            p.push(Problem::new(
                "reference_prefix",
                "use 2 to 8 capital letters A-Z, e.g. \"BRAD\"",
            ));
        }
        if self.stages.is_empty() {
            p.push(Problem::new("stages", "list at least one stage"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            let expected = i + 1;
            if usize::from(s.number) != expected {
                p.push(Problem::new(
                    format!("stages[{i}].number"),
                    format!(
                        "stages must be numbered 1, 2, 3… in order: expected {expected}, found {}",
                        s.number
                    ),
                ));
            }
            if s.name.trim().is_empty() {
                p.push(Problem::new(format!("stages[{i}].name"), "give the stage a name"));
            }
            if s.limit_working_days == Some(0) {
                p.push(Problem::new(
                    format!("stages[{i}].limit_working_days"),
                    "a limit of 0 working days cannot be met: use 1 or more, or leave it out",
                ));
            }
        }
        let limited = self.stages.iter().filter(|s| s.limit_working_days.is_some()).count();
        if limited > 0 && limited < self.stages.len() {
            p.push(Problem::new(
                "stages",
                "either every stage has limit_working_days or none does",
            ));
        }
        match (limited > 0, self.deadlines.stage_limits_count_from) {
            (true, None) => p.push(Problem::new(
                "deadlines.stage_limits_count_from",
                "stages have limits: say whether they count from \"opening\" or \"stage-entry\"",
            )),
            (false, Some(_)) => p.push(Problem::new(
                "deadlines.stage_limits_count_from",
                "no stage has limit_working_days, so remove this key or add the limits",
            )),
            _ => {}
        }
        if limited == 0 && self.deadlines.overall.is_none() {
            p.push(Problem::new(
                "deadlines.overall",
                "the policy has no deadline at all: set an overall limit or stage limits",
            ));
        }
        if let Some(o) = &self.deadlines.overall {
            if o.days == 0 {
                p.push(Problem::new("deadlines.overall.days", "use 1 or more days"));
            }
        }
        let last = self.last_stage();
        for (i, d) in self.duties.iter().enumerate() {
            let key = format!("duties[{i}]");
            match &d.when {
                Trigger::EnteringStage(n) | Trigger::ResolvedAtOrAbove(n) if *n < 1 || *n > last => {
                    p.push(Problem::new(
                        format!("{key}.when"),
                        format!("stage {n} does not exist: this policy has stages 1 to {last}"),
                    ))
                }
                Trigger::DeadlinePassed(label) => {
                    let ok = label == "overall"
                        || label == "any"
                        || label
                            .strip_prefix("stage-")
                            .and_then(|n| n.parse::<u8>().ok())
                            .is_some_and(|n| self.stage(n).and_then(|s| s.limit_working_days).is_some());
                    if !ok {
                        p.push(Problem::new(
                            format!("{key}.when.deadline_passed"),
                            format!("{label:?} is not a deadline of this policy: use \"overall\", \"any\" or \"stage-N\" for a stage with a limit"),
                        ));
                    }
                }
                _ => {}
            }
            if d.notify.is_empty() {
                p.push(Problem::new(
                    format!("{key}.notify"),
                    "name at least one role to notify",
                ));
            }
        }
        if self.scope.same_organisation == SameOrganisation::Refuse
            && self.scope.same_organisation_message.trim().is_empty()
        {
            p.push(Problem::new(
                "scope.same_organisation_message",
                "say where a same-organisation disagreement should go instead",
            ));
        }
        if self.immediate_risk.guidance.trim().is_empty() {
            p.push(Problem::new(
                "immediate_risk.guidance",
                "give the guidance shown when risk is flagged",
            ));
        }
        if self.extensions.allowed && self.extensions.max_total_working_days == 0 {
            p.push(Problem::new(
                "extensions.max_total_working_days",
                "extensions are allowed: set the most working days a case may be extended by",
            ));
        }
        let mut keys = BTreeSet::new();
        for (i, f) in self.form.fields.iter().enumerate() {
            if !keys.insert(f.key.as_str()) {
                p.push(Problem::new(
                    format!("form.fields[{i}].key"),
                    format!("{:?} appears twice", f.key),
                ));
            }
        }
        for required in ["summary"] {
            if !keys.contains(required) {
                p.push(Problem::new(
                    "form.fields",
                    format!("the form needs a {required:?} field"),
                ));
            }
        }
        if let Some(doc) = &self.record_document {
            if doc.rows.is_empty() {
                p.push(Problem::new("record_document.rows", "list the form's rows"));
            }
            for (i, r) in doc.rows.iter().enumerate() {
                let known = super::paperwork::COMPUTED.contains(&r.value.as_str())
                    || super::paperwork::RECORD_KEYS.contains(&r.value.as_str())
                    || keys.contains(r.value.as_str());
                if !known {
                    p.push(Problem::new(
                        format!("record_document.rows[{i}].value"),
                        format!(
                            "{:?} is neither a field of the form nor one of: {}",
                            r.value,
                            super::paperwork::COMPUTED.join(", ")
                        ),
                    ));
                }
            }
            for (i, e) in doc.to_roles_on.iter().enumerate() {
                if !DOCUMENT_EVENTS.contains(&e.as_str()) {
                    p.push(Problem::new(
                        format!("record_document.to_roles_on[{i}]"),
                        format!("{e:?}: use one of {}", DOCUMENT_EVENTS.join(", ")),
                    ));
                }
            }
        }
        for (i, n) in self.notes.iter().enumerate() {
            for s in &n.stages {
                if self.stage(*s).is_none() {
                    p.push(Problem::new(
                        format!("notes[{i}].stages"),
                        format!("stage {s} does not exist"),
                    ));
                }
            }
        }
        if self.themes.is_empty() {
            p.push(Problem::new(
                "themes",
                "list the disagreement themes used for reporting",
            ));
        }
        p
    }
}
