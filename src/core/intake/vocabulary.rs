//! Labels by meaning: a label never seen before ("Person at risk:", "Their organisation:", "Disagreeing
//! with:", "Sumary of isue:") is read by the words in it, not looked up in a list of phrases.
//!
//! The board's own labels and the common variants are matched first, exactly ([`super::Labels`]); only a
//! line none of them matches comes here. Its label is cut into words, each word stemmed (plural and
//! possessive endings dropped) and compared with a small vocabulary of the words people use for each
//! field, allowing one typing slip in a longer word. Then, in order:
//! - an NHS number or a date of birth is named by its own words;
//! - a party ("raised with", "their", "disagree with", "receiving" / "my", "raised by", "referrer") with a
//!   part (name, agency, email, phone, role) gives that party's field, or the party as "name, agency, email";
//! - the adult ("person at risk", "service user", "client", "patient") gives the adult's name;
//! - otherwise the first word that belongs to a field decides: risk, stage, the adult's views, evidence,
//!   copied to, the summary, the outcome wanted, the theme, notes.
//!
//! Pure and linear: a label is at most [`MAX_WORDS`] words.

/// A label longer than this is a sentence, not a label.
pub const MAX_WORDS: usize = 8;
/// Nor is a label longer than this many characters.
const MAX_CHARS: usize = 60;

/// A field a word points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cat {
    Nhs,
    Dob,
    Risk,
    Stage,
    Views,
    Evidence,
    Copied,
    Summary,
    Outcome,
    Theme,
    Notes,
    Adult,
    Other,
    Mine,
    Name,
    Agency,
    Email,
    Phone,
    Role,
}

/// Stemmed words and the field each points to.
const WORDS: &[(&str, Cat)] = &[
    ("nhs", Cat::Nhs),
    ("birth", Cat::Dob),
    ("dob", Cat::Dob),
    ("born", Cat::Dob),
    ("risk", Cat::Risk),
    ("danger", Cat::Risk),
    ("harm", Cat::Risk),
    ("immediate", Cat::Risk),
    ("urgent", Cat::Risk),
    ("unsafe", Cat::Risk),
    ("safety", Cat::Risk),
    ("stage", Cat::Stage),
    ("level", Cat::Stage),
    ("tier", Cat::Stage),
    ("view", Cat::Views),
    ("wish", Cat::Views),
    ("wishe", Cat::Views),
    ("voice", Cat::Views),
    ("feeling", Cat::Views),
    ("evidence", Cat::Evidence),
    ("supporting", Cat::Evidence),
    ("chronology", Cat::Evidence),
    ("attached", Cat::Evidence),
    ("copied", Cat::Copied),
    ("copy", Cat::Copied),
    ("cc", Cat::Copied),
    ("cc'd", Cat::Copied),
    ("circulated", Cat::Copied),
    ("nature", Cat::Summary),
    ("reason", Cat::Summary),
    ("about", Cat::Summary),
    ("disagreement", Cat::Summary),
    ("dispute", Cat::Summary),
    ("concern", Cat::Summary),
    ("issue", Cat::Summary),
    ("detail", Cat::Summary),
    ("description", Cat::Summary),
    ("summary", Cat::Summary),
    ("background", Cat::Summary),
    ("problem", Cat::Summary),
    ("matter", Cat::Summary),
    ("why", Cat::Summary),
    ("situation", Cat::Summary),
    ("grounds", Cat::Summary),
    ("rationale", Cat::Summary),
    ("outcome", Cat::Outcome),
    ("resolution", Cat::Outcome),
    ("sought", Cat::Outcome),
    ("seeking", Cat::Outcome),
    ("desired", Cat::Outcome),
    ("hoped", Cat::Outcome),
    ("want", Cat::Outcome),
    ("asking", Cat::Outcome),
    ("request", Cat::Outcome),
    ("theme", Cat::Theme),
    ("category", Cat::Theme),
    ("type", Cat::Theme),
    ("topic", Cat::Theme),
    ("area", Cat::Theme),
    ("note", Cat::Notes),
    ("additional", Cat::Notes),
    ("comment", Cat::Notes),
    ("else", Cat::Notes),
    ("adult", Cat::Adult),
    ("client", Cat::Adult),
    ("patient", Cat::Adult),
    ("resident", Cat::Adult),
    ("tenant", Cat::Adult),
    ("individual", Cat::Adult),
    ("user", Cat::Adult),
    ("vulnerable", Cat::Adult),
    ("other", Cat::Other),
    ("their", Cat::Other),
    ("them", Cat::Other),
    ("they", Cat::Other),
    ("receiving", Cat::Other),
    ("challenged", Cat::Other),
    ("recipient", Cat::Other),
    ("respondent", Cat::Other),
    ("opposing", Cat::Other),
    ("counterpart", Cat::Other),
    ("my", Cat::Mine),
    ("me", Cat::Mine),
    ("your", Cat::Mine),
    ("referrer", Cat::Mine),
    ("referring", Cat::Mine),
    ("reporter", Cat::Mine),
    ("escalating", Cat::Mine),
    ("initiating", Cat::Mine),
    ("challenger", Cat::Mine),
    ("challenging", Cat::Mine),
    ("raising", Cat::Mine),
    ("sender", Cat::Mine),
    ("originator", Cat::Mine),
    ("name", Cat::Name),
    ("agency", Cat::Agency),
    ("organisation", Cat::Agency),
    ("organization", Cat::Agency),
    ("org", Cat::Agency),
    ("service", Cat::Agency),
    ("employer", Cat::Agency),
    ("team", Cat::Agency),
    ("trust", Cat::Agency),
    ("council", Cat::Agency),
    ("provider", Cat::Agency),
    ("company", Cat::Agency),
    ("email", Cat::Email),
    ("e-mail", Cat::Email),
    ("mail", Cat::Email),
    ("phone", Cat::Phone),
    ("telephone", Cat::Phone),
    ("tel", Cat::Phone),
    ("mobile", Cat::Phone),
    ("role", Cat::Role),
    ("job", Cat::Role),
    ("title", Cat::Role),
    ("position", Cat::Role),
    ("designation", Cat::Role),
    ("rank", Cat::Role),
];

