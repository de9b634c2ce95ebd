//! Reading the agreed actions of a resolution: one action per bullet, numbered line or semicolon, each with
//! its owner (a name and address, or an "Owner:" line) and its date ("by 12 February 2027", "Due: …").
//!
//! Pure: text in, actions out. What cannot be read (an owner named only by role, "by Friday") stays in the
//! action's text, and nothing is refused for it: the outcome is what the case needs, the rest helps.

use chrono::NaiveDate;

use super::case::AgreedAction;
use super::intake::{find_emails, normalise_label};
use super::reply::parse_date_near;

/// The labels of an action's own lines ("Owner: …", "Due: …").
const OWNER_LABELS: &[&str] = &[
    "owner",
    "owners",
    "lead",
    "who",
    "responsible",
    "by whom",
    "action owner",
    "assigned to",
];
const DUE_LABELS: &[&str] = &[
    "due",
    "due date",
    "by",
    "by when",
    "date",
    "deadline",
    "timescale",
    "when",
    "target date",
    "complete by",
];

impl AgreedAction {
    /// The action in one line, its owner and date added where its text does not already say them:
    /// "Joint visit — owner: Sam Smith <sam@x> — by Monday 1 March 2027".
    pub fn summary(&self) -> String {
        let mut line = self.text.clone();
        let says = |s: &Option<String>| s.as_deref().is_some_and(|s| self.text.contains(s));
        if !says(&self.owner) && !says(&self.owner_email) {
            let owner = match (&self.owner, &self.owner_email) {
                (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
                (Some(n), None) => Some(n.clone()),
                (None, Some(e)) => Some(e.clone()),
                (None, None) => None,
            };
            if let Some(o) = owner {
                line.push_str(&format!(" — owner: {o}"));
            }
        }
        if let Some(d) = self.due {
            if find_date(&self.text, Some(d)) != Some(d) {
                line.push_str(&format!(" — by {}", d.format("%A %-d %B %Y")));
            }
        }
        line
    }
}

/// The bullet or number that opens a list item ("- ", "• ", "1. ", "2) ", "a) ", "(iii) "), if any, and
/// the text after it.
pub fn strip_bullet(line: &str) -> Option<&str> {
    let t = line.trim_start();
    for b in ['-', '*', '•', '·', '–', '—', '▪', '◦', '○', '●', '■', '\u{f0b7}'] {
        if let Some(rest) = t.strip_prefix(b) {
            if rest.starts_with([' ', '\t']) || rest.is_empty() {
                return Some(rest.trim());
            }
        }
    }
    // "1.", "12)", "a)", "(b)", "iv." — a short marker of digits or letters, then punctuation and a space.
    let (marker, rest) = t.split_once([' ', '\t'])?;
    let inner = marker.trim_start_matches('(');
    let body = inner.strip_suffix(['.', ')', ':'])?;
    let short = !body.is_empty() && body.chars().count() <= 4;
    let digits = body.chars().all(|c| c.is_ascii_digit());
    let letter = body.chars().count() == 1 && body.chars().all(|c| c.is_ascii_alphabetic());
    let roman = body.chars().all(|c| matches!(c, 'i' | 'v' | 'x'));
    (short && (digits || letter || roman)).then_some(rest.trim())
}

/// "Owner: Sam" → ("owner", "Sam") when the label is one of `labels`.
fn labelled_line<'a>(line: &'a str, labels: &[&str]) -> Option<&'a str> {
    let (label, value) = line.split_once(':')?;
    labels
        .contains(&normalise_label(label).as_str())
        .then_some(value.trim())
}

