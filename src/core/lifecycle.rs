//! The case state machine: open, escalate, resolve, extend, withdraw, add a note, record that agreed
//! actions were implemented — and what a fired timer means.
//!
//! Every function here is pure: it takes the board's rules, the case, the command and `now`, and returns a
//! [`Transition`] — the new case, the event for the audit log, the deadlines that now apply, the timers to
//! create and cancel, the notification duties that follow and the guidance the policy gives at that point —
//! or an error that says why the command cannot be applied. Delivering any of it is the shell's job.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::case::{
    AgreedAction, Case, CaseStatus, Extension, Implemented, Note, Participant, ParticipantRole, Person, Record,
    Resolution, StageEntry, Withdrawal,
};
use super::essentials;
use super::nhs;
use super::policy::{NoteWhen, Role, SameOrganisation, Trigger};
use super::rules::BoardRules;
use super::schedule::{self, Deadline, Schedule, Timer, TimerChanges, TimerKind};

/// A command on an existing case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Move to the next stage, or to `to_stage` where the policy allows skipping for immediate risk.
    Escalate {
        to_stage: Option<u8>,
        /// The people who take the case on at the new stage.
        people: Vec<Person>,
        reason: Option<String>,
        /// The escalation is made because the adult is at immediate risk.
        immediate_risk: bool,
    },
    Resolve {
        outcome: String,
        /// The agreed actions as written.
        agreed_actions: String,
        /// The same, read one by one (owners, dates).
        #[serde(default)]
        actions: Vec<AgreedAction>,
        /// How any outstanding issues will be pursued.
        #[serde(default)]
        outstanding: String,
        review_date: Option<NaiveDate>,
    },
    Extend {
        working_days: u32,
        reason: String,
    },
    Withdraw {
        reason: String,
    },
    Note {
        text: String,
    },
    /// Bring more people in at the current stage without escalating (Bradford: "through the appropriate
    /// tiers of management").
    Add {
        people: Vec<Person>,
    },
    ActionsImplemented {
        text: String,
    },
    /// The record's fields as a practitioner sent them back (the board's form filled in, as a Word
    /// document or as text): those that differ from the record are updated.
    UpdateRecord {
        fields: std::collections::BTreeMap<String, String>,
        /// What they came in: "the attached TRAF-2027-0007 Escalation Record.docx", "the text".
        from: String,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Escalate { .. } => "escalate",
            Command::Resolve { .. } => "resolve",
            Command::Extend { .. } => "extend",
            Command::Withdraw { .. } => "withdraw",
            Command::Note { .. } => "note",
            Command::Add { .. } => "add",
            Command::ActionsImplemented { .. } => "actions_implemented",
            Command::UpdateRecord { .. } => "update_record",
        }
    }
}

/// What happened, for the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `opened`, `escalated`, `resolved`, `extended`, `withdrawn`, `note_added`, `actions_implemented`.
    pub kind: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// One sentence a board manager can read in an audit listing.
    pub summary: String,
    pub detail: serde_json::Value,
}

/// A duty to tell someone, with the policy's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub role: Role,
    pub why: String,
    pub trigger: Trigger,
}

/// Something the policy says to do at this point, for the people on the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guidance {
    pub title: String,
    pub items: Vec<String>,
}

/// The result of a transition: everything the shell must store and deliver, together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub case: Case,
    pub event: Event,
    /// The deadlines of the case after the transition (none once it is closed).
    pub deadlines: Vec<Deadline>,
    pub timers: TimerChanges,
    pub notifications: Vec<Notification>,
    pub guidance: Vec<Guidance>,
}

/// Why a case cannot be opened: every problem at once, each one a thing the sender can fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[error("the escalation cannot be opened: {}", problems.join("; "))]
pub struct Refusal {
    pub problems: Vec<String>,
    /// True when the disagreement is outside the procedure altogether (not a fixable omission).
    pub out_of_scope: bool,
}

/// Why a command cannot be applied to a case.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("{0}")]
pub struct TransitionError(pub String);

