//! [`BoardRules`]: everything the core needs to know about one board to decide what happens to a case —
//! its policy, its calendar, its timezone and working hours. Built once by the configuration loader.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::calendar::Calendar;
use super::policy::Policy;

#[derive(Debug, Clone)]
pub struct BoardRules {
    pub board_id: String,
    pub policy: Policy,
    pub calendar: Calendar,
    pub timezone: Tz,
    /// When reminders and digests go out on a working day (local time).
    pub working_day_starts: NaiveTime,
    /// When working hours end (local time): reminders due later in the day wait for the next working day.
    pub working_day_ends: NaiveTime,
    /// Email domains many organisations share (nhs.net): the same domain there says nothing about being
    /// in the same organisation.
    pub shared_domains: Vec<String>,
    /// The board's directory of named people by role and agency (its `directory` CSV).
    pub directory: Vec<super::directory::DirectoryEntry>,
}

impl BoardRules {
    /// Rules with the defaults: Europe/London, reminders at 09:00, nhs.net shared.
    pub fn new(board_id: impl Into<String>, policy: Policy, calendar: Calendar) -> Self {
        BoardRules {
            board_id: board_id.into(),
            policy,
            calendar,
            timezone: chrono_tz::Europe::London,
            working_day_starts: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or(NaiveTime::MIN),
            working_day_ends: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN),
            shared_domains: vec!["nhs.net".to_string()],
            directory: Vec::new(),
        }
    }

    /// The board's local date at `now`.
    pub fn local_date(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.timezone).date_naive()
    }

    /// The instant working hours start on local date `d` (the first valid local time at or after it when
    /// a clock change makes it ambiguous or skipped).
    pub fn working_start(&self, d: NaiveDate) -> DateTime<Utc> {
        self.instant(d.and_time(self.working_day_starts))
    }

    /// The instant of local wall-clock time `local` in the board's timezone: the earlier of two in the hour
    /// the clocks go back, the first valid time after it in the hour they go forward.
    pub fn instant(&self, local: chrono::NaiveDateTime) -> DateTime<Utc> {
        for shift in 0..3 {
            if let Some(t) = self
                .timezone
                .from_local_datetime(&(local + Duration::hours(shift)))
                .earliest()
            {
                return t.with_timezone(&Utc);
            }
        }
        Utc.from_utc_datetime(&local)
    }

    /// Whether `now` is inside working hours: a working day of the board's calendar, between the start and
    /// the end of its working hours (local time).
    pub fn in_working_hours(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.timezone);
        let t = local.time();
        self.calendar.is_working_day(local.date_naive()) && t >= self.working_day_starts && t < self.working_day_ends
    }

    /// `now` if it is inside working hours, otherwise the start of the next working hours.
    pub fn next_working_moment(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.in_working_hours(now) {
            return now;
        }
        let today = self.local_date(now);
        let start = self.working_start(today);
        if self.calendar.is_working_day(today) && now < start {
            return start;
        }
        self.working_start(self.calendar.add_working_days(today, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::calendar::{Calendar, Region};

    fn rules() -> BoardRules {
        let policy: Policy = toml::from_str(include_str!("../../config/policies/bradford.toml")).expect("policy");
        BoardRules::new("b", policy, Calendar::new(Region::EnglandAndWales))
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn working_hours_are_local_and_skip_weekends_and_bank_holidays() {
        let r = rules();
        // 09:30 BST is 08:30 UTC in summer.
        assert!(r.in_working_hours(at("2027-06-01T08:30:00Z")));
        assert!(!r.in_working_hours(at("2027-06-01T07:30:00Z")));
        assert!(!r.in_working_hours(at("2027-06-01T16:30:00Z")));
        // Christmas Day 2026 is a Friday, Boxing Day's substitute the Monday after.
        assert_eq!(
            r.next_working_moment(at("2026-12-24T18:00:00Z")),
            at("2026-12-29T09:00:00Z")
        );
        assert_eq!(
            r.next_working_moment(at("2026-12-29T06:00:00Z")),
            at("2026-12-29T09:00:00Z")
        );
        let inside = at("2026-12-29T10:15:00Z");
        assert_eq!(r.next_working_moment(inside), inside);
        // Saturday evening in British Summer Time: Monday 09:00 BST.
        assert_eq!(
            r.next_working_moment(at("2027-06-05T19:00:00Z")),
            at("2027-06-07T08:00:00Z")
        );
    }
}
