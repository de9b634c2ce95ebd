//! Values split from what is not theirs: an agency without the email address, phone number, job title,
//! street address or stray "Email" / "Tel" label written beside it; a line holding several "label: value"
//! pairs ("Name: …; Job Title: …; Agency: …") cut into them; and the end of a value where a signature
//! block or disclaimer starts. Pure and linear in the value.

use super::find_emails;

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
    let mut s = agency.replace("mailto:", "");
    for e in find_emails(&s) {
        // Case-insensitively, as written.
        if let Some(at) = s.to_lowercase().find(&e.to_lowercase()) {
            if s.is_char_boundary(at) && s.is_char_boundary(at + e.len()) {
                s.replace_range(at..at + e.len(), "");
            }
        }
    }
    let s = s
        .replace("()", "")
        .replace("[]", "")
        .replace("<>", "")
        .replace("( )", "");
    // The comma-separated parts that are the organisation: up to the first contact label, phone
    // number or street address.
    let mut kept: Vec<&str> = Vec::new();
    for part in s.split([',', ';', '|']) {
        let p = part.trim().trim_end_matches(':').trim();
        let lower = p.to_lowercase();
        let label_only = CONTACT_WORDS.contains(&lower.as_str())
            || CONTACT_WORDS
                .iter()
                .any(|w| lower.starts_with(&format!("{w}:")) || lower.starts_with(&format!("{w} -")));
        let digits = p.chars().filter(char::is_ascii_digit).count();
        let phone = digits >= 7 && digits * 2 >= p.chars().filter(|c| !c.is_whitespace()).count();
        if label_only || phone || is_street_address(p) {
            break;
        }
        if !p.is_empty() {
            kept.push(p);
        }
    }
    let joined = kept.join(", ");
    // A contact label written after the name without a comma: "Beckside Homes Email".
    let mut out = joined.trim().to_string();
    for w in CONTACT_WORDS {
        let lower = out.to_lowercase();
        if lower.ends_with(&format!(" {w}")) && out.len() > w.len() + 1 {
            let cut = out.len() - w.len() - 1;
            if out.is_char_boundary(cut) {
                out.truncate(cut);
            }
        }
    }
    out.trim()
        .trim_end_matches([',', ';', '-', '\u{2013}', ':', ' ', '('])
        .trim()
        .to_string()
}

/// "Name: Daniel Okonjo; Job Title: Police Sergeant; Agency: Thames Valley Police": the pairs, when every
/// piece between the separators is "label: value" and a label names a part of a person (`part_of`
/// says which). At least two pairs, or `None`.
pub fn label_pairs<'a>(
    value: &'a str,
    part_of: &dyn Fn(&str) -> Option<&'static str>,
) -> Option<Vec<(&'static str, String)>> {
    if !value.contains(':') {
        return None;
    }
    let pieces: Vec<&'a str> = value
        .split([';', '|', '\t'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut out = Vec::new();
    for p in &pieces {
        let (label, v) = p.split_once(':')?;
        let part = part_of(label.trim())?;
        out.push((part, v.trim().to_string()));
    }
    (out.len() >= 2).then_some(out)
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
