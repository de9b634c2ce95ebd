//! The calendar against the published bank holiday lists (GOV.UK and earlier proclamations) for several
//! years in each region, the worked examples of POLICIES.md, and properties of working-day arithmetic.

use chrono::{Datelike, NaiveDate, Weekday};
use escalation_bot::core::calendar::{bank_holidays, Calendar, Region};
use proptest::prelude::*;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

fn dates(region: Region, year: i32) -> Vec<String> {
    bank_holidays(region, year)
        .into_iter()
        .map(|h| h.date.to_string())
        .collect()
}

fn list(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[test]
fn england_and_wales_published_lists() {
    let cases = [
        (1977, "1977-01-03 1977-04-08 1977-04-11 1977-06-06 1977-06-07 1977-08-29 1977-12-26 1977-12-27"),
        (1981, "1981-01-01 1981-04-17 1981-04-20 1981-05-04 1981-05-25 1981-07-29 1981-08-31 1981-12-25 1981-12-28"),
        (1995, "1995-01-02 1995-04-14 1995-04-17 1995-05-08 1995-05-29 1995-08-28 1995-12-25 1995-12-26"),
        (1999, "1999-01-01 1999-04-02 1999-04-05 1999-05-03 1999-05-31 1999-08-30 1999-12-27 1999-12-28 1999-12-31"),
        (2002, "2002-01-01 2002-03-29 2002-04-01 2002-05-06 2002-06-03 2002-06-04 2002-08-26 2002-12-25 2002-12-26"),
        (2011, "2011-01-03 2011-04-22 2011-04-25 2011-04-29 2011-05-02 2011-05-30 2011-08-29 2011-12-26 2011-12-27"),
        (2012, "2012-01-02 2012-04-06 2012-04-09 2012-05-07 2012-06-04 2012-06-05 2012-08-27 2012-12-25 2012-12-26"),
        (2018, "2018-01-01 2018-03-30 2018-04-02 2018-05-07 2018-05-28 2018-08-27 2018-12-25 2018-12-26"),
        (2019, "2019-01-01 2019-04-19 2019-04-22 2019-05-06 2019-05-27 2019-08-26 2019-12-25 2019-12-26"),
        (2020, "2020-01-01 2020-04-10 2020-04-13 2020-05-08 2020-05-25 2020-08-31 2020-12-25 2020-12-28"),
        (2021, "2021-01-01 2021-04-02 2021-04-05 2021-05-03 2021-05-31 2021-08-30 2021-12-27 2021-12-28"),
        (2022, "2022-01-03 2022-04-15 2022-04-18 2022-05-02 2022-06-02 2022-06-03 2022-08-29 2022-09-19 2022-12-26 2022-12-27"),
        (2023, "2023-01-02 2023-04-07 2023-04-10 2023-05-01 2023-05-08 2023-05-29 2023-08-28 2023-12-25 2023-12-26"),
        (2024, "2024-01-01 2024-03-29 2024-04-01 2024-05-06 2024-05-27 2024-08-26 2024-12-25 2024-12-26"),
        (2025, "2025-01-01 2025-04-18 2025-04-21 2025-05-05 2025-05-26 2025-08-25 2025-12-25 2025-12-26"),
        (2026, "2026-01-01 2026-04-03 2026-04-06 2026-05-04 2026-05-25 2026-08-31 2026-12-25 2026-12-28"),
        (2027, "2027-01-01 2027-03-26 2027-03-29 2027-05-03 2027-05-31 2027-08-30 2027-12-27 2027-12-28"),
    ];
    for (year, expected) in cases {
        assert_eq!(
            dates(Region::EnglandAndWales, year),
            list(expected),
            "England and Wales {year}"
        );
    }
}

#[test]
fn new_years_day_is_a_bank_holiday_in_england_only_from_1974() {
    assert!(!dates(Region::EnglandAndWales, 1973).contains(&"1973-01-01".to_string()));
    assert!(dates(Region::EnglandAndWales, 1974).contains(&"1974-01-01".to_string()));
    assert!(dates(Region::Scotland, 1973).contains(&"1973-01-01".to_string()));
    // The 1973 royal wedding was a one-off holiday everywhere.
    assert!(dates(Region::EnglandAndWales, 1973).contains(&"1973-11-14".to_string()));
}

#[test]
fn scotland_published_lists() {
    let cases = [
        (2022, "2022-01-03 2022-01-04 2022-04-15 2022-05-02 2022-06-02 2022-06-03 2022-08-01 2022-09-19 2022-11-30 2022-12-26 2022-12-27"),
        (2023, "2023-01-02 2023-01-03 2023-04-07 2023-05-01 2023-05-08 2023-05-29 2023-08-07 2023-11-30 2023-12-25 2023-12-26"),
        (2024, "2024-01-01 2024-01-02 2024-03-29 2024-05-06 2024-05-27 2024-08-05 2024-12-02 2024-12-25 2024-12-26"),
        (2025, "2025-01-01 2025-01-02 2025-04-18 2025-05-05 2025-05-26 2025-08-04 2025-12-01 2025-12-25 2025-12-26"),
        (2026, "2026-01-01 2026-01-02 2026-04-03 2026-05-04 2026-05-25 2026-06-15 2026-08-03 2026-11-30 2026-12-25 2026-12-28"),
    ];
    for (year, expected) in cases {
        assert_eq!(dates(Region::Scotland, year), list(expected), "Scotland {year}");
    }
    // No St Andrew's Day before the 2007 Act; no Easter Monday in Scotland.
    assert!(!dates(Region::Scotland, 2005)
        .iter()
        .any(|s| s.starts_with("2005-11-30")));
    assert!(!dates(Region::Scotland, 2024).contains(&"2024-04-01".to_string()));
}

#[test]
fn northern_ireland_published_lists() {
    let cases = [
        (2023, "2023-01-02 2023-03-17 2023-04-07 2023-04-10 2023-05-01 2023-05-08 2023-05-29 2023-07-12 2023-08-28 2023-12-25 2023-12-26"),
        (2024, "2024-01-01 2024-03-18 2024-03-29 2024-04-01 2024-05-06 2024-05-27 2024-07-12 2024-08-26 2024-12-25 2024-12-26"),
        (2025, "2025-01-01 2025-03-17 2025-04-18 2025-04-21 2025-05-05 2025-05-26 2025-07-14 2025-08-25 2025-12-25 2025-12-26"),
        (2026, "2026-01-01 2026-03-17 2026-04-03 2026-04-06 2026-05-04 2026-05-25 2026-07-13 2026-08-31 2026-12-25 2026-12-28"),
    ];
    for (year, expected) in cases {
        assert_eq!(
            dates(Region::NorthernIreland, year),
            list(expected),
            "Northern Ireland {year}"
        );
    }
}

#[test]
fn policies_md_worked_examples() {
    let cal = Calendar::new(Region::EnglandAndWales);
    let from = d("2026-12-23");
    for (n, expected) in [
        (1, "2026-12-24"),
        (2, "2026-12-29"),
        (3, "2026-12-30"),
        (5, "2027-01-04"),
        (10, "2027-01-11"),
        (15, "2027-01-18"),
    ] {
        assert_eq!(
            cal.add_working_days(from, n),
            d(expected),
            "{n} working days from 2026-12-23"
        );
    }
    let from = d("2027-03-25");
    assert_eq!(cal.add_working_days(from, 1), d("2027-03-30"));
    assert_eq!(cal.add_working_days(from, 5), d("2027-04-05"));
    // Zero working days is the day itself; a weekend start counts from the weekend.
    assert_eq!(cal.add_working_days(from, 0), from);
    assert_eq!(cal.add_working_days(d("2026-11-21"), 1), d("2026-11-23"));
}

#[test]
fn board_adjustments_add_and_remove_days() {
    let add = [d("2026-11-23")];
    let remove = [d("2026-12-28")];
    let cal = Calendar::with_adjustments(Region::EnglandAndWales, &add, &remove);
    assert!(!cal.is_working_day(d("2026-11-23")));
    assert!(cal.is_working_day(d("2026-12-28")));
    assert_eq!(cal.add_working_days(d("2026-11-20"), 1), d("2026-11-24"));
    let hols: Vec<_> = cal.holidays_in(2026).into_iter().map(|h| h.date).collect();
    assert!(hols.contains(&d("2026-11-23")) && !hols.contains(&d("2026-12-28")));
}

#[test]
fn every_year_in_range_has_a_sane_list() {
    for region in Region::ALL {
        for year in 1970..=2100 {
            let h = bank_holidays(region, year);
            assert!((6..=12).contains(&h.len()), "{region} {year}: {} holidays", h.len());
            assert!(
                h.windows(2).all(|w| w[0].date < w[1].date),
                "{region} {year} not sorted"
            );
            assert!(h
                .iter()
                .all(|x| !matches!(x.date.weekday(), Weekday::Sat | Weekday::Sun)));
            assert!(h.iter().all(|x| x.date.year() == year));
        }
    }
}

proptest! {
    #[test]
    fn working_day_sums_land_on_working_days(days_from_epoch in 0i64..47_000, n in 1u32..60, r in 0usize..3) {
        let cal = Calendar::new(Region::ALL[r]);
        let from = d("1970-01-01") + chrono::Duration::days(days_from_epoch);
        let to = cal.add_working_days(from, n);
        prop_assert!(to > from);
        prop_assert!(cal.is_working_day(to));
        prop_assert_eq!(cal.working_days_between(from, to), n);
    }

    #[test]
    fn working_day_sums_are_monotone(days_from_epoch in 0i64..47_000, n in 0u32..60) {
        let cal = Calendar::new(Region::EnglandAndWales);
        let from = d("1970-01-01") + chrono::Duration::days(days_from_epoch);
        prop_assert!(cal.add_working_days(from, n) < cal.add_working_days(from, n + 1));
        let later = from + chrono::Duration::days(1);
        prop_assert!(cal.add_working_days(from, n) <= cal.add_working_days(later, n));
    }

    #[test]
    fn subtracting_undoes_adding_from_a_working_day(days_from_epoch in 0i64..47_000, n in 0u32..40) {
        let cal = Calendar::new(Region::EnglandAndWales);
        let from = cal.working_day_on_or_after(d("1970-01-01") + chrono::Duration::days(days_from_epoch));
        prop_assert_eq!(cal.sub_working_days(cal.add_working_days(from, n), n), from);
    }
}
