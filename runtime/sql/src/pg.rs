//! PostgreSQL: pools with a server-side statement timeout, binding (a null binds untyped, so
//! the server infers its type), and reading values: the common types natively, the rest as
//! PostgreSQL writes them as text (numeric, uuid, json, dates and times, intervals, enums,
//! one-dimensional arrays as JSON arrays).

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgPoolOptions, PgRow, PgTypeInfo, PgTypeKind,
    PgValueFormat, PgValueRef,
};
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};
use weir_host::sql::{SqlError, mask_url};
use weir_sqlbuf::{RowsBuilder, Value, ValueRef as V};

pub(crate) fn pool(url: &str, call_deadline: Duration) -> Result<sqlx::PgPool, SqlError> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| SqlError::Denied(mask_url(&e.to_string(), url)))?
        .application_name("weir")
        .options([(
            "statement_timeout",
            format!("{}", call_deadline.as_millis().max(1)),
        )])
        // A plugin's long query (a snapshot's read of a whole table) is no warning.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    Ok(PgPoolOptions::new()
        .max_connections(crate::POOL_SIZE)
        .min_connections(0)
        // Pools are shared by every task granted the URL: what one task set on a session
        // (`SET`, a connector's initial statements) is reset before another gets it; a
        // connection that cannot be reset is closed.
        .after_release(|conn, _meta| {
            Box::pin(
                async move { Ok(sqlx::raw_sql("RESET ALL").execute(&mut *conn).await.is_ok()) },
            )
        })
        .connect_lazy_with(opts))
}

/// A parameter: its type from its value, a null untyped.
struct Param(Value);

impl sqlx::Type<Postgres> for Param {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("text")
    }
    fn compatible(_: &PgTypeInfo) -> bool {
        true
    }
}

impl sqlx::Encode<'_, Postgres> for Param {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match &self.0 {
            Value::Null => return Ok(IsNull::Yes),
            Value::Bool(b) => buf.push(u8::from(*b)),
            Value::Int(i) => buf.extend_from_slice(&i.to_be_bytes()),
            Value::Float(f) => buf.extend_from_slice(&f.to_be_bytes()),
            Value::Text(s) => buf.extend_from_slice(s.as_bytes()),
            Value::Bytes(b) => buf.extend_from_slice(b),
        }
        Ok(IsNull::No)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match &self.0 {
            // Unspecified: the server infers it from where the parameter is used.
            Value::Null => PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0)),
            Value::Bool(_) => PgTypeInfo::with_name("bool"),
            Value::Int(_) => PgTypeInfo::with_name("int8"),
            Value::Float(_) => PgTypeInfo::with_name("float8"),
            Value::Text(_) => PgTypeInfo::with_name("text"),
            Value::Bytes(_) => PgTypeInfo::with_name("bytea"),
        })
    }
}

pub(crate) fn query(
    sql: String,
    params: &[Value],
) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    // sqlx keeps prepared statements by their text, with the parameter types of their first
    // run (an untyped null's type inferred by the server). The same text run with other kinds
    // of parameters (a number where a null was) would send bytes the statement does not
    // expect: the kinds go into the text, so each combination is prepared once.
    let kinds: String = params
        .iter()
        .map(|p| match p {
            Value::Null => 'n',
            Value::Bool(_) => 'b',
            Value::Int(_) => 'i',
            Value::Float(_) => 'f',
            Value::Text(_) => 't',
            Value::Bytes(_) => 'x',
        })
        .collect();
    let sql = if kinds.is_empty() {
        sql
    } else {
        format!("/* {kinds} */ {sql}")
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in params {
        q = q.bind(Param(p.clone()));
    }
    q
}

pub(crate) async fn execute(
    c: &mut PoolConnection<Postgres>,
    sql: String,
    params: &[Value],
) -> Result<u64, sqlx::Error> {
    if params.is_empty() {
        // Without parameters, a script of several statements may run at once.
        Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut **c)
            .await?
            .rows_affected())
    } else {
        Ok(query(sql, params).execute(&mut **c).await?.rows_affected())
    }
}

pub(crate) fn write_row(row: &PgRow, out: &mut Option<RowsBuilder>) -> Result<(), sqlx::Error> {
    let b = out.get_or_insert_with(|| {
        RowsBuilder::new(
            row.columns()
                .iter()
                .map(|c| (c.name(), c.type_info().name())),
        )
    });
    for (i, col) in row.columns().iter().enumerate() {
        let v = row.try_get_raw(i)?;
        if v.is_null() {
            b.push(V::Null);
            continue;
        }
        let decoded = decode(&v).map_err(|e| sqlx::Error::ColumnDecode {
            index: format!("{:?}", col.name()),
            source: e.into(),
        })?;
        b.push(decoded.as_ref());
    }
    Ok(())
}

