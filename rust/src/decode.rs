//! Decoding message batches (JSON transactions) into columns, record by record.
//!
//! The transaction schema (one JSON object per message; extra fields are ignored):
//!
//! | field        | JSON type          | column                                              |
//! |--------------|--------------------|-----------------------------------------------------|
//! | `txn_id`     | integer >= 0       | `txn_id` (i64)                                      |
//! | `card_id`    | integer >= 0       | `card_id` (i64)                                     |
//! | `customer_id`| integer >= 0       | `customer_id` (i64)                                 |
//! | `terminal_id`| integer >= 0       | `terminal_id` (i64)                                 |
//! | `amount`     | number, finite, >= 0, <= `max_amount` | `amount` (f64)                   |
//! | `currency`   | 3 ASCII letters    | `currency` (i64: the letters packed, see [`pack_code`]) |
//! | `country`    | 2 ASCII letters    | `country` (i64: packed, e.g. "DE" = 0x4445)         |
//! | `merchant`   | string             | `merchant` (i64: FNV-1a 64 hash of the UTF-8 bytes) |
//! | `category`   | optional integer in `[0, 9999]` | `category` (i64: the merchant category code, ISO 18245; -1 when absent) |
//! | `event_time` | integer, epoch ms within `[min_time, max_time]` | `event_time` (i64)     |
//!
//! A record that is too large, not JSON, not valid UTF-8, missing a field, of a wrong type or
//! out of range is not decoded: it is reported with its index in the batch and a reason, for the
//! dead-letter output. Good records keep their order. Every record is either decoded or
//! reported: `rows + errors = messages`.

use serde::Deserialize;

use crate::time::{MAX_EVENT_TIME, MIN_EVENT_TIME};

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    /// Records larger than this many bytes are rejected unparsed.
    pub max_record_bytes: usize,
    /// Earliest accepted event time (ms).
    pub min_time: i64,
    /// Latest accepted event time (ms).
    pub max_time: i64,
    /// Largest accepted amount.
    pub max_amount: f64,
}

impl Default for DecodeLimits {
    /// 1 MiB records, event times in 2000-01-01 .. 2100-01-01, amounts up to 10^9.
    fn default() -> Self {
        DecodeLimits {
            max_record_bytes: 1 << 20,
            min_time: 946_684_800_000,
            max_time: 4_102_444_800_000,
            max_amount: 1e9,
        }
    }
}

/// Decoded transactions as columns, plus the rejected records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transactions {
    /// Index in the input of each decoded row.
    pub source_index: Vec<u32>,
    /// `txn_id` column.
    pub txn_id: Vec<i64>,
    /// `card_id` column.
    pub card_id: Vec<i64>,
    /// `customer_id` column.
    pub customer_id: Vec<i64>,
    /// `terminal_id` column.
    pub terminal_id: Vec<i64>,
    /// `amount` column.
    pub amount: Vec<f64>,
    /// `currency` column (packed letters).
    pub currency: Vec<i64>,
    /// `country` column (packed letters).
    pub country: Vec<i64>,
    /// `merchant` column (hash).
    pub merchant: Vec<i64>,
    /// `category` column: the merchant category code, or [`NO_CATEGORY`].
    pub category: Vec<i64>,
    /// `event_time` column.
    pub event_time: Vec<i64>,
    /// (input index, reason) of every rejected record.
    pub errors: Vec<(u32, String)>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    txn_id: Option<i64>,
    card_id: Option<i64>,
    customer_id: Option<i64>,
    terminal_id: Option<i64>,
    amount: Option<f64>,
    #[serde(borrow)]
    currency: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    country: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    merchant: Option<std::borrow::Cow<'a, str>>,
    category: Option<i64>,
    event_time: Option<i64>,
}

/// The `category` of a record without one (an optional field: records written before it
/// existed still decode).
pub const NO_CATEGORY: i64 = -1;

/// Largest merchant category code (ISO 18245 codes have four digits).
pub const MAX_CATEGORY: i64 = 9_999;

/// Packs a short ASCII code ("DE", "EUR") into an i64, one byte per letter; `None` unless it
/// has exactly `len` ASCII letters. Uppercase and lowercase pack the same.
///
/// # Examples
/// ```
/// assert_eq!(fraudstream::decode::pack_code("DE", 2), Some(0x4445));
/// assert_eq!(fraudstream::decode::pack_code("de", 2), Some(0x4445));
/// assert_eq!(fraudstream::decode::pack_code("D1", 2), None);
/// ```
#[must_use]
pub fn pack_code(s: &str, len: usize) -> Option<i64> {
    let bytes = s.as_bytes();
    if bytes.len() != len || !bytes.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    Some(bytes.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(b.to_ascii_uppercase())))
}

