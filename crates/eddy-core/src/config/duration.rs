//! Durations written the way Flink writes them (`10 s`, `10s`, `500 ms`, `1 min`, `2 h`, `1 d`; a
//! bare number is milliseconds) and back. Pure text ↔ [`Duration`]; must never panic on input,
//! accept fractions or negative values (Flink rejects both), or know about configuration keys.

use std::time::Duration;

/// The units Flink's `TimeUtils` accepts (lower-case), with their length in nanoseconds.
const UNITS: &[(&[&str], u128)] = &[
    (&["ns", "nano", "nanos", "nanosecond", "nanoseconds"], 1),
    (
        &["us", "µs", "micro", "micros", "microsecond", "microseconds"],
        1_000,
    ),
    (
        &["ms", "milli", "millis", "millisecond", "milliseconds"],
        1_000_000,
    ),
    (&["s", "sec", "secs", "second", "seconds"], 1_000_000_000),
    (&["m", "min", "mins", "minute", "minutes"], 60_000_000_000),
    (&["h", "hour", "hours"], 3_600_000_000_000),
    (&["d", "day", "days"], 86_400_000_000_000),
];

/// Parses `<whole number>[ ]<unit>`; units are case-insensitive; no unit means milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("'{trimmed}' does not start with a whole number"));
    }
    let count: u128 = number
        .parse()
        .map_err(|_| format!("'{number}' is too large"))?;
    let unit = unit.trim_start().to_lowercase();
    let nanos_per_unit = if unit.is_empty() {
        1_000_000
    } else {
        UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit.as_str()))
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| format!("unknown time unit '{unit}'"))?
    };
    let total = count
        .checked_mul(nanos_per_unit)
        .filter(|n| *n <= Duration::MAX.as_nanos())
        .ok_or_else(|| format!("'{trimmed}' is too large"))?;
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats with the largest unit that represents `d` exactly, as Flink does: `10 s`, `1 min`,
/// `1500 ms`, `0 ms`. `parse_duration(&format_duration(d)) == Ok(d)` for every `d`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0 ms".to_string();
    }
    const SHOWN: &[(&str, u128)] = &[
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("min", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let (unit, size) = SHOWN
        .iter()
        .find(|(_, size)| nanos / size * size == nanos)
        .copied()
        .unwrap_or(("ns", 1));
    format!("{} {unit}", nanos / size)
}
