//! Human durations as marketers write them in YAML: `3d`, `12h`, `1d12h`, `90m`, `30s`, `2w`.
//!
//! Months and years are refused on purpose: "1 month after delivery" is ambiguous (28 to 31
//! days), and a schedule that silently picks one is worse than an error that asks.

use std::time::Duration;

const UNITS: &[(&str, u64)] = &[
    ("w", 604_800),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// The longest duration read: 100 years (36,525 days). Every time computed from one (a due
/// time, an expiry, a window's start, a retention cutoff) then stays inside the calendar;
/// `99999999999w` passed once and the first plan or `run` panicked on the overflow.
pub const MAX: Duration = Duration::from_secs(36_525 * 86_400);

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not written as numbers and units.
    #[error("{0}")]
    Form(String),
    /// Over [`MAX`].
    #[error("{0}")]
    TooLong(String),
}

/// Parse `1d12h`-style text. The error says what is wrong.
pub fn parse(text: &str) -> Result<Duration, Error> {
    parse_form(text).map_err(Error::Form).and_then(|d| {
        if d > MAX {
            Err(Error::TooLong(format!(
                "`{}` is longer than 100 years: no schedule needs that; a typo?",
                text.trim()
            )))
        } else {
            Ok(d)
        }
    })
}

fn parse_form(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!(
                "`{s}` has a number without a unit (s, m, h, d or w)"
            ));
        }
        let Some((_, secs)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            let why = match unit {
                "mo" | "M" | "month" | "months" | "y" | "year" | "years" => {
                    "months and years have no fixed length; use days or weeks"
                }
                _ => "units are s, m, h, d and w",
            };
            return Err(format!("`{s}` has an unknown unit `{unit}`: {why}"));
        };
        total = n
            .checked_mul(*secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{s}` is too long"))?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs(total))
}

/// The shortest text [`parse`] reads back to the same duration (`90060s` → `1d1h1m`).
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS.iter().skip(1) {
        if secs >= *size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("3d", 259_200),
            ("1d12h", 129_600),
            ("90m", 5_400),
            ("30s", 30),
            ("2w", 1_209_600),
            ("0s", 0),
            ("36525d", 3_155_760_000),
        ];
        for (text, secs) in ok {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        let bad = [
            ("", "empty"),
            ("3", "without a unit"),
            ("3x", "unknown unit `x`"),
            ("1mo", "no fixed length"),
            ("d3", "expected a number"),
            ("3 d", "without a unit"),
            ("99999999999w", "longer than 100 years"),
            ("36526d", "longer than 100 years"),
            ("99999999999999999999999s", "number too large"),
        ];
        for (text, want) in bad {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for secs in [1, 59, 60, 3_600, 86_400, 90_061, 604_800] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d));
        }
        assert_eq!(format(Duration::from_secs(90_060)), "1d1h1m");
    }
}
