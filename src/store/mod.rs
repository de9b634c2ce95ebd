//! Storage: one [`Store`] trait, with SQLite (the embedded default) and PostgreSQL (scale-out) adapters.
//!
//! Both adapters run the same SQL, written once in [`sql`] with `$N` placeholders that both engines accept,
//! and instantiated per backend by a macro; what differs (connecting, pragmas, migrations, `FOR UPDATE SKIP
//! LOCKED`) lives in [`sqlite`] and [`postgres`]. Migrations are per backend with matching file names under
//! `migrations/`. One contract test suite (`tests/store_contract.rs`) runs against both.
//!
//! Rules kept here: a case's state, its deadlines, its timers, its audit event and the emails it causes are
//! written in one transaction ([`Store::create_case`], [`Store::save`]); cases carry a version so that two
//! instances cannot both apply a change to the same case; the event log is append-only (enforced by the
//! database); timers and outgoing emails are claimed with a lease, so a crashed worker's claim expires.

pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::case::{Case, CaseStatus};
use crate::core::lifecycle::{Command, Event, Transition};
use crate::core::schedule::{Deadline, Timer};

pub use postgres::{PgStore, PgUnit};
pub use sqlite::{SqliteStore, SqliteUnit};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("case {0} was changed by someone else meanwhile; load it again and retry")]
    Conflict(String),
    #[error("no case {0}")]
    NotFound(String),
    #[error("stored data could not be read: {0}")]
    Data(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An email to send, fixed (Message-ID included) when the change that causes it commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundEmail {
    pub message_id: String,
    pub board_id: String,
    pub case_reference: Option<String>,
    /// What it is: `acknowledgement`, `reminder`, `notification`…
    pub kind: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Not to be sent yet: it is for a board role whose address is still a placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// Files it carries (the board's record form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A file an outgoing email carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    /// The bytes, base64 (standard alphabet, padded).
    pub data_base64: String,
}

impl Attachment {
    pub fn new(filename: &str, content_type: &str, bytes: &[u8]) -> Self {
        use base64::Engine;
        Attachment {
            filename: filename.to_string(),
            content_type: content_type.to_string(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    pub fn bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(&self.data_base64).ok()
    }
}

/// Why an email waits in the outbox instead of going out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The role (`independent-chair`…) whose real address it waits for.
    pub role: String,
    /// In words an operator can act on.
    pub reason: String,
}

/// A transition with the emails it causes, written together.
#[derive(Debug, Clone)]
pub struct Change {
    pub transition: Transition,
    pub outbox: Vec<OutboundEmail>,
    /// The inbound message this change answers: its outcome is recorded in the same transaction, so a
    /// message is either fully processed or not at all.
    pub inbound: Option<InboundDone>,
    /// The held command this change carries out (its sender confirmed it), marked decided in the same
    /// transaction, so that a second CONFIRM finds it already applied.
    pub decides_held: Option<i64>,
}

impl Change {
    pub fn new(transition: Transition) -> Self {
        Change {
            transition,
            outbox: Vec::new(),
            inbound: None,
            decides_held: None,
        }
    }
}

/// A command that came without proof of its sender, held until the sender replies CONFIRM to the
/// challenge the bot sent to their address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldCommand {
    /// Set by the store.
    pub id: i64,
    pub board_id: String,
    pub case_reference: String,
    /// The address the command came From, and the only one whose CONFIRM applies it.
    pub sender: String,
    /// As written (`WITHDRAW`).
    pub command_word: String,
    pub command: Command,
    /// The Message-ID of the challenge email: a CONFIRM must reply to it.
    pub challenge_message_id: String,
    pub created_at: DateTime<Utc>,
    /// When it was applied (or otherwise settled), and how.
    pub decided_at: Option<DateTime<Utc>>,
    pub decision: Option<String>,
}

/// What became of an inbound message, written with its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDone {
    pub id: i64,
    pub outcome: String,
    pub problems: Vec<String>,
}

/// A case as stored, with the version its next save must match.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCase {
    pub id: i64,
    pub version: i64,
    pub case: Case,
}

#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub board: Option<String>,
    pub status: Option<CaseStatus>,
}

/// One line of `cases list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseSummary {
    pub reference: String,
    pub board: String,
    pub status: CaseStatus,
    pub stage: u8,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The earliest active deadline, while the case is open.
    pub next_due: Option<NaiveDate>,
}

