//! Reading an escalation record out of the text of an email.
//!
//! People write the record in many ways: the board's Word form pasted into Outlook (a two-column table,
//! which [`html_to_text`] turns into `label<TAB>value` lines), "Label: value" lines in any order and case,
//! the value on the same line or on the lines after, several lines long, or "name, agency, email" in one
//! field. [`Labels`] knows every board's form labels, their aliases and the variants people type;
//! [`parse_record`] returns the fields found and, for values that cannot be used, what is wrong with them.
//! Pure: text in, record out.

use std::collections::BTreeMap;

use serde::Serialize;

pub mod prose;
pub mod sender;
pub mod values;
pub mod vocabulary;
pub mod whole_email;

use super::case::Record;
use super::policy::Policy;
use values::{clean_agency, clean_name, is_disclaimer, label_pairs};

pub use super::html::html_to_text;

/// Keys that stand for several fields written together ("name and agency of…").
const ESCALATING_COMBINED: &str = "@escalating";
const OTHER_COMBINED: &str = "@other";
const ESCALATING_CONTACT: &str = "@escalating_contact";
const OTHER_CONTACT: &str = "@other_contact";
/// Fields whose value is a single paragraph.
const SHORT_FIELDS: &[&str] = &[
    "adult_name",
    "escalating_name",
    "other_name",
    "escalating_agency",
    "other_agency",
    "escalating_job_title",
    "other_job_title",
    "nhs_number",
    // A theme is a few words: a sign-off under it (the form's last line) must not reach the digest's and
    // report's themes with the practitioner's name.
    "theme",
    "escalating_email",
    "other_email",
    "escalating_phone",
];
/// Fields whose value is a single line.
const ONE_LINE_FIELDS: &[&str] = &[
    "escalating_name",
    "other_name",
    "escalating_email",
    "other_email",
    "escalating_phone",
    "other_phone",
    "nhs_number",
    "date_of_birth",
    "escalating_job_title",
    "other_job_title",
];
/// A line read and set aside (a block's "Date:" or "Signature:").
const SKIP: &str = "@skip";

/// Headings of the blocks whose sub-labels repeat for each party (Rotherham's "Referrer" block,
/// Buckinghamshire's "Signature of challenger manager" and "… challenged manager"), normalised, with the
/// side they describe. A value on the heading's own line is the party as "name, agency, email".
const BLOCK_HEADINGS: &[(&str, &str)] = &[
    ("referrer", "escalating"),
    ("referrer details", "escalating"),
    ("signature of challenger manager", "escalating"),
    ("signature of the challenger manager", "escalating"),
    ("challenger manager", "escalating"),
    ("challenger", "escalating"),
    ("challenging manager", "escalating"),
    ("person escalating", "escalating"),
    ("person escalating the dispute", "escalating"),
    ("person raising the disagreement", "escalating"),
    ("practitioner raising the disagreement", "escalating"),
    ("escalating practitioner", "escalating"),
    ("escalating professional", "escalating"),
    ("escalating manager", "escalating"),
    ("your details", "escalating"),
    ("raised by", "escalating"),
    ("escalated by", "escalating"),
    ("signature of initiating manager", "escalating"),
    ("initiating manager", "escalating"),
    ("signature of challenged manager", "other"),
    ("signature of receiving manager", "other"),
    ("signature of the challenged manager", "other"),
    ("challenged manager", "other"),
    ("receiving manager", "other"),
    ("other party", "other"),
    ("other professional", "other"),
    ("other professional / agency", "other"),
    ("other professional/agency", "other"),
    ("other agency / professional", "other"),
    ("other agency", "other"),
    ("other practitioner", "other"),
    ("disagreement is with", "other"),
    ("disagreement with", "other"),
    ("dispute with", "other"),
    ("the disagreement is with", "other"),
    ("person the disagreement is with", "other"),
    ("professional the disagreement is with", "other"),
    ("practitioner the disagreement is with", "other"),
    ("escalated to", "other"),
    ("person dispute was escalated to", "other"),
    ("their details", "other"),
];

/// The sub-labels of such a block, normalised, and the part of the party they give.
const SUB_LABELS: &[(&str, &str)] = &[
    ("name", "name"),
    ("full name", "name"),
    ("print name", "name"),
    ("name (print)", "name"),
    ("job title", "job_title"),
    ("job title/role", "job_title"),
    ("role", "job_title"),
    ("position", "job_title"),
    ("designation", "job_title"),
    ("title", "job_title"),
    ("agency", "agency"),
    ("organisation", "agency"),
    ("organization", "agency"),
    ("agency/organisation", "agency"),
    ("agency / organisation", "agency"),
    ("service", "agency"),
    ("employer", "agency"),
    ("team", "agency"),
    ("agency/team", "agency"),
    ("email", "email"),
    ("e-mail", "email"),
    ("email address", "email"),
    ("e-mail address", "email"),
    ("telephone", "phone"),
    ("tel", "phone"),
    ("phone", "phone"),
    ("telephone number", "phone"),
    ("contact number", "phone"),
    ("mobile", "phone"),
    ("contact", "contact"),
    ("contact details", "contact"),
    ("date", "skip"),
    ("signature", "skip"),
    ("signed", "skip"),
];

/// The ways a line splits into a label and the value after it: at the first colon, and at the first tab
/// ("Label: value", "Label<TAB>value", "Label" alone), labels normalised.
fn split_label(line: &str) -> Vec<(String, String)> {
    let t = strip_numbering(line.trim().trim_start_matches(['*', '•', '-', '>', ' ']).trim_start());
    let mut out = Vec::new();
    for sep in [":", "\t", " - ", " \u{2013} ", " \u{2014} ", "  "] {
        if let Some(i) = t.find(sep) {
            out.push((
                normalise_label(t.get(..i).unwrap_or_default()),
                t.get(i + sep.len()..)
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches([':', '\t'])
                    .trim()
                    .to_string(),
            ));
        }
    }
    if out.is_empty() {
        out.push((normalise_label(t), String::new()));
    }
    out
}

/// The side a block heading introduces, a sub-label on the same line if there is one ("Signature of
/// challenger manager Name: Olumide Adeyemi"), and any value on its line.
fn block_heading(line: &str) -> Option<(&'static str, Option<&'static str>, String)> {
    for (label, value) in split_label(line) {
        let label = without_hint(&label).trim().to_string();
        for (heading, side) in BLOCK_HEADINGS {
            if *heading == label {
                // "Referrer  Name  Sunita Kaur": the value starts with the sub-label (unless it holds
                // several, "name: …; agency: …", which the caller splits).
                return Some(match sub_label(&value).filter(|_| !value.contains(';')) {
                    Some((part, v)) => (side, Some(part), v),
                    None => (side, None, value),
                });
            }
            let sub = label
                .strip_prefix(heading)
                .filter(|r| r.starts_with([' ', '-', '/']))
                .map(|r| r.trim_start_matches([' ', '-', '/']))
                .and_then(|r| SUB_LABELS.iter().find(|(l, _)| *l == r));
            if let Some((_, part)) = sub {
                return Some((side, Some(part), value));
            }
        }
    }
    None
}

/// A block's sub-label ("Name:", "Job Title", "Agency:") and its value.
fn sub_label(line: &str) -> Option<(&'static str, String)> {
    split_label(line).into_iter().find_map(|(label, value)| {
        SUB_LABELS
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, part)| (*part, value))
    })
}

/// The part of a person a sub-label names ("Job Title" → `job_title`), normalising the label first.
fn sub_part(label: &str) -> Option<&'static str> {
    let n = normalise_label(label);
    SUB_LABELS.iter().find(|(l, _)| *l == n).map(|(_, part)| *part)
}

/// A label that no list knows, read by its words ([`vocabulary::key_for`]): the key, marked as a guess
/// (it gives way to the form's own labels), and the value after it. Only a line that starts with a short
/// label and a colon, a tab or a question mark.
fn guessed_label(line: &str) -> Option<(String, String)> {
    let t = strip_numbering(line.trim().trim_start_matches(['*', '•', '-', '>', ' ']).trim_start());
    if !t.starts_with(char::is_alphabetic) {
        return None;
    }
    let cut = t
        .char_indices()
        .take(vocabulary::MAX_WORDS * 12)
        .find(|&(_, c)| matches!(c, ':' | '\t' | '?'))?;
    let (label, rest) = (t.get(..cut.0)?, t.get(cut.0 + cut.1.len_utf8()..)?);
    // "https://…" and "10:30" are not labels.
    // A label holds no bracket left open ("Margaret Ellis (NHS No: …)" is a value).
    if rest.starts_with("//") || label.is_empty() || label.matches('(').count() != label.matches(')').count() {
        return None;
    }
    let key = vocabulary::key_for(label)?;
    let value = rest.trim().trim_start_matches([':', '?', '\t', ' ']).trim().to_string();
    Some((format!("{GUESS}{key}"), value))
}

/// The field a block's sub-label fills for `side`.
fn sub_key(side: &str, part: &str) -> String {
    match part {
        "skip" => SKIP.to_string(),
        "contact" => format!("@{side}_contact"),
        other => format!("{side}_{other}"),
    }
}

/// The side a field's key belongs to (`escalating_name` → escalating), for the sub-labels that follow it.
fn side_of(key: &str) -> Option<&'static str> {
    if key.starts_with("escalating_") || key == ESCALATING_COMBINED || key == ESCALATING_CONTACT {
        Some("escalating")
    } else if key.starts_with("other_") || key == OTHER_COMBINED || key == OTHER_CONTACT {
        Some("other")
    } else {
        None
    }
}

/// Labels known by how they start, for the long variants people write ("Summary of disagreement,
/// including views of each agency and of the adult:"), normalised.
const LABEL_PREFIXES: &[(&str, &str)] = &[
    ("summary", "summary"),
    ("reason for dispute", "summary"),
    ("reason for the dispute", "summary"),
    ("nature of disagreement", "theme"),
    ("nature of the disagreement", "theme"),
    ("agreed outcome", "outcome"),
    ("agreed action", "outcome"),
    ("agreed next steps", "outcome"),
    ("views of the adult", "adult_views"),
    ("the adult's views", "adult_views"),
    ("adult's views", "adult_views"),
    ("evidence", "evidence"),
    ("include evidence", "evidence"),
    ("additional notes", "notes"),
    ("immediate risk", "immediate_risk"),
    ("stage of escalation", "stage"),
    ("current stage", "stage"),
    ("please indicate who", "copied_to"),
];

