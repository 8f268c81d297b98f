//! PostgreSQL column types as Debezium's PostgreSQL connector gives them in Kafka Connect
//! (its defaults: `decimal.handling.mode=precise`, `time.precision.mode=adaptive`,
//! `interval.handling.mode=numeric`, `binary.handling.mode=bytes`), and values read through
//! the SQL capability (`wit/ROWS.md`) turned into their Connect JSON.

use std::io::Write as _;

use serde_json::{Value as J, json};
use weir_sdk::sql::ValueRef;

/// How `numeric` columns are given (`decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decimals {
    /// Connect's `Decimal` (bytes of the unscaled value), or Debezium's
    /// `VariableScaleDecimal` when the column has no fixed scale.
    Precise,
    Double,
    String,
}

/// How `time`, `timestamp` and `date` columns are given (`time.precision.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePrecision {
    /// Milliseconds up to precision 3, microseconds above (Debezium's `io.debezium.time.*`).
    Adaptive,
    /// As adaptive, but `time` always in microseconds.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's own `Date`, `Time` and `Timestamp` (milliseconds).
    Connect,
}

/// How `bytea` is given (`binary.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// Connect bytes (base64 in JSON).
    Bytes,
    /// A string: standard base64.
    Base64,
    /// A string: URL-safe base64.
    Base64UrlSafe,
    /// A string: lower-case hex.
    Hex,
}

/// How `interval` is given (`interval.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intervals {
    /// Microseconds (`io.debezium.time.MicroDuration`, a month being 30.4375 days).
    Numeric,
    /// ISO 8601 with every component (`io.debezium.time.Interval`: `P1Y2M3DT4H5M6.78S`).
    String,
}

/// The connector's value modes; the default is Debezium's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub decimals: Decimals,
    pub time: TimePrecision,
    pub binary: Binary,
    pub interval: Intervals,
}

impl Default for Modes {
    fn default() -> Modes {
        Modes {
            decimals: Decimals::Precise,
            time: TimePrecision::Adaptive,
            binary: Binary::Bytes,
            interval: Intervals::Numeric,
        }
    }
}

/// Bytes as `binary.handling.mode` gives them in JSON (base64 text for Connect bytes too).
pub fn binary_text(b: &[u8], mode: Binary) -> String {
    match mode {
        Binary::Bytes | Binary::Base64 => crate::envelope::base64(b),
        Binary::Base64UrlSafe => crate::envelope::base64(b)
            .replace('+', "-")
            .replace('/', "_"),
        Binary::Hex => {
            const H: &[u8; 16] = b"0123456789abcdef";
            let mut out = String::with_capacity(b.len() * 2);
            for &c in b {
                out.push(H[usize::from(c >> 4)] as char);
                out.push(H[usize::from(c & 15)] as char);
            }
            out
        }
    }
}

/// Types whose values are strings in Debezium's records, written as the text read.
fn is_text(name: &str) -> bool {
    matches!(
        name,
        "text"
            | "varchar"
            | "bpchar"
            | "name"
            | "char"
            | "citext"
            | "xml"
            | "json"
            | "jsonb"
            | "uuid"
            | "inet"
            | "cidr"
    )
}

/// What Debezium writes for a value the log left out (unchanged TOAST).
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// A column's type as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    /// `pg_type.typname` of the type (of the base type, for a domain): `int4`, `_int4`,
    /// `numeric`, an enum's name.
    pub name: String,
    /// `atttypmod`: -1, or the precision and scale, or a time precision.
    pub typmod: i32,
    /// An enum's labels, in order.
    pub labels: Option<String>,
    /// An array's element type name.
    pub elem: Option<String>,
}

impl PgType {
    /// `numeric(p, s)`'s precision and scale.
    fn numeric_ps(&self) -> Option<(i32, i32)> {
        (self.typmod >= 4).then(|| {
            let m = self.typmod - 4;
            (m >> 16 & 0xffff, m & 0xffff)
        })
    }

    /// A time type's fractional digits (6 when unconstrained).
    fn precision(&self) -> i32 {
        if self.typmod < 0 { 6 } else { self.typmod }
    }

