//! Who sent the record, when the form does not say: the From header's display name as mail systems write
//! it ("QURESHI, Imran (LOW MOOR LANE SURGERY)", "Gaskell Fiona (CALDER VALLEY … TRUST)", "Walsh, Liam",
//! "Firth, Lauren PS 2291"), and the signature under the sender's own words ("Thomas Rigby / Police
//! Sergeant 1234 / Greater Manchester Police", "Dan Whitworth | PC 4471 | South Yorkshire Police").
//! Pure: strings in, the name and agency out.

use super::{is_job_title, is_organisation, is_sign_off};

/// Acronyms kept in capitals when an organisation written in capitals is given its proper case.
const ACRONYMS: &[&str] = &[
    "NHS", "ICB", "MBC", "MDC", "ASC", "CCG", "GP", "CMHT", "UK", "NHSFT", "PCN", "CIC", "LA", "A&E", "ED", "TVP",
];

/// "CALDER VALLEY TEACHING HOSPITALS NHS FOUNDATION TRUST" as "Calder Valley Teaching Hospitals NHS
/// Foundation Trust"; text not all in capitals is kept as written.
pub fn proper_case(s: &str) -> String {
    if s.chars().any(char::is_lowercase) {
        return s.to_string();
    }
    s.split(' ')
        .map(|w| {
            if ACRONYMS.contains(&w) || w.chars().count() <= 1 {
                w.to_string()
            } else if matches!(w, "AND" | "OF" | "THE" | "FOR" | "IN" | "ON" | "AT") {
                w.to_lowercase()
            } else {
                let mut cs = w.chars();
                let first = cs.next().map(|c| c.to_string()).unwrap_or_default();
                format!("{first}{}", cs.as_str().to_lowercase())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word of a person's name: letters (hyphens and apostrophes allowed), not a rank or number.
fn name_word(w: &str) -> bool {
    w.chars().count() >= 2
        && w.chars()
            .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '\u{2019}'))
        && w.chars().next().is_some_and(char::is_uppercase)
}

/// `w` with only its first letter in capitals: "QURESHI" as "Qureshi".
fn capitalised(w: &str) -> String {
    if w.chars().skip(1).any(char::is_lowercase) {
        return w.to_string();
    }
    let mut cs = w.chars();
    let first = cs.next().map(|c| c.to_string()).unwrap_or_default();
    format!("{first}{}", cs.as_str().to_lowercase())
}

/// The person's name and organisation in a From display name, using the address to tell the surname
/// from the first name where the mail system writes the surname first.
pub fn from_display_name(display: &str, email: &str) -> (Option<String>, Option<String>) {
    let display = display.trim().trim_matches('"').trim();
    if display.is_empty() || display.contains('@') {
        return (None, None);
    }
    // "(LOW MOOR LANE SURGERY)": the organisation.
    let (names, agency) = match (display.find('('), display.rfind(')')) {
        (Some(open), Some(close)) if open < close => (
            display.get(..open).unwrap_or_default().trim(),
            display
                .get(open + 1..close)
                .map(|a| proper_case(a.trim()))
                .filter(|a| !a.is_empty()),
        ),
        _ => (display, None),
    };
    let local = super::whole_email::local_letters(email);
    let name = if let Some((surname, rest)) = names.split_once(',') {
        // "Firth, Lauren PS 2291": the first names, then the surname; ranks and numbers dropped.
        let first: Vec<String> = rest
            .split_whitespace()
            .take_while(|w| name_word(w) && w.chars().any(char::is_lowercase))
            .map(capitalised)
            .collect();
        let surname: Vec<String> = surname
            .split_whitespace()
            .filter(|w| name_word(w))
            .map(capitalised)
            .collect();
        (!first.is_empty() && !surname.is_empty()).then(|| format!("{} {}", first.join(" "), surname.join(" ")))
    } else {
        let words: Vec<String> = names
            .split_whitespace()
            .filter(|w| name_word(w))
            .map(capitalised)
            .collect();
        match words.as_slice() {
            [] | [_] => None,
            // "Gaskell Fiona" with fiona.gaskell@…: the surname was written first.
            [first, second]
                if local.starts_with(&second.to_lowercase()) && !local.starts_with(&first.to_lowercase()) =>
            {
                Some(format!("{second} {first}"))
            }
            ws => Some(ws.join(" ")),
        }
    };
    // A team mailbox ("Adult Social Care Duty Team") is not a person.
    let name = name.filter(|n| !is_organisation(n));
    (name, agency)
}

/// The organisation in the sender's signature: the lines under their sign-off (or under their name),
/// the first part that reads as an organisation and not a job title or an address.
pub fn agency_in_signature(text: &str, name: Option<&str>) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let surname = name.and_then(|n| n.split_whitespace().last()).map(str::to_lowercase);
    let start = lines
        .iter()
        .position(|l| is_sign_off(l.trim()))
        .map(|i| i + 1)
        .or_else(|| {
            let s = surname.as_ref()?;
            lines
                .iter()
                .rposition(|l| l.to_lowercase().contains(s.as_str()) && l.trim().chars().count() <= 60)
        })?;
    for line in lines.iter().skip(start).take(8) {
        for part in line.split(['|', ',', '\u{2013}', '\u{2014}']) {
            let p = part.trim();
            let p = p.strip_prefix("- ").unwrap_or(p);
            if p.is_empty() || p.chars().count() > 70 || p.contains('@') || p.contains("://") {
                continue;
            }
            if is_organisation(p) && !is_job_title(p) && p.chars().filter(char::is_ascii_digit).count() < 3 {
                return Some(proper_case(p));
            }
        }
    }
    None
}

/// A person in a quoted or forwarded message's header lines: (name, address).
pub type Quoted = (Option<String>, String);

/// The first forwarded or quoted message's header in `text`: its "From:" person and its "To:" people
/// ("From: Walsh, Liam <liam.walsh@bradford.gov.uk>", "> To: Olu Adebayo <olu.adebayo@nhs.net>"), and the
/// line it starts on.
pub fn forwarded_header(text: &str) -> Option<(Quoted, Vec<Quoted>, usize)> {
    let person = |v: &str| -> Option<Quoted> {
        let email = super::find_emails(v).into_iter().next()?;
        let display = v.split('<').next().unwrap_or_default().trim().trim_matches('"');
        let (name, _) = from_display_name(display, &email);
        Some((name, email.to_lowercase()))
    };
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim().trim_start_matches('>').trim();
        let Some(value) = t.strip_prefix("From:").or_else(|| t.strip_prefix("from:")) else {
            continue;
        };
        // An address wrapped onto the next line by the sender's client.
        let mut value = value.trim().to_string();
        if !value.contains('@') || value.ends_with('<') {
            if let Some(next) = lines.get(i + 1) {
                value.push(' ');
                value.push_str(next.trim().trim_start_matches('>').trim());
            }
        }
        let Some(from) = person(&value) else {
            continue;
        };
        // A header block: a Sent/Date and a To line follow within a few lines.
        let block: Vec<&str> = lines
            .iter()
            .skip(i + 1)
            .take(6)
            .map(|l| l.trim().trim_start_matches('>').trim())
            .collect();
        if !block.iter().any(|l| l.starts_with("Sent:") || l.starts_with("Date:")) {
            continue;
        }
        let to = block
            .iter()
            .filter_map(|l| l.strip_prefix("To:"))
            .flat_map(|v| v.split(';').filter_map(&person).collect::<Vec<_>>())
            .collect();
        return Some((from, to, i));
    }
    None
}

