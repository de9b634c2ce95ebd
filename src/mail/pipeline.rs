//! The inbound pipeline: one raw message in, one outcome out — a case opened, a command applied, a clear
//! refusal, or ignored — with everything it causes (case change, audit event, emails) committed together.
//!
//! Order: keep the raw message (once: a message seen before has no second effect), decode it within
//! limits, ignore auto-generated mail, find the board, then either decide a held record (staff's APPROVE or
//! REJECT), act on a reply (its case located by a signed token or a reference with this board's prefix;
//! applied only with proof of its sender, held for a CONFIRM otherwise: ARCHITECTURE.md, "Trust model"), or
//! open a new case (at once from a known domain, held for the board's approval from any other). Whatever
//! cannot be used gets a reply saying exactly what to fix, with the board's blank form.

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::compose::{blank_form, filled_form, Composer};
use super::limits::Budget;
use super::mime::{decode, Inbound, Limits};
use super::render::Templates;
use super::source::Ack;
use super::timebox::{Timebox, Timed};
use super::token::Signer;
use crate::config::{Board, Config};
use crate::core::case::Person;
use crate::core::intake::sender;
use crate::core::intake::whole_email::{complete_other_email, Envelope};
use crate::core::intake::{parse_record, Labels, ParsedRecord};
use crate::core::lifecycle::{self, Event};
use crate::core::nhs;
use crate::core::reply::{parse_reply_on, ReplyCommand, ReplyIntent};
use crate::mail::docx;
use crate::store::{
    Batching, Change, HeldCommand, HeldRecord, InboundDone, InboundInsert, InboundMessage, OutboundEmail, Store,
    StoreError, Unit,
};

/// The reference under which the request about a held record is signed: `HOLD-` and a nonce.
const HOLD_PREFIX: &str = "HOLD-";

/// A raw message and where it came from, as a source hands it over.
type Message = (Source, Vec<u8>);

/// What acting on a reply came to: done (and answered), or refused with the problem to answer.
enum Acted {
    Done(Report),
    Refuse {
        reference: Option<String>,
        problem: String,
        report: Report,
    },
}

/// Where a message came from: mailbox name, and UIDVALIDITY/UID for IMAP.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub mailbox: String,
    pub uidvalidity: Option<i64>,
    pub uid: Option<i64>,
}

/// What became of one message (the `ingest --json` contract).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// `case_opened`, `command_applied`, `held`, `refused` or `ignored`.
    pub outcome: String,
    pub case: Option<String>,
    pub board: Option<String>,
    pub fields: Value,
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_text: Option<String>,
    /// Emails queued in answer.
    pub replies: usize,
    /// The message could not be used at all (unreadable, for no board, or failing every time it is tried):
    /// the source moves it to quarantine.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quarantine: bool,
    /// Processing failed this time (a database error, or a fault in the bot caught on the way): the
    /// message stays where it is and is tried again, up to [`MAX_ATTEMPTS`] times.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
    /// The bot's own notification, come back to the mailbox it reads: the source files it, unread, in the
    /// board's notifications folder.
    #[serde(skip)]
    pub file_away: bool,
}

/// How many times a message that fails (an error or a panic) is tried before it is quarantined.
pub const MAX_ATTEMPTS: i64 = 3;

/// The identity under which failed attempts at a message are counted: where it lies and what it is.
pub fn attempt_key(source: &Source, raw: &[u8]) -> String {
    format!(
        "{}|{}|{}|{}",
        source.mailbox,
        source.uidvalidity.unwrap_or(0),
        source.uid.unwrap_or(0),
        super::mime::content_id(raw)
    )
}

/// The text of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl Report {
    /// What the source should do with the message now that its effect has committed.
    /// Count this outcome in the daemon's metrics.
    pub fn count(&self, board: &str) {
        let outcome = if self.quarantine {
            "quarantined"
        } else if self.retry {
            "retry"
        } else {
            self.outcome.as_str()
        };
        crate::monitor::monitor().message(board, outcome, self.command.as_deref());
    }

    pub fn ack(&self) -> Ack {
        if self.retry {
            Ack::Retry
        } else if self.file_away {
            Ack::File
        } else if self.quarantine {
            Ack::Quarantine
        } else {
            Ack::Done
        }
    }

    /// The report of a reply to `board`, refused until shown otherwise, with the command word and new text
    /// read from it.
    fn for_reply(board: &Board, intent: &crate::core::reply::ReplyIntent) -> Self {
        let mut report = Report::new("refused");
        report.board = Some(board.id().to_string());
        report.command = intent.command_word.clone();
        report.reply_text = Some(intent.reply_text.clone());
        report
    }

    fn new(outcome: &str) -> Self {
        Report {
            outcome: outcome.into(),
            case: None,
            board: None,
            fields: json!({}),
            problems: Vec::new(),
            command: None,
            reply_text: None,
            replies: 0,
            quarantine: false,
            retry: false,
            file_away: false,
        }
    }
}

/// Everything the pipeline needs besides the store and the clock.
pub struct Pipeline<'a> {
    pub config: &'a Config,
    pub reader: std::sync::Arc<Reader>,
    /// Reading runs here: on threads of its own, each message within the configured time
    /// (`[reading] budget_ms`).
    pub timebox: Timebox,
    pub templates: Templates,
    pub key: Vec<u8>,
    /// See [`Composer::salt`]: set by [`Pipeline::retrying`].
    pub salt: String,
}

/// Decoding a message and reading the record in it: everything CPU-bound and store-free, shared with the
/// blocking threads that prepare a batch.
pub struct Reader {
    pub labels: Labels,
    pub limits: Limits,
    /// Every board's mailbox and role addresses: never a party to a disagreement, wherever they appear.
    pub board_addresses: Vec<String>,
}

impl Reader {
    /// Decode `raw` and read everything in it that a decision may need: the record, and the command and
    /// documents of a reply. All of a message's parsing happens here, so that it runs under the time
    /// limit ([`read_all`]); the decisions after it only look up what was read.
    /// A fault in a parser (a panic) makes the message unreadable, never the caller stop.
    pub fn prepare(&self, raw: &[u8]) -> Prepared {
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let decoded = decode(raw, &self.limits);
            let (record, reply) = match &decoded {
                Ok(m) => {
                    let texts = Texts::of(m);
                    let reply = self.read_reply_in(&texts);
                    let record =
                        self.read_record_in(&texts, reply.documents_read.then_some(reply.documents.as_slice()));
                    (Some(record), Some(reply))
                }
                Err(_) => (None, None),
            };
            Prepared { decoded, record, reply }
        }));
        read.unwrap_or_else(|panic| Prepared::faulty(Some(raw), &panic_text(panic.as_ref())))
    }

    /// The best reading of the record: the plain text, the HTML or an attached Word document, whichever
    /// yields more fields. Where the
    /// form gives no email for the person escalating, it is the sender's (as the case will have it).
    pub fn read_record(&self, msg: &Inbound) -> ParsedRecord {
        self.read_record_in(&Texts::of(msg), None)
    }

    /// [`Reader::read_record`], with the attached documents' readings when they were read already.
    fn read_record_in(&self, texts: &Texts<'_>, documents: Option<&[DocumentReading]>) -> ParsedRecord {
        let msg = texts.msg;
        let mut parsed = self.read_form(texts, documents);
        let from = msg.from.as_ref().map(|p| p.email.clone()).unwrap_or_default();
        let text = texts.body();
        // A forwarded message below the sender's own words: a manager forwarding a practitioner's record
        // (the practitioner raises it), or a practitioner forwarding their exchange with the other party
        // (who is then the other party).
        if parsed.fields_found > 0 && parsed.record.get("escalating_email").is_none() && !from.is_empty() {
            if let Some(((fwd_name, fwd_email), to, at_line)) = sender::forwarded_header(&text) {
                // Their signature is in the forwarded part, not under the sender's own words.
                let quoted: String = text.lines().skip(at_line).collect::<Vec<_>>().join("\n");
                let sender_wrote_it = fwd_email.eq_ignore_ascii_case(&from);
                let top = crate::core::reply::new_text(&text);
                let sender_in_to = to.iter().any(|(_, e)| e.eq_ignore_ascii_case(&from));
                let raises = sender::forwarded_raiser(&top, fwd_name.as_deref(), &parsed.record, sender_in_to);
                let r = &mut parsed.record;
                if !sender_wrote_it
                    && raises
                    && !self.board_addresses.iter().any(|b| b.eq_ignore_ascii_case(&fwd_email))
                {
                    r.escalating_email = Some(fwd_email);
                    r.escalating_name = fwd_name.or(r.escalating_name.take());
                } else if r.get("other_name").is_none() && r.get("other_email").is_none() {
                    let other = std::iter::once((fwd_name, fwd_email)).chain(to).find(|(_, e)| {
                        !e.eq_ignore_ascii_case(&from)
                            && !self.board_addresses.iter().any(|b| b.eq_ignore_ascii_case(e))
                    });
                    if let Some((name, email)) = other {
                        r.other_agency = r
                            .other_agency
                            .take()
                            .or_else(|| sender::agency_in_signature(&quoted, name.as_deref()));
                        r.other_name = name;
                        r.other_email = Some(email);
                    }
                }
            }
        }
        // The person raising it is the sender, unless the form names someone else: their name and agency
        // from the From header's display name, or the agency from their signature.
        let sender_is_escalating = parsed
            .record
            .escalating_email
            .as_deref()
            .is_none_or(|e| e.eq_ignore_ascii_case(&from));
        if parsed.fields_found > 0 && sender_is_escalating && !from.is_empty() {
            let display = msg.from.as_ref().and_then(|p| p.name.clone()).unwrap_or_default();
            let (name, agency) = sender::from_display_name(&display, &from);
            if parsed.record.get("escalating_name").is_none() {
                parsed.record.escalating_name = name;
            }
            if parsed.record.get("escalating_agency").is_none() {
                parsed.record.escalating_agency =
                    agency.or_else(|| sender::agency_in_signature(&text, parsed.record.escalating_name.as_deref()));
            }
        }
        if parsed.fields_found > 0 && parsed.record.escalating_email.is_none() && !from.is_empty() {
            parsed.record.escalating_email = Some(from.clone());
        }
        // The adult named only in the subject ("Professional disagreement - Mrs Edith Pickersgill").
        if parsed.fields_found > 0 && parsed.record.get("adult_name").is_none() {
            let not: Vec<String> = [&parsed.record.escalating_name, &parsed.record.other_name]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let subjects: Vec<&str> = std::iter::once(msg.subject.as_str())
                .chain(
                    text.lines()
                        .filter_map(|l| l.trim().trim_start_matches('>').trim().strip_prefix("Subject:")),
                )
                .collect();
            parsed.record.adult_name = crate::core::intake::prose::adult_in(&subjects.join("\n"), &not);
        }
        // The whole email, not only the form: the other party's address from "copied to", the email's
        // own To and Cc, or beside their name in the text.
        if parsed.fields_found > 0 {
            let copied: Vec<String> = msg.to.iter().chain(msg.cc.iter()).cloned().collect();
            let envelope = Envelope {
                from: &from,
                copied: &copied,
                board: &self.board_addresses,
            };
            complete_other_email(&mut parsed.record, &text, &envelope);
        }
        parsed
    }

    fn read_form(&self, texts: &Texts<'_>, read: Option<&[DocumentReading]>) -> ParsedRecord {
        let msg = texts.msg;
        let text = msg.text.as_deref().map(|t| parse_record(t, &self.labels));
        // A plain text that already carries a whole form needs no second reading from the HTML.
        let text = match text {
            Some(t) if t.fields_found >= 8 && t.problems.is_empty() => return t,
            other => other,
        };
        let html = texts.html().map(|t| parse_record(t, &self.labels));
        // The board's Word form attached ("please find the form attached"): read like the body.
        let documents: Vec<ParsedRecord> = match read {
            Some(read) => read.iter().filter_map(|d| d.record.as_ref().ok().cloned()).collect(),
            None => msg
                .documents
                .iter()
                .filter_map(|d| docx::read_record(&d.bytes, &self.labels).ok())
                .collect(),
        };
        [text, html]
            .into_iter()
            .flatten()
            .chain(documents)
            .max_by_key(|p| p.fields_found)
            .unwrap_or_default()
    }

    /// What a decision about the message as a reply needs: its command, and what a reply that sends the
    /// board's form back (a Word document attached, or `UPDATE` and the form's lines) holds. The documents
    /// and the lines are read only where [`Pipeline::record_update`] looks at them: when the reply has no
    /// command word, or says UPDATE.
    pub fn read_reply(&self, msg: &Inbound) -> ReplyReading {
        self.read_reply_in(&Texts::of(msg))
    }

    fn read_reply_in(&self, texts: &Texts<'_>) -> ReplyReading {
        let msg = texts.msg;
        let intent = parse_reply_on(&texts.body(), msg.date.map(|d| d.date_naive()));
        let asked = matches!(intent.command, Ok(ReplyCommand::Update));
        let documents_read = asked || intent.command_word.is_none();
        let documents = if documents_read {
            msg.documents
                .iter()
                .map(|doc| DocumentReading {
                    references: docx::read_text(&doc.bytes, &|_| false)
                        .ok()
                        .map(|t| reference_shaped(&format!("{} {}", doc.filename, t))),
                    record: docx::read_record(&doc.bytes, &self.labels),
                })
                .collect()
        } else {
            Vec::new()
        };
        let update_lines = asked.then(|| {
            let below_word = intent
                .reply_text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n");
            crate::core::intake::parse_labelled(&below_word, &self.labels)
        });
        ReplyReading {
            intent,
            documents_read,
            documents,
            update_lines,
        }
    }
}

