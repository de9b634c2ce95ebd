//! The working-day calendar: bank holidays of the three UK jurisdictions and working-day arithmetic.
//!
//! Bank holidays are computed from rules (fixed dates, Easter, "first/last Monday of") with substitute
//! days when a holiday falls on a weekend, plus a table of the one-off days proclaimed since 1970 and the
//! days that were moved. A board may add or remove days on top of its region's list.
//!
//! The reading of a time limit (POLICIES.md): "within N working days" of an event on local date D means by
//! the end of the N-th working day strictly after D; an event on a weekend or holiday counts the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// The first and last years whose bank holidays this calendar knows.
pub const FIRST_YEAR: i32 = 1970;
/// See [`FIRST_YEAR`].
pub const LAST_YEAR: i32 = 2100;

/// The jurisdiction whose bank holidays apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Region {
    EnglandAndWales,
    Scotland,
    NorthernIreland,
}

impl Region {
    pub const ALL: [Region; 3] = [Region::EnglandAndWales, Region::Scotland, Region::NorthernIreland];

    pub fn as_str(self) -> &'static str {
        match self {
            Region::EnglandAndWales => "england-and-wales",
            Region::Scotland => "scotland",
            Region::NorthernIreland => "northern-ireland",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Region::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown region {s:?}: use england-and-wales, scotland or northern-ireland"))
    }
}

/// A bank holiday as observed: the weekday it is taken on and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BankHoliday {
    pub date: NaiveDate,
    pub name: String,
}

/// Days proclaimed once, in every UK jurisdiction, since 1970.
const ONE_OFF_UK: &[(i32, u32, u32, &str)] = &[
    (1973, 11, 14, "Wedding of Princess Anne"),
    (1977, 6, 7, "Silver Jubilee of Elizabeth II"),
    (1981, 7, 29, "Wedding of the Prince of Wales"),
    (1999, 12, 31, "Millennium celebrations"),
    (2002, 6, 3, "Golden Jubilee of Elizabeth II"),
    (2011, 4, 29, "Wedding of the Duke and Duchess of Cambridge"),
    (2012, 6, 5, "Diamond Jubilee of Elizabeth II"),
    (2022, 6, 3, "Platinum Jubilee of Elizabeth II"),
    (2022, 9, 19, "State Funeral of Queen Elizabeth II"),
    (2023, 5, 8, "Coronation of King Charles III"),
];

/// Days proclaimed once for Scotland alone.
const ONE_OFF_SCOTLAND: &[(i32, u32, u32, &str)] =
    &[(2026, 6, 15, "Scotland's first FIFA World Cup match (proclaimed)")];

/// Years in which the early May bank holiday was moved from the first Monday of May.
const EARLY_MAY_MOVED: &[(i32, u32, u32)] = &[(1995, 5, 8), (2020, 5, 8)];

/// Years in which the spring bank holiday was moved from the last Monday of May.
const SPRING_MOVED: &[(i32, u32, u32)] = &[(1977, 6, 6), (2002, 6, 4), (2012, 6, 4), (2022, 6, 2)];

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    // Every caller passes a valid calendar date built from constants or rules.
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// Easter Sunday (Gregorian), by the anonymous algorithm.
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    ymd(year, month as u32, day as u32)
}

fn first_monday(year: i32, month: u32) -> NaiveDate {
    let mut d = ymd(year, month, 1);
    while d.weekday() != Weekday::Mon {
        d += Duration::days(1);
    }
    d
}

fn last_monday(year: i32, month: u32) -> NaiveDate {
    let next = if month == 12 {
        ymd(year + 1, 1, 1)
    } else {
        ymd(year, month + 1, 1)
    };
    let mut d = next - Duration::days(1);
    while d.weekday() != Weekday::Mon {
        d -= Duration::days(1);
    }
    d
}

fn moved(table: &[(i32, u32, u32)], year: i32) -> Option<NaiveDate> {
    table.iter().find(|(y, _, _)| *y == year).map(|&(y, m, d)| ymd(y, m, d))
}

