//! The SQL capability's backend, as the host sees it: traits a database crate implements
//! (`weir-sql` over sqlx, injected with [`crate::Host::with_sql_backend`]), so the host
//! itself gains no database dependency. Every call takes a deadline and must return by it;
//! rows and many-row parameters travel in the rows layout ([`weir_sqlbuf`], `wit/ROWS.md`).
//!
//! The URLs a backend is given carry credentials: an implementation never puts one in an
//! error or a log line ([`mask_url`] takes a password out of any text).

use std::time::Instant;

pub use weir_sqlbuf::{Rows, RowsBuilder, Value, ValueRef};

/// Why a SQL call failed, as the plugin is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The connector's config grants no such connection, or its URL cannot be used.
    #[error("denied: {0}")]
    Denied(String),
    /// The statement failed (syntax, a constraint, a type): it would fail again as it is.
    #[error("statement failed: {0}")]
    Statement(String),
    /// The database could not be reached, the connection was lost, or the call ran out of
    /// time: worth retrying later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// How a transaction starts (the WIT `begin-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// The database's default.
    Default,
    /// The write lock now (SQLite `BEGIN IMMEDIATE`).
    Immediate,
    /// A consistent read-only view for the transaction's life.
    Snapshot,
}

/// Opens connections for grants.
pub trait SqlBackend: Send + Sync + std::fmt::Debug {
    /// A connection to the database at `url` (a secret). `call_deadline` is the task's whole
    /// call deadline, for a server-side statement timeout; the connection is made by `by`.
    fn connect(
        &self,
        url: &str,
        call_deadline: std::time::Duration,
        by: Instant,
    ) -> Result<Box<dyn SqlConnection>, SqlError>;

    /// A change stream from the database at `url` (PostgreSQL logical replication). The
    /// default refuses: a backend without change streams.
    fn change_stream(
        &self,
        url: &str,
        options: &StreamOptions,
        call_deadline: std::time::Duration,
        by: Instant,
    ) -> Result<Box<dyn SqlChangeStream>, SqlError> {
        let _ = (url, options, call_deadline, by);
        Err(SqlError::Denied(
            "this host's SQL backend has no change streams".into(),
        ))
    }
}

/// What a change stream reads (the WIT `stream-options`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamOptions {
    pub slot: String,
    pub publication: String,
    /// `schema.table` names for a publication the open creates; empty: all tables.
    pub tables: Vec<String>,
    pub create_slot: bool,
}

/// A database's change log, read in batches (`wit/CHANGES.md`). Dropping it ends the
/// replication session; the slot stays.
pub trait SqlChangeStream: Send {
    /// The snapshot exported when the open created the slot, until the first `next`.
    fn exported_snapshot(&self) -> Option<String>;
    /// The next changes buffer: at most `max` changes, waiting at most `wait` for the first.
    fn next(
        &mut self,
        max: u32,
        wait: std::time::Duration,
        by: Instant,
    ) -> Result<Vec<u8>, SqlError>;
    /// Everything up to `lsn` is stored: the server may free its log before it.
    fn confirm(&mut self, lsn: u64);
    /// The slot's name.
    fn slot(&self) -> &str;
    /// The log the slot holds back on the server, in bytes, as last measured.
    fn retained_bytes(&self) -> Option<u64>;
}

/// One connection, used by one task. Statements run one at a time; while a cursor of it is
/// open, other calls fail with [`SqlError::Statement`] saying so.
pub trait SqlConnection: Send {
    /// `postgres` or `sqlite`.
    fn dialect(&self) -> &'static str;
    /// Runs a statement; the number of rows it affected.
    fn execute(&mut self, sql: &str, params: &[Value], by: Instant) -> Result<u64, SqlError>;
    /// Runs a statement once per row of `params` (a rows buffer); the rows affected in all.
    fn execute_many(&mut self, sql: &str, params: &Rows<'_>, by: Instant) -> Result<u64, SqlError>;
    /// Starts a query; its rows are read through the cursor.
    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        by: Instant,
    ) -> Result<Box<dyn SqlCursor>, SqlError>;
    fn begin(&mut self, kind: Begin, by: Instant) -> Result<(), SqlError>;
    /// A read-only transaction seeing what the exported `snapshot` saw.
    fn begin_at_snapshot(&mut self, snapshot: &str, by: Instant) -> Result<(), SqlError>;
    fn commit(&mut self, by: Instant) -> Result<(), SqlError>;
    fn rollback(&mut self, by: Instant) -> Result<(), SqlError>;
}

/// The rows of a query, read in batches. Dropping it ends the query and frees its connection.
pub trait SqlCursor: Send {
    /// The next rows as a rows buffer (at most `max_rows`, and a few MiB), or none when the
    /// query has no more.
    fn next(&mut self, max_rows: u32, by: Instant) -> Result<Option<Vec<u8>>, SqlError>;
}

/// `text` with the password of `url` (and `url` itself) replaced by `***`.
pub fn mask_url(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &masked_url(url));
    if let Some(pw) = url_password(url)
        && pw.len() >= 3
    {
        out = out.replace(pw, "***");
    }
    out
}

/// `url` as it may be shown: its password replaced by `***`.
pub fn masked_url(url: &str) -> String {
    match url_password(url) {
        Some(pw) => {
            let start = pw.as_ptr() as usize - url.as_ptr() as usize;
            format!("{}***{}", &url[..start], &url[start + pw.len()..])
        }
        None => url.to_string(),
    }
}

/// The password in `scheme://user:password@host/...`, if there is one.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, pw) = userinfo.split_once(':')?;
    (!pw.is_empty()).then_some(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        let url = "postgres://weir:s3cr%40t@db:5432/app?sslmode=disable";
        assert_eq!(
            masked_url(url),
            "postgres://weir:***@db:5432/app?sslmode=disable"
        );
        assert_eq!(
            mask_url(
                &format!("cannot reach {url}; password s3cr%40t refused"),
                url
            ),
            "cannot reach postgres://weir:***@db:5432/app?sslmode=disable; password *** refused"
        );
        assert_eq!(masked_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(masked_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(masked_url("postgres://u:@h/d"), "postgres://u:@h/d");
    }
}
