//! Whom to involve next: for each side of a case, who acts at the next stage for their kind of agency
//! (South Gloucestershire's Appendix 2, in the policy's stages), the board's key contacts for their
//! organisation (Bradford's Appendix 3, in the policy), and the named people of the board's own directory
//! (a CSV of role, agency, name, email, optional stage) — through which ESCALATE can name a role
//! ("ESCALATE\nHead of Safeguarding") instead of a person.
//!
//! Pure: the directory is read by the configuration loader ([`parse_csv`] does the reading) and kept in
//! [`super::rules::BoardRules`].

use serde::{Deserialize, Serialize};

use super::case::{Case, Person, Record};
use super::intake::find_emails;
use super::policy::KeyContact;
use super::rules::BoardRules;

/// One named person in a board's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub role: String,
    pub agency: String,
    pub name: String,
    pub email: String,
    /// The stage at which they act, where the directory says.
    pub stage: Option<u8>,
}

fn norm(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an agency as written on a record ("Northfield Community Health NHS Trust") and one as written
/// in a directory or the policy ("Northfield Community Health") are the same organisation: one contains
/// the other, ignoring case and punctuation.
pub fn same_agency(a: &str, b: &str) -> bool {
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && !b.is_empty() && (a.contains(&b) || b.contains(&a))
}

/// Split one CSV line (RFC 4180: quoted fields with doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (',', false) => fields.push(std::mem::take(&mut cur).trim().to_string()),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur.trim().to_string());
    fields
}

/// Read a directory CSV: a header row naming the columns `role`, `agency`, `name`, `email` and optionally
/// `stage` (in any order, any case), then one person per row. Every problem is listed, with its line.
pub fn parse_csv(text: &str) -> Result<Vec<DirectoryEntry>, Vec<String>> {
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(vec![
            "the directory is empty: write a header row \"role,agency,name,email\" and one person a row".into(),
        ]);
    };
    let header: Vec<String> = csv_fields(header).iter().map(|h| norm(h)).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(role), Some(agency), Some(name), Some(email)) = (col("role"), col("agency"), col("name"), col("email"))
    else {
        return Err(vec![format!(
            "the header row must name the columns role, agency, name and email (and optionally stage); it has: {}",
            header.join(", ")
        )]);
    };
    let stage = col("stage");
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in lines {
        let f = csv_fields(line);
        let get = |c: usize| f.get(c).cloned().unwrap_or_default();
        let entry = DirectoryEntry {
            role: get(role),
            agency: get(agency),
            name: get(name),
            email: get(email).to_lowercase(),
            stage: stage.map(get).filter(|s| !s.is_empty()).and_then(|s| s.parse().ok()),
        };
        let line_no = i + 1;
        if entry.role.is_empty() || entry.agency.is_empty() || entry.name.is_empty() {
            problems.push(format!("line {line_no}: role, agency and name are all needed"));
            continue;
        }
        if find_emails(&entry.email).first().map(String::as_str) != Some(entry.email.as_str()) {
            problems.push(format!("line {line_no}: {:?} is not an email address", entry.email));
            continue;
        }
        if let Some(s) = stage.map(get).filter(|s| !s.is_empty()) {
            if s.parse::<u8>().is_err() {
                problems.push(format!("line {line_no}: the stage {s:?} is not a number"));
                continue;
            }
        }
        out.push(entry);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The kind of agency (the keys of a stage's `involved`: `local-authority`, `care-provider`,
/// `primary-care`, `secondary-care`, `voluntary-sector`, `police`) from what the record says of it.
pub fn agency_kind(given: &str, agency: &str, email: &str) -> Option<&'static str> {
    let all = format!("{given} {agency} {email}").to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| all.contains(w));
    if has(&["police"]) {
        Some("police")
    } else if has(&[
        "gp",
        "surgery",
        "practice",
        "primary care",
        "medical centre",
        "health centre",
    ]) {
        Some("primary-care")
    } else if has(&[
        "hospital",
        "nhs",
        "trust",
        "mental health",
        "community health",
        "secondary care",
    ]) {
        Some("secondary-care")
    } else if has(&["council", "local authority", "gov.uk", "social care", "social services"]) {
        Some("local-authority")
    } else if has(&[
        "care home",
        "care provider",
        "home care",
        "domiciliary",
        "nursing home",
        "care ltd",
    ]) {
        Some("care-provider")
    } else if has(&["charity", "voluntary", "advocacy", "trust for", "association"]) {
        Some("voluntary-sector")
    } else {
        None
    }
}

/// One side of a case: its agency, and the kind of agency it is.
struct Side {
    agency: String,
    kind: Option<&'static str>,
}

fn sides(record: &Record) -> Vec<Side> {
    let side = |given: Option<&String>, agency: &Option<String>, email: &Option<String>| {
        let agency = agency.clone().unwrap_or_default();
        let kind = agency_kind(
            given.map(String::as_str).unwrap_or_default(),
            &agency,
            email.as_deref().unwrap_or_default(),
        );
        Side { agency, kind }
    };
    vec![
        side(
            record.extra.get("escalating_agency_type"),
            &record.escalating_agency,
            &record.escalating_email,
        ),
        side(
            record.extra.get("other_agency_type"),
            &record.other_agency,
            &record.other_email,
        ),
    ]
}