/// The nonce of the refusal of a record: it names the kept message (`r<id>x…`), so that a reply which
/// completes the record can be read together with it.
fn refusal_nonce(inbound_id: Option<i64>, message_id: &str) -> String {
    let tail: String = message_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    match inbound_id {
        Some(id) => format!("r{id}x{tail}"),
        None => format!("r-{tail}"),
    }
}

/// The kept message a refusal's Message-ID (`esc.none.r<id>x….sig@domain`) names, if it names one. Only
/// call it on an id whose signature verified.
fn refused_inbound_id(message_id: &str) -> Option<i64> {
    let id = message_id.trim().trim_matches(['<', '>']);
    let nonce = id.strip_prefix("esc.none.")?.split('.').next()?;
    let digits = nonce.strip_prefix('r')?.split('x').next()?;
    digits.parse().ok()
}

/// The record `later` completes: its values, and the earlier record's where it gives none.
fn completed(earlier: ParsedRecord, later: ParsedRecord) -> ParsedRecord {
    let mut record = earlier.record;
    let new = later.record;
    let json_new = serde_json::to_value(&new).unwrap_or_default();
    let mut json_old = serde_json::to_value(&record).unwrap_or_default();
    if let (Some(old), Some(newer)) = (json_old.as_object_mut(), json_new.as_object()) {
        for (k, v) in newer {
            if !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()) {
                old.insert(k.clone(), v.clone());
            }
        }
    }
    if let Ok(merged) = serde_json::from_value(json_old) {
        record = merged;
    }
    ParsedRecord {
        record,
        problems: later.problems,
        fields_found: earlier.fields_found + later.fields_found,
        from_prose: earlier.from_prose + later.from_prose,
    }
}

/// A message's texts as the readers take them: the HTML part converted once, when first asked for.
struct Texts<'a> {
    msg: &'a Inbound,
    html: std::cell::OnceCell<Option<String>>,
}

impl<'a> Texts<'a> {
    fn of(msg: &'a Inbound) -> Self {
        Texts {
            msg,
            html: std::cell::OnceCell::new(),
        }
    }

    /// The HTML part as text (tables as tabbed lines).
    fn html(&self) -> Option<&str> {
        self.html.get_or_init(|| self.msg.html_text()).as_deref()
    }

    /// The text a reply is read from: the plain text, or the HTML's where there is none
    /// ([`Pipeline::reply_intent`]).
    fn body(&self) -> String {
        self.msg
            .text
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| self.html().map(str::to_string))
            .unwrap_or_default()
    }
}

/// A message decoded and everything in it read, ready for the decisions that need the store.
pub struct Prepared {
    decoded: Result<Inbound, super::mime::Unreadable>,
    /// The record, read whether or not the message turns out to be a new escalation.
    record: Option<ParsedRecord>,
    /// The message read as a reply, whether or not it turns out to be one.
    reply: Option<ReplyReading>,
}

impl Prepared {
    /// A message whose reading failed with a fault (a panic) in the reader: unreadable.
    fn faulty(raw: Option<&[u8]>, panic: &str) -> Self {
        let id = raw.map(super::mime::content_id).unwrap_or_default();
        tracing::error!(message = %id, panic = %panic, "reading a message panicked");
        Prepared {
            decoded: Err(super::mime::Unreadable(format!(
                "the message could not be read (a fault in the escalation service's reader: {panic})"
            ))),
            record: None,
            reply: None,
        }
    }
}

/// A message read as a reply ([`Reader::read_reply`]).
#[derive(Debug, Clone)]
pub struct ReplyReading {
    /// The command read from the new text at the top.
    pub intent: ReplyIntent,
    /// Whether the attached documents were read (only for a reply that may be sending the form back).
    documents_read: bool,
    /// Per attached document, in order: what it holds.
    documents: Vec<DocumentReading>,
    /// With UPDATE: the record in the lines below the word.
    update_lines: Option<ParsedRecord>,
}

/// An attached Word document, read.
#[derive(Debug, Clone)]
struct DocumentReading {
    /// The words in its name and text shaped like a case reference, upper-cased; `None` when its text
    /// could not be read.
    references: Option<Vec<String>>,
    /// The record in it, read with the boards' labels.
    record: Result<ParsedRecord, docx::Unreadable>,
}

/// A message as read under the time limit.
pub enum Reading {
    /// Read (or found unreadable) in time.
    Ready(Box<Prepared>),
    /// Its reading took longer than the limit: a failed attempt, like an error. The reading was left to
    /// finish on its own thread; nothing waits for it.
    Overran,
    /// Not read now (too many overrunning readings still running): it is tried again later, and this
    /// does not count against it.
    Busy,
}

/// Read every message in `raws` under `timebox`'s limit, each on a thread of its own (up to one a core,
/// at most four at once), in order. Awaiting it never blocks the async runtime.
pub async fn read_all(reader: std::sync::Arc<Reader>, timebox: &Timebox, raws: Vec<Vec<u8>>) -> Vec<Reading> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let read = timebox
        .run_all(
            raws,
            threads,
            std::sync::Arc::new(move |raw: &Vec<u8>| reader.prepare(raw)),
        )
        .await;
    read.into_iter()
        .map(|timed| match timed {
            Timed::Done(p) => Reading::Ready(Box::new(p)),
            Timed::Overran => Reading::Overran,
            Timed::Busy => Reading::Busy,
            // `prepare` catches its own panics: this is a fault in the thread around it.
            Timed::Panicked(panic) => Reading::Ready(Box::new(Prepared::faulty(None, &panic))),
        })
        .collect()
}

/// The words of `text` shaped like a case reference (`BRAD-2027-0042`), whatever their prefix, upper-cased:
/// [`reference_in`] tells which are a given board's.
fn reference_shaped(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| {
            let parts: Vec<&str> = w.split('-').collect();
            parts.len() == 3
                && parts[1].len() == 4
                && parts[1].chars().all(|c| c.is_ascii_digit())
                && parts[2].len() >= 4
                && parts[2].chars().all(|c| c.is_ascii_digit())
        })
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The record fields as the `ingest --json` contract reports them (NHS number as ten digits when valid;
/// the stage the case opens at, 1 where the record names none).
pub fn fields_json(parsed: &ParsedRecord) -> Value {
    let mut record = parsed.record.clone();
    if parsed.fields_found > 0 && record.stage.is_none() {
        record.stage = Some(1);
    }
    if let Some(n) = record.nhs_number.as_deref().and_then(|n| nhs::normalise(n).ok()) {
        record.nhs_number = Some(n);
    }
    serde_json::to_value(&record).unwrap_or_else(|_| json!({}))
}

/// The case reference in a subject, e.g. "RE: BRAD-2027-0042: escalation received", for a reference with
/// one of `prefixes` (the configured boards'): a practitioner's own `INC-2026-12345` is no case of ours.
pub fn reference_in(subject: &str, prefixes: &[&str]) -> Option<String> {
    subject
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| {
            let parts: Vec<&str> = w.split('-').collect();
            parts.len() == 3
                && prefixes.iter().any(|p| p.eq_ignore_ascii_case(parts[0]))
                && parts[1].len() == 4
                && parts[1].chars().all(|c| c.is_ascii_digit())
                && parts[2].len() >= 4
                && parts[2].chars().all(|c| c.is_ascii_digit())
        })
        .map(str::to_ascii_uppercase)
}

/// What proves who sent a command (ARCHITECTURE.md, "Trust model").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// A reply to an email the bot signed for this case and board and sent to the From address.
    SignedReply,
    /// DMARC passed for the From domain, by the board's trusted server.
    Dmarc,
    /// Neither: a command is held and the From address asked to CONFIRM.
    Missing,
}

/// Where a reply points: the case, and the bot's own signed Message-IDs it answers.
struct Located {
    reference: String,
    /// Our Message-IDs in In-Reply-To/References that verify for this board (without angle brackets).
    thread_ids: Vec<String>,
}

/// The results of the topmost Authentication-Results header the board's trusted server added, lower case.
/// Only the topmost counts: the trusted server adds its header above whatever the message came with, so a
/// header lower down with the same id was written by someone else (RFC 8601 asks servers to remove those;
/// not every one does).
fn trusted_results(msg: &Inbound, trusted_authserv_id: &str) -> Option<String> {
    msg.authentication_results.iter().find_map(|header| {
        let (server, results) = header.split_once(';').unwrap_or((header.as_str(), ""));
        let server = server.split_whitespace().next().unwrap_or_default();
        server
            .eq_ignore_ascii_case(trusted_authserv_id)
            .then(|| results.to_ascii_lowercase())
    })
}

/// Why the trusted server's Authentication-Results reject the message, if they do: DMARC failed, or DKIM
/// failed without DMARC passing (a gateway that adds a banner breaks DKIM while DMARC still passes on SPF).
pub fn authentication_failure(msg: &Inbound, trusted_authserv_id: &str) -> Option<String> {
    let r = trusted_results(msg, trusted_authserv_id)?;
    if r.contains("dmarc=fail") {
        return Some("DMARC failed".into());
    }
    if r.contains("dkim=fail") && !r.contains("dkim=pass") && !r.contains("dmarc=pass") {
        return Some("DKIM failed".into());
    }
    None
}

