//! Decoding a raw inbound message (mail-parser) into what the bot needs, within limits.
//!
//! Limits on size, header size, MIME depth and part count stop hostile input before it costs much; every
//! header value that may reach an outgoing email is sanitised (no CR, LF or other control characters); the
//! signs of auto-generated mail (Auto-Submitted, an empty return path, Precedence bulk/list/junk, delivery
//! reports, out-of-office replies) are recognised so that the bot never answers them.

use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::core::case::Person;
use crate::core::html::html_to_text;

/// What the bot will read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_header_bytes: usize,
    pub max_parts: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 25 * 1024 * 1024,
            max_header_bytes: 256 * 1024,
            max_parts: 200,
            max_depth: 12,
        }
    }
}

/// Why a message was not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable(pub String);

/// An inbound message as the bot uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inbound {
    /// The Message-ID without angle brackets, or `sha256-…@escalation-bot` when there is none.
    pub message_id: String,
    pub from: Option<Person>,
    pub reply_to: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Why the message is auto-generated, when its headers say so (RFC 3834 `Auto-Submitted`,
    /// `Precedence`, `X-Autoreply`/`X-Autorespond`, a null return path, a delivery report, list headers).
    pub auto_generated: Option<String>,
    /// Why the message looks automatic though no header says so (only its subject: "Automatic reply:",
    /// "Out of office"): doubtful. A doubtful message is still read; one that holds nothing usable is
    /// quarantined and answered, never dropped in silence.
    pub doubtful: Option<String>,
    /// The plain-text body, if any.
    pub text: Option<String>,
    /// The HTML body, if any, as sent: [`Inbound::html_text`] reads it, only when it is needed (a plain
    /// text that carries the whole form makes the HTML's conversion wasted work).
    pub html: Option<String>,
    /// Raw `Authentication-Results` header values.
    pub authentication_results: Vec<String>,
    /// When its sender wrote it (the Date header): dates without a year in a reply are read from it.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
    /// Word documents attached (a board's form filled in), up to [`MAX_DOCUMENTS`] of them.
    #[serde(skip)]
    pub documents: Vec<Document>,
}

/// An attached `.docx`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// How many attached Word documents are read from one message.
pub const MAX_DOCUMENTS: usize = 3;

impl Inbound {
    /// The HTML body as text (tables as tabbed lines), if there is one.
    pub fn html_text(&self) -> Option<String> {
        self.html.as_deref().map(html_to_text)
    }
}

/// A header value safe to put into an outgoing header: control characters (CR, LF, NUL…) become spaces.
pub fn sanitise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn clean_address(s: &str) -> Option<String> {
    let a = sanitise(s).trim().trim_matches(['<', '>']).to_lowercase();
    crate::core::lifecycle::looks_like_email(&a).then_some(a)
}

/// A message id safe to write back into a header: visible ASCII only, no angle brackets.
pub fn clean_id(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '<' && *c != '>')
        .take(250)
        .collect()
}

fn ids(raw: Option<&str>) -> Vec<String> {
    raw.map(|r| {
        r.split(|c: char| c.is_whitespace() || c == ',')
            .map(clean_id)
            .filter(|s| s.contains('@'))
            .take(50)
            .collect()
    })
    .unwrap_or_default()
}

/// The identity of a message without a Message-ID: a hash of its bytes.
pub fn content_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}@escalation-bot")
}

/// Where the header section ends: the first blank line (LF or CRLF endings), or the end of the message. One
/// pass from line end to line end, stopping at the blank line: the body is never scanned.
fn header_section_len(raw: &[u8]) -> usize {
    if raw.starts_with(b"\n") || raw.starts_with(b"\r\n") {
        return 0;
    }
    let mut from = 0;
    while let Some(at) = raw.get(from..).and_then(|r| r.iter().position(|&b| b == b'\n')) {
        let end = from + at;
        let next = raw.get(end + 1..).unwrap_or_default();
        if next.starts_with(b"\n") || next.starts_with(b"\r\n") {
            return end;
        }
        from = end + 1;
    }
    raw.len()
}

