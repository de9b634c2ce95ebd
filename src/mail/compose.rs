//! Composing the emails that follow from what happened: the data each template gets, the recipients, and
//! the headers every outgoing email carries (a signed Message-ID, threading, Auto-Submitted,
//! X-Auto-Response-Suppress). Data minimisation: notifications name the case by reference, agencies and
//! stage; the adult's name only when the board turns that on.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::render::Templates;
use super::token::Signer;
use crate::config::Board;
use crate::core::case::{Case, CaseStatus, Record};
use crate::core::lifecycle::{Guidance, Notification, TimerOutcome, Transition};
use crate::core::policy::{Form, Role};
use crate::core::reply::COMMAND_HELP;
use crate::core::schedule::{Deadline, Timer, TimerKind};
use crate::store::{Hold, OutboundEmail};

/// A short, fixed-length stand-in for what caused an email (an inbound Message-ID, a timer key), for the
/// nonce of its Message-ID: the same cause gives the same id (queued twice, it is the same email), and
/// different causes different ids, whatever characters the cause holds.
pub fn nonce_of(cause: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(cause.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kind an email is known by outside (DESIGN.md: its `X-Escalation-Kind` header and `simulate`'s
/// `kind`), for the kind of template it was written with.
pub fn public_kind(kind: &str) -> &'static str {
    match kind {
        "acknowledgement" => "acknowledgement",
        // A record or a command that could not be used: the sender is told what to fix.
        "refusal" | "command_error" => "refusal",
        "confirmation" => "confirmation",
        // The answer to STATUS, HELP or FORM, and the sender told their record awaits the board's approval.
        "answer" | "held_for_approval" => "answer",
        "reminder" => "reminder",
        "overdue" => "overdue",
        "review" => "review",
        "digest" => "digest",
        "challenge" => "challenge",
        // To a board role or board staff (a duty of the policy, a record to approve).
        _ => "notification",
    }
}

/// "Tuesday 29 December 2026".
pub fn long_date(d: chrono::NaiveDate) -> String {
    d.format("%A %-d %B %Y").to_string()
}

pub fn deadlines_data(board: &Board, deadlines: &[Deadline]) -> Vec<Value> {
    let policy = board.policy();
    deadlines
        .iter()
        .filter(|d| d.kind == crate::core::schedule::DeadlineKind::Active || d.label == "overall")
        .map(|d| {
            let what = match d.stage {
                Some(n) if n == policy.last_stage() && policy.deadlines.last_stage_met_on_reaching => {
                    format!("Resolve the disagreement, or have it at {}, by", policy.stage_name(n))
                }
                Some(n) if n == policy.last_stage() => format!("{} – resolve by", policy.stage_name(n)),
                Some(n) => format!("{} – resolve, or escalate to the next stage, by", policy.stage_name(n)),
                None => "The whole procedure should conclude by".to_string(),
            };
            json!({ "what": what, "due": long_date(d.due_date) })
        })
        .collect()
}

pub fn guidance_data(g: &[Guidance]) -> Vec<Value> {
    g.iter()
        .map(|g| json!({ "title": g.title, "items": g.items }))
        .collect()
}

/// The kind of agency a record's escalating party works for, for the policies that say who is involved
/// at each stage by kind of agency (South Gloucestershire's Appendix 2).
pub fn agency_kind(record: &Record) -> Option<&'static str> {
    crate::core::directory::agency_kind(
        record
            .extra
            .get("escalating_agency_type")
            .map(String::as_str)
            .unwrap_or_default(),
        record.escalating_agency.as_deref().unwrap_or_default(),
        record.escalating_email.as_deref().unwrap_or_default(),
    )
}

/// The board's form as text to fill in: one "Label:" line per field.
pub fn blank_form(form: &Form) -> String {
    let mut s = format!("{}\n\n", form.name);
    for f in &form.fields {
        s.push_str(&format!(
            "{}{}: \n",
            f.label,
            if f.required { " (required)" } else { "" }
        ));
    }
    s
}

/// What was read from a new case's record, one line each, as the acknowledgement gives it back: the adult,
/// the other party and their agency, the stage, the immediate-risk answer and the summary's first line.
pub fn recorded_lines(board: &Board, case: &Case) -> Vec<String> {
    let policy = board.policy();
    let r = &case.record;
    let mut out = Vec::new();
    let adult = match (r.get("adult_name"), r.get("nhs_number")) {
        (Some(n), Some(nhs)) => format!("{n} (NHS number {})", crate::core::nhs::spaced(&nhs)),
        (Some(n), None) => n,
        (None, Some(nhs)) => format!("NHS number {}", crate::core::nhs::spaced(&nhs)),
        (None, None) => "not given".into(),
    };
    out.push(format!("The adult: {adult}"));
    let mut with: Vec<String> = Vec::new();
    with.extend(r.get("other_name"));
    with.extend(r.get("other_agency"));
    let with = if with.is_empty() {
        "not named".to_string()
    } else {
        with.join(", ")
    };
    let email = r
        .get("other_email")
        .unwrap_or_else(|| "no email address given".to_string());
    out.push(format!("The disagreement is with: {with} ({email})"));
    out.push(format!("Stage: {}", policy.stage_name(case.stage)));
    out.push(format!(
        "Immediate risk to the adult: {}",
        match r.immediate_risk {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not stated: if the adult is at immediate risk, reply UPDATE with \"Immediate risk: yes\"",
        }
    ));
    if let Some(summary) = r.get("summary").or_else(|| r.get("theme")) {
        let first = summary
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim();
        let short: String = first.chars().take(160).collect();
        let more = if short.chars().count() < first.chars().count() {
            "…"
        } else {
            ""
        };
        out.push(format!("What it is about: {short}{more}"));
    }
    out
}

/// The board's form filled in with what was read from `record`: one "Label: value" line per field (a value
/// of several lines on the lines below its label), and "Label: " left to fill in where nothing was read.
/// What a sender gets back, never a blank form, when their email cannot open a case yet.
pub fn filled_form(form: &Form, record: &crate::core::case::Record) -> String {
    let mut s = format!("{}\n\n", form.name);
    for f in &form.fields {
        let value = record.get(&f.key).map(|v| match f.key.as_str() {
            "immediate_risk" => {
                if v == "true" {
                    "Yes".to_string()
                } else {
                    "No".to_string()
                }
            }
            "nhs_number" => crate::core::nhs::spaced(&v),
            _ => v,
        });
        match value {
            Some(v) if v.contains('\n') => s.push_str(&format!("{}:\n{}\n", f.label, v.trim())),
            Some(v) => s.push_str(&format!("{}: {}\n", f.label, v.trim())),
            None => s.push_str(&format!("{}: \n", f.label)),
        }
    }
    s
}

fn role_name(board: &Board, role: Role) -> String {
    board
        .settings
        .roles
        .get(&role)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| match role {
            Role::Referrer => "person who raised the escalation".into(),
            Role::OtherParty => "professional the escalation is with".into(),
            other => other.key().replace('-', " "),
        })
}

