//! The case clock's shell: acting on due timers.
//!
//! Timers are rows (written with the case change that schedules them, see [`crate::core::schedule`]). The
//! scheduler claims the due ones with a lease ([`Store::claim_due_timers`]: `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so several daemons on one database never claim the same timer), asks the core what each
//! means now ([`lifecycle::on_timer`]), has the board's [`Composer`](crate::mail::compose::Composer) write
//! the reminder, overdue notice, review prompt and board-role notifications, and commits those emails with
//! the timer's completion in one transaction ([`Store::complete_timers`]): a timer is acted on once, never
//! twice, never lost.
//!
//! When: a timer is due at its `fire_at` (the start of working hours on a working day). One whose moment
//! passed while the daemon was down is acted on when it starts, its emails saying they are late; outside
//! the board's working hours it waits for them ([`Store::defer_timer`]), so nothing reaches anyone at a
//! weekend, on a bank holiday or at night.
//!
//! Sleeping: the daemon's main loop sleeps until [`Store::next_timer_at`], and is woken early when its own
//! pipeline has changed a case, or when another process changed the store ([`watch_store`]: PostgreSQL
//! `LISTEN`, or the SQLite database file changing). There is no polling of the timer table: an idle daemon
//! wakes for nothing between timers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};

use crate::config::Database;
use crate::core::lifecycle::{self, Event};
use crate::core::schedule::TimerKind;
use crate::mail::pipeline::Pipeline;
use crate::store::{Store, StoreError, TimerDone, TimerRecord};

/// Timers claimed at a time.
pub const CLAIM_BATCH: i64 = 500;
/// How long a claim holds: a daemon that stops mid-batch leaves its timers to the others after this.
pub const LEASE_MS: i64 = 5 * 60 * 1000;

/// What one pass over the due timers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    /// Timers completed (with or without emails).
    pub timers: usize,
    /// Emails queued.
    pub emails: usize,
    /// Timers put off until the board's working hours.
    pub deferred: usize,
    /// Timers acted on after their moment (the daemon was down).
    pub late: usize,
}

/// Timers whose effects are committed together: one transaction (one disk flush) for many, each timer
/// still with its own emails.
pub const COMMIT_BATCH: usize = 100;

/// Act on every timer due at `now`: claim, decide, compose, and commit each with its emails.
pub async fn fire_due<S: Store>(pipeline: &Pipeline<'_>, store: &S, now: DateTime<Utc>) -> Result<Fired, StoreError> {
    let mut fired = Fired::default();
    loop {
        let claimed = store.claim_due_timers(now, CLAIM_BATCH, LEASE_MS).await?;
        let n = claimed.len();
        for chunk in claimed.chunks(COMMIT_BATCH) {
            let mut done = Vec::with_capacity(chunk.len());
            for t in chunk {
                if let Some(d) = decide(pipeline, store, t, now, &mut fired).await? {
                    done.push(d);
                }
            }
            let emails: usize = done.iter().map(|d| d.outbox.len()).sum();
            let late = done.iter().filter(|d| d.late).count();
            let completed = store.complete_timers(&done, now).await?;
            fired.timers += completed;
            // When another instance fired some of these meanwhile, their emails were not written: the
            // counts are then an upper bound, which is all the caller needs (whether to wake the sender).
            if completed > 0 {
                fired.emails += emails;
                fired.late += late;
            }
        }
        if (n as i64) < CLAIM_BATCH {
            return Ok(fired);
        }
    }
}

/// What one claimed timer comes to: its emails and event, ready to commit with its completion; `None`
/// when it waits (outside working hours, a board no longer configured, a template failing).
async fn decide<S: Store>(
    pipeline: &Pipeline<'_>,
    store: &S,
    t: &TimerRecord,
    now: DateTime<Utc>,
    fired: &mut Fired,
) -> Result<Option<TimerDone>, StoreError> {
    let Some(board) = pipeline.config.board(&t.board_id) else {
        // A board taken out of the configuration: its timers wait (a day at a time) rather than vanish.
        tracing::warn!(board = %t.board_id, case = %t.case_reference, timer = %t.timer.key,
            "a timer belongs to a board that is not configured; it waits");
        store.defer_timer(t.id, now + chrono::Duration::days(1)).await?;
        fired.deferred += 1;
        return Ok(None);
    };
    let rules = &board.rules;
    if !rules.in_working_hours(now) {
        store.defer_timer(t.id, rules.next_working_moment(now)).await?;
        fired.deferred += 1;
        return Ok(None);
    }
    let done = |late, event, outbox| TimerDone {
        timer_id: t.id,
        board_id: t.board_id.clone(),
        late,
        event,
        outbox,
    };
    let Some(stored) = store.load_case(&t.case_reference).await? else {
        return Ok(Some(done(false, None, Vec::new())));
    };
    let outcome = lifecycle::on_timer_written(rules, &stored.case, &t.timer, t.created_at, now);
    let composer = pipeline.composer(board);
    let emails = match composer.timer_emails(&stored.case, &t.timer, &outcome) {
        Ok(e) => composer.one_per_recipient(e),
        Err(e) => {
            // A template an operator broke: the claim lapses and the timer is tried again, loudly.
            tracing::error!(case = %t.case_reference, timer = %t.timer.key, error = %e,
                "a timer's emails could not be written; it is tried again when its claim lapses");
            return Ok(None);
        }
    };
    let event = (!emails.is_empty()).then(|| timer_event(t, &outcome, now, emails.len()));
    tracing::info!(case = %t.case_reference, timer = %t.timer.key, emails = emails.len(), late = outcome.late,
        "timer acted on");
    Ok(Some(done(outcome.late, event, emails)))
}