/// The date in a piece of text: after "by", "due", "before" or "on" if one is written so, else the first
/// that reads as a whole date. Words are tried in runs of one to four ("12/02/2027", "12 Feb 2027",
/// "Friday 12 February 2027"); with `near` (the day it was written) also "15 January" and "the end of
/// January".
pub fn find_date(text: &str, near: Option<NaiveDate>) -> Option<NaiveDate> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ';'))
        .filter(|w| !w.is_empty())
        .collect();
    let cue_before = |i: usize| {
        i.checked_sub(1)
            .and_then(|j| words.get(j))
            .map(|w| w.to_lowercase())
            .is_some_and(|w| {
                matches!(
                    w.trim_end_matches(':'),
                    "by" | "due" | "before" | "until" | "of" | "deadline"
                )
            })
    };
    let mut first = None;
    for i in 0..words.len() {
        for n in (1..=4).rev() {
            let Some(run) = words.get(i..i + n) else {
                continue;
            };
            let candidate = run.join(" ");
            let candidate = candidate.trim_end_matches([',', '.', ':', '\u{2013}', '-']);
            // A lone number or weekday is no date, but a month after "end of" is.
            let lone = n == 1 && !candidate.contains(['/', '-', '.']);
            let found = (!lone).then(|| parse_date_near(candidate, near)).flatten().or_else(|| {
                // "the end of January": its last day.
                let before = i
                    .checked_sub(2)
                    .and_then(|j| words.get(j..i))
                    .map(|w| w.join(" ").to_lowercase());
                (n == 1 && before.as_deref() == Some("end of"))
                    .then(|| month_end(candidate, near))
                    .flatten()
            });
            if let Some(d) = found {
                if cue_before(i) {
                    return Some(d);
                }
                first.get_or_insert(d);
                break;
            }
        }
    }
    first
}

/// The last day of the named month, the next one from `near`.
fn month_end(month: &str, near: Option<NaiveDate>) -> Option<NaiveDate> {
    use chrono::Datelike;
    let near = near?;
    for year in [near.year(), near.year() + 1] {
        for f in ["%d %B %Y", "%d %b %Y"] {
            if let Ok(first) = NaiveDate::parse_from_str(&format!("1 {month} {year}"), f) {
                let next = first.checked_add_months(chrono::Months::new(1))?;
                let last = next.pred_opt()?;
                if last >= near {
                    return Some(last);
                }
            }
        }
    }
    None
}

/// Whether `s` reads as a person's name: two to four capitalised words, or a title and a name.
fn is_name(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    let title = |w: &str| {
        matches!(
            w.trim_end_matches('.'),
            "Dr" | "Mr" | "Mrs" | "Ms" | "Miss" | "Mx" | "Prof" | "Sister" | "Nurse"
        )
    };
    let capitalised = |w: &str| {
        let mut cs = w.chars();
        cs.next().is_some_and(char::is_uppercase)
            && (cs
                .clone()
                .next()
                .is_none_or(|c| c.is_lowercase() || c == '.' || c == '\'' || c == '-'))
            && w.chars().filter(|c| c.is_alphabetic()).count() >= 1
    };
    (2..=4).contains(&words.len()) && words.iter().all(|w| capitalised(w) || title(w))
}

/// The owner written before a colon ("Sam Patel: arrange the joint visit") or after the last dash ("arrange
/// the joint visit – Sam Patel, by Friday 12 February"), when it reads as a name.
fn owner_beside(text: &str) -> Option<String> {
    if let Some((head, _)) = text.split_once(':') {
        if is_name(head.trim()) {
            return Some(head.trim().to_string());
        }
    }
    let tail = text
        .rsplit(['\u{2013}', '\u{2014}'])
        .next()
        .filter(|t| t.len() < text.len())
        .or_else(|| text.rsplit_once(" - ").map(|(_, t)| t))?;
    let tail = tail.split([',', ';', '(']).next().unwrap_or_default();
    let tail = tail
        .split(" by ")
        .next()
        .unwrap_or_default()
        .trim()
        .trim_end_matches('.');
    // "… – Farah, no date agreed": a first name alone after the dash.
    const NOT_NAMES: &[&str] = &[
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Ongoing",
        "Done",
        "Complete",
        "Completed",
        "Urgent",
        "Asap",
        "Today",
        "Tomorrow",
        "Weekly",
        "Daily",
        "Monthly",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let first_name = !tail.contains(' ')
        && tail.chars().count() >= 3
        && tail.chars().next().is_some_and(char::is_uppercase)
        && tail.chars().skip(1).all(char::is_lowercase)
        && !tail.ends_with("ing")
        && !NOT_NAMES.contains(&tail);
    (is_name(tail) || first_name).then(|| tail.to_string())
}

/// A person's name at the start of an action ("Grace Adeyemi to rebook…", "Housing officer (Paul Whitty)
/// to confirm…"): two to four capitalised words, or a title and a name; a role ("district nurse") or an
/// organisation ("ASC", "Willowbank") is not a name.
fn name_in(text: &str) -> Option<String> {
    // "(Paul Whitty)" anywhere before " to ".
    let head = text.split(" to ").next().unwrap_or_default();
    if let Some(inner) = head
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(n, _)| n.trim())
    {
        if is_name(inner) {
            return Some(inner.to_string());
        }
    }
    let head = head.trim().trim_end_matches([',', ':']);
    // "Grace Adeyemi – rebook…": the words before a dash.
    let head = head.split(['\u{2013}', '\u{2014}']).next().unwrap_or(head).trim();
    (text.contains(" to ") || text.contains('\u{2013}'))
        .then_some(())
        .filter(|_| is_name(head))
        .map(|_| head.to_string())
}

