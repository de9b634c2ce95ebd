//! The board's own record of a case, filled in: each row of the seed's form with its value from the case
//! (summary and views, stage reached, time taken in working days, agreed outcome and actions, outstanding
//! issues, who it was copied to, the managers at each stage).
//!
//! Pure: [`fill`] takes the board's rules, the case, who the copy is for and the day, and returns a
//! [`FilledForm`]; the shell renders it as a Word document and as HTML (`mail::docx`). A copy for a board
//! role leaves the adult's name and NHS number blank (unless the board turns personal data on) and takes
//! them out of free text ([`redact`]).

use chrono::NaiveDate;
use serde::Serialize;

use super::case::{Case, CaseStatus, ParticipantRole, Record};
use super::policy::{DocumentRow, RecordDocument};
use super::rules::BoardRules;

/// The values a row can take that are computed from the case rather than read from one record field.
pub const COMPUTED: [&str; 25] = [
    "escalating",
    "escalating-contact",
    "other",
    "summary-and-views",
    "outcome",
    "outcome-or-next-steps",
    "agreed-actions",
    "outstanding",
    "review-date",
    "stage-reached",
    "time-taken",
    "copied-to",
    "notes",
    "challenger-name",
    "challenger-job-title",
    "challenger-agency",
    "challenger-date",
    "challenged-name",
    "challenged-job-title",
    "challenged-agency",
    "challenged-date",
    "date",
    "signature",
    "blank",
    "stage-reached-number",
];

/// The record fields a row can show as they are.
pub const RECORD_KEYS: [&str; 18] = [
    "adult_name",
    "nhs_number",
    "escalating_name",
    "escalating_agency",
    "escalating_email",
    "escalating_phone",
    "other_name",
    "other_agency",
    "other_email",
    "summary",
    "adult_views",
    "evidence",
    "outcome",
    "stage",
    "immediate_risk",
    "theme",
    "copied_to",
    "notes",
];

/// The record field a row's value updates when the form comes back filled in (`None`: the row is the
/// bot's to fill, such as the stage reached or the time taken).
pub fn updates_key(value: &str) -> Option<&str> {
    match value {
        "summary-and-views" => Some("summary"),
        "outcome-or-next-steps" | "outcome" => Some("outcome"),
        "copied-to" => Some("copied_to"),
        "notes" => Some("notes"),
        "escalating-contact" => Some("escalating_phone"),
        "stage" | "escalating_email" | "other_email" | "immediate_risk" => None,
        v if COMPUTED.contains(&v) => None,
        v => Some(v),
    }
}

