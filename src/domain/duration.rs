//! Human durations as written in the config: `30s`, `15m`, `12h`, `30d`.

use std::fmt;

/// A non-negative span of whole seconds, parsed from `<number><unit>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(u64);

impl Span {
    pub const ZERO: Span = Span(0);

    pub const fn from_secs(secs: u64) -> Self {
        Span(secs)
    }

    pub fn as_secs(self) -> u64 {
        self.0
    }

    pub fn to_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.0).unwrap_or(i64::MAX / 1000))
    }

    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }

    /// Parses `30s`, `15m`, `12h` or `30d`. Anything else, including a bare number, is an
    /// error: a unit-less `30` is ambiguous and typos must not become zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some(unit) = text.chars().last() else {
            return Err("empty duration (expected e.g. 30s, 15m, 12h, 30d)".into());
        };
        let number = &text[..text.len() - unit.len_utf8()];
        let factor = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "invalid duration `{text}` (expected e.g. 30s, 15m, 12h, 30d)"
                ));
            }
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "invalid duration `{text}` (expected e.g. 30s, 15m, 12h, 30d)"
            ));
        }
        let value: u64 = number
            .parse()
            .map_err(|_| format!("duration `{text}` is too large"))?;
        // Ten years is far beyond any sensible offboarding delay; larger values are typos.
        const MAX_SECS: u64 = 10 * 366 * 86_400;
        match value.checked_mul(factor) {
            Some(secs) if secs <= MAX_SECS => Ok(Span(secs)),
            _ => Err(format!("duration `{text}` is too large (at most 3660d)")),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(Span::parse("30s").unwrap().as_secs(), 30);
        assert_eq!(Span::parse("15m").unwrap().as_secs(), 900);
        assert_eq!(Span::parse("12h").unwrap().as_secs(), 43_200);
        assert_eq!(Span::parse("30d").unwrap().as_secs(), 2_592_000);
        assert_eq!(Span::parse("0s").unwrap(), Span::ZERO);
    }

    #[test]
    fn rejects_malformed_and_hostile_input() {
        for bad in [
            "",
            "30",
            "s",
            "-5s",
            "1.5h",
            "30 d",
            "30w",
            "１s",
            "99999999999999999999d",
            "4000d",
            "+1s",
        ] {
            assert!(Span::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(Span::from_secs(2_592_000).to_string(), "30d");
        assert_eq!(Span::from_secs(90).to_string(), "90s");
        assert_eq!(Span::from_secs(0).to_string(), "0s");
    }
}
