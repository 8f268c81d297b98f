//! Cast, TimestampConverter, Flatten and HeaderFrom through the chain.

use super::*;

const T: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_wasm(_: &str) -> Result<(), ConnectError> {
    Err(ConnectError::BadConfig("not a transform plugin".into()))
}

fn rec(schema: Option<Value>, value: Value) -> Rec {
    Rec {
        topic: "orders".into(),
        partition: Some(0),
        offset: Some(1),
        timestamp: T,
        key: Data::Raw(None),
        value: Data::Json { schema, value },
        headers: vec![("h".into(), Some(b"1".to_vec()))],
        source_partition: None,
        source_offset: None,
        origin: None,
    }
}

/// One transform named `t` of class `class` with `keys`, over `recs`.
fn try_run(class: &str, keys: &[(&str, &str)], recs: Vec<Rec>) -> Result<Vec<Rec>, String> {
    let mut c = vec![
        ("transforms".to_string(), "t".to_string()),
        (
            "transforms.t.type".to_string(),
            format!("org.apache.kafka.connect.transforms.{class}"),
        ),
    ];
    c.extend(
        keys.iter()
            .map(|(k, v)| (format!("transforms.t.{k}"), v.to_string())),
    );
    let chain = Chain::parse(&c.into_iter().collect(), &no_wasm).map_err(|e| e.to_string())?;
    chain.apply(recs, &mut |_, _| panic!("no wasm step"), &mut |_, _, e| {
        Err(e)
    })
}

fn run(class: &str, keys: &[(&str, &str)], r: Rec) -> Rec {
    let mut out = try_run(class, keys, vec![r]).unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn json_of(d: &Data) -> (Option<Value>, Value) {
    match d {
        Data::Json { schema, value } => (schema.clone(), value.clone()),
        other => panic!("not JSON: {other:?}"),
    }
}

fn config_error(class: &str, keys: &[(&str, &str)]) -> String {
    let mut raw = cfg(&[("transforms", "t")]);
    raw.insert(
        "transforms.t.type".into(),
        format!("org.apache.kafka.connect.transforms.{class}"),
    );
    raw.extend(
        keys.iter()
            .map(|(k, v)| (format!("transforms.t.{k}"), v.to_string())),
    );
    Chain::parse(&raw, &no_wasm).unwrap_err().to_string()
}

fn field<'a>(schema: &'a Value, name: &str) -> &'a Value {
    schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {schema}"))
}