    /// Whether a query can read the column as it is (else it is selected as `::text`).
    pub fn readable(&self) -> bool {
        let base = |n: &str| {
            is_text(n)
                || matches!(
                    n,
                    "bool"
                        | "int2"
                        | "int4"
                        | "int8"
                        | "oid"
                        | "float4"
                        | "float8"
                        | "numeric"
                        | "bytea"
                        | "date"
                        | "time"
                        | "timestamp"
                        | "timestamptz"
                        | "timetz"
                        | "interval"
                )
        };
        if self.labels.is_some() {
            return true;
        }
        match &self.elem {
            Some(e) => base(e),
            None => base(&self.name),
        }
    }

    /// The Connect schema of a column of this type (without `field` and `optional`).
    pub fn schema(&self, m: Modes) -> J {
        if let Some(labels) = &self.labels {
            return json!({"type": "string", "name": "io.debezium.data.Enum", "version": 1,
                "parameters": {"allowed": labels}});
        }
        if let Some(elem) = &self.elem {
            let e = PgType {
                name: elem.clone(),
                typmod: -1,
                labels: None,
                elem: None,
            };
            let mut items = e.schema(m);
            items["optional"] = json!(true);
            return json!({"type": "array", "items": items});
        }
        match self.name.as_str() {
            "bool" => json!({"type": "boolean"}),
            "int2" => json!({"type": "int16"}),
            "int4" => json!({"type": "int32"}),
            "int8" | "oid" => json!({"type": "int64"}),
            "float4" => json!({"type": "float"}),
            "float8" => json!({"type": "double"}),
            "numeric" => match (m.decimals, self.numeric_ps()) {
                (Decimals::Double, _) => json!({"type": "double"}),
                (Decimals::String, _) => json!({"type": "string"}),
                (Decimals::Precise, Some((p, s))) => json!({"type": "bytes",
                    "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                    "parameters": {"scale": s.to_string(), "connect.decimal.precision": p.to_string()}}),
                (Decimals::Precise, None) => json!({"type": "struct",
                "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
                "doc": "Variable scaled decimal",
                "fields": [
                    {"field": "scale", "type": "int32", "optional": false},
                    {"field": "value", "type": "bytes", "optional": false}
                ]}),
            },
            "json" | "jsonb" => {
                json!({"type": "string", "name": "io.debezium.data.Json", "version": 1})
            }
            "uuid" => json!({"type": "string", "name": "io.debezium.data.Uuid", "version": 1}),
            "xml" => json!({"type": "string", "name": "io.debezium.data.Xml", "version": 1}),
            "bytea" if m.binary == Binary::Bytes => json!({"type": "bytes"}),
            "bytea" => json!({"type": "string"}),
            "date" if m.time == TimePrecision::Connect => {
                json!({"type": "int32", "name": "org.apache.kafka.connect.data.Date", "version": 1})
            }
            "date" => json!({"type": "int32", "name": "io.debezium.time.Date", "version": 1}),
            "time" if m.time == TimePrecision::Connect => {
                json!({"type": "int32", "name": "org.apache.kafka.connect.data.Time", "version": 1})
            }
            "time" if self.precision() <= 3 && m.time == TimePrecision::Adaptive => {
                json!({"type": "int32", "name": "io.debezium.time.Time", "version": 1})
            }
            "time" => json!({"type": "int64", "name": "io.debezium.time.MicroTime", "version": 1}),
            "timestamp" if m.time == TimePrecision::Connect => {
                json!({"type": "int64", "name": "org.apache.kafka.connect.data.Timestamp", "version": 1})
            }
            "timestamp" if self.precision() <= 3 => {
                json!({"type": "int64", "name": "io.debezium.time.Timestamp", "version": 1})
            }
            "timestamp" => {
                json!({"type": "int64", "name": "io.debezium.time.MicroTimestamp", "version": 1})
            }
            "timestamptz" => {
                json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1})
            }
            "timetz" => {
                json!({"type": "string", "name": "io.debezium.time.ZonedTime", "version": 1})
            }
            "interval" if m.interval == Intervals::String => {
                json!({"type": "string", "name": "io.debezium.time.Interval", "version": 1})
            }
            "interval" => {
                json!({"type": "int64", "name": "io.debezium.time.MicroDuration", "version": 1})
            }
            _ => json!({"type": "string"}),
        }
    }