/// Who a copy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The people on the case: everything.
    Case,
    /// A board role: the adult's name and NHS number only where the board turns personal data on.
    Board { personal_data: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilledRow {
    pub group: Option<String>,
    pub label: String,
    pub value: String,
    /// Said in place of, or beside, the value ("left blank: add it from your records", "to sign").
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageLine {
    pub stage: String,
    pub entered_on: String,
    pub people: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionLine {
    pub action: String,
    pub owner: String,
    pub by: String,
}

/// A record document with its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilledForm {
    pub title: String,
    pub source: String,
    pub board_name: String,
    pub reference: String,
    /// "Open at stage 2 (Line Management)", "Resolved at stage 3 on Tuesday 12 January 2027".
    pub status: String,
    pub intro: Vec<String>,
    pub rows: Vec<FilledRow>,
    /// The managers at each stage.
    pub stages: Vec<StageLine>,
    pub actions: Vec<ActionLine>,
    pub action_note: Vec<String>,
    /// Why the adult's details are blank in this copy, when they are.
    pub blanked: Option<String>,
    pub filled_on: NaiveDate,
    /// `TRAF-2027-0007 Escalation Record.docx`
    pub filename: String,
}

fn long(d: NaiveDate) -> String {
    d.format("%A %-d %B %Y").to_string()
}

fn joined(parts: &[Option<String>], sep: &str) -> String {
    parts
        .iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(sep)
}

/// The two sides' senior people: for the challenger (escalating) side and the challenged side, the person
/// who joined at the highest stage, with the day they joined. Sides are told apart by agency, then by the
/// address's domain; at stage 1 they are the two parties.
/// One side's senior person: name, job title, agency, the day they joined.
type Side = (Option<String>, Option<String>, Option<String>, Option<NaiveDate>);

fn sides(case: &Case) -> [Side; 2] {
    let domain = |e: &str| e.rsplit_once('@').map(|(_, d)| d.to_lowercase());
    let referrer_domain = case.record.escalating_email.as_deref().and_then(domain);
    let other_domain = case.record.other_email.as_deref().and_then(domain);
    let agency_is = |p: &Option<String>, a: &Option<String>| match (p, a) {
        (Some(p), Some(a)) => p.trim().eq_ignore_ascii_case(a.trim()),
        _ => false,
    };
    let entered = |stage: u8| {
        case.stages
            .iter()
            .rev()
            .find(|s| s.stage == stage)
            .map(|s| s.entered_on)
    };
    let mut out: [Side; 2] = [
        (
            case.record.escalating_name.clone(),
            case.record.extra.get("escalating_job_title").cloned(),
            case.record.escalating_agency.clone(),
            Some(case.opened_on),
        ),
        (
            case.record.other_name.clone(),
            case.record.extra.get("other_job_title").cloned(),
            case.record.other_agency.clone(),
            Some(case.opened_on),
        ),
    ];
    let mut leads: Vec<_> = case
        .participants
        .iter()
        .filter(|p| p.role == ParticipantRole::StageLead)
        .collect();
    leads.sort_by_key(|p| p.stage);
    let top = leads.last().map(|p| p.stage);
    let at_top: Vec<_> = leads.iter().filter(|p| Some(p.stage) == top).collect();
    for (n, p) in at_top.iter().enumerate() {
        let d = domain(&p.email);
        let side = if agency_is(&p.agency, &case.record.escalating_agency) || (d.is_some() && d == referrer_domain) {
            0
        } else if agency_is(&p.agency, &case.record.other_agency) || (d.is_some() && d == other_domain) {
            1
        } else {
            n.min(1)
        };
        let agency = p.agency.clone().or_else(|| {
            if side == 0 {
                case.record.escalating_agency.clone()
            } else {
                case.record.other_agency.clone()
            }
        });
        out[side] = (
            p.name.clone().or_else(|| Some(p.email.clone())),
            None,
            agency,
            entered(p.stage),
        );
    }
    out
}

/// Lines the bot itself writes into the form's cells (the stages passed, who it went to, notes with their
/// dates), as [`fill`] writes them: a returned form's value keeps only what a person wrote. Keep in step
/// with the texts `fill` writes.
pub fn bot_line(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || (l.starts_with('[') && l.ends_with(']'))
        || [
            "Not yet resolved",
            "Escalated to ",
            "Withdrawn: ",
            "The people on the case:",
            "The board's ",
            "Agreed actions confirmed as implemented",
            "Views of the adult: ",
            "Evidence: ",
        ]
        .iter()
        .any(|p| l.starts_with(p))
}

/// Fill in the board's record document for `case`, for `audience`, on `today`.
pub fn fill(rules: &BoardRules, doc: &RecordDocument, case: &Case, audience: Audience, today: NaiveDate) -> FilledForm {
    let policy = &rules.policy;
    let personal = match audience {
        Audience::Case => true,
        Audience::Board { personal_data } => personal_data,
    };
    let free = |t: &str| {
        if personal {
            t.to_string()
        } else {
            redact(t, &case.record)
        }
    };
    let r = &case.record;
    let resolution = case.resolution.as_ref();
    let action_lines: Vec<String> = resolution
        .map(|res| res.actions.iter().map(|a| a.summary()).collect())
        .unwrap_or_default();
    // A view or evidence with a row of its own is not repeated under the summary.
    let has_row = |key: &str| doc.rows.iter().any(|r| r.value == key);
    let actions_text = resolution
        .map(|res| {
            if action_lines.is_empty() {
                res.agreed_actions.clone()
            } else {
                action_lines
                    .iter()
                    .map(|l| format!("• {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        })
        .unwrap_or_default();
    let escalations: Vec<String> = case
        .stages
        .iter()
        .skip(1)
        .map(|s| format!("Escalated to {} on {}.", policy.stage_name(s.stage), long(s.entered_on)))
        .collect();
    let sides = sides(case);
    let working_days_open = rules.calendar.working_days_between(case.opened_on, today);
    let copied_to = {
        let mut people: Vec<String> = case
            .participants
            .iter()
            .map(|p| joined(&[p.name.clone(), p.agency.clone()], ", "))
            .filter(|s| !s.is_empty())
            .collect();
        people.dedup();
        let mut roles: Vec<String> = Vec::new();
        for duty in &policy.duties {
            for role in duty.notify.iter().filter(|r| r.is_board_role()) {
                let name = role.key().replace('-', " ");
                if !roles.contains(&name) {
                    roles.push(name);
                }
            }
        }
        let mut parts = Vec::new();
        if let Some(c) = r.copied_to.as_deref().filter(|c| !c.trim().is_empty()) {
            parts.push(free(c));
        }
        if !people.is_empty() {
            parts.push(free(&format!("The people on the case: {}.", people.join("; "))));
        }
        if !roles.is_empty() && !doc.to_roles_on.is_empty() {
            parts.push(format!(
                "The board's {}, at the points the procedure sets.",
                roles.join(" and ")
            ));
        }
        parts.join("\n")
    };
    let value_of = |row: &DocumentRow| -> (String, Option<String>) {
        let blank_personal = || {
            (
                String::new(),
                Some("Left blank in the board's copy: add it from your agency's records.".to_string()),
            )
        };
        match row.value.as_str() {
            "adult_name" | "nhs_number" if !personal => blank_personal(),
            "adult_name" => (r.adult_name.clone().unwrap_or_default(), None),
            "nhs_number" => (
                r.nhs_number
                    .as_deref()
                    .map(|n| {
                        let d: Vec<char> = n.chars().collect();
                        if d.len() == 10 {
                            format!(
                                "{} {} {}",
                                d[..3].iter().collect::<String>(), // byte-slice: a Vec<char>, by characters
                                d[3..6].iter().collect::<String>(), // byte-slice: a Vec<char>, by characters
                                d[6..].iter().collect::<String>()  // byte-slice: a Vec<char>, by characters
                            )
                        } else {
                            n.to_string()
                        }
                    })
                    .unwrap_or_default(),
                None,
            ),
            "escalating" => (
                joined(&[r.escalating_name.clone(), r.escalating_agency.clone()], ", "),
                None,
            ),
            "escalating-contact" => (
                joined(&[r.escalating_email.clone(), r.escalating_phone.clone()], ", "),
                None,
            ),
            "other" => (joined(&[r.other_name.clone(), r.other_agency.clone()], ", "), None),
            "summary-and-views" => {
                let mut v = free(r.summary.as_deref().unwrap_or_default());
                if let Some(views) = r
                    .adult_views
                    .as_deref()
                    .filter(|v| !v.trim().is_empty() && !has_row("adult_views"))
                {
                    v.push_str(&format!("\n\nViews of the adult: {}", free(views)));
                }
                if let Some(e) = r
                    .evidence
                    .as_deref()
                    .filter(|v| !v.trim().is_empty() && !has_row("evidence"))
                {
                    v.push_str(&format!("\n\nEvidence: {}", free(e)));
                }
                (v, None)
            }
            "outcome" => (
                free(
                    &resolution
                        .map(|res| res.outcome.clone())
                        .or_else(|| r.outcome.clone())
                        .unwrap_or_default(),
                ),
                None,
            ),
            "outcome-or-next-steps" => match resolution {
                Some(res) => {
                    let mut v = free(&res.outcome);
                    if !actions_text.is_empty() {
                        v.push_str(&format!("\n\nAgreed actions:\n{}", free(&actions_text)));
                    }
                    if !res.outstanding.is_empty() {
                        v.push_str(&format!(
                            "\n\nHow outstanding issues will be pursued: {}",
                            free(&res.outstanding)
                        ));
                    }
                    (v, None)
                }
                None => {
                    let mut v = Vec::new();
                    if let Some(o) = r.outcome.as_deref().filter(|o| !o.trim().is_empty()) {
                        v.push(free(o));
                    }
                    v.extend(escalations.iter().cloned());
                    if case.status == CaseStatus::Open {
                        v.push(format!("Not yet resolved: now at {}.", policy.stage_name(case.stage)));
                    } else if let Some(w) = &case.withdrawal {
                        v.push(format!("Withdrawn: {}", free(&w.reason)));
                    }
                    (v.join("\n"), None)
                }
            },
            "agreed-actions" => (free(&actions_text), None),
            "outstanding" => (
                free(&resolution.map(|res| res.outstanding.clone()).unwrap_or_default()),
                None,
            ),
            "review-date" => (
                resolution.and_then(|res| res.review_date).map(long).unwrap_or_default(),
                None,
            ),
            "stage-reached" => match resolution {
                Some(res) => (
                    format!("{}, on {}", policy.stage_name(res.at_stage), long(res.resolved_on)),
                    None,
                ),
                None => (
                    format!("Not yet resolved: now at {}", policy.stage_name(case.stage)),
                    None,
                ),
            },
            "stage-reached-number" => match resolution {
                Some(res) => (res.at_stage.to_string(), None),
                None => (
                    String::new(),
                    Some(format!("Not yet resolved: now at stage {}", case.stage)),
                ),
            },
            "time-taken" => match resolution {
                Some(res) => (
                    format!(
                        "{} working day(s) ({} calendar days), from {} to {}",
                        res.working_days_taken,
                        res.calendar_days_taken,
                        long(case.opened_on),
                        long(res.resolved_on)
                    ),
                    None,
                ),
                None => (
                    format!(
                        "Not yet resolved: open {working_days_open} working day(s) since {}",
                        long(case.opened_on)
                    ),
                    None,
                ),
            },
            "copied-to" => (copied_to.clone(), None),
            "notes" => {
                let mut v: Vec<String> = r.notes.iter().map(|n| free(n)).collect();
                for n in &case.notes {
                    v.push(format!("{} ({}): {}", long(n.at.date_naive()), n.by, free(&n.text)));
                }
                if let Some(i) = &case.actions_implemented {
                    v.push(format!(
                        "Agreed actions confirmed as implemented on {} by {}{}",
                        long(i.at.date_naive()),
                        i.by,
                        if i.text.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", free(&i.text))
                        }
                    ));
                }
                (v.join("\n"), None)
            }
            "challenger-name" => (sides[0].0.clone().unwrap_or_default(), None),
            "challenger-job-title" => (sides[0].1.clone().unwrap_or_default(), None),
            "challenger-agency" => (sides[0].2.clone().unwrap_or_default(), None),
            "challenger-date" => (sides[0].3.map(long).unwrap_or_default(), None),
            "challenged-name" => (sides[1].0.clone().unwrap_or_default(), None),
            "challenged-job-title" => (sides[1].1.clone().unwrap_or_default(), None),
            "challenged-agency" => (sides[1].2.clone().unwrap_or_default(), None),
            "challenged-date" => (sides[1].3.map(long).unwrap_or_default(), None),
            "date" => (long(today), None),
            "signature" => (
                String::new(),
                Some("To sign on the copy kept on the adult's record.".into()),
            ),
            "blank" => (String::new(), None),
            "stage" => (policy.stage_name(case.stage), None),
            "immediate_risk" => (if case.immediate_risk { "Yes" } else { "No" }.to_string(), None),
            key => (free(&r.get(key).unwrap_or_default()), None),
        }
    };
    let rows = doc
        .rows
        .iter()
        .map(|row| {
            let (value, mut note) = value_of(row);
            if value.trim().is_empty() && note.is_none() && row.value != "blank" {
                note = Some("Not given yet.".into());
            }
            FilledRow {
                group: row.group.clone(),
                label: row.label.clone(),
                value,
                note,
            }
        })
        .collect();
    let stages = case
        .stages
        .iter()
        .map(|s| {
            let mut people: Vec<String> = case
                .participants
                .iter()
                .filter(|p| p.stage == s.stage && p.role != ParticipantRole::ActionOwner)
                .map(|p| {
                    let who = joined(&[p.name.clone(), p.agency.clone()], ", ");
                    if who.is_empty() {
                        p.email.clone()
                    } else {
                        format!("{who} <{}>", p.email)
                    }
                })
                .collect();
            people.dedup();
            StageLine {
                stage: policy.stage_name(s.stage),
                entered_on: long(s.entered_on),
                people,
            }
        })
        .collect();
    let actions = resolution
        .map(|res| {
            res.actions
                .iter()
                .map(|a| ActionLine {
                    action: free(&a.text),
                    owner: free(&joined(&[a.owner.clone(), a.owner_email.clone()], ", ")),
                    by: a.due.map(long).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let status = match (case.status, resolution) {
        (CaseStatus::Resolved, Some(res)) => format!(
            "Resolved at {} on {}, after {} working day(s)",
            policy.stage_name(res.at_stage),
            long(res.resolved_on),
            res.working_days_taken
        ),
        (CaseStatus::Withdrawn, _) => "Withdrawn".to_string(),
        _ => format!(
            "Open at {}, opened on {} ({working_days_open} working day(s) ago)",
            policy.stage_name(case.stage),
            long(case.opened_on)
        ),
    };
    let short_title: String = doc
        .title
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
        .collect::<String>()
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    FilledForm {
        title: doc.title.clone(),
        source: doc.source.clone(),
        board_name: policy.board_name.clone(),
        reference: case.reference.clone(),
        status,
        intro: doc.intro.clone(),
        rows,
        stages,
        actions,
        action_note: doc.action_note.clone(),
        blanked: (!personal).then(|| {
            "This copy is for the board: the adult's name and NHS number are left blank, and taken out of \
             the text, because the escalation service sends the board no personal data. Add them from \
             your agency's records where you keep this copy."
                .to_string()
        }),
        filled_on: today,
        filename: format!("{} {short_title}.docx", case.reference),
    }
}

/// `text` for people outside the case (board roles): each part of the adult's name written out becomes
/// "[name]" and any ten-digit number (an NHS number, however spaced) "[number]", so that free text someone
/// wrote (an outcome) carries no personal data where the board has not turned it on.
pub fn redact(text: &str, record: &Record) -> String {
    let text = &without_digits(text, record.nhs_number.as_deref().unwrap_or_default());
    let parts: Vec<String> = record
        .adult_name
        .as_deref()
        .unwrap_or_default()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|p| p.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect();
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            // A run of digits, single spaces or hyphens between them.
            let mut j = i;
            let mut digits = 0;
            let mut end = i;
            while j < chars.len() {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    j += 1;
                    end = j;
                } else if matches!(chars[j], ' ' | '-') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
                    j += 1;
                } else {
                    break;
                }
            }
            if digits == 10 {
                out.push_str("[number]");
            } else {
                out.extend(&chars[i..end]); // byte-slice: a slice of chars, within the run just found
            }
            i = end;
        } else if c.is_alphanumeric() {
            let mut j = i;
            while j < chars.len() && chars[j].is_alphanumeric() {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect(); // byte-slice: a slice of chars, within the word just found
            if parts.contains(&word.to_lowercase()) {
                out.push_str("[name]");
            } else {
                out.push_str(&word);
            }
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `text` with every writing of the ten `digits` (the record's NHS number) — spaced, dotted, hyphenated,
/// run into letters or other numbers — as "[number]".
fn without_digits(text: &str, digits: &str) -> String {
    let want: Vec<char> = digits.chars().filter(char::is_ascii_digit).collect();
    if want.len() != 10 {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        // Match the digits from here, allowing separators between them.
        let mut j = i;
        let mut k = 0;
        while k < want.len() && j < chars.len() {
            if chars[j] == want[k] {
                k += 1;
                j += 1;
            } else if k > 0 && matches!(chars[j], ' ' | '.' | '-' | '\u{a0}' | '/' | '_') {
                j += 1;
            } else {
                break;
            }
        }
        if k == want.len() {
            out.push_str("[number]");
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_nhs_number_is_taken_out_however_it_is_written() {
        let record = Record {
            adult_name: Some("Zoë Testperson".into()),
            nhs_number: Some("9990000018".into()),
            ..Record::default()
        };
        for written in [
            "NHS9990000018 on file",
            "999.000.0018",
            "999-000-0018 12/03/2027",
            "9990000018123",
            "999  000  0018",
        ] {
            let r = redact(written, &record);
            assert!(r.contains("[number]"), "{written:?} became {r:?}");
            assert!(!r.contains("0018"), "{written:?} became {r:?}");
        }
        assert_eq!(redact("Zoë said so", &record), "[name] said so");
        assert_eq!(
            redact("a 12 digit ref 123456789012", &record),
            "a 12 digit ref 123456789012"
        );
    }
}