/// An audit event as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub board: String,
    pub case_reference: Option<String>,
    pub event: Event,
}

/// A timer as stored: pending, or fired (and whether late).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimerRecord {
    pub id: i64,
    pub case_reference: String,
    pub board_id: String,
    pub timer: Timer,
    pub fired_at: Option<DateTime<Utc>>,
    pub late: bool,
    /// When the change that scheduled it was made (unknown for timers written before this was kept).
    pub created_at: Option<DateTime<Utc>>,
}

/// A fired timer's effects, to be written with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerDone {
    pub timer_id: i64,
    pub board_id: String,
    pub late: bool,
    pub event: Option<Event>,
    pub outbox: Vec<OutboundEmail>,
}

/// An outgoing email as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRecord {
    pub id: i64,
    pub email: OutboundEmail,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The recipients who have it already: a retry goes to the others only.
    pub delivered_to: Vec<String>,
    /// The recipients whose server refused it for good, with the reason.
    pub refused: Vec<Refused>,
    /// When an operator last asked for it to be tried again (`outbox retry`).
    pub retried_at: Option<DateTime<Utc>>,
}

/// A record from an organisation the board does not know yet, held for its staff's APPROVE or REJECT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldRecord {
    /// Set by the store.
    pub id: i64,
    pub board_id: String,
    /// The kept inbound message that carries the record.
    pub inbound_id: i64,
    pub sender: String,
    pub domain: String,
    /// The Message-ID of the request to board staff: APPROVE or REJECT replies to it.
    pub request_message_id: String,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// `approved` or `rejected`.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
}

/// A recipient that refused an email for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub address: String,
    pub error: String,
}

/// A kept inbound message and what became of it: `inbound list` and `inbound show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundRow {
    pub id: i64,
    pub board: Option<String>,
    pub mailbox: String,
    pub uidvalidity: Option<i64>,
    pub uid: Option<i64>,
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    /// `case_opened`, `command_applied`, `held`, `refused`, `ignored`, `quarantined`; `None` while unfinished.
    pub outcome: Option<String>,
    pub case_reference: Option<String>,
    pub problems: Vec<String>,
    pub processed_at: Option<DateTime<Utc>>,
    /// Empty once retention removed it.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

/// What waits, for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingFigures {
    /// Emails not yet sent nor given up (held ones included).
    pub queued: i64,
    /// When the oldest of them was queued.
    pub oldest_queued_at: Option<DateTime<Utc>>,
    /// The earliest moment an email not held and not claimed was due to be tried and still waits: long ago
    /// means the sender is stuck.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Timers whose moment has passed without their being acted on.
    pub timers_due: i64,
}

/// Which kept inbound messages `inbound list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundQuery {
    pub board: Option<String>,
    /// Empty: every outcome.
    pub outcomes: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// What retention removed for one case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub raw_messages: i64,
    pub emails: i64,
    pub audit_events_erased: i64,
    pub held_commands: i64,
}

/// A raw inbound message, kept until retention ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub board_id: Option<String>,
    pub mailbox: String,
    pub uidvalidity: Option<i64>,
    pub uid: Option<i64>,
    /// The Message-ID, or a hash of the raw message where there is none.
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    pub raw: Vec<u8>,
}

/// The content half of an inbound message's identity (with its Message-ID): a hash of its body, line
/// endings and trailing white space aside, so that the same message met again (re-fetched, or arriving a
/// second way with other trace headers) is seen once, and two different messages that share a Message-ID
/// are both kept.
pub fn content_hash(raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let body_start = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 2)
        .or_else(|| raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4))
        .unwrap_or(0);
    let body = raw.get(body_start..).unwrap_or_default();
    let mut hasher = Sha256::new();
    let mut pending_ws: Vec<u8> = Vec::new();
    for &b in body {
        match b {
            b'\r' => {}
            b' ' | b'\t' | b'\n' => pending_ws.push(b),
            _ => {
                hasher.update(&pending_ws);
                pending_ws.clear();
                hasher.update([b]);
            }
        }
    }
    hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Whether an inbound message was new, or seen before (and what became of it then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundInsert {
    New(i64),
    Seen { id: i64, outcome: Option<String> },
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Data(format!("timestamp {ms} out of range")))
}