fn decode(v: &PgValueRef<'_>) -> Result<Value, String> {
    let ty = v.type_info().into_owned();
    let bytes = v.as_bytes().map_err(|e| e.to_string())?;
    if v.format() == PgValueFormat::Text {
        return text_value(&ty, bytes);
    }
    binary(&ty, bytes)
}

/// A value sent as text (simple queries): numbers and booleans read, the rest kept as text.
fn text_value(ty: &PgTypeInfo, bytes: &[u8]) -> Result<Value, String> {
    let s = std::str::from_utf8(bytes).map_err(|_| "text value is not UTF-8".to_string())?;
    Ok(match ty.name() {
        "BOOL" => Value::Bool(s == "t"),
        "INT2" | "INT4" | "INT8" | "OID" => {
            Value::Int(s.parse().map_err(|_| format!("bad integer {s:?}"))?)
        }
        "FLOAT4" | "FLOAT8" => Value::Float(match s {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            s => s.parse().map_err(|_| format!("bad number {s:?}"))?,
        }),
        "BYTEA" => Value::Bytes(unhex(s.strip_prefix("\\x").unwrap_or(s))?),
        _ => Value::Text(s.to_string()),
    })
}

/// A column type as far as reading its binary form goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ty {
    /// A built-in type by its upper-case name (`INT4`, `TIMESTAMPTZ`).
    Named(String),
    /// An enum (its binary form is its label).
    Enum,
    /// A domain over a type.
    Domain(Box<Ty>),
    /// A one-dimensional array of a type.
    Array(Box<Ty>),
}

impl Ty {
    pub(crate) fn of(ti: &PgTypeInfo) -> Ty {
        match ti.kind() {
            PgTypeKind::Enum(_) => Ty::Enum,
            PgTypeKind::Domain(base) => Ty::Domain(Box::new(Ty::of(base))),
            PgTypeKind::Array(elem) => Ty::Array(Box::new(Ty::of(elem))),
            _ => Ty::Named(ti.name().to_string()),
        }
    }
}

fn binary(ty: &PgTypeInfo, b: &[u8]) -> Result<Value, String> {
    decode_binary(&Ty::of(ty), b)
}

/// Reads a value of type `ty` in PostgreSQL's binary form.
pub(crate) fn decode_binary(ty: &Ty, b: &[u8]) -> Result<Value, String> {
    let name = match ty {
        Ty::Named(n) => n.as_str(),
        Ty::Enum => {
            return std::str::from_utf8(b)
                .map(|s| Value::Text(s.to_string()))
                .map_err(|_| "enum label is not UTF-8".to_string());
        }
        Ty::Domain(base) => return decode_binary(base, b),
        Ty::Array(elem) => return array(elem, b).map(Value::Text),
    };
    let int = |n: usize| -> Result<i64, String> {
        (b.len() == n)
            .then(|| {
                let mut x = [0u8; 8];
                x[8 - n..].copy_from_slice(b);
                // Sign-extend from n bytes.
                (i64::from_be_bytes(x) << (64 - 8 * n)) >> (64 - 8 * n)
            })
            .ok_or_else(|| format!("{name} value of {} bytes", b.len()))
    };
    let text = || {
        std::str::from_utf8(b)
            .map(|s| Value::Text(s.to_string()))
            .map_err(|_| format!("{name} value is not UTF-8"))
    };
    Ok(match name {
        "BOOL" => Value::Bool(b.first().is_some_and(|x| *x != 0)),
        "INT2" => Value::Int(int(2)?),
        "INT4" => Value::Int(int(4)?),
        "INT8" => Value::Int(int(8)?),
        "OID" => Value::Int(int(4)? & 0xffff_ffff),
        "FLOAT4" => Value::Float(f32::from_bits(int(4)? as u32) as f64),
        "FLOAT8" => Value::Float(f64::from_bits(int(8)? as u64)),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "UNKNOWN" | "JSON" | "XML" | "CITEXT" => {
            text()?
        }
        "JSONB" => match b.split_first() {
            Some((1, rest)) => Value::Text(
                std::str::from_utf8(rest)
                    .map_err(|_| "jsonb value is not UTF-8".to_string())?
                    .to_string(),
            ),
            _ => return Err("jsonb value of an unknown version".into()),
        },
        "BYTEA" => Value::Bytes(b.to_vec()),
        "UUID" => Value::Text(uuid(b)?),
        "DATE" => Value::Text(date(int(4)?)),
        "TIMESTAMP" => Value::Text(timestamp(int(8)?, "")),
        "TIMESTAMPTZ" => Value::Text(timestamp(int(8)?, "Z")),
        "TIME" => Value::Text(time(int(8)?)),
        "TIMETZ" if b.len() == 12 => {
            let micros = i64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            // The zone is stored as seconds west of UTC.
            let west = i32::from_be_bytes(b[8..].try_into().unwrap_or_default());
            Value::Text(format!("{}{}", time(micros), offset(-west)))
        }
        "INTERVAL" if b.len() == 16 => {
            let micros = i64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            let days = i32::from_be_bytes(b[8..12].try_into().unwrap_or_default());
            let months = i32::from_be_bytes(b[12..].try_into().unwrap_or_default());
            Value::Text(interval(months, days, micros))
        }
        "NUMERIC" => Value::Text(numeric(b)?),
        "INET" | "CIDR" => Value::Text(inet(b)?),
        _ => {
            return Err(format!(
                "type {name} cannot be read yet; cast the column to text in the query"
            ));
        }
    })
}

