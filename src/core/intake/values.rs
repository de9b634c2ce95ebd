//! Values split from what is not theirs: an agency without the email address, phone number, job title,
//! street address or stray "Email" / "Tel" label written beside it; a line holding several "label: value"
//! pairs ("Name: …; Job Title: …; Agency: …") cut into them; and the end of a value where a signature
//! block or disclaimer starts. Pure and linear in the value.

/// Labels people leave at the end of an agency when the contact details that followed were cut away:
/// "Severn Meadows Housing, Email".
const CONTACT_WORDS: &[&str] = &[
    "email",
    "e-mail",
    "email address",
    "tel",
    "tel no",
    "telephone",
    "phone",
    "mobile",
    "mob",
    "contact",
    "contact details",
    "address",
    "fax",
];

/// Whether `part` is a street address ("12 High Street", "Unit 4, Riverside Park", a postcode).
fn is_street_address(part: &str) -> bool {
    let t = part.trim();
    let starts_with_number = t.chars().next().is_some_and(|c| c.is_ascii_digit());
    let lower = t.to_lowercase();
    let street = [
        " street",
        " road",
        " lane",
        " avenue",
        " way",
        " close",
        " drive",
        " place",
        " house",
        " park",
        " square",
        " court",
        " crescent",
        " terrace",
        " st",
        " rd",
    ]
    .iter()
    .any(|w| lower.ends_with(w) || lower.contains(&format!("{w} ")));
    (starts_with_number && street) || is_postcode(t)
}

/// A UK postcode alone: "BD1 1HY", "SW1A 1AA".
fn is_postcode(t: &str) -> bool {
    let parts: Vec<&str> = t.split_whitespace().collect();
    let [out, inward] = parts.as_slice() else {
        return false;
    };
    let out_ok = (2..=4).contains(&out.len())
        && out.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && out.chars().any(|c| c.is_ascii_digit())
        && out.chars().all(|c| c.is_ascii_alphanumeric());
    let in_ok = inward.len() == 3
        && inward.chars().next().is_some_and(|c| c.is_ascii_digit())
        && inward.chars().skip(1).all(|c| c.is_ascii_uppercase());
    out_ok && in_ok
}

/// An agency as a reader would write it in a table of agencies: without email addresses (bare, in
/// brackets or after "mailto:"), phone numbers, a trailing contact label, a street address or postcode,
/// and brackets left empty.
pub fn clean_agency(agency: &str) -> String {
    // Addresses out, in one pass: every word with an "@" in it, with the brackets round it.
    let s: String = agency
        .replace("mailto:", "")
        .split(' ')
        .filter(|w| !w.contains('@'))
        .collect::<Vec<_>>()
        .join(" ");
    let s = s
        .replace("()", "")
        .replace("[]", "")
        .replace("<>", "")
        .replace("( )", "");
    // The organisation is the parts up to the first contact label, phone number, street address or
    // note in lower case. The parts between separators (a comma, semicolon, bar, or a dash between spaces), as (start, end)
    // in `s`, so that what is kept keeps its own separators.
    let mut parts: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let dash = matches!(c, '-' | '\u{2013}' | '\u{2014}')
            && k > 0
            && chars.get(k - 1).is_some_and(|&(_, p)| p == ' ')
            && chars.get(k + 1).is_some_and(|&(_, n)| n == ' ');
        if matches!(c, ',' | ';' | '|') || dash {
            parts.push((from, i));
            from = i + c.len_utf8();
        }
    }
    parts.push((from, s.len()));
    let mut keep_to = 0;
    for (n, &(a, b)) in parts.iter().enumerate() {
        let part = s.get(a..b).unwrap_or_default();
        let p = part.trim().trim_end_matches(':').trim();
        let lower = p.to_lowercase();
        // "… – copied in", "…, cc'd": a note in lower case after the organisation.
        let note = n > 0 && !p.is_empty() && !p.chars().any(char::is_uppercase);
        let label_only = CONTACT_WORDS.contains(&lower.as_str())
            || CONTACT_WORDS
                .iter()
                .any(|w| lower.starts_with(&format!("{w}:")) || lower.starts_with(&format!("{w} -")));
        let digits = p.chars().filter(char::is_ascii_digit).count();
        let phone = digits >= 7 && digits * 2 >= p.chars().filter(|c| !c.is_whitespace()).count();
        if note || label_only || phone || is_street_address(p) {
            break;
        }
        if !p.is_empty() {
            keep_to = b;
        }
    }
    let joined = s.get(..keep_to).unwrap_or_default().to_string();
    // A contact label written after the name without a comma: "Beckside Homes Email".
    let mut out = joined.trim().to_string();
    for w in CONTACT_WORDS {
        let lower = out.to_lowercase();
        if lower.ends_with(&format!(" {w}")) && out.len() > w.len() + 1 {
            let cut = out.len() - w.len() - 1;
            if out.is_char_boundary(cut) {
                out.truncate(cut); // byte-slice: checked with is_char_boundary above
            }
        }
    }
    // "Beckside Homes (housing association)": a description in lower case in a closing bracket.
    if out.ends_with(')') {
        if let Some(open) = out.rfind('(') {
            let inner = out.get(open + 1..out.len() - 1).unwrap_or_default();
            if !inner.is_empty() && !inner.chars().any(char::is_uppercase) && open > 0 {
                out.truncate(open); // byte-slice: `open` is where `rfind` matched a bracket
            }
        }
    }
    out.trim()
        .trim_end_matches([',', ';', '-', '\u{2013}', ':', ' ', '('])
        .trim()
        .to_string()
}

