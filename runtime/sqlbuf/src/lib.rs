//! `weir-sqlbuf`: the Weir rows layout (`wit/ROWS.md`), in which SQL rows cross the plugin
//! boundary as one buffer per batch: the columns (name and database type) once, then every
//! value as a tag and its bytes. Query results come back in it, and a statement run for many
//! parameter rows at once (`execute-many`) takes its parameters in it.
//!
//! [`Rows::parse`] validates a whole buffer once (tags known, lengths inside the buffer, UTF-8
//! where text is promised, counts consistent) and then hands out [`Row`] views that read values
//! straight from the bytes. [`RowsBuilder`] writes a buffer. A malformed buffer is a
//! [`RowsError`] naming what is wrong, never a panic. No dependencies: the Rust SDK uses this
//! crate inside `wasm32-wasip2` plugins.

pub mod changes;

/// The first four bytes of every rows buffer (version 1 of the layout).
pub const MAGIC: [u8; 4] = *b"WRS1";

/// Value tags.
pub mod tag {
    pub const NULL: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const INT: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const TEXT: u8 = 5;
    pub const BYTES: u8 = 6;
}

/// A value owned: a query parameter, or a column value copied out of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A value read from a buffer, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl ValueRef<'_> {
    pub fn to_owned(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, ValueRef::Null)
    }
}

impl Value {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Int(i) => ValueRef::Int(*i),
            Value::Float(f) => ValueRef::Float(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
        }
    }
}

/// A buffer that is not a valid rows buffer: what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsError(pub String);

impl std::fmt::Display for RowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowsError {}

/// One column: its name and the database's name for its type (`int8`, `text`, `INTEGER`,
/// empty when the database declares none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    pub name: &'a str,
    pub type_name: &'a str,
}

/// Writes a rows buffer: the columns first, then values row after row.
#[derive(Debug)]
pub struct RowsBuilder {
    buf: Vec<u8>,
    columns: usize,
    rows: u32,
    /// Values written in the current row.
    in_row: usize,
    count_at: usize,
}

impl RowsBuilder {
    /// A buffer with these columns (name, type name).
    pub fn new<'c>(columns: impl IntoIterator<Item = (&'c str, &'c str)>) -> RowsBuilder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&0u32.to_le_bytes());
        let mut n = 0usize;
        for (name, ty) in columns {
            put_short(&mut buf, name);
            put_short(&mut buf, ty);
            n += 1;
        }
        buf[4..8].copy_from_slice(&(n as u32).to_le_bytes());
        let count_at = buf.len();
        buf.extend_from_slice(&0u32.to_le_bytes());
        RowsBuilder {
            buf,
            columns: n,
            rows: 0,
            in_row: 0,
            count_at,
        }
    }

    /// A buffer of `columns` unnamed columns (statement parameters).
    pub fn params(columns: usize) -> RowsBuilder {
        RowsBuilder::new(std::iter::repeat_n(("", ""), columns))
    }

    /// Appends the next value of the current row; a row ends after as many values as there
    /// are columns.
    pub fn push(&mut self, v: ValueRef<'_>) {
        match v {
            ValueRef::Null => self.buf.push(tag::NULL),
            ValueRef::Bool(false) => self.buf.push(tag::FALSE),
            ValueRef::Bool(true) => self.buf.push(tag::TRUE),
            ValueRef::Int(i) => {
                self.buf.push(tag::INT);
                self.buf.extend_from_slice(&i.to_le_bytes());
            }
            ValueRef::Float(f) => {
                self.buf.push(tag::FLOAT);
                self.buf.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            ValueRef::Text(s) => self.put_long(tag::TEXT, s.as_bytes()),
            ValueRef::Bytes(b) => self.put_long(tag::BYTES, b),
        }
        self.in_row += 1;
        if self.in_row >= self.columns {
            self.in_row = 0;
            self.rows += 1;
        }
    }

    /// Appends a whole row.
    pub fn push_row<'v>(&mut self, values: impl IntoIterator<Item = ValueRef<'v>>) {
        for v in values {
            self.push(v);
        }
    }

    fn put_long(&mut self, t: u8, b: &[u8]) {
        self.buf.push(t);
        self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(b);
    }

    /// Rows completed so far.
    pub fn len(&self) -> usize {
        self.rows as usize
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes written so far (to bound a batch by size).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// The buffer. A row left incomplete is an error the reader reports, so finish rows.
    pub fn finish(mut self) -> Vec<u8> {
        let at = self.count_at;
        self.buf[at..at + 4].copy_from_slice(&self.rows.to_le_bytes());
        self.buf
    }
}