fn contact_matches(c: &KeyContact, agency: &str) -> bool {
    std::iter::once(&c.organisation)
        .chain(c.aliases.iter())
        .any(|name| same_agency(name, agency))
}

/// Whom each side approaches at `stage`: for each agency on the case, who acts there for its kind of
/// agency (where the policy says), the board's key contacts for it, and the named people of the board's
/// directory. One line each.
pub fn whom_at(rules: &BoardRules, case: &Case, stage: u8) -> Vec<String> {
    let policy = &rules.policy;
    let mut out = Vec::new();
    for side in sides(&case.record) {
        if side.agency.trim().is_empty() {
            continue;
        }
        if let (Some(kind), Some(st)) = (side.kind, policy.stage(stage)) {
            if let Some(who) = st.involved.get(kind) {
                out.push(format!("{} ({}): {who}", side.agency, kind.replace('-', " ")));
            }
        }
        for c in policy.key_contacts.iter().filter(|c| contact_matches(c, &side.agency)) {
            let mut line = format!("{}: {}", c.organisation, c.role);
            if let Some(e) = &c.email {
                line.push_str(&format!(" <{e}>"));
            }
            out.push(line);
        }
        for d in rules
            .directory
            .iter()
            .filter(|d| same_agency(&d.agency, &side.agency) && d.stage.is_none_or(|s| s == stage))
        {
            out.push(format!("{} ({}, {}) <{}>", d.name, d.role, d.agency, d.email));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|l| seen.insert(l.clone()));
    out
}

/// The people an ESCALATE names by role, from the board's directory: a line that is a role of the
/// directory ("Head of Safeguarding"), or a role and an agency ("Head of Safeguarding, Northfield NHS
/// Trust", "Team manager at Westshire Council"), gives the people with that role — of that agency when
/// one is named, else of the case's agencies. Lines that name no directory role are left alone (they
/// are the reason for escalating).
pub fn people_for_roles(rules: &BoardRules, case: &Case, text: &str, stage: u8) -> Vec<Person> {
    let case_agencies: Vec<String> = [&case.record.escalating_agency, &case.record.other_agency]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let mut out: Vec<Person> = Vec::new();
    for line in text.lines().filter(|l| find_emails(l).is_empty()) {
        let line = line
            .trim()
            .trim_start_matches(['-', '*', '•', ' '])
            .trim_end_matches(['.', ' ']);
        let l = norm(line);
        if l.is_empty() {
            continue;
        }
        let hits: Vec<&DirectoryEntry> = rules
            .directory
            .iter()
            .filter(|d| d.stage.is_none_or(|s| s == stage))
            .filter(|d| {
                let role = norm(&d.role);
                l == role || l.strip_prefix(&role).is_some_and(|rest| rest.starts_with(' '))
            })
            .collect();
        if hits.is_empty() {
            continue;
        }
        // The rest of the line, if any, names the agency ("…, Northfield NHS Trust", "… at Westshire").
        let named: Vec<&&DirectoryEntry> = hits
            .iter()
            .filter(|d| {
                let rest = l.strip_prefix(&norm(&d.role)).unwrap_or_default().trim();
                let rest = rest.strip_prefix("at ").or(rest.strip_prefix("for ")).unwrap_or(rest);
                !rest.is_empty() && same_agency(rest, &d.agency)
            })
            .collect();
        let chosen: Vec<&DirectoryEntry> = if !named.is_empty() {
            named.into_iter().copied().collect()
        } else {
            hits.into_iter()
                .filter(|d| case_agencies.iter().any(|a| same_agency(a, &d.agency)))
                .collect()
        };
        for d in chosen {
            if !out.iter().any(|p| p.email.eq_ignore_ascii_case(&d.email)) {
                out.push(Person {
                    email: d.email.clone(),
                    name: Some(d.name.clone()),
                    agency: Some(d.agency.clone()),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_read_from_csv_with_quotes_and_a_bom() {
        let d = parse_csv(
            "\u{feff}Role,Agency,Name,Email,Stage\nHead of Safeguarding,\"Northfield NHS Trust, Adults\",Hana Head,Hana.Head@nhs.net,3\nTeam manager,Westshire Council,Tess Team,tess.team@westshire.gov.uk,\n",
        )
        .expect("reads");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].agency, "Northfield NHS Trust, Adults");
        assert_eq!(d[0].email, "hana.head@nhs.net");
        assert_eq!(d[0].stage, Some(3));
        assert_eq!(d[1].stage, None);
        let bad = parse_csv("role,agency,name,email\nx,y,z,not-an-address\n").expect_err("refused");
        assert!(bad[0].contains("line 2"), "{bad:?}");
        assert!(parse_csv("name,email\n").is_err());
    }

    #[test]
    fn agencies_match_however_they_are_written() {
        assert!(same_agency(
            "Northfield Community Health NHS Trust",
            "northfield community health"
        ));
        assert!(!same_agency("Westshire Council", "Eastshire Council"));
        assert!(!same_agency("", "x"));
    }
}