/// The address(es) a role is reached at for this case.
pub fn role_addresses(board: &Board, case: &Case, role: Role) -> Vec<String> {
    match role {
        Role::Referrer => case.referrer().map(|p| vec![p.email.clone()]).unwrap_or_default(),
        Role::OtherParty => case.other_party().map(|p| vec![p.email.clone()]).unwrap_or_default(),
        r => board
            .settings
            .roles
            .get(&r)
            .map(|c| vec![c.email.clone()])
            .unwrap_or_default(),
    }
}

pub use crate::core::paperwork::redact;
use crate::core::paperwork::{self, Audience};
use crate::mail::docx;
use crate::store::Attachment;

/// Whether an address is a placeholder to be replaced before going live (`.invalid`, RFC 2606).
pub fn is_placeholder(address: &str) -> bool {
    address.trim().to_lowercase().ends_with(".invalid")
}

/// Who is asked on a review date: the owners of the agreed actions who gave an address, and the people at
/// the stage it was resolved at when an action has no owner with an address.
pub fn review_recipients(case: &Case) -> Vec<String> {
    let mut owners: Vec<String> = case
        .resolution
        .iter()
        .flat_map(|r| r.actions.iter())
        .filter_map(|a| a.owner_email.clone())
        .collect();
    // An action whose owner gave no address is reviewed by the people who resolved it.
    let unowned = case
        .resolution
        .iter()
        .flat_map(|r| r.actions.iter())
        .any(|a| a.owner_email.is_none());
    if owners.is_empty() || unowned {
        owners.extend(people_at_stage(case));
    }
    let mut seen = std::collections::BTreeSet::new();
    owners.retain(|e| seen.insert(e.to_lowercase()));
    owners
}

/// Each agreed action in one line: "Joint visit — owner: Sam Smith <sam@x> — by Monday 1 March 2027".
/// What the confirmation says of the agreed actions it could not complete: "The reply gave no owner for:
/// …", "… no date for: …", "… no owner or date for: …". An action is kept whatever it lacks.
pub fn unclear_actions(r: &crate::core::case::Resolution) -> Vec<String> {
    r.actions
        .iter()
        .filter_map(|a| {
            let owner = a.owner.is_some() || a.owner_email.is_some();
            let what = match (owner, a.due.is_some()) {
                (true, true) => return None,
                (false, true) => "no owner",
                (true, false) => "no date",
                (false, false) => "no owner or date",
            };
            Some(format!("The reply gave {what} for: {}", a.text))
        })
        .collect()
}

pub fn action_lines(r: &crate::core::case::Resolution) -> Vec<String> {
    r.actions.iter().map(|a| a.summary()).collect()
}

/// The people at the case's current stage: those who joined at it (the managers who took it on at an
/// escalation, or both parties where the case opened there); everyone on the case if nobody did.
pub fn people_at_stage(case: &Case) -> Vec<String> {
    let mut at: Vec<String> = case
        .participants
        .iter()
        .filter(|p| p.stage == case.stage)
        .map(|p| p.email.clone())
        .collect();
    if at.is_empty() {
        at = case.participants.iter().map(|p| p.email.clone()).collect();
    }
    let mut seen = std::collections::BTreeSet::new();
    at.retain(|e| seen.insert(e.to_lowercase()));
    at
}

/// Builds outgoing emails for one board.
pub struct Composer<'a> {
    pub board: &'a Board,
    pub templates: &'a Templates,
    pub signer: Signer,
    /// Added to what each email's Message-ID is derived from: empty, except when a kept message is
    /// processed again on purpose (`inbound retry`), whose answers are new emails, not the old ones again.
    pub salt: String,
}

