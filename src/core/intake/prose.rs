//! A record written as prose: "I'm writing about my patient Mrs Doreen Haworth (NHS 999 …). I disagree with
//! Kelly Dunne, Team Manager at Trafford Council Adult Social Care (kelly.dunne@trafford.gov.uk), about …
//! I don't think she is at immediate risk today."
//!
//! Where the labelled reading left an essential empty, [`read`] looks for it in the sentences: the adult
//! ("Mr/Mrs/Ms X", "my patient / client / service user X", a name beside an NHS number or date of birth),
//! the other party ("disagreement / dispute / disagree with NAME, ROLE at AGENCY (email)", or the agency
//! whose "view" or "position" the summary sets against the sender's), the summary (the sender's own
//! paragraphs), and immediate risk stated or denied. Pure, and linear: each line is scanned a bounded
//! number of times.

use super::values::{clean_agency, is_disclaimer};
use super::{find_emails, is_job_title, is_organisation, is_sign_off, without_job_title};
use crate::core::case::Record;

/// Honorifics that name the adult in prose ("Dr" names professionals, so it is not one).
const HONORIFICS: &[&str] = &["Mr", "Mrs", "Ms", "Miss", "Mx", "Mr.", "Mrs.", "Ms.", "Mx."];

/// Words after which the adult's name follows: "my patient Doreen Haworth", "regarding Doreen Haworth".
const ADULT_LEADS: &[&str] = &[
    "patient",
    "client",
    "user",
    "resident",
    "tenant",
    "regarding",
    "concerning",
    "re",
    "re:",
    "about",
    "for",
];

/// Words that close a name: conjunctions and the like, written in lower case.
fn is_name_word(w: &str) -> bool {
    let w = w.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':' | '(' | ')' | '"' | '\'' | '\u{2019}'));
    let mut chars = w.chars();
    let first_upper = chars.next().is_some_and(char::is_uppercase);
    first_upper
        && w.chars().count() >= 2
        && w.chars()
            .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '\u{2019}'))
        && !w.chars().all(char::is_uppercase)
        && !matches!(
            w,
            "NHS"
                | "I"
                | "The"
                | "She"
                | "He"
                | "They"
                | "We"
                | "Her"
                | "His"
                | "Their"
                | "This"
                | "It"
                | "Council"
                | "Trust"
                | "Team"
                | "Your"
                | "My"
                | "Our"
                | "Escalation"
                | "Disagreement"
        )
}

/// Up to three capitalised words starting at `words[k]`, as a name.
fn name_at(words: &[&str], k: usize) -> Option<String> {
    let mut out = Vec::new();
    // "my patient Mrs Doreen Haworth": the name without the honorific.
    let k = if words
        .get(k)
        .is_some_and(|w| HONORIFICS.contains(w) || *w == "Dr" || *w == "Dr.")
    {
        k + 1
    } else {
        k
    };
    for w in words.iter().skip(k).take(3) {
        if !is_name_word(w) {
            break;
        }
        let ends = w.ends_with([',', '.', ';', ':', ')']) || w.contains('(');
        out.push(w.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':' | '(' | ')' | '"')));
        if ends {
            break;
        }
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// The adult named in prose, if any: the fullest "Mr/Mrs/Ms X Y", then "my patient X Y", then a name
/// directly before an NHS number or date of birth. `not` are names already known as the professionals.
pub fn adult_in(text: &str, not: &[String]) -> Option<String> {
    let is_professional = |n: &str| {
        not.iter()
            .any(|p| !p.is_empty() && (p.contains(n) || n.contains(p.as_str())))
    };
    let mut best: Option<String> = None;
    for line in text.lines().take(400) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (k, w) in words.iter().enumerate() {
            let lead = w.trim_end_matches([',', ':']).to_lowercase();
            let found = if HONORIFICS.contains(w) {
                name_at(&words, k + 1)
            } else if ADULT_LEADS.contains(&lead.as_str())
                && (lead != "about" && lead != "for" || words.get(k + 1).is_some_and(|n| is_name_word(n)))
            {
                // "about Doreen Haworth (NHS …)" names; "about the discharge" and "about Adult Social Care's
                // decision" do not: a name of two words or more that is no organisation's.
                name_at(&words, k + 1).filter(|n| n.split_whitespace().count() >= 2 && !is_organisation(n))
            } else {
                None
            };
            let Some(name) = found.filter(|n| !is_professional(n)) else {
                continue;
            };
            let better = best
                .as_ref()
                .is_none_or(|b| name.split_whitespace().count() > b.split_whitespace().count());
            if better {
                best = Some(name);
            }
        }
        // "Doreen Haworth (NHS 999 …)", "Doreen Haworth, DOB 01/02/1940".
        let lower = line.to_lowercase();
        for marker in [
            "(nhs",
            ", nhs",
            " nhs no",
            " nhs number",
            "(dob",
            ", dob",
            "(d.o.b",
            "(born",
            ", born",
        ] {
            if let Some(at) = lower.find(marker) {
                let before: Vec<&str> = line.get(..at).unwrap_or_default().split_whitespace().collect();
                let start = before.len().saturating_sub(3);
                let tail: Vec<&str> = before
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .copied()
                    .skip_while(|w| !is_name_word(w))
                    .collect();
                if tail.len() >= 2 && tail.iter().all(|w| is_name_word(w)) {
                    let name = tail.join(" ").trim_matches([',', '.']).to_string();
                    if !is_professional(&name) && best.as_ref().is_none_or(|b| b.split_whitespace().count() < 2) {
                        best = Some(name);
                    }
                }
            }
        }
    }
    best
}