/// A person's name as a reader would write it down: its first line, without "Mr"/"Mrs"/"Ms"/"Miss"/"Mx"
/// or a police rank before it ("Dr" is kept: it says who a professional is), and without what is written
/// after it: a bracket ("(Discharge Lead Nurse)", "(NHS …)"), an age (", 58"), a date of birth or NHS
/// number, or another field after a run of spaces.
pub fn clean_name(value: &str) -> String {
    const BEFORE: &[&str] = &[
        "Mr", "Mrs", "Ms", "Miss", "Mx", "Mr.", "Mrs.", "Ms.", "Mx.", "PC", "DC", "DS", "DI", "PS", "Sgt", "Sgt.",
        "Insp", "Insp.",
    ];
    let first = value.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    let mut words: Vec<&str> = first.split(' ').filter(|w| !w.is_empty()).collect();
    while words.len() > 1 && words.first().is_some_and(|w| BEFORE.contains(w)) {
        words.remove(0);
    }
    let joined = words.join(" ");
    // Cut where something other than the name starts.
    let lower = joined.to_lowercase();
    let mut cut = joined.len();
    for marker in [
        "(",
        "[",
        "  ",
        "\t",
        ", aged",
        " aged ",
        " age ",
        " dob",
        ", dob",
        " d.o.b",
        " born",
        " nhs",
        ", nhs",
        " - ",
        " \u{2013} ",
        " \u{2014} ",
    ] {
        if let Some(i) = lower.find(marker) {
            // A marker made of letters is a word of its own ("Margaret Dobson" has no date of birth).
            let in_a_word = marker.ends_with(char::is_alphabetic)
                && lower
                    .get(i + marker.len()..)
                    .and_then(|r| r.chars().next())
                    .is_some_and(char::is_alphabetic);
            if !in_a_word {
                cut = cut.min(i);
            }
        }
    }
    // ", 58": an age after a comma.
    if let Some(i) = joined.find(", ") {
        if joined
            .get(i + 2..)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        {
            cut = cut.min(i);
        }
    }
    let name = joined
        .get(..cut)
        .unwrap_or(&joined)
        .trim()
        .trim_end_matches([',', ';', ':', '-', '.'])
        .trim();
    if name.is_empty() {
        joined.trim().to_string()
    } else {
        name.to_string()
    }
}

