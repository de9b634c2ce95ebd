//! Reading a command from a reply: the new text at the top, above the quoted message and the signature as
//! Outlook, Gmail, Apple Mail, Thunderbird and mobile clients write them, and the command word that opens it.
//!
//! Commands: `RESOLVED` (outcome, agreed actions, review date), `ESCALATE` (the people at the next stage),
//! `EXTEND N` (working days, with the reason), `WITHDRAW`, `NOTE`, `IMPLEMENTED` (agreed actions done),
//! `STATUS`, `HELP` / `FORM`. Pure: text in, intent out.

use chrono::NaiveDate;
use serde::Serialize;

use super::actions::{find_date, parse_actions, strip_bullet};
use super::case::Person;
use super::intake::{find_emails, is_mobile_footer, normalise_label};
use super::lifecycle::Command;

/// What a reply asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplyCommand {
    /// A change to the case.
    Apply {
        command: Command,
    },
    Status,
    Help,
    Form,
    /// The record updated from the board's form sent back filled in (the text below the word, or a Word
    /// document attached): the shell reads it with the board's labels.
    Update,
    /// A reply to the bot's challenge: apply the command it holds.
    Confirm,
    /// Board staff, in reply to a record held from an organisation the board does not know yet: open it
    /// (and trust the organisation's domain from now on).
    Approve,
    /// Board staff: do not open the held record; the reason is told to its sender.
    Reject {
        reason: String,
    },
    /// A command word written with doubt ("RESOLVED??", "Resolved?", "I think we can resolve this"):
    /// neither applied nor called unknown; the sender is asked whether they meant it.
    Unsure {
        /// The command they seem to mean (`RESOLVED`).
        word: String,
    },
}

/// The question that answers a command written with doubt: "Did you mean to resolve case X?".
pub fn unsure_question(word: &str, reference: &str) -> String {
    let (verb, with) = match word {
        "RESOLVED" => ("resolve", "RESOLVED at the top and the outcome under it"),
        "ESCALATE" => (
            "escalate",
            "ESCALATE at the top and the name and email of each person at the next stage",
        ),
        "WITHDRAW" => ("withdraw", "WITHDRAW at the top and the reason"),
        "EXTEND" => (
            "extend the deadline of",
            "EXTEND and the number of working days, then the reason",
        ),
        "IMPLEMENTED" => ("record the agreed actions as done for", "IMPLEMENTED"),
        other => {
            return format!(
                "Did you mean {other} for case {reference}? If so, reply {other}; nothing has been changed yet."
            )
        }
    };
    format!("Did you mean to {verb} case {reference}? If so, reply with {with}. Nothing has been changed yet.")
}

/// A reply as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyIntent {
    /// The command word as written at the top (`RESOLVED`), upper-cased, or `None`.
    pub command_word: Option<String>,
    /// The new text: quotes and signature removed.
    pub reply_text: String,
    /// The command, or what is wrong with it (to tell the sender, with the right form).
    pub command: Result<ReplyCommand, String>,
}

/// "wrote" in the attribution lines of the mail clients people use, in the languages they use them in.
const WROTE: &[&str] = &[
    "wrote",
    "schrieb",
    "a écrit",
    "écrit",
    "написал",
    "написала",
    "napisał",
    "napisała",
    "skrev",
    "escribió",
    "ha scritto",
    "scrisse",
    "schreef",
    "kirjoitti",
    "yazdı",
    "írta",
    "napsal",
    "pisze",
    "ysgrifennodd",
];

/// The first words of the header lines a client puts above a quoted message ("From:", "Von:", "De :"…).
const FROM_KEYS: &[&str] = &[
    "from",
    "von",
    "de",
    "från",
    "van",
    "od",
    "от",
    "da",
    "fra",
    "lähettäjä",
    "kimden",
    "oddíl",
];
const HEADER_KEYS: &[&str] = &[
    "sent",
    "date",
    "to",
    "cc",
    "subject",
    "gesendet",
    "datum",
    "an",
    "betreff",
    "envoyé",
    "à",
    "objet",
    "skickat",
    "till",
    "ämne",
    "verzonden",
    "aan",
    "onderwerp",
    "wysłano",
    "do",
    "temat",
    "отправлено",
    "кому",
    "тема",
    "дата",
    "inviato",
    "a",
    "oggetto",
    "enviado",
    "para",
    "asunto",
    "fecha",
    "sendt",
    "emne",
    "til",
    "lähetetty",
    "vastaanottaja",
    "aihe",
];

/// The key of a "Key: value" header line, lower case ("De : x" and "Von: x" alike), if the line is one.
fn header_key(line: &str) -> Option<String> {
    let (key, _) = line.trim().split_once(':')?;
    let key = key.trim().to_lowercase();
    (!key.is_empty() && key.chars().count() <= 14 && !key.contains(' ')).then_some(key)
}

/// Whether the text (one line, or a wrapped one joined) is an attribution line: "On Tue, 5 Jan 2027 at
/// 10:00, Sam <sam@x> wrote:", "Am 5. Jan. 2027 um 10:00 schrieb …:", "Le … a écrit :", "05.01.2027 10:00
/// пользователь … написал:", "… wrote on 05/01/2027 10:00:00:", or Gmail's verb-less "вт, 5 янв. 2027 г.
/// в 10:00, Name <addr>:".
fn is_attribution(text: &str) -> bool {
    let t = text.trim();
    if !t.ends_with(':') || t.chars().count() > 300 {
        return false;
    }
    let lower = t.to_lowercase();
    let marked = lower.contains('@') || lower.chars().any(|c| c.is_ascii_digit());
    let body = lower.trim_end_matches(':').trim_end();
    marked && (WROTE.iter().any(|w| lower.contains(w)) || body.ends_with('>'))
}