/// Initials and a date of birth written together ("pt is JH dob 14/07/1961", "J.H. (DOB 14/07/1961)"):
/// (initials, date of birth as written).
fn initials_with_birth(text: &str) -> Option<(String, String)> {
    for line in text.lines().take(400) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (k, w) in words.iter().enumerate() {
            let letters: String = w.chars().filter(|c| c.is_alphabetic()).collect();
            let initials = (2..=3).contains(&letters.chars().count())
                && letters.chars().all(char::is_uppercase)
                && w.chars().all(|c| c.is_alphabetic() || matches!(c, '.' | ','));
            if !initials {
                continue;
            }
            let next = words
                .get(k + 1)
                .map(|n| n.to_lowercase().trim_matches(['(', ':', ',']).to_string());
            if !next.is_some_and(|n| matches!(n.as_str(), "dob" | "d.o.b" | "d.o.b." | "born" | "b.")) {
                continue;
            }
            let date = words
                .get(k + 2)
                .map(|d| d.trim_matches([')', ',', '.', ':']).to_string());
            if let Some(d) = date.filter(|d| d.chars().filter(char::is_ascii_digit).count() >= 4) {
                return Some((letters, d));
            }
        }
    }
    None
}

/// Phrases after which the other party is named.
const WITH: &[&str] = &[
    "disagreement is with ",
    "dispute is with ",
    "escalation is with ",
    "disagreement with ",
    "disagreeing with ",
    "disagree with ",
    "dispute with ",
    "disputing with ",
    "conflict with ",
    "professional disagreement with ",
];

