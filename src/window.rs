//! Maintenance windows: when apply may start steps, and when it must stop dispatching.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc};

use crate::campaign::{parse_hhmm, parse_utc_offset, Weekday, Window};

/// A window as apply uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSpec {
    /// Open until a fixed instant (`--window until=2026-11-28T06:00:00Z`).
    Until(DateTime<Utc>),
    /// Recurring: on `days`, from `start` to `end` minutes after midnight, at a fixed offset.
    Weekly {
        days: Vec<Weekday>,
        start: u32,
        end: u32,
        offset_minutes: i32,
    },
}

/// Where `now` falls relative to the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    Open { closes: DateTime<Utc> },
    Closed { opens: Option<DateTime<Utc>> },
}

fn day_index(d: Weekday) -> u32 {
    match d {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

impl WindowSpec {
    pub fn from_campaign(w: &Window) -> Option<WindowSpec> {
        Some(WindowSpec::Weekly {
            days: w.days.clone(),
            start: parse_hhmm(&w.start)?,
            end: parse_hhmm(&w.end)?,
            offset_minutes: parse_utc_offset(&w.timezone)?,
        })
    }

    /// Parse `--window`: `until=RFC3339`, or `DAYS HH:MM-HH:MM [TZ]` such as
    /// `sat,sun 02:00-06:00 UTC`.
    pub fn parse(s: &str) -> Result<WindowSpec, String> {
        let s = s.trim();
        if let Some(t) = s.strip_prefix("until=") {
            return DateTime::parse_from_rfc3339(t)
                .map(|t| WindowSpec::Until(t.with_timezone(&Utc)))
                .map_err(|e| format!("--window until={t}: not an RFC 3339 time ({e})"));
        }
        let parts: Vec<&str> = s.split_whitespace().collect();
        let bad = || {
            format!(
                "--window {s:?}: write `sat,sun 02:00-06:00 UTC` or `until=2026-11-28T06:00:00Z`"
            )
        };
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let days = parts[0]
            .split(',')
            .map(|d| serde_yaml::from_str::<Weekday>(d).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        let (a, b) = parts[1].split_once('-').ok_or_else(bad)?;
        let offset = parse_utc_offset(parts.get(2).copied().unwrap_or("UTC")).ok_or_else(bad)?;
        Ok(WindowSpec::Weekly {
            days,
            start: parse_hhmm(a).ok_or_else(bad)?,
            end: parse_hhmm(b).ok_or_else(bad)?,
            offset_minutes: offset,
        })
    }

    pub fn state_at(&self, now: DateTime<Utc>) -> WindowState {
        match self {
            WindowSpec::Until(t) if now < *t => WindowState::Open { closes: *t },
            WindowSpec::Until(_) => WindowState::Closed { opens: None },
            WindowSpec::Weekly {
                days,
                start,
                end,
                offset_minutes,
            } => {
                let tz = FixedOffset::east_opt(offset_minutes * 60).expect("offset validated");
                let local = now.with_timezone(&tz);
                let len = if end > start {
                    end - start
                } else {
                    end + 24 * 60 - start
                };
                // An occurrence that started yesterday may still be open (windows past midnight).
                let mut next_open: Option<DateTime<Utc>> = None;
                for back in -1i64..=7 {
                    let date = local.date_naive() + Duration::days(back);
                    let wd = date.weekday().num_days_from_monday();
                    if !days.iter().any(|d| day_index(*d) == wd) {
                        continue;
                    }
                    let t = NaiveTime::from_hms_opt(start / 60, start % 60, 0).expect("valid time");
                    let open = tz
                        .from_local_datetime(&date.and_time(t))
                        .single()
                        .expect("fixed offset")
                        .with_timezone(&Utc);
                    let close = open + Duration::minutes(len as i64);
                    if open <= now && now < close {
                        return WindowState::Open { closes: close };
                    }
                    if open > now && next_open.is_none_or(|n| open < n) {
                        next_open = Some(open);
                    }
                }
                WindowState::Closed { opens: next_open }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn weekly_windows_open_and_close() {
        let w = WindowSpec::parse("sat,sun 02:00-06:00 UTC").unwrap();
        // 2026-11-28 is a Saturday.
        assert_eq!(
            w.state_at(at("2026-11-28T03:00:00Z")),
            WindowState::Open {
                closes: at("2026-11-28T06:00:00Z")
            }
        );
        assert_eq!(
            w.state_at(at("2026-11-28T06:00:00Z")),
            WindowState::Closed {
                opens: Some(at("2026-11-29T02:00:00Z"))
            }
        );
        assert_eq!(
            w.state_at(at("2026-11-25T12:00:00Z")),
            WindowState::Closed {
                opens: Some(at("2026-11-28T02:00:00Z"))
            }
        );
    }

    #[test]
    fn windows_past_midnight_and_offsets() {
        let w = WindowSpec::parse("fri 22:00-02:00 +01:00").unwrap();
        // Friday 22:00 +01:00 is 21:00 UTC; it closes Saturday 01:00 UTC.
        assert_eq!(
            w.state_at(at("2026-11-28T00:30:00Z")),
            WindowState::Open {
                closes: at("2026-11-28T01:00:00Z")
            }
        );
    }

    #[test]
    fn until_and_bad_specs() {
        let w = WindowSpec::parse("until=2026-11-25T23:00:00Z").unwrap();
        assert!(matches!(
            w.state_at(at("2026-11-25T22:00:00Z")),
            WindowState::Open { .. }
        ));
        assert_eq!(
            w.state_at(at("2026-11-25T23:00:00Z")),
            WindowState::Closed { opens: None }
        );
        assert!(WindowSpec::parse("someday").is_err());
        assert!(WindowSpec::parse("sat 25:00-26:00").is_err());
    }
}
