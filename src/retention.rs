//! Retention under UK GDPR (shell): once a day the daemon — or `escalation-bot retention` — removes, for each
//! board, the personal data of cases closed more than `retention_days` ago (keeping the anonymised figures
//! the report reads: `core::retention`) and empties the raw messages tied to no case received before then.
//! Every removal is an audit event that says what went and names no one. Copies outside the store go too:
//! mail the bot filed in the board's IMAP folders (processed, quarantine, notifications) or local mailbox
//! folder, and the outbox folder's sent emails (the embedded default). `--dry-run` only counts.

use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::core::lifecycle::Event;
use crate::core::retention::{anonymise, cutoff};
use crate::store::{Purged, Store};

/// What retention removed, or would remove, for one board.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BoardRetention {
    pub board: String,
    pub retention_days: u32,
    /// Closed before this, the personal data goes.
    pub cutoff: DateTime<Utc>,
    /// The cases whose personal data goes (their references).
    pub cases: Vec<String>,
    /// Raw messages tied to no case (refused, ignored, quarantined), received before the cutoff.
    pub unlinked_raw_messages: i64,
    /// Of the cases: raw messages, emails, audit events erased.
    pub removed: Purged,
    /// Cases that could not be purged this time (logged; tried again at the next run).
    pub failed: Vec<String>,
    /// Copies of messages filed outside the store before the cutoff: in the board's IMAP folders for
    /// processed, quarantined and notification mail, or its local mailbox folder.
    pub filed_messages: usize,
}

/// Files under `dir` last changed before `before` (recursively; at the top, `skip` is left out), removed
/// unless `dry_run`: how many.
fn old_files(dir: &Path, before: SystemTime, skip: &[&str], dry_run: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            n += old_files(&path, before, &[], dry_run);
        } else if meta.modified().is_ok_and(|m| m < before) && (dry_run || std::fs::remove_file(&path).is_ok()) {
            n += 1;
        }
    }
    n
}

/// The audit event of a removal: what went, naming no one.
fn removal(now: DateTime<Utc>, summary: String, detail: serde_json::Value) -> Event {
    Event {
        kind: "retention".into(),
        at: now,
        actor: "escalation-bot".into(),
        summary,
        detail,
    }
}

/// Apply (or, with `dry_run`, count) retention for every board at `now`.
pub async fn run<S: Store>(
    config: &Config,
    store: &S,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<Vec<BoardRetention>> {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for b in &config.boards {
        // A board whose retention fails (the store down a moment) does not keep the others'.
        match board(b, &config.settings.mailbox_dir, store, now, dry_run).await {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::error!(board = %b.id(), error = %e, "retention failed for a board; tried again at the next run");
                failures.push(format!("{}: {e}", b.id()));
            }
        }
    }
    match unaddressed(config, store, now, dry_run).await {
        Ok(Some(r)) => out.push(r),
        Ok(None) => {}
        Err(e) => failures.push(format!("messages for no board: {e}")),
    }
    if !failures.is_empty() && out.is_empty() {
        anyhow::bail!("retention failed: {}", failures.join("; "));
    }
    Ok(out)
}

async fn board<S: Store>(
    b: &crate::config::Board,
    mailbox_dir: &Path,
    store: &S,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<BoardRetention> {
    let days = b.settings.retention_days;
    let before = cutoff(now, days);
    let due = store.retention_due(b.id(), before).await?;
    let mut r = BoardRetention {
        board: b.id().to_string(),
        retention_days: days,
        cutoff: before,
        ..Default::default()
    };
    for (id, case) in &due {
        r.cases.push(case.reference.clone());
        if dry_run {
            continue;
        }
        let event = removal(
            now,
            format!(
                "Personal data removed: the case closed more than {days} days ago (the board's retention period); \
                     its figures are kept"
            ),
            serde_json::Value::Null,
        );
        let purged = match store.purge_case(*id, &anonymise(case), &event, now).await {
            Ok(p) => p,
            Err(e) => {
                // One case that cannot be purged (tried again tomorrow) does not keep the rest.
                tracing::error!(board = %b.id(), case = %case.reference, error = %e, "retention: a case could not be purged");
                r.failed.push(case.reference.clone());
                continue;
            }
        };
        r.removed.raw_messages += purged.raw_messages;
        r.removed.emails += purged.emails;
        r.removed.audit_events_erased += purged.audit_events_erased;
        r.removed.held_commands += purged.held_commands;
    }
    let event = removal(
        now,
        format!(
            "Raw messages tied to no case (refused, ignored, quarantined) received more than {days} days ago removed"
        ),
        serde_json::Value::Null,
    );
    r.unlinked_raw_messages = store
        .raw_messages_due(Some(b.id()), before, (!dry_run).then_some(&event))
        .await?;
    if !dry_run && (!r.cases.is_empty() || r.unlinked_raw_messages > 0) {
        tracing::info!(board = %b.id(), cases = r.cases.len(), raw_messages = r.unlinked_raw_messages + r.removed.raw_messages,
                emails = r.removed.emails, "retention: personal data past the board's retention period removed");
    }
    // Copies outside the store: the board's IMAP folders, or its local mailbox folder (whose new/ and tmp/
    // hold mail not processed yet).
    r.filed_messages = match &b.settings.imap {
        Some(imap) => {
            let day = b.rules.local_date(before);
            crate::mail::imap::purge_filed_before(imap, day, dry_run)
                .await
                .map_err(|e| anyhow::anyhow!("the IMAP folders: {}", crate::mail::imap::explain_connect(imap, &e)))?
        }
        None => old_files(
            &mailbox_dir.join(b.id()),
            SystemTime::from(before),
            &["new", "tmp"],
            dry_run,
        ),
    };
    if !dry_run && r.filed_messages > 0 {
        let event = removal(
            now,
            format!("Copies of messages filed in the board's mailbox folders more than {days} days ago removed"),
            serde_json::json!({ "filed_messages": r.filed_messages }),
        );
        store.record_event(b.id(), None, &event).await?;
    }
    Ok(r)
}

/// Messages for no board (addressed to none of them) are kept for the shortest period of any board.
pub async fn unaddressed<S: Store>(
    config: &Config,
    store: &S,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<Option<BoardRetention>> {
    if let Some(days) = config.boards.iter().map(|b| b.settings.retention_days).min() {
        // The outbox folder (the embedded default's mail out): one file per email, any board's.
        let sent_copies = if config.settings.smtp.is_none() {
            old_files(
                &config.settings.outbox_dir,
                SystemTime::from(cutoff(now, days)),
                &[],
                dry_run,
            )
        } else {
            0
        };
        let event = removal(
            now,
            format!("Raw messages for no board received more than {days} days ago removed"),
            serde_json::Value::Null,
        );
        let n = store
            .raw_messages_due(None, cutoff(now, days), (!dry_run).then_some(&event))
            .await?;
        if n > 0 || sent_copies > 0 {
            return Ok(Some(BoardRetention {
                board: "-".into(),
                retention_days: days,
                cutoff: cutoff(now, days),
                unlinked_raw_messages: n,
                filed_messages: sent_copies,
                ..Default::default()
            }));
        }
    }
    Ok(None)
}
