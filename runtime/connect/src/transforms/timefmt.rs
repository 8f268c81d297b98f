//! Java `SimpleDateFormat` patterns, the common letters, in UTC: formatting (TimestampRouter,
//! TimestampConverter) and parsing (TimestampConverter).
//!
//! Letters: `y M d H h k K m s S E a X Z z`, quoted literal text (`'T'`, `''` for a quote).
//! Parsing is lenient as Java's default is: out-of-range fields roll over, text after the
//! pattern is ignored, fields the pattern lacks are those of 1970-01-01T00:00:00.000Z.

use super::civil;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const LETTERS: &str = "yMdHhkKmsSEaXZz";
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Lit(String),
    Field(char, usize),
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    items: Vec<Item>,
}

impl Pattern {
    /// Refuses letters it does not implement and an unterminated quote (Java refuses unknown
    /// letters too).
    pub fn compile(p: &str) -> Result<Pattern, String> {
        Self::build(p, true)
    }

    /// Unknown letters are literal text and an open quote runs to the end.
    pub fn lenient(p: &str) -> Pattern {
        Self::build(p, false).unwrap_or(Pattern { items: Vec::new() })
    }

    fn build(p: &str, strict: bool) -> Result<Pattern, String> {
        let chars: Vec<char> = p.chars().collect();
        let mut items: Vec<Item> = Vec::new();
        let lit = |items: &mut Vec<Item>, s: &str| match items.last_mut() {
            Some(Item::Lit(l)) => l.push_str(s),
            _ => items.push(Item::Lit(s.to_string())),
        };
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                if chars.get(i + 1) == Some(&'\'') {
                    lit(&mut items, "'");
                    i += 2;
                    continue;
                }
                let mut text = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None if strict => {
                            return Err(format!("unterminated quote in pattern {p:?}"));
                        }
                        None => break,
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            text.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(&x) => {
                            text.push(x);
                            j += 1;
                        }
                    }
                }
                lit(&mut items, &text);
                i = j + 1;
                continue;
            }
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            if c.is_ascii_alphabetic() {
                if LETTERS.contains(c) {
                    items.push(Item::Field(c, n));
                } else if strict {
                    return Err(format!(
                        "unsupported pattern letter '{c}' in {p:?} (supported: {})",
                        LETTERS
                            .chars()
                            .map(String::from)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                } else {
                    lit(&mut items, &c.to_string().repeat(n));
                }
            } else {
                lit(&mut items, &c.to_string().repeat(n));
            }
            i += n;
        }
        Ok(Pattern { items })
    }

    /// `ms` since the epoch as text, in UTC.
    pub fn format(&self, ms: i64) -> String {
        let days = ms.div_euclid(DAY_MS);
        let rem = ms.rem_euclid(DAY_MS);
        let (y, mo, d) = civil(days);
        let (h, mi, s, milli) = (
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000,
        );
        // 1970-01-01 was a Thursday (DAYS[3]).
        let dow = (days + 3).rem_euclid(7) as usize;
        let month = MONTHS[(mo - 1) as usize];
        let mut out = String::new();
        for item in &self.items {
            let num = |v: i64, w: usize| format!("{v:0w$}");
            let (c, n) = match item {
                Item::Lit(l) => {
                    out.push_str(l);
                    continue;
                }
                Item::Field(c, n) => (*c, *n),
            };
            let text = match c {
                'y' if n == 2 => num(y.rem_euclid(100), 2),
                'y' => num(y, n),
                'M' if n >= 4 => month.to_string(),
                'M' if n == 3 => month[..3].to_string(),
                'M' => num(mo, n),
                'd' => num(d, n),
                'H' => num(h, n),
                'k' => num(if h == 0 { 24 } else { h }, n),
                'K' => num(h % 12, n),
                'h' => num(if h % 12 == 0 { 12 } else { h % 12 }, n),
                'm' => num(mi, n),
                's' => num(s, n),
                'S' => num(milli, n),
                'E' if n >= 4 => DAYS[dow].to_string(),
                'E' => DAYS[dow][..3].to_string(),
                'a' => (if h < 12 { "AM" } else { "PM" }).to_string(),
                'X' => "Z".to_string(),
                'Z' => "+0000".to_string(),
                'z' if n >= 4 => "Coordinated Universal Time".to_string(),
                'z' => "UTC".to_string(),
                other => other.to_string().repeat(n),
            };
            out.push_str(&text);
        }
        out
    }

    /// Text in this pattern as ms since the epoch (UTC unless the text has a zone).
    pub fn parse(&self, s: &str) -> Result<i64, String> {
        let (mut y, mut mo, mut d) = (1970i64, 1i64, 1i64);
        let (mut h, mut mi, mut sec, mut milli) = (0i64, 0i64, 0i64, 0i64);
        let (mut h12, mut pm, mut offset_min) = (None::<i64>, false, 0i64);
        let mut pos = 0;
        for (i, item) in self.items.iter().enumerate() {
            let rest = &s[pos..];
            let (c, n) = match item {
                Item::Lit(l) => {
                    if !rest.starts_with(l.as_str()) {
                        return Err(format!("expected {l:?} at offset {pos}"));
                    }
                    pos += l.len();
                    continue;
                }
                Item::Field(c, n) => (*c, *n),
            };
            if numeric(c, n) {
                // A numeric field followed by another takes exactly its width, as in Java.
                let abutting =
                    matches!(self.items.get(i + 1), Some(Item::Field(c2, n2)) if numeric(*c2, *n2));
                let (v, len) = digits(rest, abutting.then_some(n))
                    .ok_or_else(|| format!("expected a number for '{c}' at offset {pos}"))?;
                pos += len;
                match c {
                    'y' if n <= 2 && len == 2 => y = two_digit_year(v),
                    'y' => y = v,
                    'M' => mo = v,
                    'd' => d = v,
                    'H' => h = v,
                    'k' => h = if v == 24 { 0 } else { v },
                    'K' => h12 = Some(v),
                    'h' => h12 = Some(if v == 12 { 0 } else { v }),
                    'm' => mi = v,
                    's' => sec = v,
                    _ => milli = v, // 'S'
                }
                continue;
            }
            let at = |what: &str| format!("expected {what} at offset {pos}");
            match c {
                'M' => {
                    let (idx, len) = name(rest, &MONTHS).ok_or_else(|| at("a month name"))?;
                    mo = idx as i64 + 1;
                    pos += len;
                }
                'E' => pos += name(rest, &DAYS).ok_or_else(|| at("a day name"))?.1,
                'a' => {
                    let p = rest.get(..2).ok_or_else(|| at("AM or PM"))?;
                    if p.eq_ignore_ascii_case("pm") {
                        pm = true;
                    } else if !p.eq_ignore_ascii_case("am") {
                        return Err(at("AM or PM"));
                    }
                    pos += 2;
                }
                _ => {
                    // 'X', 'Z', 'z'
                    let (off, len) = zone(rest).ok_or_else(|| at("a time zone"))?;
                    offset_min = off;
                    pos += len;
                }
            }
        }
        if let Some(v) = h12 {
            h = v + if pm { 12 } else { 0 };
        }
        let months = i128::from(y) * 12 + i128::from(mo) - 1;
        let (yy, mm) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        let yy = i64::try_from(yy).map_err(|_| "the year is out of range".to_string())?;
        let days = i128::from(days_from_civil(yy, mm as i64, 1)) + i128::from(d) - 1;
        let ms = days * i128::from(DAY_MS)
            + i128::from(h) * 3_600_000
            + i128::from(mi) * 60_000
            + i128::from(sec) * 1000
            + i128::from(milli)
            - i128::from(offset_min) * 60_000;
        i64::try_from(ms).map_err(|_| "the time is out of range".to_string())
    }
}

