//! The SQL both backends share, and the macro that implements [`super::Store`] with it for one backend.
//!
//! Placeholders are `$1`, `$2`… (PostgreSQL's form, which SQLite also accepts). Instants are stored as
//! milliseconds since the Unix epoch (BIGINT), dates as `YYYY-MM-DD` text, structured data as JSON text, so
//! that one statement means the same on both engines. A backend supplies only `FOR UPDATE SKIP LOCKED` or
//! nothing, for claiming work.

use chrono::NaiveDate;

use super::{Result, StoreError};
use crate::core::schedule::{DeadlineKind, TimerKind};

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Data(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Data(e.to_string()))
}

pub(crate) fn date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| StoreError::Data(format!("date {s:?}: {e}")))
}

pub(crate) fn deadline_kind(s: &str) -> DeadlineKind {
    if s == "projected" {
        DeadlineKind::Projected
    } else {
        DeadlineKind::Active
    }
}

pub(crate) fn deadline_kind_str(k: DeadlineKind) -> &'static str {
    match k {
        DeadlineKind::Active => "active",
        DeadlineKind::Projected => "projected",
    }
}

pub(crate) fn timer_kind(s: &str) -> Result<TimerKind> {
    TimerKind::parse(s).ok_or_else(|| StoreError::Data(format!("unknown timer kind {s:?}")))
}

/// Rows at most per multi-row statement: 1,000 rows of at most 12 columns stay inside both engines' limit
/// on bound parameters (SQLite 32,766; PostgreSQL 65,535).
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// What a unit of work has yet to write. A new case — its row, participants, deadlines, timers, event,
/// emails and the inbound message's outcome — waits here under an id reserved for it in advance (see
/// [`Pending::case_ids`]), and the sequence numbers it used are counted here, so that a batch of new
/// cases costs a handful of multi-row statements rather than round trips of its own. Every read and
/// every other write through the unit first writes what waits here, so the unit still sees its own
/// writes, in order.
#[derive(Default)]
pub struct Pending {
    /// New cases, each under its reserved id.
    pub(crate) changes: Vec<(i64, super::Change)>,
    /// Case ids reserved for this unit and not yet given out. PostgreSQL takes a block from the
    /// column's sequence (the unused rest is a gap, as after any rollback). SQLite counts on from the
    /// highest id in use, which no one else can change meanwhile: the unit holds the database's one
    /// write lock from its first write, and a case is created only after one (its reference number).
    pub(crate) case_ids: std::collections::VecDeque<i64>,
    /// The highest id given out by this unit, which SQLite's next block starts after.
    pub(crate) last_case_id: i64,
    /// (board, year) → the last number used, and whether it is still to be written.
    pub(crate) sequences: std::collections::BTreeMap<(String, i32), (i64, bool)>,
    /// A write of pending rows failed: the unit must not commit.
    pub(crate) broken: bool,
}