/// Where the clause naming the other party ends: the end of the sentence, or a word that starts what it is
/// about.
fn clause_end(s: &str) -> usize {
    let mut depth = 0i32;
    // A clause naming someone is short: the scan is bounded, so that reading stays linear.
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n >= 400 {
            return i;
        }
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' | '!' | '?' | ';' | '\n' if depth <= 0 => {
                // "Dr." and an address's dots are not the end of a sentence.
                let next = s.get(i + 1..).and_then(|r| r.chars().next());
                if c != '.' || next.is_none_or(char::is_whitespace) {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The other party as written after "disagreement with": (name, agency, email).
fn party_after(clause: &str) -> (Option<String>, Option<String>, Option<String>) {
    let email = find_emails(clause).into_iter().next();
    // What it is about starts the next part: "with X about …", "with X regarding …", "with X over …".
    let mut c = clause.to_string();
    for stop in [
        " about ",
        " regarding ",
        " over ",
        " because ",
        " as ",
        " who ",
        " which ",
        " that ",
        " since ",
        " on the ",
        " re ",
    ] {
        if let Some(i) = c.find(stop) {
            c.truncate(i); // byte-slice: `i` is where `find` matched, a character boundary
        }
    }
    let mut c = c.replace("mailto:", "");
    if let Some(e) = &email {
        c = c
            .replace(&format!("({e})"), "")
            .replace(&format!("<{e}>"), "")
            .replace(e.as_str(), "");
    }
    let c = c.replace("()", "").replace("<>", "");
    let c = c.trim().trim_end_matches([',', ' ', '-']);
    let words: Vec<&str> = c.split_whitespace().collect();
    // A person: capitalised words first (titles like "Dr" allowed before them).
    let skip = usize::from(words.first().is_some_and(|w| {
        matches!(
            w.trim_end_matches('.'),
            "Dr" | "Mr" | "Mrs" | "Ms" | "Miss" | "Mx" | "Prof"
        )
    }));
    let name = name_at(&words, skip).filter(|n| n.split_whitespace().count() >= 2);
    // "Kingswood Lane Surgery (Dr Gail Summers)", "Oakwood Lodge Care Home (Paula Greaves)": an
    // organisation first, the person in the bracket.
    if let Some(org) = name.as_ref().filter(|n| is_organisation(n)) {
        let head = c.split('(').next().unwrap_or_default().trim().trim_end_matches(',');
        let agency = clean_agency(head);
        let person =
            c.split_once('(')
                .and_then(|(_, r)| r.split(')').next())
                .and_then(|inner| {
                    let ws: Vec<&str> = inner.split_whitespace().collect();
                    let skip = usize::from(ws.first().is_some_and(|w| {
                        matches!(w.trim_end_matches('.'), "Dr" | "Mr" | "Mrs" | "Ms" | "Miss" | "the")
                    }));
                    name_at(&ws, skip)
                })
                .filter(|n| n.split_whitespace().count() >= 2 && !is_organisation(n));
        let agency = if agency.is_empty() { org.clone() } else { agency };
        return (person, Some(agency), email);
    }
    let rest = match &name {
        Some(n) => c
            .get(c.find(n.as_str()).map_or(0, |i| i + n.len())..)
            .unwrap_or_default(),
        None => c,
    };
    let rest = rest.trim().trim_start_matches([',', '-', '\u{2013}', ' ']);
    // "Team Manager at Trafford Council", "the district nursing team at Wythenshawe", "ASC": the agency is
    // what follows " at ", " of " or " from " after a role, else the rest when it reads as an organisation.
    let agency = ["at ", "of ", "from "]
        .iter()
        .filter_map(|sep| rest.find(&format!(" {sep}")).map(|i| (i, sep.len() + 1)))
        .min_by_key(|(i, _)| *i)
        .map(|(i, len)| rest.get(i + len..).unwrap_or_default())
        .or_else(|| rest.split_once(", ").map(|(_, a)| a))
        .map(str::to_string)
        .or_else(|| (name.is_none() && !rest.is_empty()).then(|| rest.to_string()))
        .or_else(|| (!rest.is_empty() && is_organisation(rest)).then(|| rest.to_string()))
        .map(|a| clean_agency(&without_job_title(a.trim().trim_start_matches("the ").trim())))
        .filter(|a| !a.is_empty() && a.split_whitespace().count() <= 10 && !is_job_title(a));
    (name, agency, email)
}

/// The other party named in a sentence: the first "disagreement with …" clause that names someone.
fn other_in(text: &str) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let lower = text.to_lowercase();
    // Lower-casing keeps byte offsets only for ASCII; elsewhere the match is found again in the text.
    if lower.len() != text.len() {
        return None;
    }
    let mut best = None;
    for phrase in WITH {
        let mut from = 0;
        while let Some(i) = lower.get(from..).and_then(|l| l.find(phrase)) {
            let at = from + i + phrase.len();
            from = at;
            let rest = text.get(at..).unwrap_or_default();
            let clause = rest.get(..clause_end(rest)).unwrap_or_default();
            let found = party_after(clause);
            if found.0.is_some() || found.1.is_some() {
                if best.as_ref().is_none_or(|(b, _)| at < *b) {
                    best = Some((at, found));
                }
                break;
            }
        }
    }
    best.map(|(_, f)| f)
}

/// "Bucks council ASC (Marie Quinn on duty) won't…", "trafford council asc (paul hesketh) say…": an
/// agency with the person in brackets after it, written in a sentence. (name, agency).
fn agency_with_person(text: &str, not: &[String]) -> Option<(String, String)> {
    for sentence in text.split(['.', '\n', '!', '?', ';']) {
        let mut from = 0;
        while let Some(open) = sentence.get(from..).and_then(|r| r.find('(')).map(|i| from + i) {
            from = open + 1;
            // Bounded looks inside the bracket and back before it keep this linear on hostile text.
            let inner: String = sentence
                .get(open + 1..)
                .unwrap_or_default()
                .chars()
                .take(80)
                .take_while(|c| *c != ')')
                .collect();
            let words: Vec<&str> = inner.split_whitespace().collect();
            let [a, b, ..] = words.as_slice() else {
                continue;
            };
            let is_word =
                |w: &str| w.chars().count() >= 2 && w.chars().all(|c| c.is_alphabetic() || c == '-' || c == '\'');
            const NOT_NAMES: &[&str] = &[
                "the",
                "a",
                "an",
                "nhs",
                "dob",
                "aged",
                "age",
                "copied",
                "from",
                "see",
                "via",
                "cc",
                "on",
                "duty",
                "who",
                "which",
                "she",
                "he",
                "they",
                "her",
                "his",
                "our",
                "my",
                "their",
                "not",
                "no",
                "yes",
                "incl",
                "including",
                "also",
                "was",
                "is",
                "has",
                "district",
                "county",
                "borough",
                "ward",
                "team",
                "unit",
                "hub",
                "service",
                "locality",
                "north",
                "south",
                "east",
                "west",
                "central",
                "and",
                "or",
                "in",
                "at",
                "for",
                "to",
                "with",
            ];
            let common = |w: &str| NOT_NAMES.contains(&w.to_lowercase().as_str());
            if !is_word(a) || !is_word(b) || common(a) || common(b) {
                continue;
            }
            let title = |w: &str| {
                let mut cs = w.chars();
                cs.next()
                    .map(|f| f.to_uppercase().collect::<String>() + &cs.as_str().to_lowercase())
                    .unwrap_or_default()
            };
            let name = format!("{} {}", title(a), title(b));
            if not.iter().any(|n| n.contains(&name) || name.contains(n.as_str())) {
                continue;
            }
            // The agency: the words before the bracket, back to a word that starts the clause.
            let before = sentence.get(..open).unwrap_or_default();
            let before = before
                .char_indices()
                .rev()
                .nth(200)
                .and_then(|(i, _)| before.get(i..))
                .unwrap_or(before);
            let ws: Vec<&str> = before.split_whitespace().collect();
            let start = ws
                .iter()
                .rposition(|w| {
                    matches!(
                        w.to_lowercase().trim_matches(','),
                        "re" | "with"
                            | "and"
                            | "but"
                            | "that"
                            | "because"
                            | "as"
                            | "i"
                            | "we"
                            | "by"
                            | "to"
                            | "from"
                            | "of"
                            | "said"
                            | "says"
                    ) || w.ends_with(',')
                })
                .map_or(0, |i| i + 1);
            let agency_words = ws.get(start..).unwrap_or_default();
            if agency_words.is_empty()
                || agency_words.len() > 6
                || agency_words
                    .iter()
                    .any(|w| w.contains('|') || w.chars().any(|c| c.is_ascii_digit()))
            {
                continue;
            }
            let agency = agency_words.join(" ");
            let has_org = is_organisation(&agency)
                || agency_words.iter().any(|w| {
                    w.len() >= 2 && w.chars().all(|c| c.is_ascii_uppercase())
                        || matches!(w.to_lowercase().as_str(), "asc" | "team" | "ward" | "duty" | "cmht")
                });
            if has_org {
                let agency = super::sender::proper_case(&agency);
                return Some((name, agency));
            }
        }
    }
    None
}

/// "TRFT view: …" / "ASC position: …": the agencies whose views a summary sets side by side; the one that
/// is not the sender's own is the other party.
fn agency_by_view(summary: &str, own: &[String]) -> Option<String> {
    let is_own = |a: &str| {
        let a = a.to_lowercase();
        let first = a.split_whitespace().next().unwrap_or_default().to_string();
        a.starts_with("our ")
            || a.starts_with("my ")
            || own.iter().any(|o| {
                let o = o.to_lowercase();
                let initials: String = o
                    .split_whitespace()
                    .filter(|w| !matches!(*w, "nhs" | "of" | "and" | "&"))
                    .filter_map(|w| w.chars().next())
                    .collect();
                let initials_all: String = o.split_whitespace().filter_map(|w| w.chars().next()).collect();
                o.contains(&a) || a.contains(&o) || first == initials || first == initials_all
            })
    };
    let mut candidates = Vec::new();
    for line in summary.split(['\n', '.', ';']) {
        let Some((label, _)) = line.split_once(':') else {
            continue;
        };
        let l = label.trim();
        let lower = l.to_lowercase();
        for w in [" view", " position", " opinion", " stance"] {
            if let Some(agency) = lower.strip_suffix(w).and_then(|_| l.get(..l.len() - w.len())) {
                let agency = agency.trim();
                let words = agency.split_whitespace().count();
                let first_upper = agency
                    .split_whitespace()
                    .next()
                    .is_some_and(|f| f.chars().all(|c| c.is_uppercase() || c.is_ascii_digit()) && f.len() >= 2);
                if (1..=4).contains(&words) && (first_upper || is_organisation(agency)) && !is_own(agency) {
                    candidates.push(agency.to_string());
                }
            }
        }
    }
    (candidates.len() == 1).then(|| candidates.remove(0))
}

/// The sender's own paragraphs: the text without the greeting, the sign-off and what follows it, and any
/// disclaimer. At most about two thousand characters.
fn own_paragraphs(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let t = line.trim();
        let lower = t.to_lowercase();
        if k < 3
            && kept.iter().all(|l| l.trim().is_empty())
            && (lower.starts_with("dear ")
                || lower.starts_with("hi")
                || lower.starts_with("hello")
                || lower.starts_with("good morning")
                || lower.starts_with("good afternoon"))
            && t.chars().count() < 40
        {
            continue;
        }
        if is_sign_off(t)
            || crate::core::reply::is_sign_off_line(t)
            || is_disclaimer(t)
            || t == "--"
            || t.starts_with('>')
            || super::is_mobile_footer(t)
        {
            break;
        }
        kept.push(line);
    }
    let joined = kept.join("\n");
    let joined = joined.trim();
    let cut: String = joined.chars().take(2000).collect();
    cut
}