fn timer_event(t: &TimerRecord, outcome: &lifecycle::TimerOutcome, now: DateTime<Utc>, emails: usize) -> Event {
    let (kind, what) = match t.timer.kind {
        TimerKind::Reminder => ("reminder_sent", "Reminder"),
        TimerKind::Overdue => ("overdue_notice_sent", "Overdue notice"),
        TimerKind::Review => ("review_prompt_sent", "Review prompt"),
    };
    let roles: Vec<&str> = outcome.notifications.iter().map(|n| n.role.key()).collect();
    Event {
        kind: kind.into(),
        at: now,
        actor: "escalation-bot".into(),
        summary: format!(
            "{what} for the {} deadline of {} ({}){}",
            t.timer.label,
            t.timer.due_date,
            if outcome.late { "late" } else { "on time" },
            if roles.is_empty() {
                String::new()
            } else {
                format!("; told: {}", roles.join(", "))
            }
        ),
        detail: serde_json::json!({
            "timer": t.timer.key, "late": outcome.late, "due_at": t.timer.fire_at,
            "emails": emails, "roles": roles,
        }),
    }
}

/// Run the clock from `from` to `until`, acting on each timer and each scheduled digest at its own moment
/// (or at `from`, for one already due), as a daemon that never stopped would (for `simulate` and tests).
/// The emails' times are the moments they would go.
pub async fn run_until<S: Store>(
    pipeline: &Pipeline<'_>,
    store: &S,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Fired, StoreError> {
    let mut total = Fired::default();
    let mut clock = from;
    // Every pass completes, defers (to a strictly later moment) or sends what is due; the bound only stops
    // a fault from looping for ever.
    for _ in 0..1_000_000 {
        let timer = store.next_timer_at().await?;
        let digest = next_digest_at(pipeline, store, clock).await?;
        let Some(next) = [timer, digest].into_iter().flatten().min() else {
            break;
        };
        if next > until {
            break;
        }
        let at = next.max(clock);
        let f = fire_due(pipeline, store, at).await?;
        total.timers += f.timers;
        total.emails += f.emails;
        total.deferred += f.deferred;
        total.late += f.late;
        total.emails += send_due_digests(pipeline, store, at).await?;
        // Nothing done (claimed by another instance, a template failing): the next moment the store gives
        // is later, so the clock moves on.
        clock = at;
    }
    Ok(total)
}

/// Wake `wake` whenever another process may have changed the timers: PostgreSQL's
/// `escalation_bot_timers` notification (sent in the transaction that writes timers), or, for SQLite, the
/// database file (or its write-ahead log) changing. Runs until `stop`.
pub async fn watch_store(database: Database, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    match database {
        Database::Postgres(url) => loop {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect(&url.0).await?;
                l.listen("escalation_bot_timers").await?;
                // Anything written while not listening is read now.
                wake.notify_one();
                loop {
                    l.recv().await?;
                    wake.notify_one();
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                r = listener => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "listening for timer changes failed; listening again in 10 seconds");
                    }
                }
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                _ = stop.changed() => return,
            }
        },
        Database::Sqlite(path) => watch_file(path, wake, stop).await,
    }
}

#[cfg(target_os = "linux")]
async fn watch_file(path: std::path::PathBuf, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    use futures_util::StreamExt;
    use inotify::{Inotify, WatchMask};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().to_string()) else {
        return;
    };
    let stream = Inotify::init().and_then(|i| {
        i.watches().add(&dir, WatchMask::MODIFY | WatchMask::CLOSE_WRITE)?;
        i.into_event_stream(vec![0u8; 4096])
    });
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(),
                "cannot watch the database folder; timers another process adds are seen at the next wake-up");
            let _ = stop.changed().await;
            return;
        }
    };
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(ev)) => {
                    if ev.name.map(|n| n.to_string_lossy().starts_with(&name)).unwrap_or(false) {
                        wake.notify_one();
                    }
                }
                _ => {
                    let _ = stop.changed().await;
                    return;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn watch_file(_path: std::path::PathBuf, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    // Without inotify, look again once a minute.
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => wake.notify_one(),
            _ = stop.changed() => return,
        }
    }
}