impl Pending {
    pub(crate) fn lock(m: &std::sync::Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Case ids a unit reserves at a time: one batch's worth.
pub(crate) const CASE_IDS_PER_BLOCK: i64 = 100;

pub(crate) const TIMER_COLUMNS: &str =
    "t.id, c.reference, c.board_id, t.key, t.kind, t.label, t.due_date, t.fire_at, t.fired_at, t.late, t.created_at";

pub(crate) const OUTBOX_COLUMNS: &str =
    "id, message_id, board_id, case_reference, kind, envelope, subject, body_text, body_html, headers, \
     attempts, created_at, sent_at, failed_at, last_error, delivered_to, refused, retried_at, held_role, held_reason, attachments";

/// Implements [`super::Store`] for `$store`, which provides `async fn conn(&self)` giving a connection
/// (from the pool, or the open transaction of a unit of work) and `async fn run_migrations(&self)`.
/// Writes open a transaction on that connection; inside a unit of work they write into the unit's own.
/// Each adapter type provides `async fn conn(&self)` and `fn pending(&self) -> Option<&Mutex<Pending>>`
/// (`None` on a store, `Some` on a unit of work, see [`Pending`]).
macro_rules! impl_store {
    ($store:ty, $db:ty, backend = $backend:literal, skip_locked = $skip:literal, unit = $unit:literal) => {
        use sqlx::Row as _;
        use $crate::core::case::CaseStatus;
        use $crate::core::lifecycle::Event;
        use $crate::core::schedule::{Deadline, Timer};
        use $crate::store::sql::{self, from_json, json};
        use $crate::store::{
            from_ms, to_ms, CaseFilter, CaseSummary, Change, EventRecord, HeldCommand, HeldRecord, InboundDone, InboundInsert,
            InboundMessage, OutboundEmail, OutboxRecord, Result, StoreError, StoredCase, TimerRecord,
        };

        type Conn = <$db as sqlx::Database>::Connection;

        /// Where one operation writes. On a store, a transaction of its own. Inside a unit of work, the
        /// unit's transaction itself, with no savepoint: an operation either writes nothing before it
        /// decides not to (a conflict, a duplicate, a refused build — see `create_case`), or fails with a
        /// database error, which fails the whole unit (and `process_batch` then takes its messages one by
        /// one). Savepoints would cost two statements per operation, a third of a new case's round trips.
        enum Tx<'c> {
            Own(sqlx::Transaction<'c, $db>),
            Unit(&'c mut Conn),
        }

        impl<'c> Tx<'c> {
            async fn begin(conn: &'c mut Conn) -> Result<Tx<'c>> {
                if $unit {
                    Ok(Tx::Unit(conn))
                } else {
                    Ok(Tx::Own(sqlx::Connection::begin(conn).await?))
                }
            }

            async fn commit(self) -> Result<()> {
                if let Tx::Own(tx) = self {
                    tx.commit().await?;
                }
                Ok(())
            }

            /// Undo the operation: on a unit, callers have written nothing to undo (see the type's notes).
            async fn rollback(self) -> Result<()> {
                if let Tx::Own(tx) = self {
                    tx.rollback().await?;
                }
                Ok(())
            }
        }

        impl std::ops::Deref for Tx<'_> {
            type Target = Conn;
            fn deref(&self) -> &Conn {
                match self {
                    Tx::Own(tx) => tx,
                    Tx::Unit(c) => c,
                }
            }
        }

        impl std::ops::DerefMut for Tx<'_> {
            fn deref_mut(&mut self) -> &mut Conn {
                match self {
                    Tx::Own(tx) => &mut *tx,
                    Tx::Unit(c) => c,
                }
            }
        }

        fn timer_row(row: &<$db as sqlx::Database>::Row) -> Result<TimerRecord> {
            Ok(TimerRecord {
                id: row.try_get("id")?,
                case_reference: row.try_get("reference")?,
                board_id: row.try_get("board_id")?,
                timer: Timer {
                    key: row.try_get("key")?,
                    kind: sql::timer_kind(&row.try_get::<String, _>("kind")?)?,
                    label: row.try_get("label")?,
                    due_date: sql::date(&row.try_get::<String, _>("due_date")?)?,
                    fire_at: from_ms(row.try_get("fire_at")?)?,
                },
                fired_at: row.try_get::<Option<i64>, _>("fired_at")?.map(from_ms).transpose()?,
                late: row.try_get::<i64, _>("late")? != 0,
                created_at: row.try_get::<Option<i64>, _>("created_at")?.map(from_ms).transpose()?,
            })
        }

        fn outbox_row(row: &<$db as sqlx::Database>::Row) -> Result<OutboxRecord> {
            #[derive(serde::Deserialize)]
            struct Envelope {
                to: Vec<String>,
                #[serde(default)]
                cc: Vec<String>,
            }
            let envelope: Envelope = from_json(&row.try_get::<String, _>("envelope")?)?;
            Ok(OutboxRecord {
                id: row.try_get("id")?,
                email: OutboundEmail {
                    message_id: row.try_get("message_id")?,
                    board_id: row.try_get("board_id")?,
                    case_reference: row.try_get("case_reference")?,
                    kind: row.try_get("kind")?,
                    to: envelope.to,
                    cc: envelope.cc,
                    subject: row.try_get("subject")?,
                    text: row.try_get("body_text")?,
                    html: row.try_get("body_html")?,
                    headers: from_json(&row.try_get::<String, _>("headers")?)?,
                    hold: match (
                        row.try_get::<Option<String>, _>("held_role")?,
                        row.try_get::<Option<String>, _>("held_reason")?,
                    ) {
                        (Some(role), Some(reason)) => Some($crate::store::Hold { role, reason }),
                        _ => None,
                    },
                    attachments: from_json(&row.try_get::<String, _>("attachments")?)?,
                },
                attempts: row.try_get("attempts")?,
                created_at: from_ms(row.try_get("created_at")?)?,
                sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(from_ms).transpose()?,
                failed_at: row.try_get::<Option<i64>, _>("failed_at")?.map(from_ms).transpose()?,
                last_error: row.try_get("last_error")?,
                delivered_to: from_json(&row.try_get::<String, _>("delivered_to")?)?,
                refused: from_json(&row.try_get::<String, _>("refused")?)?,
                retried_at: row.try_get::<Option<i64>, _>("retried_at")?.map(from_ms).transpose()?,
            })
        }

        fn inbound_row(r: &<$db as sqlx::Database>::Row) -> Result<$crate::store::InboundRow> {
            Ok($crate::store::InboundRow {
                id: r.try_get("id")?,
                board: r.try_get("board_id")?,
                mailbox: r.try_get("mailbox")?,
                uidvalidity: r.try_get("uidvalidity")?,
                uid: r.try_get("uid")?,
                message_id: r.try_get("message_id")?,
                received_at: from_ms(r.try_get("received_at")?)?,
                outcome: r.try_get("outcome")?,
                case_reference: r.try_get("reference")?,
                problems: match r.try_get::<Option<String>, _>("problems")? {
                    Some(p) => from_json(&p).unwrap_or_default(),
                    None => Vec::new(),
                },
                processed_at: r.try_get::<Option<i64>, _>("processed_at")?.map(from_ms).transpose()?,
                raw: r.try_get("raw")?,
            })
        }

        async fn insert_event(tx: &mut Tx<'_>, board: &str, case_id: Option<i64>, event: &Event) -> Result<i64> {
            let row = sqlx::query(
                "INSERT INTO events (board_id, case_id, at, kind, actor, summary, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(board)
            .bind(case_id)
            .bind(to_ms(event.at))
            .bind(&event.kind)
            .bind(&event.actor)
            .bind(&event.summary)
            .bind(json(&event.detail)?)
            .fetch_one(&mut **tx)
            .await?;
            Ok(row.try_get("id")?)
        }

        async fn insert_outbox(tx: &mut Tx<'_>, case_id: Option<i64>, emails: &[OutboundEmail], now: i64) -> Result<()> {
            let rows: Vec<_> = emails.iter().map(|e| (case_id, e, now)).collect();
            insert_outbox_rows(&mut **tx, &rows).await
        }

        /// Tell every daemon listening on this database that timers or outgoing email changed (PostgreSQL
        /// delivers the notification when the transaction commits, and not at all on rollback; several in one
        /// transaction arrive as one). SQLite has no such thing: its daemons watch the database file.
        async fn notify_changed(conn: &mut Conn) -> Result<()> {
            if $backend == "postgres" {
                sqlx::query("SELECT pg_notify('escalation_bot_timers', '')").execute(&mut *conn).await?;
            }
            Ok(())
        }

        async fn insert_outbox_rows(conn: &mut Conn, emails: &[(Option<i64>, &OutboundEmail, i64)]) -> Result<()> {
            if !emails.is_empty() {
                notify_changed(&mut *conn).await?;
            }
            for chunk in emails.chunks(sql::ROWS_PER_STATEMENT) {
                let mut rows = Vec::with_capacity(chunk.len());
                for (case_id, e, now) in chunk {
                    rows.push((
                        *case_id,
                        *e,
                        *now,
                        json(&serde_json::json!({ "to": e.to, "cc": e.cc }))?,
                        json(&e.headers)?,
                        json(&e.attachments)?,
                    ));
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO outbox (message_id, board_id, case_id, case_reference, kind, envelope, subject, \
                     body_text, body_html, headers, created_at, next_attempt_at, held_role, held_reason, attachments) ",
                );
                q.push_values(rows, |mut b, (case_id, e, now, envelope, headers, attachments)| {
                    b.push_bind(&e.message_id)
                        .push_bind(&e.board_id)
                        .push_bind(case_id)
                        .push_bind(&e.case_reference)
                        .push_bind(&e.kind)
                        .push_bind(envelope)
                        .push_bind(&e.subject)
                        .push_bind(&e.text)
                        .push_bind(&e.html)
                        .push_bind(headers)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(e.hold.as_ref().map(|h| h.role.clone()))
                        .push_bind(e.hold.as_ref().map(|h| h.reason.clone()))
                        .push_bind(attachments);
                });
                // No ON CONFLICT: every email's Message-ID is unique to it, so a second email with the same
                // id is a fault to report, never one to drop silently.
                q.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Everything changes write besides their case rows — participants, deadlines, timers, events,
        /// emails and the inbound messages' outcomes — each table in as few statements as its rows allow.
        /// A change to an existing case must first have removed the deadlines and timers it replaces.
        async fn write_children(conn: &mut Conn, changes: &[(i64, &Change)]) -> Result<()> {
            let mut participants = Vec::new();
            let mut deadlines = Vec::new();
            let mut timers = Vec::new();
            let mut events = Vec::new();
            let mut emails = Vec::new();
            let mut inbound = Vec::new();
            for (case_id, change) in changes {
                let t = &change.transition;
                for p in &t.case.participants {
                    participants.push((*case_id, p, json(&p.role)?.trim_matches('"').to_string()));
                }
                deadlines.extend(t.deadlines.iter().map(|d| (*case_id, d)));
                timers.extend(t.timers.created.iter().map(|timer| (*case_id, timer, to_ms(t.event.at))));
                events.push((*case_id, t.case.board.as_str(), &t.event, json(&t.event.detail)?));
                let now = to_ms(t.event.at);
                emails.extend(change.outbox.iter().map(|e| (Some(*case_id), e, now)));
                if let Some(done) = &change.inbound {
                    inbound.push((done.id, done.outcome.as_str(), json(&done.problems)?, now, *case_id));
                }
            }
            for chunk in participants.chunks(sql::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO participants (case_id, email, name, agency, role, stage) ",
                );
                q.push_values(chunk, |mut b, (case_id, p, role)| {
                    b.push_bind(*case_id)
                        .push_bind(p.email.to_lowercase())
                        .push_bind(&p.name)
                        .push_bind(&p.agency)
                        .push_bind(role)
                        .push_bind(i64::from(p.stage));
                });
                q.push(" ON CONFLICT (case_id, email) DO NOTHING");
                q.build().execute(&mut *conn).await?;
            }
            for chunk in deadlines.chunks(sql::ROWS_PER_STATEMENT) {
                let mut q =
                    sqlx::QueryBuilder::<$db>::new("INSERT INTO deadlines (case_id, label, stage, due_date, kind) ");
                q.push_values(chunk, |mut b, (case_id, d)| {
                    b.push_bind(*case_id)
                        .push_bind(&d.label)
                        .push_bind(d.stage.map(i64::from))
                        .push_bind(d.due_date.to_string())
                        .push_bind(sql::deadline_kind_str(d.kind));
                });
                q.build().execute(&mut *conn).await?;
            }
            for chunk in timers.chunks(sql::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO timers (case_id, key, kind, label, due_date, fire_at, created_at) ",
                );
                q.push_values(chunk, |mut b, (case_id, timer, created)| {
                    b.push_bind(*case_id)
                        .push_bind(&timer.key)
                        .push_bind(timer.kind.as_str())
                        .push_bind(&timer.label)
                        .push_bind(timer.due_date.to_string())
                        .push_bind(to_ms(timer.fire_at))
                        .push_bind(*created);
                });
                q.push(" ON CONFLICT (case_id, key) DO NOTHING");
                q.build().execute(&mut *conn).await?;
            }
            if !timers.is_empty() {
                notify_changed(&mut *conn).await?;
            }
            for chunk in events.chunks(sql::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO events (board_id, case_id, at, kind, actor, summary, detail) ",
                );
                q.push_values(chunk, |mut b, (case_id, board, e, detail)| {
                    b.push_bind(*board)
                        .push_bind(Some(*case_id))
                        .push_bind(to_ms(e.at))
                        .push_bind(&e.kind)
                        .push_bind(&e.actor)
                        .push_bind(&e.summary)
                        .push_bind(detail);
                });
                q.build().execute(&mut *conn).await?;
            }
            insert_outbox_rows(&mut *conn, &emails).await?;
            for chunk in inbound.chunks(sql::ROWS_PER_STATEMENT) {
                // One UPDATE for many messages: the new values as a table joined on the id.
                let mut q = sqlx::QueryBuilder::<$db>::new("WITH v (id, outcome, problems, processed_at, case_id) AS (");
                q.push_values(chunk, |mut b, (id, outcome, problems, now, case_id)| {
                    b.push("CAST(")
                        .push_bind_unseparated(*id)
                        .push_unseparated(" AS BIGINT)")
                        .push_bind(*outcome)
                        .push_bind(problems)
                        .push("CAST(")
                        .push_bind_unseparated(*now)
                        .push_unseparated(" AS BIGINT)")
                        .push("CAST(")
                        .push_bind_unseparated(*case_id)
                        .push_unseparated(" AS BIGINT)");
                });
                q.push(
                    ") UPDATE inbound SET outcome = v.outcome, problems = v.problems, processed_at = v.processed_at, \
                     case_id = v.case_id FROM v WHERE inbound.id = v.id",
                );
                q.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Write one change (its case row written by the caller). `fresh`: the case was created in this
        /// transaction, so it has no deadlines or timers to replace.
        async fn write_change(tx: &mut Tx<'_>, case_id: i64, change: &Change, fresh: bool) -> Result<()> {
            let t = &change.transition;
            if !fresh {
                sqlx::query("DELETE FROM deadlines WHERE case_id = $1").bind(case_id).execute(&mut **tx).await?;
                if !t.timers.cancelled.is_empty() {
                    let mut q =
                        sqlx::QueryBuilder::<$db>::new("DELETE FROM timers WHERE fired_at IS NULL AND case_id = ");
                    q.push_bind(case_id).push(" AND key IN (");
                    let mut keys = q.separated(", ");
                    for key in &t.timers.cancelled {
                        keys.push_bind(key);
                    }
                    q.push(")");
                    q.build().execute(&mut **tx).await?;
                }
            }
            write_children(&mut **tx, &[(case_id, change)]).await?;
            if let Some(held) = change.decides_held {
                let decided = sqlx::query(
                    "UPDATE held_commands SET decided_at = $1, decision = 'applied' WHERE id = $2 AND decided_at IS NULL",
                )
                .bind(to_ms(t.event.at))
                .bind(held)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if decided != 1 {
                    return Err(StoreError::Data(format!("held command {held} was already applied")));
                }
            }
            Ok(())
        }

        /// New cases' rows, under the ids reserved for them (see [`sql::Pending::case_ids`]).
        async fn insert_cases(conn: &mut Conn, changes: &[(i64, &Change)]) -> Result<()> {
            for chunk in changes.chunks(sql::ROWS_PER_STATEMENT) {
                let mut rows = Vec::with_capacity(chunk.len());
                for (id, change) in chunk {
                    let case = &change.transition.case;
                    rows.push((*id, case, to_ms(change.transition.event.at), json(case)?));
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(if $backend == "postgres" {
                    "INSERT INTO cases (id, reference, board_id, status, stage, opened_at, updated_at, closed_at, \
                     version, data) OVERRIDING SYSTEM VALUE "
                } else {
                    "INSERT INTO cases (id, reference, board_id, status, stage, opened_at, updated_at, closed_at, \
                     version, data) "
                });
                q.push_values(rows, |mut b, (id, case, at, data)| {
                    b.push_bind(id)
                        .push_bind(&case.reference)
                        .push_bind(&case.board)
                        .push_bind(case.status.as_str())
                        .push_bind(i64::from(case.stage))
                        .push_bind(to_ms(case.opened_at))
                        .push_bind(at)
                        .push_bind(closed_at(case))
                        .push_bind(1_i64)
                        .push_bind(data);
                });
                q.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Reserve a block of case ids for a unit of work (see [`sql::Pending::case_ids`]).
        async fn reserve_case_ids(conn: &mut Conn, pending: &std::sync::Mutex<sql::Pending>) -> Result<()> {
            let ids: Vec<i64> = if $backend == "postgres" {
                sqlx::query_scalar(
                    "SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, $1)",
                )
                .bind(sql::CASE_IDS_PER_BLOCK)
                .fetch_all(&mut *conn)
                .await?
            } else {
                let highest: i64 = sqlx::query_scalar(
                    "SELECT MAX(COALESCE((SELECT MAX(seq) FROM sqlite_sequence WHERE name = 'cases'), 0), \
                     COALESCE((SELECT MAX(id) FROM cases), 0))",
                )
                .fetch_one(&mut *conn)
                .await?;
                let from = highest.max(sql::Pending::lock(pending).last_case_id);
                (from + 1..=from + sql::CASE_IDS_PER_BLOCK).collect()
            };
            sql::Pending::lock(pending).case_ids.extend(ids);
            Ok(())
        }

        /// Write what waits in a unit of work (see [`sql::Pending`]).
        async fn flush(conn: &mut Conn, pending: &std::sync::Mutex<sql::Pending>) -> Result<()> {
            let (changes, sequences) = {
                let mut p = sql::Pending::lock(pending);
                if p.broken {
                    return Err(StoreError::Data("an earlier write in this unit of work failed".into()));
                }
                let sequences: Vec<((String, i32), i64)> = p
                    .sequences
                    .iter_mut()
                    .filter(|(_, (_, dirty))| *dirty)
                    .map(|(k, (n, dirty))| {
                        *dirty = false;
                        (k.clone(), *n)
                    })
                    .collect();
                (std::mem::take(&mut p.changes), sequences)
            };
            if changes.is_empty() && sequences.is_empty() {
                return Ok(());
            }
            let written = async {
                let refs: Vec<(i64, &Change)> = changes.iter().map(|(id, c)| (*id, c)).collect();
                insert_cases(&mut *conn, &refs).await?;
                write_children(&mut *conn, &refs).await?;
                for ((board, year), last) in &sequences {
                    sqlx::query("UPDATE case_sequences SET last_number = $1 WHERE board_id = $2 AND year = $3")
                        .bind(*last)
                        .bind(board)
                        .bind(i64::from(*year))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok::<(), StoreError>(())
            }
            .await;
            if written.is_err() {
                sql::Pending::lock(pending).broken = true;
            }
            written
        }

        impl $store {
            /// The connection for an operation, with anything a unit of work has pending written first.
            pub(crate) async fn lend(&self) -> Result<impl std::ops::DerefMut<Target = Conn> + Send + '_> {
                let mut conn = self.conn().await?;
                if let Some(pending) = self.pending() {
                    flush(&mut conn, pending).await?;
                }
                Ok(conn)
            }

            /// `create_case` inside a unit of work: the sequence counted in memory, an id reserved, the
            /// case left pending.
            async fn create_deferred<F, E>(
                &self,
                pending: &std::sync::Mutex<sql::Pending>,
                board: &str,
                prefix: &str,
                year: i32,
                build: F,
            ) -> Result<std::result::Result<StoredCase, E>>
            where
                F: FnOnce(&str) -> std::result::Result<Change, E> + Send,
                E: Send,
            {
                let mut conn = self.conn().await?;
                let key = (board.to_string(), year);
                let cached = sql::Pending::lock(pending).sequences.get(&key).map(|(n, _)| *n);
                let last = match cached {
                    Some(n) => n,
                    None => {
                        // Read the counter, and on PostgreSQL lock it for the unit, as the update would.
                        let row = sqlx::query(
                            "INSERT INTO case_sequences (board_id, year, last_number) VALUES ($1, $2, 0) \
                             ON CONFLICT (board_id, year) DO UPDATE SET last_number = case_sequences.last_number \
                             RETURNING last_number",
                        )
                        .bind(board)
                        .bind(i64::from(year))
                        .fetch_one(&mut *conn)
                        .await?;
                        let n: i64 = row.try_get("last_number")?;
                        sql::Pending::lock(pending).sequences.insert(key.clone(), (n, false));
                        n
                    }
                };
                let reference = $crate::core::case::format_reference(prefix, year, last + 1);
                let change = match build(&reference) {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e)),
                };
                let case = &change.transition.case;
                if case.reference != reference {
                    return Err(StoreError::Data(format!(
                        "the case built for {reference} carries reference {}",
                        case.reference
                    )));
                }
                if case.board != board {
                    return Err(StoreError::Data(format!(
                        "the case built for board {board} belongs to {}",
                        case.board
                    )));
                }
                if sql::Pending::lock(pending).case_ids.is_empty() {
                    reserve_case_ids(&mut conn, pending).await?;
                }
                let mut p = sql::Pending::lock(pending);
                let Some(id) = p.case_ids.pop_front() else {
                    return Err(StoreError::Data("no case id was reserved".into()));
                };
                p.last_case_id = p.last_case_id.max(id);
                let stored = StoredCase { id, version: 1, case: case.clone() };
                p.sequences.insert(key, (last + 1, true));
                p.changes.push((id, change));
                Ok(Ok(stored))
            }
        }

        async fn mark_inbound(tx: &mut Tx<'_>, done: &InboundDone, case_id: Option<i64>, now: i64) -> Result<()> {
            sqlx::query("UPDATE inbound SET outcome = $1, problems = $2, processed_at = $3, case_id = $4 WHERE id = $5")
                .bind(&done.outcome)
                .bind(json(&done.problems)?)
                .bind(now)
                .bind(case_id)
                .bind(done.id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        fn closed_at(case: &$crate::core::case::Case) -> Option<i64> {
            match case.status {
                CaseStatus::Open => None,
                CaseStatus::Resolved => case.resolution.as_ref().map(|r| to_ms(r.resolved_at)),
                CaseStatus::Withdrawn => case.withdrawal.as_ref().map(|w| to_ms(w.at)),
            }
        }

        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> Result<()> {
                self.run_migrations().await
            }

            async fn upsert_board(&self, id: &str, name: &str, policy_id: &str, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO boards (id, name, policy_id, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, policy_id = excluded.policy_id, \
                     updated_at = excluded.updated_at",
                )
                .bind(id)
                .bind(name)
                .bind(policy_id)
                .bind(to_ms(now))
                .execute(&mut *self.lend().await?)
                .await?;
                Ok(())
            }

            async fn create_case<F, E>(&self, board: &str, prefix: &str, year: i32, build: F) -> Result<std::result::Result<StoredCase, E>>
            where
                F: FnOnce(&str) -> std::result::Result<Change, E> + Send,
                E: Send,
            {
                if let Some(pending) = self.pending() {
                    return self.create_deferred(pending, board, prefix, year, build).await;
                }
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let row = sqlx::query(
                    "INSERT INTO case_sequences (board_id, year, last_number) VALUES ($1, $2, 1) \
                     ON CONFLICT (board_id, year) DO UPDATE SET last_number = case_sequences.last_number + 1 \
                     RETURNING last_number",
                )
                .bind(board)
                .bind(i64::from(year))
                .fetch_one(&mut *tx)
                .await?;
                let number: i64 = row.try_get("last_number")?;
                let reference = $crate::core::case::format_reference(prefix, year, number);
                let change = match build(&reference) {
                    Ok(c) => c,
                    Err(e) => {
                        // Give the number back (inside a unit there is no savepoint to roll back to).
                        sqlx::query(
                            "UPDATE case_sequences SET last_number = last_number - 1 WHERE board_id = $1 AND year = $2",
                        )
                        .bind(board)
                        .bind(i64::from(year))
                        .execute(&mut *tx)
                        .await?;
                        tx.rollback().await?;
                        return Ok(Err(e));
                    }
                };
                let case = &change.transition.case;
                if case.reference != reference {
                    return Err(StoreError::Data(format!(
                        "the case built for {reference} carries reference {}",
                        case.reference
                    )));
                }
                let now = to_ms(change.transition.event.at);
                let row = sqlx::query(
                    "INSERT INTO cases (reference, board_id, status, stage, opened_at, updated_at, closed_at, version, data) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8) RETURNING id",
                )
                .bind(&reference)
                .bind(board)
                .bind(case.status.as_str())
                .bind(i64::from(case.stage))
                .bind(to_ms(case.opened_at))
                .bind(now)
                .bind(closed_at(case))
                .bind(json(case)?)
                .fetch_one(&mut *tx)
                .await?;
                let id: i64 = row.try_get("id")?;
                write_change(&mut tx, id, &change, true).await?;
                tx.commit().await?;
                Ok(Ok(StoredCase { id, version: 1, case: case.clone() }))
            }

            async fn load_case(&self, reference: &str) -> Result<Option<StoredCase>> {
                let row = sqlx::query("SELECT id, version, data FROM cases WHERE reference = $1")
                    .bind(reference)
                    .fetch_optional(&mut *self.lend().await?)
                    .await?;
                match row {
                    None => Ok(None),
                    Some(row) => Ok(Some(StoredCase {
                        id: row.try_get("id")?,
                        version: row.try_get("version")?,
                        case: from_json(&row.try_get::<String, _>("data")?)?,
                    })),
                }
            }

            async fn save(&self, loaded: &StoredCase, change: &Change) -> Result<StoredCase> {
                let case = &change.transition.case;
                if case.reference != loaded.case.reference {
                    return Err(StoreError::Data(format!(
                        "a change to {} cannot be saved over {}",
                        case.reference, loaded.case.reference
                    )));
                }
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let updated = sqlx::query(
                    "UPDATE cases SET status = $1, stage = $2, updated_at = $3, closed_at = $4, data = $5, \
                     version = version + 1 WHERE id = $6 AND version = $7",
                )
                .bind(case.status.as_str())
                .bind(i64::from(case.stage))
                .bind(to_ms(change.transition.event.at))
                .bind(closed_at(case))
                .bind(json(case)?)
                .bind(loaded.id)
                .bind(loaded.version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated != 1 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict(case.reference.clone()));
                }
                write_change(&mut tx, loaded.id, change, false).await?;
                tx.commit().await?;
                Ok(StoredCase { id: loaded.id, version: loaded.version + 1, case: case.clone() })
            }

            async fn list_cases(&self, filter: &CaseFilter) -> Result<Vec<CaseSummary>> {
                let rows = sqlx::query(
                    "SELECT c.reference, c.board_id, c.status, c.stage, c.opened_at, c.updated_at, \
                     (SELECT MIN(d.due_date) FROM deadlines d WHERE d.case_id = c.id AND d.kind = 'active') AS next_due \
                     FROM cases c \
                     WHERE (CAST($1 AS TEXT) IS NULL OR c.board_id = $1) AND (CAST($2 AS TEXT) IS NULL OR c.status = $2) \
                     ORDER BY c.opened_at, c.reference",
                )
                .bind(&filter.board)
                .bind(filter.status.map(|s| s.as_str()))
                .fetch_all(&mut *self.lend().await?)
                .await?;
                rows.iter()
                    .map(|row| {
                        let status: String = row.try_get("status")?;
                        Ok(CaseSummary {
                            reference: row.try_get("reference")?,
                            board: row.try_get("board_id")?,
                            status: CaseStatus::parse(&status)
                                .ok_or_else(|| StoreError::Data(format!("unknown status {status:?}")))?,
                            stage: u8::try_from(row.try_get::<i64, _>("stage")?).unwrap_or(0),
                            opened_at: from_ms(row.try_get("opened_at")?)?,
                            updated_at: from_ms(row.try_get("updated_at")?)?,
                            next_due: row.try_get::<Option<String>, _>("next_due")?.map(|d| sql::date(&d)).transpose()?,
                        })
                    })
                    .collect()
            }

            async fn cases_of_participant(&self, email: &str) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT c.reference FROM participants p JOIN cases c ON c.id = p.case_id \
                     WHERE p.email = $1 AND c.status = 'open' ORDER BY c.reference",
                )
                .bind(email.to_lowercase())
                .fetch_all(&mut *self.lend().await?)
                .await?;
                rows.iter().map(|r| Ok(r.try_get("reference")?)).collect()
            }

            async fn deadlines(&self, reference: &str) -> Result<Vec<Deadline>> {
                let rows = sqlx::query(
                    "SELECT d.label, d.stage, d.due_date, d.kind FROM deadlines d JOIN cases c ON c.id = d.case_id \
                     WHERE c.reference = $1 ORDER BY d.due_date, d.stage IS NULL, d.stage",
                )
                .bind(reference)
                .fetch_all(&mut *self.lend().await?)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Deadline {
                            label: r.try_get("label")?,
                            stage: r.try_get::<Option<i64>, _>("stage")?.and_then(|s| u8::try_from(s).ok()),
                            due_date: sql::date(&r.try_get::<String, _>("due_date")?)?,
                            kind: sql::deadline_kind(&r.try_get::<String, _>("kind")?),
                        })
                    })
                    .collect()
            }

            async fn timers(&self, reference: &str) -> Result<Vec<TimerRecord>> {
                let q = format!(
                    "SELECT {} FROM timers t JOIN cases c ON c.id = t.case_id WHERE c.reference = $1 \
                     ORDER BY t.fire_at, t.key",
                    sql::TIMER_COLUMNS
                );
                let rows = sqlx::query(&q).bind(reference).fetch_all(&mut *self.lend().await?).await?;
                rows.iter().map(timer_row).collect()
            }

            async fn events(&self, reference: Option<&str>) -> Result<Vec<EventRecord>> {
                let rows = sqlx::query(
                    "SELECT e.id, e.board_id, c.reference, e.at, e.kind, e.actor, e.summary, e.detail \
                     FROM events e LEFT JOIN cases c ON c.id = e.case_id \
                     WHERE CAST($1 AS TEXT) IS NULL OR c.reference = $1 ORDER BY e.id",
                )
                .bind(reference)
                .fetch_all(&mut *self.lend().await?)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(EventRecord {
                            id: r.try_get("id")?,
                            board: r.try_get("board_id")?,
                            case_reference: r.try_get("reference")?,
                            event: Event {
                                kind: r.try_get("kind")?,
                                at: from_ms(r.try_get("at")?)?,
                                actor: r.try_get("actor")?,
                                summary: r.try_get("summary")?,
                                detail: from_json(&r.try_get::<String, _>("detail")?)?,
                            },
                        })
                    })
                    .collect()
            }

