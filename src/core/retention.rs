//! Retention under UK GDPR (pure): which cases' personal data is due to go, and what of a case is kept.
//!
//! A board keeps a closed case's personal data for `retention_days` after it closed (resolved or
//! withdrawn). After that, [`anonymise`] keeps exactly what the monitoring report (`core::report`) and the
//! digests count — the board, the reference, the stages and their dates, the agencies (organisations, not
//! people), the theme, the resolution's stage, dates and working days, the extensions' lengths — and removes
//! everything that names or describes a person: the adult's name and NHS number, the parties' names,
//! addresses and telephone numbers, every free-text field, notes, reasons and the agreed actions' words.
//! The shell (`store`, `scheduler`, `cli`) removes the raw messages, emails and audit words that go with it.

use chrono::{DateTime, Duration, Utc};

use super::case::{Case, CaseStatus, Record};

/// What takes the place of removed words.
pub const REMOVED: &str = "[removed under retention]";
/// What takes the place of a removed person (an actor, an author).
pub const REMOVED_PERSON: &str = "removed";

/// When a case closed, if it has.
pub fn closed_at(case: &Case) -> Option<DateTime<Utc>> {
    match case.status {
        CaseStatus::Open => None,
        CaseStatus::Resolved => case.resolution.as_ref().map(|r| r.resolved_at),
        CaseStatus::Withdrawn => case.withdrawal.as_ref().map(|w| w.at),
    }
}

/// The longest retention period a board may set (100 years): longer is a mistake, not a policy.
pub const MAX_RETENTION_DAYS: u32 = 36_525;

/// The moment before which a board's closed cases and raw messages have outlived `retention_days` (at most
/// [`MAX_RETENTION_DAYS`]; the earliest time there is, should the subtraction leave the calendar).
pub fn cutoff(now: DateTime<Utc>, retention_days: u32) -> DateTime<Utc> {
    now.checked_sub_signed(Duration::days(i64::from(retention_days.min(MAX_RETENTION_DAYS))))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether `case`'s personal data is due to go at `now`.
pub fn is_due(case: &Case, retention_days: u32, now: DateTime<Utc>) -> bool {
    closed_at(case).is_some_and(|at| at < cutoff(now, retention_days))
}

/// `case` without its personal data, keeping every figure the report and digests read.
pub fn anonymise(case: &Case) -> Case {
    let mut c = case.clone();
    c.personal_data_removed = true;
    let r = &case.record;
    c.record = Record {
        escalating_agency: r.escalating_agency.clone(),
        other_agency: r.other_agency.clone(),
        theme: r.theme.clone(),
        stage: r.stage,
        immediate_risk: r.immediate_risk,
        ..Record::default()
    };
    c.participants.clear();
    for s in &mut c.stages {
        s.by = REMOVED_PERSON.into();
    }
    for e in &mut c.extensions {
        e.reason = REMOVED.into();
        e.by = REMOVED_PERSON.into();
    }
    c.notes.clear();
    if let Some(res) = c.resolution.as_mut() {
        res.outcome = REMOVED.into();
        res.agreed_actions = REMOVED.into();
        res.outstanding = REMOVED.into();
        res.by = REMOVED_PERSON.into();
        for a in &mut res.actions {
            a.text = REMOVED.into();
            a.owner = None;
            a.owner_email = None;
        }
    }
    if let Some(w) = c.withdrawal.as_mut() {
        w.reason = REMOVED.into();
        w.by = REMOVED_PERSON.into();
    }
    if let Some(i) = c.actions_implemented.as_mut() {
        i.text = REMOVED.into();
        i.by = REMOVED_PERSON.into();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_cutoff_is_retention_days_before_now() {
        let now = Utc.with_ymd_and_hms(2033, 6, 1, 2, 0, 0).single().expect("time");
        assert_eq!(cutoff(now, 2190), now - Duration::days(2190));
    }
}