/// The letters of a packed code (inverse of [`pack_code`]).
#[must_use]
pub fn unpack_code(code: i64) -> String {
    let mut out = Vec::new();
    let mut c = code;
    while c > 0 {
        out.push(u8::try_from(c & 0xff).unwrap_or(b'?'));
        c >>= 8;
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// FNV-1a 64-bit hash (stable across runs and machines), as i64.
#[must_use]
pub fn fnv1a(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// A string value as a reason shows it: quoted, at most 32 characters (a record's field can be
/// a megabyte long; its reason goes into a dead-letter header).
fn shown(s: &str) -> String {
    match s.char_indices().nth(32) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
    }
}

/// Longest reason, in characters: serde's messages quote the offending value whole
/// (`invalid type: string "..."`), which can be as long as the record.
pub const MAX_REASON_CHARS: usize = 240;

fn capped(reason: String) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        None => reason,
        Some((cut, _)) => format!("{}...", &reason[..cut]),
    }
}

fn check(raw: Raw<'_>, limits: &DecodeLimits) -> Result<[i64; 9], String> {
    fn need<T>(v: Option<T>, name: &str) -> Result<T, String> {
        v.ok_or_else(|| format!("missing field '{name}'"))
    }
    let id = |v: Option<i64>, name: &str| -> Result<i64, String> {
        let x = need(v, name)?;
        if x < 0 {
            return Err(format!("field '{name}' must be >= 0, got {x}"));
        }
        Ok(x)
    };
    let txn = id(raw.txn_id, "txn_id")?;
    let card = id(raw.card_id, "card_id")?;
    let customer = id(raw.customer_id, "customer_id")?;
    let terminal = id(raw.terminal_id, "terminal_id")?;
    let currency = need(raw.currency, "currency")?;
    let currency = pack_code(&currency, 3)
        .ok_or_else(|| format!("field 'currency' must be 3 letters, got {}", shown(&currency)))?;
    let country = need(raw.country, "country")?;
    let country = pack_code(&country, 2)
        .ok_or_else(|| format!("field 'country' must be 2 letters, got {}", shown(&country)))?;
    let merchant = fnv1a(need(raw.merchant, "merchant")?.as_bytes());
    let category = match raw.category {
        None => NO_CATEGORY,
        Some(c) if (0..=MAX_CATEGORY).contains(&c) => c,
        Some(c) => return Err(format!("field 'category' must be in [0, {MAX_CATEGORY}], got {c}")),
    };
    let t = need(raw.event_time, "event_time")?;
    if t < limits.min_time.max(MIN_EVENT_TIME) || t > limits.max_time.min(MAX_EVENT_TIME) {
        return Err(format!(
            "field 'event_time' {t} is outside the accepted range [{}, {}]",
            limits.min_time, limits.max_time
        ));
    }
    Ok([txn, card, customer, terminal, currency, country, merchant, category, t])
}

