//! Open, then ask (DESIGN.md, "Reading a record"): the four things a careful reader needs before a case can
//! open, and the rest of the board's form, asked for field by field once it has.
//!
//! The four essentials are the same at every board: who raised the disagreement (the form, or the From
//! address), who it is with (a person or an agency), what it is about, and the adult (a name, an NHS
//! number, or initials with a date of birth). Anything else the board's form asks for is not a reason to
//! refuse: the acknowledgement lists it and the sender replies UPDATE. Pure: record in, lists out.

use super::case::Record;
use super::policy::Form;

/// One of the four essentials that a record lacks, said so its sender knows what to add.
pub fn missing(record: &Record, sender_email: &str) -> Vec<String> {
    let mut out = Vec::new();
    if record.get("escalating_email").is_none()
        && record.get("escalating_name").is_none()
        && sender_email.trim().is_empty()
    {
        out.push("It does not say who is raising the disagreement: give your name, agency and email.".to_string());
    }
    if !names_other_party(record) {
        out.push(
            "It does not say who the disagreement is with: give the other professional's name and agency, and their email if you have it."
                .to_string(),
        );
    }
    let about = record.get("summary").or_else(|| record.get("theme"));
    if about.is_none_or(|a| says_nothing(&a)) {
        out.push(
            "It does not say what the disagreement is about: give a few lines on what you disagree about and why."
                .to_string(),
        );
    }
    if !identifies_adult(record) {
        out.push(
            "It does not say who the adult at risk is: give their name, or their NHS number, or their initials and date of birth.".to_string(),
        );
    }
    out
}

/// Whether `value` says nothing yet: "see attached", "details to follow", "as discussed", "TBC", "n/a".
pub fn says_nothing(value: &str) -> bool {
    let v = value.trim().to_lowercase();
    let v = v.trim_matches(|c: char| !c.is_alphanumeric());
    // Said alone: the whole value.
    const ALONE: &[&str] = &[
        "see attached",
        "attached",
        "see below",
        "as discussed",
        "details to follow",
        "to follow",
        "tbc",
        "tba",
        "n/a",
        "na",
        "unknown",
        "not known",
        "withheld",
        "pending",
        "none",
        "will send",
        "will follow",
    ];
    // Said first, whatever follows: "As discussed with Joanne on the phone", "Details to follow tomorrow".
    const OPENING: &[&str] = &[
        "see attached",
        "as discussed",
        "details to follow",
        "will send",
        "see the attached",
    ];
    v.is_empty()
        || ALONE.contains(&v)
        || (v.split_whitespace().count() <= 12 && OPENING.iter().any(|e| v.starts_with(&format!("{e} "))))
}

/// Whether the record says who the disagreement is with: a person or an agency.
pub fn names_other_party(record: &Record) -> bool {
    record.get("other_name").is_some()
        || record.get("other_agency").is_some()
        || record.get("other_email").is_some_and(|e| e.contains('@'))
}

/// Whether the record identifies the adult: a name (more than initials), an NHS number, or initials with a
/// date of birth.
pub fn identifies_adult(record: &Record) -> bool {
    if record.get("nhs_number").is_some() {
        return true;
    }
    let Some(name) = record.get("adult_name").filter(|n| !says_nothing(n)) else {
        return false;
    };
    let has_dob = record.get("date_of_birth").is_some();
    // "J.S.", "JS", "J S": initials alone need a date of birth beside them.
    let only_initials = name
        .split(|c: char| c.is_whitespace() || c == '.')
        .filter(|w| !w.is_empty())
        .all(|w| w.chars().count() <= 2 && w.chars().all(char::is_uppercase));
    !only_initials || has_dob
}

/// The form's fields that the record leaves empty, as (key, label), in the form's order: what the
/// acknowledgement asks for. Fields the bot fills itself (the stage, the date) and the outcome (known only
/// at the end) are not asked for.
pub fn to_ask(form: &Form, record: &Record) -> Vec<(String, String)> {
    const NOT_ASKED: &[&str] = &[
        "stage",
        "outcome",
        "time_taken",
        "date",
        "date_resolved",
        "notes",
        "copied_to",
    ];
    let mut out: Vec<(String, String)> = Vec::new();
    for f in &form.fields {
        if NOT_ASKED.contains(&f.key.as_str()) || f.key.starts_with("date") {
            continue;
        }
        // What it is about, told at length, needs no theme in a few words.
        let told = f.key == "theme" && record.get("summary").is_some();
        if record.get(&f.key).is_none() && !told && !out.iter().any(|(k, _)| k == &f.key) {
            out.push((f.key.clone(), f.label.trim_end_matches(':').trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pairs: &[(&str, &str)]) -> Record {
        let mut r = Record::default();
        for (k, v) in pairs {
            match *k {
                "adult_name" => r.adult_name = Some(v.to_string()),
                "nhs_number" => r.nhs_number = Some(v.to_string()),
                "other_name" => r.other_name = Some(v.to_string()),
                "other_agency" => r.other_agency = Some(v.to_string()),
                "summary" => r.summary = Some(v.to_string()),
                k => {
                    r.extra.insert(k.to_string(), v.to_string());
                }
            }
        }
        r
    }

    #[test]
    fn four_essentials_open_a_case() {
        let r = record(&[
            ("adult_name", "Doreen Haworth"),
            ("other_agency", "Westshire Council"),
            ("summary", "Closing the enquiry too early"),
        ]);
        assert!(missing(&r, "nia.nurse@nhs.net").is_empty());
    }

    #[test]
    fn each_missing_essential_is_named() {
        let r = record(&[("summary", "Closing the enquiry too early")]);
        let m = missing(&r, "nia.nurse@nhs.net");
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("who the disagreement is with"));
        assert!(m[1].contains("who the adult at risk is"));
    }

    #[test]
    fn initials_need_a_date_of_birth() {
        let base = [("other_name", "Sam Social"), ("summary", "x")];
        let mut r = record(&base);
        r.adult_name = Some("J.S.".into());
        assert!(!identifies_adult(&r));
        r.extra.insert("date_of_birth".into(), "01/02/1940".into());
        assert!(identifies_adult(&r));
        r.adult_name = Some("Jo S".into());
        r.extra.clear();
        assert!(identifies_adult(&r));
    }
}