/// A new escalation as read from an email or a form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCase {
    pub record: Record,
    /// Who sent it: their address stands in for the escalating email when the form leaves it out.
    pub sender: Person,
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn norm_org(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .split_whitespace()
        .filter(|w| !matches!(*w, "the" | "ltd" | "limited" | "plc"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn domain(email: &str) -> Option<String> {
    email.rsplit_once('@').map(|(_, d)| d.trim().to_lowercase())
}

/// Whether the two parties work for the same organisation, as far as the record shows: the same agency
/// name, or the same email domain where that domain is not one many organisations share.
pub fn same_organisation(rules: &BoardRules, record: &Record, sender: &Person) -> bool {
    if let (Some(a), Some(b)) = (record.get("escalating_agency"), record.get("other_agency")) {
        let (a, b) = (norm_org(&a), norm_org(&b));
        if !a.is_empty() && a == b {
            return true;
        }
    }
    let esc = record.get("escalating_email").unwrap_or_else(|| sender.email.clone());
    if let (Some(a), Some(b)) = (domain(&esc), record.get("other_email").as_deref().and_then(domain)) {
        let shared = rules
            .shared_domains
            .iter()
            .any(|s| a == s.to_lowercase() || a.ends_with(&format!(".{}", s.to_lowercase())));
        if a == b && !shared {
            return true;
        }
    }
    false
}

fn stage_guidance(rules: &BoardRules, stage: u8, title: String) -> Vec<Guidance> {
    let policy = &rules.policy;
    let mut out = Vec::new();
    if let Some(s) = policy.stage(stage) {
        let mut items = vec![format!("Who: {}", s.who), s.guidance.clone()];
        for (kind, who) in &s.involved {
            items.push(format!("{kind}: {who}"));
        }
        for form in &s.forms {
            items.push(format!("Complete the {form}."));
        }
        out.push(Guidance { title, items });
    }
    for n in policy
        .notes
        .iter()
        .filter(|n| n.when == NoteWhen::Stage && n.stages.contains(&stage))
    {
        out.push(Guidance {
            title: n.title.clone(),
            items: vec![n.text.clone()],
        });
    }
    out
}

fn duties_for(rules: &BoardRules, matches: impl Fn(&Trigger) -> bool) -> Vec<Notification> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for duty in rules.policy.duties.iter().filter(|d| matches(&d.when)) {
        for role in &duty.notify {
            if seen.insert((*role, duty.why.clone())) {
                out.push(Notification {
                    role: *role,
                    why: duty.why.clone(),
                    trigger: duty.when.clone(),
                });
            }
        }
    }
    out
}

fn transition(
    rules: &BoardRules,
    before: Option<&Case>,
    case: Case,
    event: Event,
    notifications: Vec<Notification>,
    guidance: Vec<Guidance>,
) -> Transition {
    let old = before.map(|c| schedule::schedule(rules, c)).unwrap_or_default();
    let new = schedule::schedule(rules, &case);
    let timers = schedule::diff(&old, &new, event.at);
    Transition {
        case,
        event,
        deadlines: new.deadlines,
        timers,
        notifications,
        guidance,
    }
}

/// Where [`open`] keeps why an NHS number written in the record could not be used (the adult being known
/// by name): the acknowledgement asks for it again.
pub const UNUSABLE_NHS_NUMBER: &str = "nhs_number_unusable";

/// Open a case under reference `reference`, or refuse with every problem at once.
pub fn open(rules: &BoardRules, new: &NewCase, reference: &str, now: DateTime<Utc>) -> Result<Transition, Refusal> {
    let policy = &rules.policy;
    let mut record = new.record.clone();
    let mut problems = Vec::new();

    if record.get("escalating_email").is_none() && !blank(&new.sender.email) {
        record.escalating_email = Some(new.sender.email.clone());
    }
    if record.get("escalating_name").is_none() {
        if let Some(n) = new.sender.name.clone().filter(|n| !blank(n)) {
            record.escalating_name = Some(n);
        }
    }
    // An NHS number or an address that cannot be used is set aside and asked for again (the
    // acknowledgement says so); it refuses only where it was the one thing identifying the adult.
    if let Some(n) = record.get("nhs_number") {
        match nhs::normalise(&n) {
            Ok(digits) => record.nhs_number = Some(digits),
            Err(e) => {
                record.nhs_number = None;
                if essentials::identifies_adult(&record) {
                    record.extra.insert(UNUSABLE_NHS_NUMBER.into(), format!("{e}."));
                } else {
                    problems.push(format!("{e}."));
                }
            }
        }
    }
    for key in ["escalating_email", "other_email"] {
        if let Some(e) = record.get(key) {
            if !looks_like_email(&e) {
                problems.push(format!("{e:?} does not look like an email address."));
            }
        }
    }
    // Open, then ask: only the four essentials refuse; the form's other rows are asked for.
    problems.extend(essentials::missing(&record, &new.sender.email));
    let immediate_risk = record.immediate_risk.unwrap_or(false);
    let last = policy.last_stage();
    let stage = record.stage.unwrap_or(1);
    if stage < 1 || stage > last {
        problems.push(format!(
            "Stage {stage} does not exist: {} has stages 1 to {last}.",
            policy.short_name
        ));
    }
    let mut out_of_scope = false;
    if policy.scope.same_organisation == SameOrganisation::Refuse && same_organisation(rules, &record, &new.sender) {
        out_of_scope = true;
        problems.insert(0, policy.scope.same_organisation_message.clone());
    }
    if !problems.is_empty() {
        return Err(Refusal { problems, out_of_scope });
    }

    let opened_on = rules.local_date(now);
    let esc_email = record.get("escalating_email").unwrap_or_default();
    let mut participants = vec![Participant {
        email: esc_email.clone(),
        name: record.get("escalating_name"),
        agency: record.get("escalating_agency"),
        role: ParticipantRole::Escalating,
        stage,
    }];
    // Whoever sent the record (a team mailbox sending on the practitioner's behalf) is on the case too, so
    // that a reply to the acknowledgement sent to them can act.
    if !blank(&new.sender.email) && !new.sender.email.eq_ignore_ascii_case(&esc_email) {
        participants.push(Participant {
            email: new.sender.email.clone(),
            name: new.sender.name.clone(),
            agency: record.get("escalating_agency"),
            role: ParticipantRole::Escalating,
            stage,
        });
    }
    if let Some(email) = record.get("other_email") {
        participants.push(Participant {
            email,
            name: record.get("other_name"),
            agency: record.get("other_agency"),
            role: ParticipantRole::Other,
            stage,
        });
    }
    let case = Case {
        reference: reference.to_string(),
        board: rules.board_id.clone(),
        status: CaseStatus::Open,
        stage,
        opened_at: now,
        opened_on,
        immediate_risk,
        record,
        participants,
        stages: vec![StageEntry {
            stage,
            entered_at: now,
            entered_on: opened_on,
            by: esc_email.clone(),
        }],
        extensions: Vec::new(),
        notes: Vec::new(),
        resolution: None,
        withdrawal: None,
        actions_implemented: None,
        personal_data_removed: false,
    };
    let notifications = duties_for(rules, |t| matches!(t, Trigger::EnteringStage(n) if *n <= stage));
    let mut guidance = Vec::new();
    if immediate_risk {
        guidance.push(Guidance {
            title: "The adult is at immediate risk".into(),
            items: vec![policy.immediate_risk.guidance.clone()],
        });
    }
    if stage > 1 {
        // POLICIES.md, "a record that is already past stage 1": the earlier stages happened before the
        // board mailbox heard of it. Skipping a stage not gone through is another matter, which only some
        // policies allow, for immediate risk.
        let skipping = if policy.immediate_risk.may_start_at_higher_stage {
            "the policy lets a case start above stage 1 only when the adult is at immediate risk of harm"
        } else {
            "the policy starts every disagreement at stage 1"
        };
        guidance.push(Guidance {
            title: format!("Opened at {}", policy.stage_name(stage)),
            items: vec![
                format!(
                    "Your record says the disagreement has already been through the earlier stages, so it is opened at {} and that stage's deadline counts from today.",
                    policy.stage_name(stage)
                ),
                format!(
                    "If the earlier stages have not taken place, please reply NOTE and say so: {skipping}."
                ),
            ],
        });
    }
    guidance.extend(stage_guidance(
        rules,
        stage,
        format!("What to do now: {}", policy.stage_name(stage)),
    ));
    for n in policy.notes.iter().filter(|n| n.when == NoteWhen::Opening) {
        guidance.push(Guidance {
            title: n.title.clone(),
            items: vec![n.text.clone()],
        });
    }
    let event = Event {
        kind: "opened".into(),
        at: now,
        actor: esc_email,
        summary: format!("{reference} opened at {}", policy.stage_name(stage)),
        detail: serde_json::json!({ "stage": stage, "immediate_risk": immediate_risk }),
    };
    Ok(transition(rules, None, case, event, notifications, guidance))
}

/// A light check that a string is an address someone could be emailed at.
pub fn looks_like_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '>')
                && s.matches('@').count() == 1
        }
        None => false,
    }
}

