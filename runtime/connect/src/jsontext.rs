//! Schemaless JSON documents kept as their text. A source that declares JSON values, or a
//! sink reading through `JsonConverter` without schemas, gets each value validated once
//! ([`validate`]) and held as text; the transforms that only touch top-level fields of an
//! object (InsertField, ReplaceField, MaskField) edit that text member by member
//! ([`members`], [`write_object`]) instead of building a `serde_json::Value` tree and
//! printing it again. Member order is kept, and fields a transform adds go last.

use std::borrow::Cow;

/// Checks that `b` is one JSON document, all UTF-8 (serde_json does not check the strings it
/// skips); what is wrong otherwise, in serde_json's words. A document [`well_formed`] accepts
/// needs nothing more; anything else is judged, and explained, by serde_json.
pub fn validate(b: &[u8]) -> Result<(), String> {
    std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?;
    if well_formed(b) {
        return Ok(());
    }
    // What serde_json can hold (its nesting limit, numbers in range, no lone surrogates).
    serde_json::from_slice::<serde_json::Value>(b)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Containers nested deeper than this are left to serde_json (whose limit is 127).
const MAX_DEPTH: usize = 127;

/// One JSON document (RFC 8259) and nothing after it but whitespace, nested at most
/// [`MAX_DEPTH`] deep: a fast check without allocation. It never accepts what serde_json
/// refuses (the property test below holds it to that); it may refuse what serde_json accepts
/// (numbers aside, nothing is known), and then serde_json decides.
fn well_formed(b: &[u8]) -> bool {
    let mut i = skip_ws(b, 0);
    // The open containers: `true` for an object.
    let mut stack = [false; MAX_DEPTH];
    let mut depth = 0usize;
    loop {
        // A value starts at `i`.
        match b.get(i) {
            Some(b'{' | b'[') => {
                if depth == MAX_DEPTH {
                    return false;
                }
                let object = b[i] == b'{';
                stack[depth] = object;
                depth += 1;
                i = skip_ws(b, i + 1);
                let close = if object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    depth -= 1;
                    i += 1;
                } else {
                    if object {
                        match member_name(b, i) {
                            Some(j) => i = j,
                            None => return false,
                        }
                    }
                    continue;
                }
            }
            Some(b'"') => match string_end_checked(b, i) {
                Some(j) => i = j,
                None => return false,
            },
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => match number_end(b, i) {
                Some(j) => i = j,
                None => return false,
            },
            _ => return false,
        }
        // After a value: a separator, the end of containers, or the end of the document.
        loop {
            i = skip_ws(b, i);
            if depth == 0 {
                return i == b.len();
            }
            let object = stack[depth - 1];
            match b.get(i) {
                Some(b',') => {
                    i = skip_ws(b, i + 1);
                    if object {
                        match member_name(b, i) {
                            Some(j) => i = j,
                            None => return false,
                        }
                    }
                    break;
                }
                Some(b'}') if object => {
                    depth -= 1;
                    i += 1;
                }
                Some(b']') if !object => {
                    depth -= 1;
                    i += 1;
                }
                _ => return false,
            }
        }
    }
}

/// `b[i]` should open a member name: the index of its value after the colon.
fn member_name(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let j = skip_ws(b, string_end_checked(b, i)?);
    (b.get(j) == Some(&b':')).then(|| skip_ws(b, j + 1))
}

/// A string opening at `b[i]`, checked (escapes, no control characters): the index past it.
fn string_end_checked(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j..k].iter().any(|&c| c < 0x20) {
            return None;
        }
        if b[k] == b'"' {
            return Some(k + 1);
        }
        match *b.get(k + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j = k + 2,
            b'u' => {
                let hex = b.get(k + 2..k + 6)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                // A lone surrogate is refused (serde_json refuses some of them).
                let n = u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                if (0xD800..0xE000).contains(&n) {
                    return None;
                }
                j = k + 6;
            }
            _ => return None,
        }
    }
}

/// A number starting at `b[i]`: the index past it. Integers only, of up to 18 digits, and
/// fractions and exponents of modest size, so that serde_json reads every one it accepts.
fn number_end(b: &[u8], i: usize) -> Option<usize> {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut j = i + usize::from(b[i] == b'-');
    let n = digits(j);
    if n == 0 || n > 18 || (n > 1 && b[j] == b'0') {
        return None;
    }
    j += n;
    if b.get(j) == Some(&b'.') {
        let f = digits(j + 1);
        if f == 0 || f > 18 {
            return None;
        }
        j += 1 + f;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let e = digits(j);
        if e == 0 || e > 2 {
            return None;
        }
        j += e;
    }
    Some(j)
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

    /// Documents made of JSON's pieces, valid or slightly broken.
    fn pieces() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let atom = prop_oneof![
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just(":"),
            Just(" "),
            Just("\"a\""),
            Just("\"\\n\""),
            Just("\"\\u00e9\""),
            Just("\"\\ud800\""),
            Just("\"\\x\""),
            Just("\"\t\""),
            Just("\""),
            Just("\\"),
            Just("true"),
            Just("fals"),
            Just("null"),
            Just("0"),
            Just("-1"),
            Just("01"),
            Just("1.5"),
            Just("1."),
            Just("2e10"),
            Just("1e400"),
            Just("-"),
            Just("12345678901234567890"),
            Just("\u{e9}"),
        ];
        proptest::collection::vec(atom, 0..24).prop_map(|v| v.concat().into_bytes())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        #[test]
        fn the_fast_check_never_accepts_what_serde_json_refuses(doc in pieces()) {
            if well_formed(&doc) {
                let serde = serde_json::from_slice::<serde_json::Value>(&doc);
                proptest::prop_assert!(serde.is_ok(), "{:?}: {:?}", String::from_utf8_lossy(&doc), serde);
            }
        }
    }

    #[test]
    fn the_fast_check_accepts_ordinary_documents() {
        for doc in [
            r#"{"id":1,"key":null,"ts":1700000000000,"pad":"xx"}"#,
            r#" [1, -2.5e-3, true, false, null, "a\"b\u00e9", {"": {}}, [[]]] "#,
            "0",
            "\"\"",
        ] {
            assert!(well_formed(doc.as_bytes()), "{doc}");
            assert!(validate(doc.as_bytes()).is_ok(), "{doc}");
        }
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(well_formed(nest(127).as_bytes()));
        assert!(serde_json::from_str::<serde_json::Value>(&nest(127)).is_ok());
        assert!(!well_formed(nest(128).as_bytes()));
        assert!(validate(nest(128).as_bytes()).is_err());
        assert!(validate(br#"{"x":1e400}"#).is_err());
        assert!(validate(br#""\ud800""#).is_err());
        // Refused by the fast check, judged by serde_json.
        assert!(validate(b"12345678901234567890").is_ok());
        assert_eq!(
            validate(b"{\"a\" 1}").unwrap_err(),
            "expected `:` at line 1 column 6"
        );
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
