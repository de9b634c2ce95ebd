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

pub(crate) const TIMER_COLUMNS: &str =
    "t.id, c.reference, t.key, t.kind, t.label, t.due_date, t.fire_at, t.fired_at, t.late";

pub(crate) const OUTBOX_COLUMNS: &str =
    "id, message_id, board_id, case_reference, kind, envelope, subject, body_text, body_html, headers, \
     attempts, created_at, sent_at, failed_at, last_error";

/// Implements [`super::Store`] for `$store`, which provides `async fn conn(&self)` giving a connection
/// (from the pool, or the open transaction of a unit of work) and `async fn run_migrations(&self)`.
/// Writes open a transaction on that connection: inside a unit of work, that is a savepoint.
macro_rules! impl_store {
    ($store:ty, $db:ty, backend = $backend:literal, skip_locked = $skip:literal) => {
        use sqlx::Row as _;
        use $crate::core::case::CaseStatus;
        use $crate::core::lifecycle::Event;
        use $crate::core::schedule::{Deadline, Timer};
        use $crate::store::sql::{self, from_json, json};
        use $crate::store::{
            from_ms, to_ms, CaseFilter, CaseSummary, Change, EventRecord, InboundDone, InboundInsert, InboundMessage,
            OutboundEmail, OutboxRecord, Result, StoreError, StoredCase, TimerRecord,
        };

        type Tx<'a> = sqlx::Transaction<'a, $db>;

        fn timer_row(row: &<$db as sqlx::Database>::Row) -> Result<TimerRecord> {
            Ok(TimerRecord {
                id: row.try_get("id")?,
                case_reference: row.try_get("reference")?,
                timer: Timer {
                    key: row.try_get("key")?,
                    kind: sql::timer_kind(&row.try_get::<String, _>("kind")?)?,
                    label: row.try_get("label")?,
                    due_date: sql::date(&row.try_get::<String, _>("due_date")?)?,
                    fire_at: from_ms(row.try_get("fire_at")?)?,
                },
                fired_at: row.try_get::<Option<i64>, _>("fired_at")?.map(from_ms).transpose()?,
                late: row.try_get::<i64, _>("late")? != 0,
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
                },
                attempts: row.try_get("attempts")?,
                created_at: from_ms(row.try_get("created_at")?)?,
                sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(from_ms).transpose()?,
                failed_at: row.try_get::<Option<i64>, _>("failed_at")?.map(from_ms).transpose()?,
                last_error: row.try_get("last_error")?,
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
            for e in emails {
                sqlx::query(
                    "INSERT INTO outbox (message_id, board_id, case_id, case_reference, kind, envelope, subject, \
                     body_text, body_html, headers, created_at, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                     ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(&e.message_id)
                .bind(&e.board_id)
                .bind(case_id)
                .bind(&e.case_reference)
                .bind(&e.kind)
                .bind(json(&serde_json::json!({ "to": e.to, "cc": e.cc }))?)
                .bind(&e.subject)
                .bind(&e.text)
                .bind(&e.html)
                .bind(json(&e.headers)?)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// Everything a change writes besides the case row: participants, deadlines, timers, the event
        /// and the emails.
        async fn write_change(tx: &mut Tx<'_>, case_id: i64, change: &Change) -> Result<()> {
            let t = &change.transition;
            let case = &t.case;
            for p in &case.participants {
                sqlx::query(
                    "INSERT INTO participants (case_id, email, name, agency, role, stage) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (case_id, email) DO NOTHING",
                )
                .bind(case_id)
                .bind(p.email.to_lowercase())
                .bind(&p.name)
                .bind(&p.agency)
                .bind(json(&p.role)?.trim_matches('"').to_string())
                .bind(i64::from(p.stage))
                .execute(&mut **tx)
                .await?;
            }
            sqlx::query("DELETE FROM deadlines WHERE case_id = $1").bind(case_id).execute(&mut **tx).await?;
            for d in &t.deadlines {
                sqlx::query(
                    "INSERT INTO deadlines (case_id, label, stage, due_date, kind) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(case_id)
                .bind(&d.label)
                .bind(d.stage.map(i64::from))
                .bind(d.due_date.to_string())
                .bind(sql::deadline_kind_str(d.kind))
                .execute(&mut **tx)
                .await?;
            }
            for key in &t.timers.cancelled {
                sqlx::query("DELETE FROM timers WHERE case_id = $1 AND key = $2 AND fired_at IS NULL")
                    .bind(case_id)
                    .bind(key)
                    .execute(&mut **tx)
                    .await?;
            }
            for timer in &t.timers.created {
                sqlx::query(
                    "INSERT INTO timers (case_id, key, kind, label, due_date, fire_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (case_id, key) DO NOTHING",
                )
                .bind(case_id)
                .bind(&timer.key)
                .bind(timer.kind.as_str())
                .bind(&timer.label)
                .bind(timer.due_date.to_string())
                .bind(to_ms(timer.fire_at))
                .execute(&mut **tx)
                .await?;
            }
            insert_event(tx, &case.board, Some(case_id), &t.event).await?;
            insert_outbox(tx, Some(case_id), &change.outbox, to_ms(t.event.at)).await?;
            if let Some(done) = &change.inbound {
                mark_inbound(tx, done, Some(case_id), to_ms(t.event.at)).await?;
            }
            Ok(())
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
                .execute(&mut *self.conn().await?)
                .await?;
                Ok(())
            }

            async fn create_case<F, E>(&self, board: &str, prefix: &str, year: i32, build: F) -> Result<std::result::Result<StoredCase, E>>
            where
                F: FnOnce(&str) -> std::result::Result<Change, E> + Send,
                E: Send,
            {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO case_sequences (board_id, year, last_number) VALUES ($1, $2, 0) \
                     ON CONFLICT (board_id, year) DO NOTHING",
                )
                .bind(board)
                .bind(i64::from(year))
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(
                    "UPDATE case_sequences SET last_number = last_number + 1 \
                     WHERE board_id = $1 AND year = $2 RETURNING last_number",
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
                write_change(&mut tx, id, &change).await?;
                tx.commit().await?;
                Ok(Ok(StoredCase { id, version: 1, case: case.clone() }))
            }

            async fn load_case(&self, reference: &str) -> Result<Option<StoredCase>> {
                let row = sqlx::query("SELECT id, version, data FROM cases WHERE reference = $1")
                    .bind(reference)
                    .fetch_optional(&mut *self.conn().await?)
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
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
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
                write_change(&mut tx, loaded.id, change).await?;
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
                .fetch_all(&mut *self.conn().await?)
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
                .fetch_all(&mut *self.conn().await?)
                .await?;
                rows.iter().map(|r| Ok(r.try_get("reference")?)).collect()
            }

            async fn deadlines(&self, reference: &str) -> Result<Vec<Deadline>> {
                let rows = sqlx::query(
                    "SELECT d.label, d.stage, d.due_date, d.kind FROM deadlines d JOIN cases c ON c.id = d.case_id \
                     WHERE c.reference = $1 ORDER BY d.due_date, d.stage IS NULL, d.stage",
                )
                .bind(reference)
                .fetch_all(&mut *self.conn().await?)
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
                let rows = sqlx::query(&q).bind(reference).fetch_all(&mut *self.conn().await?).await?;
                rows.iter().map(timer_row).collect()
            }

            async fn events(&self, reference: Option<&str>) -> Result<Vec<EventRecord>> {
                let rows = sqlx::query(
                    "SELECT e.id, e.board_id, c.reference, e.at, e.kind, e.actor, e.summary, e.detail \
                     FROM events e LEFT JOIN cases c ON c.id = e.case_id \
                     WHERE CAST($1 AS TEXT) IS NULL OR c.reference = $1 ORDER BY e.id",
                )
                .bind(reference)
                .fetch_all(&mut *self.conn().await?)
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
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
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
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let claimed = sqlx::query(concat!(
                    "UPDATE timers SET claimed_until = $1 WHERE id IN (SELECT id FROM timers \
                     WHERE fired_at IS NULL AND fire_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2) \
                     ORDER BY fire_at, id LIMIT $3",
                    $skip,
                    ") RETURNING id"
                ))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let mut out = Vec::with_capacity(claimed.len());
                for row in &claimed {
                    let id: i64 = row.try_get("id")?;
                    let q = format!(
                        "SELECT {} FROM timers t JOIN cases c ON c.id = t.case_id WHERE t.id = $1",
                        sql::TIMER_COLUMNS
                    );
                    let r = sqlx::query(&q).bind(id).fetch_one(&mut *tx).await?;
                    out.push(timer_row(&r)?);
                }
                tx.commit().await?;
                out.sort_by(|a, b| a.timer.fire_at.cmp(&b.timer.fire_at).then(a.id.cmp(&b.id)));
                Ok(out)
            }

            async fn complete_timer(
                &self,
                timer_id: i64,
                now: chrono::DateTime<chrono::Utc>,
                late: bool,
                event: Option<&Event>,
                outbox: &[OutboundEmail],
            ) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let row = sqlx::query(
                    "UPDATE timers SET fired_at = $1, late = $2, claimed_until = NULL \
                     WHERE id = $3 AND fired_at IS NULL RETURNING case_id",
                )
                .bind(to_ms(now))
                .bind(i64::from(late))
                .bind(timer_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    // Already fired (by another instance): doing it again would send twice.
                    tx.rollback().await?;
                    return Ok(());
                };
                let case_id: i64 = row.try_get("case_id")?;
                let board: String = sqlx::query("SELECT board_id FROM cases WHERE id = $1")
                    .bind(case_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("board_id")?;
                if let Some(e) = event {
                    insert_event(&mut tx, &board, Some(case_id), e).await?;
                }
                insert_outbox(&mut tx, Some(case_id), outbox, to_ms(now)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn enqueue(&self, outbox: &[OutboundEmail], now: chrono::DateTime<chrono::Utc>) -> Result<()> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                insert_outbox(&mut tx, None, outbox, to_ms(now)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_outbox(&self, now: chrono::DateTime<chrono::Utc>, limit: i64, lease_ms: i64) -> Result<Vec<OutboxRecord>> {
                let now = to_ms(now);
                let q = format!(
                    concat!(
                        "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id IN (SELECT id FROM outbox \
                         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2 \
                         AND (claimed_until IS NULL OR claimed_until < $2) ORDER BY next_attempt_at, id LIMIT $3",
                        $skip,
                        ") RETURNING {}"
                    ),
                    sql::OUTBOX_COLUMNS
                );
                let rows = sqlx::query(&q).bind(now + lease_ms).bind(now).bind(limit).fetch_all(&mut *self.conn().await?).await?;
                let mut out = rows.iter().map(outbox_row).collect::<Result<Vec<_>>>()?;
                out.sort_by_key(|r| r.id);
                Ok(out)
            }

            async fn outbox_sent(&self, id: i64, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
                sqlx::query("UPDATE outbox SET sent_at = $1, claimed_until = NULL, last_error = NULL WHERE id = $2")
                    .bind(to_ms(now))
                    .bind(id)
                    .execute(&mut *self.conn().await?)
                    .await?;
                Ok(())
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
                .execute(&mut *self.conn().await?)
                .await?;
                Ok(())
            }

            async fn outbox(&self, reference: Option<&str>) -> Result<Vec<OutboxRecord>> {
                let q = format!(
                    "SELECT {} FROM outbox WHERE CAST($1 AS TEXT) IS NULL OR case_reference = $1 ORDER BY id",
                    sql::OUTBOX_COLUMNS
                );
                let rows = sqlx::query(&q).bind(reference).fetch_all(&mut *self.conn().await?).await?;
                rows.iter().map(outbox_row).collect()
            }

            async fn count_outbox_to(&self, address: &str, since: chrono::DateTime<chrono::Utc>) -> Result<i64> {
                // Addresses are validated (no quotes, no wildcards), so a match inside the JSON envelope is exact.
                let pattern = format!("%\"{}\"%", address.to_lowercase());
                let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE created_at >= $1 AND LOWER(envelope) LIKE $2")
                    .bind(to_ms(since))
                    .bind(pattern)
                    .fetch_one(&mut *self.conn().await?)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn record_inbound(&self, msg: &InboundMessage) -> Result<InboundInsert> {
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let seen = sqlx::query(
                    "SELECT id, outcome FROM inbound WHERE message_id = $1 \
                     OR (mailbox = $2 AND uidvalidity = $3 AND uid = $4) ORDER BY id LIMIT 1",
                )
                .bind(&msg.message_id)
                .bind(&msg.mailbox)
                .bind(msg.uidvalidity)
                .bind(msg.uid)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = seen {
                    tx.rollback().await?;
                    return Ok(InboundInsert::Seen { id: row.try_get("id")?, outcome: row.try_get("outcome")? });
                }
                let row = sqlx::query(
                    "INSERT INTO inbound (board_id, mailbox, uidvalidity, uid, message_id, received_at, raw) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(&msg.board_id)
                .bind(&msg.mailbox)
                .bind(msg.uidvalidity)
                .bind(msg.uid)
                .bind(&msg.message_id)
                .bind(to_ms(msg.received_at))
                .bind(&msg.raw)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(InboundInsert::New(row.try_get("id")?))
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
                let mut conn = self.conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
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
                .execute(&mut *self.conn().await?)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store;