/// The name written beside an address: "Dr Priya Nair <priya.nair@nhs.net>", "Tom Reeve (tom@x)",
/// "ASC – Tom Reeve <tom@x> – start calls": the words just before the address, back to a dash, colon,
/// comma or the start.
fn name_before(text: &str, email: &str) -> Option<String> {
    let at = text.find(email)?;
    let before = text.get(..at)?.trim_end().trim_end_matches(['<', '(', '[', ' ', ',']);
    let from = before
        .char_indices()
        .rev()
        .find(|&(_, c)| matches!(c, '–' | '—' | ':' | ',' | ';' | '(' | '|'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let mut name = before.get(from..)?.trim();
    // "ASC - Tom Reeve": a spaced hyphen separates like a dash.
    if let Some((_, after)) = name.rsplit_once(" - ") {
        name = after.trim();
    }
    let name = name.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    let words = name.split_whitespace().count();
    (words > 0 && words <= 5 && name.chars().any(char::is_alphabetic)).then(|| name.to_string())
}

fn finish(lines: &[String], near: Option<NaiveDate>) -> Option<AgreedAction> {
    let mut action = AgreedAction::default();
    let mut text = Vec::new();
    for line in lines {
        if let Some(owner) = labelled_line(line, OWNER_LABELS) {
            match find_emails(owner).into_iter().next() {
                Some(email) => {
                    action.owner = name_before(owner, &email).or(action.owner.take());
                    action.owner_email = Some(email.to_lowercase());
                }
                None if !owner.is_empty() => action.owner = Some(owner.to_string()),
                None => {}
            }
        } else if let Some(due) = labelled_line(line, DUE_LABELS) {
            action.due = parse_date_near(due, near)
                .or_else(|| find_date(due, near))
                .or(action.due);
        } else {
            text.push(line.trim());
        }
    }
    let text = text.join(" ");
    let text = text.trim();
    if action.owner_email.is_none() {
        if let Some(email) = find_emails(text).into_iter().next() {
            action.owner = action.owner.or_else(|| name_before(text, &email));
            action.owner_email = Some(email.to_lowercase());
        }
    }
    if action.due.is_none() {
        action.due = find_date(text, near);
    }
    if action.owner.is_none() {
        action.owner = name_in(text).or_else(|| owner_beside(text));
    }
    action.text = if text.is_empty() {
        lines.join(" ").trim().to_string()
    } else {
        text.to_string()
    };
    (!action.text.is_empty()).then_some(action)
}

/// The agreed actions in the text under "Actions:". A list (bullets, numbers, one per line) gives one
/// action per item, with the lines under an item ("Owner: …", "Due: …", a wrapped line) belonging to it;
/// a single paragraph is split at semicolons.
pub fn parse_actions(text: &str, near: Option<NaiveDate>) -> Vec<AgreedAction> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // A table: cells separated by tabs or bars, or pasted from Word one cell a line under its header row.
    let rows: Vec<String> = match cells_per_line(&lines) {
        Some(rows) => rows,
        None => lines.iter().map(|l| bars_as_tabs(l)).collect(),
    };
    let row_refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    if let Some(rows) = table(&row_refs, near) {
        return rows;
    }
    let bulleted = lines.iter().filter(|l| strip_bullet(l).is_some()).count();
    let mut items: Vec<Vec<String>> = Vec::new();
    if bulleted > 0 {
        for line in &lines {
            match strip_bullet(line) {
                Some(rest) => items.push(vec![rest.to_string()]),
                None => match items.last_mut() {
                    Some(item) => item.push(line.trim().to_string()),
                    None => items.push(vec![line.trim().to_string()]),
                },
            }
        }
    } else {
        // Lines of their own, unless the lines are one paragraph wrapped by the mail client (a line that
        // is not an "Owner:"/"Due:" line and does not end a sentence runs on).
        let mut current: Vec<String> = Vec::new();
        for line in &lines {
            let sub = labelled_line(line, OWNER_LABELS).is_some() || labelled_line(line, DUE_LABELS).is_some();
            let runs_on = current
                .last()
                .is_some_and(|l| !l.ends_with(['.', ';', '!']) && !sub && starts_lower(line));
            if sub || runs_on {
                if let Some(last) = current.last_mut().filter(|_| runs_on) {
                    last.push(' ');
                    last.push_str(line.trim());
                } else {
                    current.push(line.trim().to_string());
                }
            } else {
                if !current.is_empty() {
                    items.push(std::mem::take(&mut current));
                }
                current.push(line.trim().to_string());
            }
        }
        if !current.is_empty() {
            items.push(current);
        }
        // One paragraph of several actions: "district nurse to book the visit; ASC to start calls".
        if items.len() == 1 && items[0].len() == 1 && items[0][0].contains(';') {
            let one = items.remove(0).remove(0);
            items = one
                .split(';')
                .map(|s| s.trim().trim_end_matches('.').trim())
                .filter(|s| !s.is_empty())
                .map(|s| vec![s.to_string()])
                .collect();
        }
    }
    items.iter().filter_map(|item| finish(item, near)).collect()
}

/// The column a table's heading names: what is to be done, who, or by when.
fn column_of(cell: &str) -> Option<usize> {
    let h = normalise_label(cell);
    let is = |names: &[&str]| names.iter().any(|n| h == *n);
    if is(&["action", "actions", "what", "agreed action", "agreed actions", "task"]) {
        Some(0)
    } else if is(&[
        "owner",
        "who",
        "lead",
        "responsible",
        "by whom",
        "action owner",
        "person",
        "owner(s)",
    ]) {
        Some(1)
    } else if is(&[
        "by",
        "due",
        "date",
        "by when",
        "when",
        "deadline",
        "timescale",
        "target",
        "target date",
        "due date",
        "completion date",
    ]) {
        Some(2)
    } else {
        None
    }
}

/// "| Owner | Action | By when |" as tab-separated cells.
fn bars_as_tabs(line: &str) -> String {
    if line.contains('|') && !line.contains('\t') {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\t")
    } else {
        line.to_string()
    }
}

/// `text` with a table of actions pasted into it (cells one a line under a header row, or a header row of
/// cells separated by tabs or bars) moved to the end under an "Actions:" heading, so that it is read as
/// the agreed actions and not as the outcome. Unchanged when it holds no such table, or when the table
/// is already under such a heading.
pub fn lift_table(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let is_header_row = |l: &str| {
        let cells: Vec<String> = bars_as_tabs(l).split('\t').map(str::to_string).collect();
        cells.len() >= 2
            && cells.iter().all(|c| column_of(c).is_some())
            && cells.iter().any(|c| column_of(c) == Some(0))
    };
    // Where each line's paragraph ends, in one pass from the end: the search below stays linear.
    let mut para_end = vec![lines.len(); lines.len()];
    for i in (0..lines.len()).rev() {
        para_end[i] = if lines[i].trim().is_empty() {
            i
        } else {
            para_end.get(i + 1).copied().unwrap_or(lines.len())
        };
    }
    let start = (0..lines.len()).find(|&i| {
        is_header_row(lines[i])
            || (column_of(lines[i]).is_some()
                && (i == 0 || column_of(lines[i - 1]).is_none())
                && cells_per_line(lines.get(i..para_end[i]).unwrap_or_default()).is_some())
    });
    let Some(start) = start else {
        return text.to_string();
    };
    let heading_above = start > 0
        && lines
            .get(..start)
            .unwrap_or_default()
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| {
                normalise_label(l).starts_with("action") || normalise_label(l).starts_with("agreed action")
            });
    if heading_above {
        return text.to_string();
    }
    let end = para_end.get(start).copied().unwrap_or(lines.len());
    let mut out: Vec<&str> = lines.get(..start).unwrap_or_default().to_vec();
    out.extend(lines.get(end..).unwrap_or_default());
    let mut s = out.join("\n").trim_end().to_string();
    s.push_str("\n\nActions:\n");
    s.push_str(&lines.get(start..end).unwrap_or_default().join("\n"));
    s
}