pub fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The bank holidays of `region` in `year`, as observed (substitute days in place of weekend dates), in
/// date order. Only weekdays appear.
pub fn bank_holidays(region: Region, year: i32) -> Vec<BankHoliday> {
    use Region::*;
    // Holidays fixed to a calendar date: substituted to the next free weekday when on a weekend.
    let mut fixed: Vec<(NaiveDate, &str)> = Vec::new();
    // Holidays that are always a weekday (Mondays, Good Friday, proclaimed days).
    let mut weekday: Vec<(NaiveDate, &str)> = Vec::new();

    if region == Scotland {
        fixed.push((ymd(year, 1, 1), "New Year's Day"));
        fixed.push((ymd(year, 1, 2), "2nd January"));
    } else if year >= 1974 {
        fixed.push((ymd(year, 1, 1), "New Year's Day"));
    }
    if region == NorthernIreland {
        fixed.push((ymd(year, 3, 17), "St Patrick's Day"));
    }
    let easter = easter_sunday(year);
    weekday.push((easter - Duration::days(2), "Good Friday"));
    if region != Scotland {
        weekday.push((easter + Duration::days(1), "Easter Monday"));
    }
    if year >= 1978 || region == Scotland {
        let d = moved(EARLY_MAY_MOVED, year).unwrap_or_else(|| first_monday(year, 5));
        weekday.push((d, "Early May bank holiday"));
    }
    let spring = moved(SPRING_MOVED, year).unwrap_or_else(|| last_monday(year, 5));
    weekday.push((spring, "Spring bank holiday"));
    if region == NorthernIreland {
        fixed.push((ymd(year, 7, 12), "Battle of the Boyne (Orangemen's Day)"));
    }
    let summer = if region == Scotland {
        first_monday(year, 8)
    } else {
        last_monday(year, 8)
    };
    weekday.push((summer, "Summer bank holiday"));
    if region == Scotland && year >= 2007 {
        fixed.push((ymd(year, 11, 30), "St Andrew's Day"));
    }
    fixed.push((ymd(year, 12, 25), "Christmas Day"));
    if region != Scotland || year >= 1974 {
        fixed.push((ymd(year, 12, 26), "Boxing Day"));
    }
    let scotland_only: &[(i32, u32, u32, &str)] = if region == Scotland { ONE_OFF_SCOTLAND } else { &[] };
    for &(y, m, d, name) in ONE_OFF_UK.iter().chain(scotland_only) {
        if y == year {
            weekday.push((ymd(y, m, d), name));
        }
    }

    let mut taken: BTreeMap<NaiveDate, String> = BTreeMap::new();
    for (d, name) in &weekday {
        taken.insert(*d, (*name).to_string());
    }
    fixed.sort_by_key(|(d, _)| *d);
    // Weekday dates first, so that a weekend holiday's substitute skips them (Christmas on a Sunday is
    // taken on Tuesday 27th because Boxing Day holds Monday 26th).
    for (d, name) in &fixed {
        if !is_weekend(*d) {
            taken.insert(*d, (*name).to_string());
        }
    }
    for (d, name) in &fixed {
        if is_weekend(*d) {
            let mut sub = *d + Duration::days(1);
            while is_weekend(sub) || taken.contains_key(&sub) {
                sub += Duration::days(1);
            }
            taken.insert(sub, format!("{name} (substitute day)"));
        }
    }
    taken
        .into_iter()
        .filter(|(d, _)| d.year() == year && !is_weekend(*d))
        .map(|(date, name)| BankHoliday { date, name })
        .collect()
}

/// A region's bank holidays with a board's own additions and removals, and the arithmetic on it.
#[derive(Debug, Clone)]
pub struct Calendar {
    region: Region,
    holidays: BTreeMap<NaiveDate, String>,
}

impl Calendar {
    /// The calendar of `region` for every year from [`FIRST_YEAR`] to [`LAST_YEAR`].
    pub fn new(region: Region) -> Self {
        Self::with_adjustments(region, &[], &[])
    }

    /// The calendar of `region`, with `add` days treated as holidays and `remove` days as working days.
    pub fn with_adjustments(region: Region, add: &[NaiveDate], remove: &[NaiveDate]) -> Self {
        let mut holidays = BTreeMap::new();
        for year in FIRST_YEAR..=LAST_YEAR {
            for h in bank_holidays(region, year) {
                holidays.insert(h.date, h.name);
            }
        }
        for d in add {
            holidays.insert(*d, "Board holiday".to_string());
        }
        for d in remove {
            holidays.remove(d);
        }
        Calendar { region, holidays }
    }

    pub fn region(&self) -> Region {
        self.region
    }

    /// The holidays of `year` that fall on weekdays, board adjustments included.
    pub fn holidays_in(&self, year: i32) -> Vec<BankHoliday> {
        let from = ymd(year, 1, 1);
        let to = ymd(year, 12, 31);
        self.holidays
            .range(from..=to)
            .filter(|(d, _)| !is_weekend(**d))
            .map(|(d, n)| BankHoliday {
                date: *d,
                name: n.clone(),
            })
            .collect()
    }

    pub fn holiday_name(&self, d: NaiveDate) -> Option<&str> {
        self.holidays.get(&d).map(String::as_str)
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        !is_weekend(d) && !self.holidays.contains_key(&d)
    }

    /// The `n`-th working day strictly after `from` (`from` itself when `n` is 0).
    pub fn add_working_days(&self, from: NaiveDate, n: u32) -> NaiveDate {
        let mut d = from;
        let mut left = n;
        while left > 0 {
            d = d.succ_opt().unwrap_or(d);
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// The `n`-th working day strictly before `from` (`from` itself when `n` is 0).
    pub fn sub_working_days(&self, from: NaiveDate, n: u32) -> NaiveDate {
        let mut d = from;
        let mut left = n;
        while left > 0 {
            d = d.pred_opt().unwrap_or(d);
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// `d` when it is a working day, otherwise the next working day.
    pub fn working_day_on_or_after(&self, d: NaiveDate) -> NaiveDate {
        let mut d = d;
        while !self.is_working_day(d) {
            d = d.succ_opt().unwrap_or(d);
        }
        d
    }

    /// How many working days lie in `(from, to]`: 0 when `to` is not after `from`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        let mut n = 0;
        let mut d = from;
        while d < to {
            d = d.succ_opt().unwrap_or(to);
            if self.is_working_day(d) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn easter_dates_match_published_tables() {
        for (y, s) in [
            (1970, "1970-03-29"),
            (2000, "2000-04-23"),
            (2011, "2011-04-24"),
            (2019, "2019-04-21"),
            (2024, "2024-03-31"),
            (2027, "2027-03-28"),
            (2038, "2038-04-25"),
            (2100, "2100-03-28"),
        ] {
            assert_eq!(easter_sunday(y), d(s), "Easter {y}");
        }
    }

    #[test]
    fn christmas_on_sunday_substitutes_tuesday() {
        let names: Vec<_> = bank_holidays(Region::EnglandAndWales, 2022)
            .into_iter()
            .filter(|h| h.date.month() == 12)
            .map(|h| (h.date, h.name))
            .collect();
        assert_eq!(names[0], (d("2022-12-26"), "Boxing Day".to_string()));
        assert_eq!(
            names[1],
            (d("2022-12-27"), "Christmas Day (substitute day)".to_string())
        );
    }
}