/// Whether the person whose message is forwarded raised the disagreement (a manager forwarding a
/// practitioner's record: "Forwarding Emma's escalation", "on behalf of Liam", "Adam's details are in the
/// form"), rather than being the other party the sender forwards an exchange with ("Gavin and I can't
/// agree", "I disagree with Gavin"). `top` is the sender's own words above the forward.
pub fn forwarded_raiser(top: &str, name: Option<&str>, record: &crate::core::case::Record, sender_in_to: bool) -> bool {
    let Some(name) = name else {
        return false;
    };
    let lower = top.to_lowercase().replace('\u{2019}', "'");
    let first = name.split_whitespace().next().unwrap_or_default().to_lowercase();
    let surname = name.split_whitespace().last().unwrap_or_default().to_lowercase();
    // The record itself names them.
    if record
        .get("escalating_name")
        .is_some_and(|n| n.to_lowercase().contains(&surname))
    {
        return true;
    }
    if record
        .get("other_name")
        .is_some_and(|n| n.to_lowercase().contains(&surname))
    {
        return false;
    }
    let said = |patterns: &[String]| patterns.iter().any(|p| lower.contains(p.as_str()));
    let theirs = [
        format!("{first}'s"),
        format!("behalf of {first}"),
        format!("from {first}"),
        format!("{first} has asked"),
        format!("{first} asked"),
        format!("{first} raised"),
        format!("raised by {first}"),
    ];
    let against = [
        format!("{first} and i"),
        format!("with {first}"),
        format!("{first} won't"),
        format!("{first} will not"),
        format!("{first} has refused"),
        format!("{first} refuses"),
        format!("{first} says"),
        format!("{first} said"),
    ];
    if said(&theirs) {
        return true;
    }
    if said(&against) {
        return false;
    }
    // Nothing said of them: a message written to the sender and forwarded by them was forwarded for its
    // writer, when it carries the record.
    record.get("summary").is_some() && (lower.contains("forward") || (sender_in_to && !lower.contains(&first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_as_mail_systems_write_them() {
        for (display, email, name, agency) in [
            (
                "QURESHI, Imran (LOW MOOR LANE SURGERY)",
                "imran.qureshi1@nhs.net",
                Some("Imran Qureshi"),
                Some("Low Moor Lane Surgery"),
            ),
            (
                "Gaskell Fiona (CALDER VALLEY TEACHING HOSPITALS NHS FOUNDATION TRUST)",
                "fiona.gaskell@nhs.net",
                Some("Fiona Gaskell"),
                Some("Calder Valley Teaching Hospitals NHS Foundation Trust"),
            ),
            ("Walsh, Liam", "liam.walsh@bradford.gov.uk", Some("Liam Walsh"), None),
            (
                "Firth, Lauren PS 2291",
                "lauren.firth@westyorkshire.police.uk",
                Some("Lauren Firth"),
                None,
            ),
            (
                "Kieran Doyle",
                "kieran.doyle@thamesvalley.police.uk",
                Some("Kieran Doyle"),
                None,
            ),
            ("Adult Social Care Duty Team", "asc.duty@x.gov.uk", None, None),
        ] {
            let (n, a) = from_display_name(display, email);
            assert_eq!((n.as_deref(), a.as_deref()), (name, agency), "{display}");
        }
    }

    #[test]
    fn the_agency_under_the_sign_off() {
        let text = "The visit was cancelled.\n\nKind regards\nThomas Rigby\nPolice Sergeant 1234 | Public Protection\nGreater Manchester Police\n1 Talbot Road, Manchester";
        assert_eq!(
            agency_in_signature(text, Some("Thomas Rigby")).as_deref(),
            Some("Greater Manchester Police")
        );
        let text = "no immediate risk tonight\n\nDan Whitworth | PC 4471 | South Yorkshire Police";
        assert_eq!(
            agency_in_signature(text, Some("Daniel Whitworth")).as_deref(),
            Some("South Yorkshire Police")
        );
    }
}