fn numeric(c: char, n: usize) -> bool {
    match c {
        'M' => n < 3,
        'y' | 'd' | 'H' | 'k' | 'K' | 'h' | 'm' | 's' | 'S' => true,
        _ => false,
    }
}

/// Leading digits: exactly `width` of them, or as many as there are (at most 10).
fn digits(s: &str, width: Option<usize>) -> Option<(i64, usize)> {
    let run = s.bytes().take_while(u8::is_ascii_digit).count();
    let len = match width {
        Some(w) if run >= w => w,
        Some(_) => return None,
        None if run == 0 => return None,
        None => run.min(10),
    };
    Some((s[..len].parse().ok()?, len))
}

/// A name (full, or its first three letters) at the start of `s`, case-insensitively.
fn name(s: &str, names: &[&str]) -> Option<(usize, usize)> {
    let starts = |p: &str| s.get(..p.len()).is_some_and(|x| x.eq_ignore_ascii_case(p));
    names
        .iter()
        .position(|n| starts(n))
        .map(|i| (i, names[i].len()))
        .or_else(|| names.iter().position(|n| starts(&n[..3])).map(|i| (i, 3)))
}

/// `Z`, `UTC`/`GMT`/`UT` (with an optional offset), or `±HH`, `±HHMM`, `±HH:MM`: (minutes
/// east of UTC, length).
fn zone(s: &str) -> Option<(i64, usize)> {
    if s.starts_with('Z') {
        return Some((0, 1));
    }
    for p in ["UTC", "GMT", "UT"] {
        if let Some(rest) = s.strip_prefix(p) {
            return Some(match offset(rest) {
                Some((off, len)) => (off, p.len() + len),
                None => (0, p.len()),
            });
        }
    }
    offset(s)
}