impl Composer<'_> {
    fn base(&self) -> Value {
        let p = self.board.policy();
        json!({
            "board_name": p.board_name,
            "board_short": p.short_name,
            "help": COMMAND_HELP,
        })
    }

    /// An email of `kind` to `to` (copied to `cc`), threaded under `in_reply_to`.
    #[allow(clippy::too_many_arguments)]
    pub fn email(
        &self,
        kind: &str,
        reference: Option<&str>,
        nonce: &str,
        to: Vec<String>,
        cc: Vec<String>,
        in_reply_to: Option<&str>,
        data: Value,
    ) -> Result<OutboundEmail, String> {
        let mut merged = self.base();
        if let (Some(m), Some(d)) = (merged.as_object_mut(), data.as_object()) {
            for (k, v) in d {
                m.insert(k.clone(), v.clone());
            }
        }
        let rendered = self.templates.render(kind, &merged)?;
        let mut headers = BTreeMap::new();
        headers.insert(
            "From".into(),
            format!("{} <{}>", self.board.policy().short_name, self.board.settings.mailbox),
        );
        let reply_to = match reference {
            Some(r) if self.board.settings.reply_to_token => self.signer.reply_address(&self.board.settings.mailbox, r),
            _ => self.board.settings.mailbox.clone(),
        };
        headers.insert("Reply-To".into(), reply_to);
        headers.insert(
            "Auto-Submitted".into(),
            if in_reply_to.is_some() {
                "auto-replied".into()
            } else {
                "auto-generated".into()
            },
        );
        headers.insert("X-Auto-Response-Suppress".into(), "All".into());
        headers.insert("X-Escalation-Kind".into(), public_kind(kind).into());
        if let Some(r) = reference {
            headers.insert("X-Escalation-Case".into(), r.to_string());
        }
        if let Some(parent) = in_reply_to {
            headers.insert("In-Reply-To".into(), format!("<{parent}>"));
            headers.insert("References".into(), format!("<{parent}>"));
        }
        let mut cc: Vec<String> = cc
            .into_iter()
            .filter(|c| !to.iter().any(|t| t.eq_ignore_ascii_case(c)))
            .collect();
        cc.dedup();
        let hold = self.placeholder_hold(&to, &cc);
        Ok(OutboundEmail {
            message_id: if self.salt.is_empty() {
                self.signer.message_id(reference.unwrap_or("none"), nonce)
            } else {
                self.signer.message_id(
                    reference.unwrap_or("none"),
                    &format!("{nonce}-{}", nonce_of(&self.salt)),
                )
            },
            board_id: self.board.id().to_string(),
            case_reference: reference.map(str::to_string),
            kind: kind.to_string(),
            to,
            cc,
            subject: rendered.subject,
            text: rendered.text,
            html: Some(rendered.html),
            hold,
            headers,
            attachments: Vec::new(),
        })
    }

    /// An email to one board role whose address is still a placeholder (`.invalid`) is held in the outbox
    /// with the reason, never sent there; the daemon sends it once the board file gives the address.
    fn placeholder_hold(&self, to: &[String], cc: &[String]) -> Option<Hold> {
        let [only] = to else { return None };
        if !cc.is_empty() || !is_placeholder(only) {
            return None;
        }
        let (role, contact) = self
            .board
            .settings
            .roles
            .iter()
            .find(|(_, c)| c.email.eq_ignore_ascii_case(only))?;
        Some(Hold {
            role: role.key().to_string(),
            reason: format!(
                "the {} address in {} is still the placeholder {}: set roles.{}.email to the real address and \
                 restart the bot, and this email is sent to it",
                contact.name,
                self.board.board_file.display(),
                contact.email,
                role.key()
            ),
        })
    }

    /// Every email with several recipients as one copy per recipient: the same text, the same To and Cc
    /// shown (in the `To` and `Cc` headers), each sent to its recipient alone under a Message-ID of its own
    /// ([`Signer::for_recipient`]). A reply then proves which recipient wrote it.
    pub fn one_per_recipient(&self, emails: Vec<OutboundEmail>) -> Vec<OutboundEmail> {
        let mut out = Vec::with_capacity(emails.len());
        for email in emails {
            let recipients: Vec<String> = email.to.iter().chain(email.cc.iter()).cloned().collect();
            if recipients.len() < 2 {
                out.push(email);
                continue;
            }
            for r in recipients {
                let mut copy = email.clone();
                copy.message_id = self
                    .signer
                    .for_recipient(&email.message_id, &r)
                    .unwrap_or_else(|| format!("{}-{}", email.message_id, nonce_of(&r)));
                copy.headers.insert("To".into(), email.to.join(", "));
                if !email.cc.is_empty() {
                    copy.headers.insert("Cc".into(), email.cc.join(", "));
                }
                copy.to = vec![r];
                copy.cc = Vec::new();
                out.push(copy);
            }
        }
        out
    }

    /// The notification emails a transition's duties call for. `cause` names what caused the transition
    /// (the inbound message's id, a timer's key), so that each email's Message-ID is its own.
    pub fn notifications(
        &self,
        t: &Transition,
        notes: &[Notification],
        cause: &str,
    ) -> Result<Vec<OutboundEmail>, String> {
        let case = &t.case;
        let policy = self.board.policy();
        // The subject says what happened in the bot's own words; what people wrote (an outcome) goes in
        // the body only, never in a Subject line.
        let event_words = match t.event.kind.as_str() {
            "opened" => format!("opened at {}", policy.stage_name(case.stage)),
            "escalated" => format!("escalated to {}", policy.stage_name(case.stage)),
            "resolved" => format!(
                "resolved at stage {}{}",
                case.resolution.as_ref().map(|r| r.at_stage).unwrap_or(case.stage),
                case.resolution
                    .as_ref()
                    .map(|r| format!(" after {} working day(s)", r.working_days_taken))
                    .unwrap_or_default()
            ),
            "withdrawn" => "withdrawn".into(),
            other => other.replace('_', " "),
        };
        let outcome = (t.event.kind == "resolved")
            .then(|| case.resolution.as_ref().map(|r| r.outcome.clone()))
            .flatten()
            .map(|o| {
                if self.board.settings.personal_data_in_notifications {
                    o
                } else {
                    redact(&o, &case.record)
                }
            });
        // The record so far, or the final one, where the policy sends it to board roles on this event.
        let carries = self
            .board
            .policy()
            .record_document
            .as_ref()
            .is_some_and(|d| d.to_roles_on.contains(&t.event.kind));
        let record_on = carries.then(|| self.board.rules.local_date(t.event.at));
        self.role_notices(
            case,
            &t.event.kind,
            &event_words,
            outcome,
            notes,
            cause,
            None,
            record_on,
        )
    }

    /// One notification per duty, to the role's address (held in the outbox while the board file still
    /// gives a placeholder for it: see [`Composer::email`]). The case is named by reference, agencies and
    /// stage; the adult's name only where the board turns personal data in notifications on.
    #[allow(clippy::too_many_arguments)]
    fn role_notices(
        &self,
        case: &Case,
        event_kind: &str,
        event_words: &str,
        outcome: Option<String>,
        notes: &[Notification],
        cause: &str,
        late_note: Option<&str>,
        record_on: Option<chrono::NaiveDate>,
    ) -> Result<Vec<OutboundEmail>, String> {
        let policy = self.board.policy();
        let mut out = Vec::new();
        for (i, n) in notes.iter().enumerate() {
            let to = role_addresses(self.board, case, n.role);
            if to.is_empty() {
                continue;
            }
            let mut email = self.email(
                "notification",
                Some(&case.reference),
                &format!("n{i}-{}-{}-{}", n.role.key(), event_kind, nonce_of(cause)),
                to,
                Vec::new(),
                None,
                json!({
                    "reference": case.reference, "role_name": role_name(self.board, n.role), "why": n.why,
                    "stage_name": policy.stage_name(case.stage), "agencies": case.agencies(),
                    "adult": self.adult(case), "event_words": event_words, "outcome": outcome,
                    "late_note": late_note,
                }),
            )?;
            // Board roles get the board's copy of the record; the referrer has the full one already.
            if let Some(today) = record_on.filter(|_| n.role.is_board_role()) {
                let audience = Audience::Board {
                    personal_data: self.board.settings.personal_data_in_notifications,
                };
                self.attach_record(&mut email, case, audience, today)?;
            }
            out.push(email);
        }
        Ok(out)
    }

    /// Attach the board's record document, filled in for `audience` on `today`, to `email`: as a Word
    /// document, in its HTML part and at the end of its text. Nothing when the policy has no document.
    pub fn attach_record(
        &self,
        email: &mut OutboundEmail,
        case: &Case,
        audience: Audience,
        today: chrono::NaiveDate,
    ) -> Result<(), String> {
        let Some(doc) = &self.board.policy().record_document else {
            return Ok(());
        };
        let form = paperwork::fill(&self.board.rules, doc, case, audience, today);
        let bytes = docx::write(&form)?;
        email
            .attachments
            .push(Attachment::new(&form.filename, docx::DOCX_TYPE, &bytes));
        let fragment = docx::html(&form);
        if let Some(html) = email.html.as_mut() {
            match html.rfind("</body>") {
                Some(i) => html.insert_str(i, &fragment),
                None => html.push_str(&fragment),
            }
        }
        email.text.push_str(
            "

",
        );
        email.text.push_str(&docx::text(&form));
        Ok(())
    }

    /// The board's record document, filled in for the case so far, attached to `email` as a Word document
    /// alone (its text already says what is missing). Nothing when the policy has no document.
    pub fn attach_record_document(
        &self,
        email: &mut OutboundEmail,
        case: &Case,
        today: chrono::NaiveDate,
    ) -> Result<(), String> {
        let Some(doc) = &self.board.policy().record_document else {
            return Ok(());
        };
        let form = paperwork::fill(&self.board.rules, doc, case, Audience::Case, today);
        let bytes = docx::write(&form)?;
        email
            .attachments
            .push(Attachment::new(&form.filename, docx::DOCX_TYPE, &bytes));
        Ok(())
    }

    /// Whether `address` is the board's own: its mailbox or one of its roles' addresses (which get the
    /// board's copy of the record, never the case's).
    fn is_board_address(&self, address: &str) -> bool {
        address.eq_ignore_ascii_case(&self.board.settings.mailbox)
            || self
                .board
                .settings
                .roles
                .values()
                .any(|c| c.email.eq_ignore_ascii_case(address))
    }

    /// The adult's name, where the board has turned personal data in notifications on.
    fn adult(&self, case: &Case) -> Option<String> {
        self.board
            .settings
            .personal_data_in_notifications
            .then(|| case.record.adult_name.clone())
            .flatten()
    }

    /// What a fired timer sends: the reminder, overdue notice or review prompt to the people at the case's
    /// current stage (when `outcome` says to tell them), and the board roles the policy ties to the deadline
    /// passing. `late` emails say plainly when they should have arrived.
    pub fn timer_emails(
        &self,
        case: &Case,
        timer: &Timer,
        outcome: &TimerOutcome,
    ) -> Result<Vec<OutboundEmail>, String> {
        let rules = &self.board.rules;
        let policy = self.board.policy();
        let mut out = Vec::new();
        let cause = format!("{}:{}", case.reference, timer.key);
        let stage = case.stage;
        let deadline_words = match timer.label.strip_prefix("stage-").and_then(|n| n.parse::<u8>().ok()) {
            Some(n) if n == stage && n < policy.last_stage() => format!(
                "resolve the disagreement at {}, or escalate it to {}",
                policy.stage_name(n),
                policy.stage_name(n + 1)
            ),
            Some(n) if n < policy.last_stage() => format!(
                "resolve the disagreement, or have it at {} at the latest",
                policy.stage_name(n + 1)
            ),
            Some(n) => format!("resolve the disagreement at {}", policy.stage_name(n)),
            None if timer.kind == TimerKind::Review => "check that the agreed actions have been carried out".into(),
            None => "have the disagreement concluded, resolved at whatever stage it has reached".into(),
        };
        let fire_day = rules.local_date(timer.fire_at);
        let late_note = outcome.late.then(|| {
            format!(
                "This {} should have reached you on {} at the start of working hours; the escalation service \
                 was not running then, and sends it now. Please read the dates below with that in mind.",
                match timer.kind {
                    TimerKind::Reminder => "reminder",
                    TimerKind::Overdue => "notice",
                    TimerKind::Review => "prompt",
                },
                long_date(fire_day)
            )
        });
        if outcome.tell_participants {
            let to = if timer.kind == TimerKind::Review {
                review_recipients(case)
            } else {
                people_at_stage(case)
            };
            if !to.is_empty() {
                let kind = timer.kind.as_str();
                let greeting = match case
                    .participants
                    .iter()
                    .filter(|p| to.contains(&p.email))
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    [one] => one.name.clone().unwrap_or_else(|| "colleague".into()),
                    _ => "colleagues".into(),
                };
                let mut asks = Vec::new();
                if timer.kind == TimerKind::Review {
                    // What was agreed, who owns it and by when; free text shown only as the notification
                    // setting allows.
                    let keep = self.board.settings.personal_data_in_notifications;
                    let shown = |t: &str| if keep { t.to_string() } else { redact(t, &case.record) };
                    if let Some(r) = &case.resolution {
                        for a in action_lines(r) {
                            asks.push(format!("Agreed action: {}", shown(&a)));
                        }
                        if r.actions.is_empty() && !r.agreed_actions.is_empty() {
                            asks.push(format!("Agreed actions: {}", shown(&r.agreed_actions)));
                        }
                        if !r.outstanding.is_empty() {
                            asks.push(format!(
                                "Outstanding issues, to be pursued so: {}",
                                shown(&r.outstanding)
                            ));
                        }
                    }
                } else if let Some(st) = policy.stage(stage) {
                    asks.push(format!("Who: {}", st.who));
                    asks.push(st.guidance.clone());
                    if let Some((k, w)) = agency_kind(&case.record).and_then(|k| st.involved.get(k).map(|w| (k, w))) {
                        asks.push(format!(
                            "Involved at {} ({}): {w}",
                            case.record
                                .escalating_agency
                                .as_deref()
                                .unwrap_or("the escalating agency"),
                            k.replace('-', " ")
                        ));
                    }
                    for form in &st.forms {
                        asks.push(format!("Complete the {form}."));
                    }
                    if stage < policy.last_stage() {
                        for line in crate::core::directory::whom_at(rules, case, stage + 1) {
                            asks.push(format!(
                                "To approach at {} if it is not resolved: {line}",
                                policy.stage_name(stage + 1)
                            ));
                        }
                    }
                }
                if stage == policy.last_stage() && !policy.final_stage_note.is_empty() {
                    asks.push(policy.final_stage_note.clone());
                }
                let mut next = Vec::new();
                match timer.kind {
                    TimerKind::Review => {
                        next.push(
                            "IMPLEMENTED — the agreed actions have been carried out (say how, if you like)".into(),
                        );
                        next.push("NOTE — what is still outstanding, and how it will be pursued".into());
                    }
                    _ => {
                        next.push(
                            "RESOLVED — then the agreed outcome, and optionally \"Actions: …\" and \"Review date: …\""
                                .to_string(),
                        );
                        if stage < policy.last_stage() {
                            next.push(format!(
                                "ESCALATE — then the name and email of each person taking it on at {}",
                                policy.stage_name(stage + 1)
                            ));
                        }
                        if policy.extensions.allowed {
                            next.push(
                                "EXTEND 3 — the number of working days, then why the timescale cannot be met".into(),
                            );
                        }
                        next.push("STATUS — where the case stands and what is due next".into());
                    }
                }
                let told: Vec<String> = outcome
                    .notifications
                    .iter()
                    .map(|n| format!("the {}", role_name(self.board, n.role)))
                    .collect();
                let mut email = self.email(
                    kind,
                    Some(&case.reference),
                    &format!("t-{kind}-{}", nonce_of(&cause)),
                    to,
                    Vec::new(),
                    None,
                    json!({
                        "reference": case.reference, "greeting": greeting,
                        "stage_name": policy.stage_name(stage), "agencies": case.agencies(),
                        "adult": self.adult(case),
                        "deadline_words": deadline_words,
                        "due": long_date(timer.due_date),
                        "due_today": fire_day == timer.due_date,
                        "late_note": late_note,
                        "asks": asks, "next": next,
                        "told": (!told.is_empty()).then(|| told.join(" and ")),
                        "again": timer.key.starts_with(crate::core::schedule::REVIEW_AGAIN),
                    }),
                )?;
                // A deadline's label (`stage-N`, `overall`); a review date is no deadline.
                if timer.kind != TimerKind::Review {
                    email
                        .headers
                        .insert("X-Escalation-Deadline".into(), timer.label.clone());
                }
                if outcome.late {
                    email.headers.insert("X-Escalation-Late".into(), "yes".into());
                }
                out.push(email);
            }
        }
        if !outcome.notifications.is_empty() {
            let event_words = format!(
                "not resolved by its {} deadline ({})",
                match timer.label.as_str() {
                    "overall" => "overall".to_string(),
                    l => l.replace('-', " "),
                },
                long_date(timer.due_date)
            );
            let mut notices = self.role_notices(
                case,
                "deadline_passed",
                &event_words,
                None,
                &outcome.notifications,
                &cause,
                late_note.as_deref(),
                None,
            )?;
            for n in &mut notices {
                n.headers.insert("X-Escalation-Deadline".into(), timer.label.clone());
                if late_note.is_some() {
                    n.headers.insert("X-Escalation-Late".into(), "yes".into());
                }
            }
            out.extend(notices);
        }
        Ok(out)
    }

    /// The board's digest, to `to` (board staff). `key` makes its Message-ID its own (the moment it was due).
    pub fn digest(&self, d: &crate::core::digest::Digest, to: Vec<String>, key: &str) -> Result<OutboundEmail, String> {
        let short = |date: chrono::NaiveDate| date.format("%a %-d %b %Y").to_string();
        let open: Vec<Value> = d
            .open
            .iter()
            .map(|o| {
                json!({
                    "reference": o.reference, "stage": o.stage_name, "agencies": o.agencies,
                    "days": o.working_days_open, "overdue": o.overdue,
                    "next": o.next_deadline.as_ref().map(|(label, date)| if o.overdue {
                        format!("{} was due {}", label.replace('-', " "), short(*date))
                    } else {
                        format!("{} by {}", label.replace('-', " "), short(*date))
                    }),
                })
            })
            .collect();
        let resolved: Vec<Value> = d
            .resolved
            .iter()
            .map(|r| json!({"reference": r.reference, "agencies": r.agencies, "stage": r.at_stage, "on": short(r.resolved_on), "days": r.working_days_taken}))
            .collect();
        let reviews: Vec<Value> = d
            .reviews
            .iter()
            .map(|r| json!({"reference": r.reference, "agencies": r.agencies, "date": short(r.review_date), "missed": r.missed}))
            .collect();
        let extensions: Vec<Value> = d
            .extensions
            .iter()
            .map(|e| json!({"reference": e.reference, "stage": e.stage, "days": e.working_days, "on": short(e.agreed_on)}))
            .collect();
        let bars = |bars: &[crate::core::digest::Bar]| -> Vec<Value> {
            let max = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1);
            bars.iter()
                .map(|b| json!({"label": b.label, "count": b.count, "width": b.count * 200 / max, "hashes": "#".repeat(b.count.min(40))}))
                .collect()
        };
        let counted = |m: &std::collections::BTreeMap<String, usize>| -> Vec<Value> {
            let mut v: Vec<(&String, &usize)> = m.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.into_iter().map(|(k, n)| json!({"name": k, "count": n})).collect()
        };
        let mut email = self.email(
            "digest",
            None,
            &format!("d-{}", nonce_of(key)),
            to,
            Vec::new(),
            None,
            json!({
                "as_of": long_date(d.as_of), "since": d.since.map(|s| long_date(self.board.rules.local_date(s))),
                "empty": d.is_empty(), "open_count": d.open_total, "overdue": d.overdue,
                "unlisted": d.open_total.saturating_sub(d.open.len()),
                "open": open, "resolved": resolved, "reviews": reviews, "extensions": extensions,
                "themes": counted(&d.themes), "agencies": counted(&d.agencies),
                "unusable": d.unusable_emails, "board_id": self.board.id(),
                "by_stage": bars(&d.open_by_stage), "by_weeks": bars(&d.open_by_weeks),
            }),
        )?;
        email.headers.insert("X-Escalation-Kind".into(), "digest".into());
        Ok(email)
    }

    /// The acknowledgement of a new case: to the sender of the record (always: an address typed into a form
    /// never receives it alone), copied to the escalating practitioner the form names, where that is
    /// someone else, and to the other party.
    ///
    /// It opens with what was read ("We recorded: …"), so that a misreading is caught by the person who
    /// knows, and asks for the form's rows the record left empty and the values that could not be used
    /// (`unread`). The Word record, filled in so far, comes with FORM: building a document for every new
    /// case made a backlog of 10,000 records take minutes instead of seconds.
    pub fn acknowledgement(
        &self,
        t: &Transition,
        in_reply_to: &str,
        sender: &str,
        unread: &[String],
    ) -> Result<OutboundEmail, String> {
        let case = &t.case;
        let policy = self.board.policy();
        let recorded = recorded_lines(self.board, case);
        let mut asks: Vec<String> = crate::core::essentials::to_ask(&policy.form, &case.record)
            .into_iter()
            .map(|(_, label)| label)
            .collect();
        if let Some(why) = case.record.extra.get(crate::core::lifecycle::UNUSABLE_NHS_NUMBER) {
            asks.push(why.clone());
        }
        asks.extend(unread.iter().cloned());
        let involved = agency_kind(&case.record).and_then(|k| {
            policy
                .stage(case.stage)
                .and_then(|s| s.involved.get(k))
                .map(|w| format!("{w} ({})", k.replace('-', " ")))
        });
        // Whom each side approaches if it cannot be resolved at this stage.
        let next_stage = (case.stage < policy.last_stage()).then_some(case.stage + 1);
        let whom_next = next_stage.map(|n| {
            json!({
                "stage_name": policy.stage_name(n),
                "lines": crate::core::directory::whom_at(&self.board.rules, case, n),
            })
        });
        let whom_next = whom_next.filter(|w| w["lines"].as_array().is_some_and(|l| !l.is_empty()));
        let to = vec![sender.to_string()];
        let cc: Vec<String> = case
            .referrer()
            .into_iter()
            .chain(case.other_party())
            .map(|p| p.email.clone())
            .filter(|e| !e.eq_ignore_ascii_case(sender))
            .collect();
        let greeting = case
            .referrer()
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| "colleague".into());
        self.email(
            "acknowledgement",
            Some(&case.reference),
            "ack",
            to,
            cc,
            Some(in_reply_to),
            json!({
                "reference": case.reference, "greeting": greeting,
                "stage_name": policy.stage_name(case.stage),
                "deadlines": deadlines_data(self.board, &t.deadlines),
                "guidance": guidance_data(t.guidance.iter().filter(|g| !g.title.starts_with("The adult is at immediate risk")).cloned().collect::<Vec<_>>().as_slice()),
                "immediate_risk": case.immediate_risk,
                "risk_guidance": policy.immediate_risk.guidance,
                "involved": involved,
                "whom_next": whom_next,
                "other_not_copied": case.other_party().is_none().then(|| {
                    case.record.other_name.clone().unwrap_or_else(|| "the professional the disagreement is with".into())
                }),
                "recorded": recorded,
                "asks": asks,
            }),
        )
    }

    /// The answer to STATUS, HELP or FORM: where the case stands, the commands, and (for FORM) the blank
    /// form and the board's record of the case so far.
    pub fn answer(
        &self,
        case: &Case,
        deadlines: &[Deadline],
        asked: &crate::core::reply::ReplyCommand,
        sender: &str,
        in_reply_to: &str,
        today: chrono::NaiveDate,
    ) -> Result<OutboundEmail, String> {
        use crate::core::reply::ReplyCommand;
        let policy = self.board.policy();
        let status_words = match case.status {
            CaseStatus::Open => format!("open at {}", policy.stage_name(case.stage)),
            CaseStatus::Resolved => "resolved".to_string(),
            CaseStatus::Withdrawn => "withdrawn".to_string(),
        };
        let mut guidance = vec![
            json!({ "title": "Commands (write one at the top of your reply)", "items": crate::core::reply::command_items() }),
        ];
        if matches!(asked, ReplyCommand::Form) {
            guidance.push(json!({ "title": policy.form.name, "items": blank_form(&policy.form).lines().skip(2).collect::<Vec<_>>() }));
        }
        let headline = match asked {
            ReplyCommand::Status => "status",
            ReplyCommand::Form => "the form",
            _ => "help",
        };
        let mut email = self.email(
            "confirmation",
            Some(&case.reference),
            &format!("a-{}", nonce_of(in_reply_to)),
            vec![sender.to_string()],
            Vec::new(),
            Some(in_reply_to),
            json!({
                "reference": case.reference, "headline": headline,
                "headline_sentence": format!("Here is where case {} stands.", case.reference),
                "status_words": status_words,
                "deadlines": deadlines_data(self.board, deadlines),
                "guidance": guidance,
            }),
        )?;
        // Written like a confirmation, known outside as an answer.
        email.headers.insert("X-Escalation-Kind".into(), "answer".into());
        // FORM: the board's record of the case so far, to fill in and send back (the board's copy to a
        // board address).
        if matches!(asked, ReplyCommand::Form) {
            let audience = if self.is_board_address(sender) || !case.is_participant(sender) {
                Audience::Board {
                    personal_data: self.board.settings.personal_data_in_notifications,
                }
            } else {
                Audience::Case
            };
            self.attach_record(&mut email, case, audience, today)?;
        }
        Ok(email)
    }

    /// The request to confirm a command that came without proof of its sender: to the From address only
    /// (its real owner receives it, whoever wrote the header), threaded under the command, and signed for
    /// this case and that address, so that a CONFIRM in reply to it is proof.
    pub fn challenge(
        &self,
        case: &Case,
        word: &str,
        reply_text: &str,
        sender: &str,
        in_reply_to: &str,
    ) -> Result<OutboundEmail, String> {
        // What was received, shortened by characters (never inside one) so that the email stays readable.
        let mut received: String = reply_text.chars().take(1500).collect();
        if received.len() < reply_text.len() {
            received.push_str(" […]");
        }
        self.email(
            "challenge",
            Some(&case.reference),
            &format!("ch-{}", nonce_of(in_reply_to)),
            vec![sender.to_string()],
            Vec::new(),
            Some(in_reply_to),
            json!({
                "reference": case.reference, "word": word, "sender": sender,
                "received": received, "mailbox": self.board.settings.mailbox,
                "greeting": case
                    .participants
                    .iter()
                    .find(|p| p.email.eq_ignore_ascii_case(sender))
                    .and_then(|p| p.name.clone())
                    .unwrap_or_else(|| "colleague".into()),
            }),
        )
    }

    /// The confirmation of an applied command, to the sender and every other participant — with the
    /// board's record where the policy sends it (board role addresses get the board's copy, apart).
    pub fn confirmation(
        &self,
        t: &Transition,
        sender: &str,
        in_reply_to: &str,
        headline: &str,
    ) -> Result<Vec<OutboundEmail>, String> {
        let case = &t.case;
        let others: Vec<String> = case
            .participants
            .iter()
            .map(|p| p.email.clone())
            .filter(|e| !e.eq_ignore_ascii_case(sender))
            .collect();
        let status_words = match case.status {
            CaseStatus::Open => format!("open at {}", self.board.policy().stage_name(case.stage)),
            CaseStatus::Resolved => "resolved".to_string(),
            CaseStatus::Withdrawn => "withdrawn".to_string(),
        };
        let policy = self.board.policy();
        // The written confirmation of the agreed outcome the seeds ask for (Trafford section 2,
        // Buckinghamshire 1.7): outcome, actions with owners and dates, outstanding issues, review.
        let resolution = case.resolution.as_ref().filter(|_| t.event.kind == "resolved").map(|r| {
            json!({
                "outcome": r.outcome,
                "actions": action_lines(r),
                "actions_text": (r.actions.is_empty() && !r.agreed_actions.is_empty()).then(|| r.agreed_actions.clone()),
                "actions_unclear": unclear_actions(r),
                "outstanding": (!r.outstanding.is_empty()).then(|| r.outstanding.clone()),
                "review": r.review_date.map(long_date),
                "stage_name": policy.stage_name(r.at_stage),
                "working_days": r.working_days_taken,
            })
        });
        let mut email = self.email(
            "confirmation",
            Some(&case.reference),
            &format!("c-{}-{}", t.event.kind, nonce_of(in_reply_to)),
            vec![sender.to_string()],
            others,
            Some(in_reply_to),
            json!({
                "reference": case.reference, "headline": headline,
                "headline_sentence": format!("{} ({}).", t.event.summary, t.event.actor),
                "status_words": status_words,
                "deadlines": deadlines_data(self.board, &t.deadlines),
                "guidance": guidance_data(&t.guidance),
                "resolution": resolution,
            }),
        )?;
        // The record so far to the people taking the case on ("use as basis of report to manager at next
        // stage"), the final one with the written confirmation, the updated one after an update.
        let carries = policy
            .record_document
            .as_ref()
            .is_some_and(|d| match t.event.kind.as_str() {
                "escalated" => d.with_escalation && case.stage >= d.escalation_from_stage,
                "resolved" => d.with_resolution,
                "record_updated" => true,
                _ => false,
            });
        if !carries {
            return Ok(vec![email]);
        }
        let today = self.board.rules.local_date(t.event.at);
        // A board role's address on the case (its staff acting on it, or named at a late stage) gets the
        // board's copy of the record, in an email of its own; the people on the case get theirs.
        let is_role = |a: &String| self.is_board_address(a);
        let roles: Vec<String> = email
            .to
            .iter()
            .chain(&email.cc)
            .filter(|a| is_role(a))
            .cloned()
            .collect();
        let mut out = Vec::new();
        if !roles.is_empty() {
            let mut copy = email.clone();
            copy.message_id = self.signer.message_id(
                &case.reference,
                &format!("c-{}-board-{}", t.event.kind, nonce_of(in_reply_to)),
            );
            copy.to = roles.clone();
            copy.cc = Vec::new();
            let audience = Audience::Board {
                personal_data: self.board.settings.personal_data_in_notifications,
            };
            self.attach_record(&mut copy, case, audience, today)?;
            out.push(copy);
            email.to.retain(|a| !is_role(a));
            email.cc.retain(|a| !is_role(a));
            if email.to.is_empty() && !email.cc.is_empty() {
                email.to = vec![email.cc.remove(0)];
            }
        }
        if !email.to.is_empty() {
            self.attach_record(&mut email, case, Audience::Case, today)?;
            out.insert(0, email);
        }
        Ok(out)
    }
}