fn put_short(buf: &mut Vec<u8>, s: &str) {
    // Column names and type names are short; longer ones are cut at a character boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.extend_from_slice(&(end as u16).to_le_bytes());
    buf.extend_from_slice(&s.as_bytes()[..end]);
}

/// A validated rows buffer.
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    columns: Vec<Column<'a>>,
    /// Where each row's first value starts, and the end of the buffer's values.
    starts: Vec<u32>,
    buf: &'a [u8],
}

impl<'a> Rows<'a> {
    /// Validates `buf` entirely.
    pub fn parse(buf: &'a [u8]) -> Result<Rows<'a>, RowsError> {
        if buf.len() > u32::MAX as usize {
            return Err(RowsError("rows buffer larger than 4 GiB".into()));
        }
        if buf.len() < 12 || buf[..4] != MAGIC {
            return Err(RowsError(
                "not a rows buffer (no WRS1 magic at its start)".into(),
            ));
        }
        let mut r = Reader { buf, at: 4 };
        let ncols = r.u32("column count")? as usize;
        if ncols > buf.len() / 4 {
            return Err(RowsError(format!(
                "column count {ncols} is more than the buffer can hold"
            )));
        }
        let mut columns = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let name = r.short(i, "name")?;
            let type_name = r.short(i, "type name")?;
            columns.push(Column { name, type_name });
        }
        let nrows = r.u32("row count")? as usize;
        let per_row = ncols.max(1);
        if ncols == 0 && nrows > 0 {
            return Err(RowsError(format!("{nrows} rows of no columns")));
        }
        if nrows > (buf.len() - r.at) / per_row {
            return Err(RowsError(format!(
                "row count {nrows} is more than the buffer can hold"
            )));
        }
        let mut starts = Vec::with_capacity(nrows + 1);
        for row in 0..nrows {
            starts.push(r.at as u32);
            for (col, c) in columns.iter().enumerate() {
                r.value().map_err(|e| {
                    RowsError(format!("row {row}, column {col} ({}): {}", c.name, e.0))
                })?;
            }
        }
        if r.at != buf.len() {
            return Err(RowsError(format!(
                "{} bytes after the last row",
                buf.len() - r.at
            )));
        }
        starts.push(r.at as u32);
        Ok(Rows {
            columns,
            starts,
            buf,
        })
    }

    pub fn columns(&self) -> &[Column<'a>] {
        &self.columns
    }

    /// The index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> Row<'a> {
        let (from, to) = (self.starts[i] as usize, self.starts[i + 1] as usize);
        Row {
            bytes: &self.buf[from..to],
            columns: self.columns.len(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'a>> + '_ {
        (0..self.len()).map(|i| self.row(i))
    }
}

/// One row of a validated buffer.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    bytes: &'a [u8],
    columns: usize,
}

impl<'a> Row<'a> {
    /// The row's values in column order.
    pub fn values(&self) -> impl Iterator<Item = ValueRef<'a>> + 'a {
        let mut r = Reader {
            buf: self.bytes,
            at: 0,
        };
        // The buffer was validated: every value reads.
        (0..self.columns).map(move |_| r.value().unwrap_or(ValueRef::Null))
    }

    /// The value of column `i` (null past the last column).
    pub fn get(&self, i: usize) -> ValueRef<'a> {
        self.values().nth(i).unwrap_or(ValueRef::Null)
    }

