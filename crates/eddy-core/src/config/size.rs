//! Memory sizes written the way Flink writes them (`1024m`, `1g`, `512 kb`, `4096`; a bare number
//! is bytes; units are 1024-based) and back. Pure text ↔ bytes; must never panic on input or accept
//! fractions such as `1.5g` (Flink's `MemorySize` rejects them too).

/// Units Flink's `MemorySize` accepts (lower-case), with their size in bytes.
const UNITS: &[(&[&str], u64)] = &[
    (&["b", "bytes"], 1),
    (&["k", "kb", "kibibytes"], 1 << 10),
    (&["m", "mb", "mebibytes"], 1 << 20),
    (&["g", "gb", "gibibytes"], 1 << 30),
    (&["t", "tb", "tebibytes"], 1 << 40),
];

/// Parses `<whole number>[ ]<unit>` into bytes; units are case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("'{trimmed}' does not start with a whole number"));
    }
    let count: u64 = number
        .parse()
        .map_err(|_| format!("'{number}' is too large"))?;
    let unit = unit.trim_start().to_lowercase();
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit.as_str()))
            .map(|(_, bytes)| *bytes)
            .ok_or_else(|| format!("unknown size unit '{unit}'"))?
    };
    count
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{trimmed}' is too large"))
}

/// Formats with the largest unit that represents `bytes` exactly: `1g`, `1536m`, `100b`.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0b".to_string();
    }
    const SHOWN: &[(&str, u64)] = &[
        ("t", 1 << 40),
        ("g", 1 << 30),
        ("m", 1 << 20),
        ("k", 1 << 10),
    ];
    match SHOWN.iter().find(|(_, size)| bytes / size * size == bytes) {
        Some((unit, size)) => format!("{}{unit}", bytes / size),
        None => format!("{bytes}b"),
    }
}