/// Labels known by how they end or what they say of the parties ("Practitioner / agency the
/// disagreement is with"), normalised.
const LABEL_PHRASES: &[(&str, &str)] = &[
    ("the disagreement is with", OTHER_COMBINED),
    ("the dispute is with", OTHER_COMBINED),
    ("dispute was escalated to", OTHER_COMBINED),
    ("raising the disagreement", ESCALATING_COMBINED),
    ("escalating the dispute", ESCALATING_COMBINED),
    ("raising the concern", ESCALATING_COMBINED),
    ("email address and contact", ESCALATING_CONTACT),
];

/// A labelled line whose label starts like one of [`LABEL_PREFIXES`], or says one of [`LABEL_PHRASES`],
/// and ends at a separator.
fn label_by_prefix(line: &str) -> Option<(&'static str, String)> {
    split_label(line).into_iter().find_map(|(label, value)| {
        let label = without_hint(&label);
        if label.split_whitespace().count() > 24 {
            return None;
        }
        LABEL_PREFIXES
            .iter()
            .find(|(p, _)| {
                label.starts_with(p)
                    && label
                        .get(p.len()..)
                        .is_some_and(|r| r.is_empty() || r.starts_with([' ', ',', '/', '(']))
            })
            .or_else(|| LABEL_PHRASES.iter().find(|(p, _)| label.contains(p)))
            .map(|(_, key)| (*key, value))
    })
}

/// A line that is only "Stage 2" (or "stage two – managers"): the stage, with no separator after it.
fn bare_stage(line: &str) -> Option<String> {
    let t = line.trim();
    let value = t
        .get(..6)
        .filter(|h| h.eq_ignore_ascii_case("stage "))
        .and_then(|_| t.get(6..))?;
    // "Stage 3 - senior managers (our Head of Safeguarding and DI Garside)": the stage, then what it is.
    // Not a sentence about a stage ("Stage 1 (CPN to duty social worker) did not resolve").
    let lower = t.to_lowercase();
    let sentence = [
        " did ", " was ", " were ", " not ", " failed", " tried", " resolve", " had ", " has ",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let short = t.chars().count() <= 40
        || !sentence
            && value
                .trim_start()
                .split_once(|c: char| !c.is_alphanumeric())
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['-', '\u{2013}', '\u{2014}', '(', ':']));
    (short && t.chars().count() <= 160 && matches!(parse_stage(value), Ok(Some(_)))).then(|| value.to_string())
}

/// `line` without a bracketed hint in its label: "Raised by (name, agency): X" as "Raised by: X".
fn without_hint(line: &str) -> String {
    let head_end = line.find([':', '\t']).unwrap_or(line.len());
    let head = line.get(..head_end).unwrap_or(line);
    match (head.find('('), head.rfind(')')) {
        (Some(open), Some(close)) if open < close => format!(
            "{}{}{}",
            line.get(..open).unwrap_or_default().trim_end(),
            line.get(close + 1..head_end).unwrap_or_default(),
            line.get(head_end..).unwrap_or_default()
        ),
        _ => line.to_string(),
    }
}

/// A label wrapped over two or three lines (a form pasted from a PDF or a narrow Word column), with any
/// value after it on the last: the key, the value, and how many lines it took. A blank line may stand
/// between the parts (a Word cell's paragraphs) when the label ends with a colon.
fn wrapped_label(labels: &Labels, lines: &[&str], i: usize) -> Option<(String, String, usize)> {
    let mut part: Vec<&str> = Vec::new();
    let mut used = 0;
    let mut blanks = false;
    for line in lines.iter().skip(i).take(6) {
        let t = line.trim();
        used += 1;
        if t.is_empty() {
            if part.is_empty() || (blanks && part.len() < 2) {
                return None;
            }
            blanks = true;
            continue;
        }
        part.push(t);
        if part.len() < 2 {
            continue;
        }
        // The label's first lines are short and hold no value of their own.
        if part
            .iter()
            .take(part.len() - 1)
            .any(|l| l.chars().count() > 70 || l.contains([':', '\t', '@']))
        {
            return None;
        }
        let joined = part.join(" ");
        let last = part.last().copied().unwrap_or_default();
        let found = labels
            .match_line(&joined)
            .or_else(|| labels.match_line(&without_hint(&joined)));
        if let Some((key, value)) = found.filter(|(k, _)| !k.starts_with(WEAK)) {
            // The label reaches into the last line: it is not a value line followed by a label line.
            let reaches = value.chars().count() < last.chars().count() && last.ends_with(value.as_str());
            if reaches && (!blanks || (value.is_empty() && last.ends_with(':'))) {
                return Some((key, value, used));
            }
        }
        if part.len() >= 3 {
            return None;
        }
    }
    None
}

/// The variants people type, beyond the boards' own form labels.
/// Short labels people type when the form is not to hand ("Them:", "Issue:", "Re:"), which also begin
/// ordinary lines of a summary. Each counts only where it cannot be part of a longer answer: inside a
/// summary, outcome, evidence or notes it is read as part of that text, and a field the form's own label
/// also fills is taken from the form's label.
const WEAK_LABELS: &[(&str, &str)] = &[
    (OTHER_COMBINED, "them"),
    ("summary", "issue"),
    ("immediate_risk", "risk now"),
    ("immediate_risk", "immediate harm"),
    ("adult_name", "re"),
    ("escalating_agency", "force"),
    ("date_of_birth", "dob"),
];

/// The mark on a key read from a [`WEAK_LABELS`] label.
const WEAK: char = '~';
/// The mark on a key read from a label by its words ([`vocabulary`]): it gives way to the form's own
/// labels as a weak one does, but only a one-word guess is taken as words inside a free-text answer.
const GUESS: char = '^';

/// Fields whose answer is free text, inside which a weak label is only words.
const FREE_TEXT_FIELDS: &[&str] = &["summary", "outcome", "evidence", "notes", "adult_views", "copied_to"];