/// Whether line `i` starts what a client puts above the quoted message.
fn starts_quote(lines: &[&str], i: usize) -> bool {
    let t = lines.get(i).map_or("", |l| l.trim());
    let lower = t.to_lowercase();
    // "-----Original Message-----", "----- Original Message -----", "-------- Original message --------",
    // "-----Ursprüngliche Nachricht-----", "-----Message d'origine-----": dashes round words.
    let dashed =
        t.starts_with("---") && t.ends_with("---") && t.trim_matches('-').trim().chars().any(char::is_alphabetic);
    // Outlook's underscore rule.
    let rule = t.chars().count() >= 10 && t.chars().all(|c| c == '_');
    // A "From:" line (in any of the clients' languages) with more header lines below it.
    let header_block = header_key(t).is_some_and(|k| FROM_KEYS.contains(&k.as_str()))
        && lines
            .iter()
            .skip(i + 1)
            .take(4)
            .filter_map(|l| header_key(l))
            .any(|k| HEADER_KEYS.contains(&k.as_str()));
    // An attribution line, maybe wrapped over two or three lines.
    // A one-line reply directly above the attribution ("RESOLVED", "Hello" and no blank line, as Apple
    // Mail and Gmail for Android write them) is not part of it: the attribution starts on the next line
    // when that line is one alone and this line holds no date, time or address of its own.
    let own_words = !t.contains('@')
        && (!t.chars().any(|c| c.is_ascii_digit())
            || t.ends_with(['.', '!', '?'])
            || WORDS.iter().any(|(w, _)| t.to_uppercase().starts_with(w)));
    let attribution = (1..=3).any(|n| {
        let joined: Vec<&str> = lines.iter().skip(i).take(n).map(|l| l.trim()).collect();
        let later_alone = n > 1 && {
            let rest: Vec<&str> = joined.iter().skip(1).copied().collect();
            is_attribution(&rest.join(" "))
        };
        joined.len() == n
            && joined.iter().all(|l| !l.is_empty())
            && joined.iter().skip(1).all(|l| !l.starts_with('>'))
            && !(later_alone && own_words)
            && is_attribution(&joined.join(" "))
    }) && !t.starts_with('>');
    dashed
        || rule
        || header_block
        || attribution
        || t.starts_with('>')
        || lower.starts_with("begin forwarded message")
        || lower.starts_with("---------- forwarded message")
}

/// Whether line `i` ends the new text as a signature or mobile footer does.
fn starts_signature(line: &str) -> bool {
    let t = line.trim();
    line == "-- " || t == "--" || is_mobile_footer(t)
}

/// Whether `t` (a trimmed line) is a sign-off: "Regards", "Many thanks,", "Thanks Farah", "Best wishes -
/// Sam", "Cheers". A sign-off ends the new text.
pub fn is_sign_off_line(t: &str) -> bool {
    const OFFS: &[&str] = &[
        "kind regards",
        "best regards",
        "warm regards",
        "warmest regards",
        "many thanks",
        "thanks again",
        "thanks",
        "thank you",
        "thankyou",
        "thx",
        "best wishes",
        "all the best",
        "with thanks",
        "yours sincerely",
        "yours faithfully",
        "regards",
        "kr",
        "best",
        "cheers",
        "ta",
        "speak soon",
    ];
    let lower = t.trim().to_lowercase();
    let lower = lower.trim_end_matches(['.', ',', '!', ' ']);
    OFFS.iter().any(|off| {
        let Some(rest) = lower.strip_prefix(off) else {
            return false;
        };
        if rest.is_empty() {
            return true;
        }
        // "Thanks, Farah", "Regards - Sam Patel": the sign-off and a name (up to three capitalised words as
        // written), nothing more; "Best interests meeting held" is no sign-off.
        let rest = rest.trim_start_matches([',', ' ', '-', '\u{2013}', '\u{2014}']);
        let words = rest.split_whitespace().count();
        let written = t.trim().trim_end_matches(['.', ',', '!', ' ']);
        let as_written = written
            .get(written.len().saturating_sub(rest.len())..)
            .unwrap_or_default();
        rest.len() < lower.len() - off.len()
            && (1..=3).contains(&words)
            && rest
                .chars()
                .all(|c| c.is_alphabetic() || c == ' ' || c == '-' || c == '\'')
            && as_written
                .split_whitespace()
                .all(|w| w.chars().next().is_some_and(char::is_uppercase))
    })
}

/// Whether the lines after a sign-off read as what follows one: nothing, or a short signature (a name,
/// a title, an organisation, a phone), not more of the message ("Thank you Sam. / The review is on …").
fn only_signature_after(lines: &[&str]) -> bool {
    // Up to a disclaimer (all of which is disclaimer) or a mobile footer.
    let rest: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !crate::core::intake::values::is_disclaimer(l) && !is_mobile_footer(l))
        .filter(|l| !l.is_empty())
        .collect();
    rest.len() <= 8
        && rest
            .iter()
            .all(|l| l.chars().count() <= 80 && !(l.ends_with(['.', '?', '!']) && l.split_whitespace().count() > 6))
}

/// Whether `t` reads as a line of a signature block: a name alone, a job title or organisation, a phone
/// number, an address, pronouns, a web or email address, or parts joined by "|".
fn is_signature_line(t: &str) -> bool {
    let t = t.trim();
    if t.is_empty() {
        return true;
    }
    let lower = t.to_lowercase();
    let digits = t.chars().filter(char::is_ascii_digit).count();
    let words = t.split_whitespace().count();
    let capitalised = t.split_whitespace().all(|w| {
        w.chars().next().is_some_and(|c| c.is_uppercase() || !c.is_alphabetic())
            || matches!(w, "of" | "and" | "&" | "for" | "the" | "at")
    });
    let sentence = t.ends_with(['.', '?', '!']) && words > 4;
    !sentence
        && (t.contains(" | ")
            || digits >= 6
            || t.contains('@')
            || lower.starts_with("www.")
            || lower.starts_with("http")
            || lower.contains("pronouns")
            || lower.starts_with("tel")
            || lower.starts_with("mob")
            || lower.starts_with("phone")
            || lower.starts_with("direct")
            || lower.starts_with("ext")
            || (words <= 8 && capitalised && !t.ends_with(':')))
}

/// Whether `t` is a name alone on its line: one to four capitalised words, nothing else.
fn is_name_alone(t: &str) -> bool {
    let words: Vec<&str> = t.split_whitespace().collect();
    (1..=4).contains(&words.len())
        && words.iter().all(|w| {
            let w = w.trim_end_matches([',', '.']);
            w.chars().next().is_some_and(char::is_uppercase)
                && w.chars().all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '.'))
                && !w.chars().skip(1).any(char::is_uppercase)
        })
        && !words
            .first()
            .is_some_and(|w| WORDS.iter().any(|(c, _)| w.eq_ignore_ascii_case(c)))
}