fn auto_generated(get: &dyn Fn(&str) -> Option<String>, content_type: &str) -> Option<String> {
    if let Some(v) = get("Auto-Submitted") {
        if !v.trim().eq_ignore_ascii_case("no") {
            return Some(format!("Auto-Submitted: {}", sanitise(&v)));
        }
    }
    if let Some(v) = get("Return-Path") {
        if v.trim() == "<>" || v.trim().is_empty() {
            return Some("empty return path".into());
        }
    }
    if let Some(v) = get("Precedence") {
        let v = v.trim().to_lowercase();
        if matches!(v.as_str(), "bulk" | "list" | "junk" | "auto_reply") {
            return Some(format!("Precedence: {v}"));
        }
    }
    for h in [
        "X-Autoreply",
        "X-Autorespond",
        "X-Auto-Response-Suppress-Reply",
        "List-Id",
        "List-Unsubscribe",
    ] {
        if get(h).is_some() {
            return Some(format!("{h} header"));
        }
    }
    if get("X-Auto-Response-Suppress")
        .is_some_and(|v| v.to_lowercase().contains("all") || v.to_lowercase().contains("oof"))
    {
        return Some("X-Auto-Response-Suppress".into());
    }
    let ct = content_type.to_lowercase();
    if ct.contains("multipart/report") || ct.contains("message/delivery-status") {
        return Some("delivery report".into());
    }
    None
}

/// Why a message's subject makes it look automatic ("Automatic reply: …", "Out of office", "Undeliverable"),
/// for a message no header marks as such.
fn doubtful_subject(subject: &str) -> Option<String> {
    let s = subject.to_lowercase();
    for p in [
        "automatic reply",
        "auto reply",
        "autoreply",
        "auto-reply",
        "out of office",
        "out of the office",
        "undeliverable",
        "delivery status notification",
        "mail delivery failed",
        "returned mail",
    ] {
        // At the start, or after a prefix such as "RE: " or "[EXTERNAL]: ".
        if s.starts_with(p)
            || s.match_indices(p)
                .any(|(i, _)| s.get(..i).is_some_and(|b| b.ends_with(": ")))
        {
            return Some(format!("its subject says {p:?}"));
        }
    }
    None
}

/// The value of the last header called `name` (as mail-parser's `header_raw` finds it), from a list made
/// once: looking each name up through mail-parser re-reads every header name each time.
fn last_header(headers: &[(&str, &str)], name: &str) -> Option<String> {
    headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
}

/// The addresses in an address header, cleaned.
fn addresses(a: Option<&mail_parser::Address>) -> Vec<String> {
    a.map(|a| a.iter().filter_map(|x| x.address()).filter_map(clean_address).collect())
        .unwrap_or_default()
}

/// The From address and display name.
fn sender(msg: &mail_parser::Message) -> Option<Person> {
    msg.from().and_then(|a| a.first()).and_then(|a| {
        a.address().and_then(clean_address).map(|email| Person {
            email,
            name: a.name().map(sanitise).filter(|n| !n.is_empty()),
            agency: None,
        })
    })
}

/// The sender of a message that cannot be read, and the addresses it was sent to, from its header section
/// alone (at most 64 KB of it), so that they can be told what to fix: `None` when there is no usable From,
/// or when the headers say the message was sent automatically (never answered).
pub fn sender_of_unreadable(raw: &[u8]) -> Option<(Person, Vec<String>)> {
    let start = if super::imap::oversized(raw).is_some() {
        // The marker line the IMAP source puts above the headers of a message too large to fetch.
        raw.iter().position(|&b| b == b'\n').map_or(raw.len(), |i| i + 1)
    } else {
        0
    };
    let rest = raw.get(start..).unwrap_or_default();
    let end = header_section_len(rest).min(64 * 1024);
    let head = rest.get(..end).unwrap_or_default();
    let msg = MessageParser::default().parse_headers(head)?;
    let raw_headers: Vec<(&str, &str)> = msg.headers_raw().collect();
    let get = |name: &str| last_header(&raw_headers, name);
    let content_type = get("Content-Type").unwrap_or_default();
    if auto_generated(&get, &content_type).is_some() {
        return None;
    }

    let mut to = addresses(msg.to());
    to.extend(addresses(msg.cc()));
    let from = sender(&msg)?;
    Some((from, to))
}

