//! SQL databases the connector's config grants (`weir.sql.<name>.url`): connections by grant
//! name, statements with typed parameters, transactions, and queries whose rows arrive in
//! batches as [`Rows`] views (one buffer per batch, `wit/ROWS.md`).
//!
//! ```ignore
//! use weir_sdk::sql::{Connection, Value};
//! let db = Connection::open("db")?;
//! db.execute("INSERT INTO t (id, name) VALUES ($1, $2)", &[Value::Int(1), Value::Text("a".into())])?;
//! let mut cursor = db.query("SELECT id, name FROM t", &[])?;
//! while let Some(batch) = cursor.next(1000)? {
//!     let rows = weir_sdk::sql::Rows::parse(&batch).expect("the host sends valid rows");
//!     for row in rows.iter() {
//!         let id = row.get(0);
//!     }
//! }
//! ```
//!
//! A [`ChangeStream`] reads PostgreSQL's change log (logical replication) in batches, each a
//! [`Changes`] view (`wit/CHANGES.md`); see the `postgres-source` connector.

pub use crate::bindings::weir::connector::sql::{
    BeginKind, ChangeStream, Connection, Cursor, SqlError, StreamOptions, Value,
};
pub use weir_sqlbuf::changes::{
    Change, ChangeColumn, ChangeMeta, Changes, Image, ImageKind, Op, Relation,
};
pub use weir_sqlbuf::{Column, Row, Rows, RowsBuilder, RowsError, Value as OwnedValue, ValueRef};

impl From<SqlError> for crate::Error {
    /// `unavailable` is retriable; a denied grant or a failed statement stops the task.
    fn from(e: SqlError) -> crate::Error {
        match e {
            SqlError::Unavailable(_) => crate::Error::Retriable(e.to_string()),
            _ => crate::Error::Fatal(e.to_string()),
        }
    }
}

/// A borrowed value as a statement parameter.
pub fn param(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Bool(b) => Value::Boolean(b),
        ValueRef::Int(i) => Value::Int(i),
        ValueRef::Float(f) => Value::Float(f),
        ValueRef::Text(s) => Value::Text(s.to_string()),
        ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
    }
}
