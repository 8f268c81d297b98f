//! Schemaless JSON documents kept as their text. A source that declares JSON values, or a
//! sink reading through `JsonConverter` without schemas, gets each value validated once
//! ([`validate`]) and held as text; the transforms that only touch top-level fields of an
//! object (InsertField, ReplaceField, MaskField) edit that text member by member
//! ([`members`], [`write_object`]) instead of building a `serde_json::Value` tree and
//! printing it again. Member order is kept, and fields a transform adds go last.

use std::borrow::Cow;

use serde::de::IgnoredAny;

/// Checks that `b` is one JSON document, all UTF-8 (serde_json does not check the strings it
/// skips); what is wrong otherwise.
pub fn validate(b: &[u8]) -> Result<(), String> {
    std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_json::from_slice::<IgnoredAny>(b)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A document that is JSON's `null`.
pub fn is_null(b: &[u8]) -> bool {
    b.trim_ascii() == b"null"
}

/// A document that is a JSON string: its text.
pub fn as_string(b: &[u8]) -> Option<String> {
    if b.trim_ascii_start().first() == Some(&b'"') {
        serde_json::from_slice(b).ok()
    } else {
        None
    }
}

/// A top-level member of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The name, borrowed from the document unless it has escapes.
    pub name: Cow<'a, str>,
    /// The name's JSON text between its quotes, while it is the name read (it is written
    /// back as it was).
    pub raw: Option<&'a [u8]>,
    /// The value's JSON text.
    pub value: Cow<'a, [u8]>,
}

impl<'a> Member<'a> {
    /// A new member; `value` is JSON text.
    pub fn new(name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, [u8]>>) -> Member<'a> {
        Member {
            name: name.into(),
            raw: None,
            value: value.into(),
        }
    }

    /// Renames the member.
    pub fn rename(&mut self, to: &str) {
        self.name = Cow::Owned(to.to_string());
        self.raw = None;
    }
}

/// The top-level members of a document that is an object, in order; `None` when the
/// document is something else. The document is one that [`validate`] accepted: this only
/// finds where members start and end (it never reads outside the text, and anything
/// unexpected is `None`).
pub fn members(b: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut out = Vec::with_capacity(8);
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = string_end(b, i)?;
        let raw = b.get(i + 1..end - 1)?;
        let name = if raw.contains(&b'\\') {
            Cow::Owned(serde_json::from_slice::<String>(b.get(i..end)?).ok()?)
        } else {
            Cow::Borrowed(std::str::from_utf8(raw).ok()?)
        };
        i = skip_ws(b, end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let stop = value_end(b, start)?;
        out.push(Member {
            name,
            raw: Some(raw),
            value: Cow::Borrowed(b.get(start..stop)?),
        });
        i = skip_ws(b, stop);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// `b[i]` opens a string: the index just past its closing quote.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        j += 2;
    }
}

/// `b[i]` starts a value: the index just past it.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let (mut j, mut depth) = (i, 0usize);
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let n = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(b.len() - i);
            (n > 0).then_some(i + n)
        }
    }
}

/// Writes an object of `members`.
pub fn write_object(out: &mut Vec<u8>, members: &[Member<'_>]) {
    out.push(b'{');
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match m.raw {
            Some(raw) => {
                out.push(b'"');
                out.extend_from_slice(raw);
                out.push(b'"');
            }
            None => write_string(out, &m.name),
        }
        out.push(b':');
        out.extend_from_slice(&m.value);
    }
    out.push(b'}');
}

/// Writes `s` as a JSON string.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|c| c >= 0x20 && c != b'"' && c != b'\\' && c != 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_order_and_borrow_plain_names() {
        let doc =
            br#" {"b": 1, "a\n": [1, {"x": "]}"}], "c": "s\"" , "b":null,"d":{},"e":-1.5e3} "#;
        let m = members(doc).unwrap();
        let got: Vec<(&str, &str)> = m
            .iter()
            .map(|m| (&*m.name, std::str::from_utf8(&m.value).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("b", "1"),
                ("a\n", r#"[1, {"x": "]}"}]"#),
                ("c", r#""s\"""#),
                ("b", "null"),
                ("d", "{}"),
                ("e", "-1.5e3")
            ]
        );
        assert!(matches!(m[0].name, Cow::Borrowed(_)));
        assert!(matches!(m[1].name, Cow::Owned(_)));
        let mut out = Vec::new();
        write_object(&mut out, &m);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"b":1,"a\n":[1, {"x": "]}"}],"c":"s\"","b":null,"d":{},"e":-1.5e3}"#
        );
        let mut m = m;
        m[1].rename("q\"");
        m.push(Member::new("new", &b"true"[..]));
        out.clear();
        write_object(&mut out, &m);
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["q\""][1]["x"], "]}");
        assert_eq!(back["new"], true);
        assert_eq!(members(b"{ }").unwrap(), []);
    }

    #[test]
    fn other_documents_are_not_objects_and_bad_text_is_refused() {
        assert!(members(b"[1]").is_none());
        assert!(members(br#"{"a":1,}"#).is_none());
        assert!(members(br#"{"a" 1}"#).is_none());
        assert!(members(br#"{"a":"#).is_none());
        assert!(members(br#"{"a":"x"#).is_none());
        assert!(validate(b"{\"a\":\"\xff\"}").is_err());
        assert!(members(b"\"x\"").is_none());
        assert!(members(br#"{"a":1} x"#).is_none());
        assert!(validate(br#"{"a":1} x"#).is_err());
        assert!(validate(b"{\"a\":").is_err());
        assert!(validate(br#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert!(is_null(b" null\n") && !is_null(b"\"null\""));
        assert_eq!(as_string(b" \"a\\u0041\" ").as_deref(), Some("aA"));
        assert_eq!(as_string(b"12"), None);
        let mut s = Vec::new();
        write_string(&mut s, "tab\there \"q\"");
        assert_eq!(s, br#""tab\there \"q\"""#);
    }
}
