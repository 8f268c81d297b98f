//! The change table stores each row image as SQLite writes literals with `quote()`, comma
//! separated: `NULL`, integers, reals (written exactly: SQLite's `quote()` uses as many digits
//! as a round trip needs), `'text'` with `''` for a quote, and `X'hex'` for blobs. This
//! module reads them back.

/// One value of a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Parses `quote(a)||','||quote(b)||...` back into values.
pub fn parse(s: &str) -> Result<Vec<Lit>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    if b.is_empty() {
        return Ok(out);
    }
    loop {
        let (v, next) = one(s, i)?;
        out.push(v);
        i = next;
        match b.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(c) => return Err(format!("unexpected {:?} at {i} in a row image", *c as char)),
        }
    }
}

fn one(s: &str, i: usize) -> Result<(Lit, usize), String> {
    let b = s.as_bytes();
    match b.get(i) {
        Some(b'\'') => {
            let mut text = String::new();
            let mut j = i + 1;
            loop {
                let rest = &s[j..];
                let q = rest
                    .find('\'')
                    .ok_or_else(|| "unterminated text in a row image".to_string())?;
                text.push_str(&rest[..q]);
                j += q + 1;
                if b.get(j) == Some(&b'\'') {
                    text.push('\'');
                    j += 1;
                } else {
                    return Ok((Lit::Text(text), j));
                }
            }
        }
        Some(b'X') if b.get(i + 1) == Some(&b'\'') => {
            let end = s[i + 2..]
                .find('\'')
                .ok_or_else(|| "unterminated blob in a row image".to_string())?;
            let hex = &s[i + 2..i + 2 + end];
            let mut bytes = Vec::with_capacity(hex.len() / 2);
            for pair in hex.as_bytes().chunks(2) {
                let h = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
                bytes.push(u8::from_str_radix(h, 16).map_err(|_| format!("bad blob hex {h:?}"))?);
            }
            Ok((Lit::Blob(bytes), i + 2 + end + 1))
        }
        Some(_) => {
            let end = s[i..].find(',').map_or(s.len(), |e| i + e);
            let word = &s[i..end];
            let v = if word == "NULL" {
                Lit::Null
            } else if let Ok(n) = word.parse::<i64>() {
                Lit::Int(n)
            } else if let Ok(f) = word.parse::<f64>() {
                Lit::Real(f)
            } else if word == "Inf" || word == "9.0e+999" {
                Lit::Real(f64::INFINITY)
            } else if word == "-Inf" || word == "-9.0e+999" {
                Lit::Real(f64::NEG_INFINITY)
            } else {
                return Err(format!("unknown literal {word:?} in a row image"));
            };
            Ok((v, end))
        }
        None => Err("empty value in a row image".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_literals_read_back() {
        assert_eq!(
            parse("1,NULL,'it''s, here',X'00FF',-2.5,1.0e+300").unwrap(),
            vec![
                Lit::Int(1),
                Lit::Null,
                Lit::Text("it's, here".into()),
                Lit::Blob(vec![0, 255]),
                Lit::Real(-2.5),
                Lit::Real(1e300),
            ]
        );
        assert_eq!(parse("''").unwrap(), vec![Lit::Text(String::new())]);
        assert_eq!(parse("'ä'").unwrap(), vec![Lit::Text("ä".into())]);
        assert!(parse("'open").is_err());
        assert!(parse("1;2").is_err());
    }
}