    /// A value of this type as Connect JSON; `None` (the log left it out, unchanged) gives
    /// Debezium's placeholder where the type can hold it, else null.
    pub fn value(&self, v: Option<ValueRef<'_>>, m: Modes) -> J {
        let Some(v) = v else {
            return match self.schema(m)["type"].as_str() {
                Some("string") => json!(UNAVAILABLE),
                Some("bytes") => json!(crate::envelope::base64(UNAVAILABLE.as_bytes())),
                _ => J::Null,
            };
        };
        if v.is_null() {
            return J::Null;
        }
        if self.labels.is_some() {
            return text_of(v);
        }
        if let Some(elem) = &self.elem {
            let e = PgType {
                name: elem.clone(),
                typmod: -1,
                labels: None,
                elem: None,
            };
            let ValueRef::Text(s) = v else {
                return J::Null;
            };
            let items: Vec<J> = serde_json::from_str(s).unwrap_or_default();
            return J::Array(
                items
                    .iter()
                    .map(|x| {
                        let r = match x {
                            J::Null => ValueRef::Null,
                            J::Bool(b) => ValueRef::Bool(*b),
                            J::Number(n) => match n.as_i64() {
                                Some(i) => ValueRef::Int(i),
                                None => ValueRef::Float(n.as_f64().unwrap_or(0.0)),
                            },
                            J::String(s) => ValueRef::Text(s),
                            _ => ValueRef::Null,
                        };
                        // Elements come as JSON: bytes as \x hex strings.
                        match (e.name.as_str(), r) {
                            ("bytea", ValueRef::Text(s)) => match unhex(s) {
                                Some(b) => json!(binary_text(&b, m.binary)),
                                None => J::Null,
                            },
                            _ => e.value(Some(r), m),
                        }
                    })
                    .collect(),
            );
        }
        match (self.name.as_str(), v) {
            (_, ValueRef::Bool(b)) => json!(b),
            ("numeric", ValueRef::Text(s)) => numeric(s, self.numeric_ps(), m.decimals),
            (_, ValueRef::Int(i)) => json!(i),
            (_, ValueRef::Float(f)) if f.is_finite() => json!(f),
            (_, ValueRef::Float(_)) => J::Null,
            (_, ValueRef::Bytes(b)) => json!(binary_text(b, m.binary)),
            ("date", ValueRef::Text(s)) => date(s).map_or(J::Null, |d| json!(d)),
            ("time", ValueRef::Text(s)) => {
                let ms = match m.time {
                    TimePrecision::Connect => true,
                    TimePrecision::Adaptive => self.precision() <= 3,
                    TimePrecision::AdaptiveTimeMicroseconds => false,
                };
                match micros_of_day(s) {
                    Some(us) if ms => json!(us / 1000),
                    Some(us) => json!(us),
                    None => J::Null,
                }
            }
            ("timestamp", ValueRef::Text(s)) => match timestamp_us(s) {
                Some(us) if self.precision() <= 3 || m.time == TimePrecision::Connect => {
                    json!(us.div_euclid(1000))
                }
                Some(us) => json!(us),
                None => J::Null,
            },
            ("timestamptz", ValueRef::Text(s)) => json!(trim_fraction(s)),
            ("timetz", ValueRef::Text(s)) => timetz_utc(s).map_or_else(|| json!(s), |t| json!(t)),
            ("interval", ValueRef::Text(s)) if m.interval == Intervals::String => {
                interval_iso(s).map_or(J::Null, |d| json!(d))
            }
            ("interval", ValueRef::Text(s)) => interval_us(s).map_or(J::Null, |d| json!(d)),
            (_, v) => text_of(v),
        }
    }
}

impl PgType {
    /// [`PgType::value`] written straight into `out` as JSON: the common cases (nulls,
    /// numbers, booleans, text) without building a value; the others through it.
    pub fn write_value(&self, v: Option<ValueRef<'_>>, m: Modes, out: &mut Vec<u8>) {
        let plain = self.labels.is_none() && self.elem.is_none();
        match v {
            Some(ValueRef::Null) => out.extend_from_slice(b"null"),
            Some(ValueRef::Bool(b)) if plain => {
                out.extend_from_slice(if b { b"true" } else { b"false" })
            }
            Some(ValueRef::Int(i)) if plain && self.name != "numeric" => {
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{i}");
            }
            Some(ValueRef::Float(f)) if plain && f.is_finite() => {
                let _ = serde_json::to_writer(&mut *out, &f);
            }
            Some(ValueRef::Text(s)) if plain && self.name == "timestamptz" => {
                let _ = serde_json::to_writer(&mut *out, &trim_fraction(s));
            }
            Some(ValueRef::Text(s)) if self.labels.is_some() || (plain && is_text(&self.name)) => {
                // Writing into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, s);
            }
            _ => {
                let _ = serde_json::to_writer(&mut *out, &self.value(v, m));
            }
        }
    }
}