const COMMON_LABELS: &[(&str, &str)] = &[
    ("adult_name", "name of adult at risk"),
    ("adult_name", "name of the adult at risk"),
    ("adult_name", "name of adult"),
    ("adult_name", "name of the adult"),
    ("adult_name", "adult's name"),
    ("adult_name", "adults name"),
    ("adult_name", "adult name"),
    ("adult_name", "adult at risk"),
    ("adult_name", "service user name"),
    ("adult_name", "service user"),
    ("adult_name", "client name"),
    ("nhs_number", "nhs number of adult at risk"),
    ("nhs_number", "nhs number"),
    ("nhs_number", "nhs no"),
    ("nhs_number", "nhs"),
    (
        ESCALATING_COMBINED,
        "name and agency name of the person escalating the dispute",
    ),
    (
        ESCALATING_COMBINED,
        "name and agency of the person escalating the dispute",
    ),
    (ESCALATING_COMBINED, "name and agency of person escalating"),
    (ESCALATING_COMBINED, "person escalating"),
    (ESCALATING_COMBINED, "raised by"),
    (ESCALATING_COMBINED, "escalated by"),
    (
        ESCALATING_CONTACT,
        "email address and contact telephone number of person escalating the dispute",
    ),
    (
        ESCALATING_CONTACT,
        "email address and telephone number of person escalating",
    ),
    (ESCALATING_CONTACT, "contact details"),
    ("escalating_name", "name of person escalating"),
    (
        ESCALATING_COMBINED,
        "name and agency of practitioner raising the disagreement",
    ),
    (
        ESCALATING_COMBINED,
        "name and agency of the practitioner raising the disagreement",
    ),
    (
        ESCALATING_COMBINED,
        "name, role and agency of practitioner raising the disagreement",
    ),
    (
        ESCALATING_COMBINED,
        "name, role and agency of the practitioner raising the disagreement",
    ),
    (ESCALATING_COMBINED, "practitioner raising the disagreement"),
    (
        ESCALATING_COMBINED,
        "name and agency of person raising the disagreement",
    ),
    (ESCALATING_COMBINED, "me"),
    (
        OTHER_COMBINED,
        "name and agency of practitioner the disagreement is with",
    ),
    (
        OTHER_COMBINED,
        "name and agency of the practitioner the disagreement is with",
    ),
    (
        OTHER_COMBINED,
        "name, role and agency of practitioner the disagreement is with",
    ),
    (
        OTHER_COMBINED,
        "name, role and agency of the practitioner the disagreement is with",
    ),
    (OTHER_COMBINED, "practitioner the disagreement is with"),
    (OTHER_COMBINED, "other worker"),
    (OTHER_COMBINED, "other practitioner"),
    (ESCALATING_CONTACT, "email and telephone"),
    (ESCALATING_CONTACT, "email / telephone"),
    (ESCALATING_CONTACT, "email/telephone"),
    (ESCALATING_CONTACT, "email and phone"),
    (ESCALATING_CONTACT, "email / phone"),
    (ESCALATING_CONTACT, "contact"),
    ("immediate_risk", "immediate risk to adult"),
    ("immediate_risk", "immediate risk to the adult"),
    ("adult_name", "adult"),
    ("summary", "summary of disagreement"),
    ("theme", "nature of disagreement"),
    ("theme", "nature of the disagreement"),
    ("outcome", "agreed actions and review date"),
    ("outcome", "agreed actions / review date"),
    ("outcome", "agreed actions"),
    ("outcome", "agreed outcomes / next steps"),
    ("outcome", "outcome/next steps"),
    ("outcome", "outcome / next steps"),
    ("outcome", "next steps"),
    ("time_taken", "time taken to reach resolution"),
    ("time_taken", "time taken to resolve"),
    ("time_taken", "time taken to resolve (number of days)"),
    ("time_taken", "time taken"),
    (ESCALATING_CONTACT, "email address and contact telephone number"),
    (OTHER_COMBINED, "practitioner / agency the disagreement is with"),
    ("stage", "current stage of escalation"),
    ("stage", "current stage of the escalation"),
    ("stage", "stage at which resolution achieved"),
    ("stage", "stage at which resolution was achieved"),
    ("stage", "stage at which resolution agreed"),
    ("stage", "stage at which resolution was agreed"),
    ("stage", "stage reached"),
    ("nhs_number", "nhs no"),
    ("nhs_number", "nhs num"),
    (OTHER_COMBINED, "professional / agency dispute is with"),
    (OTHER_COMBINED, "professional/agency dispute is with"),
    (OTHER_COMBINED, "agency dispute is with"),
    (OTHER_COMBINED, "professional dispute is with"),
    (OTHER_COMBINED, "name and agency of the person the disagreement is with"),
    (OTHER_COMBINED, "name and agency of person the dispute is with"),
    (OTHER_COMBINED, "name and agency of person the disagreement is with"),
    (OTHER_COMBINED, "name and agency of the person the dispute is with"),
    (OTHER_COMBINED, "disagreement is with (name, agency)"),
    // Labels typed from memory, the form not to hand.
    ("nhs_number", "adult's nhs no"),
    ("nhs_number", "adult's nhs number"),
    ("nhs_number", "adults nhs no"),
    ("nhs_number", "adults nhs number"),
    ("date_of_birth", "date of birth"),
    ("date_of_birth", "d.o.b"),
    (ESCALATING_COMBINED, "my details"),
    (OTHER_COMBINED, "who i disagree with"),
    (OTHER_COMBINED, "who i am disagreeing with"),
    (OTHER_COMBINED, "who i'm disagreeing with"),
    ("summary", "what it's about"),
    ("summary", "what it is about"),
    ("summary", "reason for the disagreement"),
    ("summary", "reason for disagreement"),
    ("immediate_risk", "immediate risk"),
    ("immediate_risk", "is the adult at risk of immediate harm"),
    (ESCALATING_COMBINED, "raised by (name / role / agency)"),
    (ESCALATING_COMBINED, "raised by (name, role, agency)"),
    (OTHER_COMBINED, "disagreement with (name / role / agency)"),
    (OTHER_COMBINED, "disagreement with (name, role, agency)"),
    (OTHER_COMBINED, "professional i disagree with"),
    (OTHER_COMBINED, "person i disagree with"),
    (OTHER_COMBINED, "practitioner i disagree with"),
    ("escalating_email", "my email"),
    ("escalating_email", "my email address"),
    ("escalating_name", "officer raising"),
    ("escalating_role", "rank/role"),
    ("escalating_role", "rank / role"),
    ("escalating_agency", "force / unit"),
    ("escalating_agency", "force/unit"),
    ("escalating_agency", "my agency"),
    ("escalating_agency", "my organisation"),
    ("escalating_name", "escalating name"),
    ("escalating_name", "your name"),
    ("escalating_name", "referrer name"),
    ("escalating_name", "referrer"),
    ("escalating_agency", "escalating agency"),
    ("escalating_agency", "your agency"),
    ("escalating_agency", "your organisation"),
    ("escalating_agency", "referrer agency"),
    ("escalating_agency", "referring agency"),
    ("escalating_email", "escalating email"),
    ("escalating_email", "your email"),
    ("escalating_email", "email address"),
    ("escalating_email", "referrer email"),
    ("escalating_phone", "your telephone"),
    ("escalating_phone", "your phone"),
    ("escalating_phone", "contact telephone number"),
    ("escalating_phone", "telephone number"),
    ("escalating_phone", "telephone"),
    ("escalating_phone", "phone"),
    ("escalating_phone", "tel"),
    ("escalating_job_title", "job title"),
    ("escalating_job_title", "your job title"),
    ("escalating_job_title", "your role"),
    (
        OTHER_COMBINED,
        "name and agency name of the person dispute was escalated to",
    ),
    (OTHER_COMBINED, "name and agency of the person dispute was escalated to"),
    (OTHER_COMBINED, "person dispute was escalated to"),
    (OTHER_COMBINED, "escalated to"),
    (OTHER_COMBINED, "disagreement is with"),
    (OTHER_COMBINED, "disagreement with"),
    (OTHER_COMBINED, "dispute with"),
    (OTHER_COMBINED, "other professional"),
    (OTHER_COMBINED, "other party"),
    ("other_name", "name of other professional"),
    ("other_name", "other name"),
    ("other_name", "their name"),
    ("other_agency", "other agency"),
    ("other_agency", "their agency"),
    ("other_agency", "their organisation"),
    ("other_email", "other email"),
    ("other_email", "their email"),
    ("other_email", "their email address"),
    ("summary", "summary of reason for dispute"),
    ("summary", "summary of the disagreement"),
    ("summary", "reason for dispute"),
    ("summary", "reason for escalation"),
    ("summary", "details of the disagreement"),
    ("summary", "details of disagreement"),
    ("summary", "the disagreement"),
    ("summary", "summary"),
    ("summary", "concern"),
    ("adult_views", "views of the adult at risk"),
    ("adult_views", "views of the adult"),
    ("adult_views", "adult's views"),
    ("adult_views", "adults views"),
    ("adult_views", "adult views"),
    ("evidence", "evidence"),
    ("outcome", "agreed outcomes or actions"),
    ("outcome", "agreed outcomes"),
    ("outcome", "desired outcome"),
    ("outcome", "outcome sought"),
    ("outcome", "outcome"),
    ("stage", "current stage"),
    ("stage", "escalation stage"),
    ("stage", "stage of escalation"),
    ("stage", "stage"),
    ("immediate_risk", "is the adult at immediate risk"),
    ("immediate_risk", "is the adult at risk of immediate harm"),
    ("immediate_risk", "risk of immediate harm"),
    ("immediate_risk", "immediate risk"),
    ("theme", "what the disagreement is about"),
    ("theme", "type of disagreement"),
    ("theme", "area of disagreement"),
    ("theme", "theme"),
    ("copied_to", "please indicate who this information is being copied to"),
    ("copied_to", "copied to"),
    ("copied_to", "copy to"),
    ("notes", "additional notes / information"),
    ("notes", "additional notes"),
    ("notes", "additional information"),
    ("notes", "other information"),
    ("notes", "notes"),
];

/// Lower case, single spaces, without decoration (`*`, bullets, trailing colon); `’` as `'`; dashes as `-`.
pub fn normalise_label(s: &str) -> String {
    let s = s
        .replace(['\u{2019}', '\u{2018}'], "'")
        .replace(['\u{2013}', '\u{2014}'], "-");
    let s: String = s
        .chars()
        .map(|c| if c == '\t' || c == '\u{a0}' { ' ' } else { c })
        .filter(|c| !matches!(c, '*' | '•' | '·' | '_' | '?'))
        .collect();
    let s = s.to_lowercase();
    let s = s
        .trim()
        .trim_start_matches(['-', '>', '#', '.', ' '])
        .trim_end_matches([':', ' ', '.']);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How many leading bytes of a label [`Labels::match_line`] checks before reading further.
const START: usize = 4;

/// Every label the parser recognises, longest first.
#[derive(Debug, Clone)]
pub struct Labels {
    /// Normalised label to field key.
    entries: std::collections::HashMap<String, String>,
    /// The longest normalised label, in bytes: a longer prefix cannot be a label.
    longest_bytes: usize,
    /// The first [`START`] bytes of every normalised label: a line that starts otherwise is not labelled.
    starts: std::collections::HashSet<String>,
}

impl Labels {
    /// The labels of these policies' forms (and aliases) plus the common variants.
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Self {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (key, label) in COMMON_LABELS {
            map.entry(normalise_label(label)).or_insert_with(|| key.to_string());
        }
        for (key, label) in WEAK_LABELS {
            map.entry(normalise_label(label))
                .or_insert_with(|| format!("{WEAK}{key}"));
        }
        for policy in policies {
            for f in &policy.form.fields {
                for l in std::iter::once(&f.label).chain(f.aliases.iter()) {
                    map.entry(normalise_label(l)).or_insert_with(|| f.key.clone());
                }
            }
        }
        let longest_bytes = map.keys().map(String::len).max().unwrap_or(0);
        let starts = map.keys().filter_map(|k| k.get(..START)).map(str::to_string).collect();
        Labels {
            entries: map.into_iter().collect(),
            longest_bytes,
            starts,
        }
    }

    /// Whether `text` is a label and nothing more (a table cell holding a label).
    pub fn is_label(&self, text: &str) -> bool {
        matches!(self.match_line(text), Some((_, v)) if v.trim().is_empty())
    }

    /// The key of the label `line` starts with, and the value after it, when the line is a labelled line:
    /// the label followed by a separator (`:`, a tab, `|`, ` - ` or an en or em dash between spaces, `=`,
    /// `?`, `. `) and the value, or the label alone. The value is as the sender wrote it (dashes and all). Where several prefixes are labels, the longest wins ("Summary of reason for dispute –
    /// include views…:" over "Summary").
    ///
    /// One pass: the prefix is normalised as it grows (as [`normalise_label`] would normalise it), looked
    /// up at each separator, and the scan stops once it is longer than any label. Every line of every
    /// message comes through here, so this is the parser's hot path.
    pub fn match_line(&self, line: &str) -> Option<(String, String)> {
        let trimmed = strip_numbering(
            line.trim()
                .trim_start_matches(['*', '•', '-', '\u{2013}', '\u{2014}', '>', ' '])
                .trim_start(),
        );
        let mut acc = String::with_capacity(self.longest_bytes + 8);
        // The length of `acc` without its trailing ':', ' ' and '.' (kept as it grows, not re-trimmed).
        let mut kept = 0;
        let mut found: Option<(usize, usize, &String)> = None;
        let mut lookup = |norm: &str, i: usize, len: usize| {
            if !norm.is_empty() {
                if let Some(key) = self.entries.get(norm) {
                    found = Some((i, len, key));
                }
            }
        };
        let mut whole = true;
        let mut started = false;
        for (i, c) in trimmed.char_indices() {
            let so_far = acc.get(..kept).unwrap_or_default();
            if let Some(len) = trimmed.get(i..).and_then(separator_at) {
                lookup(so_far, i, len);
            }
            // Every longer prefix, trimmed, starts with these bytes: no label starts so, no label follows.
            if !started && so_far.len() >= START {
                started = true;
                if so_far.get(..START).is_some_and(|s| !self.starts.contains(s)) {
                    whole = false;
                    break;
                }
            }
            if so_far.len() > self.longest_bytes {
                whole = false;
                break;
            }
            push_normalised(&mut acc, c);
            if !acc.ends_with([':', ' ', '.']) {
                kept = acc.len();
            }
        }
        if whole {
            lookup(acc.get(..kept).unwrap_or_default(), trimmed.len(), 0);
        }
        let (i, len, key) = found?;
        let value = trimmed
            .get(i + len..)
            .unwrap_or_default()
            .trim()
            .trim_start_matches([':', '\t', '|', ' '])
            .trim()
            .to_string();
        Some((key.clone(), value))
    }
}

/// `s` without a question number in front: "1. ", "12) ", "(a) ", "a) ", "Q3. ", "3 - ".
fn strip_numbering(s: &str) -> &str {
    let rest = s.strip_prefix('(').unwrap_or(s);
    let rest = rest
        .strip_prefix(['Q', 'q'])
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(rest);
    let marker_len = rest.chars().take_while(char::is_ascii_digit).count();
    let (marker, after) = if marker_len > 0 && marker_len <= 2 {
        rest.split_at_checked(marker_len).unwrap_or((rest, ""))
    } else if rest.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && rest.chars().nth(1).is_some_and(|c| c == ')' || c == '.')
    {
        rest.split_at_checked(1).unwrap_or((rest, ""))
    } else {
        return s;
    };
    let after_marker = after
        .strip_prefix([')', '.'])
        .or_else(|| after.strip_prefix(" -"))
        .filter(|a| a.starts_with([' ', '\t']));
    match after_marker {
        Some(a) if !marker.is_empty() => a.trim_start(),
        _ => s,
    }
}

/// The length of the label/value separator `s` starts with, if it starts with one.
fn separator_at(s: &str) -> Option<usize> {
    match s.as_bytes().first()? {
        b':' | b'\t' | b'|' | b'=' | b'?' => Some(1),
        b' ' if s.starts_with(" - ") => Some(3),
        b' ' if s.starts_with(" \u{2013} ") || s.starts_with(" \u{2014} ") => Some(5),
        b'.' if s.starts_with(". ") => Some(2),
        _ => None,
    }
}

/// Add `c` to a label being normalised as [`normalise_label`] does: curly quotes and dashes made plain,
/// decoration dropped, lower case, runs of white space one space, leading bullets and spaces dropped.
fn push_normalised(acc: &mut String, c: char) {
    let c = match c {
        '\u{2019}' | '\u{2018}' => '\'',
        '\u{2013}' | '\u{2014}' => '-',
        '*' | '•' | '·' | '_' | '?' => return,
        c if c.is_whitespace() => ' ',
        c => c,
    };
    if acc.is_empty() && matches!(c, '-' | '>' | '#' | '.' | ' ') {
        return;
    }
    if c == ' ' {
        if !acc.ends_with(' ') {
            acc.push(' ');
        }
    } else if c.is_ascii() {
        acc.push(c.to_ascii_lowercase());
    } else {
        acc.extend(c.to_lowercase());
    }
}

/// The record found in a text, and what could not be used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParsedRecord {
    pub record: Record,
    /// Values present but unusable, each said so the sender can fix it.
    pub problems: Vec<String>,
    /// How many fields were found, labelled or read from the sentences.
    pub fields_found: usize,
    /// How many of them were read from the sentences ([`prose`]), not from the form's labels.
    pub from_prose: usize,
}