/// `board`'s digest at `now`, from the store: its open cases and what changed since its last scheduled
/// digest (a week, before the first).
pub async fn board_digest<S: Store>(
    store: &S,
    board: &crate::config::Board,
    now: DateTime<Utc>,
) -> Result<crate::core::digest::Digest, StoreError> {
    let since = store
        .last_digest(board.id())
        .await?
        .filter(|s| *s < now)
        .unwrap_or(now - chrono::Duration::days(7));
    // Read a page at a time, so that a board with very many cases is never held in memory whole.
    // Resolved cases whose review may still be due: those closed in the last two years.
    let mut builder = crate::core::digest::DigestBuilder::new(&board.rules, Some(since), now);
    let ids = store
        .cases_for_digest(board.id(), since, now - chrono::Duration::days(730))
        .await?;
    for page in ids.chunks(500) {
        for case in store.cases_by_id(page).await? {
            builder.add(&case);
        }
    }
    let unusable = store.count_unusable(board.id(), since).await?;
    Ok(builder.finish(usize::try_from(unusable).unwrap_or(0)))
}

/// The digest emails of `board` at `now`, one per recipient.
pub fn digest_emails(
    pipeline: &Pipeline<'_>,
    board: &crate::config::Board,
    digest: &crate::core::digest::Digest,
    key: &str,
) -> Result<Vec<crate::store::OutboundEmail>, String> {
    let composer = pipeline.composer(board);
    let to: Vec<String> = board.digest_recipients().iter().map(|c| c.email.clone()).collect();
    if to.is_empty() {
        return Ok(Vec::new());
    }
    Ok(composer.one_per_recipient(vec![composer.digest(digest, to, key)?]))
}

/// The scheduled digest moment of `board` still owed at `now` (the latest one due since the last sent;
/// before the first ever, only one due in the last hour), if any.
async fn digest_owed<S: Store>(
    store: &S,
    board: &crate::config::Board,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let after = store
        .last_digest(board.id())
        .await?
        .unwrap_or(now - chrono::Duration::hours(1));
    Ok(crate::core::digest::latest_due(
        &board.rules,
        &board.digest_schedule,
        after,
        now,
    ))
}

/// Send each board's scheduled digest that is owed at `now`, inside its working hours, once (several
/// daemons: the first to record it sends it). How many were queued.
pub async fn send_due_digests<S: Store>(
    pipeline: &Pipeline<'_>,
    store: &S,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut sent = 0;
    for board in &pipeline.config.boards {
        let Some(moment) = digest_owed(store, board, now).await? else {
            continue;
        };
        if !board.rules.in_working_hours(now) {
            continue;
        }
        let digest = board_digest(store, board, now).await?;
        let key = format!("{}:{}", board.id(), moment.to_rfc3339());
        let emails = match digest_emails(pipeline, board, &digest, &key) {
            Ok(e) => e,
            Err(e) => {
                // A template an operator broke: recorded as done without email (said loudly), so that the
                // daemon does not try again and again; `digest --send` sends one once it is fixed.
                tracing::error!(board = %board.id(), error = %e, "the digest could not be written; none is sent this time");
                Vec::new()
            }
        };
        if store.record_digest(board.id(), moment, false, &emails, now).await? {
            tracing::info!(board = %board.id(), due = %moment, emails = emails.len(), "digest queued");
            sent += emails.len();
        }
    }
    Ok(sent)
}

/// When the next digest is owed across all boards: now (or the start of working hours) for one owed
/// already, otherwise the earliest next scheduled moment.
pub async fn next_digest_at<S: Store>(
    pipeline: &Pipeline<'_>,
    store: &S,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut next: Option<DateTime<Utc>> = None;
    for board in &pipeline.config.boards {
        let at = match digest_owed(store, board, now).await? {
            Some(_) => Some(board.rules.next_working_moment(now)),
            None => {
                let after = store.last_digest(board.id()).await?.map_or(now, |l| l.max(now));
                crate::core::digest::next_moment(&board.rules, &board.digest_schedule, after)
            }
        };
        next = match (next, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// `board`'s monitoring report for the local dates `from` to `to` (inclusive), from the store, read a page
/// of cases at a time.
pub async fn board_report<S: Store>(
    store: &S,
    board: &crate::config::Board,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<crate::core::report::Report, StoreError> {
    let rules = &board.rules;
    let midnight = |d: chrono::NaiveDate| rules.instant(d.and_time(chrono::NaiveTime::MIN));
    let from_t = midnight(from);
    let to_t = to.succ_opt().map_or(from_t + chrono::Duration::days(1), midnight);
    let (ids, overdue) = store.cases_for_report(board.id(), from_t, to_t).await?;
    let overdue: std::collections::BTreeSet<i64> = overdue.into_iter().collect();
    let mut builder = crate::core::report::ReportBuilder::new(rules, from, to);
    for page in ids.chunks(500) {
        for (id, case) in store.cases_with_ids(page).await? {
            builder.add(&case, overdue.contains(&id));
        }
    }
    Ok(builder.finish())
}