/// The new text without its sign-off and what follows it, a disclaimer, or a signature block at its end
/// (a name alone, then job title, organisation, phone: a paragraph of its own, or a single name on the
/// last line).
pub fn without_sign_off(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate().skip(1) {
        let t = line.trim();
        let signs_off = is_sign_off_line(t) && only_signature_after(lines.get(i + 1..).unwrap_or_default());
        if signs_off || crate::core::intake::values::is_disclaimer(t) {
            end = i;
            break;
        }
    }
    let mut kept: Vec<&str> = lines.get(..end).unwrap_or_default().to_vec();
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    // A signature block: the last paragraph, opening with a name alone, every line of it signature-like.
    let start = kept.iter().rposition(|l| l.trim().is_empty()).map_or(0, |i| i + 1);
    if start > 0 {
        let para = kept.get(start..).unwrap_or_default();
        // Not a label and its value ("Review Date / 1 March 2027").
        let labelled = para.first().is_some_and(|l| {
            let l = l.to_lowercase();
            [
                "review",
                "date",
                "outcome",
                "action",
                "due",
                "owner",
                "outstanding",
                "stage",
                "reason",
            ]
            .iter()
            .any(|w| l.contains(w))
        });
        if !labelled
            && para.first().is_some_and(|l| is_name_alone(l.trim()))
            && para.iter().all(|l| is_signature_line(l))
        {
            kept.truncate(start); // byte-slice: a Vec of lines, cut at a line index
        }
    }
    // "NOTE the GP has written\nFarah": one word alone on the last line, under a message of its own (not
    // the one word of a message: "WITHDRAW\nDuplicate", "RESOLVED\nAgreed.").
    if kept.len() >= 2 {
        let said = kept
            .get(..kept.len() - 1)
            .unwrap_or_default()
            .iter()
            .flat_map(|l| l.split_whitespace())
            .count();
        if let Some(last) = kept.last().map(|l| l.trim()) {
            let one_word = last.split_whitespace().count() == 1 && !last.ends_with(['.', '!', ':']);
            if is_name_alone(last) && one_word && said >= 4 {
                kept.pop();
            }
        }
    }
    kept.join("\n").trim().to_string()
}

/// The new text of a reply: everything above the first quote header, quoted line or signature. When
/// nothing is above the quote (a bottom-posted reply, as Thunderbird can be set to write), the unquoted
/// text below it.
pub fn new_text(body: &str) -> String {
    let body = body.replace("\r\n", "\n").replace(['\r', '\0'], "\n");
    // Invisible characters some clients put at the start of lines (iPhone's quote, Outlook's paragraphs).
    let body = body.replace(['\u{200b}', '\u{feff}', '\u{200e}', '\u{200f}'], "");
    let lines: Vec<&str> = body.lines().collect();
    let end = (0..lines.len())
        .find(|&i| starts_quote(&lines, i) || starts_signature(lines.get(i).copied().unwrap_or_default()))
        .unwrap_or(lines.len());
    let top = lines.get(..end).unwrap_or_default().join("\n").trim().to_string();
    if !top.is_empty() || end == lines.len() {
        return top;
    }
    // Bottom-posted: past the attribution (up to three lines) and the quoted lines, up to a signature or
    // the next quote.
    let first_quoted =
        (end..lines.len().min(end + 4)).find(|&i| lines.get(i).is_some_and(|l| l.trim().starts_with('>')));
    let Some(mut i) = first_quoted else {
        return top;
    };
    while lines
        .get(i)
        .is_some_and(|l| l.trim().is_empty() || l.trim().starts_with('>'))
    {
        i += 1;
    }
    let rest: Vec<&str> = lines
        .iter()
        .skip(i)
        .take_while(|l| !l.trim().starts_with('>') && !starts_signature(l))
        .copied()
        .collect();
    rest.join("\n").trim().to_string()
}

const WORDS: &[(&str, &str)] = &[
    ("RESOLVED", "RESOLVED"),
    ("RESOLVE", "RESOLVED"),
    ("ESCALATE", "ESCALATE"),
    ("ESCALATED", "ESCALATE"),
    ("EXTEND", "EXTEND"),
    ("EXTENSION", "EXTEND"),
    ("WITHDRAW", "WITHDRAW"),
    ("WITHDRAWN", "WITHDRAW"),
    ("NOTE", "NOTE"),
    ("ADD", "ADD"),
    ("IMPLEMENTED", "IMPLEMENTED"),
    ("UPDATE", "UPDATE"),
    ("UPDATED", "UPDATE"),
    ("STATUS", "STATUS"),
    ("HELP", "HELP"),
    ("FORM", "FORM"),
    ("CONFIRM", "CONFIRM"),
    ("CONFIRMED", "CONFIRM"),
    ("APPROVE", "APPROVE"),
    ("APPROVED", "APPROVE"),
    ("REJECT", "REJECT"),
    ("REJECTED", "REJECT"),
];

/// The commands that change a case: written with doubt, they are asked about, not applied.
const CHANGES: &[&str] = &["RESOLVED", "ESCALATE", "EXTEND", "WITHDRAW", "IMPLEMENTED"];