/// Verbs and nouns of disagreeing that, followed by "with", name the other party ("Disagreeing with",
/// "Dispute with", "Raised with", "Escalated to"); followed by "by", the person raising it.
const PARTY_VERBS: &[&str] = &[
    "disagree",
    "disagreeing",
    "disagreement",
    "dispute",
    "raised",
    "conflict",
    "challenge",
    "issue",
    "concern",
    "escalated",
    "escalating",
    "referred",
    "professional",
    "practitioner",
    "worker",
    "person",
];

/// `w` lower-cased without its possessive or plural ending: "adult's" and "adults" are "adult".
fn stem(w: &str) -> String {
    let w = w.to_lowercase().replace(['\u{2019}', '\u{2018}'], "'");
    let w = w.strip_suffix("'s").or_else(|| w.strip_suffix("s'")).unwrap_or(&w);
    if w.len() > 4 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        return w.trim_end_matches('s').to_string();
    }
    w.to_string()
}

/// Whether `a` and `b` are at most one edit apart (a letter added, dropped, changed, or two swapped).
fn near(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a == b {
        return true;
    }
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (a.get(prefix..).unwrap_or_default(), b.get(prefix..).unwrap_or_default());
    match (ra.len(), rb.len()) {
        (x, y) if x == y => {
            // One changed, or two swapped.
            ra.get(1..) == rb.get(1..)
                || (x >= 2 && ra.first() == rb.get(1) && ra.get(1) == rb.first() && ra.get(2..) == rb.get(2..))
        }
        (x, y) if x > y => ra.get(1..) == Some(rb),
        _ => rb.get(1..) == Some(ra),
    }
}

/// The field `word` (stemmed) points to, allowing one slip in a word of five letters or more.
fn category(word: &str) -> Option<Cat> {
    if let Some((_, c)) = WORDS.iter().find(|(w, _)| *w == word) {
        return Some(*c);
    }
    if word.chars().count() >= 5 {
        return WORDS
            .iter()
            .filter(|(w, _)| w.chars().count() >= 5)
            .find(|(w, _)| near(w, word))
            .map(|(_, c)| *c);
    }
    None
}