            async fn record_event(&self, board: &str, reference: Option<&str>, event: &Event) -> Result<i64> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let case_id: Option<i64> = match reference {
                    Some(r) => {
                        let row = sqlx::query("SELECT id FROM cases WHERE reference = $1")
                            .bind(r)
                            .fetch_optional(&mut *tx)
                            .await?;
                        match row {
                            Some(row) => Some(row.try_get("id")?),
                            None => return Err(StoreError::NotFound(r.to_string())),
                        }
                    }
                    None => None,
                };
                let id = insert_event(&mut tx, board, case_id, event).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn claim_due_timers(&self, now: chrono::DateTime<chrono::Utc>, limit: i64, lease_ms: i64) -> Result<Vec<TimerRecord>> {
                let now = to_ms(now);
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                // Claimed rows are marked with a lease no other claim can have given (now + lease, and the
                // claim's own ids), then read back with their cases in one statement.
                let claimed = sqlx::query(concat!(
                    "UPDATE timers SET claimed_until = $1 WHERE id IN (SELECT id FROM timers \
                     WHERE fired_at IS NULL AND fire_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2) \
                     ORDER BY fire_at, id LIMIT $3",
                    $skip,
                    ") RETURNING id"
                ))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let ids = claimed.iter().map(|r| r.try_get::<i64, _>("id")).collect::<std::result::Result<Vec<_>, _>>()?;
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(sql::ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {} FROM timers t JOIN cases c ON c.id = t.case_id WHERE t.id IN (",
                        sql::TIMER_COLUMNS
                    ));
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    q.push(")");
                    for r in q.build().fetch_all(&mut *tx).await? {
                        out.push(timer_row(&r)?);
                    }
                }
                tx.commit().await?;
                out.sort_by(|a, b| a.timer.fire_at.cmp(&b.timer.fire_at).then(a.id.cmp(&b.id)));
                Ok(out)
            }

            async fn cases_for_digest(
                &self,
                board: &str,
                changed_since: chrono::DateTime<chrono::Utc>,
                closed_since: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<i64>> {
                let rows = sqlx::query(
                    "SELECT id FROM cases WHERE board_id = $1 AND (status = 'open' OR updated_at >= $2 \
                     OR (status = 'resolved' AND closed_at >= $3)) ORDER BY id",
                )
                .bind(board)
                .bind(to_ms(changed_since))
                .bind(to_ms(closed_since))
                .fetch_all(&mut *self.lend().await?)
                .await?;
                rows.iter().map(|r| Ok(r.try_get::<i64, _>("id")?)).collect()
            }

            async fn cases_by_id(&self, ids: &[i64]) -> Result<Vec<$crate::core::case::Case>> {
                Ok(self.cases_with_ids(ids).await?.into_iter().map(|(_, c)| c).collect())
            }

            async fn cases_with_ids(&self, ids: &[i64]) -> Result<Vec<(i64, $crate::core::case::Case)>> {
                let mut out = Vec::with_capacity(ids.len());
                let mut conn = self.lend().await?;
                for chunk in ids.chunks(sql::ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT id, data FROM cases WHERE id IN (");
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    q.push(") ORDER BY id");
                    for r in q.build().fetch_all(&mut *conn).await? {
                        out.push((r.try_get::<i64, _>("id")?, from_json(&r.try_get::<String, _>("data")?)?));
                    }
                }
                Ok(out)
            }

            async fn cases_for_report(
                &self,
                board: &str,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> Result<(Vec<i64>, Vec<i64>)> {
                let mut conn = self.lend().await?;
                let ids = sqlx::query(
                    "SELECT id FROM cases WHERE board_id = $1 AND opened_at < $3 \
                     AND (opened_at >= $2 OR closed_at >= $2 OR status = 'open') ORDER BY id",
                )
                .bind(board)
                .bind(to_ms(from))
                .bind(to_ms(to))
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("id"))
                .collect::<std::result::Result<Vec<_>, _>>()?;
                let overdue = sqlx::query(
                    "SELECT DISTINCT case_id FROM events WHERE board_id = $1 AND kind = 'overdue_notice_sent' \
                     AND at >= $2 AND at < $3 AND case_id IS NOT NULL ORDER BY case_id",
                )
                .bind(board)
                .bind(to_ms(from))
                .bind(to_ms(to))
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("case_id"))
                .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok((ids, overdue))
            }

            async fn count_unusable(&self, board: &str, since: chrono::DateTime<chrono::Utc>) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM inbound WHERE board_id = $1 AND received_at >= $2 \
                     AND outcome IN ('refused', 'quarantined')",
                )
                .bind(board)
                .bind(to_ms(since))
                .fetch_one(&mut *self.lend().await?)
                .await?;
                Ok(row.try_get("n")?)
            }

            async fn last_digest(&self, board: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
                let row: Option<i64> = sqlx::query(
                    "SELECT MAX(scheduled_for) AS last FROM digests WHERE board_id = $1 AND on_demand = 0",
                )
                .bind(board)
                .fetch_one(&mut *self.lend().await?)
                .await?
                .try_get("last")?;
                row.map(from_ms).transpose()
            }

            async fn record_digest(
                &self,
                board: &str,
                scheduled_for: chrono::DateTime<chrono::Utc>,
                on_demand: bool,
                outbox: &[OutboundEmail],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "INSERT INTO digests (board_id, scheduled_for, sent_at, on_demand) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (board_id, scheduled_for) DO NOTHING",
                )
                .bind(board)
                .bind(to_ms(scheduled_for))
                .bind(to_ms(now))
                .bind(i64::from(on_demand))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                insert_outbox(&mut tx, None, outbox, to_ms(now)).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn next_timer_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
                let mut conn = self.lend().await?;
                // Two index walks: the earliest unclaimed timer (timers_pending), and the earliest end of a
                // claim or a deferral (timers_claimed).
                let unclaimed: Option<i64> = sqlx::query(
                    "SELECT fire_at FROM timers WHERE fired_at IS NULL AND claimed_until IS NULL ORDER BY fire_at LIMIT 1",
                )
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get("fire_at"))
                .transpose()?;
                let claimed: Option<i64> = sqlx::query(
                    "SELECT claimed_until FROM timers WHERE fired_at IS NULL AND claimed_until IS NOT NULL \
                     ORDER BY claimed_until LIMIT 1",
                )
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get("claimed_until"))
                .transpose()?;
                // A claim ends after the timer's own moment, so a claimed timer wakes at the claim's end.
                match (unclaimed, claimed) {
                    (Some(a), Some(b)) => Ok(Some(from_ms(a.min(b))?)),
                    (Some(a), None) | (None, Some(a)) => Ok(Some(from_ms(a)?)),
                    (None, None) => Ok(None),
                }
            }

            async fn defer_timer(&self, timer_id: i64, until: chrono::DateTime<chrono::Utc>) -> Result<()> {
                sqlx::query("UPDATE timers SET claimed_until = $1 WHERE id = $2 AND fired_at IS NULL")
                    .bind(to_ms(until))
                    .bind(timer_id)
                    .execute(&mut *self.lend().await?)
                    .await?;
                Ok(())
            }

            async fn release_held(&self, board: &str, role: &str, address: &str, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
                let envelope = json(&serde_json::json!({ "to": [address], "cc": [] }))?;
                let done = sqlx::query(
                    "UPDATE outbox SET envelope = $1, held_role = NULL, held_reason = NULL, next_attempt_at = $2 \
                     WHERE board_id = $3 AND held_role = $4 AND held_reason IS NOT NULL AND sent_at IS NULL",
                )
                .bind(envelope)
                .bind(to_ms(now))
                .bind(board)
                .bind(role)
                .execute(&mut *self.lend().await?)
                .await?;
                if done.rows_affected() > 0 {
                    notify_changed(&mut *self.lend().await?).await?;
                }
                Ok(done.rows_affected())
            }

            async fn complete_timer(
                &self,
                timer_id: i64,
                now: chrono::DateTime<chrono::Utc>,
                late: bool,
                event: Option<&Event>,
                outbox: &[OutboundEmail],
            ) -> Result<()> {
                let board: Option<String> = sqlx::query(
                    "SELECT c.board_id FROM timers t JOIN cases c ON c.id = t.case_id WHERE t.id = $1",
                )
                .bind(timer_id)
                .fetch_optional(&mut *self.lend().await?)
                .await?
                .map(|r| r.try_get("board_id"))
                .transpose()?;
                let Some(board_id) = board else {
                    return Ok(());
                };
                let done = $crate::store::TimerDone {
                    timer_id,
                    board_id,
                    late,
                    event: event.cloned(),
                    outbox: outbox.to_vec(),
                };
                self.complete_timers(std::slice::from_ref(&done), now).await.map(|_| ())
            }

            async fn complete_timers(&self, done: &[$crate::store::TimerDone], now: chrono::DateTime<chrono::Utc>) -> Result<usize> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let mut fired = 0;
                let mut emails = Vec::new();
                for d in done {
                    let row = sqlx::query(
                        "UPDATE timers SET fired_at = $1, late = $2, claimed_until = NULL \
                         WHERE id = $3 AND fired_at IS NULL RETURNING case_id",
                    )
                    .bind(to_ms(now))
                    .bind(i64::from(d.late))
                    .bind(d.timer_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    // Already fired (by another instance): doing it again would send twice.
                    let Some(row) = row else { continue };
                    let case_id: i64 = row.try_get("case_id")?;
                    if let Some(e) = &d.event {
                        insert_event(&mut tx, &d.board_id, Some(case_id), e).await?;
                    }
                    emails.extend(d.outbox.iter().map(|e| (Some(case_id), e, to_ms(now))));
                    fired += 1;
                }
                insert_outbox_rows(&mut *tx, &emails).await?;
                tx.commit().await?;
                Ok(fired)
            }

            async fn enqueue(&self, outbox: &[OutboundEmail], now: chrono::DateTime<chrono::Utc>) -> Result<()> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                insert_outbox(&mut tx, None, outbox, to_ms(now)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_outbox(&self, now: chrono::DateTime<chrono::Utc>, limit: i64, lease_ms: i64) -> Result<Vec<OutboxRecord>> {
                let now = to_ms(now);
                let q = format!(
                    concat!(
                        "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id IN (SELECT id FROM outbox \
                         WHERE sent_at IS NULL AND failed_at IS NULL AND held_reason IS NULL AND next_attempt_at <= $2 \
                         AND (claimed_until IS NULL OR claimed_until <= $2) ORDER BY next_attempt_at, id LIMIT $3",
                        $skip,
                        ") RETURNING {}"
                    ),
                    sql::OUTBOX_COLUMNS
                );
                let rows = sqlx::query(&q).bind(now + lease_ms).bind(now).bind(limit).fetch_all(&mut *self.lend().await?).await?;
                let mut out = rows.iter().map(outbox_row).collect::<Result<Vec<_>>>()?;
                out.sort_by_key(|r| r.id);
                Ok(out)
            }

            async fn outbox_sent(&self, id: i64, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
                sqlx::query("UPDATE outbox SET sent_at = $1, claimed_until = NULL, last_error = NULL WHERE id = $2")
                    .bind(to_ms(now))
                    .bind(id)
                    .execute(&mut *self.lend().await?)
                    .await?;
                Ok(())
            }

            async fn next_outbox_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
                // Few rows are unsent at any time (the outbox_pending index holds just those).
                let row: Option<i64> = sqlx::query(
                    "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at \
                     THEN claimed_until ELSE next_attempt_at END) AS next FROM outbox \
                     WHERE sent_at IS NULL AND failed_at IS NULL AND held_reason IS NULL",
                )
                .fetch_one(&mut *self.lend().await?)
                .await?
                .try_get("next")?;
                row.map(from_ms).transpose()
            }

            async fn pending_figures(&self, now: chrono::DateTime<chrono::Utc>) -> Result<$crate::store::PendingFigures> {
                let now = to_ms(now);
                let mut conn = self.lend().await?;
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n, MIN(created_at) AS oldest, \
                     MIN(CASE WHEN held_reason IS NULL AND next_attempt_at <= $1 \
                              AND (claimed_until IS NULL OR claimed_until <= $1) THEN next_attempt_at END) AS due \
                     FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
                )
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                let queued: i64 = row.try_get("n")?;
                let oldest: Option<i64> = row.try_get("oldest")?;
                let due: Option<i64> = row.try_get("due")?;
                let timers_due: i64 = sqlx::query("SELECT COUNT(*) AS n FROM timers WHERE fired_at IS NULL AND fire_at <= $1")
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get("n")?;
                Ok($crate::store::PendingFigures {
                    queued,
                    oldest_queued_at: oldest.map(from_ms).transpose()?,
                    oldest_due_at: due.map(from_ms).transpose()?,
                    timers_due,
                })
            }

            async fn outbox_failed(
                &self,
                id: i64,
                error: &str,
                retry_at: Option<chrono::DateTime<chrono::Utc>>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE outbox SET last_error = $1, claimed_until = NULL, \
                     next_attempt_at = COALESCE($2, next_attempt_at), \
                     failed_at = CASE WHEN CAST($2 AS BIGINT) IS NULL THEN $3 ELSE NULL END WHERE id = $4",
                )
                .bind(error)
                .bind(retry_at.map(to_ms))
                .bind(to_ms(now))
                .bind(id)
                .execute(&mut *self.lend().await?)
                .await?;
                Ok(())
            }

            async fn outbox(&self, reference: Option<&str>) -> Result<Vec<OutboxRecord>> {
                let q = format!(
                    "SELECT {} FROM outbox WHERE CAST($1 AS TEXT) IS NULL OR case_reference = $1 ORDER BY id",
                    sql::OUTBOX_COLUMNS
                );
                let rows = sqlx::query(&q).bind(reference).fetch_all(&mut *self.lend().await?).await?;
                rows.iter().map(outbox_row).collect()
            }

            async fn outbox_progress(&self, id: i64, delivered_to: &[String], refused: &[$crate::store::Refused]) -> Result<()> {
                sqlx::query("UPDATE outbox SET delivered_to = $1, refused = $2 WHERE id = $3")
                    .bind(json(&delivered_to)?)
                    .bind(json(&refused)?)
                    .bind(id)
                    .execute(&mut *self.lend().await?)
                    .await?;
                Ok(())
            }

            async fn outbox_retry(&self, id: Option<i64>, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
                let done = sqlx::query(
                    "UPDATE outbox SET failed_at = NULL, claimed_until = NULL, next_attempt_at = $1, retried_at = $1 \
                     WHERE failed_at IS NOT NULL AND sent_at IS NULL AND (CAST($2 AS BIGINT) IS NULL OR id = $2)",
                )
                .bind(to_ms(now))
                .bind(id)
                .execute(&mut *self.lend().await?)
                .await?;
                if done.rows_affected() > 0 {
                    notify_changed(&mut *self.lend().await?).await?;
                }
                Ok(done.rows_affected())
            }

            async fn count_outbox_to_domain(&self, domain: &str, since: chrono::DateTime<chrono::Utc>) -> Result<i64> {
                // Addresses are validated (no quotes, no wildcards): `@domain"` inside the JSON envelope is exact.
                let pattern = format!("%@{}\"%", domain.to_lowercase());
                let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE created_at >= $1 AND LOWER(envelope) LIKE $2")
                    .bind(to_ms(since))
                    .bind(pattern)
                    .fetch_one(&mut *self.lend().await?)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn count_outbox_of_board(&self, board: &str, since: chrono::DateTime<chrono::Utc>) -> Result<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE created_at >= $1 AND board_id = $2")
                    .bind(to_ms(since))
                    .bind(board)
                    .fetch_one(&mut *self.lend().await?)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn count_outbox_to(&self, address: &str, since: chrono::DateTime<chrono::Utc>) -> Result<i64> {
                // Addresses are validated (no quotes, no wildcards), so a match inside the JSON envelope is exact.
                let pattern = format!("%\"{}\"%", address.to_lowercase());
                let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE created_at >= $1 AND LOWER(envelope) LIKE $2")
                    .bind(to_ms(since))
                    .bind(pattern)
                    .fetch_one(&mut *self.lend().await?)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn record_inbound(&self, msg: &InboundMessage) -> Result<InboundInsert> {
                // Nothing pending in a unit can make this insert wrong, so it goes first without waiting.
                let mut conn = self.conn().await?;
                // The common case, a new message, in one statement: the unique Message-ID and the unique
                // (mailbox, UIDVALIDITY, UID) make a message seen before insert nothing.
                let hash = $crate::store::content_hash(&msg.raw);
                let inserted = sqlx::query(
                    "INSERT INTO inbound (board_id, mailbox, uidvalidity, uid, message_id, received_at, raw, content_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(&msg.board_id)
                .bind(&msg.mailbox)
                .bind(msg.uidvalidity)
                .bind(msg.uid)
                .bind(&msg.message_id)
                .bind(to_ms(msg.received_at))
                .bind(&msg.raw)
                .bind(&hash)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = inserted {
                    return Ok(InboundInsert::New(row.try_get("id")?));
                }
                drop(conn);
                // Seen before: its outcome may still be pending in this unit.
                let mut conn = self.lend().await?;
                let row = sqlx::query(
                    "SELECT id, outcome FROM inbound WHERE (message_id = $1 AND (content_hash = $5 OR content_hash = '')) \
                     OR (mailbox = $2 AND uidvalidity = $3 AND uid = $4) ORDER BY id LIMIT 1",
                )
                .bind(&msg.message_id)
                .bind(&msg.mailbox)
                .bind(msg.uidvalidity)
                .bind(msg.uid)
                .bind(&hash)
                .fetch_one(&mut *conn)
                .await?;
                Ok(InboundInsert::Seen { id: row.try_get("id")?, outcome: row.try_get("outcome")? })
            }

            async fn record_inbound_many(&self, msgs: &[InboundMessage]) -> Result<Vec<InboundInsert>> {
                // The first of identical messages in this call stands for the others.
                let hashes: Vec<String> = msgs.iter().map(|m| $crate::store::content_hash(&m.raw)).collect();
                let mut first: Vec<Option<usize>> = Vec::with_capacity(msgs.len());
                for (i, m) in msgs.iter().enumerate() {
                    let same = msgs.iter().zip(&hashes).take(i).position(|(e, h)| {
                        (e.message_id == m.message_id && hashes.get(i) == Some(h))
                            || (m.uid.is_some() && e.mailbox == m.mailbox && e.uidvalidity == m.uidvalidity && e.uid == m.uid)
                    });
                    first.push(same);
                }
                let distinct: Vec<(&InboundMessage, &String)> = msgs
                    .iter()
                    .zip(&hashes)
                    .zip(&first)
                    .filter(|(_, f)| f.is_none())
                    .map(|(m, _)| m)
                    .collect();
                // New ones inserted together; the unique (Message-ID, content) and UID make the seen ones
                // insert nothing.
                let mut ids: std::collections::HashMap<(String, String), i64> = std::collections::HashMap::new();
                {
                    let mut conn = self.conn().await?;
                    for chunk in distinct.chunks(sql::ROWS_PER_STATEMENT) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO inbound (board_id, mailbox, uidvalidity, uid, message_id, received_at, raw, content_hash) ",
                        );
                        q.push_values(chunk, |mut b, (m, hash)| {
                            b.push_bind(&m.board_id)
                                .push_bind(&m.mailbox)
                                .push_bind(m.uidvalidity)
                                .push_bind(m.uid)
                                .push_bind(&m.message_id)
                                .push_bind(to_ms(m.received_at))
                                .push_bind(&m.raw)
                                .push_bind(*hash);
                        });
                        q.push(" ON CONFLICT DO NOTHING RETURNING id, message_id, content_hash");
                        for row in q.build().fetch_all(&mut *conn).await? {
                            ids.insert((row.try_get("message_id")?, row.try_get("content_hash")?), row.try_get("id")?);
                        }
                    }
                }
                let mut out: Vec<InboundInsert> = Vec::with_capacity(msgs.len());
                for ((m, hash), first) in msgs.iter().zip(&hashes).zip(&first) {
                    let answer = match first.and_then(|j| out.get(j)) {
                        Some(InboundInsert::New(id) | InboundInsert::Seen { id, .. }) => InboundInsert::Seen {
                            id: *id,
                            outcome: Some("an identical copy in the same batch was processed".into()),
                        },
                        None => match ids.get(&(m.message_id.clone(), hash.clone())) {
                            Some(id) => InboundInsert::New(*id),
                            // Seen before this call: as record_inbound says.
                            None => self.record_inbound(m).await?,
                        },
                    };
                    out.push(answer);
                }
                Ok(out)
            }

            async fn finish_inbound(
                &self,
                board: &str,
                done: Option<&InboundDone>,
                reference: Option<&str>,
                event: Option<&Event>,
                outbox: &[OutboundEmail],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<()> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let case_id: Option<i64> = match reference {
                    Some(r) => sqlx::query("SELECT id FROM cases WHERE reference = $1")
                        .bind(r)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|row| row.try_get("id"))
                        .transpose()?,
                    None => None,
                };
                if let Some(e) = event {
                    insert_event(&mut tx, board, case_id, e).await?;
                }
                insert_outbox(&mut tx, case_id, outbox, to_ms(now)).await?;
                if let Some(d) = done {
                    mark_inbound(&mut tx, d, case_id, to_ms(now)).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn note_failed_attempt(&self, key: &str, error: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64> {
                let row = sqlx::query(
                    "INSERT INTO inbound_attempts (message_key, attempts, last_error, updated_at) VALUES ($1, 1, $2, $3) \
                     ON CONFLICT (message_key) DO UPDATE SET attempts = inbound_attempts.attempts + 1, \
                     last_error = excluded.last_error, updated_at = excluded.updated_at RETURNING attempts",
                )
                .bind(key)
                .bind(error)
                .bind(to_ms(now))
                .fetch_one(&mut *self.lend().await?)
                .await?;
                Ok(row.try_get("attempts")?)
            }

            async fn failed_attempts(&self, key: &str) -> Result<i64> {
                let row = sqlx::query("SELECT attempts FROM inbound_attempts WHERE message_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *self.lend().await?)
                    .await?;
                Ok(match row {
                    Some(r) => r.try_get("attempts")?,
                    None => 0,
                })
            }

            async fn hold_command(
                &self,
                held: &HeldCommand,
                done: Option<&InboundDone>,
                event: &Event,
                outbox: &[OutboundEmail],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<()> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let case_id: Option<i64> = sqlx::query("SELECT id FROM cases WHERE reference = $1")
                    .bind(&held.case_reference)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.try_get("id"))
                    .transpose()?;
                sqlx::query(
                    "INSERT INTO held_commands (board_id, case_reference, sender, command_word, command, \
                     challenge_message_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&held.board_id)
                .bind(&held.case_reference)
                .bind(&held.sender)
                .bind(&held.command_word)
                .bind(json(&held.command)?)
                .bind(&held.challenge_message_id)
                .bind(to_ms(held.created_at))
                .execute(&mut *tx)
                .await?;
                insert_event(&mut tx, &held.board_id, case_id, event).await?;
                insert_outbox(&mut tx, case_id, outbox, to_ms(now)).await?;
                if let Some(d) = done {
                    mark_inbound(&mut tx, d, case_id, to_ms(now)).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn held_command(&self, challenge_message_id: &str) -> Result<Option<HeldCommand>> {
                let row = sqlx::query(
                    "SELECT id, board_id, case_reference, sender, command_word, command, challenge_message_id, \
                     created_at, decided_at, decision FROM held_commands WHERE challenge_message_id = $1",
                )
                .bind(challenge_message_id)
                .fetch_optional(&mut *self.lend().await?)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(HeldCommand {
                    id: row.try_get("id")?,
                    board_id: row.try_get("board_id")?,
                    case_reference: row.try_get("case_reference")?,
                    sender: row.try_get("sender")?,
                    command_word: row.try_get("command_word")?,
                    command: from_json(&row.try_get::<String, _>("command")?)?,
                    challenge_message_id: row.try_get("challenge_message_id")?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                    decided_at: row.try_get::<Option<i64>, _>("decided_at")?.map(from_ms).transpose()?,
                    decision: row.try_get("decision")?,
                }))
            }

            async fn hold_record(
                &self,
                held: &HeldRecord,
                done: Option<&InboundDone>,
                event: &Event,
                outbox: &[OutboundEmail],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<()> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO held_records (board_id, inbound_id, sender, domain, request_message_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&held.board_id)
                .bind(held.inbound_id)
                .bind(&held.sender)
                .bind(&held.domain)
                .bind(&held.request_message_id)
                .bind(to_ms(held.created_at))
                .execute(&mut *tx)
                .await?;
                insert_event(&mut tx, &held.board_id, None, event).await?;
                insert_outbox(&mut tx, None, outbox, to_ms(now)).await?;
                if let Some(d) = done {
                    mark_inbound(&mut tx, d, None, to_ms(now)).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn held_record(&self, request_message_id: &str) -> Result<Option<HeldRecord>> {
                let row = sqlx::query(
                    "SELECT id, board_id, inbound_id, sender, domain, request_message_id, created_at, decided_at, \
                     decision, decided_by FROM held_records WHERE request_message_id = $1",
                )
                .bind(request_message_id)
                .fetch_optional(&mut *self.lend().await?)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(HeldRecord {
                    id: row.try_get("id")?,
                    board_id: row.try_get("board_id")?,
                    inbound_id: row.try_get("inbound_id")?,
                    sender: row.try_get("sender")?,
                    domain: row.try_get("domain")?,
                    request_message_id: row.try_get("request_message_id")?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                    decided_at: row.try_get::<Option<i64>, _>("decided_at")?.map(from_ms).transpose()?,
                    decision: row.try_get("decision")?,
                    decided_by: row.try_get("decided_by")?,
                }))
            }

            async fn decide_held_record(&self, id: i64, decision: &str, by: &str, now: chrono::DateTime<chrono::Utc>) -> Result<bool> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let row = sqlx::query(
                    "UPDATE held_records SET decided_at = $1, decision = $2, decided_by = $3 \
                     WHERE id = $4 AND decided_at IS NULL RETURNING board_id, domain",
                )
                .bind(to_ms(now))
                .bind(decision)
                .bind(by)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                if decision == "approved" {
                    let board: String = row.try_get("board_id")?;
                    let domain: String = row.try_get("domain")?;
                    sqlx::query(
                        "INSERT INTO approved_domains (board_id, domain, approved_by, approved_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (board_id, domain) DO NOTHING",
                    )
                    .bind(board)
                    .bind(domain)
                    .bind(by)
                    .bind(to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn domain_approved(&self, board: &str, domain: &str) -> Result<bool> {
                let row = sqlx::query("SELECT 1 AS yes FROM approved_domains WHERE board_id = $1 AND domain = $2")
                    .bind(board)
                    .bind(domain.to_lowercase())
                    .fetch_optional(&mut *self.lend().await?)
                    .await?;
                Ok(row.is_some())
            }

            async fn inbound_raw(&self, id: i64) -> Result<Option<(Vec<u8>, Option<String>)>> {
                let row = sqlx::query("SELECT raw, outcome FROM inbound WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.lend().await?)
                    .await?;
                match row {
                    Some(r) => Ok(Some((r.try_get("raw")?, r.try_get("outcome")?))),
                    None => Ok(None),
                }
            }

            async fn shared_secret(&self, candidate: &str) -> Result<String> {
                let mut conn = self.lend().await?;
                sqlx::query("INSERT INTO secrets (name, value) VALUES ('signing', $1) ON CONFLICT (name) DO NOTHING")
                    .bind(candidate)
                    .execute(&mut *conn)
                    .await?;
                let row = sqlx::query("SELECT value FROM secrets WHERE name = 'signing'").fetch_one(&mut *conn).await?;
                Ok(row.try_get("value")?)
            }

            async fn outbox_email(&self, message_id: &str) -> Result<Option<OutboxRecord>> {
                let q = format!("SELECT {} FROM outbox WHERE message_id = $1", sql::OUTBOX_COLUMNS);
                let row = sqlx::query(&q).bind(message_id).fetch_optional(&mut *self.lend().await?).await?;
                row.as_ref().map(outbox_row).transpose()
            }

            async fn inbound_list(&self, q: &$crate::store::InboundQuery) -> Result<Vec<$crate::store::InboundRow>> {
                let mut b = sqlx::QueryBuilder::<$db>::new(
                    "SELECT i.id, i.board_id, i.mailbox, i.uidvalidity, i.uid, i.message_id, i.received_at, i.outcome, \
                     c.reference, i.problems, i.processed_at, i.raw FROM inbound i LEFT JOIN cases c ON c.id = i.case_id WHERE 1 = 1",
                );
                if let Some(board) = &q.board {
                    b.push(" AND i.board_id = ").push_bind(board.clone());
                }
                if !q.outcomes.is_empty() {
                    b.push(" AND i.outcome IN (");
                    let mut sep = b.separated(", ");
                    for o in &q.outcomes {
                        sep.push_bind(o.clone());
                    }
                    b.push(")");
                }
                if let Some(since) = q.since {
                    b.push(" AND i.received_at >= ").push_bind(to_ms(since));
                }
                b.push(" ORDER BY i.received_at DESC, i.id DESC LIMIT ").push_bind(q.limit.max(1));
                let rows = b.build().fetch_all(&mut *self.lend().await?).await?;
                rows.iter().map(inbound_row).collect()
            }

            async fn inbound_row(&self, id: i64) -> Result<Option<$crate::store::InboundRow>> {
                let row = sqlx::query(
                    "SELECT i.id, i.board_id, i.mailbox, i.uidvalidity, i.uid, i.message_id, i.received_at, i.outcome, \
                     c.reference, i.problems, i.processed_at, i.raw FROM inbound i LEFT JOIN cases c ON c.id = i.case_id \
                     WHERE i.id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *self.lend().await?)
                .await?;
                row.as_ref().map(inbound_row).transpose()
            }

            async fn replies_to(&self, message_id: &str) -> Result<Vec<OutboxRecord>> {
                // In-Reply-To is kept in the headers' JSON as "<id>"; the LIKE narrows, the check decides.
                let escaped = message_id.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                let pattern = format!("%{escaped}%");
                let q = format!(
                    "SELECT {} FROM outbox WHERE headers LIKE $1 ESCAPE '\\' ORDER BY id",
                    sql::OUTBOX_COLUMNS
                );
                let rows = sqlx::query(&q)
                    .bind(pattern)
                    .fetch_all(&mut *self.lend().await?)
                    .await?;
                let wanted = format!("<{}>", message_id.trim_matches(['<', '>']));
                Ok(rows
                    .iter()
                    .map(outbox_row)
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .filter(|r| r.email.headers.get("In-Reply-To").is_some_and(|v| v.trim() == wanted))
                    .collect())
            }

            async fn reopen_inbound(&self, id: i64, attempt_key: &str) -> Result<bool> {
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                // Only a message that was not used, and only once: two retries at once, or a retry racing the
                // daemon, cannot both reopen it.
                let done = sqlx::query(
                    "UPDATE inbound SET outcome = NULL, processed_at = NULL, problems = NULL WHERE id = $1 \
                     AND LENGTH(raw) > 0 AND outcome IN ('refused', 'quarantined', 'ignored')",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM inbound_attempts WHERE message_key = $1")
                    .bind(attempt_key)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done == 1)
            }

            async fn retention_due(
                &self,
                board: &str,
                closed_before: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<(i64, $crate::core::case::Case)>> {
                let rows = sqlx::query(
                    "SELECT id, data FROM cases WHERE board_id = $1 AND closed_at IS NOT NULL AND closed_at < $2 \
                     AND id NOT IN (SELECT case_id FROM retention_purges) ORDER BY id",
                )
                .bind(board)
                .bind(to_ms(closed_before))
                .fetch_all(&mut *self.lend().await?)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get::<i64, _>("id")?, from_json(&r.try_get::<String, _>("data")?)?)))
                    .collect()
            }

            async fn purge_case(
                &self,
                id: i64,
                anonymised: &$crate::core::case::Case,
                event: &Event,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::store::Purged> {
                use $crate::core::retention::{REMOVED, REMOVED_PERSON};
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let mut purged = $crate::store::Purged::default();
                // Recorded first: the audit log lets a case's events be erased only once its purge is.
                let first = sqlx::query(
                    "INSERT INTO retention_purges (case_id, board_id, purged_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (case_id) DO NOTHING",
                )
                .bind(id)
                .bind(&anonymised.board)
                .bind(to_ms(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if first == 0 {
                    // Another daemon purged it meanwhile.
                    tx.commit().await?;
                    return Ok(purged);
                }
                // The version moves on, so that a change saved from the case as it was is refused, not
                // written over the anonymised one.
                sqlx::query("UPDATE cases SET data = $1, version = version + 1 WHERE id = $2")
                    .bind(json(anonymised)?)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM timers WHERE case_id = $1 AND fired_at IS NULL")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM participants WHERE case_id = $1").bind(id).execute(&mut *tx).await?;
                purged.audit_events_erased = sqlx::query(
                    "UPDATE events SET actor = $1, summary = $2, detail = '{}' WHERE case_id = $3 AND summary <> $2",
                )
                .bind(REMOVED_PERSON)
                .bind(REMOVED)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
                purged.emails = sqlx::query("DELETE FROM outbox WHERE case_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                purged.raw_messages = sqlx::query(
                    "UPDATE inbound SET raw = $1, problems = NULL WHERE case_id = $2 AND LENGTH(raw) > 0",
                )
                .bind(Vec::<u8>::new())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
                purged.held_commands = sqlx::query("DELETE FROM held_commands WHERE case_reference = $1")
                    .bind(&anonymised.reference)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                let mut event = event.clone();
                event.detail = serde_json::json!({
                    "raw_messages": purged.raw_messages,
                    "emails": purged.emails,
                    "audit_events_erased": purged.audit_events_erased,
                    "held_commands": purged.held_commands,
                });
                insert_event(&mut tx, &anonymised.board, Some(id), &event).await?;
                tx.commit().await?;
                Ok(purged)
            }

            async fn raw_messages_due(
                &self,
                board: Option<&str>,
                before: chrono::DateTime<chrono::Utc>,
                purge: Option<&Event>,
            ) -> Result<i64> {
                let before = to_ms(before);
                let mut conn = self.lend().await?;
                let mut tx = Tx::begin(&mut *conn).await?;
                let which = "case_id IS NULL AND received_at < $1 AND LENGTH(raw) > 0 AND \
                             (board_id = $2 OR (board_id IS NULL AND CAST($2 AS TEXT) IS NULL))";
                let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM inbound WHERE {which}"))
                    .bind(before)
                    .bind(board)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                if let Some(event) = purge {
                    sqlx::query(&format!("UPDATE inbound SET raw = $3, problems = NULL WHERE {which}"))
                        .bind(before)
                        .bind(board)
                        .bind(Vec::<u8>::new())
                        .execute(&mut *tx)
                        .await?;
                    let (mut held, mut answers, mut erased) = (0u64, 0u64, 0u64);
                    if let Some(board) = board {
                        held += sqlx::query("DELETE FROM held_records WHERE board_id = $1 AND created_at < $2")
                            .bind(board)
                            .bind(before)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        // A held command about a case still open stays, however old.
                        held += sqlx::query(
                            "DELETE FROM held_commands WHERE board_id = $1 AND created_at < $2 \
                             AND case_reference NOT IN (SELECT reference FROM cases WHERE status = 'open')",
                        )
                        .bind(board)
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        // The answers to those messages (refusals, challenges, requests for approval) and the
                        // audit words about them go too; the removals' own events stay.
                        answers = sqlx::query("DELETE FROM outbox WHERE board_id = $1 AND case_id IS NULL AND created_at < $2")
                            .bind(board)
                            .bind(before)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        erased = sqlx::query(
                            "UPDATE events SET actor = $1, summary = $2, detail = '{}' WHERE board_id = $3 \
                             AND case_id IS NULL AND at < $4 AND kind <> 'retention' AND summary <> $2",
                        )
                        .bind($crate::core::retention::REMOVED_PERSON)
                        .bind($crate::core::retention::REMOVED)
                        .bind(board)
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                    sqlx::query("DELETE FROM inbound_attempts WHERE updated_at < $1")
                        .bind(before)
                        .execute(&mut *tx)
                        .await?;
                    if n > 0 || held > 0 || answers > 0 || erased > 0 {
                        let mut event = event.clone();
                        event.detail = serde_json::json!({
                            "raw_messages": n, "held_commands_and_records": held,
                            "emails": answers, "audit_events_erased": erased,
                        });
                        insert_event(&mut tx, board.unwrap_or("-"), None, &event).await?;
                    }
                }
                tx.commit().await?;
                Ok(n)
            }

            async fn set_inbound_outcome(
                &self,
                id: i64,
                outcome: &str,
                reference: Option<&str>,
                problems: &[String],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE inbound SET outcome = $1, problems = $2, processed_at = $3, \
                     case_id = (SELECT id FROM cases WHERE reference = $4) WHERE id = $5",
                )
                .bind(outcome)
                .bind(json(&problems)?)
                .bind(to_ms(now))
                .bind(reference)
                .bind(id)
                .execute(&mut *self.lend().await?)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store;