/// A command meant but hedged in the first sentence: "I think we can resolve this", "Can we escalate?",
/// "Maybe we should withdraw". The command, if a hedge and a command's verb are both there.
fn hedged_command(first_line: &str) -> Option<&'static str> {
    let lower = first_line.to_lowercase().replace('\u{2019}', "'");
    let sentence = lower.split(['.', '!']).next().unwrap_or_default();
    const HEDGES: &[&str] = &[
        "i think",
        "i believe",
        "i guess",
        "maybe",
        "perhaps",
        "probably",
        "possibly",
        "might",
        "could we",
        "can we",
        "should we",
        "shall we",
        "do we",
        "i wonder",
        "are we",
        "is it",
        "ready to",
        "hopefully",
        "not sure",
        "unsure",
        "?",
    ];
    if !HEDGES.iter().any(|h| sentence.contains(h)) {
        return None;
    }
    let words: Vec<&str> = sentence
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .collect();
    // "not resolved", "can't be resolved yet": no.
    let negated = words.iter().any(|w| matches!(*w, "not" | "t" | "never" | "yet" | "no"));
    if negated && !sentence.contains("not sure") {
        return None;
    }
    words.iter().find_map(|w| {
        if w.starts_with("resolv") {
            Some("RESOLVED")
        } else if w.starts_with("escalat") {
            Some("ESCALATE")
        } else if w.starts_with("withdr") {
            Some("WITHDRAW")
        } else if *w == "extend" || *w == "extension" {
            Some("EXTEND")
        } else {
            None
        }
    })
}

/// How each command is written, for replies that get one wrong.
pub const COMMAND_HELP: &str = "\
RESOLVED — then the outcome; then \"Actions:\" one a line with who and by when
           (\"- Sam Smith <sam.smith@example.org> to visit by 1 March 2027\"), \"Outstanding issues:\"
           and how they will be pursued, and \"Review date: 2027-03-01\"
ESCALATE — then the name and email of each person taking it on at the next stage, or their role where
           the board keeps a directory (\"Head of Safeguarding\"); add \"stage 4\" and \"immediate risk\" to skip
           stages where the policy allows it
EXTEND 3 — the number of working days, then the reason the timescale cannot be met
WITHDRAW — then the reason
NOTE — then the note to add to the case record
ADD — then the name and email of each person to bring in at the current stage (no escalation)
IMPLEMENTED — the agreed actions have been carried out (optionally say how)
UPDATE — then the form's lines you change (\"Views of the adult at risk: …\"), or attach the record
         document edited: the record is updated
STATUS — where the case stands and what is due next
HELP — this list
FORM — the board's record form for this case, filled in so far, and its blank form
CONFIRM — in reply to the service's request to confirm a command, to apply it";

/// [`COMMAND_HELP`] one command an item: the lines wrapped under a command joined to it.
pub fn command_items() -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for line in COMMAND_HELP.lines() {
        match items.last_mut() {
            Some(last) if line.starts_with(' ') => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => items.push(line.to_string()),
        }
    }
    items
}

/// A date as people write one: 2027-02-01, 01/02/2027, 1 February 2027, 1st Feb 2027, Monday 1 February 2027.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    parse_date_near(s, None)
}

/// [`parse_date`], and with `near` (the day the email was written) also a date without its year ("by
/// Friday 15 January", "29 Jan"): the first such day from a week before `near` on.
pub fn parse_date_near(s: &str, near: Option<NaiveDate>) -> Option<NaiveDate> {
    use chrono::Datelike;
    let s = s.trim().trim_end_matches(['.', ',']);
    // Two-digit years ("5/2/27") first: chrono reads "27" as the year 27 with a four-digit pattern.
    for f in ["%d/%m/%y", "%d.%m.%y", "%d-%m-%y"] {
        let two_digit_year = s.rsplit(['/', '.', '-']).next().is_some_and(|y| y.len() == 2);
        if two_digit_year {
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return Some(d);
            }
        }
    }
    for f in [
        "%Y-%m-%d",
        "%d/%m/%Y",
        "%d-%m-%Y",
        "%d.%m.%Y",
        "%d %B %Y",
        "%d %b %Y",
        "%A %d %B %Y",
        "%a %d %b %Y",
        "%B %d %Y",
        "%b %d %Y",
    ] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            // A date people write about a case: not "+262142-12-31".
            return (1900..=2200).contains(&d.year()).then_some(d);
        }
    }
    if let Some(near) = near {
        // No year: try the written day and month in the year of writing and the next.
        for year in [near.year(), near.year() + 1] {
            for f in [
                "%d %B %Y",
                "%d %b %Y",
                "%A %d %B %Y",
                "%a %d %b %Y",
                "%d/%m/%Y",
                "%B %d %Y",
            ] {
                if let Ok(d) = NaiveDate::parse_from_str(&format!("{s} {year}").replace("/ ", "/"), f) {
                    if d >= near - chrono::Duration::days(7) {
                        return Some(d);
                    }
                }
            }
            if s.contains('/') && s.matches('/').count() == 1 {
                if let Ok(d) = NaiveDate::parse_from_str(&format!("{s}/{year}"), "%d/%m/%Y") {
                    if d >= near - chrono::Duration::days(7) {
                        return Some(d);
                    }
                }
            }
        }
    }
    // "1st February 2027"
    let cleaned: String = s
        .split_whitespace()
        .map(|w| {
            let t = w.trim_end_matches(',');
            // "1st", "22nd", "3rd", "4th": the digits before an ordinal suffix (sliced only where the
            // suffix is ASCII, so never inside a character).
            let digits = ["st", "nd", "rd", "th", "ST", "ND", "RD", "TH"]
                .iter()
                .find_map(|suffix| t.strip_suffix(suffix))
                .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            digits.unwrap_or(t).to_string()
        })
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned != s {
        return parse_date_near(&cleaned, near);
    }
    None
}

