//! Cron schedules as kube-controller-manager reads them: robfig/cron v3's
//! `ParseStandard` (five fields of numbers, names, `*`, `?`, ranges, steps and lists;
//! `@yearly` … `@hourly` and `@every <duration>`; an optional `TZ=` or `CRON_TZ=`
//! prefix) and its `Next`, walked in the schedule's time zone so that daylight saving
//! transitions behave as upstream: a time skipped by a spring-forward does not run
//! that day, a time repeated by a fall-back runs twice.
//!
//! Time zones come from the IANA database on the machine (`/usr/share/zoneinfo`, or
//! `$TZDIR`) through jiff, which the k8s-openapi types already depend on.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// Why a schedule could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The text is not a standard cron schedule (robfig/cron's words).
    #[error("{0}")]
    Parse(String),
    /// The time zone is not in the database.
    #[error("unknown time zone {zone}: {reason}")]
    Zone {
        /// The zone's name.
        zone: String,
        /// Why it could not be loaded (no zoneinfo on this machine, or no such zone).
        reason: String,
    },
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// Bit sets of the matching values; bit 63 marks a field given as `*` or `?`.
    Spec {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    /// `@every`: a fixed delay in whole seconds.
    Every(i64),
}

const STAR: u64 = 1 << 63;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Loads an IANA time zone; "" and "UTC" are UTC.
pub fn load_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name.is_empty() || name == "UTC" || name == "Local" {
        return Ok(TimeZone::UTC);
    }
    jiff::tz::db().get(name).map_err(|e| ScheduleError::Zone {
        zone: name.into(),
        reason: if jiff::tz::db().is_definitively_empty() {
            "no time zone database found (install tzdata: /usr/share/zoneinfo, or set TZDIR)".into()
        } else {
            e.to_string()
        },
    })
}

impl Schedule {
    /// Parses `text` as `cron.ParseStandard` does, in `zone` unless the text names one.
    pub fn parse(text: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let parse_err = |m: String| ScheduleError::Parse(m);
        if text.is_empty() {
            return Err(parse_err("empty spec string".into()));
        }
        let mut spec = text.trim();
        let mut tz_name = zone.to_string();
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let (tz, rest) = spec.split_once(' ').unwrap_or((spec, ""));
            tz_name = tz.split_once('=').map_or("", |(_, n)| n).to_string();
            spec = rest.trim();
        }
        let tz = load_zone(&tz_name)?;
        let kind = if spec.starts_with('@') {
            descriptor(spec).map_err(parse_err)?
        } else {
            let fields: Vec<&str> = spec.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(parse_err(format!(
                    "expected exactly 5 fields, found {}: [{}]",
                    fields.len(),
                    fields.join(" ")
                )));
            }
            Kind::Spec {
                minute: field(fields[0], 0, 59, &[]).map_err(parse_err)?,
                hour: field(fields[1], 0, 23, &[]).map_err(parse_err)?,
                dom: field(fields[2], 1, 31, &[]).map_err(parse_err)?,
                month: field(fields[3], 1, 12, &MONTHS).map_err(parse_err)?,
                dow: field(fields[4], 0, 6, &DAYS).map_err(parse_err)?,
            }
        };
        Ok(Schedule { kind, tz })
    }

    /// The first time after `after` (robfig/cron's `Next`), or None if there is none
    /// within five years (a schedule such as Feb 31).
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        match self.kind {
            Kind::Every(secs) => Timestamp::from_second(after.as_second() + secs).ok(),
            Kind::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
            } => next_spec(&self.tz, after, [minute, hour, dom, month, dow]).map(|z| z.timestamp()),
        }
    }
}

fn descriptor(spec: &str) -> Result<Kind, String> {
    let standard = |m, h, d, mo, w| Kind::Spec {
        minute: m,
        hour: h,
        dom: d,
        month: mo,
        dow: w,
    };
    let all = |lo: u32, hi: u32| bits(lo, hi, 1) | STAR;
    Ok(match spec {
        "@yearly" | "@annually" => standard(1, 1, 1 << 1, 1 << 1, all(0, 6)),
        "@monthly" => standard(1, 1, 1 << 1, all(1, 12), all(0, 6)),
        "@weekly" => standard(1, 1, all(1, 31), all(1, 12), 1),
        "@daily" | "@midnight" => standard(1, 1, all(1, 31), all(1, 12), all(0, 6)),
        "@hourly" => standard(1, all(0, 23), all(1, 31), all(1, 12), all(0, 6)),
        _ => match spec.strip_prefix("@every ") {
            Some(d) => {
                let nanos = go_duration(d.trim()).ok_or_else(|| {
                    format!(
                        "failed to parse duration {spec}: time: invalid duration {:?}",
                        d.trim()
                    )
                })?;
                // Under a second is a second; otherwise whole seconds.
                Kind::Every((nanos / 1_000_000_000).max(1) as i64)
            }
            None => return Err(format!("unrecognized descriptor: {spec}")),
        },
    })
}