/// Immediate risk stated or denied in a sentence: "I don't think she is at immediate risk today" (no),
/// "he is at immediate risk" (yes).
fn risk_in(text: &str) -> Option<bool> {
    let lower = text.to_lowercase().replace('\u{2019}', "'");
    for sentence in lower.split(['.', '\n', '!', ';']) {
        let Some(at) = [
            "immediate risk",
            "immediate danger",
            "immediate harm",
            "imminent risk",
            "immediately at risk",
        ]
        .iter()
        .filter_map(|p| sentence.find(p))
        .min() else {
            continue;
        };
        let before = sentence.get(..at).unwrap_or_default();
        if before.contains(" if ") || before.starts_with("if ") || before.contains("whether") {
            continue;
        }
        let denied = ["not ", "n't ", "no ", "nor ", "never "]
            .iter()
            .any(|n| before.contains(n) || before.starts_with(n.trim_start()));
        return Some(!denied);
    }
    None
}

/// Fill the essentials the labelled reading left empty from the prose of `text`. Returns how many
/// fields it filled.
pub fn read(record: &mut Record, text: &str, labelled: usize) -> usize {
    let own = own_paragraphs(text);
    let mut filled = 0;
    let known_people: Vec<String> = [record.other_name.clone(), record.escalating_name.clone()]
        .into_iter()
        .flatten()
        .collect();
    if record.get("other_name").is_none() && record.get("other_agency").is_none() {
        if let Some((name, agency, email)) = other_in(&own) {
            if let Some(n) = name {
                record.other_name = Some(n);
                filled += 1;
            }
            if let Some(a) = agency {
                record.other_agency = Some(a);
                filled += 1;
            }
            if record.get("other_email").is_none() {
                if let Some(e) = email {
                    record.other_email = Some(e.to_lowercase());
                }
            }
        } else if let Some((name, agency)) = agency_with_person(&own, &known_people) {
            record.other_name = Some(name);
            record.other_agency = Some(agency);
            filled += 2;
        } else if let Some(agency) = record.get("summary").and_then(|s| {
            let own_agency: Vec<String> = record.escalating_agency.iter().cloned().collect();
            agency_by_view(&s, &own_agency)
        }) {
            record.other_agency = Some(agency);
            filled += 1;
        }
    }
    if record.get("adult_name").is_none() {
        let mut not = known_people.clone();
        not.extend(record.other_name.clone());
        if let Some(n) = adult_in(&own, &not) {
            record.adult_name = Some(n);
            filled += 1;
        }
    }
    if record.get("adult_name").is_none() && record.get("nhs_number").is_none() {
        if let Some((initials, born)) = initials_with_birth(&own) {
            record.adult_name = Some(initials);
            record.extra.entry("date_of_birth".into()).or_insert(born);
            filled += 1;
        }
    }
    if record.immediate_risk.is_none() {
        if let Some(r) = risk_in(&own) {
            record.immediate_risk = Some(r);
        }
    }
    // The summary is the sender's own words, when nothing else gave one and the prose named the adult or
    // the other party: an email that says nothing about a disagreement gets no summary.
    let essentials_seen = filled > 0 || labelled > 0 || record.get("nhs_number").is_some();
    if record.get("summary").is_none() && record.get("theme").is_none() && essentials_seen {
        // The sentences, without the lines the labels gave.
        let summary: Vec<&str> = own
            .lines()
            .filter(|l| {
                let label = l.split(':').next().unwrap_or_default();
                !(l.contains(':') && label.split_whitespace().count() <= 5 && !label.trim().is_empty())
            })
            .collect();
        let summary = summary.join("\n");
        let summary = summary.trim();
        // Words about the email itself ("could you open an escalation", "I'll send the details later") say
        // nothing about the disagreement.
        let substance: usize = summary
            .split(['.', '!', '?', '\n'])
            .filter(|sentence| {
                let l = sentence.to_lowercase().replace('\u{2019}', "'");
                ![
                    "send me",
                    "i'll send",
                    "i will send",
                    "will send",
                    "to follow",
                    "attached",
                    "the reference",
                    "open an escalation",
                    "open a case",
                    "log this",
                    "please log",
                    "please open",
                    "once i'm back",
                ]
                .iter()
                .any(|m| l.contains(m))
            })
            .map(|sentence| sentence.split_whitespace().count())
            .sum();
        if substance >= 8 {
            record.summary = Some(summary.to_string());
            filled += 1;
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "Hello,\n\nI'm writing about my patient Mrs Doreen Haworth (NHS 999 000 0018). I have a disagreement with Kelly Dunne, Team Manager at Trafford Council Adult Social Care (kelly.dunne@trafford.gov.uk) about the decision to close the safeguarding enquiry after one visit. Doreen has told me she wants help with her finances. I don't think she is at immediate risk today.\n\nKind regards\nNia Nurse\nDistrict Nurse";

    #[test]
    fn a_record_in_prose_is_read_for_its_essentials() {
        let mut r = Record::default();
        let n = read(&mut r, PROSE, 0);
        assert_eq!(r.adult_name.as_deref(), Some("Doreen Haworth"));
        assert_eq!(r.other_name.as_deref(), Some("Kelly Dunne"));
        assert_eq!(r.other_agency.as_deref(), Some("Trafford Council Adult Social Care"));
        assert_eq!(r.other_email.as_deref(), Some("kelly.dunne@trafford.gov.uk"));
        assert_eq!(r.immediate_risk, Some(false));
        let summary = r.summary.unwrap_or_default();
        assert!(summary.contains("close the safeguarding enquiry"));
        assert!(!summary.contains("Kind regards") && !summary.contains("Hello"));
        assert!(n >= 3);
    }

    #[test]
    fn an_agency_set_against_the_senders_view_is_the_other_party() {
        let s = "Background.\nTRFT district nursing view: premature.\nASC view: he has capacity.";
        assert_eq!(
            agency_by_view(s, &["The Rotherham NHS Foundation Trust".to_string()]).as_deref(),
            Some("ASC")
        );
    }

    #[test]
    fn risk_stated_and_denied() {
        assert_eq!(risk_in("I don't think she is at immediate risk today."), Some(false));
        assert_eq!(risk_in("He is at immediate risk of harm."), Some(true));
        assert_eq!(risk_in("If she is at immediate risk we will call."), None);
    }

    #[test]
    fn plain_mail_names_no_one() {
        let mut r = Record::default();
        assert_eq!(
            read(
                &mut r,
                "Thanks for the meeting today, see you next week.\n\nRegards\nSam",
                0
            ),
            0
        );
        assert_eq!(r, Record::default());
    }
}
