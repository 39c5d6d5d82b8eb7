//! `Money` (i64 nano-USD) and `Price` (nano-USD per million tokens) with the one cost formula.
//!
//! Rounding: a request's cost is the exact rational `Σ tokens × price / 1e6` rounded
//! **up** to the next nano-dollar, once per request, so we never under-charge and never
//! over-charge by a whole nano-dollar.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Nano-dollars per dollar.
pub const NANOS_PER_USD: i64 = 1_000_000_000;
/// The highest price any token kind may have: $10,000 per million tokens (100× the dearest
/// model sold today). With token counts bounded per request this keeps every record's cost
/// under 3·10^16 n$, so sums over millions of records stay inside `i64`.
pub const MAX_PRICE_NANOS_PER_MTOK: i64 = 10_000 * NANOS_PER_USD;
const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

/// An amount of US dollars in integer nano-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Parses a decimal USD string (`"12.5"`, `"0.000000001"`); more than 9 decimals is an error.
    pub fn parse_usd(text: &str) -> Result<Money, MoneyError> {
        parse_decimal_nanos(text).map(Money)
    }
}

impl fmt::Display for Money {
    /// Formats as USD with all nine decimals: `0.000123400`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl Money {
    /// The amount as `Display` writes it, on the stack: every answer carries its cost, and
    /// this costs a tenth of the formatting machinery.
    pub fn text(self) -> MoneyText {
        let mut buf = [0u8; MoneyText::LEN];
        let abs = self.0.unsigned_abs();
        let per = NANOS_PER_USD as u64;
        let (mut whole, mut frac) = (abs / per, abs % per);
        let mut at = MoneyText::LEN;
        let mut put = |byte: u8| {
            at -= 1;
            buf[at] = byte;
        };
        for _ in 0..9 {
            put(b'0' + (frac % 10) as u8);
            frac /= 10;
        }
        put(b'.');
        loop {
            put(b'0' + (whole % 10) as u8);
            whole /= 10;
            if whole == 0 {
                break;
            }
        }
        if self.0 < 0 {
            put(b'-');
        }
        MoneyText { buf, start: at }
    }
}

/// A formatted amount (`Money::text`): at most a sign, 11 whole digits, a point and 9
/// decimals.
pub struct MoneyText {
    buf: [u8; MoneyText::LEN],
    start: usize,
}

impl MoneyText {
    const LEN: usize = 24;

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or_default()
    }
}

/// A price in nano-USD per one million tokens, parsed exactly from a decimal string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price(i64);

impl Price {
    pub const fn from_nanos_per_mtok(nanos: i64) -> Self {
        Self(nanos)
    }

    pub const fn nanos_per_mtok(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Price, MoneyError> {
        let n = parse_decimal_nanos(text)?;
        if n < 0 {
            return Err(MoneyError::NegativePrice(text.to_owned()));
        }
        if n > MAX_PRICE_NANOS_PER_MTOK {
            return Err(MoneyError::PriceAboveCap(text.to_owned()));
        }
        Ok(Price(n))
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Other(serde::de::IgnoredAny),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => Price::parse(&t).map_err(serde::de::Error::custom),
            Raw::Int(i) => Price::parse(&i.to_string()).map_err(serde::de::Error::custom),
            Raw::Other(_) => Err(serde::de::Error::custom(
                "prices must be strings such as \"0.20\" (floats cannot hold money exactly)",
            )),
        }
    }
}

/// Why a decimal amount was refused; each names the text it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a decimal number")]
    NotDecimal(String),
    #[error("`{0}` has more than 9 decimals (nano-dollar precision)")]
    TooPrecise(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
    #[error("price `{0}` is negative")]
    NegativePrice(String),
    #[error("price `{0}` is above the cap of 10000 USD per million tokens")]
    PriceAboveCap(String),
}

fn parse_decimal_nanos(text: &str) -> Result<i64, MoneyError> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !valid(whole) || !valid(frac) {
        return Err(MoneyError::NotDecimal(text.to_owned()));
    }
    if frac.len() > 9 {
        return Err(MoneyError::TooPrecise(text.to_owned()));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| MoneyError::TooLarge(text.to_owned()))?
    };
    let mut frac_nanos: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_nanos += i64::from(b - b'0') * 10_i64.pow(8 - i as u32);
    }
    let nanos = whole
        .checked_mul(NANOS_PER_USD)
        .and_then(|w| w.checked_add(frac_nanos))
        .ok_or_else(|| MoneyError::TooLarge(text.to_owned()))?;
    Ok(if neg { -nanos } else { nanos })
}