/// Decode `raw`, or say why it cannot be read.
pub fn decode(raw: &[u8], limits: &Limits) -> Result<Inbound, Unreadable> {
    // A message the IMAP source found too large by its size alone: only its headers came.
    if let Some(o) = super::imap::oversized(raw) {
        return Err(Unreadable(format!(
            "the message is {} MB, more than the {} MB the bot accepts; please send the form without large attachments",
            o.size / (1024 * 1024),
            o.limit / (1024 * 1024)
        )));
    }
    if raw.len() > limits.max_bytes {
        return Err(Unreadable(format!(
            "the message is {} MB, more than the {} MB the bot accepts; please send the form without large attachments",
            raw.len() / (1024 * 1024),
            limits.max_bytes / (1024 * 1024)
        )));
    }
    if header_section_len(raw) > limits.max_header_bytes {
        return Err(Unreadable(format!(
            "its headers are larger than {} KB",
            limits.max_header_bytes / 1024
        )));
    }
    // Each multipart container names its boundary: more of them than the parts the bot reads, and the
    // message is refused before it is parsed (mail-parser keeps a state of some hundreds of bytes for each
    // open level of a deep nesting).
    let declared = declared_boundaries(raw);
    if declared > limits.max_parts {
        return Err(Unreadable(format!(
            "it declares {declared} multipart sections, more than the {} MIME parts the bot reads; please send the form on its own",
            limits.max_parts
        )));
    }
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Err(Unreadable(
            "it is not an email message (no headers could be read)".into(),
        ));
    };
    if msg.parts.len() > limits.max_parts {
        return Err(Unreadable(format!(
            "it has {} MIME parts, more than the {} the bot reads; please send the form on its own",
            msg.parts.len(),
            limits.max_parts
        )));
    }
    // Depth of the MIME tree, walked iteratively from the root.
    let mut stack = vec![(0u32, 0usize)];
    let mut depth = 0;
    let mut visited = 0;
    while let Some((id, d)) = stack.pop() {
        visited += 1;
        if visited > limits.max_parts * 2 {
            break;
        }
        depth = depth.max(d);
        if let Some(PartType::Multipart(children)) = msg.parts.get(id as usize).map(|p| &p.body) {
            for c in children {
                if *c != id {
                    stack.push((*c, d + 1));
                }
            }
        }
    }
    if depth > limits.max_depth {
        return Err(Unreadable(format!(
            "its MIME parts are nested {depth} deep, more than the {} the bot reads",
            limits.max_depth
        )));
    }
    // Header lookups by name: the last of that name, as mail-parser's `header_raw` finds it, from one list
    // made once (looking each name up through mail-parser re-reads every header name each time).
    let raw_headers: Vec<(&str, &str)> = msg.headers_raw().collect();
    let get = |name: &str| last_header(&raw_headers, name);
    let subject = sanitise(msg.subject().unwrap_or_default());
    let content_type = get("Content-Type").unwrap_or_default();

    let from = sender(&msg);
    // Only a real text/plain part counts as text: mail-parser would otherwise convert the HTML to text for
    // us, work thrown away because the HTML is read with its tables kept (below).
    let text = msg.text_bodies().find_map(|p| {
        let t = match &p.body {
            PartType::Text(t) if t.contains('\0') => t.replace('\0', " "),
            PartType::Text(t) => t.to_string(),
            _ => return None,
        };
        // Apple Mail and Thunderbird send format=flowed: a line ending in a space goes on in the next.
        let ct = p.content_type();
        let param = |name: &str| ct.and_then(|c| c.attribute(name)).map(str::to_ascii_lowercase);
        Some(if param("format").as_deref() == Some("flowed") {
            unflow(&t, param("delsp").as_deref() == Some("yes"))
        } else {
            t
        })
    });
    let html = msg.html_bodies().next().and_then(|p| match &p.body {
        PartType::Html(h) => Some(h.to_string()),
        _ => None,
    });
    Ok(Inbound {
        message_id: msg
            .message_id()
            .map(clean_id)
            .filter(|m| m.contains('@'))
            .unwrap_or_else(|| content_id(raw)),
        from,
        reply_to: msg
            .reply_to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(clean_address),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        in_reply_to: ids(get("In-Reply-To").as_deref()),
        references: ids(get("References").as_deref()),
        auto_generated: auto_generated(&get, &content_type),
        doubtful: doubtful_subject(&subject),
        subject,
        text,
        html,
        authentication_results: msg
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Authentication-Results"))
            .map(|(_, v)| sanitise(v))
            .collect(),
        date: msg
            .date()
            .and_then(|d| chrono::DateTime::<chrono::Utc>::from_timestamp(d.to_timestamp(), 0)),
        documents: msg
            .attachments()
            .filter_map(|part| {
                let name = part.attachment_name().map(sanitise).unwrap_or_default();
                let subtype = part
                    .content_type()
                    .and_then(|c| c.subtype())
                    .unwrap_or_default()
                    .to_lowercase();
                let is_docx = name.to_lowercase().ends_with(".docx")
                    || subtype == "vnd.openxmlformats-officedocument.wordprocessingml.document";
                is_docx.then(|| Document {
                    filename: name,
                    bytes: part.contents().to_vec(),
                })
            })
            .take(MAX_DOCUMENTS)
            .collect(),
    })
}

