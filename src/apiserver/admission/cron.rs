//! CronJob schedules, read the way robfig/cron's `ParseStandard` reads them (the parser
//! kube-apiserver validates with): five fields of numbers, names, `*`, `?`, ranges,
//! steps and lists, or a `@descriptor`; errors in that library's words.

/// The bounds and names of one field.
struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 5] = [
    Field {
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Field {
        min: 0,
        max: 6,
        names: DAYS,
    },
];

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Why `schedule` is not a standard cron schedule, in robfig/cron's words.
pub(super) fn schedule_error(schedule: &str) -> Option<String> {
    if schedule.is_empty() {
        return Some("empty spec string".into());
    }
    let mut spec = schedule.trim();
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (zone, rest) = spec.split_once(' ').unwrap_or((spec, ""));
        let name = zone.split_once('=').map_or("", |(_, n)| n);
        if let Some(msg) = time_zone_error(name) {
            return Some(format!("provided bad location {name}: {msg}"));
        }
        spec = rest.trim();
    }
    if let Some(descriptor) = spec.strip_prefix('@').map(|_| spec) {
        return descriptor_error(descriptor);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    fields
        .iter()
        .zip(FIELDS.iter())
        .find_map(|(text, bounds)| field_error(text, bounds))
}

fn descriptor_error(descriptor: &str) -> Option<String> {
    if DESCRIPTORS.contains(&descriptor) {
        return None;
    }
    if let Some(duration) = descriptor.strip_prefix("@every ") {
        return duration_error(duration)
            .map(|msg| format!("failed to parse duration {descriptor}: {msg}"));
    }
    Some(format!("unrecognized descriptor: {descriptor}"))
}

/// Whether `text` reads as a Go duration (`1h30m`, `90s`, `1.5h`).
fn duration_error(text: &str) -> Option<String> {
    let bad = || Some(format!("time: invalid duration \"{text}\""));
    let mut rest = text;
    if rest.is_empty() {
        return bad();
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return bad();
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(*u) && !rest[u.len()..].starts_with('s'));
        let Some(unit) = unit else {
            return bad();
        };
        rest = &rest[unit.len()..];
    }
    None
}

/// One field: comma-separated ranges, each checked against the field's bounds.
fn field_error(text: &str, bounds: &Field) -> Option<String> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .find_map(|part| range_error(part, bounds))
}

fn range_error(expr: &str, bounds: &Field) -> Option<String> {
    let (range, step) = match expr.split('/').collect::<Vec<_>>().as_slice() {
        [range] => (*range, None),
        [range, step] => (*range, Some(*step)),
        _ => return Some(format!("too many slashes: {expr}")),
    };
    let bounds_of = |parts: &[&str]| -> Result<(u32, u32), String> {
        match parts {
            ["*"] | ["?"] => Ok((bounds.min, bounds.max)),
            [single] => {
                let n = int_or_name(single, bounds.names)?;
                Ok((n, n))
            }
            [low, high] => Ok((
                int_or_name(low, bounds.names)?,
                int_or_name(high, bounds.names)?,
            )),
            _ => Err(format!("too many hyphens: {expr}")),
        }
    };
    let parts: Vec<&str> = range.split('-').collect();
    let (start, mut end) = match bounds_of(&parts) {
        Ok(b) => b,
        Err(msg) => return Some(msg),
    };
    let mut step_value = 1;
    if let Some(step) = step {
        step_value = match positive_int(step) {
            Ok(n) => n,
            Err(msg) => return Some(msg),
        };
        if parts.len() == 1 {
            end = bounds.max;
        }
    }
    if start < bounds.min {
        return Some(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            bounds.min
        ));
    }
    if end > bounds.max {
        return Some(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            bounds.max
        ));
    }
    if start > end {
        return Some(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    (step_value == 0).then(|| format!("step of range should be a positive number: {expr}"))
}

fn int_or_name(text: &str, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_lowercase();
    match names.iter().position(|n| !n.is_empty() && *n == lower) {
        Some(i) => Ok(i as u32),
        None => positive_int(text),
    }
}

/// Go's `strconv.Atoi`, refusing negative numbers as robfig/cron does.
fn positive_int(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {text}: strconv.Atoi: parsing \"{text}\": invalid syntax"
        ));
    }
    match text.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {text}")),
        Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
        Err(_) => Err(format!(
            "failed to parse int from {text}: strconv.Atoi: parsing \"{text}\": value out of range"
        )),
    }
}

/// Why `name` cannot be an IANA time zone name, judged by its shape only (this module
/// reads no tz database): `Area/Location` words of letters, digits, `_`, `-` and `+`.
pub(super) fn time_zone_error(name: &str) -> Option<String> {
    let word_ok = |w: &str| {
        !w.is_empty()
            && w != "."
            && w != ".."
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    };
    let ok = name.split('/').all(word_ok)
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    (!ok).then(|| format!("unknown time zone {name}"))
}