fn text_of(v: ValueRef<'_>) -> J {
    match v {
        ValueRef::Text(s) => json!(s),
        ValueRef::Int(i) => json!(i.to_string()),
        ValueRef::Float(f) => json!(f.to_string()),
        ValueRef::Bool(b) => json!(b.to_string()),
        ValueRef::Bytes(b) => json!(crate::envelope::base64(b)),
        ValueRef::Null => J::Null,
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let h = s.strip_prefix("\\x")?;
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A decimal string's unscaled value at `scale`, as big-endian two's complement bytes
/// (the shortest form, as Java's `BigInteger.toByteArray`).
pub fn unscaled_bytes(s: &str, scale: u32) -> Option<Vec<u8>> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut all = String::from(int);
    let scale = scale as usize;
    if frac.len() >= scale {
        all.push_str(&frac[..scale]);
    } else {
        all.push_str(frac);
        all.extend(std::iter::repeat_n('0', scale - frac.len()));
    }
    // Base-256 magnitude, little-endian while building.
    let mut mag: Vec<u8> = vec![0];
    for d in all.bytes() {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut() {
            let x = u32::from(*byte) * 10 + carry;
            *byte = (x & 0xff) as u8;
            carry = x >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    // Room for the sign bit.
    mag.push(0);
    if neg {
        // Two's complement: invert and add one.
        let mut carry = 1u16;
        for byte in mag.iter_mut() {
            let x = u16::from(!*byte) + carry;
            *byte = (x & 0xff) as u8;
            carry = x >> 8;
        }
    }
    mag.reverse();
    // The shortest form: drop leading bytes that only repeat the sign.
    while mag.len() > 1
        && ((mag[0] == 0 && mag[1] & 0x80 == 0) || (mag[0] == 0xff && mag[1] & 0x80 != 0))
    {
        mag.remove(0);
    }
    Some(mag)
}

fn numeric(s: &str, ps: Option<(i32, i32)>, decimals: Decimals) -> J {
    if matches!(s, "NaN" | "Infinity" | "-Infinity") {
        return match decimals {
            Decimals::String => json!(s),
            _ => J::Null,
        };
    }
    match decimals {
        Decimals::String => json!(s),
        Decimals::Double => s.parse::<f64>().map_or(J::Null, |f| json!(f)),
        Decimals::Precise => {
            let scale = match ps {
                Some((_, scale)) => scale as u32,
                None => s.split_once('.').map_or(0, |(_, f)| f.len() as u32),
            };
            let Some(bytes) = unscaled_bytes(s, scale) else {
                return J::Null;
            };
            let b64 = crate::envelope::base64(&bytes);
            match ps {
                Some(_) => json!(b64),
                None => json!({"scale": scale, "value": b64}),
            }
        }
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian; `BC` years allowed).
pub fn date(s: &str) -> Option<i64> {
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(x) => (x, true),
        None => (s, false),
    };
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.get(..2)?.parse().ok()?;
    let y = if bc { 1 - y } else { y };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Microseconds since midnight of `HH:MM:SS[.ffffff]`.
pub fn micros_of_day(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut it = hms.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next()?.parse().ok()?;
    let mut us = 0i64;
    let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
    if !digits.is_empty() {
        let padded = format!("{digits:0<6}");
        us = padded[..6].parse().ok()?;
    }
    Some(((h * 60 + m) * 60 + sec) * 1_000_000 + us)
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
pub fn timestamp_us(s: &str) -> Option<i64> {
    let (s, bc) = match s.strip_suffix(" BC") {
        Some(x) => (x, " BC"),
        None => (s, ""),
    };
    let (d, t) = s.split_once('T')?;
    let days = date(&format!("{d}{bc}"))?;
    Some(days * 86_400_000_000 + micros_of_day(t.trim_end_matches('Z'))?)
}

/// An ISO timestamp with trailing zeros of its fraction dropped (as Java's ISO formatter).
fn trim_fraction(s: &str) -> String {
    let Some(dot) = s.find('.') else {
        return s.to_string();
    };
    let end = s[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(s.len(), |i| dot + 1 + i);
    let frac = s[dot + 1..end].trim_end_matches('0');
    if frac.is_empty() {
        format!("{}{}", &s[..dot], &s[end..])
    } else {
        format!("{}.{frac}{}", &s[..dot], &s[end..])
    }
}

/// `HH:MM:SS[.f]±HH:MM` in UTC (`...Z`), as Debezium's ZonedTime.
fn timetz_utc(s: &str) -> Option<String> {
    let at = s.rfind(['+', '-'])?;
    let (t, z) = s.split_at(at);
    let sign = if z.starts_with('-') { -1 } else { 1 };
    let mut zp = z[1..].split(':');
    let zh: i64 = zp.next()?.parse().ok()?;
    let zm: i64 = zp.next().unwrap_or("0").parse().ok()?;
    let us = micros_of_day(t)? - sign * (zh * 3600 + zm * 60) * 1_000_000;
    let us = us.rem_euclid(86_400_000_000);
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    Some(trim_fraction(&format!("{base}.{frac:06}Z")))
}

/// Microseconds of an ISO 8601 duration (`P1Y2M3DT4H5M6.5S`), months as 30.4375 days (as
/// Debezium's MicroDuration).
pub fn interval_us(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P')?;
    let (date_part, time_part) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total = 0f64;
    let mut num = String::new();
    for c in date_part.chars() {
        match c {
            'Y' => total += num.parse::<f64>().ok()? * 12.0 * 30.4375 * 86_400e6,
            'M' => total += num.parse::<f64>().ok()? * 30.4375 * 86_400e6,
            'D' => total += num.parse::<f64>().ok()? * 86_400e6,
            _ => {
                num.push(c);
                continue;
            }
        }
        num.clear();
    }
    for c in time_part.chars() {
        match c {
            'H' => total += num.parse::<f64>().ok()? * 3_600e6,
            'M' => total += num.parse::<f64>().ok()? * 60e6,
            'S' => total += num.parse::<f64>().ok()? * 1e6,
            _ => {
                num.push(c);
                continue;
            }
        }
        num.clear();
    }
    Some(total.round() as i64)
}

/// PostgreSQL's ISO 8601 interval (`P1Y2M3DT4H5M6.78S`, zero parts left out) as Debezium's
/// string form, every component written (`P0Y0M0DT0H0M0S` for zero) and the seconds without
/// trailing zeros.
pub fn interval_iso(s: &str) -> Option<String> {
    let rest = s.strip_prefix('P')?;
    let (date_part, time_part) = rest.split_once('T').unwrap_or((rest, ""));
    let mut parts = [0i64; 5];
    let mut seconds = String::from("0");
    let mut num = String::new();
    for (k, (part, units)) in [(date_part, "YMD"), (time_part, "HMS")]
        .into_iter()
        .enumerate()
    {
        for c in part.chars() {
            match units.find(c) {
                Some(2) if k == 1 => seconds = std::mem::take(&mut num),
                Some(u) => parts[3 * k + u] = std::mem::take(&mut num).parse().ok()?,
                None => num.push(c),
            }
        }
        if !num.is_empty() {
            return None;
        }
    }
    if seconds.contains('.') {
        seconds = seconds
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string();
    }
    if seconds.parse::<f64>().is_err() {
        return None;
    }
    if seconds == "-0" {
        seconds = "0".into();
    }
    let [y, mo, d, h, mi] = parts;
    Some(format!("P{y}Y{mo}M{d}DT{h}H{mi}M{seconds}S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str, typmod: i32) -> PgType {
        PgType {
            name: name.into(),
            typmod,
            labels: None,
            elem: None,
        }
    }

    #[test]
    fn intervals_as_debeziums_iso_strings() {
        assert_eq!(
            interval_iso("P1Y2M3DT4H5M6.78S").unwrap(),
            "P1Y2M3DT4H5M6.78S"
        );
        assert_eq!(interval_iso("PT0S").unwrap(), "P0Y0M0DT0H0M0S");
        assert_eq!(interval_iso("P-1DT2H").unwrap(), "P0Y0M-1DT2H0M0S");
        assert_eq!(interval_iso("PT-0.500000S").unwrap(), "P0Y0M0DT0H0M-0.5S");
        assert_eq!(interval_iso("P10Y").unwrap(), "P10Y0M0DT0H0M0S");
        assert_eq!(interval_iso("PT1.000000S").unwrap(), "P0Y0M0DT0H0M1S");
        assert!(interval_iso("1 day").is_none());
        assert!(interval_iso("P1X").is_none());
    }

    #[test]
    fn modes_change_schemas_and_values_as_debeziums() {
        let connect = Modes {
            time: TimePrecision::Connect,
            ..Modes::default()
        };
        let micro = Modes {
            time: TimePrecision::AdaptiveTimeMicroseconds,
            ..Modes::default()
        };
        let t3 = ty("time", 3);
        let t = Some(ValueRef::Text("00:00:02.25"));
        assert_eq!(t3.schema(Modes::default())["name"], "io.debezium.time.Time");
        assert_eq!(t3.schema(micro)["name"], "io.debezium.time.MicroTime");
        assert_eq!(t3.value(t, micro), json!(2_250_000));
        assert_eq!(
            t3.schema(connect)["name"],
            "org.apache.kafka.connect.data.Time"
        );
        assert_eq!(t3.value(t, connect), json!(2250));
        let ts = ty("timestamp", -1);
        let v = Some(ValueRef::Text("1970-01-01T00:00:01.234567"));
        assert_eq!(ts.value(v, Modes::default()), json!(1_234_567));
        assert_eq!(
            ts.schema(connect)["name"],
            "org.apache.kafka.connect.data.Timestamp"
        );
        assert_eq!(ts.value(v, connect), json!(1234));
        assert_eq!(
            ty("date", -1).schema(connect)["name"],
            "org.apache.kafka.connect.data.Date"
        );
        assert_eq!(
            ty("date", -1).value(Some(ValueRef::Text("1970-01-11")), connect),
            json!(10)
        );
        let bytes = Some(ValueRef::Bytes(&[0xfb, 0xff, 0x01]));
        for (mode, schema, text) in [
            (Binary::Bytes, "bytes", "+/8B"),
            (Binary::Base64, "string", "+/8B"),
            (Binary::Base64UrlSafe, "string", "-_8B"),
            (Binary::Hex, "string", "fbff01"),
        ] {
            let m = Modes {
                binary: mode,
                ..Modes::default()
            };
            assert_eq!(ty("bytea", -1).schema(m)["type"], schema, "{mode:?}");
            assert_eq!(ty("bytea", -1).value(bytes, m), json!(text), "{mode:?}");
        }
        let iv = Modes {
            interval: Intervals::String,
            ..Modes::default()
        };
        let i = ty("interval", -1);
        assert_eq!(i.schema(iv)["name"], "io.debezium.time.Interval");
        assert_eq!(
            i.value(Some(ValueRef::Text("P1DT2H")), iv),
            json!("P0Y0M1DT2H0M0S")
        );
        assert_eq!(
            i.value(Some(ValueRef::Text("P1DT2H")), Modes::default()),
            json!(93_600_000_000i64)
        );
    }

    #[test]
    fn decimals_are_javas_unscaled_bytes() {
        // BigInteger.valueOf(12345).toByteArray() = [0x30, 0x39]
        assert_eq!(unscaled_bytes("123.45", 2).unwrap(), [0x30, 0x39]);
        assert_eq!(unscaled_bytes("-1", 0).unwrap(), [0xff]);
        assert_eq!(unscaled_bytes("128", 0).unwrap(), [0x00, 0x80]);
        assert_eq!(unscaled_bytes("-128", 0).unwrap(), [0x80]);
        assert_eq!(unscaled_bytes("0", 3).unwrap(), [0x00]);
        assert_eq!(unscaled_bytes("1.5", 3).unwrap(), [0x05, 0xdc]);
        // numeric(10,2)'s typmod
        let n = ty("numeric", ((10 << 16) | 2) + 4);
        assert_eq!(
            n.value(Some(ValueRef::Text("123.45")), Modes::default()),
            json!("MDk=")
        );
        assert_eq!(n.schema(Modes::default())["parameters"]["scale"], "2");
        let v = ty("numeric", -1);
        assert_eq!(
            v.value(Some(ValueRef::Text("1.5")), Modes::default()),
            json!({"scale": 1, "value": "Dw=="})
        );
        assert_eq!(
            v.value(
                Some(ValueRef::Text("1.5")),
                Modes {
                    decimals: Decimals::String,
                    ..Modes::default()
                }
            ),
            json!("1.5")
        );
    }

    #[test]
    fn times_follow_debeziums_adaptive_mode() {
        assert_eq!(date("1970-01-02"), Some(1));
        assert_eq!(date("2024-02-29"), Some(19782));
        assert_eq!(date("1969-12-31"), Some(-1));
        let ts = ty("timestamp", -1);
        assert_eq!(
            ts.value(
                Some(ValueRef::Text("1970-01-01T00:00:01.5")),
                Modes::default()
            ),
            json!(1_500_000)
        );
        let ts3 = ty("timestamp", 3);
        assert_eq!(
            ts3.value(
                Some(ValueRef::Text("1970-01-01T00:00:01.500000")),
                Modes::default()
            ),
            json!(1500)
        );
        assert_eq!(
            ty("timestamptz", -1).value(
                Some(ValueRef::Text("2024-02-29T10:34:56.789000Z")),
                Modes::default()
            ),
            json!("2024-02-29T10:34:56.789Z")
        );
        assert_eq!(
            ty("timetz", -1).value(Some(ValueRef::Text("12:34:56+02:00")), Modes::default()),
            json!("10:34:56Z")
        );
        assert_eq!(
            ty("time", -1).value(Some(ValueRef::Text("00:00:02.25")), Modes::default()),
            json!(2_250_000)
        );
        assert_eq!(interval_us("P1DT1H"), Some(90_000_000_000));
        assert_eq!(interval_us("PT-1.5S"), Some(-1_500_000));
        assert_eq!(interval_us("P1M"), Some(2_629_800_000_000));
    }

    #[test]
    fn written_values_equal_built_ones() {
        let cases: Vec<(PgType, Option<ValueRef<'_>>)> = vec![
            (ty("int4", -1), Some(ValueRef::Int(-7))),
            (ty("int8", -1), Some(ValueRef::Null)),
            (ty("bool", -1), Some(ValueRef::Bool(true))),
            (ty("float8", -1), Some(ValueRef::Float(0.1))),
            (ty("float8", -1), Some(ValueRef::Float(f64::NAN))),
            (ty("text", -1), Some(ValueRef::Text("a \"q\" \u{1F600}\n"))),
            (ty("text", -1), None),
            (ty("jsonb", -1), Some(ValueRef::Text("{\"k\": 1}"))),
            (
                ty("numeric", ((10 << 16) | 2) + 4),
                Some(ValueRef::Text("123.45")),
            ),
            (
                ty("timestamptz", -1),
                Some(ValueRef::Text("2024-02-29T10:34:56.789000Z")),
            ),
            (ty("date", -1), Some(ValueRef::Text("2024-02-29"))),
            (ty("bytea", -1), Some(ValueRef::Bytes(&[0, 1, 255]))),
            (
                PgType {
                    name: "mood".into(),
                    typmod: -1,
                    labels: Some("sad,ok".into()),
                    elem: None,
                },
                Some(ValueRef::Text("ok")),
            ),
            (
                PgType {
                    name: "_int4".into(),
                    typmod: -1,
                    labels: None,
                    elem: Some("int4".into()),
                },
                Some(ValueRef::Text("[1,null]")),
            ),
        ];
        for (t, v) in cases {
            let mut out = Vec::new();
            t.write_value(v, Modes::default(), &mut out);
            let written: J = serde_json::from_slice(&out).unwrap();
            assert_eq!(written, t.value(v, Modes::default()), "{} {v:?}", t.name);
        }
    }

    #[test]
    fn arrays_enums_and_unchanged_values() {
        let a = PgType {
            name: "_int4".into(),
            typmod: -1,
            labels: None,
            elem: Some("int4".into()),
        };
        assert_eq!(a.schema(Modes::default())["items"]["type"], "int32");
        assert_eq!(
            a.value(Some(ValueRef::Text("[1,null,3]")), Modes::default()),
            json!([1, null, 3])
        );
        let e = PgType {
            name: "mood".into(),
            typmod: -1,
            labels: Some("sad,ok".into()),
            elem: None,
        };
        assert_eq!(
            e.schema(Modes::default())["parameters"]["allowed"],
            "sad,ok"
        );
        assert_eq!(
            ty("text", -1).value(None, Modes::default()),
            json!(UNAVAILABLE)
        );
        assert_eq!(ty("int4", -1).value(None, Modes::default()), J::Null);
    }
}
