//! The inbound pipeline: one raw message in, one outcome out — a case opened, a command applied, a clear
//! refusal, or ignored — with everything it causes (case change, audit event, emails) committed together.
//!
//! Order: keep the raw message (once: a message seen before has no second effect), decode it within
//! limits, ignore auto-generated mail, find the board, then either act on a reply (matched by the bot's
//! signed Message-ID, or by a case reference in the subject from one of the case's participants) or open
//! a new case from a sender at an allowed domain. Whatever cannot be used gets a reply saying exactly what
//! to fix, with the board's blank form.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::compose::{blank_form, Composer};
use super::mime::{decode, Inbound, Limits};
use super::render::Templates;
use super::source::Ack;
use super::token::Signer;
use crate::config::{Board, Config};
use crate::core::case::Person;
use crate::core::intake::{parse_record, Labels, ParsedRecord};
use crate::core::lifecycle::{self, Event};
use crate::core::nhs;
use crate::core::reply::{parse_reply, ReplyCommand};
use crate::store::{
    Batching, Change, InboundDone, InboundInsert, InboundMessage, OutboundEmail, Store, StoreError, Unit,
};

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
    /// `case_opened`, `command_applied`, `refused` or `ignored`.
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
    /// The message could not be used at all (unreadable, or for no board): the source moves it to quarantine.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quarantine: bool,
}

impl Report {
    /// What the source should do with the message now that its effect has committed.
    pub fn ack(&self) -> Ack {
        if self.quarantine {
            Ack::Quarantine
        } else {
            Ack::Done
        }
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
        }
    }
}

/// Everything the pipeline needs besides the store and the clock.
pub struct Pipeline<'a> {
    pub config: &'a Config,
    pub reader: std::sync::Arc<Reader>,
    pub templates: Templates,
    pub key: Vec<u8>,
}

/// Decoding a message and reading the record in it: everything CPU-bound and store-free, shared with the
/// blocking threads that prepare a batch.
pub struct Reader {
    pub labels: Labels,
    pub limits: Limits,
}

impl Reader {
    /// Decode `raw` and read the record in it.
    pub fn prepare(&self, raw: &[u8]) -> Prepared {
        let decoded = decode(raw, &self.limits);
        let record = decoded.as_ref().ok().map(|m| self.read_record(m));
        Prepared { decoded, record }
    }

    /// The best reading of the record: the plain text or the HTML, whichever yields more fields.
    pub fn read_record(&self, msg: &Inbound) -> ParsedRecord {
        let text = msg.text.as_deref().map(|t| parse_record(t, &self.labels));
        // A plain text that already carries a whole form needs no second reading from the HTML.
        let text = match text {
            Some(t) if t.fields_found >= 8 && t.problems.is_empty() => return t,
            other => other,
        };
        let html = msg.html_text().map(|t| parse_record(&t, &self.labels));
        [text, html]
            .into_iter()
            .flatten()
            .max_by_key(|p| p.fields_found)
            .unwrap_or_default()
    }
}

/// A message decoded and its record read, ready for the decisions that need the store.
pub struct Prepared {
    decoded: Result<Inbound, super::mime::Unreadable>,
    /// The record, read whether or not the message turns out to be a new escalation.
    record: Option<ParsedRecord>,
}

/// The record fields as the `ingest --json` contract reports them (NHS number as ten digits when valid).
pub fn fields_json(parsed: &ParsedRecord) -> Value {
    let mut record = parsed.record.clone();
    if let Some(n) = record.nhs_number.as_deref().and_then(|n| nhs::normalise(n).ok()) {
        record.nhs_number = Some(n);
    }
    serde_json::to_value(&record).unwrap_or_else(|_| json!({}))
}