    /// The values, owned.
    pub fn to_vec(&self) -> Vec<Value> {
        self.values().map(ValueRef::to_owned).collect()
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RowsError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| RowsError(format!("{what} runs past the end of the buffer")))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, RowsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, RowsError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    fn u16(&mut self, what: &str) -> Result<u16, RowsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn short(&mut self, col: usize, what: &str) -> Result<&'a str, RowsError> {
        let b = self.take(2, what)?;
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
        let s = self.take(n, what)?;
        std::str::from_utf8(s).map_err(|_| RowsError(format!("column {col}: {what} is not UTF-8")))
    }

    fn value(&mut self) -> Result<ValueRef<'a>, RowsError> {
        let t = self.take(1, "value tag")?[0];
        Ok(match t {
            tag::NULL => ValueRef::Null,
            tag::FALSE => ValueRef::Bool(false),
            tag::TRUE => ValueRef::Bool(true),
            tag::INT => {
                let b = self.take(8, "integer")?;
                ValueRef::Int(i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            tag::FLOAT => {
                let b = self.take(8, "float")?;
                ValueRef::Float(f64::from_bits(u64::from_le_bytes(
                    b.try_into().unwrap_or([0; 8]),
                )))
            }
            tag::TEXT => {
                let n = self.u32("text length")? as usize;
                let b = self.take(n, "text")?;
                ValueRef::Text(
                    std::str::from_utf8(b).map_err(|_| RowsError("text is not UTF-8".into()))?,
                )
            }
            tag::BYTES => {
                let n = self.u32("bytes length")? as usize;
                ValueRef::Bytes(self.take(n, "bytes")?)
            }
            other => return Err(RowsError(format!("unknown value tag {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".{0,20}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ]
    }

    #[test]
    fn columns_and_rows_round_trip() {
        let mut b = RowsBuilder::new([("id", "int8"), ("name", "text"), ("blob", "bytea")]);
        b.push_row([
            ValueRef::Int(1),
            ValueRef::Text("é"),
            ValueRef::Bytes(&[0, 1]),
        ]);
        b.push_row([ValueRef::Int(-2), ValueRef::Null, ValueRef::Bool(true)]);
        assert_eq!(b.len(), 2);
        let buf = b.finish();
        let rows = Rows::parse(&buf).unwrap();
        assert_eq!(
            rows.columns()[1],
            Column {
                name: "name",
                type_name: "text"
            }
        );
        assert_eq!(rows.column("blob"), Some(2));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.row(0).get(1), ValueRef::Text("é"));
        assert_eq!(
            rows.row(1).to_vec(),
            vec![Value::Int(-2), Value::Null, Value::Bool(true)]
        );
        let empty = RowsBuilder::new([("a", "")]).finish();
        assert!(Rows::parse(&empty).unwrap().is_empty());
    }

    #[test]
    fn malformed_buffers_are_refused_with_the_reason() {
        let mut b = RowsBuilder::new([("id", "int8")]);
        b.push(ValueRef::Text("x"));
        let good = b.finish();
        assert!(
            Rows::parse(&good[..good.len() - 1])
                .unwrap_err()
                .0
                .contains("row 0, column 0 (id): text runs past")
        );
        let mut bad_tag = good.clone();
        let at = good.len() - 6;
        bad_tag[at] = 9;
        assert!(
            Rows::parse(&bad_tag)
                .unwrap_err()
                .0
                .contains("unknown value tag 9")
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(
            Rows::parse(&trailing)
                .unwrap_err()
                .0
                .contains("1 bytes after")
        );
        assert!(
            Rows::parse(b"WRB1\0\0\0\0\0\0\0\0")
                .unwrap_err()
                .0
                .contains("magic")
        );
        let mut bad_utf8 = good;
        let n = bad_utf8.len();
        bad_utf8[n - 1] = 0xff;
        assert!(Rows::parse(&bad_utf8).unwrap_err().0.contains("not UTF-8"));
    }

    proptest! {
        #[test]
        fn any_rows_round_trip(cols in 1usize..5, values in proptest::collection::vec(value(), 0..40)) {
            let mut b = RowsBuilder::params(cols);
            let whole = values.len() / cols * cols;
            for v in &values[..whole] {
                b.push(v.as_ref());
            }
            let buf = b.finish();
            let rows = Rows::parse(&buf).unwrap();
            prop_assert_eq!(rows.len(), whole / cols);
            let back: Vec<Value> = rows.iter().flat_map(|r| r.to_vec()).collect();
            prop_assert_eq!(&back[..], &values[..whole]);
        }

        #[test]
        fn no_buffer_panics_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = MAGIC.to_vec();
            buf.extend_from_slice(&bytes);
            if let Ok(rows) = Rows::parse(&buf) {
                for r in rows.iter() {
                    let _ = r.to_vec();
                }
            }
        }
    }
}