fn require_open(case: &Case) -> Result<(), TransitionError> {
    match case.status {
        CaseStatus::Open => Ok(()),
        CaseStatus::Resolved => Err(TransitionError(format!(
            "Case {} is already resolved{}, so it cannot be changed. If the disagreement has come back, please open a new escalation.",
            case.reference,
            case.resolution
                .as_ref()
                .map(|r| format!(" (at stage {} on {})", r.at_stage, r.resolved_on.format("%-d %B %Y")))
                .unwrap_or_default()
        ))),
        CaseStatus::Withdrawn => Err(TransitionError(format!(
            "Case {} was withdrawn, so it cannot be changed. Please open a new escalation if it is needed.",
            case.reference
        ))),
    }
}

/// Apply `command` to `case`, by `actor`, at `now`.
pub fn apply(
    rules: &BoardRules,
    case: &Case,
    actor: &Person,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Transition, TransitionError> {
    let policy = &rules.policy;
    let today = rules.local_date(now);
    let by = actor.email.clone();
    let mut next = case.clone();
    let reference = &case.reference;
    if case.personal_data_removed {
        return Err(TransitionError(format!(
            "Case {reference} closed long ago and its personal data was removed under the board's retention \
             period: it can no longer be changed. Open a new escalation if the matter has come back."
        )));
    }
    match command {
        Command::Escalate {
            to_stage,
            people,
            reason,
            immediate_risk,
        } => {
            require_open(case)?;
            let last = policy.last_stage();
            if case.stage >= last {
                return Err(TransitionError(
                    format!(
                        "Case {reference} is already at {}, the last stage of {}'s procedure. {}",
                        policy.stage_name(case.stage),
                        policy.short_name,
                        policy.final_stage_note
                    )
                    .trim_end()
                    .to_string(),
                ));
            }
            let target = to_stage.unwrap_or(case.stage + 1);
            if target <= case.stage {
                return Err(TransitionError(format!(
                    "Case {reference} is already at {}: escalation moves it to a higher stage (stage {} is next).",
                    policy.stage_name(case.stage),
                    case.stage + 1
                )));
            }
            if target > last {
                return Err(TransitionError(format!(
                    "Stage {target} does not exist: {}'s procedure has stages 1 to {last}.",
                    policy.short_name
                )));
            }
            if target > case.stage + 1 {
                if !policy.immediate_risk.may_start_at_higher_stage {
                    return Err(TransitionError(format!(
                        "{}'s procedure goes one stage at a time: case {reference} can move to stage {} next.",
                        policy.short_name,
                        case.stage + 1
                    )));
                }
                if !(*immediate_risk || case.immediate_risk) {
                    return Err(TransitionError(format!(
                        "Skipping to stage {target} is only for an adult at immediate risk of harm. Say so in your reply to skip stages, or escalate to stage {}.",
                        case.stage + 1
                    )));
                }
            }
            // People named by role ("Head of Safeguarding") are found in the board's directory.
            let mut people = people.clone();
            for p in super::directory::people_for_roles(rules, case, reason.as_deref().unwrap_or_default(), target) {
                if !people.iter().any(|q| q.email.eq_ignore_ascii_case(&p.email)) {
                    people.push(p);
                }
            }
            // Below the last stage, people take the case on: the escalation names them, so that the bot can
            // tell them and remind them. The last stage belongs to the board (its chair or panel).
            if people.is_empty() && target < last {
                return Err(TransitionError(format!(
                    "ESCALATE needs the name and email address of each person taking case {reference} on at {}, one per line under the word ESCALATE (for example \"Lee Lead <lee.lead@nhs.net>\"){}, so that they are told and reminded.",
                    policy.stage_name(target),
                    if rules.directory.is_empty() {
                        String::new()
                    } else {
                        let mut roles: Vec<&str> = rules.directory.iter().map(|d| d.role.as_str()).collect();
                        roles.sort_unstable();
                        roles.dedup();
                        format!(", or a role from the board's directory ({})", roles.join(", "))
                    }
                )));
            }
            for p in &people {
                if !looks_like_email(&p.email) {
                    return Err(TransitionError(format!(
                        "{:?} does not look like an email address.",
                        p.email
                    )));
                }
                if !next.is_participant(&p.email) {
                    next.participants.push(Participant {
                        email: p.email.trim().to_string(),
                        name: p.name.clone(),
                        agency: p.agency.clone(),
                        role: ParticipantRole::StageLead,
                        stage: target,
                    });
                }
            }
            next.stage = target;
            next.immediate_risk = case.immediate_risk || *immediate_risk;
            next.stages.push(StageEntry {
                stage: target,
                entered_at: now,
                entered_on: today,
                by: by.clone(),
            });
            let from = case.stage;
            let notifications = duties_for(
                rules,
                |t| matches!(t, Trigger::EnteringStage(n) if *n > from && *n <= target),
            );
            let guidance = stage_guidance(rules, target, format!("What to do now: {}", policy.stage_name(target)));
            let event = Event {
                kind: "escalated".into(),
                at: now,
                actor: by,
                summary: format!(
                    "{reference} escalated from stage {from} to {}",
                    policy.stage_name(target)
                ),
                detail: serde_json::json!({
                    "from": from, "to": target, "reason": reason, "immediate_risk": immediate_risk,
                    "people": people.iter().map(|p| p.email.clone()).collect::<Vec<_>>(),
                }),
            };
            Ok(transition(rules, Some(case), next, event, notifications, guidance))
        }
        Command::Resolve {
            outcome,
            agreed_actions,
            actions,
            outstanding,
            review_date,
        } => {
            require_open(case)?;
            if blank(outcome) {
                return Err(TransitionError(
                    "Please say what was agreed: the outcome is needed to resolve a case.".into(),
                ));
            }
            if let Some(r) = review_date {
                if *r < today {
                    return Err(TransitionError(format!(
                        "The review date {} is in the past: please give a date from today on.",
                        r.format("%-d %B %Y")
                    )));
                }
            }
            let review = review_on(rules, *review_date, actions, agreed_actions, today);
            let resolution = Resolution {
                outcome: outcome.trim().to_string(),
                agreed_actions: agreed_actions.trim().to_string(),
                actions: actions.clone(),
                outstanding: outstanding.trim().to_string(),
                review_date: review,
                at_stage: case.stage,
                resolved_at: now,
                resolved_on: today,
                by: by.clone(),
                working_days_taken: rules.calendar.working_days_between(case.opened_on, today),
                calendar_days_taken: (today - case.opened_on).num_days(),
            };
            next.status = CaseStatus::Resolved;
            next.resolution = Some(resolution.clone());
            // The action owners join the case: they are asked on the review date and may answer
            // IMPLEMENTED.
            for a in actions {
                if let Some(email) = a.owner_email.as_deref().filter(|e| looks_like_email(e)) {
                    if !next.is_participant(email) {
                        next.participants.push(Participant {
                            email: email.to_lowercase(),
                            name: a.owner.clone(),
                            agency: None,
                            role: ParticipantRole::ActionOwner,
                            stage: case.stage,
                        });
                    }
                }
            }
            let stage = case.stage;
            let notifications = duties_for(rules, |t| matches!(t, Trigger::ResolvedAtOrAbove(n) if *n <= stage));
            let mut guidance = Vec::new();
            if let Some(s) = policy.stage(stage).filter(|s| !s.after_resolution.is_empty()) {
                guidance.push(Guidance {
                    title: format!("After resolution at {}", policy.stage_name(stage)),
                    items: s.after_resolution.clone(),
                });
            }
            for n in policy.notes.iter().filter(|n| n.when == NoteWhen::Resolution) {
                guidance.push(Guidance {
                    title: n.title.clone(),
                    items: vec![n.text.clone()],
                });
            }
            let event = Event {
                kind: "resolved".into(),
                at: now,
                actor: by,
                summary: format!(
                    "{reference} resolved at stage {stage} after {} working day(s)",
                    resolution.working_days_taken
                ),
                detail: serde_json::to_value(&resolution).unwrap_or_default(),
            };
            Ok(transition(rules, Some(case), next, event, notifications, guidance))
        }
        Command::Extend { working_days, reason } => {
            require_open(case)?;
            let ext = &policy.extensions;
            if !ext.allowed {
                return Err(TransitionError(
                    format!(
                        "{}'s procedure does not provide for extending its timescales. {}",
                        policy.short_name, ext.note
                    )
                    .trim_end()
                    .to_string(),
                ));
            }
            if *working_days == 0 {
                return Err(TransitionError("An extension must be at least 1 working day.".into()));
            }
            if blank(reason) {
                return Err(TransitionError(
                    "Please give the reason the timescale cannot be met: an extension needs one.".into(),
                ));
            }
            let total = case.extension_total().saturating_add(*working_days);
            if total > ext.max_total_working_days {
                return Err(TransitionError(format!(
                    "Case {reference} can be extended by at most {} working days in all ({} already agreed).",
                    ext.max_total_working_days,
                    case.extension_total()
                )));
            }
            next.extensions.push(Extension {
                stage: case.stage,
                working_days: *working_days,
                reason: reason.trim().to_string(),
                agreed_at: now,
                by: by.clone(),
            });
            let event = Event {
                kind: "extended".into(),
                at: now,
                actor: by,
                summary: format!(
                    "{reference} extended by {working_days} working day(s) at stage {}",
                    case.stage
                ),
                detail: serde_json::json!({ "working_days": working_days, "reason": reason, "stage": case.stage }),
            };
            Ok(transition(rules, Some(case), next, event, Vec::new(), Vec::new()))
        }
        Command::Withdraw { reason } => {
            require_open(case)?;
            next.status = CaseStatus::Withdrawn;
            next.withdrawal = Some(Withdrawal {
                reason: reason.trim().to_string(),
                at: now,
                by: by.clone(),
            });
            let notifications = duties_for(rules, |t| matches!(t, Trigger::Withdrawn(true)));
            let event = Event {
                kind: "withdrawn".into(),
                at: now,
                actor: by,
                summary: format!("{reference} withdrawn at stage {}", case.stage),
                detail: serde_json::json!({ "reason": reason, "stage": case.stage }),
            };
            Ok(transition(rules, Some(case), next, event, notifications, Vec::new()))
        }
        Command::Add { people } => {
            require_open(case)?;
            let mut added = Vec::new();
            for p in people {
                if !looks_like_email(&p.email) {
                    return Err(TransitionError(format!(
                        "{:?} is not an email address: write each person as \"Name <name@example.gov.uk>\".",
                        p.email
                    )));
                }
                if !next.is_participant(&p.email)
                    && !added.iter().any(|a: &Person| a.email.eq_ignore_ascii_case(&p.email))
                {
                    added.push(p.clone());
                }
            }
            if added.is_empty() {
                return Err(TransitionError(if people.is_empty() {
                    "ADD needs the name and email of each person to bring in at this stage, one a line, e.g. \"Team manager: Tess Team <tess.team@example.gov.uk>\".".into()
                } else {
                    "Everyone named is on the case already.".into()
                }));
            }
            for p in &added {
                next.participants.push(Participant {
                    email: p.email.clone(),
                    name: p.name.clone(),
                    agency: None,
                    role: ParticipantRole::StageLead,
                    stage: case.stage,
                });
            }
            let names: Vec<String> = added
                .iter()
                .map(|p| {
                    p.name
                        .clone()
                        .map_or_else(|| p.email.clone(), |n| format!("{n} <{}>", p.email))
                })
                .collect();
            let event = Event {
                kind: "people_added".into(),
                at: now,
                actor: by,
                summary: format!(
                    "{} brought in at {} of {reference}",
                    names.join(", "),
                    rules.policy.stage_name(case.stage)
                ),
                detail: serde_json::json!({ "people": added.iter().map(|p| &p.email).collect::<Vec<_>>(), "stage": case.stage }),
            };
            Ok(transition(rules, Some(case), next, event, Vec::new(), Vec::new()))
        }
        Command::Note { text } => {
            if blank(text) {
                return Err(TransitionError(
                    "The note is empty: write it below the word NOTE.".into(),
                ));
            }
            next.notes.push(Note {
                at: now,
                by: by.clone(),
                text: text.trim().to_string(),
            });
            let event = Event {
                kind: "note_added".into(),
                at: now,
                actor: by,
                summary: format!("Note added to {reference}"),
                detail: serde_json::json!({ "text": text.trim() }),
            };
            Ok(transition(rules, Some(case), next, event, Vec::new(), Vec::new()))
        }
        Command::UpdateRecord { fields, from } => {
            // Someone on the case only to carry out an agreed action confirms it; the record is the
            // practitioners' and managers'.
            let only_owner = case.is_participant(&by)
                && case
                    .participants
                    .iter()
                    .filter(|p| p.email.eq_ignore_ascii_case(&by))
                    .all(|p| p.role == ParticipantRole::ActionOwner);
            if only_owner {
                return Err(TransitionError(format!(
                    "As the owner of an agreed action on case {reference} you can reply IMPLEMENTED once it is done, or NOTE to add to the record; the record itself is updated by the people who took the case on."
                )));
            }
            if case.status == CaseStatus::Withdrawn {
                return Err(TransitionError(format!(
                    "Case {reference} was withdrawn: its record is no longer updated."
                )));
            }
            // Lines typed in the email by the person who raised it may correct who it is with.
            let typed_by_referrer = !from.starts_with("the attached")
                && case
                    .participants
                    .iter()
                    .any(|p| p.email.eq_ignore_ascii_case(&by) && p.role == ParticipantRole::Escalating);
            let (changes, problems) = record_changes(rules, case, fields, today, typed_by_referrer);
            if changes.is_empty() {
                let mut why = format!(
                    "The form in {from} changes nothing in the record of case {reference}: every field it has is as the record already holds it."
                );
                for p in &problems {
                    why.push(' ');
                    why.push_str(p);
                }
                return Err(TransitionError(why));
            }
            let keys: Vec<String> = changes.iter().map(|(k, _)| k.clone()).collect();
            for (key, value) in changes {
                if key == "other_email" {
                    // The other party, at the address now given, joins the case (record_changes takes an
                    // address only where the case has no other party yet).
                    next.record.other_email = Some(value.clone());
                    next.participants.push(Participant {
                        email: value,
                        name: next.record.get("other_name"),
                        agency: next.record.get("other_agency"),
                        role: ParticipantRole::Other,
                        stage: case.stage,
                    });
                    continue;
                }
                set_record_field(&mut next.record, &key, value);
            }
            let labels: Vec<String> = keys
                .iter()
                .map(|k| {
                    policy
                        .form
                        .fields
                        .iter()
                        .find(|f| f.key == *k)
                        .map(|f| f.label.clone())
                        .unwrap_or_else(|| k.replace('_', " "))
                })
                .collect();
            let event = Event {
                kind: "record_updated".into(),
                at: now,
                actor: by,
                summary: format!(
                    "The record of {reference} was updated from {from}: {}",
                    labels.join("; ")
                ),
                // The fields changed, not their values: the audit log names what changed.
                detail: serde_json::json!({ "fields": keys, "from": from, "problems": problems }),
            };
            let mut t = transition(rules, Some(case), next, event, Vec::new(), Vec::new());
            if !problems.is_empty() {
                t.guidance.push(Guidance {
                    title: "Not used from the form".into(),
                    items: problems,
                });
            }
            Ok(t)
        }
        Command::ActionsImplemented { text } => {
            if case.status != CaseStatus::Resolved {
                return Err(TransitionError(format!(
                    "Case {reference} is {}: agreed actions can be confirmed once it is resolved.",
                    case.status
                )));
            }
            if case.actions_implemented.is_some() {
                return Err(TransitionError(format!(
                    "The agreed actions on case {reference} were already confirmed as implemented."
                )));
            }
            next.actions_implemented = Some(Implemented {
                at: now,
                by: by.clone(),
                text: text.trim().to_string(),
            });
            let event = Event {
                kind: "actions_implemented".into(),
                at: now,
                actor: by,
                summary: format!("Agreed actions on {reference} confirmed as implemented"),
                detail: serde_json::json!({ "text": text.trim() }),
            };
            Ok(transition(rules, Some(case), next, event, Vec::new(), Vec::new()))
        }
    }
}

/// Set one record field from a returned form.
fn set_record_field(record: &mut Record, key: &str, value: String) {
    let slot = match key {
        "adult_name" => &mut record.adult_name,
        "nhs_number" => &mut record.nhs_number,
        "escalating_name" => &mut record.escalating_name,
        "escalating_agency" => &mut record.escalating_agency,
        "escalating_phone" => &mut record.escalating_phone,
        "other_name" => &mut record.other_name,
        "other_agency" => &mut record.other_agency,
        "summary" => &mut record.summary,
        "adult_views" => &mut record.adult_views,
        "evidence" => &mut record.evidence,
        "outcome" => &mut record.outcome,
        "copied_to" => &mut record.copied_to,
        "notes" => &mut record.notes,
        other => {
            record.extra.insert(other.to_string(), value);
            return;
        }
    };
    *slot = Some(value);
}

/// The day agreed actions are reviewed: the review date given; else the last agreed action's date (a date
/// already passed is one the action was done on, not due by); else,
/// where the policy asks for agreed actions to be checked (Trafford), that many working days after
/// resolution; else none.
pub fn review_on(
    rules: &BoardRules,
    given: Option<NaiveDate>,
    actions: &[AgreedAction],
    agreed_actions: &str,
    resolved_on: NaiveDate,
) -> Option<NaiveDate> {
    given
        .or_else(|| actions.iter().filter_map(|a| a.due).filter(|d| *d >= resolved_on).max())
        .or_else(|| {
            let any = !actions.is_empty() || !agreed_actions.trim().is_empty();
            let after = rules.policy.reminders.check_actions_after_working_days?;
            any.then(|| rules.calendar.add_working_days(resolved_on, after))
        })
}

/// The record fields a returned form may change: what the practitioners know and write, never the
/// parties' addresses (who may act on the case), the stage or the immediate-risk flag (commands do that).
/// The parties' names and agencies are not among them: the forms' signature blocks name the senior
/// managers, whom the reader takes for the parties.
const UPDATABLE: [&str; 9] = [
    "adult_name",
    "nhs_number",
    "escalating_phone",
    "summary",
    "adult_views",
    "evidence",
    "outcome",
    "copied_to",
    "notes",
];

/// Fields a returned form never sets: the bot fills them in from the case.
const NEVER_FROM_FORM: [&str; 12] = [
    "stage",
    "immediate_risk",
    "time_taken",
    "date",
    "signature",
    "stage_reached",
    "escalating_name",
    "escalating_agency",
    "escalating_job_title",
    "other_name",
    "other_agency",
    "other_job_title",
];

fn same_text(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.replace(['\u{2019}', '\u{2018}'], "'")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    norm(a) == norm(b)
}

/// The changes a returned form makes: the fields that differ from the record and from what the bot itself
/// filled in (a form sent back unchanged changes nothing), with the problems of those that cannot be used.
/// Who the disagreement is with, which the person who raised it may correct by typing the lines in an
/// UPDATE ("Their email: …"), though never through a returned form (where the bot itself filled them in).
const PARTY_TYPED: [&str; 5] = [
    "other_name",
    "other_agency",
    "other_email",
    "escalating_agency",
    "other_job_title",
];

fn record_changes(
    rules: &BoardRules,
    case: &Case,
    fields: &std::collections::BTreeMap<String, String>,
    today: NaiveDate,
    typed_by_referrer: bool,
) -> (Vec<(String, String)>, Vec<String>) {
    let filled = rules
        .policy
        .record_document
        .as_ref()
        .map(|doc| super::paperwork::fill(rules, doc, case, super::paperwork::Audience::Case, today));
    let form_keys: BTreeSet<&str> = rules.policy.form.fields.iter().map(|f| f.key.as_str()).collect();
    let mut changes = Vec::new();
    let mut problems = Vec::new();
    // Every line the bot filled in today, to take out of what comes back.
    let filled_lines: Vec<String> = filled
        .iter()
        .flat_map(|f| f.rows.iter())
        .flat_map(|r| r.value.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    for (key, value) in fields {
        // What a person wrote: the bot's own lines (and notes such as "[Not given yet.]") taken out.
        let kept: Vec<&str> = value
            .lines()
            .filter(|l| !super::paperwork::bot_line(l) && !filled_lines.iter().any(|f| same_text(f, l)))
            .collect();
        let kept = kept.join("\n");
        let value = kept.trim();
        if value.is_empty() {
            continue;
        }
        if key == "outcome" && case.status == CaseStatus::Resolved {
            problems.push(
                "The agreed outcome of a resolved case stays as it was confirmed: add anything further with NOTE."
                    .into(),
            );
            continue;
        }
        if typed_by_referrer && PARTY_TYPED.contains(&key.as_str()) {
            let value = value.trim();
            if key == "other_email" {
                // The other party's address is given once, where the record had none: an address already
                // on the case, or a second one, is not taken from an UPDATE (ADD brings someone else in).
                let on_case = case.participants.iter().any(|p| p.email.eq_ignore_ascii_case(value));
                if !looks_like_email(value) {
                    problems.push(format!("{value:?} does not look like an email address."));
                } else if let Some(other) = case.other_party().filter(|p| !p.email.eq_ignore_ascii_case(value)) {
                    problems.push(format!(
                        "The other party's address is already {}: it is not changed by an UPDATE. To bring someone else in, reply ADD with their name and email.",
                        other.email
                    ));
                } else if !on_case {
                    changes.push((key.clone(), value.to_lowercase()));
                }
            } else if !value.is_empty() && case.record.get(key).is_none_or(|v| !same_text(&v, value)) {
                changes.push((key.clone(), value.to_string()));
            }
            continue;
        }
        let known = UPDATABLE.contains(&key.as_str())
            || (form_keys.contains(key.as_str())
                && !key.ends_with("_email")
                && key != "stage"
                && key != "immediate_risk");
        if !known {
            continue;
        }
        // Anything the bot wrote in the form itself, sent back as it was (a challenger manager's name under
        // "Signature of challenger manager", the time taken), changes nothing.
        let as_filled = filled
            .as_ref()
            .is_some_and(|f| f.rows.iter().any(|shown| same_text(&shown.value, value)));
        if NEVER_FROM_FORM.contains(&key.as_str()) {
            continue;
        }
        if as_filled || case.record.get(key).is_some_and(|v| same_text(&v, value)) {
            continue;
        }
        if key == "nhs_number" {
            let digits = match nhs::normalise(value) {
                Ok(d) => d,
                Err(why) => {
                    problems.push(format!(
                        "{why}; the record keeps {}.",
                        case.record
                            .nhs_number
                            .as_deref()
                            .map(nhs::spaced)
                            .unwrap_or_else(|| "none".into())
                    ));
                    continue;
                }
            };
            if case.record.nhs_number.as_deref() != Some(digits.as_str()) {
                changes.push((key.clone(), digits));
            }
            continue;
        }
        changes.push((key.clone(), value.to_string()));
    }
    (changes, problems)
}

/// What a fired timer calls for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerOutcome {
    /// Whether the people on the case should get the reminder, overdue notice or review prompt.
    pub tell_participants: bool,
    pub notifications: Vec<Notification>,
    /// The timer fired later than it was due (the daemon was down): say so in what is sent.
    pub late: bool,
}

/// How long after its moment a timer's email still counts as on time (a busy daemon, a batch in hand).
pub const LATE_AFTER_MINUTES: i64 = 10;

/// Whether a timer acted on at `now` is late: its moment passed more than [`LATE_AFTER_MINUTES`] ago while
/// nobody acted on it (the daemon was down). A timer written after its own moment (`written`: an overdue
/// notice for a deadline already missed when the case moved) goes at once and is not late.
pub fn is_late(fire_at: DateTime<Utc>, written: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    now - fire_at > chrono::Duration::minutes(LATE_AFTER_MINUTES) && written.is_none_or(|w| w < fire_at)
}

/// What `timer` means for `case` when it fires at `now`. A timer whose case has moved on (closed, or the
/// deadline moved) calls for nothing; the store normally cancels such timers, this is the safety net.
pub fn on_timer(rules: &BoardRules, case: &Case, timer: &Timer, now: DateTime<Utc>) -> TimerOutcome {
    on_timer_written(rules, case, timer, None, now)
}

/// [`on_timer`] for a timer written at `written` (see [`is_late`]).
pub fn on_timer_written(
    rules: &BoardRules,
    case: &Case,
    timer: &Timer,
    written: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> TimerOutcome {
    let current: Schedule = schedule::schedule(rules, case);
    let still_due = current.timers.iter().any(|t| t.key == timer.key);
    let late = is_late(timer.fire_at, written, now);
    if !still_due {
        return TimerOutcome {
            tell_participants: false,
            notifications: Vec::new(),
            late,
        };
    }
    let notifications = match timer.kind {
        TimerKind::Overdue => duties_for(
            rules,
            |t| matches!(t, Trigger::DeadlinePassed(l) if l == "any" || *l == timer.label),
        ),
        TimerKind::Reminder | TimerKind::Review => Vec::new(),
    };
    TimerOutcome {
        tell_participants: true,
        notifications,
        late,
    }
}
