//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`): parsing into an
//! exact, comparable amount, as apimachinery's `resource.ParseQuantity` reads them.
//!
//! A [`Quantity`] holds its amount in billionths (nano units), the finest precision
//! Kubernetes keeps; finer amounts round up, away from zero, as upstream does. Amounts
//! beyond ±1.7·10²⁹ saturate, which no real request or capacity reaches.

use std::fmt;
use std::str::FromStr;

/// The syntax every quantity must have, in upstream's words.
pub const QUANTITY_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// Why a string is not a quantity; the texts are apimachinery's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not have the shape of a quantity at all.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// The suffix is not one of `Ki`…`Ei`, `n`…`E` or an exponent.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// The number before the suffix cannot be read.
    #[error("unable to parse quantity's numeric part")]
    Numeric,
}

/// A parsed quantity: an amount in nano units, ordered by amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// Parses `s`, as `resource.ParseQuantity` does.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let parts = split(s)?;
        let (exp10, exp2) = suffix_exponents(parts.suffix)?;
        if parts.whole.is_empty() && parts.fraction.is_empty() {
            return Err(QuantityError::Numeric);
        }
        let digits = format!("{}{}", parts.whole, parts.fraction);
        let mantissa = digits_value(&digits);
        let scale = 9 + exp10 - parts.fraction.len() as i64;
        let magnitude = scaled(mantissa, scale, exp2);
        let nanos = if parts.negative {
            -magnitude
        } else {
            magnitude
        };
        Ok(Quantity { nanos })
    }

    /// A quantity of whole units.
    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            nanos: i128::from(units) * 1_000_000_000,
        }
    }

    /// A quantity of thousandths (`250m` is `from_millis(250)`).
    pub fn from_millis(millis: i64) -> Quantity {
        Quantity {
            nanos: i128::from(millis) * 1_000_000,
        }
    }

    /// The amount in nano units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The amount in thousandths, rounded up (upstream's `MilliValue`).
    pub fn millis(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// The amount in whole units, rounded up (upstream's `Value`).
    pub fn units(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000_000)
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// Millis when fractional (`250m`), whole units otherwise; not upstream's canonical
    /// form, which keeps the suffix the user wrote.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % 1_000_000_000 == 0 {
            write!(f, "{}", self.nanos / 1_000_000_000)
        } else {
            write!(f, "{}m", self.millis())
        }
    }
}

/// The pieces of a quantity string.
struct Parts<'a> {
    negative: bool,
    whole: &'a str,
    fraction: &'a str,
    suffix: &'a str,
}

/// Splits `s` into sign, digits and suffix, checking the overall shape.
fn split(s: &str) -> Result<Parts<'_>, QuantityError> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        Some(_) => false,
        None => return Err(QuantityError::Format),
    };
    let whole_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let whole = &s[whole_start..pos];
    let mut fraction = "";
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        fraction = &s[start..pos];
    }
    if pos == whole_start {
        return Err(QuantityError::Format);
    }
    let suffix = &s[pos..];
    let letters = suffix
        .bytes()
        .take_while(|b| b"eEinumkKMGTP".contains(b))
        .count();
    let rest = suffix[letters..].trim_start_matches(['+', '-']);
    let signs = suffix.len() - letters - rest.len();
    if signs > 1 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Format);
    }
    Ok(Parts {
        negative,
        whole,
        fraction,
        suffix,
    })
}

/// The powers of ten and of two a suffix stands for.
fn suffix_exponents(suffix: &str) -> Result<(i64, u32), QuantityError> {
    let decimal = match suffix {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(exp) = decimal {
        return Ok((exp, 0));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(exp) = binary {
        return Ok((0, exp));
    }
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .ok_or(QuantityError::Suffix)?;
    let digits = exponent.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits.len() > 4 {
        return Err(QuantityError::Suffix);
    }
    exponent
        .parse::<i64>()
        .map(|e| (e, 0))
        .map_err(|_| QuantityError::Suffix)
}

/// The value of a digit string, saturating far beyond any real quantity.
fn digits_value(digits: &str) -> i128 {
    digits.bytes().fold(0i128, |acc, b| {
        acc.saturating_mul(10).saturating_add(i128::from(b - b'0'))
    })
}

/// `mantissa × 10^scale × 2^exp2`, rounded up when `scale` is negative.
fn scaled(mantissa: i128, scale: i64, exp2: u32) -> i128 {
    let mut value = mantissa.saturating_mul(1i128 << exp2);
    if scale >= 0 {
        for _ in 0..scale.min(40) {
            value = value.saturating_mul(10);
        }
        value
    } else {
        let mut divisor: i128 = 1;
        for _ in 0..(-scale).min(38) {
            divisor *= 10;
        }
        if -scale > 38 {
            return i128::from(value > 0);
        }
        ceil_div(value, divisor)
    }
}

/// `n / d` rounded away from zero (`d` > 0).
fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(s: &str) -> i128 {
        Quantity::parse(s).map(|q| q.nanos()).unwrap_or(i128::MIN)
    }

    #[test]
    fn decimal_and_binary_suffixes_scale_the_number() {
        assert_eq!(nanos("100m"), 100_000_000);
        assert_eq!(nanos("1.5"), 1_500_000_000);
        assert_eq!(nanos("128Mi"), 128 * (1 << 20) * 1_000_000_000);
        assert_eq!(nanos("1G"), 1_000_000_000 * 1_000_000_000);
        assert_eq!(nanos("1Ki"), 1024 * 1_000_000_000);
        assert_eq!(nanos("1.5Gi"), 3 * (1 << 29) * 1_000_000_000);
        assert_eq!(nanos("250n"), 250);
        assert_eq!(nanos("-2k"), -2_000 * 1_000_000_000);
    }

    #[test]
    fn exponents_are_read_as_powers_of_ten() {
        assert_eq!(nanos("2e3"), 2_000 * 1_000_000_000);
        assert_eq!(nanos("1E-3"), 1_000_000);
        assert_eq!(nanos("5e+2"), 500 * 1_000_000_000);
    }

    #[test]
    fn amounts_finer_than_nano_round_up() {
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1e-12"), 1);
        assert_eq!(Quantity::parse("1.0001m").map(|q| q.millis()), Ok(2));
    }

    #[test]
    fn quantities_compare_by_amount_whatever_the_suffix() {
        let q = |s: &str| Quantity::parse(s).unwrap_or_default();
        assert!(q("500m") < q("1"));
        assert_eq!(q("1000m"), q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1024Mi"), q("1Gi"));
        assert_eq!(q("0.5"), Quantity::from_millis(500));
        assert_eq!(q("3"), Quantity::from_units(3));
    }

    #[test]
    fn bad_syntax_gets_upstreams_messages() {
        for bad in ["", "abc", "1.5.5", "1Gb", "--1", "1e", "1x", "1 Gi", "Mi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad} should not parse");
        }
        assert_eq!(
            Quantity::parse("1x").map_err(|e| e.to_string()),
            Err(format!(
                "quantities must match the regular expression '{QUANTITY_REGEX}'"
            ))
        );
        assert_eq!(Quantity::parse("1Gb"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1kK"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("."), Err(QuantityError::Numeric));
    }

    #[test]
    fn display_shows_units_or_millis() {
        let q = |s: &str| Quantity::parse(s).unwrap_or_default().to_string();
        assert_eq!(q("500m"), "500m");
        assert_eq!(q("2"), "2");
    }
}