/// Lines after the command word: `(label, value)` for "Label: value" lines, the rest as free text.
fn labelled(rest: &str, labels: &[(&str, &[&str])]) -> (Vec<(String, String)>, String) {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut free = Vec::new();
    let mut current: Option<usize> = None;
    let mut after_blank = false;
    for line in rest.lines() {
        let hit = line
            .split_once(':')
            .and_then(|(l, v)| {
                let n = normalise_label(l);
                labels
                    .iter()
                    .find(|(_, names)| names.contains(&n.as_str()))
                    .map(|(key, _)| {
                        (
                            key.to_string(),
                            v.trim().trim_start_matches(['*', '_']).trim().to_string(),
                        )
                    })
            })
            .or_else(|| {
                // A heading on a line of its own, without the colon ("Agreed actions").
                let n = normalise_label(line);
                labels
                    .iter()
                    .find(|(_, names)| names.contains(&n.as_str()))
                    .map(|(key, _)| (key.to_string(), String::new()))
            })
            .or_else(|| {
                // A label of two words or more and its value, without the colon ("Review date 1 Feb 2027").
                let words: Vec<&str> = line.split_whitespace().collect();
                labels.iter().find_map(|(key, names)| {
                    names.iter().filter(|n| n.contains(' ')).find_map(|name| {
                        let len = name.split(' ').count();
                        let head = words.get(..len)?.join(" ");
                        (normalise_label(&head) == *name && words.len() > len)
                            .then(|| (key.to_string(), words.get(len..).unwrap_or_default().join(" ")))
                    })
                })
            });
        // A blank line ends a labelled value, unless a list item follows it (a list spaced out by blank
        // lines is still one list).
        let so_far = current
            .and_then(|i| found.get(i))
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        // The next row of a table (cells as tabs) continues it too.
        let next_row = line.contains('\t') && so_far.lines().last().is_some_and(|l| l.contains('\t'));
        if after_blank && !so_far.is_empty() && !line.trim().is_empty() && strip_bullet(line).is_none() && !next_row {
            current = None;
        }
        after_blank = line.trim().is_empty();
        // A heading alone that repeats the one being read (a table's "Action" column under "Actions:") is a
        // line of it.
        let hit =
            hit.filter(|(k, v)| !(v.is_empty() && current.and_then(|i| found.get(i)).is_some_and(|(ck, _)| ck == k)));
        match hit {
            // "Action: … / Owner: … / Due: …" blocks, one after another: each is an item of the one list.
            Some((k, v))
                if k == "actions" && !v.is_empty() && line.trim_start().to_lowercase().starts_with("action:") =>
            {
                let item = format!("- {v}");
                match found.iter().position(|(fk, _)| fk == "actions") {
                    Some(i) => {
                        let existing = &mut found[i].1;
                        if !existing.is_empty() {
                            existing.push('\n');
                        }
                        existing.push_str(&item);
                        current = Some(i);
                    }
                    None => {
                        found.push((k, item));
                        current = Some(found.len() - 1);
                    }
                }
            }
            Some(kv) => {
                found.push(kv);
                current = Some(found.len() - 1);
            }
            None => match current {
                Some(_) if line.trim().is_empty() => {}
                Some(i) => {
                    let v = &mut found[i].1;
                    if !v.is_empty() {
                        v.push('\n');
                    }
                    v.push_str(line.trim());
                }
                _ => {
                    current = None;
                    free.push(line);
                }
            },
        }
    }
    (found, free.join("\n").trim().to_string())
}

/// The longest stretch of a line read for the name beside an address: a name and its address are far
/// shorter, and a longer stretch would be searched again for every address in it.
const MAX_NAME_STRETCH: usize = 1000;

/// The people named with their addresses in `text`, one a line or several to a line: the name is what is
/// left, before the first comma or semicolon and after the last colon ("Line manager: Lee Lead
/// <lee.lead@nhs.net>"), once the address is taken out.
fn people_in(text: &str) -> Vec<Person> {
    let mut people = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        // An address holds no comma, semicolon or colon, so the stretch where the name is can be found
        // before taking the address out, once for the line.
        let stretch = line.split([',', ';']).next().unwrap_or_default();
        let stretch = stretch.rsplit(':').next().unwrap_or(stretch);
        for email in find_emails(line) {
            if !seen.insert(email.to_ascii_lowercase()) {
                continue;
            }
            // A line of bounded length only: the name beside each address is looked for in it.
            let short_line = line.len() <= MAX_NAME_STRETCH;
            // "Escalate to stage 3 please - Dr Amara Okafor amara.okafor@nhs.net": the capitalised words
            // just before the address.
            let before = if short_line {
                line.get(..line.find(email.as_str()).unwrap_or(0)).unwrap_or_default()
            } else {
                ""
            };
            let before = before.trim_end().trim_end_matches(['<', '(', '[', ',', ':', '-', ' ']);
            // Not a role ("Team Manager", "Head of Service"), which people write between a name and its
            // address: "Joy Adeyemi-Clarke, Ward Manager (joy@…)", "Head of Service Jo Bloggs jo@…".
            let role_like = |n: &str| {
                let lower = n.to_lowercase();
                [
                    "manager", "service", "team", "head", "lead", "director", "officer", "worker", "nurse", "council",
                ]
                .iter()
                .any(|r| lower.split_whitespace().any(|w| w.trim_matches([',', '(', ')']) == *r))
            };
            let mut segments: Vec<&str> = before.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
            if segments.len() >= 2 && segments.last().is_some_and(|s| role_like(s)) {
                segments.pop();
            }
            let segment = segments.last().copied().unwrap_or_default();
            let mut trailing: Vec<&str> = segment
                .split_whitespace()
                .rev()
                .take_while(|w| {
                    let w = w.trim_matches('"');
                    w.chars().next().is_some_and(char::is_uppercase)
                        && w.chars().all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '.'))
                        && !WORDS.iter().any(|(c, _)| w.eq_ignore_ascii_case(c))
                })
                .take(4)
                .collect();
            if let Some(cut) = trailing.iter().position(|w| role_like(w)) {
                trailing.truncate(cut); // byte-slice: a Vec of words, cut at a word index
            }
            let beside = (trailing.len() >= 2).then(|| {
                trailing
                    .iter()
                    .rev()
                    .map(|w| w.trim_matches(['"', ',']))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let name = (stretch.len() <= MAX_NAME_STRETCH)
                .then(|| {
                    stretch
                        .replace(&format!("<{email}>"), "")
                        .replace(&format!("({email})"), "")
                        .replace(&email, "")
                })
                .map(|s| s.trim().trim_matches(|c: char| c == '-' || c == '"').trim().to_string())
                .filter(|s| !s.is_empty() && s.split_whitespace().count() <= 6);
            people.push(Person {
                email,
                name: beside.or(name),
                agency: None,
            });
        }
    }
    people
}

/// Where the command word ends: white space, punctuation, or a dash (`RESOLVED – joint visit agreed`).
fn is_word_end(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ':' | ',' | '.' | '-' | '!' | '?' | ';' | '*' | '_' | '\u{2013}' | '\u{2014}'
        )
}

