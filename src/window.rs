//! Maintenance windows: when apply may start steps, and when it must stop dispatching.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc};

use crate::campaign::{parse_hhmm, parse_utc_offset, Weekday, Window};

/// A window as apply uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSpec {
    /// Open until a fixed instant (`--window until=2026-11-28T06:00:00Z`).
    Until(DateTime<Utc>),
    /// Recurring: on `days`, from `start` to `end` minutes after midnight local time, in
    /// `zone` (an IANA name, DST included) or at a fixed offset.
    Weekly {
        days: Vec<Weekday>,
        start: u32,
        end: u32,
        offset_minutes: i32,
        zone: Option<String>,
    },
}

/// The IANA time zone of that name (bundled tz database: the same rules on every machine).
pub fn named_zone(name: &str) -> Option<jiff::tz::TimeZone> {
    if !name.contains('/') {
        return None;
    }
    jiff::tz::TimeZone::get(name).ok()
}

/// A wall-clock time on a date in `zone`, as an instant. A time that does not exist that
/// night (the clocks jumped over it) is moved forward by the jump; a time that happens twice
/// (the clocks went back) is its first occurrence — RFC 5545's rule, jiff's `compatible`.
fn local_instant(
    zone: &jiff::tz::TimeZone,
    date: jiff::civil::Date,
    minutes: u32,
) -> Option<DateTime<Utc>> {
    let dt = date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
    let z = zone.to_ambiguous_zoned_datetime(dt).compatible().ok()?;
    let ts = z.timestamp();
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
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
    /// The window in UTC, for a reader in another zone: `= 01:00–05:00 UTC`, or for a zone
    /// with daylight saving time both (`= 01:00–05:00 UTC at +01:00, 00:00–04:00 UTC at
    /// +02:00`); `None` for a window already in UTC. Taken on fixed dates (15 January and
    /// 15 July 2026), so a runbook made from a plan says the same whenever it is made.
    pub fn in_utc(&self) -> Option<String> {
        let WindowSpec::Weekly {
            start,
            end,
            offset_minutes,
            zone,
            ..
        } = self
        else {
            return None;
        };
        let hhmm = |m: i64| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(60));
        let shifted = |offset: i64| {
            format!(
                "{}–{} UTC",
                hhmm(*start as i64 - offset),
                hhmm(*end as i64 - offset)
            )
        };
        let offset_text = |m: i64| {
            format!(
                "{}{:02}:{:02}",
                if m < 0 { '-' } else { '+' },
                m.abs() / 60,
                m.abs() % 60
            )
        };
        match zone.as_deref().and_then(named_zone) {
            None if *offset_minutes == 0 => None,
            None => Some(format!("= {}", shifted(*offset_minutes as i64))),
            Some(tz) => {
                let offset_on = |month: i8| {
                    let dt = jiff::civil::date(2026, month, 15).at(12, 0, 0, 0);
                    tz.to_ambiguous_zoned_datetime(dt)
                        .compatible()
                        .map(|z| z.offset().seconds() as i64 / 60)
                        .unwrap_or(0)
                };
                let (jan, jul) = (offset_on(1), offset_on(7));
                if jan == jul {
                    Some(format!("= {}", shifted(jan)))
                } else {
                    let (a, b) = if jan < jul { (jan, jul) } else { (jul, jan) };
                    Some(format!(
                        "= {} at {}, {} at {}",
                        shifted(a),
                        offset_text(a),
                        shifted(b),
                        offset_text(b)
                    ))
                }
            }
        }
    }

    /// An instant as wall-clock time in the window's zone (`2026-11-28 02:00 Europe/Berlin`),
    /// for a window in a named zone or at an offset other than UTC.
    pub fn local_text(&self, t: DateTime<Utc>) -> Option<String> {
        let WindowSpec::Weekly {
            offset_minutes,
            zone,
            ..
        } = self
        else {
            return None;
        };
        match zone {
            Some(name) => {
                let tz = named_zone(name)?;
                let z = jiff::Timestamp::from_second(t.timestamp())
                    .ok()?
                    .to_zoned_datetime(tz);
                Some(format!("{} {name}", z.strftime("%Y-%m-%d %H:%M")))
            }
            None if *offset_minutes == 0 => None,
            None => {
                let tz = FixedOffset::east_opt(offset_minutes * 60)?;
                Some(
                    t.with_timezone(&tz)
                        .format("%Y-%m-%d %H:%M %:z")
                        .to_string(),
                )
            }
        }
    }

    pub fn from_campaign(w: &Window) -> Option<WindowSpec> {
        Some(WindowSpec::Weekly {
            days: w.days.clone(),
            start: parse_hhmm(&w.start)?,
            end: parse_hhmm(&w.end)?,
            offset_minutes: parse_utc_offset(&w.timezone).unwrap_or(0),
            zone: match parse_utc_offset(&w.timezone) {
                Some(_) => None,
                None => {
                    named_zone(&w.timezone)?;
                    Some(w.timezone.clone())
                }
            },
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
        let tz = parts.get(2).copied().unwrap_or("UTC");
        let (offset, zone) = match parse_utc_offset(tz) {
            Some(o) => (o, None),
            None => {
                named_zone(tz).ok_or_else(|| {
                    format!("--window {s:?}: {tz:?} is not a known time zone (an IANA name such as Europe/Berlin, UTC, or an offset such as +01:00)")
                })?;
                (0, Some(tz.to_string()))
            }
        };
        Ok(WindowSpec::Weekly {
            days,
            start: parse_hhmm(a).ok_or_else(bad)?,
            end: parse_hhmm(b).ok_or_else(bad)?,
            offset_minutes: offset,
            zone,
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
                zone: Some(name),
                ..
            } => {
                let Some(zone) = named_zone(name) else {
                    // Checked when the campaign or --window was read.
                    return WindowState::Closed { opens: None };
                };
                let Ok(ts) = jiff::Timestamp::from_second(now.timestamp()) else {
                    return WindowState::Closed { opens: None };
                };
                let today = ts.to_zoned_datetime(zone.clone()).date();
                let mut next_open: Option<DateTime<Utc>> = None;
                for back in -1i64..=7 {
                    let Ok(date) = today.checked_add(jiff::Span::new().days(back)) else {
                        continue;
                    };
                    let wd = date.weekday().to_monday_zero_offset() as u32;
                    if !days.iter().any(|d| day_index(*d) == wd) {
                        continue;
                    }
                    // The end is a wall-clock time too: a window over a DST change is an hour
                    // shorter or longer in real time.
                    let end_date = if end > start {
                        Some(date)
                    } else {
                        date.checked_add(jiff::Span::new().days(1)).ok()
                    };
                    let (Some(open), Some(close)) = (
                        local_instant(&zone, date, *start),
                        end_date.and_then(|d| local_instant(&zone, d, *end)),
                    ) else {
                        continue;
                    };
                    if open <= now && now < close {
                        return WindowState::Open { closes: close };
                    }
                    if open > now && next_open.is_none_or(|n| open < n) {
                        next_open = Some(open);
                    }
                }
                WindowState::Closed { opens: next_open }
            }
            WindowSpec::Weekly {
                days,
                start,
                end,
                offset_minutes,
                zone: None,
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
    fn named_zones_follow_daylight_saving_time() {
        // Europe/Berlin: CET (+01:00) in winter, CEST (+02:00) in summer.
        let w = WindowSpec::parse("sat 02:00-06:00 Europe/Berlin").unwrap();
        // 2026-11-28, winter: 01:00-05:00 UTC.
        assert_eq!(
            w.state_at(at("2026-11-28T01:30:00Z")),
            WindowState::Open {
                closes: at("2026-11-28T05:00:00Z")
            }
        );
        // 2026-07-04, summer: 00:00-04:00 UTC.
        assert_eq!(
            w.state_at(at("2026-07-04T00:30:00Z")),
            WindowState::Open {
                closes: at("2026-07-04T04:00:00Z")
            }
        );
        // The night of 2026-03-28/29 clocks jump 02:00 → 03:00: a Saturday 23:00-04:00 window
        // is 4 hours long, not 5 (22:00Z to 02:00Z).
        let w = WindowSpec::parse("sat 23:00-04:00 Europe/Berlin").unwrap();
        assert_eq!(
            w.state_at(at("2026-03-28T21:00:00Z")),
            WindowState::Closed {
                opens: Some(at("2026-03-28T22:00:00Z"))
            }
        );
        assert_eq!(
            w.state_at(at("2026-03-29T01:59:00Z")),
            WindowState::Open {
                closes: at("2026-03-29T02:00:00Z")
            }
        );
        // A start that does not exist that night (02:30 on 2026-03-29) moves forward by the
        // jump: the window opens at 03:30 CEST (01:30Z) and ends at 06:00 CEST (04:00Z).
        let w = WindowSpec::parse("sun 02:30-06:00 Europe/Berlin").unwrap();
        assert_eq!(
            w.state_at(at("2026-03-29T01:00:00Z")),
            WindowState::Closed {
                opens: Some(at("2026-03-29T01:30:00Z"))
            }
        );
        // A start that happens twice (01:30 on 2026-11-01 in New York, clocks back at 02:00)
        // is the first one (05:30Z, EDT); 01:30-03:00 that night lasts 2.5 hours, not 1.5.
        let w = WindowSpec::parse("sun 01:30-03:00 America/New_York").unwrap();
        assert_eq!(
            w.state_at(at("2026-11-01T05:00:00Z")),
            WindowState::Closed {
                opens: Some(at("2026-11-01T05:30:00Z"))
            }
        );
        assert_eq!(
            w.state_at(at("2026-11-01T06:45:00Z")),
            WindowState::Open {
                closes: at("2026-11-01T08:00:00Z")
            }
        );
        // The runbook's restatement in UTC: both offsets of a zone with DST.
        assert_eq!(
            WindowSpec::parse("sat 02:00-06:00 Europe/Berlin")
                .unwrap()
                .in_utc()
                .as_deref(),
            Some("= 01:00–05:00 UTC at +01:00, 00:00–04:00 UTC at +02:00")
        );
        assert_eq!(
            WindowSpec::parse("fri 22:00-02:00 -05:00")
                .unwrap()
                .in_utc()
                .as_deref(),
            Some("= 03:00–07:00 UTC")
        );
        assert_eq!(
            WindowSpec::parse("sat 02:00-06:00 UTC").unwrap().in_utc(),
            None
        );
        assert_eq!(
            WindowSpec::parse("sat 02:00-06:00 Europe/Berlin")
                .unwrap()
                .local_text(at("2026-07-04T00:00:00Z"))
                .as_deref(),
            Some("2026-07-04 02:00 Europe/Berlin")
        );
        // An unknown zone is refused, naming it.
        let err = WindowSpec::parse("sat 02:00-06:00 Mars/Olympus").unwrap_err();
        assert!(err.contains("Mars/Olympus"), "{err}");
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