/// Decodes a batch of JSON messages. Never fails as a whole: bad records are listed in
/// [`Transactions::errors`].
#[must_use]
pub fn decode_transactions<'m>(
    messages: impl IntoIterator<Item = &'m [u8]>,
    limits: &DecodeLimits,
) -> Transactions {
    let mut out = Transactions::default();
    for (i, msg) in messages.into_iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        if msg.len() > limits.max_record_bytes {
            out.errors.push((
                index,
                format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    msg.len(),
                    limits.max_record_bytes
                ),
            ));
            continue;
        }
        let decoded = serde_json::from_slice::<Raw<'_>>(msg)
            .map_err(|e| format!("malformed JSON: {e}"))
            .and_then(|raw| {
                let amount = raw.amount;
                let fields = check(raw, limits)?;
                let amount = amount.ok_or("missing field 'amount'")?;
                if !(0.0..=limits.max_amount).contains(&amount) {
                    return Err(format!(
                        "field 'amount' must be in [0, {}], got {amount}",
                        limits.max_amount
                    ));
                }
                Ok((fields, amount))
            });
        match decoded {
            Ok(([txn, card, customer, terminal, currency, country, merchant, category, t], amount)) => {
                out.source_index.push(index);
                out.txn_id.push(txn);
                out.card_id.push(card);
                out.customer_id.push(customer);
                out.terminal_id.push(terminal);
                out.amount.push(amount);
                out.currency.push(currency);
                out.country.push(country);
                out.merchant.push(merchant);
                out.category.push(category);
                out.event_time.push(t);
            }
            Err(reason) => out.errors.push((index, capped(reason))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"txn_id": 1, "card_id": 42, "customer_id": 7, "terminal_id": 9, "amount": 12.5,
        "currency": "EUR", "country": "DE", "merchant": "Café Zürich", "event_time": 1700000000000,
        "extra": [1, 2]}"#;

    fn decode(msgs: &[&[u8]]) -> Transactions {
        decode_transactions(msgs.iter().copied(), &DecodeLimits::default())
    }

    #[test]
    fn decodes_a_good_record() {
        let t = decode(&[GOOD.as_bytes()]);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        assert_eq!(
            (t.txn_id[0], t.card_id[0], t.amount[0], t.event_time[0]),
            (1, 42, 12.5, 1_700_000_000_000)
        );
        assert_eq!(unpack_code(t.country[0]), "DE");
        assert_eq!(unpack_code(t.currency[0]), "EUR");
        assert_eq!(t.merchant[0], fnv1a("Café Zürich".as_bytes()));
        assert_eq!(t.category[0], NO_CATEGORY, "the category is optional");
        let with_category = GOOD.replace("\"extra\"", "\"category\": 5411, \"extra\"");
        assert_eq!(decode(&[with_category.as_bytes()]).category, vec![5411]);
    }

    fn reason_of(msg: &str) -> String {
        let t = decode(&[msg.as_bytes()]);
        assert_eq!(t.txn_id.len(), 0, "{msg} should be rejected");
        t.errors[0].1.clone()
    }

    #[test]
    fn every_bad_record_is_rejected_with_a_reason() {
        let with = |field: &str, value: &str| {
            let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
            v[field] = serde_json::from_str(value).unwrap();
            v.to_string()
        };
        let without = |field: &str| {
            let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
            v.as_object_mut().unwrap().remove(field);
            v.to_string()
        };
        assert!(reason_of("{not json").contains("malformed JSON"));
        assert!(reason_of(&GOOD[..40]).contains("malformed JSON"));
        assert!(reason_of(&without("card_id")).contains("missing field 'card_id'"));
        assert!(reason_of(&without("amount")).contains("missing field 'amount'"));
        assert!(reason_of(&with("card_id", "\"42\"")).contains("invalid type"));
        assert!(reason_of(&with("card_id", "4.5")).contains("invalid type"));
        assert!(reason_of(&with("amount", "-1")).contains("amount"));
        assert!(reason_of(&with("amount", "1e300")).contains("amount"));
        assert!(reason_of(&with("country", "\"DEU\"")).contains("country"));
        assert!(reason_of(&with("event_time", "0")).contains("event_time"));
        assert!(reason_of(&with("event_time", "32503680000000")).contains("event_time"), "year 3000");
        assert!(reason_of(r#"{"amount": NaN}"#).contains("malformed JSON"));
        assert!(reason_of(&with("category", "10000")).contains("field 'category' must be in [0, 9999]"));
        assert!(reason_of(&with("category", "-1")).contains("category"));
        assert!(reason_of(&with("category", "\"5411\"")).contains("invalid type"));
    }

    #[test]
    fn invalid_utf8_and_oversized_records() {
        let mut bad = GOOD.as_bytes().to_vec();
        let at = GOOD.find("Caf").unwrap() + 3;
        bad[at] = 0xC3; // 'é' cut in half
        bad[at + 1] = b'"';
        let t = decode(&[&bad]);
        assert_eq!(t.errors.len(), 1);
        let limits = DecodeLimits { max_record_bytes: 10, ..DecodeLimits::default() };
        let t = decode_transactions([GOOD.as_bytes()], &limits);
        assert!(t.errors[0].1.contains("exceeds the limit"));
    }

    #[test]
    fn reasons_stay_short_whatever_the_value() {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v["country"] = serde_json::Value::String("x".repeat(1_000_000));
        let reason = reason_of(&v.to_string());
        assert!(reason.contains("country") && reason.contains("1000000 bytes"), "{}", &reason[..80]);
        assert!(reason.len() < 200, "{} bytes", reason.len());
        v["country"] = serde_json::Value::String("DE".into());
        v["txn_id"] = serde_json::Value::String("9".repeat(100_000));
        let reason = reason_of(&v.to_string());
        assert!(reason.contains("invalid type") && reason.len() < 4 * MAX_REASON_CHARS, "{reason}");
    }

    #[test]
    fn counts_reconcile_and_order_is_kept() {
        let msgs: Vec<&[u8]> = vec![GOOD.as_bytes(), b"[]", GOOD.as_bytes(), b"", GOOD.as_bytes()];
        let t = decode(&msgs);
        assert_eq!(t.source_index, vec![0, 2, 4]);
        assert_eq!(t.errors.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(t.txn_id.len() + t.errors.len(), msgs.len());
    }
}