fn names(schema: &Value) -> Vec<String> {
    schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn cast_schemaless() {
    let r = rec(
        None,
        json!({"price": 1234, "qty": 300, "flag": "TRUE", "id": 7, "ratio": 2.75, "keep": "x"}),
    );
    let out = run(
        "Cast$Value",
        &[(
            "spec",
            "price:float64, qty:int8, flag:boolean, id:string, ratio:int32, missing:int64",
        )],
        r,
    );
    assert_eq!(
        json_of(&out.value),
        (
            None,
            json!({"price": 1234.0, "qty": 44, "flag": true, "id": "7", "ratio": 2, "keep": "x"})
        )
    );
    // The whole key, from its text.
    let mut r = rec(None, json!({}));
    r.key = Data::Raw(Some(b"\"42\"".to_vec()));
    let out = run("Cast$Key", &[("spec", "int64")], r);
    assert_eq!(json_of(&out.key), (None, json!(42)));
    // Text to a number that is not one fails, naming the field.
    let e = try_run(
        "Cast$Value",
        &[("spec", "n:int32")],
        vec![rec(None, json!({"n": "abc"}))],
    )
    .unwrap_err();
    assert!(
        e.contains("\"n\"") && e.contains("\"abc\"") && e.contains("int32"),
        "{e}"
    );
}

#[test]
fn cast_with_schema() {
    let schema = json!({"type": "struct", "name": "Order", "optional": false, "fields": [
        {"field": "id", "type": "int64", "optional": false},
        {"field": "amount", "type": "string", "optional": true, "default": "0.5"},
        {"field": "at", "type": "int64", "optional": false,
         "name": "org.apache.kafka.connect.data.Timestamp", "version": 1},
        {"field": "note", "type": "string", "optional": true}]});
    let r = rec(
        Some(schema),
        json!({"id": 9, "amount": "12.5", "at": T, "note": null}),
    );
    let out = run(
        "Cast$Value",
        &[("spec", "id:string,amount:float32,at:string,note:int16")],
        r,
    );
    let (s, v) = json_of(&out.value);
    assert_eq!(
        v,
        json!({"id": "9", "amount": 12.5, "at": "2023-11-14T22:13:20.000Z", "note": null})
    );
    let s = s.unwrap();
    assert_eq!(s["name"], "Order");
    assert_eq!(names(&s), ["id", "amount", "at", "note"]);
    assert_eq!(
        field(&s, "id"),
        &json!({"field": "id", "type": "string", "optional": false})
    );
    assert_eq!(
        field(&s, "amount"),
        &json!({"field": "amount", "type": "float32", "optional": true, "default": 0.5})
    );
    assert_eq!(field(&s, "at")["type"], "string");
    assert!(field(&s, "at").get("name").is_none());
    assert_eq!(field(&s, "note")["type"], "int16");
    // A struct field casts to a string only.
    let nested = json!({"type": "struct", "optional": false, "fields": [
        {"field": "inner", "type": "struct", "optional": false, "fields": []}]});
    let e = try_run(
        "Cast$Value",
        &[("spec", "inner:int32")],
        vec![rec(Some(nested), json!({"inner": {}}))],
    )
    .unwrap_err();
    assert!(e.contains("\"inner\"") && e.contains("struct"), "{e}");
    // The whole value, with its schema.
    let out = run(
        "Cast$Value",
        &[("spec", "boolean")],
        rec(Some(json!({"type": "int32", "optional": true})), json!(3)),
    );
    assert_eq!(
        json_of(&out.value),
        (
            Some(json!({"type": "boolean", "optional": true})),
            json!(true)
        )
    );
}

#[test]
fn timestamp_converter_schemaless() {
    let iso = "yyyy-MM-dd'T'HH:mm:ss.SSSX";
    let out = run(
        "TimestampConverter$Value",
        &[("field", "ts"), ("target.type", "string"), ("format", iso)],
        rec(None, json!({"ts": T, "other": 1})),
    );
    assert_eq!(
        json_of(&out.value).1,
        json!({"ts": "2023-11-14T22:13:20.000Z", "other": 1})
    );
    // And back, from text with an offset.
    let out = run(
        "TimestampConverter$Value",
        &[
            ("field", "ts"),
            ("target.type", "Timestamp"),
            ("format", iso),
        ],
        rec(None, json!({"ts": "2023-11-15T00:13:20.000+02:00"})),
    );
    assert_eq!(json_of(&out.value).1, json!({"ts": T}));
    // Unix precisions, both ways.
    let out = run(
        "TimestampConverter$Value",
        &[
            ("field", "ts"),
            ("target.type", "unix"),
            ("unix.precision", "seconds"),
            ("format", iso),
        ],
        rec(None, json!({"ts": "2023-11-14T22:13:20.999Z"})),
    );
    assert_eq!(json_of(&out.value).1, json!({"ts": T / 1000}));
    let out = run(
        "TimestampConverter$Value",
        &[
            ("field", "ts"),
            ("target.type", "Timestamp"),
            ("unix.precision", "seconds"),
        ],
        rec(None, json!({"ts": T / 1000})),
    );
    assert_eq!(json_of(&out.value).1, json!({"ts": T}));
    let out = run(
        "TimestampConverter$Value",
        &[("target.type", "Date"), ("unix.precision", "microseconds")],
        rec(None, json!(T * 1000)),
    );
    assert_eq!(json_of(&out.value), (None, json!(19_675)));
    // The whole key; a map without the field passes.
    let mut r = rec(None, json!({"x": 1}));
    r.key = Data::Json {
        schema: None,
        value: json!("14/11/2023"),
    };
    let out = run(
        "TimestampConverter$Key",
        &[("target.type", "unix"), ("format", "dd/MM/yyyy")],
        r,
    );
    assert_eq!(json_of(&out.key).1, json!(T - 80_000_000));
    assert_eq!(json_of(&out.value).1, json!({"x": 1}));
    let out = run(
        "TimestampConverter$Value",
        &[("field", "ts"), ("target.type", "Time")],
        rec(None, json!({"x": 1})),
    );
    assert_eq!(json_of(&out.value).1, json!({"x": 1}));
    // Text the format does not fit fails, as does text without a format.
    let bad = |keys: &[(&str, &str)]| {
        try_run(
            "TimestampConverter$Value",
            keys,
            vec![rec(None, json!({"ts": "yesterday"}))],
        )
        .unwrap_err()
    };
    let e = bad(&[
        ("field", "ts"),
        ("target.type", "unix"),
        ("format", "yyyy-MM-dd"),
    ]);
    assert!(e.contains("\"ts\"") && e.contains("yesterday"), "{e}");
    assert!(bad(&[("field", "ts"), ("target.type", "unix")]).contains("format"));
}

#[test]
fn timestamp_converter_with_schema() {
    let schema = json!({"type": "struct", "optional": false, "fields": [
        {"field": "id", "type": "int32", "optional": false},
        {"field": "ts", "type": "int64", "optional": true},
        {"field": "day", "type": "string", "optional": false}]});
    let r = rec(Some(schema), json!({"id": 1, "ts": T, "day": "2023-11-14"}));
    let out = run(
        "TimestampConverter$Value",
        &[("field", "ts"), ("target.type", "Timestamp")],
        r,
    );
    let (s, v) = json_of(&out.value);
    assert_eq!(v, json!({"id": 1, "ts": T, "day": "2023-11-14"}));
    let s = s.unwrap();
    assert_eq!(
        field(&s, "ts"),
        &json!({"field": "ts", "type": "int64", "optional": true, "version": 1,
                "name": "org.apache.kafka.connect.data.Timestamp"})
    );
    assert_eq!(names(&s), ["id", "ts", "day"]);
    // A Timestamp field to a Date; a string field to a Date; a null stays null.
    let mut r = out;
    r.value = Data::Json {
        schema: Some(s),
        value: json!({"id": 1, "ts": null, "day": "2023-11-14"}),
    };
    let out = run(
        "TimestampConverter$Value",
        &[
            ("field", "day"),
            ("target.type", "Date"),
            ("format", "yyyy-MM-dd"),
        ],
        r,
    );
    let (s, v) = json_of(&out.value);
    assert_eq!(v, json!({"id": 1, "ts": null, "day": 19_675}));
    let s = s.unwrap();
    assert_eq!(
        field(&s, "day")["name"],
        "org.apache.kafka.connect.data.Date"
    );
    assert_eq!(field(&s, "day")["type"], "int32");
    assert_eq!(field(&s, "day")["optional"], false);
    // Date → string; Time of a Timestamp.
    let out = run(
        "TimestampConverter$Value",
        &[
            ("field", "day"),
            ("target.type", "string"),
            ("format", "EEE d MMM yyyy"),
        ],
        out,
    );
    assert_eq!(json_of(&out.value).1["day"], "Tue 14 Nov 2023");
    let ts_schema = json!({"type": "int64", "optional": false, "version": 1,
                           "name": "org.apache.kafka.connect.data.Timestamp"});
    let out = run(
        "TimestampConverter$Value",
        &[("target.type", "Time")],
        rec(Some(ts_schema), json!(T)),
    );
    assert_eq!(
        json_of(&out.value),
        (
            Some(json!({"type": "int32", "optional": false, "version": 1,
                        "name": "org.apache.kafka.connect.data.Time"})),
            json!(80_000_000)
        )
    );
    // A field that is not a timestamp type, or not in the schema, fails.
    let e = try_run(
        "TimestampConverter$Value",
        &[("field", "id"), ("target.type", "unix")],
        vec![out.clone()],
    );
    assert!(e.is_err());
    let schema = json!({"type": "struct", "optional": false, "fields": [
        {"field": "id", "type": "int32", "optional": false}]});
    let e = try_run(
        "TimestampConverter$Value",
        &[("field", "id"), ("target.type", "unix")],
        vec![rec(Some(schema.clone()), json!({"id": 1}))],
    )
    .unwrap_err();
    assert!(e.contains("int32"), "{e}");
    let e = try_run(
        "TimestampConverter$Value",
        &[("field", "nope"), ("target.type", "unix")],
        vec![rec(Some(schema), json!({"id": 1}))],
    )
    .unwrap_err();
    assert!(e.contains("\"nope\""), "{e}");
}

#[test]
fn flatten_schemaless() {
    let r = rec(
        None,
        json!({"id": 1, "a": {"b": {"c": 2, "d": [1, {"e": 3}]}, "f": null}, "empty": {}}),
    );
    let out = run("Flatten$Value", &[], r.clone());
    assert_eq!(
        json_of(&out.value).1,
        json!({"id": 1, "a.b.c": 2, "a.b.d": [1, {"e": 3}], "a.f": null})
    );
    let mut k = r;
    k.key = k.value.clone();
    let out = run("Flatten$Key", &[("delimiter", "_")], k);
    assert_eq!(json_of(&out.key).1["a_b_c"], 2);
    let e = try_run("Flatten$Value", &[], vec![rec(None, json!([1]))]).unwrap_err();
    assert!(e.contains("struct or map"), "{e}");
}

#[test]
fn flatten_with_schema() {
    let schema = json!({"type": "struct", "name": "Row", "optional": false, "fields": [
        {"field": "id", "type": "int64", "optional": false},
        {"field": "addr", "type": "struct", "optional": true, "fields": [
            {"field": "city", "type": "string", "optional": false},
            {"field": "geo", "type": "struct", "optional": false, "fields": [
                {"field": "lat", "type": "float64", "optional": false}]}]},
        {"field": "meta", "type": "struct", "optional": false, "fields": [
            {"field": "tags", "type": "array", "optional": false,
             "items": {"type": "string", "optional": false}},
            {"field": "attrs", "type": "map", "optional": true,
             "keys": {"type": "string", "optional": false},
             "values": {"type": "string", "optional": false}}]}]});
    let value = json!({"id": 1, "addr": {"city": "Oslo", "geo": {"lat": 59.9}},
                       "meta": {"tags": ["a"], "attrs": {"k": "v"}}});
    let out = run("Flatten$Value", &[], rec(Some(schema.clone()), value));
    let (s, v) = json_of(&out.value);
    assert_eq!(
        v,
        json!({"id": 1, "addr.city": "Oslo", "addr.geo.lat": 59.9,
               "meta.tags": ["a"], "meta.attrs": {"k": "v"}})
    );
    let s = s.unwrap();
    assert_eq!(s["name"], "Row");
    assert_eq!(
        names(&s),
        ["id", "addr.city", "addr.geo.lat", "meta.tags", "meta.attrs"]
    );
    // Optional propagates down from an optional struct.
    let optional: Vec<bool> = s["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["optional"].as_bool().unwrap())
        .collect();
    assert_eq!(optional, [false, true, true, false, true]);
    assert_eq!(field(&s, "meta.tags")["items"]["type"], "string");
    // A null struct's fields are null.
    let value = json!({"id": 2, "addr": null, "meta": {"tags": [], "attrs": null}});
    let out = run("Flatten$Value", &[], rec(Some(schema), value));
    assert_eq!(
        json_of(&out.value).1,
        json!({"id": 2, "addr.city": null, "addr.geo.lat": null, "meta.tags": [],
               "meta.attrs": null})
    );
}

#[test]
fn header_from_schemaless() {
    let value = json!({"id": 24, "name": "John", "tags": ["a", "b"], "gone": null});
    let out = run(
        "HeaderFrom$Value",
        &[
            ("fields", "id,name,tags,gone,absent"),
            ("headers", "record_id,who,tags,gone,absent"),
            ("operation", "copy"),
        ],
        rec(None, value.clone()),
    );
    assert_eq!(json_of(&out.value).1, value);
    let h = |n: &str, v: Option<&str>| (n.to_string(), v.map(|v| v.as_bytes().to_vec()));
    assert_eq!(
        out.headers,
        [
            h("h", Some("1")),
            h("record_id", Some("24")),
            h("who", Some("John")),
            h("tags", Some("[\"a\",\"b\"]")),
            h("gone", None),
            h("absent", None),
        ]
    );
    let mut r = rec(None, json!({}));
    r.key = Data::Raw(Some(br#"{"k": {"x": 1}, "other": true}"#.to_vec()));
    let out = run(
        "HeaderFrom$Key",
        &[("fields", "k"), ("headers", "key_k"), ("operation", "move")],
        r,
    );
    assert_eq!(json_of(&out.key).1, json!({"other": true}));
    assert_eq!(out.headers[1], h("key_k", Some("{\"x\":1}")));
}

#[test]
fn header_from_with_schema() {
    let schema = json!({"type": "struct", "optional": false, "fields": [
        {"field": "id", "type": "int64", "optional": false},
        {"field": "ts", "type": "int64", "optional": false},
        {"field": "name", "type": "string", "optional": false}]});
    let out = run(
        "HeaderFrom$Value",
        &[
            ("fields", "id,ts"),
            ("headers", "record_id,event_timestamp"),
            ("operation", "move"),
        ],
        rec(
            Some(schema.clone()),
            json!({"id": 24, "ts": 1_626_102_708_861i64, "name": "John"}),
        ),
    );
    let (s, v) = json_of(&out.value);
    assert_eq!(v, json!({"name": "John"}));
    assert_eq!(names(&s.unwrap()), ["name"]);
    assert_eq!(out.headers[1], ("record_id".into(), Some(b"24".to_vec())));
    assert_eq!(
        out.headers[2],
        ("event_timestamp".into(), Some(b"1626102708861".to_vec()))
    );
    let out = run(
        "HeaderFrom$Value",
        &[("fields", "name"), ("headers", "n"), ("operation", "copy")],
        rec(Some(schema.clone()), json!({"id": 1, "ts": 2, "name": "x"})),
    );
    assert_eq!(names(&json_of(&out.value).0.unwrap()), ["id", "ts", "name"]);
    assert_eq!(out.headers[1], ("n".into(), Some(b"x".to_vec())));
    let e = try_run(
        "HeaderFrom$Value",
        &[("fields", "nope"), ("headers", "n"), ("operation", "copy")],
        vec![rec(Some(schema), json!({"id": 1, "ts": 2, "name": "x"}))],
    )
    .unwrap_err();
    assert!(e.contains("\"nope\""), "{e}");
}

#[test]
fn tombstones_pass_through() {
    for (class, keys) in [
        ("Cast$Value", &[("spec", "int8")][..]),
        (
            "TimestampConverter$Value",
            &[("target.type", "unix"), ("field", "ts")][..],
        ),
        ("Flatten$Value", &[][..]),
        (
            "HeaderFrom$Value",
            &[("fields", "a"), ("headers", "b"), ("operation", "move")][..],
        ),
    ] {
        let mut r = rec(None, Value::Null);
        r.value = Data::Raw(None);
        let out = run(class, keys, r.clone());
        assert_eq!(out, r, "{class}");
    }
}

#[test]
fn config_errors_name_the_key() {
    let has = |class: &str, keys: &[(&str, &str)], want: &str| {
        let e = config_error(class, keys);
        assert!(e.contains(want), "{class} {keys:?}: {e}");
    };
    has("Cast$Value", &[], "transforms.t.spec");
    has("Cast$Value", &[("spec", "a:int33")], "transforms.t.spec");
    has("Cast$Value", &[("spec", "a:int33")], "int33");
    has(
        "Cast$Value",
        &[("spec", "a:int32,int64")],
        "transforms.t.spec",
    );
    has("Cast$Value", &[("spec", "a:b:int32")], "transforms.t.spec");
    has("Cast$Value", &[("spec", ":int32")], "transforms.t.spec");
    has("Cast$Value", &[("spec", "bytes")], "transforms.t.spec");
    has("TimestampConverter$Value", &[], "transforms.t.target.type");
    has(
        "TimestampConverter$Value",
        &[("target.type", "timestamp")],
        "transforms.t.target.type",
    );
    has(
        "TimestampConverter$Value",
        &[("target.type", "string")],
        "transforms.t.format",
    );
    has(
        "TimestampConverter$Value",
        &[("target.type", "unix"), ("format", "yyyy-ww")],
        "transforms.t.format",
    );
    has(
        "TimestampConverter$Value",
        &[("target.type", "unix"), ("unix.precision", "hours")],
        "transforms.t.unix.precision",
    );
    has(
        "HeaderFrom$Value",
        &[("headers", "a"), ("operation", "copy")],
        "transforms.t.fields",
    );
    has(
        "HeaderFrom$Value",
        &[("fields", "a,b"), ("headers", "x"), ("operation", "copy")],
        "transforms.t.headers",
    );
    has(
        "HeaderFrom$Value",
        &[("fields", "a"), ("headers", "x")],
        "transforms.t.operation",
    );
    has(
        "HeaderFrom$Value",
        &[("fields", "a"), ("headers", "x"), ("operation", "rename")],
        "transforms.t.operation",
    );
    // Bare class names work as for the other native transforms.
    let raw = cfg(&[
        ("transforms", "f"),
        ("transforms.f.type", "Flatten$Value"),
        ("transforms.f.delimiter", "__"),
    ]);
    assert!(Chain::parse(&raw, &no_wasm).is_ok());
}

#[test]
fn listed_as_plugins() {
    let classes: Vec<String> = native_classes().into_iter().map(|(c, _)| c).collect();
    for c in ["Cast", "TimestampConverter", "Flatten", "HeaderFrom"] {
        for side in ["Key", "Value"] {
            let class = format!("org.apache.kafka.connect.transforms.{c}${side}");
            assert!(classes.contains(&class), "{class}");
        }
    }
}