/// The cost of one request: the sum of `tokens × price per 1M tokens` over its parts (one
/// part a kind of token), rounded up once to the next nano-dollar; `None` when it does not
/// fit in `i64` (never for bounded counts and prices, and never saturated into a record).
pub fn cost_of(parts: &[(u64, Price)]) -> Option<Money> {
    let mut numerator: i128 = 0;
    for &(tokens, price) in parts {
        numerator = numerator.checked_add(i128::from(tokens).checked_mul(i128::from(price.0))?)?;
    }
    let rounded_up = numerator.checked_add(TOKENS_PER_PRICE_UNIT - 1)? / TOKENS_PER_PRICE_UNIT;
    i64::try_from(rounded_up).ok().map(Money)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prices_exactly() {
        assert_eq!(Price::parse("0.20").unwrap().nanos_per_mtok(), 200_000_000);
        assert_eq!(Price::parse("15").unwrap().nanos_per_mtok(), 15_000_000_000);
        assert_eq!(Price::parse("0.000000001").unwrap().nanos_per_mtok(), 1);
        assert!(Price::parse("0.0000000001").is_err());
        assert!(Price::parse("-1").is_err());
        assert!(Price::parse("abc").is_err());
        assert!(Price::parse(".").is_err());
        assert!(Price::parse("10000").is_ok());
        assert!(Price::parse("10000.000000001").is_err());
    }

    #[test]
    fn a_cost_past_i64_is_none_never_saturated() {
        let top = Price(i64::MAX);
        assert_eq!(cost_of(&[(u64::MAX, top), (u64::MAX, top)]), None);
    }

    #[test]
    fn formats_usd_with_nine_decimals() {
        assert_eq!(Money::from_nanos(123_400).to_string(), "0.000123400");
        assert_eq!(Money::from_nanos(1_500_000_000).to_string(), "1.500000000");
        assert_eq!(Money::from_nanos(-5).to_string(), "-0.000000005");
        // The stack formatter agrees with the formatting machinery to the extremes.
        for n in [
            0,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            -1_000_000_001,
            i64::MAX,
            i64::MIN,
        ] {
            let abs = n.unsigned_abs();
            let sign = if n < 0 { "-" } else { "" };
            let per = NANOS_PER_USD as u64;
            let expected = format!("{sign}{}.{:09}", abs / per, abs % per);
            assert_eq!(Money::from_nanos(n).text().as_str(), expected);
        }
    }

    #[test]
    fn cost_rounds_up_once_per_request() {
        let p = Price::parse("0.20").unwrap();
        let q = Price::parse("0.30").unwrap();
        // 37 × 0.20 + 12 × 0.30 per 1M = (7.4 + 3.6) µ$ = 11 µ$ exactly.
        assert_eq!(cost_of(&[(37, p), (12, q)]).unwrap().nanos(), 11_000);
        // 1 token at $0.000001/Mtok is 1e-12 $, rounded up to one nano-dollar.
        let tiny = Price::parse("0.000001").unwrap();
        assert_eq!(cost_of(&[(1, tiny)]).unwrap().nanos(), 1);
        assert_eq!(cost_of(&[(0, p), (0, q)]), Some(Money::ZERO));
    }

    proptest! {
        #[test]
        fn cost_is_never_negative_and_never_under_charges(
            parts in proptest::collection::vec((0u64..10_000_000, 0i64..100_000_000_000), 0..7),
        ) {
            let priced: Vec<(u64, Price)> = parts.iter().map(|&(t, p)| (t, Price(p))).collect();
            let cost = cost_of(&priced).unwrap();
            prop_assert!(cost.nanos() >= 0);
            let exact: i128 = parts.iter().map(|&(t, p)| i128::from(t) * i128::from(p)).sum();
            let charged = i128::from(cost.nanos()) * TOKENS_PER_PRICE_UNIT;
            prop_assert!(charged >= exact, "under-charged");
            prop_assert!(charged - exact < TOKENS_PER_PRICE_UNIT, "over-charged by a whole nano-dollar");
        }

        #[test]
        fn price_text_round_trips(n in 0i64..=MAX_PRICE_NANOS_PER_MTOK) {
            let text = Money::from_nanos(n).to_string();
            prop_assert_eq!(Price::parse(&text).unwrap().nanos_per_mtok(), n);
        }
    }
}