/// "Name: Daniel Okonjo; Job Title: Police Sergeant; Agency: Thames Valley Police": the pairs, when every
/// piece between the separators is "label: value" and a label names a part of a person (`part_of`
/// says which). At least two pairs, or `None`.
pub fn label_pairs(value: &str, part_of: &dyn Fn(&str) -> Option<&'static str>) -> Option<Vec<(&'static str, String)>> {
    if !value.contains(':') {
        return None;
    }
    // Every "label:" that names a part, where it starts after a separator (";", ",", "|", a tab, a run of
    // spaces or the start of the line): (where its label starts, where its value starts, the part).
    let mut marks: Vec<(usize, usize, &'static str)> = Vec::new();
    for (colon, _) in value.match_indices(':') {
        let before = value.get(..colon).unwrap_or_default();
        let start = before
            .char_indices()
            .rev()
            .take(32)
            .find(|&(i, c)| {
                matches!(c, ';' | ',' | '|' | '\t') || (c == ' ' && before.get(..i).is_some_and(|b| b.ends_with(' ')))
            })
            .map_or_else(
                || {
                    if before.chars().nth(32).is_none() {
                        0
                    } else {
                        usize::MAX
                    }
                },
                |(i, c)| i + c.len_utf8(),
            );
        if start == usize::MAX {
            continue;
        }
        let label = before.get(start..).unwrap_or_default().trim();
        if let Some(part) = part_of(label) {
            marks.push((start, colon + 1, part));
        }
    }
    if marks.len() < 2
        || marks
            .first()
            .is_some_and(|m| value.get(..m.0).is_some_and(|b| !b.trim().is_empty()))
    {
        return None;
    }
    let mut out = Vec::new();
    for (k, &(_, from, part)) in marks.iter().enumerate() {
        let to = marks.get(k + 1).map_or(value.len(), |m| m.0);
        let v = value.get(from..to).unwrap_or_default();
        let v = v.trim().trim_end_matches([';', ',', '|']).trim();
        out.push((part, v.to_string()));
    }
    Some(out)
}

/// Whether `t` (a trimmed line) starts a legal or confidentiality disclaimer, which is never part of a
/// field's value.
pub fn is_disclaimer(t: &str) -> bool {
    let l = t.to_lowercase();
    let l = l.trim_start_matches(['*', '_', '-', ' ']);
    [
        "this email and any",
        "this e-mail and any",
        "this message and any",
        "this email is confidential",
        "this e-mail is confidential",
        "this email may contain",
        "this message may contain",
        "this message is confidential",
        "this e-mail may contain",
        "the information contained in this",
        "the information in this email",
        "the information in this e-mail",
        "if you have received this",
        "if you are not the intended",
        "confidentiality notice",
        "confidentiality:",
        "disclaimer",
        "privileged and confidential",
        "official-sensitive",
        "official sensitive",
        "nhsmail is the",
        "please consider the environment",
        "think before you print",
        "any views or opinions",
        "emails sent to and from",
        "email communications with",
    ]
    .iter()
    .any(|p| l.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agencies_lose_what_is_not_the_agency() {
        for (written, agency) in [
            (
                "South Gloucestershire Council (declan.moore@southglos.gov.uk)",
                "South Gloucestershire Council",
            ),
            ("Severn Meadows Housing, Email", "Severn Meadows Housing"),
            ("Severn Meadows Housing, Email: sm@smh.org.uk", "Severn Meadows Housing"),
            ("Westshire Council, 12 High Street, Westbury", "Westshire Council"),
            (
                "Kilnhurst Road Medical Practice, Tel 01709 123456",
                "Kilnhurst Road Medical Practice",
            ),
            ("Beckside Homes Email", "Beckside Homes"),
            (
                "City of Bradford MDC, Adult Social Care",
                "City of Bradford MDC, Adult Social Care",
            ),
        ] {
            assert_eq!(clean_agency(written), agency, "{written}");
        }
    }

    #[test]
    fn pairs_on_one_line_are_split() {
        let part = |l: &str| match l.to_lowercase().as_str() {
            "name" => Some("name"),
            "job title" => Some("job_title"),
            "agency" => Some("agency"),
            "date" => Some("skip"),
            _ => None,
        };
        let got = label_pairs(
            "Name: Daniel Okonjo; Job Title: Police Sergeant; Agency: Thames Valley Police; Date: 01/03/2027",
            &part,
        )
        .expect("pairs");
        assert_eq!(got[0], ("name", "Daniel Okonjo".to_string()));
        assert_eq!(got[2], ("agency", "Thames Valley Police".to_string()));
        assert!(label_pairs("Sam Social; Westshire Council", &part).is_none());
        let got = label_pairs(
            "Name: Ann Bell, Job Title: Team Manager, Adult Safeguarding, Agency: Westshire Council, Date: 01/03/2027",
            &part,
        )
        .expect("pairs");
        assert_eq!(got[1], ("job_title", "Team Manager, Adult Safeguarding".to_string()));
        assert_eq!(got[2], ("agency", "Westshire Council".to_string()));
    }

    #[test]
    fn names_as_a_reader_writes_them_down() {
        for (written, name) in [
            ("Mrs Winifred Tolley", "Winifred Tolley"),
            ("Kenneth Ormerod, 58", "Kenneth Ormerod"),
            ("Mrs Dorothy Wren\nD.O.B 04/08/1936", "Dorothy Wren"),
            ("Stanley Boateng   NHS: 999 328 4025", "Stanley Boateng"),
            ("Karen Mottram (Discharge Lead Nurse)", "Karen Mottram"),
            ("Dr Priyanka Menon", "Dr Priyanka Menon"),
            ("Margaret Dobson", "Margaret Dobson"),
            ("Ann Bornholm (DOB 01/02/1940)", "Ann Bornholm"),
            ("PC Kieran Doyle", "Kieran Doyle"),
        ] {
            assert_eq!(clean_name(written), name, "{written}");
        }
    }

    #[test]
    fn disclaimers_are_known() {
        assert!(is_disclaimer(
            "This email and any files transmitted with it are confidential"
        ));
        assert!(is_disclaimer("CONFIDENTIALITY NOTICE: this message"));
        assert!(!is_disclaimer("This disagreement is about discharge"));
    }
}