/// The field key a label reads as, by meaning, if it reads as one. `label` is the text before the
/// separator, as written.
pub fn key_for(label: &str) -> Option<&'static str> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_CHARS || label.contains(['@', '/']) && label.contains("://") {
        return None;
    }
    let words: Vec<String> = label
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(stem)
        .collect();
    if words.is_empty() || words.len() > MAX_WORDS || words.iter().any(|w| w.chars().any(|c| c.is_ascii_digit())) {
        return None;
    }
    // Mail headers of a forwarded or quoted message are not the form's labels.
    if words.len() == 1
        && matches!(
            words[0].as_str(),
            "from" | "to" | "sent" | "date" | "subject" | "cc" | "bcc"
        )
    {
        return None;
    }
    // Words that make a label about something no field holds ("My pronouns", "Our ref", "Ward").
    if words.iter().any(|w| {
        matches!(
            w.as_str(),
            "pronoun" | "pronouns" | "ref" | "reference" | "ward" | "bed"
        )
    }) {
        return None;
    }
    let mut cats: Vec<Option<Cat>> = words.iter().map(|w| category(w)).collect();
    // "Person at risk", "adult at risk": the adult, not a question about risk.
    for k in 1..words.len() {
        if words[k] == "risk" && words[k - 1] == "at" {
            cats[k] = None;
        }
        // "Service user": the adult, not an agency.
        if words[k] == "user" && words[k - 1] == "service" {
            cats[k - 1] = None;
        }
    }
    let has = |c: Cat| cats.contains(&Some(c));
    if has(Cat::Nhs) {
        return Some("nhs_number");
    }
    if has(Cat::Dob) || words.windows(2).any(|p| p[0] == "d" && p[1] == "o") {
        return Some("date_of_birth");
    }
    // The side of the disagreement the label is about: "with" after a word of disagreeing or a person,
    // or "to" after "escalated"/"referred", is the other party; "by" after one is the person raising it.
    let mut side = None;
    for (k, w) in words.iter().enumerate() {
        // "Disagreement with", "Dissagreement with" (one slip forgiven), "I disagree with".
        let after_verb = k > 0
            && words.get(k - 1).is_some_and(|p| {
                PARTY_VERBS.contains(&p.as_str())
                    || p == "i"
                    || p == "we"
                    || (p.chars().count() >= 6 && PARTY_VERBS.iter().any(|v| v.chars().count() >= 6 && near(v, p)))
            });
        match w.as_str() {
            "with" if after_verb || k == 0 => side = side.or(Some(Cat::Other)),
            "to" if k > 0 && matches!(words[k - 1].as_str(), "escalated" | "referred" | "sent" | "raised") => {
                side = side.or(Some(Cat::Other))
            }
            "by" if after_verb || k == 0 => side = side.or(Some(Cat::Mine)),
            _ => {}
        }
    }
    let side = side.or_else(|| {
        cats.iter()
            .flatten()
            .find(|c| matches!(c, Cat::Other | Cat::Mine))
            .copied()
    });
    let part = cats
        .iter()
        .flatten()
        .find(|c| matches!(c, Cat::Name | Cat::Agency | Cat::Email | Cat::Phone | Cat::Role))
        .copied();
    let at_risk = words.windows(2).any(|p| p[0] == "at" && p[1] == "risk");
    if has(Cat::Risk) && part.is_none() && !has(Cat::Views) {
        return Some("immediate_risk");
    }
    // "Their view", "Other agency's position": what the other side thinks is part of the summary.
    let opinion = has(Cat::Views)
        || words.iter().any(|w| {
            matches!(
                w.as_str(),
                "opinion" | "decision" | "position" | "response" | "reply" | "answer" | "stance" | "reasoning"
            )
        });
    if let Some(side) = side {
        if opinion && part.is_none() {
            return Some("summary");
        }
        let first_field = cats.iter().flatten().find(|c| {
            matches!(
                c,
                Cat::Summary | Cat::Risk | Cat::Outcome | Cat::Evidence | Cat::Copied | Cat::Stage
            )
        });
        // "Reason for disagreement with Adult Social Care": the summary's word comes before the party.
        let summary_first = words
            .first()
            .and_then(|w| category(w))
            .is_some_and(|c| matches!(c, Cat::Summary) && !PARTY_VERBS.contains(&words[0].as_str()));
        if summary_first || (part.is_none() && first_field.is_some_and(|c| !matches!(c, Cat::Summary))) {
            return field_by_first(&cats);
        }
        let mine = side == Cat::Mine;
        return Some(match (mine, part) {
            (true, Some(Cat::Name)) => "escalating_name",
            (true, Some(Cat::Agency)) => "escalating_agency",
            (true, Some(Cat::Email)) => "escalating_email",
            (true, Some(Cat::Phone)) => "escalating_phone",
            (true, Some(Cat::Role)) => "escalating_job_title",
            (true, _) => "@escalating",
            (false, Some(Cat::Name)) => "other_name",
            (false, Some(Cat::Agency)) => "other_agency",
            (false, Some(Cat::Email)) => "other_email",
            (false, Some(Cat::Phone)) => "other_phone",
            (false, Some(Cat::Role)) => "other_job_title",
            (false, _) => "@other",
        });
    }
    if has(Cat::Adult) || at_risk && !has(Cat::Summary) {
        if opinion {
            return Some("adult_views");
        }
        return match part {
            None | Some(Cat::Name) => Some("adult_name"),
            _ => None,
        };
    }
    field_by_first(&cats)
}