/// Whether the trusted server's Authentication-Results say DMARC passed for the domain of `from`: proof
/// that the message came from that domain's own mail system.
pub fn dmarc_pass(msg: &Inbound, trusted_authserv_id: &str, from: &str) -> bool {
    let Some((_, from_domain)) = from.rsplit_once('@') else {
        return false;
    };
    let Some(results) = trusted_results(msg, trusted_authserv_id) else {
        return false;
    };
    results.split(';').any(|result| {
        let r = result.trim();
        r.starts_with("dmarc=pass")
            && r.split_whitespace().any(|w| {
                w.strip_prefix("header.from=")
                    .is_some_and(|d| d.trim_matches(['"', ';']).eq_ignore_ascii_case(from_domain))
            })
    })
}

/// Whether `address` is `mailbox`, or a plus address of it (`local+anything@domain`).
fn same_mailbox(mailbox: &str, address: &str) -> bool {
    if mailbox.eq_ignore_ascii_case(address) {
        return true;
    }
    match (mailbox.rsplit_once('@'), address.rsplit_once('@')) {
        (Some((local, domain)), Some((a_local, a_domain))) => {
            a_domain.eq_ignore_ascii_case(domain)
                && a_local
                    .split_once('+')
                    .is_some_and(|(base, _)| base.eq_ignore_ascii_case(local))
        }
        _ => false,
    }
}

/// Whether `email` is one of the board's staff: a role's address, or the board mailbox itself.
fn is_staff(board: &Board, email: &str) -> bool {
    board
        .settings
        .roles
        .values()
        .any(|c| c.email.eq_ignore_ascii_case(email))
        || board.settings.mailbox.eq_ignore_ascii_case(email)
}

fn domain_allowed(board: &Board, email: &str) -> bool {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_lowercase();
    board.settings.allowed_sender_domains.iter().any(|d| {
        let d = d.to_lowercase();
        domain == d || domain.ends_with(&format!(".{d}"))
    })
}

impl<'a> Pipeline<'a> {
    pub fn new(config: &'a Config, key: Vec<u8>) -> Result<Self, String> {
        Ok(Pipeline {
            config,
            reader: std::sync::Arc::new(Reader {
                labels: Labels::new(config.boards.iter().map(|b| b.policy())),
                limits: Limits::default(),
                board_addresses: config
                    .boards
                    .iter()
                    .flat_map(|b| {
                        std::iter::once(b.settings.mailbox.clone())
                            .chain(b.settings.roles.values().map(|c| c.email.clone()))
                    })
                    .collect(),
            }),
            timebox: Timebox::new(config.settings.reading.budget(), config.settings.reading.max_abandoned),
            templates: Templates::load(config.settings.templates_dir.as_deref())?,
            key,
            salt: String::new(),
        })
    }

    /// A pipeline for processing a kept message again on purpose (`inbound retry`): the emails it causes are
    /// new ones, under Message-IDs of their own (`salt`, unique to this retry), not the earlier answers
    /// again.
    pub fn retrying(mut self, salt: &str) -> Self {
        self.salt = format!("#{salt}");
        self
    }