/// How many times `boundary=` is written in `raw` (in any case): at least as many as the multipart
/// containers it declares, found in one pass without parsing.
fn declared_boundaries(raw: &[u8]) -> usize {
    raw.split(|&b| b == b'=')
        .rev()
        .skip(1)
        .filter(|piece| {
            piece
                .len()
                .checked_sub(8)
                .and_then(|from| piece.get(from..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(b"boundary"))
        })
        .count()
}

/// A format=flowed text (RFC 3676) as the lines its writer meant: a line ending in a space (a soft break)
/// is joined to the next line of the same quote depth; with DelSp=yes that space was added by the sender's
/// client and is dropped. Space-stuffing is undone; quoted lines keep their `>` marks; the signature
/// separator "-- " is never joined.
pub fn unflow(text: &str, delsp: bool) -> String {
    let mut out: Vec<String> = Vec::new();
    // The paragraph being joined, and its quote depth.
    let mut open: Option<(usize, String)> = None;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let depth = line.chars().take_while(|&c| c == '>').count();
        // '>' is one byte: `depth` bytes are the marks.
        let body = line.get(depth..).unwrap_or_default();
        let body = body.strip_prefix(' ').unwrap_or(body);
        let soft = body.ends_with(' ') && body != "-- ";
        let piece = if soft && delsp {
            body.strip_suffix(' ').unwrap_or(body)
        } else {
            body
        };
        match open.take() {
            Some((d, mut joined)) if d == depth => {
                joined.push_str(piece);
                if soft {
                    open = Some((d, joined));
                } else {
                    out.push(quoted(d, &joined));
                }
            }
            before => {
                if let Some((d, joined)) = before {
                    out.push(quoted(d, &joined));
                }
                if soft {
                    open = Some((depth, piece.to_string()));
                } else {
                    out.push(quoted(depth, piece));
                }
            }
        }
    }
    if let Some((d, joined)) = open {
        out.push(quoted(d, &joined));
    }
    out.join("\n")
}

fn quoted(depth: usize, body: &str) -> String {
    if depth == 0 {
        body.to_string()
    } else {
        format!("{} {body}", ">".repeat(depth))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flowed_text_is_joined_as_its_writer_meant() {
        let flowed = "Who I disagree with: Tomasz Kowalczyk at City of Bradford \r\nMetropolitan District Council\r\n\r\n> Quoted line that \r\n> goes on\r\n>> deeper\r\n \r\n From here\r\n-- \r\nSig";
        assert_eq!(
            unflow(flowed, false),
            "Who I disagree with: Tomasz Kowalczyk at City of Bradford Metropolitan District Council\n\n> Quoted line that goes on\n>> deeper\n\nFrom here\n-- \nSig"
        );
        assert_eq!(unflow("split wo \nrd", true), "split word");
        assert_eq!(unflow("no soft breaks\nat all", false), "no soft breaks\nat all");
        // A soft break before a deeper quote does not join across depths.
        assert_eq!(unflow("a \n> b", false), "a \n> b");
    }

    proptest::proptest! {
        #[test]
        fn unflow_never_panics_and_keeps_text_without_soft_breaks(text in "\\PC*", delsp: bool) {
            let out = unflow(&text, delsp);
            if !text.contains([' ', '>', '\r']) {
                proptest::prop_assert_eq!(out, text);
            }
        }
    }

    use super::*;

    #[test]
    fn sanitised_values_have_no_control_characters_and_single_spaces() {
        assert_eq!(sanitise("  a\r\nBcc: x@y\0 \t b\u{85}c  "), "a Bcc: x@y b c");
        assert_eq!(sanitise("\r\n\t"), "");
        assert_eq!(sanitise("Nia Nurse"), "Nia Nurse");
    }

    #[test]
    fn the_header_section_ends_at_the_first_blank_line() {
        assert_eq!(header_section_len(b"A: 1\nB: 2\n\nbody\n\nmore"), 9);
        assert_eq!(header_section_len(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore"), 11);
        assert_eq!(header_section_len(b"\nbody"), 0);
        assert_eq!(header_section_len(b"A: 1\nB: 2"), 9);
        assert_eq!(header_section_len(b""), 0);
    }

    #[test]
    fn headers_over_the_limit_are_refused_whatever_the_line_endings() {
        let limits = Limits {
            max_header_bytes: 1024,
            ..Limits::default()
        };
        for eol in ["\n", "\r\n"] {
            let mut raw = format!("From: a@nhs.net{eol}");
            for i in 0..100 {
                raw.push_str(&format!("X-Padding-{i}: {}{eol}", "x".repeat(20)));
            }
            raw.push_str(&format!("{eol}Stage: 1{eol}"));
            let refused = decode(raw.as_bytes(), &limits).expect_err("too large");
            assert!(refused.0.contains("headers are larger"), "{}", refused.0);
        }
    }
}