/// The field of the first word that names one (risk, stage, views, evidence, copied to, summary, outcome,
/// theme, notes).
fn field_by_first(cats: &[Option<Cat>]) -> Option<&'static str> {
    cats.iter().flatten().find_map(|c| match c {
        Cat::Risk => Some("immediate_risk"),
        Cat::Stage => Some("stage"),
        Cat::Views => Some("adult_views"),
        Cat::Evidence => Some("evidence"),
        Cat::Copied => Some("copied_to"),
        Cat::Summary => Some("summary"),
        Cat::Outcome => Some("outcome"),
        Cat::Theme => Some("theme"),
        Cat::Notes => Some("notes"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_never_listed_are_read_by_their_words() {
        let mut wrong = Vec::new();
        for (label, key) in [
            ("Person at risk", "adult_name"),
            ("Service user", "adult_name"),
            ("Client", "adult_name"),
            ("Patient name", "adult_name"),
            ("Name of the adult", "adult_name"),
            ("Their organisation", "other_agency"),
            ("Their name", "other_name"),
            ("Raised with", "@other"),
            ("Disagreeing with", "@other"),
            ("Disagreement with", "@other"),
            ("Professional I disagree with", "@other"),
            ("Other professional's email", "other_email"),
            ("Receiving manager name", "other_name"),
            ("Raised by", "@escalating"),
            ("My organisation", "escalating_agency"),
            ("Referrer's phone", "escalating_phone"),
            ("Nature of the disagreement", "summary"),
            ("What the disagreement is about", "summary"),
            ("What's it about", "summary"),
            ("Reason for disagreement with Adult Social Care", "summary"),
            ("Background", "summary"),
            ("Sumary of isue", "summary"),
            ("Agnecy they work for", "other_agency"),
            ("Is the adult at immediate risk", "immediate_risk"),
            ("Risk now", "immediate_risk"),
            ("Adult's wishes", "adult_views"),
            ("What the person wants", "outcome"),
            ("Copied in", "copied_to"),
            ("Patient's NHS no", "nhs_number"),
            ("D.O.B", "date_of_birth"),
            ("Outcome sought", "outcome"),
            ("Their view", "summary"),
            ("Their response", "summary"),
            ("Name of person raising concern", "escalating_name"),
        ] {
            if key_for(label) != Some(key) {
                wrong.push(format!("{label}: {:?}, expected {key}", key_for(label)));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn sentences_and_unknown_words_are_not_labels() {
        for label in [
            "I spoke to her on Monday and she said",
            "Hello",
            "Thanks",
            "The GP",
            "Sent 4 January",
            "see https://example.org",
            "My pronouns",
        ] {
            assert_eq!(key_for(label), None, "{label}");
        }
    }

    #[test]
    fn one_slip_is_forgiven_in_longer_words() {
        assert!(near("agency", "agnecy"));
        assert!(near("summary", "sumary"));
        assert!(near("organisation", "organsation"));
        assert!(!near("risk", "disk") || "risk".len() < 5);
        assert!(!near("summary", "sunday"));
    }
}