impl ParsedRecord {
    /// How many fields the form's labels gave: what tells a filled-in form from a letter.
    pub fn labelled(&self) -> usize {
        self.fields_found.saturating_sub(self.from_prose)
    }
}

fn is_email_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '\'')
}

/// The email addresses written in `text`, in order.
pub fn find_emails(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Each address once, found in a set: a line of many addresses stays linear.
    let mut seen = std::collections::HashSet::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c != '@' {
            continue;
        }
        let mut s = i;
        while s > 0 && is_email_char(chars[s - 1]) {
            s -= 1;
        }
        let mut e = i + 1;
        while e < chars.len() && (chars[e].is_ascii_alphanumeric() || matches!(chars[e], '.' | '-')) {
            e += 1;
        }
        let local: String = chars[s..i] // byte-slice: a Vec<char>, indexed by characters
            .iter()
            .collect::<String>()
            .trim_start_matches(['.', '\''])
            .to_string();
        let domain: String = chars[i + 1..e] // byte-slice: a Vec<char>, indexed by characters
            .iter()
            .collect::<String>()
            .trim_end_matches(['.', '-'])
            .to_string();
        if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') {
            let addr = format!("{local}@{domain}");
            if seen.insert(addr.clone()) {
                out.push(addr);
            }
        }
    }
    out
}

/// `value` up to the end of its first sentence (a full stop, outside brackets, before a capital letter).
fn first_sentence(value: &str) -> String {
    let mut depth = 0i32;
    let chars: Vec<(usize, char)> = value.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' | '!' | '?' if depth <= 0 => {
                let next = chars.get(k + 1).map(|&(_, n)| n);
                let after = chars.get(k + 2).map(|&(_, n)| n);
                if next == Some(' ') && after.is_some_and(char::is_uppercase) {
                    return value.get(..i).unwrap_or(value).to_string();
                }
            }
            _ => {}
        }
    }
    value.to_string()
}

/// A UK-looking telephone number in `text` (at least 10 digits, spaces allowed).
fn find_phone(text: &str) -> Option<String> {
    // "Tel:" and the like after an address on one line: ':' separates too.
    for part in text.split([',', ';', '/', '\n', '(', ')', ':']) {
        let p = part
            .trim()
            .trim_start_matches(|c: char| c.is_alphabetic() || c == ':' || c == '.')
            .trim();
        let digits = p.chars().filter(|c| c.is_ascii_digit()).count();
        if digits >= 10 && p.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-')) {
            return Some(p.to_string());
        }
    }
    None
}

/// "Sam Social, Westshire Council, sam@westshire.gov.uk" as (name, agency, email). The name is what comes
/// before the first separator outside brackets (a comma, a semicolon, a line break, a dash between spaces,
/// or an opening bracket); the agency is the rest as written, commas, "of", "&" and brackets included
/// ("Callum Reid, City of Bradford MDC Adult Social Care"), without the email, phone and `mailto:` links.
fn split_person(value: &str) -> (Option<String>, Option<String>, Option<String>) {
    let emails = find_emails(value);
    let email = emails.first().cloned();
    let mut rest = value.replace("mailto:", "");
    // A few addresses at most: each is a pass over the value (the agency loses any left over).
    for e in emails.iter().take(3) {
        for wrapped in [format!("<{e}>"), format!("({e})"), format!("[{e}]")] {
            rest = rest.replace(&wrapped, "");
        }
        rest = rest.replace(e.as_str(), "");
    }
    if let Some(p) = find_phone(&rest) {
        rest = rest.replace(&p, "");
    }
    // Labels people leave in the value: "Tel:", "Email:", empty brackets where an address stood.
    let rest = rest.replace("()", "").replace("<>", "").replace("[]", "");
    let rest = rest.trim().trim_matches([',', ';', '-', '\u{2013}', ':', ' ']);
    // Name, role and agency on lines of their own: the name leads the first line, the agency is the last.
    let lines: Vec<&str> = rest
        .lines()
        .map(str::trim)
        .filter(|l| !l.trim_matches([',', ';', '/', '|', ' ']).is_empty())
        .collect();
    if let (Some(first), Some(last), true) = (lines.first(), lines.last(), lines.len() >= 2) {
        let (name, _, _) = split_person(first);
        let agency = last.trim().trim_matches([',', ';', ' ']).to_string();
        return (name, (!agency.is_empty()).then_some(agency), email);
    }
    // "Tomasz Kowalczyk (Senior Practitioner) at City of Bradford MDC", "Daniel Okonjo (Police Sergeant),
    // Thames Valley Police": the name, the role in brackets, then the agency.
    if let Some((name, _role, agency)) = name_role_agency(rest) {
        return (Some(name), (!agency.is_empty()).then_some(agency), email);
    }
    let mut depth = 0i32;
    let mut cut: Option<(usize, usize)> = None;
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        match c {
            // "Sam Social (Westshire Council)": a bracket that closes the value holds the agency.
            '(' if depth == 0
                && rest.trim_end().ends_with(')')
                && rest.get(i + 1..).is_some_and(|r| !r.contains('(')) =>
            {
                cut = Some((i, i));
                break;
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | ';' | '\n' | '/' | '|' if depth == 0 => {
                cut = Some((i, i + c.len_utf8()));
                break;
            }
            ' ' if depth == 0 => {
                let dash = chars.get(k + 1).map(|&(_, d)| d);
                let after = chars.get(k + 2).map(|&(_, d)| d);
                if matches!(dash, Some('-' | '\u{2013}' | '\u{2014}')) && after == Some(' ') {
                    let end = chars.get(k + 3).map_or(rest.len(), |&(j, _)| j);
                    cut = Some((i, end));
                    break;
                }
            }
            _ => {}
        }
    }
    let clean = |s: &str| {
        let mut t = s
            .trim()
            .trim_matches([',', ';', ' ', '\n', '-', '\u{2013}', '/', '|'])
            .trim()
            .to_string();
        // A bracket left open by the cut, or round the whole agency: "(Westshire Council)".
        if t.starts_with('(') && t.ends_with(')') && t.matches('(').count() == 1 {
            t = t.trim_start_matches('(').trim_end_matches(')').trim().to_string();
        }
        let tidy: Vec<&str> = t.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        tidy.join(", ")
    };
    let (name, agency) = match cut {
        Some((a, b)) => (
            clean(rest.get(..a).unwrap_or_default()),
            clean(rest.get(b..).unwrap_or_default()),
        ),
        None => (clean(rest), String::new()),
    };
    let agency = without_job_title(&agency);
    let some = |s: String| (!s.is_empty()).then_some(s);
    (some(name), some(agency), email)
}

