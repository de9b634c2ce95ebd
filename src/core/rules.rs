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
    /// Email domains many organisations share (nhs.net): the same domain there says nothing about being
    /// in the same organisation.
    pub shared_domains: Vec<String>,
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
            shared_domains: vec!["nhs.net".to_string()],
        }
    }

    /// The board's local date at `now`.
    pub fn local_date(&self, now: DateTime<Utc>) -> NaiveDate {
        now.with_timezone(&self.timezone).date_naive()
    }

    /// The instant working hours start on local date `d` (the first valid local time at or after it when
    /// a clock change makes it ambiguous or skipped).
    pub fn working_start(&self, d: NaiveDate) -> DateTime<Utc> {
        let local = d.and_time(self.working_day_starts);
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
}