/// Read the command at the top of a reply body.
pub fn parse_reply(body: &str) -> ReplyIntent {
    parse_reply_on(body, None)
}

/// [`parse_reply`] for a reply written on `written_on` (its Date header): dates without a year ("by
/// Friday 15 January") are read as the next such day.
pub fn parse_reply_on(body: &str, written_on: Option<NaiveDate>) -> ReplyIntent {
    let text = without_sign_off(&new_text(body));
    let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let first_word: String = first_line
        .trim()
        .trim_start_matches(['*', '_'])
        .split(is_word_end)
        .next()
        .unwrap_or_default()
        .to_uppercase();
    // "Status?" asks for the status; "Resolved?" asks a question and resolves nothing.
    let asked = first_line
        .trim()
        .trim_start_matches(['*', '_'])
        .chars()
        .skip(first_word.chars().count())
        .find(|c| !matches!(c, ' ' | '.' | '*' | '_' | '!'))
        == Some('?');
    let known = WORDS.iter().find(|(w, _)| *w == first_word);
    // "RESOLVED??", "Resolved?", "Resolved I think?": the writer is unsure; asked whether they meant it.
    // The first sentence, with the mark that ends it.
    let first_sentence = first_line
        .char_indices()
        .find(|&(_, c)| matches!(c, '.' | '!' | '?'))
        .map_or(first_line, |(i, c)| {
            first_line.get(..i + c.len_utf8()).unwrap_or(first_line)
        });
    let sentence_lower = first_sentence.to_lowercase();
    let hedged_line = first_sentence.split_whitespace().count() <= 8
        && (first_sentence.trim_end().ends_with('?')
            || ["i think", "i believe", "maybe", "perhaps", "probably", "not sure"]
                .iter()
                .any(|h| sentence_lower.contains(h)));
    if let Some(&(_, word)) = known.filter(|(_, c)| (asked || hedged_line) && CHANGES.contains(c)) {
        return ReplyIntent {
            command_word: Some(word.to_string()),
            reply_text: text,
            command: Ok(ReplyCommand::Unsure { word: word.to_string() }),
        };
    }
    let found = known.filter(|(_, command)| !asked || matches!(*command, "STATUS" | "HELP" | "FORM"));
    let Some(&(_, word)) = found else {
        // "I think we can resolve this now", "Shall we escalate?": a command meant, but not said.
        if let Some(word) = hedged_command(first_line) {
            return ReplyIntent {
                command_word: Some(word.to_string()),
                reply_text: text,
                command: Ok(ReplyCommand::Unsure { word: word.to_string() }),
            };
        }
        let problem = if first_word.is_empty() {
            "The reply has no new text above the quoted message, so there is no command to read.".to_string()
        } else {
            format!("\"{first_line}\" does not start with a command the bot knows.")
        };
        return ReplyIntent {
            command_word: None,
            reply_text: text,
            command: Err(problem),
        };
    };
    // The rest: what follows the word on its line, then the lines below.
    // What follows the word on its line. The word is found again in the line as written, by characters:
    // upper-casing can change a text's length in bytes ("ß" is "SS"), so its length is no index here.
    let line = first_line.trim().trim_start_matches(['*', '_']);
    let word_end = line
        .char_indices()
        .find(|&(_, c)| is_word_end(c))
        .map_or(line.len(), |(i, _)| i);
    let after_word = line
        .get(word_end..)
        .unwrap_or_default()
        .trim_start_matches([':', ' ', '-', '.', ',', '*', '_', '\u{2013}', '\u{2014}'])
        .trim();
    let below: String = text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n");
    let rest = if after_word.is_empty() {
        below.trim().to_string()
    } else {
        format!("{after_word}\n{below}").trim().to_string()
    };
    let apply = |command| Ok(ReplyCommand::Apply { command });
    let command = match word {
        "RESOLVED" => {
            // A Word table of actions pasted into the text, anywhere: read under "Actions".
            let rest = super::actions::lift_table(&rest);
            let (found, free) = labelled(
                &rest,
                &[
                    ("outcome", &["outcome", "agreed outcome", "outcomes", "agreed"]),
                    (
                        "actions",
                        &[
                            "actions",
                            "agreed actions",
                            "action",
                            "next steps",
                            "actions agreed",
                            "agreed actions (who, what, by when)",
                            "action plan",
                        ],
                    ),
                    (
                        "outstanding",
                        &[
                            "outstanding",
                            "outstanding issues",
                            "outstanding issue",
                            "how outstanding issues will be pursued",
                            "how any outstanding issues will be pursued",
                            "how outstanding issues will be progressed",
                            "how any outstanding issues will be progressed",
                            "outstanding issues will be pursued by",
                            "outstanding issues and how they will be pursued",
                            "any outstanding issues",
                            "unresolved issues",
                        ],
                    ),
                    (
                        "review",
                        &["review date", "review", "review by", "date of review", "review on"],
                    ),
                ],
            );
            let get = |k: &str| found.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            let outcome = get("outcome").filter(|s| !s.is_empty()).unwrap_or_else(|| free.clone());
            // "Review date: none" / "n/a" / "not needed": no review.
            let no_review = |r: &str| {
                let r = r.trim().to_lowercase();
                r.is_empty()
                    || ["none", "n/a", "na", "no", "not ", "nil", "-"]
                        .iter()
                        .any(|w| r == w.trim() || r.starts_with(w))
            };
            match get("review")
                .filter(|r| !no_review(r))
                .map(|r| (parse_date_near(&r, written_on).or_else(|| find_date(&r, written_on)), r))
            {
                Some((None, r)) => Err(format!(
                    "The review date {r:?} is not a date I can read: write it as 2027-02-01 or 1 February 2027."
                )),
                review => {
                    if outcome.trim().is_empty() {
                        Err("RESOLVED needs the outcome: write what was agreed under the word RESOLVED.".to_string())
                    } else {
                        let agreed_actions = get("actions").unwrap_or_default();
                        apply(Command::Resolve {
                            outcome,
                            actions: parse_actions(&agreed_actions, written_on),
                            agreed_actions,
                            outstanding: get("outstanding").unwrap_or_default(),
                            review_date: review.and_then(|(d, _)| d),
                        })
                    }
                }
            }
        }
        "ESCALATE" => {
            let lower = rest.to_lowercase();
            // A target stage is named as "to stage 4", or on a line of its own ("Stage: 4"); a stage
            // mentioned in passing ("we could not agree at stage 1") is not one.
            let number_after = |t: &str| {
                t.trim_start_matches([':', ' '])
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse::<u8>().ok())
            };
            let to_stage = lower
                .find("to stage")
                .and_then(|i| lower.get(i + "to stage".len()..).and_then(number_after))
                .or_else(|| {
                    lower
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("stage").and_then(number_after))
                });
            let immediate_risk = lower.contains("immediate risk") || lower.contains("immediate harm");
            let people = people_in(&rest);
            let reason = rest
                .lines()
                .filter(|l| find_emails(l).is_empty())
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string();
            apply(Command::Escalate {
                to_stage,
                people,
                reason: (!reason.is_empty()).then_some(reason),
                immediate_risk,
            })
        }
        "EXTEND" => {
            // "Extend by 3 please", "extend for 5 days".
            let lower = rest.trim_start().to_lowercase();
            let rest = ["by ", "for "]
                .iter()
                .find(|p| lower.starts_with(*p))
                .and_then(|p| rest.trim_start().get(p.len()..))
                .unwrap_or(&rest)
                .to_string();
            let mut words = rest.split_whitespace();
            let number = words.next().and_then(|w| w.parse::<u32>().ok());
            // "Extend by 2 weeks": not a number of working days.
            let unit = words
                .next()
                .map(|w| w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase());
            let number = number.filter(|_| {
                !unit
                    .as_deref()
                    .is_some_and(|u| u.starts_with("week") || u.starts_with("month"))
            });
            match number {
                None => Err("EXTEND needs the number of working days, e.g. \"EXTEND 3\", then the reason.".to_string()),
                Some(n) if n > 365 => Err(format!(
                    "EXTEND {n}: an extension is a number of working days up to 365; write e.g. \"EXTEND 3\", then the reason."
                )),
                Some(n) => {
                    let reason = rest
                        .trim_start_matches(|c: char| c.is_ascii_digit())
                        .trim_start()
                        .trim_start_matches("working days")
                        .trim_start_matches("working day")
                        .trim_start_matches("days")
                        .trim_start_matches("day")
                        .trim_start_matches([':', '-', ',', '.', ' '])
                        .trim()
                        .to_string();
                    apply(Command::Extend {
                        working_days: n,
                        reason,
                    })
                }
            }
        }
        "WITHDRAW" => apply(Command::Withdraw { reason: rest.clone() }),
        "NOTE" => apply(Command::Note { text: rest.clone() }),
        "ADD" => {
            let people = people_in(&rest);
            if people.is_empty() {
                Err("ADD needs the name and email of each person to bring in at this stage, one a line, e.g. \"Team manager: Tess Team <tess.team@example.gov.uk>\".".to_string())
            } else {
                apply(Command::Add { people })
            }
        }
        "IMPLEMENTED" => apply(Command::ActionsImplemented { text: rest.clone() }),
        "UPDATE" => Ok(ReplyCommand::Update),
        "STATUS" => Ok(ReplyCommand::Status),
        "HELP" => Ok(ReplyCommand::Help),
        "CONFIRM" => Ok(ReplyCommand::Confirm),
        "APPROVE" => Ok(ReplyCommand::Approve),
        "REJECT" => Ok(ReplyCommand::Reject { reason: rest.clone() }),
        _ => Ok(ReplyCommand::Form),
    };
    ReplyIntent {
        command_word: Some(word.to_string()),
        reply_text: text,
        command,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_question_mark_asks_for_the_status_but_resolves_nothing() {
        assert_eq!(parse_reply("Status?").command_word.as_deref(), Some("STATUS"));
        for question in [
            "Resolved? I thought we were still waiting for the visit.",
            "Resolved...? We haven't even met",
            "**Resolved**? Not yet",
            "Resolved ? no",
            "RESOLVED?? Gareth says his manager has agreed",
            "I think we can resolve this now",
            "Can we escalate to stage 2?",
        ] {
            let q = parse_reply(question);
            assert!(
                matches!(&q.command, Ok(ReplyCommand::Unsure { .. })),
                "{question}: asked, neither applied nor unknown: {:?}",
                q.command
            );
        }
        assert!(parse_reply("It is not resolved yet, sorry").command.is_err());
        assert!(parse_reply("Extend by 2 weeks please").command.is_err());
        let e = parse_reply("Extend by 3 please, waiting for the GP letter");
        assert_eq!(e.command_word.as_deref(), Some("EXTEND"));
        assert!(
            matches!(&e.command, Ok(ReplyCommand::Apply { command: Command::Extend { working_days: 3, reason } }) if reason.starts_with("please")),
            "{:?}",
            e.command
        );
    }

    use super::*;

    #[test]
    fn a_one_line_reply_directly_above_the_quote_is_the_new_text() {
        for body in [
            "RESOLVED\n> On 5 Jan 2027, at 10:00, Escalations <esc@board.gov.uk> wrote:\n> Dear Sam",
            "RESOLVED\nOn Tue, 5 Jan 2027, 10:00 Escalations, <esc@board.gov.uk> wrote:\n> Dear Sam",
            "Resolved\nOn Tue, 5 Jan 2027 at 10:00, Escalations <\nesc@board.gov.uk> wrote:\n> Dear Sam",
        ] {
            assert_eq!(new_text(body).trim().to_uppercase(), "RESOLVED", "{body:?}");
        }
        // A wrapped attribution is still one.
        let wrapped =
            "Agreed at the meeting\n\nOn Tue, 5 Jan 2027 at 10:00, Escalations <\nesc@board.gov.uk> wrote:\n> x";
        assert_eq!(new_text(wrapped), "Agreed at the meeting");
    }

    #[test]
    fn sign_offs_and_signatures_end_the_new_text() {
        for (body, kept) in [
            (
                "RESOLVED - joint visit agreed\n\nRegards\nNadia Qureshi\nDetective Constable 4471 | Westshire Police",
                "RESOLVED - joint visit agreed",
            ),
            ("NOTE the GP has written\nThanks\nFarah", "NOTE the GP has written"),
            (
                "NOTE the GP has written\n\nMany thanks, Farah",
                "NOTE the GP has written",
            ),
            ("NOTE the GP has written\nFarah", "NOTE the GP has written"),
            (
                "WITHDRAW resolved locally\n\nSam Patel\nTeam Manager\nWestshire Council\n01632 960 000",
                "WITHDRAW resolved locally",
            ),
            (
                "NOTE seen today\n\nThis email and any files transmitted with it are confidential.",
                "NOTE seen today",
            ),
            (
                "RESOLVED\nOutcome: Joint Visit Agreed\nReview date: 1 March 2027",
                "RESOLVED\nOutcome: Joint Visit Agreed\nReview date: 1 March 2027",
            ),
        ] {
            assert_eq!(without_sign_off(body), kept, "{body:?}");
        }
    }

    #[test]
    fn sign_offs_are_not_read_in_the_middle_of_a_message() {
        for (body, kept) in [
            (
                "NOTE spoke to the GP\nThank you Sam.\nThe review is on Friday and the daughter will attend.",
                "NOTE spoke to the GP\nThank you Sam.\nThe review is on Friday and the daughter will attend.",
            ),
            (
                "RESOLVED - agreed\nBest interests meeting held on Monday",
                "RESOLVED - agreed\nBest interests meeting held on Monday",
            ),
            ("WITHDRAW\nDuplicate", "WITHDRAW\nDuplicate"),
            ("RESOLVED\nAgreed.", "RESOLVED\nAgreed."),
            (
                "RESOLVED - joint visit agreed\n\nReview Date\n1 March 2027",
                "RESOLVED - joint visit agreed\n\nReview Date\n1 March 2027",
            ),
        ] {
            assert_eq!(without_sign_off(body), kept, "{body:?}");
        }
        assert!(matches!(
            parse_reply("RESOLVED. I think that covers everything.").command,
            Ok(ReplyCommand::Apply { .. })
        ));
        for (line, name) in [
            ("ESCALATE\nHead of Service Jo Bloggs jo.bloggs@x.gov.uk", "Jo Bloggs"),
            ("ESCALATE\nJane Smith, Team Manager, jane.smith@x.gov.uk", "Jane Smith"),
        ] {
            let Ok(ReplyCommand::Apply {
                command: Command::Escalate { people, .. },
            }) = parse_reply(line).command
            else {
                panic!("{line}");
            };
            assert_eq!(people[0].name.as_deref(), Some(name), "{line}");
        }
    }

    #[test]
    fn escalate_takes_the_name_beside_the_address() {
        let r = parse_reply("Escalate to stage 3 please - Dr Amara Okafor amara.okafor@nhs.net");
        let Ok(ReplyCommand::Apply {
            command: Command::Escalate { people, to_stage, .. },
        }) = r.command
        else {
            panic!("{:?}", r.command);
        };
        assert_eq!(to_stage, Some(3));
        assert_eq!(people[0].name.as_deref(), Some("Dr Amara Okafor"));
    }

    #[test]
    fn action_blocks_are_one_list() {
        let r = parse_reply("RESOLVED - joint plan agreed at the meeting\nAction: Joint visit\nOwner: Sam Patel\nDue: 09/03/2027\n\nAction: Capacity assessment\nOwner: Ola Bello\nDue: 16/03/2027\n\nThanks\nFarah");
        let Ok(ReplyCommand::Apply {
            command: Command::Resolve { actions, outcome, .. },
        }) = r.command
        else {
            panic!("{:?}", r.command);
        };
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert_eq!(actions[1].owner.as_deref(), Some("Ola Bello"));
        assert!(!outcome.contains("Farah"), "{outcome}");
    }

    #[test]
    fn resolved_with_labels() {
        let r = parse_reply("Resolved\nOutcome: joint visit agreed\nActions: visit by Friday\nReview date: 1 February 2027\n\nOn Mon, 4 Jan 2027 at 09:00, Bot <bot@x.gov.uk> wrote:\n> old");
        assert_eq!(r.command_word.as_deref(), Some("RESOLVED"));
        let Ok(ReplyCommand::Apply {
            command:
                Command::Resolve {
                    outcome,
                    agreed_actions,
                    review_date,
                    ..
                },
        }) = r.command
        else {
            panic!("{:?}", r.command)
        };
        assert_eq!(outcome, "joint visit agreed");
        assert_eq!(agreed_actions, "visit by Friday");
        assert_eq!(review_date.map(|d| d.to_string()).as_deref(), Some("2027-02-01"));
    }

    #[test]
    fn resolved_with_actions_owners_and_outstanding_issues() {
        let r = parse_reply(
            "RESOLVED – joint visit agreed\n\n**Actions:**\n- Dr Priya Nair <priya.nair@nhs.net> to review the medication by 12/02/2027\n\n- Tom Reeve (tom.reeve@trafford.gov.uk) to start four calls a day\nOutstanding issues: the housing question goes to the\nMARM meeting on 3 March 2027\n\nKind regards\nSam",
        );
        let Ok(ReplyCommand::Apply {
            command:
                Command::Resolve {
                    outcome,
                    actions,
                    outstanding,
                    ..
                },
        }) = r.command
        else {
            panic!("{:?}", r.command)
        };
        assert!(outcome.starts_with("joint visit agreed"), "{outcome}");
        assert!(!outcome.contains("Tom Reeve"), "{outcome}");
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert_eq!(actions[0].owner_email.as_deref(), Some("priya.nair@nhs.net"));
        assert_eq!(actions[1].owner.as_deref(), Some("Tom Reeve"));
        assert!(outstanding.contains("MARM meeting on 3 March 2027"), "{outstanding}");
    }

    #[test]
    fn extend_reads_days_and_reason() {
        let r = parse_reply("EXTEND 3 working days: senior manager on leave\n\nSent from my iPhone");
        assert_eq!(
            r.command,
            Ok(ReplyCommand::Apply {
                command: Command::Extend {
                    working_days: 3,
                    reason: "senior manager on leave".into()
                }
            })
        );
        assert!(parse_reply("extend please").command.is_err());
    }
}