/// "Name (Role) at Agency", "Name (Role), Agency", "Name (Role) from Agency" as (name, role, agency).
fn name_role_agency(rest: &str) -> Option<(String, String, String)> {
    let open = rest.find('(')?;
    let close = open + rest.get(open..)?.find(')')?;
    let name = rest.get(..open)?.trim();
    let role = rest.get(open + 1..close)?.trim();
    let after = rest.get(close + 1..)?.trim_start();
    // Only a name before the bracket: "Łukasz Wiśniewski – City of Bradford MDC (Adult Social Care)" is
    // read below.
    let plain_name = !name.is_empty()
        && name.split_whitespace().count() <= 5
        && !name.contains([',', ';', '/', '|', '\n'])
        && ![" - ", " \u{2013} ", " \u{2014} "].iter().any(|d| name.contains(d));
    if !plain_name {
        return None;
    }
    // A bracket that names an organisation is the agency, with any job title before it dropped:
    // "Nia Nurse (Community Nurse, Northfield Community Health NHS Trust)". Written with more after it
    // ("Sam Social (Bradford Council), Adult Social Care"), it is left to the reading below.
    let names_organisation = role.split([',', '/', '|']).any(is_organisation);
    if names_organisation {
        return after
            .is_empty()
            .then(|| (name.to_string(), String::new(), without_job_title(role)));
    }
    // "Dr Priyanka Menon (Named Professional, Safeguarding Adults)": a role in the closing bracket, no agency.
    if after.is_empty() && is_job_title(role) {
        return Some((name.to_string(), role.to_string(), String::new()));
    }
    let agency = ["at ", "from ", ", ", "- ", "\u{2013} ", "\n"]
        .iter()
        .find_map(|c| after.strip_prefix(c))?
        .trim()
        .trim_matches([',', ';', ' ']);
    if role.is_empty() || agency.is_empty() {
        return None;
    }
    Some((name.to_string(), role.to_string(), without_job_title(agency)))
}