/// The case reference in a subject, e.g. "RE: BRAD-2027-0042: escalation received".
pub fn reference_in(subject: &str) -> Option<String> {
    subject
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| {
            let parts: Vec<&str> = w.split('-').collect();
            parts.len() == 3
                && (2..=8).contains(&parts[0].len())
                && parts[0].chars().all(|c| c.is_ascii_uppercase())
                && parts[1].len() == 4
                && parts[1].chars().all(|c| c.is_ascii_digit())
                && parts[2].len() >= 4
                && parts[2].chars().all(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
}

/// Why the trusted server's Authentication-Results reject the message (DMARC or DKIM failed), if they do.
pub fn authentication_failure(msg: &Inbound, trusted_authserv_id: &str) -> Option<String> {
    for header in &msg.authentication_results {
        let (server, results) = header.split_once(';').unwrap_or((header.as_str(), ""));
        let server = server.split_whitespace().next().unwrap_or_default();
        if !server.eq_ignore_ascii_case(trusted_authserv_id) {
            continue;
        }
        let r = results.to_lowercase();
        if r.contains("dmarc=fail") {
            return Some("DMARC failed".into());
        }
        if r.contains("dkim=fail") && !r.contains("dkim=pass") {
            return Some("DKIM failed".into());
        }
    }
    None
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
            }),
            templates: Templates::load(config.settings.templates_dir.as_deref())?,
            key,
        })
    }

    fn composer(&'a self, board: &'a Board) -> Composer<'a> {
        let domain = board
            .settings
            .mailbox
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        Composer {
            board,
            templates: &self.templates,
            signer: Signer::new(self.key.clone(), domain),
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

    /// Decode `raw` and read the record in it: the pure, CPU-bound part of processing a message.
    pub fn prepare(&self, raw: &[u8]) -> Prepared {
        self.reader.prepare(raw)
    }

    /// [`Pipeline::prepare`] for many messages, in order, on every core the machine has (up to four):
    /// this thread takes a share and the runtime's blocking threads the rest. A reader that fails outright
    /// (a bug in a parser) makes its messages unreadable, never the daemon stop.
    pub async fn prepare_all(&self, raws: &[&[u8]]) -> Vec<Prepared> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        if threads < 2 || raws.len() < 16 {
            return raws.iter().map(|r| self.prepare(r)).collect();
        }
        let mut chunks = raws.chunks(raws.len().div_ceil(threads));
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|chunk| {
                let reader = self.reader.clone();
                let owned: Vec<Vec<u8>> = chunk.iter().map(|r| r.to_vec()).collect();
                let task =
                    tokio::task::spawn_blocking(move || owned.iter().map(|r| reader.prepare(r)).collect::<Vec<_>>());
                (chunk.len(), task)
            })
            .collect();
        let mut out: Vec<Prepared> = first.iter().map(|r| self.prepare(r)).collect();
        for (len, task) in others {
            match task.await {
                Ok(v) => out.extend(v),
                Err(e) => {
                    tracing::error!(error = %e, "reading {len} messages failed; they are kept as unreadable");
                    out.extend((0..len).map(|_| Prepared {
                        decoded: Err(super::mime::Unreadable(
                            "the message could not be read (the reader failed)".into(),
                        )),
                        record: None,
                    }))
                }
            }
        }
        out
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
        // Decoding and reading, the CPU-bound part, for the whole batch at once on every core.
        let raws: Vec<&[u8]> = messages.iter().map(|(_, raw)| raw.as_slice()).collect();
        let prepared = self.prepare_all(&raws).await;
        let together = async {
            let unit = store.begin_unit().await?;
            // Every message kept in a few statements, not a round trip each.
            let kept: Vec<InboundMessage> = messages
                .iter()
                .zip(&prepared)
                .map(|((source, raw), p)| Self::kept(source, raw, &p.decoded, Some(board), now))
                .collect();
            let recorded = unit.record_inbound_many(&kept).await?;
            let mut reports = Vec::with_capacity(messages.len());
            for (((source, raw), prepared), recorded) in messages.iter().zip(prepared).zip(recorded) {
                reports.push(
                    self.process_prepared(&unit, source, raw, prepared, Some(recorded), Some(board), now, false)
                        .await?,
                );
            }
            unit.commit().await?;
            Ok::<_, StoreError>(reports)
        };
        match together.await {
            Ok(reports) => {
                for r in &reports {
                    tracing::info!(board, outcome = %r.outcome, case = ?r.case, "message processed");
                }
                reports.iter().map(Report::ack).collect()
            }
            Err(e) => {
                tracing::warn!(board, error = %e, "a batch failed; processing its messages one at a time");
                let mut acks = Vec::with_capacity(messages.len());
                for (source, raw) in messages {
                    acks.push(match self.process(store, source, raw, Some(board), now, false).await {
                        Ok(r) => {
                            tracing::info!(board, outcome = %r.outcome, case = ?r.case, "message processed");
                            r.ack()
                        }
                        Err(e) => {
                            tracing::error!(board, error = %e, "message not processed; it will be tried again");
                            Ack::Retry
                        }
                    });
                }
                acks
            }
        }
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
        self.process_prepared(store, source, raw, self.prepare(raw), None, board_hint, now, dry_run)
            .await
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
        let Prepared { decoded, record } = prepared;
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
                    return Ok(r);
                }
            }
        };
        self.process_decoded(store, decoded, record, board_hint, inbound_id, now, dry_run)
            .await
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
        // The per-sender reply cap: an address that has had its day's answers gets no more (a mail loop
        // with an auto-responder the headers did not reveal stops here). The suppression is audited.
        let cap = self
            .config
            .board(board)
            .map(|b| i64::from(b.settings.reply_cap_per_day))
            .unwrap_or(20);
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
                suppressed.push(email.to.join(", "));
            } else {
                allowed.push(email.clone());
            }
        }
        for to in &suppressed {
            let e = Event {
                kind: "reply_suppressed".into(),
                at: now,
                actor: to.clone(),
                summary: format!("Answer to {to} not sent: {cap} answers in 24 hours already"),
                detail: json!({ "cap": cap }),
            };
            store.record_event(board, None, &e).await?;
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
        let known = match reference {
            Some(r) => store.load_case(r).await?.map(|_| r),
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
        decoded: Result<Inbound, super::mime::Unreadable>,
        record: Option<ParsedRecord>,
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
                let ev = Self::event("refused", "unknown", "Unreadable message kept".into(), &r.problems, now);
                self.finish(store, &board_for_log, inbound_id, &r, ev, &[], now, dry_run)
                    .await?;
                return Ok(r);
            }
        };
        let sender = msg.from.clone();
        let actor = sender
            .as_ref()
            .map(|p| p.email.clone())
            .unwrap_or_else(|| "unknown".into());
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
        let composer = self.composer(board);
        // Our signed Message-ID in the thread headers, or our signed token in the plus address replied to.
        let verified = msg
            .in_reply_to
            .iter()
            .chain(msg.references.iter())
            .find_map(|id| composer.signer.verify(id))
            .filter(|r| r != "none")
            .or_else(|| {
                msg.to
                    .iter()
                    .chain(msg.cc.iter())
                    .find_map(|a| composer.signer.verify_address(&board.settings.mailbox, a))
            });
        let subject_ref = reference_in(&msg.subject);
        if verified.is_some() || subject_ref.is_some() {
            return self
                .reply(
                    store,
                    &composer,
                    &msg,
                    &sender,
                    verified,
                    subject_ref,
                    inbound_id,
                    now,
                    dry_run,
                )
                .await;
        }
        self.new_case(store, &composer, &msg, record, &sender, inbound_id, now, dry_run)
            .await
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
        let parsed = record.unwrap_or_else(|| self.read_record(msg));
        let mut report = Report::new("refused");
        report.board = Some(board.id().to_string());
        report.fields = fields_json(&parsed);
        let new = lifecycle::NewCase {
            record: parsed.record.clone(),
            sender: sender.clone(),
        };
        let mut problems = Vec::new();
        let mut out_of_scope = false;
        if !domain_allowed(board, &sender.email) {
            out_of_scope = true;
            problems.push(format!(
                "Only addresses at {} can open an escalation with the {}; {} is not one of them. If your organisation should be able to, please ask the board's business team to add it.",
                board.settings.allowed_sender_domains.join(", "),
                policy.board_name,
                sender.email
            ));
        } else if parsed.fields_found == 0 {
            problems.push(format!(
                "No escalation record was found in your email. Please fill in the {} below, one \"Label: value\" line per field.",
                policy.form.name
            ));
        } else {
            problems.extend(parsed.problems.iter().cloned());
            let year: i32 = board
                .rules
                .local_date(now)
                .format("%Y")
                .to_string()
                .parse()
                .unwrap_or(2000);
            let placeholder = crate::core::case::format_reference(&policy.reference_prefix, year, 0);
            if let Err(refusal) = lifecycle::open(&board.rules, &new, &placeholder, now) {
                out_of_scope = refusal.out_of_scope;
                problems.extend(refusal.problems);
            }
        }
        if !problems.is_empty() {
            report.problems = problems;
            let email = composer
                .email(
                    "refusal",
                    None,
                    &format!("r-{}", msg.message_id.replace(|c: char| !c.is_ascii_alphanumeric(), "")),
                    vec![sender.email.clone()],
                    Vec::new(),
                    Some(&msg.message_id),
                    json!({
                        "greeting": sender.name.clone().unwrap_or_else(|| "colleague".into()),
                        "problems": report.problems, "out_of_scope": out_of_scope,
                        "form": blank_form(&policy.form),
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
        let created = store
            .create_case(board.id(), &policy.reference_prefix, year, |reference| {
                let t = lifecycle::open(&board.rules, &new, reference, now).map_err(|r| r.problems.join(" "))?;
                let mut outbox = vec![composer.acknowledgement(&t, &msg.message_id)?];
                outbox.extend(composer.notifications(&t, &t.notifications)?);
                let inbound = inbound_id.map(|id| InboundDone {
                    id,
                    outcome: "case_opened".into(),
                    problems: Vec::new(),
                });
                Ok::<Change, String>(Change {
                    transition: t,
                    outbox,
                    inbound,
                })
            })
            .await?;
        match created {
            Ok(stored) => {
                report.case = Some(stored.case.reference.clone());
                report.replies = 1;
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

    /// Act on a reply, or answer why not.
    #[allow(clippy::too_many_arguments)]
    async fn reply<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        verified: Option<String>,
        subject_ref: Option<String>,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        match self
            .act_on_reply(
                store,
                composer,
                msg,
                sender,
                verified,
                subject_ref,
                inbound_id,
                now,
                dry_run,
            )
            .await?
        {
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

    /// The checks and the change a reply calls for; a refusal is returned, not yet answered.
    #[allow(clippy::too_many_arguments)]
    async fn act_on_reply<S: Store>(
        &self,
        store: &S,
        composer: &Composer<'_>,
        msg: &Inbound,
        sender: &Person,
        verified: Option<String>,
        subject_ref: Option<String>,
        inbound_id: Option<i64>,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Acted, StoreError> {
        let board = composer.board;
        let intent = parse_reply(&Self::body_text(msg));
        let mut report = Report::new("refused");
        report.board = Some(board.id().to_string());
        report.command = intent.command_word.clone();
        report.reply_text = Some(intent.reply_text.clone());
        let reference = verified.clone().or(subject_ref.clone()).unwrap_or_default();
        report.case = Some(reference.clone());
        if let Some(why) = board
            .settings
            .trusted_authserv_id
            .as_deref()
            .and_then(|id| authentication_failure(msg, id))
        {
            let problem = format!(
                "This reply failed the sender checks of the board's mail server ({why}), so it cannot act on case {}. Please reply again from your organisation's own email account.",
                verified.clone().or(subject_ref.clone()).unwrap_or_default()
            );
            return Ok(Acted::Refuse {
                reference: None,
                problem,
                report,
            });
        }
        let is_staff = board
            .settings
            .roles
            .values()
            .any(|c| c.email.eq_ignore_ascii_case(&sender.email))
            || board.settings.mailbox.eq_ignore_ascii_case(&sender.email);
        for attempt in 0..3 {
            let Some(stored) = store.load_case(&reference).await? else {
                report.case = None;
                let problem = format!("There is no case {reference}: please check the reference, or reply to the bot's email about the case.");
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
                    reference: Some(reference.clone()),
                    problem,
                    report,
                });
            }
            if verified.is_none() && !participant {
                let problem =
                    "Commands must be sent in reply to the escalation service's own email about the case.".to_string();
                return Ok(Acted::Refuse {
                    reference: Some(reference.clone()),
                    problem,
                    report,
                });
            }
            let command = match &intent.command {
                Err(problem) => {
                    return Ok(Acted::Refuse {
                        reference: Some(reference.clone()),
                        problem: problem.clone(),
                        report,
                    });
                }
                Ok(ReplyCommand::Apply { command }) => command.clone(),
                Ok(other) => {
                    // STATUS, HELP and FORM are answered with the case as it stands.
                    report.outcome = "command_applied".into();
                    let deadlines = crate::core::schedule::deadlines(&board.rules, case);
                    let email = composer
                        .answer(case, &deadlines, other, &sender.email, &msg.message_id)
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
            let headline = intent.command_word.clone().unwrap_or_default().to_lowercase();
            let mut outbox = vec![composer
                .confirmation(&t, &sender.email, &msg.message_id, &headline)
                .map_err(StoreError::Data)?];
            outbox.extend(composer.notifications(&t, &t.notifications).map_err(StoreError::Data)?);
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
                json!({ "greeting": sender.name.clone().unwrap_or_else(|| "colleague".into()), "reference": reference, "problem": problem }),
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