/// A Word table pasted into plain text: each cell on a line of its own, the header row first ("Owner",
/// "Action", "By when", then three cells a row). The rows as tab-separated lines.
fn cells_per_line(lines: &[&str]) -> Option<Vec<String>> {
    let width = lines.iter().take(4).take_while(|l| column_of(l).is_some()).count();
    let header = lines.get(..width)?;
    let mut seen: Vec<usize> = header.iter().filter_map(|l| column_of(l)).collect();
    seen.sort_unstable();
    seen.dedup();
    if width < 2 || seen.len() != width || !seen.contains(&0) {
        return None;
    }
    let cells = lines.get(width..)?;
    if cells.is_empty() || cells.len() % width != 0 {
        return None;
    }
    Some(
        lines
            .chunks(width)
            .map(|row| row.iter().map(|c| c.trim()).collect::<Vec<_>>().join("\t"))
            .collect(),
    )
}

/// Actions as a table (an HTML or Word table, read as tab-separated lines) under a heading row naming
/// its columns: "Action | Owner | By".
fn table(lines: &[&str], near: Option<NaiveDate>) -> Option<Vec<AgreedAction>> {
    let header: Vec<String> = lines.first()?.split('\t').map(normalise_label).collect();
    if header.len() < 2 {
        return None;
    }
    let col = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h == n || h.starts_with(n)))
    };
    let what = col(&["action", "what", "agreed action", "task"])?;
    let who = col(&["owner", "who", "lead", "responsible", "by whom", "action owner"]);
    let when = col(&[
        "by",
        "due",
        "date",
        "by when",
        "when",
        "deadline",
        "timescale",
        "target",
    ]);
    if who.is_none() && when.is_none() {
        return None;
    }
    let mut out = Vec::new();
    for line in lines.iter().skip(1) {
        let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
        let Some(text) = cells.get(what).filter(|t| !t.is_empty()) else {
            continue;
        };
        let mut action = AgreedAction {
            text: text.to_string(),
            ..AgreedAction::default()
        };
        if let Some(owner) = who.and_then(|i| cells.get(i)).filter(|o| !o.is_empty()) {
            action.owner_email = find_emails(owner).into_iter().next().map(|e| e.to_lowercase());
            // "Daniel Osei, Social Worker (daniel.osei@…)": the name is what comes first.
            let name = owner.split([',', '(', '<']).next().unwrap_or_default().trim();
            action.owner = (!name.is_empty() && !name.contains('@')).then(|| name.to_string());
        }
        if let Some(due) = when.and_then(|i| cells.get(i)) {
            action.due = parse_date_near(due, near).or_else(|| find_date(due, near));
        }
        out.push(action);
    }
    (!out.is_empty()).then_some(out)
}