/// The agency without a job title written before it: "Senior Social Worker, Buckinghamshire Council",
/// "Registered Manager / Beechwood Lodge Care Home", "Head of Service, Safeguarding / Buckinghamshire
/// Council" are the council or the home. Only when the first part reads as a role and a later part as an
/// organisation; anything else is kept as written ("Leeds Teaching Hospitals, Safeguarding Team").
fn without_job_title(agency: &str) -> String {
    let spaced = agency
        .replace(" \u{2013} ", "|")
        .replace(" \u{2014} ", "|")
        .replace(" - ", "|");
    let parts: Vec<&str> = spaced
        .split([',', '/', '|'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    // A job title first ("Community Staff Nurse – Aire Valley … Trust"), or a team that is no
    // organisation before one that is ("District Nursing, Irwell Community Health NHS Trust").
    let leads_with_other = parts.first().is_some_and(|p| is_job_title(p) || !is_organisation(p));
    if parts.len() < 2 || !leads_with_other {
        return agency.to_string();
    }
    match parts.iter().position(|p| is_organisation(p)) {
        Some(k) => parts.get(k..).unwrap_or_default().join(", "),
        None => agency.to_string(),
    }
}

/// Last words of job titles: "Senior Social Worker", "Community Matron", "Named Professional".
const ROLE_ENDINGS: &[&str] = &[
    "manager",
    "worker",
    "nurse",
    "practitioner",
    "officer",
    "lead",
    "sergeant",
    "constable",
    "inspector",
    "matron",
    "partner",
    "physiotherapist",
    "therapist",
    "doctor",
    "consultant",
    "director",
    "coordinator",
    "co-ordinator",
    "leader",
    "adviser",
    "advisor",
    "specialist",
    "assistant",
    "midwife",
    "paramedic",
    "psychiatrist",
    "psychologist",
    "pharmacist",
    "gp",
    "professional",
    "navigator",
    "supervisor",
    "sister",
    "clinician",
    "surgeon",
];

/// Words that make a name an organisation's: "Council", "NHS", "Trust", "Surgery", "Care Home".
const ORGANISATION_WORDS: &[&str] = &[
    "council",
    "mdc",
    "surgery's",
    "homes",
    "hospice",
    "college",
    "university",
    "ltd.",
    "nhs",
    "trust",
    "police",
    "surgery",
    "practice",
    "hospital",
    "hospitals",
    "home",
    "ltd",
    "limited",
    "cic",
    "foundation",
    "authority",
    "mbc",
    "constabulary",
    "icb",
    "clinic",
    "centre",
    "center",
    "housing",
    "association",
    "charity",
    "partnership",
    "service",
    "services",
    "care",
    "group",
    "board",
    "probation",
    "ambulance",
    "fire",
    "health",
];

/// The lower-cased words of `p` outside brackets: "Team Manager (Hospital Discharge)" is "team", "manager".
fn words_outside_brackets(p: &str) -> Vec<String> {
    p.split('(')
        .next()
        .unwrap_or_default()
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `p` (its first comma- or slash-separated part) reads as a job title.
fn is_job_title(p: &str) -> bool {
    let first = p.split([',', '/', '|']).next().unwrap_or_default();
    let w = words_outside_brackets(first);
    // Roles people write as letters: a community psychiatric nurse, an approved mental health
    // professional, a police constable.
    const ROLE_LETTERS: &[&str] = &[
        "cpn", "amhp", "sw", "dn", "hca", "ot", "pc", "dc", "ds", "di", "sgt", "anp", "acp", "rmn", "rgn",
    ];
    w.last().is_some_and(|l| {
        ROLE_ENDINGS.contains(&l.as_str())
            || (l.len() > 6 && (l.ends_with("ician") || l.ends_with("ologist") || l.ends_with("iatrist")))
            || (w.len() == 1 && ROLE_LETTERS.contains(&l.as_str()))
    }) || w.first().is_some_and(|f| f == "head") && w.get(1).is_some_and(|o| o == "of")
}

fn is_organisation(p: &str) -> bool {
    !is_job_title(p)
        && words_outside_brackets(p)
            .iter()
            .any(|w| ORGANISATION_WORDS.contains(&w.as_str()))
}

fn parse_bool(s: &str) -> Option<bool> {
    let w = normalise_label(s);
    let first = w.split([' ', ',', '.', '-']).next().unwrap_or_default();
    match first {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" | "none" | "not" => Some(false),
        _ => None,
    }
}

fn stage_word(w: &str) -> Option<u8> {
    match w {
        "one" | "1" | "i" | "first" | "1st" => Some(1),
        "two" | "2" | "ii" | "second" | "2nd" => Some(2),
        "three" | "3" | "iii" | "third" | "3rd" => Some(3),
        "four" | "4" | "iv" | "fourth" | "4th" => Some(4),
        "five" | "5" | "v" | "fifth" | "5th" => Some(5),
        other => other.parse().ok().filter(|n| (1..=9).contains(n)),
    }
}

/// The stage a value names: "2", "Stage 2", "Stage two – line managers", "Not yet resolved – currently at
/// Stage 2". `Ok(None)` where it names none on purpose ("n/a", "not applicable", blank choices), `Err`
/// where it cannot be read.
fn parse_stage(s: &str) -> Result<Option<u8>, ()> {
    // The value's first line says it; what follows may mention other stages in passing, or be another
    // field the form's layout ran into it.
    let first = s.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let w = normalise_label(first);
    let words: Vec<&str> = w
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '(' | ')' | '-' | ':' | ';' | '/'))
        .filter(|w| !w.is_empty())
        .collect();
    // "stage N" anywhere, the last one written ("moved from stage 1 to stage 2").
    let named = words
        .windows(2)
        .rev()
        .filter(|p| p.first() == Some(&"stage"))
        .find_map(|p| p.get(1).and_then(|w| stage_word(w)));
    if let Some(n) = named {
        return Ok(Some(n));
    }
    // "2nd stage", "Two – line managers", "1 (worker to worker) – we spoke on 4/1": a number first, then the
    // stage's name or what happened at it, after a separator or the word "stage" or "level".
    if let [w, next, ..] = words.as_slice() {
        if let Some(n) = stage_word(w).filter(|_| !matches!(*w, "i" | "v")) {
            let rest = normalised_after_first_word(first);
            if matches!(*next, "stage" | "level") || rest.starts_with(['-', '(', ':', ',', ';', '.', '/']) {
                return Ok(Some(n));
            }
        }
    }
    // The level's name alone, where every board's policy gives it the same number: "worker to worker",
    // "line manager level", "senior managers". (Heads of service are stage 3 at one board and 4 at another:
    // not read here.)
    if let Some(n) = stage_by_level(&w) {
        return Ok(Some(n));
    }
    match words.as_slice() {
        [] => Ok(None),
        [w, ..] if stage_word(w).is_some() && words.iter().filter(|w| stage_word(w).is_some()).count() == 1 => {
            Ok(stage_word(w))
        }
        // Choices left as printed on the form ("3 4"), or "n/a", "not applicable", "not yet resolved".
        ws if ws.iter().all(|w| stage_word(w).is_some()) => Ok(None),
        [w, ..] if matches!(*w, "n" | "na" | "not" | "none" | "tbc" | "unknown" | "pending") => Ok(None),
        _ => Err(()),
    }
}

/// A stage the sender states in a sentence where the form has none: "we are now at stage 3 (the service
/// managers could not agree)", "this has reached stage two". The first such statement.
fn stage_in_prose(text: &str) -> Option<u8> {
    const SAYS: &[&str] = &[
        "now at stage ",
        "currently at stage ",
        "we are at stage ",
        "we're at stage ",
        "it is at stage ",
        "it's at stage ",
        "is now at stage ",
        "has reached stage ",
        "have reached stage ",
        "now reached stage ",
        "treat this as stage ",
        "treat it as stage ",
        "log this as stage ",
        "this is stage ",
        "this is now stage ",
        "escalated to stage ",
        "moved to stage ",
        "now stage ",
    ];
    // Only the sender's own words, as a reply's are read: above the quoted message and the signature.
    let own = crate::core::reply::new_text(text);
    let lower = normalise_label(&own.replace('\n', " "));
    SAYS.iter()
        .filter_map(|say| {
            let at = lower.find(say)?;
            // "I don't think we are at stage 2 yet", "once it is at stage 3", "the complaint is now at
            // stage 2": not the escalation's stage.
            let before = lower.get(..at).unwrap_or_default();
            // The clause that says it: "we haven't agreed, so it's at stage 2" says it.
            let sentence = before.rsplit(['.', '!', '?', ';', ',']).next().unwrap_or_default();
            let doubt = [
                "not ",
                "n't ",
                "if ",
                "once ",
                "before ",
                "until ",
                "complaint",
                "when ",
            ];
            if doubt.iter().any(|d| sentence.contains(d)) {
                return None;
            }
            let word = lower
                .get(at + say.len()..)?
                .split(|c: char| !c.is_alphanumeric())
                .next()?;
            Some((at, stage_word(word).filter(|_| !matches!(word, "i" | "v"))?))
        })
        .min_by_key(|&(at, _)| at)
        .map(|(_, n)| n)
}

/// Whether a "Re:" line's value identifies the adult: it gives an NHS number or a date of birth.
fn identifies_a_person(value: &str) -> bool {
    let lower = value.to_lowercase();
    lower.contains("nhs")
        || lower.contains("dob")
        || lower.contains("d.o.b")
        || lower.contains("date of birth")
        || value.chars().filter(char::is_ascii_digit).count() >= 10
}

/// What follows the first word of `line`, normalised (dashes as '-'), trimmed at the start.
fn normalised_after_first_word(line: &str) -> String {
    let n = normalise_label(line);
    let cut = n.find(|c: char| !c.is_alphanumeric()).unwrap_or(n.len());
    n.get(cut..).unwrap_or_default().trim_start().to_string()
}

/// The stage a level's name gives where every board numbers it alike: practitioners 1, line managers 2,
/// senior managers 3. `w` is the normalised first line; the name must open it.
fn stage_by_level(w: &str) -> Option<u8> {
    // "Senior managers have not been involved yet" says which stage it is not.
    let words: Vec<&str> = w.split(|c: char| !c.is_alphanumeric() && c != '\'').collect();
    if words
        .iter()
        .any(|x| matches!(*x, "not" | "no" | "yet" | "never") || x.ends_with("n't"))
    {
        return None;
    }
    const LEVELS: &[(&str, u8)] = &[
        ("worker to worker", 1),
        ("practitioner to practitioner", 1),
        ("professional to professional", 1),
        ("practitioner level", 1),
        ("worker level", 1),
        ("line manager", 2),
        ("line management", 2),
        ("manager to manager", 2),
        ("team manager", 2),
        ("senior manager", 3),
        ("operational manager", 3),
    ];
    let w = w.trim_start_matches(['(', ' ']);
    LEVELS
        .iter()
        .find(|(name, _)| {
            // "line manager", "line managers"; not "line managerial".
            w.strip_prefix(name).is_some_and(|rest| {
                let rest = rest.strip_prefix('s').unwrap_or(rest);
                !rest.starts_with(char::is_alphabetic)
            })
        })
        .map(|&(_, n)| n)
}

fn set(record: &mut Record, key: &str, value: String) {
    // A name is the name alone; an agency holds the organisation only: no address, phone, job title or
    // stray "Email".
    let value = if matches!(key, "adult_name" | "escalating_name" | "other_name") {
        clean_name(&value)
    } else if key.ends_with("_agency") {
        let cleaned = clean_agency(&without_job_title(&value));
        // A job title alone ("Managing Partner") is not an agency.
        if cleaned.is_empty() || (is_job_title(&cleaned) && !is_organisation(&cleaned)) {
            return;
        }
        cleaned
    } else {
        value
    };
    let slot = match key {
        "adult_name" => &mut record.adult_name,
        "nhs_number" => &mut record.nhs_number,
        "escalating_name" => &mut record.escalating_name,
        "escalating_agency" => &mut record.escalating_agency,
        "escalating_email" => &mut record.escalating_email,
        "escalating_phone" => &mut record.escalating_phone,
        "other_name" => &mut record.other_name,
        "other_agency" => &mut record.other_agency,
        "other_email" => &mut record.other_email,
        "summary" => &mut record.summary,
        "adult_views" => &mut record.adult_views,
        "evidence" => &mut record.evidence,
        "outcome" => &mut record.outcome,
        "theme" => &mut record.theme,
        "copied_to" => &mut record.copied_to,
        "notes" => &mut record.notes,
        other => {
            record.extra.entry(other.to_string()).or_insert(value);
            return;
        }
    };
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Read the labelled fields of `text`.
pub fn parse_labelled(text: &str, labels: &Labels) -> ParsedRecord {
    let text: std::borrow::Cow<str> = if text.contains(['\r', '\0']) {
        text.replace("\r\n", "\n").replace(['\r', '\0'], "\n").into()
    } else {
        text.into()
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut fields: Vec<(String, Vec<String>)> = Vec::new();
    // The side of the block whose sub-labels ("Name:", "Agency:") are being read, after a heading such as
    // "Referrer" or "Signature of challenged manager".
    let mut block: Option<&'static str> = None;
    let mut i = 0;
    while let Some(raw) = lines.get(i) {
        let line = raw.trim_end();
        let value_of = |v: String| if v.is_empty() { Vec::new() } else { vec![v] };
        if let Some((side, sub, value)) = block_heading(line) {
            block = Some(side);
            // "Initiating manager: name: Yusuf Adebayo; designation: …; agency: …": sub-labels in one line.
            let parts: Vec<(&str, String)> = value.split(';').filter_map(sub_label).collect();
            if sub.is_none() && parts.len() >= 2 {
                for (part, v) in parts {
                    fields.push((sub_key(side, part), value_of(v)));
                }
                i += 1;
                continue;
            }
            // "Signature of challenger manager Name: Harpreet Gill; Job Title: …; Agency: …".
            let label_of = |part: &str| {
                match part {
                    "job_title" => "job title",
                    other => other,
                }
                .to_string()
            };
            if let Some(pairs) = sub.and_then(|part| label_pairs(&format!("{}: {value}", label_of(part)), &sub_part)) {
                for (part, v) in pairs {
                    fields.push((sub_key(side, part), value_of(v)));
                }
                i += 1;
                continue;
            }
            let key = match sub {
                Some(part) => sub_key(side, part),
                None if side == "escalating" => ESCALATING_COMBINED.to_string(),
                None => OTHER_COMBINED.to_string(),
            };
            fields.push((key, value_of(value)));
            i += 1;
            continue;
        }
        // "Name: …; Job Title: …; Agency: …" on one line, inside a block or after a party's label.
        if let Some(side) = block {
            if let Some(pairs) = label_pairs(line, &sub_part) {
                for (part, v) in pairs {
                    fields.push((sub_key(side, part), value_of(v)));
                }
                i += 1;
                continue;
            }
        }
        if let Some((side, (part, value))) = block.and_then(|side| sub_label(line).map(|s| (side, s))) {
            fields.push((sub_key(side, part), value_of(value)));
            i += 1;
            continue;
        }
        if let Some((key, value)) = labels
            .match_line(line)
            .or_else(|| labels.match_line(&without_hint(line)))
        {
            // Inside the answer to one of the form's own free-text labels; after "Issue:", the writer is using
            // short labels throughout, and the next one is a label too.
            let in_free_text = fields
                .last()
                .is_some_and(|(k, _)| FREE_TEXT_FIELDS.contains(&k.as_str()));
            if key.starts_with(WEAK) && in_free_text {
                if let Some((_, values)) = fields.last_mut() {
                    values.push(line.trim().to_string());
                }
            } else {
                block = side_of(key.trim_start_matches(WEAK));
                fields.push((key, value_of(value)));
            }
            i += 1;
            continue;
        }
        if let Some(value) = bare_stage(line) {
            fields.push(("stage".to_string(), vec![value]));
            i += 1;
            continue;
        }
        if let Some((key, value, used)) = wrapped_label(labels, &lines, i) {
            block = side_of(&key);
            fields.push((key, value_of(value)));
            i += used;
            continue;
        }
        if let Some((key, value)) = label_by_prefix(line) {
            block = None;
            fields.push((key.to_string(), value_of(value)));
            i += 1;
            continue;
        }
        if let Some((key, value)) = guessed_label(line) {
            // Inside a free-text answer ("ASC view: …", "Background: …"), a guessed label of another
            // free-text field is words of the answer, unless it opens a paragraph of its own.
            let in_free_text = fields
                .last()
                .is_some_and(|(k, _)| FREE_TEXT_FIELDS.contains(&k.trim_start_matches([WEAK, GUESS])));
            let after_blank = i > 0 && lines.get(i - 1).is_some_and(|l| l.trim().is_empty());
            let free_key = FREE_TEXT_FIELDS.contains(&key.trim_start_matches(GUESS));
            // "Risks: he falls at night and …" goes on with the answer; "Risk now: no" is a field.
            let long_value = value.split_whitespace().count() > 6 && parse_bool(&value).is_none();
            if in_free_text && !after_blank && (free_key || long_value) {
                if let Some((_, values)) = fields.last_mut() {
                    values.push(line.trim().to_string());
                }
            } else {
                block = side_of(key.trim_start_matches(GUESS));
                fields.push((key, value_of(value)));
            }
            i += 1;
            continue;
        }
        if let Some((_, values)) = fields.last_mut() {
            values.push(line.trim().to_string());
        }
        i += 1;
    }
    let mut out = ParsedRecord::default();
    // The form's own labels first: a field a weak label also names keeps the form's answer.
    let (strong, weak): (Vec<_>, Vec<_>) = fields.into_iter().partition(|(k, _)| !k.starts_with([WEAK, GUESS]));
    for (key, lines) in strong.into_iter().chain(weak) {
        if key == SKIP {
            continue;
        }
        let weak = key.starts_with(WEAK);
        let key = key.trim_start_matches([WEAK, GUESS]).to_string();
        // A value runs until the next label; blank lines inside it are kept, around it dropped.
        let value = lines.join("\n");
        let value = value.trim().to_string();
        // A signature or quoted thread after the last field is not part of it.
        let value = cut_trailer(&value);
        // A name or an agency is one paragraph: what follows a blank line is something else (a signature
        // under the form's last field, or a label the form's layout lost).
        let value = if SHORT_FIELDS.contains(&key.as_str()) {
            value.split("\n\n").next().unwrap_or_default().trim().to_string()
        } else {
            value
        };
        // A phone number, an address, a person's name or an NHS number is one line: the lines after it
        // are a signature, a disclaimer or the form's next row.
        let value = if ONE_LINE_FIELDS.contains(&key.as_str()) {
            value.lines().next().unwrap_or_default().trim().to_string()
        } else {
            value
        };
        // "Name: …; Job Title: …; Agency: …" after a party's label.
        if let (Some(side), Some(pairs)) = (
            side_of(&key).filter(|_| key == ESCALATING_COMBINED || key == OTHER_COMBINED),
            label_pairs(
                value.trim_start_matches(['-', '\u{2013}', '\u{2014}', ':', ' ']),
                &sub_part,
            ),
        ) {
            for (part, v) in pairs {
                let k = sub_key(side, part);
                if k != SKIP && !v.is_empty() {
                    out.fields_found += 1;
                    if part == "email" {
                        if let Some(e) = find_emails(&v).into_iter().next() {
                            set(&mut out.record, &k, e.to_lowercase());
                        }
                    } else {
                        set(&mut out.record, &k, v);
                    }
                }
            }
            continue;
        }
        if value.is_empty() {
            continue;
        }
        // "Re: Gordon Featherstone, NHS No: 999 827 7167" names the adult; "Re: the hospital discharge"
        // does not.
        if weak && key == "adult_name" && !identifies_a_person(&value) {
            continue;
        }
        out.fields_found += 1;
        match key.as_str() {
            ESCALATING_COMBINED | OTHER_COMBINED => {
                let side = if key == ESCALATING_COMBINED {
                    "escalating"
                } else {
                    "other"
                };
                // The party is the first sentence: what follows is something else said about it.
                let value = first_sentence(&value);
                let (name, agency, email) = split_person(&value);
                // "South Gloucestershire Council (x@y)": an organisation where the name would be.
                let (name, agency) = match name {
                    Some(n) if is_organisation(&n) && agency.as_deref().is_none_or(|a| !is_organisation(a)) => {
                        (None, Some(n))
                    }
                    other => (other, agency),
                };
                if let Some(n) = name {
                    set(&mut out.record, &format!("{side}_name"), n);
                }
                if let Some(a) = agency {
                    set(&mut out.record, &format!("{side}_agency"), a);
                }
                if let Some(e) = email {
                    set(&mut out.record, &format!("{side}_email"), e.to_lowercase());
                }
                if side == "escalating" {
                    if let Some(p) = find_phone(&value) {
                        set(&mut out.record, "escalating_phone", p);
                    }
                }
            }
            ESCALATING_CONTACT | OTHER_CONTACT => {
                let side = if key == OTHER_CONTACT { "other" } else { "escalating" };
                if let Some(e) = find_emails(&value).into_iter().next() {
                    set(&mut out.record, &format!("{side}_email"), e.to_lowercase());
                }
                if let Some(p) = find_phone(&value) {
                    set(&mut out.record, &format!("{side}_phone"), p);
                }
            }
            "stage" => match parse_stage(&value) {
                Ok(Some(n)) if out.record.stage.is_none() => out.record.stage = Some(n),
                Ok(_) => {}
                Err(()) => out.problems.push(format!(
                    "Stage {value:?} is not a stage number: write a number such as 1."
                )),
            },
            "immediate_risk" => match parse_bool(&value) {
                Some(b) if out.record.immediate_risk.is_none() => out.record.immediate_risk = Some(b),
                Some(_) => {}
                // Already answered above: a second mention explains it.
                None if out.record.immediate_risk.is_some() => {
                    out.record.extra.entry("immediate_risk_detail".into()).or_insert(value);
                }
                // Words where yes or no was asked for, describing a risk: read as yes, on the side of the
                // adult's safety, and kept as written. Anything else is asked again.
                None if ["risk", "harm", "danger", "unsafe", "urgent"]
                    .iter()
                    .any(|w| value.to_lowercase().contains(w)) =>
                {
                    out.record.immediate_risk = Some(true);
                    out.record.extra.entry("immediate_risk_detail".into()).or_insert(value);
                }
                None => out
                    .problems
                    .push(format!("Immediate risk {value:?}: please answer yes or no.")),
            },
            "escalating_email" | "other_email" => match find_emails(&value).into_iter().next() {
                // Addresses compare without case everywhere; kept as most people write them.
                Some(e) => set(&mut out.record, &key, e.to_lowercase()),
                None => out.problems.push(format!("{value:?} is not an email address.")),
            },
            "escalating_name" | "other_name" if value.contains('@') || value.contains(',') => {
                let side = key.trim_end_matches("_name");
                let (name, agency, email) = split_person(&value);
                if let Some(n) = name {
                    set(&mut out.record, &key, n);
                }
                if let Some(a) = agency {
                    set(&mut out.record, &format!("{side}_agency"), a);
                }
                if let Some(e) = email {
                    set(&mut out.record, &format!("{side}_email"), e.to_lowercase());
                }
            }
            "nhs_number" => {
                // The number is on the value's first line; anything after it is not part of it.
                let first = value.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
                // A valid number written with words round it ("999 567 8918 (checked on SystmOne)") is
                // that number; anything else is kept as written, for the sender to be told.
                let number = nhs_number_in(first).unwrap_or_else(|| first.trim().to_string());
                set(&mut out.record, &key, number);
            }
            _ => set(&mut out.record, &key, value),
        }
    }
    tidy_record(&mut out.record, &text);
    // What the labels did not give, from the sentences: a record written as prose.
    out
}

/// Read a new record from `text`: its labelled fields ([`parse_labelled`]), then what the labels did not
/// give from its sentences ([`prose`]): a record written as prose. An UPDATE to a case reads the labelled
/// lines alone: a sentence written in it changes nothing.
pub fn parse_record(text: &str, labels: &Labels) -> ParsedRecord {
    let mut out = parse_labelled(text, labels);
    let text = text.replace("\r\n", "\n");
    let from_prose = prose::read(&mut out.record, &text, out.fields_found);
    out.fields_found += from_prose;
    out.from_prose = from_prose;
    out
}

/// What a careful reader takes from a record besides its labelled values: the adult's name without the
/// NHS number or date of birth written beside it, an NHS number written elsewhere ("Additional notes: NHS
/// number 999 587 7880"), and "no immediate risk" said in passing.
fn tidy_record(record: &mut Record, text: &str) {
    // "Nature of the disagreement: …" written at length is the summary; a few words are its theme too.
    if record.get("summary").is_none() {
        if let Some(theme) = record.get("theme") {
            if theme.split_whitespace().count() > 6 {
                record.theme = None;
            }
            record.summary = Some(theme);
        }
    }
    if let Some(name) = record.adult_name.clone() {
        let lower = name.to_lowercase();
        let cut = [
            " - nhs",
            " – nhs",
            ", nhs",
            " (nhs",
            " nhs no",
            " nhs number",
            " (dob",
            " dob",
            " (d.o.b",
            ", dob",
            " (born",
            ", born",
        ]
        .iter()
        .filter_map(|m| lower.find(m))
        .min();
        if let Some(i) = cut {
            if record.nhs_number.is_none() {
                record.nhs_number = nhs_number_in(name.get(i..).unwrap_or_default());
            }
            let kept = name
                .get(..i)
                .unwrap_or_default()
                .trim()
                .trim_end_matches([',', '-', '('])
                .trim();
            if !kept.is_empty() {
                record.adult_name = Some(kept.to_string());
            }
        }
    }
    if record.nhs_number.is_none() {
        record.nhs_number = text
            .lines()
            .filter(|l| l.to_lowercase().contains("nhs"))
            .find_map(nhs_number_in);
    }
    // A stage the sender states above the form (a manager forwarding it: "please treat this as stage 2")
    // is the latest one stated.
    match (record.stage, stage_in_prose(text)) {
        (None, said) => record.stage = said,
        (Some(form), Some(said)) if said > form => record.stage = Some(said),
        _ => {}
    }
    // "Additional notes: stage 2 – sergeant to team manager".
    if record.stage.is_none() {
        if let Some(notes) = record
            .get("notes")
            .filter(|n| n.trim_start().to_lowercase().starts_with("stage"))
        {
            record.stage = parse_stage(&notes).ok().flatten();
        }
    }
    if record.immediate_risk.is_none() {
        // "Additional notes: Immediate risk - N.", "… immediate risk: yes – see summary", "No immediate risk".
        let lower = text.to_lowercase();
        record.immediate_risk = lower.lines().find_map(|line| {
            if [
                "no immediate risk",
                "not at immediate risk",
                "no risk of immediate harm",
            ]
            .iter()
            .any(|p| line.contains(p))
            {
                return Some(false);
            }
            let at = line.find("immediate risk")?;
            let rest = line.get(at + "immediate risk".len()..)?;
            let rest = match rest.find(':').filter(|&i| i <= 20) {
                Some(i) => rest.get(i + 1..)?,
                None => rest,
            };
            parse_bool(rest.trim_start_matches([' ', '-', '\u{2013}', '\u{2014}', '?', '=']))
        });
    }
}

/// A valid NHS number written in `text`: ten digits together, or spaced, dotted or dashed however they
/// were pasted (any kind of space, full-width digits).
pub(crate) fn nhs_number_in(text: &str) -> Option<String> {
    use super::nhs::{ascii_digit, is_digit_separator};
    let chars: Vec<char> = text.chars().collect();
    for start in 0..chars.len() {
        let prev_digit = start > 0 && chars.get(start - 1).and_then(|c| ascii_digit(*c)).is_some();
        if chars.get(start).and_then(|c| ascii_digit(*c)).is_none() || prev_digit {
            continue;
        }
        let mut digits = String::new();
        let mut gap = 0;
        for c in chars.iter().skip(start) {
            if let Some(d) = ascii_digit(*c) {
                digits.push(d);
                gap = 0;
                if digits.len() > 10 {
                    break;
                }
            } else if is_digit_separator(*c) && gap < 2 && digits.len() < 10 {
                gap += 1;
            } else {
                break;
            }
        }
        if digits.len() == 10 && super::nhs::normalise(&digits).is_ok() {
            return Some(digits);
        }
    }
    None
}

/// `value` without a trailing signature block or quoted thread.
fn cut_trailer(value: &str) -> String {
    let mut kept = Vec::new();
    for line in value.lines() {
        let t = line.trim();
        if t == "--"
            || t == "-- "
            || is_disclaimer(t)
            || t.starts_with('>')
            || t.starts_with("-----Original Message")
            || is_mobile_footer(t)
            || is_sign_off(t)
        {
            break;
        }
        kept.push(line);
    }
    kept.join("\n").trim().to_string()
}

/// "Kind regards," and its kin: the end of the message, not part of the last field.
fn is_sign_off(t: &str) -> bool {
    // The longest sign-off with its punctuation is well inside this.
    if t.len() > 24 {
        return false;
    }
    let l = t.to_lowercase();
    let l = l.trim_end_matches([',', '.', '!']);
    [
        "kind regards",
        "regards",
        "best regards",
        "warm regards",
        "many thanks",
        "thanks",
        "thank you",
        "best wishes",
        "yours sincerely",
        "yours faithfully",
        "best",
        "cheers",
    ]
    .contains(&l)
}

pub(crate) fn is_mobile_footer(t: &str) -> bool {
    ["sent from my ", "get outlook for ", "sent from outlook"]
        .iter()
        .any(|p| t.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_emails_in_prose() {
        assert_eq!(
            find_emails("Sam Social <sam.social@westshire.gov.uk>, tel 0113 496 0000"),
            vec!["sam.social@westshire.gov.uk"]
        );
        assert_eq!(find_emails("mail: a.b+c@nhs.net."), vec!["a.b+c@nhs.net"]);
        assert!(find_emails("no address @ here").is_empty());
    }

    #[test]
    fn splits_a_person_written_in_one_field() {
        let (n, a, e) = split_person("Sam Social, Westshire Council Adult Social Care, sam.social@westshire.gov.uk");
        assert_eq!(n.as_deref(), Some("Sam Social"));
        assert_eq!(a.as_deref(), Some("Westshire Council Adult Social Care"));
        assert_eq!(e.as_deref(), Some("sam.social@westshire.gov.uk"));
    }

    #[test]
    fn a_short_label_inside_an_answer_is_only_words() {
        let labels = Labels::new(std::iter::empty());
        let parsed = parse_record(
            "Re: escalation about hospital discharge at BRI\n\nName of adult at risk: Zoe Testperson\nSummary of disagreement: The enquiry was closed.\nIssue: the s42 was closed without a visit.\nThem: said the threshold was not met.\nImmediate harm: no, while the carers visit daily.\nImmediate risk to adult: Yes\n",
            &labels,
        );
        assert_eq!(parsed.record.adult_name.as_deref(), Some("Zoe Testperson"));
        let summary = parsed.record.summary.as_deref().unwrap_or_default();
        assert!(
            summary.contains("Issue: the s42 was closed") && summary.contains("Them: said"),
            "{summary}"
        );
        assert_eq!(parsed.record.immediate_risk, Some(true));
        // Where the form is not to hand, they are its labels.
        let parsed = parse_record(
            "Re: Gordon Featherstone, NHS No: 999 827 7167\nThem: Sandra Whitlow, Trafford Council\nIssue: closed as no further action\nRisk now? no\n",
            &labels,
        );
        assert_eq!(parsed.record.adult_name.as_deref(), Some("Gordon Featherstone"));
        assert_eq!(parsed.record.other_name.as_deref(), Some("Sandra Whitlow"));
        assert_eq!(parsed.record.summary.as_deref(), Some("closed as no further action"));
        assert_eq!(parsed.record.immediate_risk, Some(false));
    }

    #[test]
    fn a_stage_in_the_senders_note_is_read_only_when_it_is_said_plainly() {
        assert_eq!(
            stage_in_prose("All,\nwe are now at stage 3 (the managers could not agree).\n"),
            Some(3)
        );
        assert_eq!(stage_in_prose("I don't think we are at stage 2 yet."), None);
        assert_eq!(stage_in_prose("Her complaint to the council is now at stage 2."), None);
        assert_eq!(stage_in_prose("Hi\n> Our internal review is now at stage 3\n"), None);
        assert_eq!(
            stage_in_prose("Hi\n-----Original Message-----\nIt is now at stage 3\n"),
            None
        );
    }

    #[test]
    fn an_agency_in_brackets_is_kept() {
        let (name, agency, _) = split_person("Nia Nurse (Community Nurse, Northfield Community Health NHS Trust)");
        assert_eq!(name.as_deref(), Some("Nia Nurse"));
        assert_eq!(agency.as_deref(), Some("Northfield Community Health NHS Trust"));
        let (name, agency, _) = split_person("Sam Social (Bradford Council)");
        assert_eq!(
            (name.as_deref(), agency.as_deref()),
            (Some("Sam Social"), Some("Bradford Council"))
        );
        let (name, agency, _) = split_person("Dr Priyanka Menon (Named Professional, Safeguarding Adults)");
        assert_eq!((name.as_deref(), agency), (Some("Dr Priyanka Menon"), None));
        let (_, agency, _) = split_person(
            "Zoë Ashworth, Community Mental Health Nurse, Bradford District Care NHS Foundation Trust, zoe@nhs.net",
        );
        assert_eq!(agency.as_deref(), Some("Bradford District Care NHS Foundation Trust"));
        let (_, agency, _) = split_person("Lee Lead, Leeds Teaching Hospitals, Safeguarding Team");
        assert_eq!(agency.as_deref(), Some("Leeds Teaching Hospitals, Safeguarding Team"));
    }

    #[test]
    fn a_stage_is_read_from_what_people_write_for_it() {
        let cases: &[(&str, Result<Option<u8>, ()>)] = &[
            ("2", Ok(Some(2))),
            ("Stage Two", Ok(Some(2))),
            (
                "2nd stage \u{2013} my manager (Ruth Hebden) and Tomasz\u{2019}s manager spoke\non Mon 4th",
                Ok(Some(2)),
            ),
            (
                "1 \u{2013} discussed with my manager, who agreed I should escalate",
                Ok(Some(1)),
            ),
            (
                "1 (worker to worker) \u{2013} we spoke on 4/1, no agreement",
                Ok(Some(1)),
            ),
            ("worker to worker", Ok(Some(1))),
            (
                "Line manager level \u{2013} DS Fozia Malik and the First Response team leader discussed",
                Ok(Some(2)),
            ),
            ("line management", Ok(Some(2))),
            ("Senior managers have met", Ok(Some(3))),
            ("Not yet \u{2013} currently at Stage Two", Ok(Some(2))),
            ("Three \u{2013} Heads of Service", Ok(Some(3))),
            ("3 4", Ok(None)),
            ("n/a", Ok(None)),
            ("Heads of Service", Err(())),
            ("Senior managers have not been involved yet", Err(())),
            ("we talked about it", Err(())),
        ];
        for (value, want) in cases {
            assert_eq!(parse_stage(value), *want, "{value:?}");
        }
    }

    #[test]
    fn a_value_keeps_the_dashes_the_sender_typed() {
        let labels = Labels::new(std::iter::empty());
        assert_eq!(
            labels.match_line("Name of adult at risk \u{2013} Alex Testperson\u{2013}Smith"),
            Some(("adult_name".to_string(), "Alex Testperson\u{2013}Smith".to_string()))
        );
        assert_eq!(
            labels.match_line("\u{2013} Stage: 2"),
            Some(("stage".to_string(), "2".to_string()))
        );
    }

    #[test]
    fn a_short_last_field_does_not_take_the_sign_off_under_it() {
        let labels = Labels::new(std::iter::empty());
        let parsed = parse_record(
            "Name of adult at risk: Alex Testperson\nSummary of concern: The enquiry was closed.\n\nRisks remain.\nWhat the disagreement is about: roles and responsibilities\n\nNia\n",
            &labels,
        );
        assert_eq!(parsed.record.theme.as_deref(), Some("roles and responsibilities"));
        assert_eq!(
            parsed.record.summary.as_deref(),
            Some("The enquiry was closed.\n\nRisks remain.")
        );
    }

    /// The straightforward reading `match_line` must agree with: every split, each prefix normalised.
    fn match_line_oracle(labels: &Labels, line: &str) -> Option<(String, String)> {
        let trimmed = strip_numbering(
            line.trim()
                .trim_start_matches(['*', '•', '-', '\u{2013}', '\u{2014}', '>', ' '])
                .trim_start(),
        );
        let mut splits: Vec<(usize, usize)> = vec![(trimmed.len(), 0)];
        for sep in [":", "\t", "|", " - ", " \u{2013} ", " \u{2014} ", "=", "?", ". "] {
            splits.extend(trimmed.match_indices(sep).map(|(i, m)| (i, m.len())));
        }
        splits.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (i, len) in splits {
            let norm = normalise_label(&trimmed[..i]);
            if let Some(key) = labels.entries.get(&norm).filter(|_| !norm.is_empty()) {
                let value = trimmed
                    .get(i + len..)
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches([':', '\t', '|', ' '])
                    .trim();
                return Some((key.clone(), value.to_string()));
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn match_line_agrees_with_the_oracle(
            label in 0..COMMON_LABELS.len(),
            lead in "[ *•>\t-]{0,3}",
            upper in proptest::bool::ANY,
            sep in proptest::sample::select(vec![":", " : ", "\t", " | ", " - ", " – ", "=", "?", ". ", " ", ""]),
            value in "[A-Za-z0-9 .:?@–-]{0,30}",
        ) {
            let labels = Labels::new(std::iter::empty());
            let mut l = COMMON_LABELS[label].1.to_string();
            if upper {
                l = l.to_uppercase();
            }
            let line = format!("{lead}{l}{sep}{value}");
            proptest::prop_assert_eq!(labels.match_line(&line), match_line_oracle(&labels, &line), "{:?}", line);
        }

        #[test]
        fn match_line_agrees_on_any_text(line in "[A-Za-z :\t|=?.*•>’–-]{0,60}") {
            let labels = Labels::new(std::iter::empty());
            proptest::prop_assert_eq!(labels.match_line(&line), match_line_oracle(&labels, &line));
        }
    }
}