    /// The board whose own email this is: sent from a board mailbox this bot serves, under a Message-ID the
    /// bot's outbox holds for that board.
    async fn own_email<S: Store>(&self, store: &S, msg: &Inbound) -> Result<Option<&'a Board>, StoreError> {
        let Some(from) = &msg.from else {
            return Ok(None);
        };
        let Some(board) = self
            .config
            .boards
            .iter()
            .find(|b| same_mailbox(&b.settings.mailbox, &from.email))
        else {
            return Ok(None);
        };
        Ok(store
            .outbox_email(&msg.message_id)
            .await?
            .filter(|r| r.email.board_id == board.id())
            .map(|_| board))
    }

    /// The composer of `board`'s emails, signing with this pipeline's key (the scheduler writes with it too).
    pub fn composer(&'a self, board: &'a Board) -> Composer<'a> {
        let domain = board
            .settings
            .mailbox
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        Composer {
            board,
            templates: &self.templates,
            signer: Signer::new(self.key.clone(), board.id(), domain),
            salt: self.salt.clone(),
        }
    }

    fn find_board(&self, msg: &Inbound, hint: Option<&str>) -> Option<&'a Board> {
        if let Some(id) = hint {
            return self.config.board(id);
        }
        let addressed = msg.to.iter().chain(msg.cc.iter());
        for a in addressed {
            if let Some(b) = self.config.boards.iter().find(|b| same_mailbox(&b.settings.mailbox, a)) {
                return Some(b);
            }
        }
        (self.config.boards.len() == 1).then(|| &self.config.boards[0])
    }

    /// Decode `raw` and read everything in it, here and now, with no time limit (the daemon reads with
    /// [`Pipeline::prepare_all`]).
    pub fn prepare(&self, raw: &[u8]) -> Prepared {
        self.reader.prepare(raw)
    }

    /// [`Pipeline::prepare`] for many messages, in order, each within the time limit, on threads of their
    /// own ([`read_all`]). A reader that fails outright (a bug in a parser) makes its messages unreadable,
    /// never the daemon stop.
    pub async fn prepare_all(&self, raws: &[&[u8]]) -> Vec<Reading> {
        read_all(
            self.reader.clone(),
            &self.timebox,
            raws.iter().map(|r| r.to_vec()).collect(),
        )
        .await
    }

    /// One message read within the time limit.
    async fn read_one(&self, raw: &[u8]) -> Reading {
        let mut read = self.prepare_all(&[raw]).await;
        read.pop().unwrap_or(Reading::Busy)
    }

    /// What to say of a message whose reading took longer than the limit.
    fn overran_error(&self) -> String {
        format!(
            "reading it took longer than the {} ms the bot gives one message (a shape of email its readers do not handle in time)",
            self.timebox.limit().as_millis()
        )
    }

    /// Decode `raw` and read the escalation record in it, as the pipeline does.
    pub fn read_escalation(&self, raw: &[u8]) -> Result<(Inbound, ParsedRecord), super::mime::Unreadable> {
        let msg = decode(raw, &self.reader.limits)?;
        let parsed = self.read_record(&msg);
        Ok((msg, parsed))
    }

    fn read_record(&self, msg: &Inbound) -> ParsedRecord {
        self.reader.read_record(msg)
    }

    /// The command a reply carries, read from its new text (plain text, or the HTML where there is none).
    pub fn reply_intent(msg: &Inbound) -> crate::core::reply::ReplyIntent {
        parse_reply_on(&Self::body_text(msg), msg.date.map(|d| d.date_naive()))
    }

    /// A reply that sends the board's form back filled in — a Word document attached, `UPDATE` and the
    /// form's lines, or the form's lines with no command word — becomes an update of the record. A reply
    /// with another command is that command (a document attached to it is not read).
    pub fn record_update(msg: &Inbound, reference: &str, reading: &ReplyReading) -> ReplyIntent {
        let mut intent = reading.intent.clone();
        let asked = matches!(intent.command, Ok(ReplyCommand::Update));
        // No command word at all (a known word that failed to parse is that command's error to tell).
        let no_command = intent.command_word.is_none();
        if !(asked || no_command) {
            return intent;
        }
        let fields_of = |record: &crate::core::case::Record| {
            let mut fields = std::collections::BTreeMap::new();
            for key in crate::core::paperwork::RECORD_KEYS
                .iter()
                .map(|k| k.to_string())
                .chain(record.extra.keys().cloned())
            {
                if let Some(v) = record.get(&key) {
                    fields.insert(key, v);
                }
            }
            fields
        };
        let mut found = None;
        // `reading.documents` are the documents read, in order ([`Reader::read_reply`] reads them for a
        // reply with no command word or with UPDATE, the only ones that come here).
        for (doc, read) in msg.documents.iter().zip(&reading.documents) {
            let name = if doc.filename.is_empty() {
                "the attached document".to_string()
            } else {
                format!("the attached {}", doc.filename)
            };
            // A document about another case (its reference in it) is not this case's form.
            let prefix = reference.split('-').next().unwrap_or_default();
            let other_case = read.references.as_ref().and_then(|words| {
                words
                    .iter()
                    .find(|r| reference_in(r, &[prefix]).is_some() && !r.eq_ignore_ascii_case(reference))
                    .cloned()
            });
            if let Some(other) = other_case {
                found.get_or_insert(Err(format!(
                    "{name} is the record of case {other}, not of case {reference}: nothing was changed. Please attach this case's record."
                )));
                continue;
            }
            match &read.record {
                Ok(parsed) if parsed.labelled() >= 2 => {
                    found = Some(Ok((fields_of(&parsed.record), name)));
                    break;
                }
                Ok(_) => {
                    found.get_or_insert(Err(format!(
                        "{name} does not hold the board's form: none of its labels (\"Summary of reason for dispute\", \"Name of adult at risk\"…) were found in it."
                    )));
                }
                Err(e) => {
                    found.get_or_insert(Err(format!("{name} could not be read: {}. Please attach the form as a Word document (.docx), or write the changed lines in the email.", e.0)));
                }
            }
        }
        if found.is_none() && asked {
            // Text updates the record only under the word UPDATE: lines that happen to look like the
            // form's in an ordinary reply are not an update.
            match reading.update_lines.as_ref().filter(|parsed| parsed.fields_found >= 1) {
                Some(parsed) => found = Some(Ok((fields_of(&parsed.record), "the text of the email".to_string()))),
                None => found = Some(Err("UPDATE needs the form's lines you change below it (\"Views of the adult at risk: …\"), or the record document attached after editing it.".to_string())),
            }
        }
        match found {
            Some(Ok((fields, from))) => {
                intent.command_word = Some("UPDATE".into());
                intent.command = Ok(ReplyCommand::Apply {
                    command: crate::core::lifecycle::Command::UpdateRecord { fields, from },
                });
            }
            Some(Err(problem)) if asked || !msg.documents.is_empty() => intent.command = Err(problem),
            _ => {}
        }
        intent
    }

    fn body_text(msg: &Inbound) -> String {
        msg.text
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| msg.html_text())
            .unwrap_or_default()
    }

    /// Process several messages for `board` in one unit of work: their effects commit together, which is
    /// what makes a backlog fast. Should the unit fail, each message is processed on its own instead, so
    /// one bad message never holds back the others. One [`Ack`] per message, in order.
    pub async fn process_batch<S: Batching>(
        &self,
        store: &S,
        board: &str,
        messages: &[(Source, Vec<u8>)],
        now: DateTime<Utc>,
    ) -> Vec<Ack> {
        // Decoding and reading, the CPU-bound part, for the whole batch at once, off the runtime.
        let raws: Vec<&[u8]> = messages.iter().map(|(_, raw)| raw.as_slice()).collect();
        let read = self.prepare_all(&raws).await;
        self.process_read(store, board, messages, read, now).await
    }

    /// [`Pipeline::process_batch`] for messages read already (`read`, one per message, in order; the daemon
    /// reads each board's mail apart, so that one board's slow message delays no other). A message whose
    /// reading overran is a failed attempt, as an error is: the third quarantines it. One not read now
    /// (too many overrunning readings still running) is left for later.
    pub async fn process_read<S: Batching>(
        &self,
        store: &S,
        board: &str,
        messages: &[(Source, Vec<u8>)],
        read: Vec<Reading>,
        now: DateTime<Utc>,
    ) -> Vec<Ack> {
        let mut acks = vec![Ack::Retry; messages.len()];
        let mut ready = Vec::with_capacity(messages.len());
        for ((i, message), reading) in messages.iter().enumerate().zip(read) {
            match reading {
                Reading::Ready(p) => ready.push((i, message, *p)),
                Reading::Overran => {
                    let (source, raw) = message;
                    let report = self.reading_overran(store, source, raw, Some(board), now, false).await;
                    acks[i] = match report {
                        Ok(r) => {
                            r.count(board);
                            r.ack()
                        }
                        Err(e) => {
                            crate::monitor::monitor().message(board, "retry", None);
                            tracing::error!(board, error = %e, "a message's failed attempt could not be counted; it will be tried again");
                            Ack::Retry
                        }
                    };
                }
                Reading::Busy => {
                    crate::monitor::monitor().message(board, "retry", None);
                    tracing::warn!(board, "a message was not read now: too many overrunning readings are still running; it will be read later");
                }
            }
        }
        let (places, batch): (Vec<usize>, Vec<(&Message, Prepared)>) =
            ready.into_iter().map(|(i, m, p)| (i, (m, p))).unzip();
        for (i, ack) in places
            .into_iter()
            .zip(self.process_prepared_batch(store, board, batch, now).await)
        {
            if let Some(a) = acks.get_mut(i) {
                *a = ack;
            }
        }
        acks
    }

    /// Messages read in time, in one unit of work; one at a time should that fail.
    async fn process_prepared_batch<S: Batching>(
        &self,
        store: &S,
        board: &str,
        batch: Vec<(&Message, Prepared)>,
        now: DateTime<Utc>,
    ) -> Vec<Ack> {
        if batch.is_empty() {
            return Vec::new();
        }
        let messages: Vec<&Message> = batch.iter().map(|(m, _)| *m).collect();
        let together = async {
            let unit = store.begin_unit().await?;
            // Every message kept in a few statements, not a round trip each.
            let kept: Vec<InboundMessage> = batch
                .iter()
                .map(|((source, raw), p)| Self::kept(source, raw, &p.decoded, Some(board), now))
                .collect();
            let recorded = unit.record_inbound_many(&kept).await?;
            let mut reports = Vec::with_capacity(batch.len());
            for (((source, raw), prepared), recorded) in batch.into_iter().zip(recorded) {
                reports.push(
                    self.process_prepared(&unit, source, raw, prepared, Some(recorded), Some(board), now, false)
                        .await?,
                );
            }
            unit.commit().await?;
            Ok::<_, StoreError>(reports)
        };
        // A panic anywhere in the batch is caught here (the unit is dropped, so nothing of it lands) and
        // the messages are taken one by one, each in isolation.
        let together = std::panic::AssertUnwindSafe(together).catch_unwind().await;
        match together {
            Ok(Ok(reports)) => {
                for r in &reports {
                    tracing::info!(board, outcome = %r.outcome, case = ?r.case, "message processed");
                    r.count(board);
                }
                reports.iter().map(Report::ack).collect()
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    Err(panic) => format!("panic: {}", panic_text(panic.as_ref())),
                    Ok(Ok(_)) => String::new(),
                };
                tracing::warn!(board, %error, "a batch failed; processing its messages one at a time");
                let mut acks = Vec::with_capacity(messages.len());
                for (source, raw) in messages {
                    let ack = match self.process_isolated(store, source, raw, Some(board), now, false).await {
                        Ok(r) => {
                            tracing::info!(board, outcome = %r.outcome, case = ?r.case, "message processed");
                            r.count(board);
                            r.ack()
                        }
                        Err(e) => {
                            crate::monitor::monitor().message(board, "retry", None);
                            tracing::error!(board, error = %e, "message not processed; it will be tried again");
                            Ack::Retry
                        }
                    };
                    acks.push(ack);
                }
                acks
            }
        }
    }

    /// [`Pipeline::process`], isolated: a panic on the way is caught and logged with the message's id,
    /// and every failure (a panic, a database error such as a value too long or a full disk, or a reading
    /// that took longer than the limit) is counted against the message in the store. A message that has
    /// failed [`MAX_ATTEMPTS`] times is not tried again: it is kept, marked quarantined, audited, and moved
    /// to the quarantine folder, where the board team can see it. Never a crash loop.
    pub async fn process_isolated<S: Store>(
        &self,
        store: &S,
        source: &Source,
        raw: &[u8],
        board_hint: Option<&str>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let key = attempt_key(source, raw);
        if !dry_run {
            let tried = store.failed_attempts(&key).await?;
            if tried >= MAX_ATTEMPTS {
                return self
                    .quarantine_failing(store, source, raw, board_hint, tried, now)
                    .await;
            }
        }
        let prepared = match self.read_one(raw).await {
            Reading::Ready(p) => *p,
            Reading::Overran => return self.reading_overran(store, source, raw, board_hint, now, dry_run).await,
            Reading::Busy => return Ok(Self::not_read_now(board_hint)),
        };
        let attempt = std::panic::AssertUnwindSafe(
            self.process_prepared(store, source, raw, prepared, None, board_hint, now, dry_run),
        )
        .catch_unwind()
        .await;
        let error = match attempt {
            Ok(Ok(report)) => return Ok(report),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let text = panic_text(panic.as_ref());
                tracing::error!(
                    message = %super::mime::content_id(raw),
                    mailbox = %source.mailbox,
                    uid = ?source.uid,
                    panic = %text,
                    "processing a message panicked; it is kept and will be tried again, then quarantined"
                );
                format!("panic: {text}")
            }
        };
        let mut report = Report::new("refused");
        report.retry = true;
        report.board = board_hint.map(str::to_string);
        let tried = if dry_run {
            1
        } else {
            store.note_failed_attempt(&key, &error, now).await?
        };
        report.problems.push(format!(
            "The message could not be processed this time (attempt {tried} of {MAX_ATTEMPTS}): {error}. It is kept and will be tried again."
        ));
        Ok(report)
    }

    /// A message whose reading overran the limit: a failed attempt, counted in the store. The attempt that
    /// reaches [`MAX_ATTEMPTS`] quarantines it at once (an error's waits for the next arrival, which costs
    /// nothing; another reading would cost the whole limit again, and more of an abandoned thread).
    async fn reading_overran<S: Store>(
        &self,
        store: &S,
        source: &Source,
        raw: &[u8],
        board_hint: Option<&str>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let error = self.overran_error();
        tracing::warn!(
            message = %super::mime::content_id(raw),
            mailbox = %source.mailbox,
            uid = ?source.uid,
            %error,
            "a message took too long to read; it is counted as a failed attempt"
        );
        let tried = if dry_run {
            1
        } else {
            store
                .note_failed_attempt(&attempt_key(source, raw), &error, now)
                .await?
        };
        if tried >= MAX_ATTEMPTS && !dry_run {
            return self
                .quarantine_failing(store, source, raw, board_hint, tried, now)
                .await;
        }
        let mut report = Report::new("refused");
        report.retry = true;
        report.board = board_hint.map(str::to_string);
        report.problems.push(format!(
            "The message could not be processed this time (attempt {tried} of {MAX_ATTEMPTS}): {error}. It is kept and will be tried again."
        ));
        Ok(report)
    }

    /// A message not read now (too many overrunning readings still running): tried again later, not
    /// counted against it.
    fn not_read_now(board_hint: Option<&str>) -> Report {
        let mut report = Report::new("refused");
        report.retry = true;
        report.board = board_hint.map(str::to_string);
        report.problems.push(
            "The message was not read now: readings of other messages that took too long are still running. It is kept and will be read later."
                .into(),
        );
        report
    }

    /// Keep a message that failed every time it was tried, marked quarantined, with an audit event.
    async fn quarantine_failing<S: Store>(
        &self,
        store: &S,
        source: &Source,
        raw: &[u8],
        board_hint: Option<&str>,
        tried: i64,
        now: DateTime<Utc>,
    ) -> Result<Report, StoreError> {
        let board = board_hint
            .or_else(|| self.config.boards.first().map(|b| b.id()))
            .unwrap_or("unknown")
            .to_string();
        let mut report = Report::new("refused");
        report.board = Some(board.clone());
        report.quarantine = true;
        report.problems.push(format!(
            "Processing this message failed {tried} times, so it is quarantined: it is kept for the board team, and not tried again."
        ));
        let kept = InboundMessage {
            board_id: Some(board.clone()),
            mailbox: source.mailbox.clone(),
            uidvalidity: source.uidvalidity,
            uid: source.uid,
            message_id: super::mime::content_id(raw),
            received_at: now,
            raw: raw.to_vec(),
        };
        let id = match store.record_inbound(&kept).await? {
            InboundInsert::New(id) | InboundInsert::Seen { id, .. } => id,
        };
        let event = Event {
            kind: "quarantined".into(),
            at: now,
            actor: "escalation-bot".into(),
            summary: format!("Message {} quarantined after {tried} failed attempts", kept.message_id),
            detail: json!({ "mailbox": source.mailbox, "uid": source.uid, "attempts": tried }),
        };
        let done = InboundDone {
            id,
            outcome: "quarantined".into(),
            problems: report.problems.clone(),
        };
        store
            .finish_inbound(&board, Some(&done), None, Some(&event), &[], now)
            .await?;
        Ok(report)
    }

    /// Process one raw message received at `now`. With `dry_run`, nothing is written.
    pub async fn process<S: Store>(
        &self,
        store: &S,
        source: &Source,
        raw: &[u8],
        board_hint: Option<&str>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        match self.read_one(raw).await {
            Reading::Ready(prepared) => {
                let prepared = *prepared;
                self.process_prepared(store, source, raw, prepared, None, board_hint, now, dry_run)
                    .await
            }
            // Not isolated: nothing is counted here ([`Pipeline::process_isolated`] counts it).
            Reading::Overran => {
                let mut report = Self::not_read_now(board_hint);
                report.problems = vec![format!(
                    "The message could not be processed this time: {}. It is kept and will be tried again.",
                    self.overran_error()
                )];
                Ok(report)
            }
            Reading::Busy => Ok(Self::not_read_now(board_hint)),
        }
    }

    /// The inbound row that keeps a message.
    fn kept(
        source: &Source,
        raw: &[u8],
        decoded: &Result<Inbound, super::mime::Unreadable>,
        board_hint: Option<&str>,
        now: DateTime<Utc>,
    ) -> InboundMessage {
        InboundMessage {
            board_id: board_hint.map(str::to_string),
            mailbox: source.mailbox.clone(),
            uidvalidity: source.uidvalidity,
            uid: source.uid,
            message_id: match decoded {
                Ok(m) => m.message_id.clone(),
                Err(_) => super::mime::content_id(raw),
            },
            received_at: now,
            raw: raw.to_vec(),
        }
    }

    /// [`Pipeline::process`] for a message already prepared.
    #[allow(clippy::too_many_arguments)]
    async fn process_prepared<S: Store>(
        &self,
        store: &S,
        source: &Source,
        raw: &[u8],
        prepared: Prepared,
        recorded: Option<InboundInsert>,
        board_hint: Option<&str>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let Prepared { decoded, record, reply } = prepared;
        let message_id = match &decoded {
            Ok(m) => m.message_id.clone(),
            Err(_) => super::mime::content_id(raw),
        };
        let inbound_id = if dry_run {
            None
        } else {
            let recorded = match recorded {
                Some(r) => r,
                None => {
                    store
                        .record_inbound(&Self::kept(source, raw, &decoded, board_hint, now))
                        .await?
                }
            };
            match recorded {
                InboundInsert::New(id) => Some(id),
                // Kept before but never finished (the daemon stopped mid-way): process it now.
                InboundInsert::Seen { id, outcome: None } => Some(id),
                InboundInsert::Seen {
                    outcome: Some(outcome), ..
                } => {
                    let mut r = Report::new("ignored");
                    r.problems.push(format!(
                        "This message ({message_id}) was processed before ({outcome}); it has no second effect."
                    ));
                    // The bot's own email, back because it was not filed last time (the daemon stopped, the
                    // server failed): file it now, where its reader finds it.
                    if let Ok(m) = &decoded {
                        if let Some(board) = self.own_email(store, m).await? {
                            r.board = Some(board.id().to_string());
                            r.file_away = true;
                        }
                    }
                    return Ok(r);
                }
            }
        };
        self.process_decoded(store, raw, decoded, record, reply, board_hint, inbound_id, now, dry_run)
            .await
    }

    /// The per-sender reply cap: an address that has had its day's answers gets no more (a mail loop with
    /// an auto-responder the headers did not reveal stops here). The emails still allowed, and an audit
    /// event for each one held back.
    async fn within_reply_cap<S: Store>(
        &self,
        store: &S,
        board: &Board,
        outbox: Vec<OutboundEmail>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<OutboundEmail>, Vec<Event>), StoreError> {
        let outbox = self.composer(board).one_per_recipient(outbox);
        let cap = i64::from(board.settings.reply_cap_per_day);
        let since = now - chrono::Duration::hours(24);
        let mut allowed = Vec::with_capacity(outbox.len());
        let mut suppressed = Vec::new();
        for email in outbox {
            let mut over = false;
            for to in &email.to {
                if store.count_outbox_to(to, since).await? >= cap {
                    over = true;
                }
            }
            if over {
                let to = email.to.join(", ");
                suppressed.push(Event {
                    kind: "reply_suppressed".into(),
                    at: now,
                    actor: to.clone(),
                    summary: format!("Answer to {to} not sent: {cap} answers in 24 hours already"),
                    detail: json!({ "cap": cap, "kind": email.kind }),
                });
            } else {
                allowed.push(email);
            }
        }
        let (allowed, limited) = self.within_limits(store, board, allowed, now).await?;
        suppressed.extend(limited);
        Ok((allowed, suppressed))
    }

    /// The board's rate limits ([`crate::mail::limits`]) applied to `outbox`, for every kind of email.
    async fn within_limits<S: Store>(
        &self,
        store: &S,
        board: &Board,
        outbox: Vec<OutboundEmail>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<OutboundEmail>, Vec<Event>), StoreError> {
        let outbox = self.composer(board).one_per_recipient(outbox);
        let addresses: Vec<String> = outbox
            .iter()
            .flat_map(|e| e.to.iter().chain(e.cc.iter()).cloned())
            .collect();
        let mut budget = Budget::load(store, board, &addresses, now).await?;
        Ok(budget.admit(outbox, now))
    }

    /// Write what a message that changes no case causes — its audit event, any reply, its outcome — in
    /// one transaction. Nothing with `dry_run`.
    #[allow(clippy::too_many_arguments)]
    async fn finish<S: Store>(
        &self,
        store: &S,
        board: &str,
        inbound_id: Option<i64>,
        report: &Report,
        event: Option<Event>,
        outbox: &[OutboundEmail],
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<(), StoreError> {
        if dry_run {
            return Ok(());
        }
        let (allowed, suppressed) = match self.config.board(board) {
            Some(b) => self.within_reply_cap(store, b, outbox.to_vec(), now).await?,
            None => (outbox.to_vec(), Vec::new()),
        };
        for e in &suppressed {
            store.record_event(board, None, e).await?;
        }
        let outbox = allowed.as_slice();
        let done = inbound_id.map(|id| InboundDone {
            id,
            outcome: report.outcome.clone(),
            problems: report.problems.clone(),
        });
        let reference = report
            .case
            .as_deref()
            .filter(|_| report.outcome != "refused" || report.case.is_some());
        // The event is filed with the case only when the case is this board's (a reference from another
        // board's mailbox is no case here).
        let known = match reference {
            Some(r) => store.load_case(r).await?.filter(|c| c.case.board == board).map(|_| r),
            None => None,
        };
        store
            .finish_inbound(board, done.as_ref(), known, event.as_ref(), outbox, now)
            .await
    }

    fn event(kind: &str, actor: &str, summary: String, problems: &[String], now: DateTime<Utc>) -> Option<Event> {
        Some(Event {
            kind: kind.into(),
            at: now,
            actor: actor.into(),
            summary,
            detail: json!({ "problems": problems }),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn process_decoded<S: Store>(
        &self,
        store: &S,
        raw: &[u8],
        decoded: Result<Inbound, super::mime::Unreadable>,
        record: Option<ParsedRecord>,
        reply: Option<ReplyReading>,
        board_hint: Option<&str>,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let board_for_log = board_hint
            .or_else(|| self.config.boards.first().map(|b| b.id()))
            .unwrap_or("unknown")
            .to_string();
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => {
                let mut r = Report::new("refused");
                r.quarantine = true;
                r.problems.push(format!("The message could not be read: {}.", e.0));
                // Its sender is told what to fix, where the headers name one at an organisation the board
                // knows (an unreadable message from anyone else may be junk: answering it would be
                // backscatter) and do not say it was sent automatically.
                let unreadable_from = super::mime::sender_of_unreadable(raw);
                let board = match (board_hint, &unreadable_from) {
                    (Some(b), _) => self.config.board(b),
                    (None, Some((_, to))) => to
                        .iter()
                        .find_map(|a| self.config.boards.iter().find(|b| same_mailbox(&b.settings.mailbox, a))),
                    (None, None) => None,
                };
                let mut answer = Vec::new();
                if let (Some(board), Some((sender, _))) = (board, unreadable_from) {
                    let domain = sender
                        .email
                        .rsplit_once('@')
                        .map(|(_, d)| d.to_lowercase())
                        .unwrap_or_default();
                    if domain_allowed(board, &sender.email) || store.domain_approved(board.id(), &domain).await? {
                        let composer = self.composer(board);
                        let policy = board.policy();
                        answer.push(
                            composer
                                .email(
                                    "refusal",
                                    None,
                                    &format!("u-{}", super::compose::nonce_of(&super::mime::content_id(raw))),
                                    vec![sender.email.clone()],
                                    Vec::new(),
                                    None,
                                    json!({
                                        "greeting": sender.name.clone().unwrap_or_else(|| "colleague".into()),
                                        "problems": r.problems, "out_of_scope": false,
                                        "form": blank_form(&policy.form),
                                        "immediate_risk_note": policy.immediate_risk.guidance,
                                    }),
                                )
                                .map_err(StoreError::Data)?,
                        );
                        r.replies = 1;
                    }
                }
                let ev = Self::event("refused", "unknown", "Unreadable message kept".into(), &r.problems, now);
                self.finish(store, &board_for_log, inbound_id, &r, ev, &answer, now, dry_run)
                    .await?;
                return Ok(r);
            }
        };
        let sender = msg.from.clone();
        let actor = sender
            .as_ref()
            .map(|p| p.email.clone())
            .unwrap_or_else(|| "unknown".into());
        if let Some(board) = self.own_email(store, &msg).await? {
            // A board role whose address is the mailbox the bot reads (Bradford's Business Unit Manager):
            // the notification is for the person who reads that mailbox, not for the bot.
            let folder = &board.settings.notifications_folder;
            let mut r = Report::new("ignored");
            r.board = Some(board.id().to_string());
            r.file_away = true;
            r.problems.push(format!(
                "This is the bot's own email to the board's mailbox; it is filed, unread, in the folder \"{folder}\" for whoever reads that mailbox."
            ));
            let ev = Self::event(
                "filed",
                &actor,
                format!("Own email {} filed in {folder}", msg.message_id),
                &[],
                now,
            );
            self.finish(store, board.id(), inbound_id, &r, ev, &[], now, dry_run)
                .await?;
            return Ok(r);
        }
        if let Some(why) = &msg.auto_generated {
            let mut r = Report::new("ignored");
            r.problems
                .push(format!("Auto-generated mail ({why}) is recorded and never answered."));
            let ev = Self::event(
                "ignored",
                &actor,
                format!("Auto-generated message {} ignored: {why}", msg.message_id),
                &r.problems,
                now,
            );
            self.finish(store, &board_for_log, inbound_id, &r, ev, &[], now, dry_run)
                .await?;
            return Ok(r);
        }
        let Some(board) = self.find_board(&msg, board_hint) else {
            let mut r = Report::new("refused");
            r.problems
                .push("The message was not addressed to a board mailbox this bot serves.".into());
            let ev = Self::event(
                "refused",
                &actor,
                "Message for no configured board".into(),
                &r.problems,
                now,
            );
            self.finish(store, &board_for_log, inbound_id, &r, ev, &[], now, dry_run)
                .await?;
            return Ok(r);
        };
        let Some(sender) = sender else {
            let mut r = Report::new("refused");
            r.board = Some(board.id().to_string());
            r.problems
                .push("The message has no sender address, so it cannot be answered or acted on.".into());
            let ev = Self::event("refused", &actor, "Message without a sender".into(), &r.problems, now);
            self.finish(store, board.id(), inbound_id, &r, ev, &[], now, dry_run)
                .await?;
            return Ok(r);
        };
        // Read with the rest ([`Reader::prepare`]); read here only for a message prepared without it.
        let reply = reply.unwrap_or_else(|| self.reader.read_reply(&msg));
        let composer = self.composer(board);
        if is_staff(board, &sender.email) && Self::asks_for_digest(&reply.intent) {
            return self
                .digest_on_demand(store, &composer, &msg, &sender, inbound_id, now, dry_run)
                .await;
        }
        if let Some(request) = Self::approval_request(&composer, &msg) {
            return self
                .decide_approval(
                    store, &composer, &msg, &reply, &sender, &request, inbound_id, now, dry_run,
                )
                .await;
        }
        if let Some(located) = self.locate(&composer, &msg) {
            return self
                .reply(
                    store, &composer, &msg, &reply, &sender, located, inbound_id, now, dry_run,
                )
                .await;
        }
        self.new_case(store, &composer, &msg, record, &sender, inbound_id, now, dry_run)
            .await
    }

    /// Whether the new text at the top of the message is the word DIGEST (alone on its first line).
    fn asks_for_digest(intent: &ReplyIntent) -> bool {
        let first = intent
            .reply_text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        let word = first.trim_end_matches(['.', '!']).trim();
        word.eq_ignore_ascii_case("digest") || word.eq_ignore_ascii_case("digest please")
    }

    /// Board staff asked for the digest by email: it goes to the address that asked (a staff address, whose
    /// real owner receives it whoever wrote the From), in reply. A digest names no adult, so no proof of the
    /// sender is needed beyond that.
    #[allow(clippy::too_many_arguments)]
    async fn digest_on_demand<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let board = composer.board;
        let digest = crate::scheduler::board_digest(store, board, now).await?;
        let mut email = composer
            .digest(
                &digest,
                vec![sender.email.clone()],
                &format!("asked:{}", msg.message_id),
            )
            .map_err(StoreError::Data)?;
        email
            .headers
            .insert("In-Reply-To".into(), format!("<{}>", msg.message_id));
        email
            .headers
            .insert("References".into(), format!("<{}>", msg.message_id));
        email.headers.insert("Auto-Submitted".into(), "auto-replied".into());
        let mut r = Report::new("command_applied");
        r.board = Some(board.id().to_string());
        r.command = Some("DIGEST".into());
        r.replies = 1;
        let ev = Self::event(
            "digest_sent",
            &sender.email,
            format!("Digest sent on request to {}", sender.email),
            &[],
            now,
        );
        self.finish(store, board.id(), inbound_id, &r, ev, &[email], now, dry_run)
            .await?;
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    async fn new_case<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        record: Option<ParsedRecord>,
        sender: &Person,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let board = composer.board;
        let policy = board.policy();
        let mut parsed = record.unwrap_or_else(|| self.read_record(msg));
        // A reply to our answer to an incomplete record completes it: the case opens from both emails
        // together, and its clock starts from the first.
        let mut opened_at = now;
        let mut completes = None;
        if let Some((earlier_id, earlier, first_at)) = self.earlier_refused(store, composer, msg, now).await? {
            // The reply's own words only: the refusal it quotes is ours, not the record.
            let mut own = msg.clone();
            own.text = Some(crate::core::reply::new_text(&Self::body_text(msg)));
            own.html = None;
            parsed = completed(earlier, self.read_record(&own));
            opened_at = first_at.min(now);
            completes = Some(earlier_id);
        }
        let mut report = Report::new("refused");
        report.board = Some(board.id().to_string());
        report.fields = fields_json(&parsed);
        let new = lifecycle::NewCase {
            record: parsed.record.clone(),
            sender: sender.clone(),
        };
        let mut problems = Vec::new();
        let mut out_of_scope = false;
        let domain = sender
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        let known = domain_allowed(board, &sender.email) || store.domain_approved(board.id(), &domain).await?;
        if !known && parsed.fields_found == 0 {
            out_of_scope = true;
            problems.push(format!(
                "Only addresses at {} can open an escalation with the {}; {} is not one of them. If your organisation should be able to, please ask the board's business team to add it.",
                board.settings.allowed_sender_domains.join(", "),
                policy.board_name,
                sender.email
            ));
        } else if parsed.fields_found == 0 {
            if let Some(why) = &msg.doubtful {
                // It looks automatic, but no header says so: kept in quarantine for the board team, and
                // answered once (the answer is marked auto-replied, so a real auto-responder stays quiet).
                report.quarantine = true;
                problems.push(format!(
                    "Your email looked like an automatic reply ({why}) and held no escalation record, so nothing was done with it. It is kept for the board's business team. If you meant to raise or act on an escalation, please send it again with the form filled in."
                ));
            }
            problems.push(format!(
                "No escalation record was found in your email. Please fill in the {} below, one \"Label: value\" line per field.",
                policy.form.name
            ));
        } else {
            let year: i32 = board
                .rules
                .local_date(now)
                .format("%Y")
                .to_string()
                .parse()
                .unwrap_or(2000);
            let placeholder = crate::core::case::format_reference(&policy.reference_prefix, year, 0);
            // Open, then ask: what could not be used is asked for in the acknowledgement, and refuses only
            // where one of the four essentials is missing too.
            if let Err(refusal) = lifecycle::open(&board.rules, &new, &placeholder, opened_at) {
                out_of_scope = refusal.out_of_scope;
                problems.extend(refusal.problems);
                problems.extend(parsed.problems.iter().cloned());
            }
        }
        if !problems.is_empty() {
            report.problems = problems;
            let email = composer
                .email(
                    "refusal",
                    None,
                    // Still incomplete after a reply: the next reply completes the first email.
                    &refusal_nonce(completes.or(inbound_id), &msg.message_id),
                    vec![sender.email.clone()],
                    Vec::new(),
                    Some(&msg.message_id),
                    json!({
                        "greeting": sender.name.clone().unwrap_or_else(|| "colleague".into()),
                        "problems": report.problems, "out_of_scope": out_of_scope,
                        "form": filled_form(&policy.form, &parsed.record),
                        "immediate_risk_note": policy.immediate_risk.guidance,
                    }),
                )
                .map_err(StoreError::Data)?;
            report.replies = 1;
            let ev = Self::event(
                "refused",
                &sender.email,
                format!("Escalation from {} refused", sender.email),
                &report.problems,
                now,
            );
            self.finish(store, board.id(), inbound_id, &report, ev, &[email], now, dry_run)
                .await?;
            return Ok(report);
        }
        if !known {
            return self
                .hold_record(
                    store, composer, msg, &parsed, sender, &domain, report, inbound_id, now, dry_run,
                )
                .await;
        }
        report.outcome = "case_opened".into();
        if dry_run {
            return Ok(report);
        }
        let year: i32 = board
            .rules
            .local_date(now)
            .format("%Y")
            .to_string()
            .parse()
            .unwrap_or(2000);
        // Whom a new case writes to: the referrer, the other party, the board's roles.
        let mut addresses: Vec<String> = vec![sender.email.clone()];
        addresses.extend(parsed.record.escalating_email.iter().cloned());
        addresses.extend(parsed.record.other_email.iter().cloned());
        addresses.extend(board.settings.roles.values().map(|c| c.email.clone()));
        let mut budget = Budget::load(store, board, &addresses, now).await?;
        let suppressed = std::sync::Mutex::new(Vec::new());
        let created = store
            .create_case(board.id(), &policy.reference_prefix, year, |reference| {
                let t = lifecycle::open(&board.rules, &new, reference, opened_at).map_err(|r| r.problems.join(" "))?;
                let mut outbox =
                    vec![composer.acknowledgement(&t, &msg.message_id, &sender.email, &parsed.problems)?];
                outbox.extend(composer.notifications(&t, &t.notifications, &msg.message_id)?);
                let mut outbox = composer.one_per_recipient(outbox);
                // The sender's own copy carries the board's record filled in so far, where the form asks for
                // more: one Word document per case, not one per recipient.
                let asks_more = !crate::core::essentials::to_ask(&policy.form, &t.case.record).is_empty();
                if let Some(own) = outbox
                    .iter_mut()
                    .find(|e| e.kind == "acknowledgement" && e.to.iter().any(|a| a.eq_ignore_ascii_case(&sender.email)))
                    .filter(|_| asks_more)
                {
                    composer.attach_record_document(own, &t.case, board.rules.local_date(opened_at))?;
                }
                let (outbox, limited) = budget.admit(outbox, now);
                if let Ok(mut s) = suppressed.lock() {
                    s.extend(limited);
                }
                let inbound = inbound_id.map(|id| InboundDone {
                    id,
                    outcome: "case_opened".into(),
                    problems: Vec::new(),
                });
                Ok::<Change, String>(Change {
                    transition: t,
                    outbox,
                    inbound,
                    decides_held: None,
                })
            })
            .await?;
        let suppressed = suppressed.into_inner().unwrap_or_default();
        match created {
            Ok(stored) => {
                report.case = Some(stored.case.reference.clone());
                report.replies = 1;
                // The first email is now part of this case: a second reply to its refusal opens nothing.
                if let Some(id) = completes {
                    store
                        .set_inbound_outcome(id, "completed", Some(&stored.case.reference), &[], now)
                        .await?;
                }
                for e in &suppressed {
                    store.record_event(board.id(), Some(&stored.case.reference), e).await?;
                }
            }
            Err(e) => {
                report.outcome = "refused".into();
                report.problems.push(e);
                self.finish(store, board.id(), inbound_id, &report, None, &[], now, dry_run)
                    .await?;
            }
        }
        Ok(report)
    }

    /// The record an earlier email held, when `msg` answers the bot's refusal of it (the refusal's signed
    /// Message-ID names the kept message), and when that message arrived.
    async fn earlier_refused<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, ParsedRecord, DateTime<Utc>)>, StoreError> {
        let earlier_id = msg
            .in_reply_to
            .iter()
            .chain(msg.references.iter())
            .filter(|id| composer.signer.verify(id).as_deref() == Some("none"))
            .find_map(|id| refused_inbound_id(id));
        let Some(id) = earlier_id else {
            return Ok(None);
        };
        let Some(row) = store.inbound_row(id).await? else {
            return Ok(None);
        };
        // Only a record that was refused (the refusal's id is signed for this board) and not completed
        // since, answered within four weeks, from the same sender.
        if row.outcome.as_deref() != Some("refused") || now - row.received_at > chrono::Duration::days(28) {
            return Ok(None);
        }
        let Some((raw, _)) = store.inbound_raw(id).await? else {
            return Ok(None);
        };
        let Ok(earlier) = decode(&raw, &self.reader.limits) else {
            return Ok(None);
        };
        let same_sender = match (&earlier.from, &msg.from) {
            (Some(a), Some(b)) => a.email.eq_ignore_ascii_case(&b.email),
            _ => false,
        };
        if !same_sender {
            return Ok(None);
        }
        Ok(Some((id, self.read_record(&earlier), row.received_at)))
    }

    /// The case a reply is about, if it is one: named by the bot's own signed Message-ID in its thread
    /// headers, by the signed plus address it was sent to, or by a reference in its subject with a
    /// configured board's prefix. Only tokens signed for this board verify here.
    fn locate(&self, composer: &Composer<'_>, msg: &Inbound) -> Option<Located> {
        let board = composer.board;
        let mut thread_ids = Vec::new();
        let mut from_thread = None;
        for id in msg.in_reply_to.iter().chain(msg.references.iter()) {
            if let Some(reference) = composer
                .signer
                .verify(id)
                .filter(|r| r != "none" && !r.starts_with(HOLD_PREFIX))
            {
                let id = id.trim().trim_matches(['<', '>']).to_string();
                if !thread_ids.contains(&id) {
                    thread_ids.push(id);
                }
                from_thread.get_or_insert(reference);
            }
        }
        let reference = from_thread
            .or_else(|| {
                msg.to
                    .iter()
                    .chain(msg.cc.iter())
                    .find_map(|a| composer.signer.verify_address(&board.settings.mailbox, a))
            })
            .or_else(|| {
                let prefixes: Vec<&str> = self
                    .config
                    .boards
                    .iter()
                    .map(|b| b.policy().reference_prefix.as_str())
                    .collect();
                reference_in(&msg.subject, &prefixes)
            })?;
        // Only the ids that name this very case count as its thread.
        thread_ids.retain(|id| composer.signer.verify(id).as_deref() == Some(reference.as_str()));
        Some(Located { reference, thread_ids })
    }

    /// The bot's request to board staff about a held record that `msg` replies to, if it is one: its
    /// Message-ID, signed for this board.
    fn approval_request(composer: &Composer<'_>, msg: &Inbound) -> Option<String> {
        msg.in_reply_to.iter().chain(msg.references.iter()).find_map(|id| {
            composer
                .signer
                .verify(id)
                .filter(|r| r.starts_with(HOLD_PREFIX))
                .map(|_| id.trim().trim_matches(['<', '>']).to_string())
        })
    }

    /// The address board staff are asked at: the business manager, the business office, or the Strategic
    /// Safeguarding Service Manager, whichever the board has, or else the board mailbox.
    fn staff_address(board: &Board) -> (String, String) {
        use crate::core::policy::Role;
        [
            Role::BusinessManager,
            Role::BusinessOffice,
            Role::StrategicSafeguardingServiceManager,
        ]
        .iter()
        .find_map(|r| board.settings.roles.get(r))
        .map(|c| (c.email.clone(), c.name.clone()))
        .unwrap_or_else(|| (board.settings.mailbox.clone(), "colleague".into()))
    }

    /// Hold a record from an organisation the board does not know yet: the board's staff are asked to
    /// APPROVE or REJECT it, its sender is told it is with the board team, and nothing else happens yet.
    #[allow(clippy::too_many_arguments)]
    async fn hold_record<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        parsed: &ParsedRecord,
        sender: &Person,
        domain: &str,
        mut report: Report,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let board = composer.board;
        let policy = board.policy();
        report.outcome = "held".into();
        report.problems = vec![format!(
            "{domain} is not yet one of the organisations the {} knows: the record is held for its business team's approval.",
            policy.board_name
        )];
        if dry_run {
            return Ok(report);
        }
        let record = &parsed.record;
        let immediate_risk = record.immediate_risk.unwrap_or(false);
        let cause = super::compose::nonce_of(&msg.message_id);
        let hold_ref = format!("{HOLD_PREFIX}{cause}");
        let (staff, staff_name) = Self::staff_address(board);
        let unknown = || "not given".to_string();
        let request = composer
            .email(
                "approval_request",
                Some(&hold_ref),
                "request",
                vec![staff.clone()],
                Vec::new(),
                None,
                json!({
                    "role_name": staff_name, "sender": sender.email, "domain": domain,
                    "escalating_agency": record.escalating_agency.clone().unwrap_or_else(unknown),
                    "other_agency": record.other_agency.clone().unwrap_or_else(unknown),
                    "stage": record.stage.unwrap_or(1), "immediate_risk": immediate_risk,
                    "adult": board.settings.personal_data_in_notifications.then(|| record.adult_name.clone()).flatten(),
                }),
            )
            .map_err(StoreError::Data)?;
        let notice = composer
            .email(
                "held_for_approval",
                None,
                &format!("h-{cause}"),
                vec![sender.email.clone()],
                Vec::new(),
                Some(&msg.message_id),
                json!({
                    "greeting": sender.name.clone().or_else(|| record.escalating_name.clone()).unwrap_or_else(|| "colleague".into()),
                    "domain": domain, "immediate_risk": immediate_risk, "risk_guidance": policy.immediate_risk.guidance,
                }),
            )
            .map_err(StoreError::Data)?;
        let (allowed, suppressed) = self
            .within_reply_cap(store, board, vec![request.clone(), notice], now)
            .await?;
        for e in &suppressed {
            store.record_event(board.id(), None, e).await?;
        }
        report.replies = allowed.len();
        let held = HeldRecord {
            id: 0,
            board_id: board.id().to_string(),
            inbound_id: inbound_id.unwrap_or_default(),
            sender: sender.email.clone(),
            domain: domain.to_string(),
            request_message_id: request.message_id.clone(),
            created_at: now,
            decided_at: None,
            decision: None,
            decided_by: None,
        };
        let event = Event {
            kind: "held_for_approval".into(),
            at: now,
            actor: sender.email.clone(),
            summary: format!(
                "Record from {} held for the board's approval ({domain} not yet known)",
                sender.email
            ),
            detail: json!({ "message_id": msg.message_id, "domain": domain, "asked": staff }),
        };
        let done = inbound_id.map(|id| InboundDone {
            id,
            outcome: "held".into(),
            problems: report.problems.clone(),
        });
        match inbound_id {
            Some(_) => store.hold_record(&held, done.as_ref(), &event, &allowed, now).await?,
            // Without a kept message there is nothing to open later: answered, and audited.
            None => {
                self.finish(store, board.id(), None, &report, Some(event), &allowed, now, false)
                    .await?
            }
        }
        Ok(report)
    }

    /// Board staff's APPROVE or REJECT, in reply to the request about a held record.
    #[allow(clippy::too_many_arguments)]
    async fn decide_approval<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        reading: &ReplyReading,
        sender: &Person,
        request: &str,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let board = composer.board;
        let intent = &reading.intent;
        let report = Report::for_reply(board, intent);
        let is_staff = is_staff(board, &sender.email);
        let sent_to_sender = store.outbox_email(request).await?.is_some_and(|o| {
            o.email
                .to
                .iter()
                .chain(o.email.cc.iter())
                .any(|a| a.eq_ignore_ascii_case(&sender.email))
        });
        let dmarc = board
            .settings
            .trusted_authserv_id
            .as_deref()
            .is_some_and(|id| dmarc_pass(msg, id, &sender.email));
        let held = store.held_record(request).await?.filter(|h| h.board_id == board.id());
        let refuse = |problem: String, report: Report| Acted::Refuse {
            reference: None,
            problem,
            report,
        };
        let acted = match (&intent.command, held) {
            _ if !is_staff => refuse(
                format!("Only the {}'s staff can approve or reject a held record.", board.policy().board_name),
                report,
            ),
            _ if !(sent_to_sender || dmarc) => refuse(
                "Please reply to the request from the address it was sent to: only then can the escalation service be sure the decision is yours.".into(),
                report,
            ),
            (_, None) => refuse("This is not a reply to a record held for approval.".into(), report),
            (Ok(ReplyCommand::Approve), Some(held)) => {
                self.approve(store, composer, msg, sender, held, report, inbound_id, now, dry_run)
                    .await?
            }
            (Ok(ReplyCommand::Reject { reason }), Some(held)) => {
                self.reject(store, composer, msg, sender, held, reason, report, inbound_id, now, dry_run)
                    .await?
            }
            (_, Some(_)) => refuse(
                "Reply APPROVE to open the case, or REJECT with the reason below it to turn it down.".into(),
                report,
            ),
        };
        self.answer(store, composer, msg, sender, acted, inbound_id, now, dry_run)
            .await
    }

    /// Open a held record's case, and trust its domain from now on.
    #[allow(clippy::too_many_arguments)]
    async fn approve<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        held: HeldRecord,
        mut report: Report,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Acted, StoreError> {
        let (raw, outcome) = store
            .inbound_raw(held.inbound_id)
            .await?
            .ok_or_else(|| StoreError::Data(format!("the held message {} is not kept", held.inbound_id)))?;
        // Approved, but its case not opened (the approval was interrupted): open it now, once.
        let unfinished = held.decision.as_deref() == Some("approved") && outcome.as_deref() == Some("held");
        if let (Some(at), false) = (held.decided_at, unfinished) {
            let problem = format!(
                "That record was already {} by {} ({}).",
                held.decision.unwrap_or_default(),
                held.decided_by.unwrap_or_default(),
                at.format("%-d %B %Y %H:%M UTC")
            );
            return Ok(Acted::Refuse {
                reference: None,
                problem,
                report,
            });
        }
        report.outcome = "command_applied".into();
        if dry_run {
            return Ok(Acted::Done(report));
        }
        // Read again as it was on arrival, within the time limit.
        let (decoded, record) = match self.read_one(&raw).await {
            Reading::Ready(p) => (p.decoded, p.record),
            Reading::Overran => return Err(StoreError::Data(format!("the held message: {}", self.overran_error()))),
            Reading::Busy => {
                return Err(StoreError::Data(
                    "the held message was not read now: readings that took too long are still running".into(),
                ))
            }
        };
        let original = decoded.map_err(|e| StoreError::Data(format!("the held message cannot be read: {}", e.0)))?;
        let original_sender = original.from.clone().unwrap_or_else(|| Person::email(&held.sender));
        if !unfinished
            && !store
                .decide_held_record(held.id, "approved", &sender.email, now)
                .await?
        {
            return Ok(Acted::Refuse {
                reference: None,
                problem: "That record was decided by someone else a moment ago.".into(),
                report,
            });
        }
        let opened = self
            .new_case(
                store,
                composer,
                &original,
                record,
                &original_sender,
                Some(held.inbound_id),
                now,
                false,
            )
            .await?;
        report.case = opened.case.clone();
        let sentence = match &opened.case {
            Some(r) => format!(
                "Approved: case {r} is open and {} has its acknowledgement. Records from {} now open cases directly.",
                held.sender, held.domain
            ),
            None => format!(
                "Approved: {} is trusted from now on, but the record could not be opened: {}",
                held.domain,
                opened.problems.join(" ")
            ),
        };
        let email = composer
            .email(
                "confirmation",
                None,
                &format!("ap-{}", super::compose::nonce_of(&msg.message_id)),
                vec![sender.email.clone()],
                Vec::new(),
                Some(&msg.message_id),
                json!({ "reference": opened.case, "headline": "approved", "headline_sentence": sentence,
                        "status_words": if opened.case.is_some() { "open" } else { "not opened" } }),
            )
            .map_err(StoreError::Data)?;
        report.replies = 1;
        let event = Self::event(
            "approved",
            &sender.email,
            format!("{} approved ({}); {}", held.domain, held.sender, sentence),
            &[],
            now,
        );
        self.finish(
            store,
            composer.board.id(),
            inbound_id,
            &report,
            event,
            &[email],
            now,
            false,
        )
        .await?;
        Ok(Acted::Done(report))
    }

    /// Turn a held record down: its sender is told why.
    #[allow(clippy::too_many_arguments)]
    async fn reject<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        held: HeldRecord,
        reason: &str,
        mut report: Report,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Acted, StoreError> {
        if held.decided_at.is_some() {
            return Ok(Acted::Refuse {
                reference: None,
                problem: format!(
                    "That record was already {} by {}.",
                    held.decision.unwrap_or_default(),
                    held.decided_by.unwrap_or_default()
                ),
                report,
            });
        }
        report.outcome = "command_applied".into();
        if dry_run {
            return Ok(Acted::Done(report));
        }
        let policy = composer.board.policy();
        let why = if reason.trim().is_empty() {
            "no reason was given; please contact the board's business team".to_string()
        } else {
            reason.trim().to_string()
        };
        let to_sender = composer
            .email(
                "refusal",
                None,
                &format!("rj-{}", super::compose::nonce_of(&msg.message_id)),
                vec![held.sender.clone()],
                Vec::new(),
                None,
                json!({
                    "greeting": "colleague", "out_of_scope": true,
                    "problems": [format!("The {}'s business team did not accept it: {why}", policy.board_name)],
                    "immediate_risk_note": policy.immediate_risk.guidance,
                }),
            )
            .map_err(StoreError::Data)?;
        let sentence = format!("Rejected: {} has been told why.", held.sender);
        let to_staff = composer
            .email(
                "confirmation",
                None,
                &format!("rs-{}", super::compose::nonce_of(&msg.message_id)),
                vec![sender.email.clone()],
                Vec::new(),
                Some(&msg.message_id),
                json!({
                    "headline": format!("Rejected: the record from {}", held.sender),
                    "headline_sentence": sentence, "status_words": "not opened",
                }),
            )
            .map_err(StoreError::Data)?;
        report.replies = 2;
        let event = Self::event(
            "rejected",
            &sender.email,
            format!("Record from {} rejected: {why}", held.sender),
            &[],
            now,
        );
        self.finish(
            store,
            composer.board.id(),
            inbound_id,
            &report,
            event,
            &[to_sender, to_staff],
            now,
            false,
        )
        .await?;
        // The sender is told (with the decision's outcome recorded) before the record is marked rejected:
        // should marking it fail, the record is still held and can be decided again; nobody is left untold.
        store
            .decide_held_record(held.id, "rejected", &sender.email, now)
            .await?;
        Ok(Acted::Done(report))
    }

    /// What proves that `sender` sent `msg`: a reply to an email the bot signed for this case and board
    /// and sent to that very address (the outbox row says to whom), or DMARC passed for the sender's domain
    /// by the board's trusted server.
    async fn proof<S: Store>(
        &self,
        store: &S,
        board: &Board,
        msg: &Inbound,
        sender: &str,
        located: &Located,
    ) -> Result<Proof, StoreError> {
        for id in &located.thread_ids {
            if let Some(sent) = store.outbox_email(id).await? {
                let e = &sent.email;
                let to_sender = e.to.iter().chain(e.cc.iter()).any(|a| a.eq_ignore_ascii_case(sender));
                if e.board_id == board.id() && e.case_reference.as_deref() == Some(&located.reference) && to_sender {
                    return Ok(Proof::SignedReply);
                }
            }
        }
        if let Some(id) = board.settings.trusted_authserv_id.as_deref() {
            if dmarc_pass(msg, id, sender) {
                return Ok(Proof::Dmarc);
            }
        }
        Ok(Proof::Missing)
    }

    /// Act on a reply, or answer why not.
    #[allow(clippy::too_many_arguments)]
    async fn reply<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        reading: &ReplyReading,
        sender: &Person,
        located: Located,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let acted = self
            .act_on_reply(
                store, composer, msg, reading, sender, &located, inbound_id, now, dry_run,
            )
            .await?;
        self.answer(store, composer, msg, sender, acted, inbound_id, now, dry_run)
            .await
    }

    /// What acting on a reply came to, answered: done as it is, or the refusal told to the sender.
    #[allow(clippy::too_many_arguments)]
    async fn answer<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        acted: Acted,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        match acted {
            Acted::Done(report) => Ok(report),
            Acted::Refuse {
                reference,
                problem,
                report,
            } => {
                self.command_error(
                    store,
                    composer,
                    msg,
                    sender,
                    reference.as_deref(),
                    problem,
                    report,
                    inbound_id,
                    now,
                    dry_run,
                )
                .await
            }
        }
    }

    /// The checks and the change a reply calls for; a refusal is returned, not yet answered. A refusal's
    /// `reference` is the case its answer may carry a token for: `None` for anyone not on the case.
    #[allow(clippy::too_many_arguments)]
    async fn act_on_reply<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        reading: &ReplyReading,
        sender: &Person,
        located: &Located,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Acted, StoreError> {
        let board = composer.board;
        let intent = Self::record_update(msg, &located.reference, reading);
        let mut report = Report::for_reply(board, &intent);
        let reference = located.reference.clone();
        report.case = Some(reference.clone());
        if let Some(why) = board
            .settings
            .trusted_authserv_id
            .as_deref()
            .and_then(|id| authentication_failure(msg, id))
        {
            let problem = format!(
                "This reply failed the sender checks of the board's mail server ({why}), so it cannot act on case {reference}. Please reply again from your organisation's own email account."
            );
            return Ok(Acted::Refuse {
                reference: None,
                problem,
                report,
            });
        }
        let is_staff = is_staff(board, &sender.email);
        let proof = self.proof(store, board, msg, &sender.email, located).await?;
        for attempt in 0..3 {
            // A case is looked up only within the board whose mailbox received the message.
            let stored = store
                .load_case(&reference)
                .await?
                .filter(|s| s.case.board == board.id());
            let Some(stored) = stored else {
                report.case = None;
                let problem = format!(
                    "There is no case {reference} at the {}: please check the reference, or reply to the escalation service's email about the case.",
                    board.policy().board_name
                );
                return Ok(Acted::Refuse {
                    reference: None,
                    problem,
                    report,
                });
            };
            let case = &stored.case;
            let participant = case.is_participant(&sender.email);
            if !(participant || is_staff) {
                let problem = format!("Only the people involved in case {reference} and the board's staff can act on it; {} is not one of them.", sender.email);
                return Ok(Acted::Refuse {
                    reference: None,
                    problem,
                    report,
                });
            }
            let mut decides_held = None;
            let command = match &intent.command {
                Err(problem) => {
                    return Ok(Acted::Refuse {
                        reference: Some(reference.clone()),
                        problem: problem.clone(),
                        report,
                    });
                }
                Ok(ReplyCommand::Confirm) => {
                    let mut held = None;
                    for id in &located.thread_ids {
                        if let Some(h) = store.held_command(id).await? {
                            held = Some(h);
                            break;
                        }
                    }
                    let Some(held) = held.filter(|h| h.board_id == board.id() && h.case_reference == reference) else {
                        let problem = format!("CONFIRM applies a command the escalation service asked you to confirm, and must be a reply to that request. This reply is not one, so nothing about case {reference} has changed.");
                        return Ok(Acted::Refuse {
                            reference: Some(reference.clone()),
                            problem,
                            report,
                        });
                    };
                    if !held.sender.eq_ignore_ascii_case(&sender.email) || proof == Proof::Missing {
                        let problem = format!("Only {} can confirm that command, by replying from that address to the escalation service's request.", held.sender);
                        return Ok(Acted::Refuse {
                            reference: Some(reference.clone()),
                            problem,
                            report,
                        });
                    }
                    if let Some(at) = held.decided_at {
                        let problem = format!(
                            "The {} you confirmed was already applied to case {reference} ({}); it has not been applied again.",
                            held.command_word,
                            at.format("%-d %B %Y %H:%M UTC")
                        );
                        return Ok(Acted::Refuse {
                            reference: Some(reference.clone()),
                            problem,
                            report,
                        });
                    }
                    report.command = Some(held.command_word.clone());
                    decides_held = Some(held.id);
                    held.command
                }
                Ok(ReplyCommand::Apply { command }) => {
                    if proof == Proof::Missing {
                        return self
                            .hold(
                                store,
                                composer,
                                msg,
                                sender,
                                case,
                                command,
                                &intent.reply_text,
                                report,
                                inbound_id,
                                now,
                                dry_run,
                            )
                            .await
                            .map(Acted::Done);
                    }
                    command.clone()
                }
                Ok(ReplyCommand::Unsure { word }) => {
                    // Neither applied nor called unknown: asked.
                    return Ok(Acted::Refuse {
                        reference: Some(reference.clone()),
                        problem: crate::core::reply::unsure_question(word, &reference),
                        report,
                    });
                }
                Ok(ReplyCommand::Approve | ReplyCommand::Reject { .. }) => {
                    return Ok(Acted::Refuse {
                        reference: Some(reference.clone()),
                        problem: "APPROVE and REJECT answer the escalation service's request about a record held for the board's approval; they do nothing to a case.".into(),
                        report,
                    });
                }
                Ok(other) => {
                    // STATUS, HELP and FORM are answered with the case as it stands, to the From address
                    // (its real owner, whoever wrote the header).
                    report.outcome = "command_applied".into();
                    let deadlines = crate::core::schedule::deadlines(&board.rules, case);
                    let email = composer
                        .answer(
                            case,
                            &deadlines,
                            other,
                            &sender.email,
                            &msg.message_id,
                            board.rules.local_date(now),
                        )
                        .map_err(StoreError::Data)?;
                    report.replies = 1;
                    let ev = Self::event(
                        "answered",
                        &sender.email,
                        format!(
                            "{} answered for {}",
                            intent.command_word.clone().unwrap_or_default(),
                            sender.email
                        ),
                        &[],
                        now,
                    );
                    self.finish(store, board.id(), inbound_id, &report, ev, &[email], now, dry_run)
                        .await?;
                    return Ok(Acted::Done(report));
                }
            };
            let t = match lifecycle::apply(&board.rules, case, sender, &command, now) {
                Ok(t) => t,
                Err(e) => {
                    return Ok(Acted::Refuse {
                        reference: Some(reference.clone()),
                        problem: e.0,
                        report,
                    })
                }
            };
            report.outcome = "command_applied".into();
            if dry_run {
                return Ok(Acted::Done(report));
            }
            let headline = report.command.clone().unwrap_or_default().to_lowercase();
            let mut outbox = composer
                .confirmation(&t, &sender.email, &msg.message_id, &headline)
                .map_err(StoreError::Data)?;
            // An UPDATE that gives the other party's address (or corrects it): they get the case's
            // acknowledgement now, as they would have had it when the case opened.
            if matches!(command, lifecycle::Command::UpdateRecord { .. }) {
                let before = case.other_party().map(|p| p.email.to_lowercase());
                let newly = t
                    .case
                    .other_party()
                    .map(|p| p.email.clone())
                    .filter(|e| Some(e.to_lowercase()) != before);
                if let Some(address) = newly {
                    let ack = composer
                        .acknowledgement(&t, &msg.message_id, &address, &[])
                        .map_err(StoreError::Data)?;
                    outbox.extend(
                        composer
                            .one_per_recipient(vec![ack])
                            .into_iter()
                            .filter(|e| e.to.iter().any(|a| a.eq_ignore_ascii_case(&address))),
                    );
                }
            }
            outbox.extend(
                composer
                    .notifications(&t, &t.notifications, &msg.message_id)
                    .map_err(StoreError::Data)?,
            );
            let (outbox, limited) = self.within_limits(store, board, outbox, now).await?;
            for e in &limited {
                store.record_event(board.id(), Some(&reference), e).await?;
            }
            report.replies = outbox.len();
            let inbound = inbound_id.map(|id| InboundDone {
                id,
                outcome: "command_applied".into(),
                problems: Vec::new(),
            });
            match store
                .save(
                    &stored,
                    &Change {
                        transition: t,
                        outbox,
                        inbound,
                        decides_held,
                    },
                )
                .await
            {
                Ok(_) => return Ok(Acted::Done(report)),
                Err(StoreError::Conflict(_)) if attempt < 2 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(reference))
    }

    /// Hold a command that came without proof of its sender, and ask the From address (whose real owner
    /// receives it, whoever wrote the header) to reply CONFIRM. Nothing about the case changes yet.
    #[allow(clippy::too_many_arguments)]
    async fn hold<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        case: &crate::core::case::Case,
        command: &lifecycle::Command,
        reply_text: &str,
        mut report: Report,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        report.outcome = "held".into();
        let word = report.command.clone().unwrap_or_else(|| command.name().to_uppercase());
        report.problems.push(format!(
            "{word} for {} came without proof that {} sent it; it is held until that address replies CONFIRM to the request sent to it.",
            case.reference, sender.email
        ));
        if dry_run {
            return Ok(report);
        }
        let challenge = composer
            .challenge(case, &word, reply_text, &sender.email, &msg.message_id)
            .map_err(StoreError::Data)?;
        let (allowed, suppressed) = self
            .within_reply_cap(store, composer.board, vec![challenge.clone()], now)
            .await?;
        for e in &suppressed {
            store
                .record_event(composer.board.id(), Some(&case.reference), e)
                .await?;
        }
        report.replies = allowed.len();
        let held = HeldCommand {
            id: 0,
            board_id: composer.board.id().to_string(),
            case_reference: case.reference.clone(),
            sender: sender.email.to_ascii_lowercase(),
            command_word: word.clone(),
            command: command.clone(),
            challenge_message_id: challenge.message_id.clone(),
            created_at: now,
            decided_at: None,
            decision: None,
        };
        let event = Event {
            kind: "held".into(),
            at: now,
            actor: sender.email.clone(),
            summary: format!(
                "{word} from {} held: no proof of sender; {} asked to confirm",
                sender.email, sender.email
            ),
            detail: json!({ "message_id": msg.message_id, "command": command, "challenge": challenge.message_id }),
        };
        let done = inbound_id.map(|id| InboundDone {
            id,
            outcome: "held".into(),
            problems: report.problems.clone(),
        });
        store.hold_command(&held, done.as_ref(), &event, &allowed, now).await?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn command_error<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        reference: Option<&str>,
        problem: String,
        mut report: Report,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        report.outcome = "refused".into();
        report.problems.push(problem.clone());
        let email: OutboundEmail = composer
            .email(
                "command_error",
                reference,
                &format!("e-{}", msg.message_id.replace(|c: char| !c.is_ascii_alphanumeric(), "")),
                vec![sender.email.clone()],
                Vec::new(),
                Some(&msg.message_id),
                json!({
                    "greeting": sender.name.clone().unwrap_or_else(|| "colleague".into()),
                    "reference": report.case, "problem": problem,
                    // A command written with doubt is asked about, not refused.
                    "question": problem.starts_with("Did you mean"),
                }),
            )
            .map_err(StoreError::Data)?;
        report.replies = 1;
        let ev = Self::event(
            "refused",
            &sender.email,
            format!("Command from {} refused", sender.email),
            &report.problems,
            now,
        );
        self.finish(
            store,
            composer.board.id(),
            inbound_id,
            &report,
            ev,
            &[email],
            now,
            dry_run,
        )
        .await?;
        Ok(report)
    }
}