fn offset(s: &str) -> Option<(i64, usize)> {
    let sign = match s.bytes().next()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let b = s.as_bytes();
    let two = |i: usize| -> Option<i64> {
        let d = b.get(i..i + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| i64::from(d[0] - b'0') * 10 + i64::from(d[1] - b'0'))
    };
    let hh = two(1)?;
    let (mm, len) = if b.get(3) == Some(&b':') {
        (two(4)?, 6)
    } else {
        two(3).map_or((0, 3), |m| (m, 5))
    };
    Some((sign * (hh * 60 + mm), len))
}

/// A two-digit year in the century that starts 80 years ago, as Java resolves it.
fn two_digit_year(yy: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let start = civil(now.div_euclid(86_400)).0 - 80;
    let y = start - start.rem_euclid(100) + yy;
    if y < start { y + 100 } else { y }
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's days_from_civil).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z, a Tuesday

    #[test]
    fn formats_and_parses_back() {
        for (p, text) in [
            ("yyyy-MM-dd'T'HH:mm:ss.SSSX", "2023-11-14T22:13:20.000Z"),
            ("yyyyMMddHHmmss", "20231114221320"),
            (
                "EEE, d MMM yyyy HH:mm:ss Z",
                "Tue, 14 Nov 2023 22:13:20 +0000",
            ),
            (
                "EEEE MMMM dd yy hh:mm:ss a z",
                "Tuesday November 14 23 10:13:20 PM UTC",
            ),
            (
                "''yyyy-MM-dd'' 'o''clock' kk:mm:ss",
                "'2023-11-14' o'clock 22:13:20",
            ),
        ] {
            let pat = Pattern::compile(p).unwrap();
            assert_eq!(pat.format(T), text, "{p}");
            assert_eq!(pat.parse(text), Ok(T), "{p}");
        }
        assert_eq!(
            Pattern::compile("yyyy-MM-dd").unwrap().format(-1),
            "1969-12-31"
        );
    }

    #[test]
    fn parses_like_java() {
        let p = |pat: &str, s: &str| Pattern::compile(pat).unwrap().parse(s);
        // Offsets, in all of X's and Z's shapes.
        for z in ["+02", "+0200", "+02:00", "GMT+02:00"] {
            assert_eq!(
                p("yyyy-MM-dd HH:mmX", &format!("2023-11-15 00:13{z}")),
                Ok(T - 20_000)
            );
        }
        assert_eq!(p("yyyy-MM-dd HH:mm:ssZ", "2023-11-14 17:13:20-0500"), Ok(T));
        // Missing fields are the epoch's; text after the pattern is ignored; fields roll over.
        assert_eq!(p("HH:mm", "01:30"), Ok(5_400_000));
        assert_eq!(p("yyyy-MM-dd", "2023-11-14T22:13:20Z"), Ok(T - 80_000_000));
        assert_eq!(p("yyyy-MM-dd", "2023-13-01"), p("yyyy-MM-dd", "2024-01-01"));
        assert_eq!(p("yyyy-MM-dd", "1969-12-31"), Ok(-86_400_000));
        assert!(p("yyyy-MM-dd", "abc").is_err());
        assert!(p("yyyy-MM-dd", "2023/11/14").is_err());
        assert!(p("yyyyMMdd", "202311").is_err());
        assert_eq!(p("yyyyMMdd", "2023111"), p("yyyy-MM-dd", "2023-11-01"));
        assert!(Pattern::compile("yyyy-MM-dd 'T").is_err());
        assert!(Pattern::compile("yyyy-ww").unwrap_err().contains("'w'"));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil(days_from_civil(1600, 2, 29)), (1600, 2, 29));
    }
}
