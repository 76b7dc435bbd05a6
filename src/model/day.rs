//! The account's day: HubSpot counts the daily limit per calendar day in the account's
//! time zone, so the daily count is keyed by that date and resets at that midnight.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};

/// The account-local date `now` falls on, `YYYY-MM-DD`: the key of the daily count.
pub fn day_key<Tz: TimeZone>(now: DateTime<Utc>, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    now.with_timezone(tz).format("%Y-%m-%d").to_string()
}

/// The next midnight in the account's time zone after `now`, in UTC: when the daily limit
/// resets. (On a day whose midnight does not exist, the first instant after it.)
pub fn next_daily_reset<Tz: TimeZone>(now: DateTime<Utc>, tz: &Tz) -> DateTime<Utc> {
    let local = now.with_timezone(tz).date_naive();
    let mut day = local.succ_opt().unwrap_or(local);
    for _ in 0..3 {
        let midnight = day.and_time(NaiveTime::MIN);
        if let Some(t) = tz.from_local_datetime(&midnight).earliest() {
            return t.with_timezone(&Utc);
        }
        // Midnight skipped by a DST change: the reset is the first hour that exists.
        if let Some(t) = tz
            .from_local_datetime(&(midnight + chrono::Duration::hours(1)))
            .earliest()
        {
            return t.with_timezone(&Utc);
        }
        day = day.succ_opt().unwrap_or(day);
    }
    now + chrono::Duration::days(1)
}

/// `t + d`, saturating at the end of time instead of panicking (a huge configured
/// duration or `Retry-After` must not bring the daemon down).
pub fn later(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating at the start of time.
pub fn earlier(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_daily_limit_resets_at_midnight_in_the_accounts_zone() {
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        // 03:30 UTC on the 30th is 22:30 on the 29th in New York (UTC-5).
        let now = t("2026-11-30T03:30:00Z");
        assert_eq!(day_key(now, &ny), "2026-11-29");
        assert_eq!(day_key(now, &Utc), "2026-11-30");
        assert_eq!(next_daily_reset(now, &ny), t("2026-11-30T05:00:00Z"));
        assert_eq!(next_daily_reset(now, &Utc), t("2026-12-01T00:00:00Z"));
        // A zone whose midnight is skipped by DST (Santiago, 2026-09-06 00:00 → 01:00).
        let scl: chrono_tz::Tz = "America/Santiago".parse().unwrap();
        let reset = next_daily_reset(t("2026-09-05T12:00:00Z"), &scl);
        assert_eq!(
            reset
                .with_timezone(&scl)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            "2026-09-06 01:00"
        );
    }

    #[test]
    fn adding_a_huge_duration_saturates_instead_of_panicking() {
        let now = t("2026-12-04T00:00:00Z");
        let huge = std::time::Duration::from_secs(u64::MAX / 4);
        assert_eq!(later(now, huge), DateTime::<Utc>::MAX_UTC);
        assert_eq!(earlier(now, huge), DateTime::<Utc>::MIN_UTC);
        assert_eq!(
            later(now, std::time::Duration::from_secs(60)),
            t("2026-12-04T00:01:00Z")
        );
    }
}