/// A Go duration ("1h30m", "90s", "1.5h") in nanoseconds.
fn go_duration(text: &str) -> Option<u128> {
    const UNITS: [(&str, f64); 8] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 6e10),
        ("h", 3.6e12),
    ];
    if text.is_empty() {
        return None;
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    Some(total as u128)
}

fn bits(lo: u32, hi: u32, step: u32) -> u64 {
    (lo..=hi)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | 1 << v)
}

/// One field: a comma-separated list of ranges.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    text.split(',')
        .try_fold(0, |acc, r| Ok(acc | range(r, min, max, names)?))
}

fn range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    if expr.matches('/').count() > 1 {
        return Err(format!("too many slashes: {expr}"));
    }
    let (span, step) = match expr.split_once('/') {
        Some((s, st)) => (s, Some(st)),
        None => (expr, None),
    };
    let (start, mut end, mut extra) = if span == "*" || span == "?" {
        (min, max, STAR)
    } else {
        let parts: Vec<&str> = span.split('-').collect();
        let start = int_or_name(parts[0], names)?;
        let end = match parts.len() {
            1 => start,
            2 => int_or_name(parts[1], names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end, 0)
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let step = positive_int(s)?;
            // "N/step" means N through the maximum.
            if !span.contains('-') && extra == 0 {
                end = max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn int_or_name(text: &str, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        // Months are numbered from 1, days from 0.
        return Ok(i as u32 + u32::from(names.len() == 12));
    }
    positive_int(text)
}

fn positive_int(text: &str) -> Result<u32, String> {
    let n: i64 = text.parse().map_err(|_| {
        format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: invalid syntax")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {text}"));
    }
    u32::try_from(n).map_err(|_| format!("failed to parse int from {text}"))
}

fn has(set: u64, v: i8) -> bool {
    set & (1 << v as u32) != 0
}

fn day_matches(dom: u64, dow: u64, t: &Zoned) -> bool {
    let dom_match = has(dom, t.day());
    let dow_match = has(dow, t.weekday().to_sunday_zero_offset());
    if dom & STAR != 0 || dow & STAR != 0 {
        dom_match && dow_match
    } else {
        dom_match || dow_match
    }
}

/// A wall-clock time in the zone as Go's `time.Date` resolves it: a time skipped or
/// repeated by a transition is the earliest instant it can mean.
fn at(tz: &TimeZone, y: i16, mo: i8, d: i8, h: i8) -> Option<Zoned> {
    let civil = DateTime::new(y, mo, d, h, 0, 0, 0).ok()?;
    tz.to_ambiguous_zoned(civil).earlier().ok()
}

/// Go's `AddDate`: the same wall-clock time on a later calendar day or month.
fn add_calendar(t: &Zoned, span: jiff::Span) -> Option<Zoned> {
    let civil = t.datetime().checked_add(span).ok()?;
    t.time_zone().to_ambiguous_zoned(civil).earlier().ok()
}

/// robfig/cron's `SpecSchedule.Next`: walks months, days, hours and minutes forward in
/// the zone; hours and minutes are added in absolute time, days on the calendar.
fn next_spec(tz: &TimeZone, after: Timestamp, f: [u64; 5]) -> Option<Zoned> {
    let [minute, hour, dom, month, dow] = f;
    let mut t = Timestamp::from_second(after.as_second() + 1)
        .ok()?
        .to_zoned(tz.clone());
    let mut added = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !has(month, t.month()) {
            if !added {
                added = true;
                t = at(tz, t.year(), t.month(), 1, 0)?;
            }
            t = add_calendar(&t, 1.month())?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(dom, dow, &t) {
            if !added {
                added = true;
                t = at(tz, t.year(), t.month(), t.day(), 0)?;
            }
            t = add_calendar(&t, 1.day())?;
            // A day that did not start at midnight (a transition at midnight).
            if t.hour() != 0 {
                let fix = if t.hour() > 12 {
                    24 - t.hour()
                } else {
                    -t.hour()
                };
                t = t.checked_add((fix as i64).hours()).ok()?;
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(hour, t.hour()) {
            if !added {
                added = true;
                t = t
                    .checked_sub((t.minute() as i64).minutes().seconds(t.second() as i64))
                    .ok()?;
            }
            t = t.checked_add(1.hour()).ok()?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(minute, t.minute()) {
            if !added {
                added = true;
                t = t.checked_sub((t.second() as i64).seconds()).ok()?;
            }
            t = t.checked_add(1.minute()).ok()?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        if t.second() != 0 {
            if !added {
                added = true;
            }
            t = t.checked_add(((60 - t.second()) as i64).seconds()).ok()?;
            continue 'wrap;
        }
        return Some(t);
    }
}