/// A store whose work can be grouped: everything done through the [`Store::Unit`] it begins commits
/// together, or not at all. A refusal is not a failure: it commits with the rest. An operation that fails
/// with a database error fails the unit (callers then go one by one, as `process_batch` does); there are no
/// savepoints. Many messages in one commit, and new cases' rows written together (see `sql::Pending`), is
/// what makes a backlog fast.
pub trait Batching: Store {
    type Unit: Unit;
    fn begin_unit(&self) -> impl Future<Output = Result<Self::Unit>> + Send;
}

/// A unit of work: a [`Store`] whose changes land when it is committed, and are dropped otherwise.
pub trait Unit: Store {
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}

/// The store interface. Implemented by [`SqliteStore`] and [`PgStore`], and by their units of work.
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Bring the schema up to date.
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;

    /// Record (or update) a configured board.
    fn upsert_board(
        &self,
        id: &str,
        name: &str,
        policy_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Allocate the next reference of `board` for `year` (`PREFIX-YEAR-NNNN`), call `build` with it and
    /// write what it returns, all in one transaction. When `build` refuses, nothing is written and the
    /// number is not used up.
    fn create_case<F, E>(
        &self,
        board: &str,
        prefix: &str,
        year: i32,
        build: F,
    ) -> impl Future<Output = Result<std::result::Result<StoredCase, E>>> + Send
    where
        F: FnOnce(&str) -> std::result::Result<Change, E> + Send,
        E: Send;

    fn load_case(&self, reference: &str) -> impl Future<Output = Result<Option<StoredCase>>> + Send;

    /// Write a change to a case loaded as `loaded`; [`StoreError::Conflict`] when it changed meanwhile.
    fn save(&self, loaded: &StoredCase, change: &Change) -> impl Future<Output = Result<StoredCase>> + Send;

    fn list_cases(&self, filter: &CaseFilter) -> impl Future<Output = Result<Vec<CaseSummary>>> + Send;

    /// The references of open cases on which `email` is a participant.
    fn cases_of_participant(&self, email: &str) -> impl Future<Output = Result<Vec<String>>> + Send;

    fn deadlines(&self, reference: &str) -> impl Future<Output = Result<Vec<Deadline>>> + Send;

    fn timers(&self, reference: &str) -> impl Future<Output = Result<Vec<TimerRecord>>> + Send;

    /// The audit events of a case, oldest first (`None`: every event of every case).
    fn events(&self, reference: Option<&str>) -> impl Future<Output = Result<Vec<EventRecord>>> + Send;

    /// Append an event not tied to a case transition (a refusal, an ignored message).
    fn record_event(
        &self,
        board: &str,
        reference: Option<&str>,
        event: &Event,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Claim up to `limit` pending timers due at `now`, for `lease_ms`.
    fn claim_due_timers(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Vec<TimerRecord>>> + Send;

    /// The internal ids of the cases of `board` a digest reads, in order: every open one, and those
    /// changed (or, for a resolved one with a review date, closed) since `changed_since`. The digest then
    /// reads them a page at a time ([`Store::cases_by_id`]).
    fn cases_for_digest(
        &self,
        board: &str,
        changed_since: DateTime<Utc>,
        closed_since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// The internal ids of the cases of `board` a report on `[from, to)` reads: opened before `to`, and
    /// opened, closed or still open from `from`; and of those, the ids of the cases an overdue notice went
    /// for in the period.
    fn cases_for_report(
        &self,
        board: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Vec<i64>, Vec<i64>)>> + Send;

    /// The cases with these internal ids.
    fn cases_by_id(&self, ids: &[i64]) -> impl Future<Output = Result<Vec<Case>>> + Send;

    /// [`Store::cases_by_id`] with each case's id.
    fn cases_with_ids(&self, ids: &[i64]) -> impl Future<Output = Result<Vec<(i64, Case)>>> + Send;

    /// How many emails to `board` since `since` could not be used (refused or quarantined).
    fn count_unusable(&self, board: &str, since: DateTime<Utc>) -> impl Future<Output = Result<i64>> + Send;

    /// When `board`'s last scheduled digest was due (on-demand ones do not count).
    fn last_digest(&self, board: &str) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// Record the digest due at `scheduled_for` as sent, with its emails, in one transaction: false (and
    /// nothing written) when it was sent already (by another instance).
    fn record_digest(
        &self,
        board: &str,
        scheduled_for: DateTime<Utc>,
        on_demand: bool,
        outbox: &[OutboundEmail],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The earliest moment a pending timer can be acted on (its `fire_at`, or the end of its claim), if any.
    fn next_timer_at(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// Put a claimed timer off until `until` (outside working hours it waits for them); its `fire_at`, and
    /// so whether it is late, stays as it was.
    fn defer_timer(&self, timer_id: i64, until: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;

    /// Send the emails held for `board`'s `role` (its address was a placeholder) to `address` now; how many.
    fn release_held(
        &self,
        board: &str,
        role: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Mark claimed timers fired, each with the emails and event it caused, all in one transaction; a
    /// timer already fired (by another instance) is skipped with its emails. How many were fired.
    fn complete_timers(&self, done: &[TimerDone], now: DateTime<Utc>) -> impl Future<Output = Result<usize>> + Send;

    /// Mark a claimed timer fired, writing the emails and event it caused in the same transaction.
    fn complete_timer(
        &self,
        timer_id: i64,
        now: DateTime<Utc>,
        late: bool,
        event: Option<&Event>,
        outbox: &[OutboundEmail],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Queue emails not tied to a case change (a reply to a refused message).
    fn enqueue(&self, outbox: &[OutboundEmail], now: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;

    /// Claim up to `limit` emails ready to send at `now`, for `lease_ms`; each claim counts an attempt.
    fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>>> + Send;

    fn outbox_sent(&self, id: i64, now: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;

    /// The earliest moment an unsent email (not held, not given up) can next be tried: its next attempt,
    /// or the end of its claim; `None` when there is none (the sender sleeps until woken).
    fn next_outbox_at(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// For `/metrics` and `/healthz`: how many emails wait to be sent (held ones included) and when the
    /// oldest of them was queued; and how many timers' moments have passed without their being acted on.
    fn pending_figures(&self, now: DateTime<Utc>) -> impl Future<Output = Result<PendingFigures>> + Send;

    /// Record a failed attempt: retry at `retry_at`, or give up when it is `None`.
    fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    fn outbox(&self, reference: Option<&str>) -> impl Future<Output = Result<Vec<OutboxRecord>>> + Send;

    /// Record which recipients have an email now, and which refused it for good.
    fn outbox_progress(
        &self,
        id: i64,
        delivered_to: &[String],
        refused: &[Refused],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Try failed emails again from `now`: one (`Some(id)`) or every failed one; how many.
    fn outbox_retry(&self, id: Option<i64>, now: DateTime<Utc>) -> impl Future<Output = Result<u64>> + Send;

    /// How many emails have been queued to addresses at `domain` since `since` (rate limits).
    fn count_outbox_to_domain(&self, domain: &str, since: DateTime<Utc>) -> impl Future<Output = Result<i64>> + Send;

    /// How many emails `board` has queued since `since` (rate limits).
    fn count_outbox_of_board(&self, board: &str, since: DateTime<Utc>) -> impl Future<Output = Result<i64>> + Send;

    /// How many emails have been queued to `address` since `since` (for the per-sender reply cap).
    fn count_outbox_to(&self, address: &str, since: DateTime<Utc>) -> impl Future<Output = Result<i64>> + Send;

    /// Keep a raw inbound message, once: the same (mailbox, UIDVALIDITY, UID), or the same Message-ID with
    /// the same content ([`content_hash`]), is `Seen`.
    fn record_inbound(&self, msg: &InboundMessage) -> impl Future<Output = Result<InboundInsert>> + Send;

    /// [`Store::record_inbound`] for many messages in a few statements, answers in order. A message
    /// identical to an earlier one of the same call (same Message-ID, or same mailbox, UIDVALIDITY and UID)
    /// is `Seen` with an outcome: it is the same message, and has its effect once.
    fn record_inbound_many(&self, msgs: &[InboundMessage]) -> impl Future<Output = Result<Vec<InboundInsert>>> + Send;

    /// Finish an inbound message that changes no case: its audit event, the emails it causes and its
    /// outcome (when it was kept), in one transaction.
    #[allow(clippy::too_many_arguments)]
    fn finish_inbound(
        &self,
        board: &str,
        done: Option<&InboundDone>,
        reference: Option<&str>,
        event: Option<&Event>,
        outbox: &[OutboundEmail],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Count a failed attempt at processing the inbound message known by `key` (its identity: mailbox,
    /// UIDVALIDITY and UID, or Message-ID and content hash), in a transaction of its own; the attempts so far.
    fn note_failed_attempt(
        &self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// How many attempts at the message known by `key` have failed.
    fn failed_attempts(&self, key: &str) -> impl Future<Output = Result<i64>> + Send;

    /// Hold a command until its sender confirms it: the held command, the challenge email (whose
    /// Message-ID the held command names), its audit event and the inbound message's outcome, in one
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    fn hold_command(
        &self,
        held: &HeldCommand,
        done: Option<&InboundDone>,
        event: &Event,
        outbox: &[OutboundEmail],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The command held under the challenge whose Message-ID is `challenge_message_id`.
    fn held_command(&self, challenge_message_id: &str) -> impl Future<Output = Result<Option<HeldCommand>>> + Send;

    /// Hold a record for the board's approval: the held record, the emails that say so (to staff, to the
    /// sender), its audit event and the inbound message's outcome, in one transaction.
    #[allow(clippy::too_many_arguments)]
    fn hold_record(
        &self,
        held: &HeldRecord,
        done: Option<&InboundDone>,
        event: &Event,
        outbox: &[OutboundEmail],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The record held under the request whose Message-ID is `request_message_id`.
    fn held_record(&self, request_message_id: &str) -> impl Future<Output = Result<Option<HeldRecord>>> + Send;

    /// Settle a held record (`approved` or `rejected`) by `by`: false when it was settled already. Approving
    /// also remembers its domain for the board.
    fn decide_held_record(
        &self,
        id: i64,
        decision: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Whether the board's staff approved `domain`.
    fn domain_approved(&self, board: &str, domain: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The raw bytes of a kept inbound message, and what became of it (`None` while unfinished).
    fn inbound_raw(&self, id: i64) -> impl Future<Output = Result<Option<(Vec<u8>, Option<String>)>>> + Send;

    /// The signing secret every instance sharing this database uses: `candidate` if none is kept yet (it
    /// is kept), the kept one otherwise.
    fn shared_secret(&self, candidate: &str) -> impl Future<Output = Result<String>> + Send;

    /// The queued email with this Message-ID (to check whom the bot sent it to).
    fn outbox_email(&self, message_id: &str) -> impl Future<Output = Result<Option<OutboxRecord>>> + Send;

    /// Kept inbound messages, newest first (`inbound list`).
    fn inbound_list(&self, q: &InboundQuery) -> impl Future<Output = Result<Vec<InboundRow>>> + Send;

    /// One kept inbound message, with its raw bytes (`inbound show`).
    fn inbound_row(&self, id: i64) -> impl Future<Output = Result<Option<InboundRow>>> + Send;

    /// The emails the bot sent in answer to the message with this Message-ID (their In-Reply-To).
    fn replies_to(&self, message_id: &str) -> impl Future<Output = Result<Vec<OutboxRecord>>> + Send;

    /// Make a kept inbound message unfinished again, its failed attempts forgotten (`inbound retry`), so
    /// that processing it again acts on it. False when there is no such message or its raw bytes are gone.
    fn reopen_inbound(&self, id: i64, attempt_key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The closed cases of `board` that closed before `closed_before` and still hold personal data.
    fn retention_due(
        &self,
        board: &str,
        closed_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(i64, Case)>>> + Send;

    /// Remove a case's personal data in one transaction: its data becomes `anonymised`, its people and
    /// emails go, its raw messages are emptied, its audit events erased (kind and time kept), and `event`
    /// (which names no one) is appended.
    fn purge_case(
        &self,
        id: i64,
        anonymised: &Case,
        event: &Event,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Purged>> + Send;

    /// How many raw messages of `board` (`None`: of no board) tied to no case were received before `before`
    /// and are still kept; with `purge`, empty them (and forget held commands, held records and failed
    /// attempts from before then), appending `event` when any went.
    fn raw_messages_due(
        &self,
        board: Option<&str>,
        before: DateTime<Utc>,
        purge: Option<&Event>,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Record what became of an inbound message.
    fn set_inbound_outcome(
        &self,
        id: i64,
        outcome: &str,
        reference: Option<&str>,
        problems: &[String],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
}