fn starts_lower(line: &str) -> bool {
    line.trim_start().chars().next().is_some_and(char::is_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    fn actions(text: &str) -> Vec<AgreedAction> {
        parse_actions(text, Some(d("2027-01-10")))
    }

    fn date_in(text: &str) -> Option<NaiveDate> {
        find_date(text, Some(d("2027-01-10")))
    }

    #[test]
    fn dates_without_a_year_and_month_ends() {
        assert_eq!(date_in("by Friday 15 January"), Some(d("2027-01-15")));
        assert_eq!(date_in("by the end of January"), Some(d("2027-01-31")));
        assert_eq!(date_in("by 5/2/27"), Some(d("2027-02-05")));
        assert_eq!(date_in("in 2 weeks"), None);
        assert_eq!(find_date("by Friday 15 January", None), None);
    }

    #[test]
    fn owners_named_without_an_address() {
        let a = actions("1. Grace Adeyemi to rebook hospital transport\n2. Housing officer (Paul Whitty) to confirm the gas supply\n3. district nurse to book the joint visit\n4. ASC to start calls");
        assert_eq!(a[0].owner.as_deref(), Some("Grace Adeyemi"));
        assert_eq!(a[1].owner.as_deref(), Some("Paul Whitty"));
        assert_eq!(a[2].owner, None);
        assert_eq!(a[3].owner, None);
    }

    #[test]
    fn a_table_of_actions() {
        let a = actions("Action\tOwner\tBy\nMental capacity assessment\tDaniel Osei, Social Worker (daniel.osei@trafford.gov.uk)\t20/01/2027\nSend the audits\tCare home manager\t22 Jan 2027");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].owner.as_deref(), Some("Daniel Osei"));
        assert_eq!(a[0].owner_email.as_deref(), Some("daniel.osei@trafford.gov.uk"));
        assert_eq!(a[1].due, Some(d("2027-01-22")));
    }

    #[test]
    fn a_bulleted_list_with_owners_and_dates() {
        let a = actions(
            "- Dr Priya Nair (priya.nair@nhs.net) to review the medication by 12/02/2027\n\
             • ASC – Tom Reeve <tom.reeve@trafford.gov.uk> – start four calls a day – by 15 February 2027\n\
             3. Ward to send the discharge summary",
        );
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].owner_email.as_deref(), Some("priya.nair@nhs.net"));
        assert_eq!(a[0].owner.as_deref(), Some("Dr Priya Nair"));
        assert_eq!(a[0].due, Some(d("2027-02-12")));
        assert_eq!(a[1].owner.as_deref(), Some("Tom Reeve"));
        assert_eq!(a[1].due, Some(d("2027-02-15")));
        assert_eq!(a[2].owner_email, None);
        assert_eq!(a[2].due, None);
        assert!(a[2].text.contains("discharge summary"));
    }

    #[test]
    fn owner_and_due_lines_belong_to_their_action() {
        let a = actions(
            "1. Joint visit to the adult\nOwner: Sam Smith <sam.smith@example.org>\nDue: 1st March 2027\n\
             2. Update the safeguarding plan\nOwner: team manager\n",
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].text, "Joint visit to the adult");
        assert_eq!(a[0].owner_email.as_deref(), Some("sam.smith@example.org"));
        assert_eq!(a[0].due, Some(d("2027-03-01")));
        assert_eq!(a[1].owner.as_deref(), Some("team manager"));
    }

    #[test]
    fn word_tables_pasted_as_text_and_bars() {
        let a = actions("Owner\nAction\nBy when\nSam Patel\nJoint visit\n12/02/2027\nASC duty team\nCapacity assessment\n19/02/2027");
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[0].text, "Joint visit");
        assert_eq!(a[0].owner.as_deref(), Some("Sam Patel"));
        assert_eq!(a[1].due, Some(d("2027-02-19")));
        let a = actions("| Action | Owner | By when |\n| Joint visit | Sam Patel | 12/02/2027 |");
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].owner.as_deref(), Some("Sam Patel"));
    }

    #[test]
    fn owners_first_or_last() {
        let a = actions("- Sam Patel: arrange the joint visit by 12/02/2027\n- book the capacity assessment \u{2013} Ola Bello, by Friday 19 February 2027\n- review the care plan");
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].owner.as_deref(), Some("Sam Patel"));
        assert_eq!(a[1].owner.as_deref(), Some("Ola Bello"));
        assert_eq!(a[1].due, Some(d("2027-02-19")));
        assert_eq!(
            (a[2].owner.as_ref(), a[2].due),
            (None, None),
            "kept without owner or date"
        );
    }

    #[test]
    fn one_paragraph_split_at_semicolons() {
        let a = actions(
            "district nurse to book the joint visit; ASC to start four calls a day from 11 January; ward to send the discharge summary to the GP.",
        );
        assert_eq!(a.len(), 3);
        assert!(a[1].text.starts_with("ASC to start"));
    }

    #[test]
    fn a_wrapped_line_runs_on() {
        let a = actions("Sam to arrange a best interests meeting with the family and\nthe GP by 3 March 2027");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].due, Some(d("2027-03-03")));
    }

    #[test]
    fn dates_after_a_cue_win() {
        assert_eq!(
            date_in("agreed on 1 February 2027, visit by 12 February 2027"),
            Some(d("2027-02-12"))
        );
        assert_eq!(date_in("no date here"), None);
        assert_eq!(date_in("Monday 1 March 2027"), Some(d("2027-03-01")));
    }
}