/// `inet` and `cidr`: family, bits, is-cidr, length, address.
fn inet(b: &[u8]) -> Result<String, String> {
    let [family, bits, _, len, addr @ ..] = b else {
        return Err("inet value too short".into());
    };
    if addr.len() != *len as usize {
        return Err("inet value of a bad length".into());
    }
    let ip: std::net::IpAddr = match (family, addr.len()) {
        (2, 4) => std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into(),
        (3, 16) => {
            let a: [u8; 16] = addr.try_into().unwrap_or_default();
            std::net::Ipv6Addr::from(a).into()
        }
        _ => return Err("inet value of an unknown family".into()),
    };
    let full = if ip.is_ipv4() { 32 } else { 128 };
    Ok(if *bits == full {
        ip.to_string()
    } else {
        format!("{ip}/{bits}")
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let digit = |c: u8| (c as char).to_digit(16).ok_or("bad hex digit");
    s.as_bytes()
        .chunks(2)
        .map(|p| match p {
            [h, l] => Ok((digit(*h)? * 16 + digit(*l)?) as u8),
            _ => Err("odd hex length"),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

fn uuid(b: &[u8]) -> Result<String, String> {
    if b.len() != 16 {
        return Err("uuid value of a wrong length".into());
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// PostgreSQL's epoch (2000-01-01) in days after 1970-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

fn ymd(days_since_1970: i64) -> String {
    let (y, m, d) = civil(days_since_1970);
    if y <= 0 {
        // 1 BC is year 0 here.
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn date(days: i64) -> String {
    match days {
        0x7fff_ffff => "infinity".into(),
        -0x8000_0000 => "-infinity".into(),
        d => ymd(d + PG_EPOCH_DAYS),
    }
}

fn time(micros: i64) -> String {
    let (s, us) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let mut out = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    out
}

fn timestamp(micros: i64, zone: &str) -> String {
    match micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        m => {
            let days = m.div_euclid(86_400_000_000);
            let rest = m.rem_euclid(86_400_000_000);
            let d = ymd(days + PG_EPOCH_DAYS);
            let (date_part, bc) = match d.strip_suffix(" BC") {
                Some(x) => (x.to_string(), " BC"),
                None => (d, ""),
            };
            format!("{date_part}T{}{zone}{bc}", time(rest))
        }
    }
}

fn offset(east_seconds: i32) -> String {
    let sign = if east_seconds < 0 { '-' } else { '+' };
    let s = east_seconds.unsigned_abs();
    if s.is_multiple_of(60) {
        format!("{sign}{:02}:{:02}", s / 3600, s / 60 % 60)
    } else {
        format!("{sign}{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

/// ISO 8601 duration: `P1Y2M3DT4H5M6.5S`.
fn interval(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::from("P");
    let (y, mo) = (months / 12, months % 12);
    if y != 0 {
        out.push_str(&format!("{y}Y"));
    }
    if mo != 0 {
        out.push_str(&format!("{mo}M"));
    }
    if days != 0 {
        out.push_str(&format!("{days}D"));
    }
    if micros != 0 {
        out.push('T');
        let neg = micros < 0;
        let m = micros.unsigned_abs();
        let (h, mi, s, us) = (
            m / 3_600_000_000,
            m / 60_000_000 % 60,
            m / 1_000_000 % 60,
            m % 1_000_000,
        );
        let sign = if neg { "-" } else { "" };
        if h != 0 {
            out.push_str(&format!("{sign}{h}H"));
        }
        if mi != 0 {
            out.push_str(&format!("{sign}{mi}M"));
        }
        if s != 0 || us != 0 {
            let frac = if us == 0 {
                String::new()
            } else {
                format!(".{us:06}").trim_end_matches('0').to_string()
            };
            out.push_str(&format!("{sign}{s}{frac}S"));
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    out
}

/// NUMERIC's binary form: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(b: &[u8]) -> Result<String, String> {
    let u16_at = |i: usize| -> Result<u16, String> {
        b.get(i..i + 2)
            .map(|x| u16::from_be_bytes([x[0], x[1]]))
            .ok_or_else(|| "numeric value too short".to_string())
    };
    let (ndigits, weight, sign, dscale) = (
        u16_at(0)? as usize,
        u16_at(2)? as i16 as i32,
        u16_at(4)?,
        u16_at(6)? as usize,
    );
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| u16_at(8 + 2 * i))
        .collect::<Result<_, _>>()?;
    let mut int_part = String::new();
    for w in 0..=weight.max(-1) {
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut i = weight + 1;
    while frac.len() < dscale {
        let d = if i < 0 {
            0
        } else {
            digits.get(i as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        i += 1;
    }
    frac.truncate(dscale);
    let neg = sign == 0x4000;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&int_part);
    if dscale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// A one-dimensional array as a JSON array of its elements (numbers and booleans bare,
/// everything else as strings); more dimensions are refused.
fn array(elem: &Ty, b: &[u8]) -> Result<String, String> {
    let i32_at = |i: usize| -> Result<i32, String> {
        b.get(i..i + 4)
            .map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
            .ok_or_else(|| "array value too short".to_string())
    };
    let ndim = i32_at(0)?;
    if ndim == 0 {
        return Ok("[]".into());
    }
    if ndim != 1 {
        return Err(format!("arrays of {ndim} dimensions cannot be read yet"));
    }
    let n = i32_at(12)?.max(0) as usize;
    let mut at = 20;
    let mut out = String::from("[");
    for k in 0..n {
        if k > 0 {
            out.push(',');
        }
        let len = i32_at(at)?;
        at += 4;
        if len < 0 {
            out.push_str("null");
            continue;
        }
        let bytes = b
            .get(at..at + len as usize)
            .ok_or_else(|| "array element past the value's end".to_string())?;
        at += len as usize;
        match decode_binary(elem, bytes)? {
            Value::Null => out.push_str("null"),
            Value::Bool(x) => out.push_str(if x { "true" } else { "false" }),
            Value::Int(x) => out.push_str(&x.to_string()),
            Value::Float(x) if x.is_finite() => out.push_str(&x.to_string()),
            Value::Float(x) => out.push_str(&json_string(&x.to_string())),
            Value::Text(s) => out.push_str(&json_string(&s)),
            Value::Bytes(x) => {
                let hex: String = x.iter().map(|c| format!("{c:02x}")).collect();
                out.push_str(&json_string(&format!("\\x{hex}")));
            }
        }
    }
    out.push(']');
    Ok(out)
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_and_numbers_read_as_postgres_writes_them() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(
            timestamp(86_400_000_000 + 1_500_000, ""),
            "2000-01-02T00:00:01.500000"
        );
        assert_eq!(timestamp(-1, "Z"), "1999-12-31T23:59:59.999999Z");
        assert_eq!(time(3_723_000_000), "01:02:03");
        assert_eq!(offset(-5 * 3600), "-05:00");
        assert_eq!(interval(14, 3, 3_723_500_000), "P1Y2M3DT1H2M3.5S");
        assert_eq!(interval(0, 0, 0), "PT0S");
        // 12345.678: ndigits 3, weight 1, sign +, dscale 3: 1 2345 6780
        let n = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
        assert_eq!(numeric(&n).unwrap(), "12345.678");
        // -0.05: ndigits 1, weight -1, sign -, dscale 2: 500
        let n = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
        assert_eq!(numeric(&n).unwrap(), "-0.05");
        assert_eq!(numeric(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap(), "0");
        assert_eq!(
            uuid(&[
                0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
                0x0a, 0x11
            ])
            .unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
    }
}
