//! `weir-sql`: the SQL capability's backend. PostgreSQL and SQLite through sqlx, on a tokio
//! runtime of its own (two worker threads), behind the plugin host's blocking traits
//! ([`weir_host::sql`]): a plugin call blocks its task's thread until the database answers or
//! the call's deadline passes, never longer.
//!
//! - **Pools.** One pool per database URL and call deadline, shared by every task granted it.
//!   A connection a plugin holds is its own until it drops it; one left in a transaction, or
//!   in the middle of a statement, is closed rather than returned to the pool, and a
//!   PostgreSQL session returned to it is `RESET ALL` (what a task set stays with it).
//! - **Deadlines.** Every call runs under `tokio::time::timeout_at` with the caller's deadline;
//!   a PostgreSQL session also gets `statement_timeout` at the task's call deadline, so a
//!   statement cut off on our side stops on the server too. A call that runs out of time
//!   loses its connection (a transaction in it is rolled back by the server) and says so.
//! - **Rows.** Query results stream from the server in batches into rows buffers
//!   ([`weir_sqlbuf`]); a cursor asks for each batch, and between requests about one more
//!   batch (as many rows as the last) is read ahead, so the server works while the plugin does.
//! - **SQLite** files are opened with `ATTACH` disabled (`SQLITE_LIMIT_ATTACHED` = 0, which
//!   also stops `VACUUM INTO`), so a plugin reaches only the file its grant names.
//! - **Credentials.** No error carries a URL's password ([`weir_host::sql::mask_url`]).

mod pg;
mod repl;
mod sqlite;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Sqlite};
use tokio::sync::mpsc;
use weir_host::sql::{
    Begin, SqlBackend, SqlChangeStream, SqlConnection, SqlCursor, SqlError, StreamOptions, mask_url,
};
use weir_sqlbuf::{Rows, RowsBuilder, Value};

/// A rows buffer stops growing past this many bytes (the plugin's memory is bounded).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Connections per pool.
const POOL_SIZE: u32 = 16;

/// The sqlx backend. Dropping it stops its runtime (open connections are closed).
#[derive(Debug)]
pub struct SqlxBackend {
    rt: Option<tokio::runtime::Runtime>,
    pools: Mutex<HashMap<(String, u64), Pool>>,
}

#[derive(Debug, Clone)]
enum Pool {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl SqlxBackend {
    pub fn new() -> std::io::Result<SqlxBackend> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-sql")
            .enable_all()
            .build()?;
        Ok(SqlxBackend {
            rt: Some(rt),
            pools: Mutex::new(HashMap::new()),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime lives until drop").handle()
    }

    fn pool(&self, url: &str, call_deadline: Duration) -> Result<Pool, SqlError> {
        let key = (url.to_string(), call_deadline.as_millis() as u64);
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(&key) {
            return Ok(p.clone());
        }
        // Pools connect lazily: building one needs the runtime's context, not a connection.
        let _guard = self.handle().enter();
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Pg(pg::pool(url, call_deadline)?)
        } else if url.starts_with("sqlite:") {
            Pool::Sqlite(sqlite::pool(url)?)
        } else {
            let scheme = url.split(':').next().unwrap_or("");
            return Err(SqlError::Denied(format!(
                "unsupported database URL scheme {scheme:?} (postgres:// or sqlite:)"
            )));
        };
        pools.insert(key, pool.clone());
        Ok(pool)
    }
}

impl Drop for SqlxBackend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl SqlBackend for SqlxBackend {
    fn connect(
        &self,
        url: &str,
        call_deadline: Duration,
        by: Instant,
    ) -> Result<Box<dyn SqlConnection>, SqlError> {
        let pool = self.pool(url, call_deadline)?;
        let mut conn = Conn {
            rt: self.handle().clone(),
            pool,
            url: url.to_string(),
            held: None,
            lent: None,
            in_txn: false,
        };
        // Connect now, so a bad URL or password fails `open`, not the first statement.
        conn.run(by, None, |held| async { (held, Ok(())) })?;
        Ok(Box::new(conn))
    }

    fn change_stream(
        &self,
        url: &str,
        options: &StreamOptions,
        call_deadline: Duration,
        by: Instant,
    ) -> Result<Box<dyn SqlChangeStream>, SqlError> {
        let Pool::Pg(pool) = self.pool(url, call_deadline)? else {
            return Err(SqlError::Denied(
                "change streams need PostgreSQL (a postgres:// URL)".into(),
            ));
        };
        let stream = repl::Stream::open(self.handle().clone(), pool, url, options, by)?;
        Ok(Box::new(stream))
    }
}

/// A pooled connection a plugin holds.
enum Inner {
    Pg(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

/// A connection and whether it may go back to the pool when dropped: not while a
/// transaction is open or a statement was cut off in its middle.
struct Held {
    inner: Option<Inner>,
    dirty: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.dirty {
            match self.inner.take() {
                // Detached and dropped: closed, never handed to another task.
                Some(Inner::Pg(c)) => drop(c.detach()),
                Some(Inner::Sqlite(c)) => drop(c.detach()),
                None => {}
            }
        }
    }
}

/// A request for the next rows of a cursor: at most this many, before this instant.
type Req = (
    u32,
    tokio::time::Instant,
    std::sync::mpsc::SyncSender<Result<Option<Vec<u8>>, SqlError>>,
);

struct Conn {
    rt: tokio::runtime::Handle,
    pool: Pool,
    url: String,
    /// The connection, between calls (none: not acquired yet, lost, or lent to a cursor).
    held: Option<Held>,
    /// Comes back when the open cursor is done with the connection; the cursor's requests
    /// (to know whether the plugin still holds it).
    lent: Option<(std::sync::mpsc::Receiver<Held>, mpsc::WeakSender<Req>)>,
    in_txn: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Returning a connection to its pool spawns onto the pool's runtime.
        let _guard = self.rt.enter();
        self.held.take();
        self.lent.take();
    }
}

const LOST_TXN: &str =
    "the connection was lost inside a transaction, which the database rolled back; begin again";

impl Conn {
    /// Takes the connection back from a cursor the plugin has dropped.
    fn reclaim(&mut self, by: Instant) -> Result<(), SqlError> {
        let Some((back, cursor)) = &self.lent else {
            return Ok(());
        };
        let wait = if cursor.upgrade().is_some() {
            match back.try_recv() {
                Ok(h) => Some(h),
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    return Err(SqlError::Statement(
                        "a cursor of this connection is still open: read it to its end or drop it first"
                            .into(),
                    ));
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            }
        } else {
            back.recv_timeout(by.saturating_duration_since(Instant::now()))
                .ok()
        };
        self.lent = None;
        self.held = wait;
        Ok(())
    }

    /// Runs `f` on the connection (acquired first if needed) on the backend's runtime, before
    /// `by`; on success the transaction state becomes `txn_after` (when given). A call that
    /// runs out of time, or whose connection breaks, loses the connection.
    fn run<T, F, Fut>(&mut self, by: Instant, txn_after: Option<bool>, f: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(Held) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Held, Result<T, sqlx::Error>)> + Send + 'static,
    {
        self.reclaim(by)?;
        let held = self.held.take();
        if held.is_none() && self.in_txn {
            self.in_txn = false;
            return Err(SqlError::Unavailable(LOST_TXN.into()));
        }
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Option<Held>, Result<T, SqlError>)>(1);
        let deadline = tokio::time::Instant::from_std(by);
        let url = self.url.clone();
        self.rt.spawn(async move {
            let work = async {
                let mut held = match held {
                    Some(h) => h,
                    None => match acquire(&pool, deadline).await {
                        Ok(h) => h,
                        Err(e) => return (None, Err(classify(e, &url))),
                    },
                };
                // Until it finishes, the statement leaves the connection unfit for the pool.
                held.dirty = true;
                let (held, r) = f(held).await;
                match r {
                    Ok(v) => (Some(held), Ok(v)),
                    Err(e) if broken(&e) => (None, Err(classify(e, &url))),
                    Err(e) => (Some(held), Err(classify(e, &url))),
                }
            };
            let out = match tokio::time::timeout_at(deadline, work).await {
                Ok(out) => out,
                Err(_) => (
                    None,
                    Err(SqlError::Unavailable(
                        "the database did not answer before the call's deadline; the statement was cancelled".into(),
                    )),
                ),
            };
            let _ = tx.send(out);
        });
        let wait = by.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let (held, result) = rx.recv_timeout(wait).unwrap_or_else(|_| {
            (
                None,
                Err(SqlError::Unavailable(
                    "the database call did not return".into(),
                )),
            )
        });
        match held {
            Some(mut h) => {
                if result.is_ok()
                    && let Some(t) = txn_after
                {
                    self.in_txn = t;
                }
                h.dirty = self.in_txn;
                self.held = Some(h);
                result
            }
            None if self.in_txn => {
                self.in_txn = false;
                Err(match result {
                    Err(SqlError::Unavailable(m)) => {
                        SqlError::Unavailable(format!("{m}; {LOST_TXN}"))
                    }
                    other => other
                        .err()
                        .unwrap_or(SqlError::Unavailable(LOST_TXN.into())),
                })
            }
            None => result,
        }
    }

    fn statement<F, Fut>(
        &mut self,
        by: Instant,
        txn_after: Option<bool>,
        f: F,
    ) -> Result<u64, SqlError>
    where
        F: FnOnce(Held) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Held, Result<u64, sqlx::Error>)> + Send + 'static,
    {
        self.run(by, txn_after, f)
    }
}

async fn acquire(pool: &Pool, deadline: tokio::time::Instant) -> Result<Held, sqlx::Error> {
    let inner = match tokio::time::timeout_at(deadline, async {
        Ok::<_, sqlx::Error>(match pool {
            Pool::Pg(p) => Inner::Pg(p.acquire().await?),
            Pool::Sqlite(p) => Inner::Sqlite(p.acquire().await?),
        })
    })
    .await
    {
        Ok(r) => r?,
        Err(_) => return Err(sqlx::Error::PoolTimedOut),
    };
    Ok(Held {
        inner: Some(inner),
        dirty: false,
    })
}

/// Whether the connection is unusable after this error.
fn broken(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// A sqlx error as the plugin is told it, with the URL's credentials masked.
pub(crate) fn classify(e: sqlx::Error, url: &str) -> SqlError {
    let text = mask_url(&e.to_string(), url);
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // PostgreSQL: connection exceptions (08, but a protocol violation is a bad call),
            // insufficient resources (53), operator
            // intervention (57), serialization failures and deadlocks (40); SQLite: busy and
            // locked (5, 6, with extended codes).
            let retriable = (code.starts_with("08") && code != "08P01")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01"
                || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6));
            let text = match db.code() {
                Some(c) => format!("{text} (code {c})"),
                None => text,
            };
            if retriable {
                SqlError::Unavailable(text)
            } else if code == "28P01" || code == "28000" || code == "3D000" {
                // Bad password, no such role or database: the grant is wrong.
                SqlError::Denied(text)
            } else {
                SqlError::Statement(text)
            }
        }
        sqlx::Error::Configuration(_) => SqlError::Denied(text),
        e if broken(e) => SqlError::Unavailable(text),
        _ => SqlError::Statement(text),
    }
}

impl SqlConnection for Conn {
    fn dialect(&self) -> &'static str {
        match self.pool {
            Pool::Pg(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    fn execute(&mut self, sql: &str, params: &[Value], by: Instant) -> Result<u64, SqlError> {
        let (sql, params) = (sql.to_string(), params.to_vec());
        self.statement(by, None, move |mut h| async move {
            let r = match h.inner.as_mut() {
                Some(Inner::Pg(c)) => pg::execute(c, sql, &params).await,
                Some(Inner::Sqlite(c)) => sqlite::execute(c, sql, &params).await,
                None => Err(sqlx::Error::PoolClosed),
            };
            (h, r)
        })
    }

    fn execute_many(&mut self, sql: &str, params: &Rows<'_>, by: Instant) -> Result<u64, SqlError> {
        let sql = sql.to_string();
        let rows: Vec<Vec<Value>> = params.iter().map(|r| r.to_vec()).collect();
        self.statement(by, None, move |mut h| async move {
            let mut total = 0;
            for params in &rows {
                let r = match h.inner.as_mut() {
                    Some(Inner::Pg(c)) => pg::execute(c, sql.clone(), params).await,
                    Some(Inner::Sqlite(c)) => sqlite::execute(c, sql.clone(), params).await,
                    None => Err(sqlx::Error::PoolClosed),
                };
                match r {
                    Ok(n) => total += n,
                    Err(e) => return (h, Err(e)),
                }
            }
            (h, Ok(total))
        })
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        by: Instant,
    ) -> Result<Box<dyn SqlCursor>, SqlError> {
        // Make sure there is a connection (acquired, or the cursor before it given back).
        self.run(by, None, |h| async { (h, Ok(())) })?;
        let Some(held) = self.held.take() else {
            return Err(SqlError::Unavailable("no connection".into()));
        };
        let (req_tx, req_rx) = mpsc::channel::<Req>(1);
        let (back_tx, back_rx) = std::sync::mpsc::sync_channel(1);
        self.lent = Some((back_rx, req_tx.downgrade()));
        let (sql, params, url, in_txn) = (
            sql.to_string(),
            params.to_vec(),
            self.url.clone(),
            self.in_txn,
        );
        self.rt.spawn(async move {
            let mut held = held;
            held.dirty = true;
            let clean = match held.inner.as_mut() {
                Some(Inner::Pg(c)) => {
                    let q = pg::query(sql, &params);
                    serve(q.fetch(&mut **c), req_rx, &url, pg::write_row).await
                }
                Some(Inner::Sqlite(c)) => {
                    let q = sqlite::query(sql, &params);
                    serve(q.fetch(&mut **c), req_rx, &url, sqlite::write_row).await
                }
                None => false,
            };
            held.dirty = in_txn || !clean;
            let _ = back_tx.send(held);
        });
        Ok(Box::new(Cursor { req: Some(req_tx) }))
    }

    fn begin(&mut self, kind: Begin, by: Instant) -> Result<(), SqlError> {
        if self.in_txn {
            return Err(SqlError::Statement("a transaction is already open".into()));
        }
        let sql = match (&self.pool, kind) {
            (Pool::Sqlite(_), Begin::Immediate) => "BEGIN IMMEDIATE",
            (Pool::Pg(_), Begin::Snapshot) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            _ => "BEGIN",
        };
        self.statement(by, Some(true), move |mut h| async move {
            let r = raw(&mut h, sql).await;
            (h, r)
        })
        .map(drop)
    }

    fn begin_at_snapshot(&mut self, snapshot: &str, by: Instant) -> Result<(), SqlError> {
        if self.in_txn {
            return Err(SqlError::Statement("a transaction is already open".into()));
        }
        if !matches!(self.pool, Pool::Pg(_)) {
            return Err(SqlError::Statement(
                "exported snapshots exist only on PostgreSQL".into(),
            ));
        }
        if snapshot.is_empty() || !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(SqlError::Statement(format!(
                "{snapshot:?} is not a snapshot name"
            )));
        }
        let set = format!("SET TRANSACTION SNAPSHOT '{snapshot}'");
        self.statement(by, Some(true), move |mut h| async move {
            let mut r = raw(&mut h, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await;
            if r.is_ok()
                && let Some(Inner::Pg(c)) = h.inner.as_mut()
            {
                r = pg::execute(c, set, &[]).await;
                if r.is_err() {
                    let _ = pg::execute(c, "ROLLBACK".into(), &[]).await;
                }
            }
            (h, r)
        })
        .map(drop)
    }

    fn commit(&mut self, by: Instant) -> Result<(), SqlError> {
        if !self.in_txn {
            return Err(SqlError::Statement("no transaction is open".into()));
        }
        self.statement(by, Some(false), |mut h| async move {
            let r = raw(&mut h, "COMMIT").await;
            (h, r)
        })
        .map(drop)
    }

    fn rollback(&mut self, by: Instant) -> Result<(), SqlError> {
        if !self.in_txn {
            return Err(SqlError::Statement("no transaction is open".into()));
        }
        let r = self.statement(by, Some(false), |mut h| async move {
            let r = raw(&mut h, "ROLLBACK").await;
            (h, r)
        });
        // Whatever happened, no transaction is open any more (a lost one rolled back).
        self.in_txn = false;
        if let Some(h) = &mut self.held {
            h.dirty = false;
        }
        r.map(drop)
    }
}

async fn raw(h: &mut Held, sql: &'static str) -> Result<u64, sqlx::Error> {
    match h.inner.as_mut() {
        Some(Inner::Pg(c)) => pg::execute(c, sql.into(), &[]).await,
        Some(Inner::Sqlite(c)) => sqlite::execute(c, sql.into(), &[]).await,
        None => Err(sqlx::Error::PoolClosed),
    }
}

/// Answers a cursor's requests from the row stream, until the plugin drops the cursor.
/// Between requests it reads ahead as many rows as the last answer held (so at most about
/// one batch's memory), overlapping the database's work with the plugin's; an error met
/// while reading ahead is the next request's answer. Returns whether the stream was read to
/// its end without an error.
async fn serve<R>(
    mut rows: futures_util::stream::BoxStream<'_, Result<R, sqlx::Error>>,
    mut req: mpsc::Receiver<Req>,
    url: &str,
    write: fn(&R, &mut Option<RowsBuilder>) -> Result<(), sqlx::Error>,
) -> bool {
    let mut done = false;
    let mut failed = false;
    let mut ahead: std::collections::VecDeque<R> = std::collections::VecDeque::new();
    let mut ahead_error: Option<sqlx::Error> = None;
    let mut ahead_limit = 0usize;
    loop {
        let next = if !done && ahead_error.is_none() && ahead.len() < ahead_limit {
            // `StreamExt::next` and `recv` are cancel-safe: a row read is kept, a request
            // received is answered.
            tokio::select! {
                biased;
                r = req.recv() => Some(r),
                row = rows.next() => {
                    match row {
                        None => done = true,
                        Some(Err(e)) => ahead_error = Some(e),
                        Some(Ok(r)) => ahead.push_back(r),
                    }
                    None
                }
            }
        } else {
            Some(req.recv().await)
        };
        let Some(request) = next else { continue };
        let Some((max, by, reply)) = request else {
            break;
        };
        if failed || (done && ahead.is_empty() && ahead_error.is_none()) {
            let _ = reply.send(Ok(None));
            continue;
        }
        let mut out: Option<RowsBuilder> = None;
        let room = |out: &Option<RowsBuilder>| {
            out.as_ref().map_or(0, RowsBuilder::len) < max as usize
                && out.as_ref().map_or(0, RowsBuilder::byte_len) < MAX_BATCH_BYTES
        };
        let mut read: Result<Result<(), sqlx::Error>, tokio::time::error::Elapsed> = Ok(Ok(()));
        while room(&out)
            && let Some(row) = ahead.pop_front()
        {
            if let Err(e) = write(&row, &mut out) {
                read = Ok(Err(e));
                break;
            }
        }
        if matches!(read, Ok(Ok(()))) && room(&out) {
            if ahead_error.is_some() {
                // The rows read before the error go out first; the error comes next.
                if out.is_none()
                    && let Some(e) = ahead_error.take()
                {
                    read = Ok(Err(e));
                }
            } else if !done {
                read = tokio::time::timeout_at(by, async {
                    while room(&out) {
                        match rows.next().await {
                            None => {
                                done = true;
                                break;
                            }
                            Some(Err(e)) => return Err(e),
                            Some(Ok(row)) => write(&row, &mut out)?,
                        }
                    }
                    Ok(())
                })
                .await;
            }
        }
        let answer = match read {
            Ok(Ok(())) => Ok(match out {
                Some(b) => {
                    ahead_limit = b.len();
                    Some(b.finish())
                }
                None if done => None,
                None => Some(RowsBuilder::new([]).finish()),
            }),
            Ok(Err(e)) => {
                failed = true;
                Err(classify(e, url))
            }
            Err(_) => {
                failed = true;
                Err(SqlError::Unavailable(
                    "the database did not send rows before the call's deadline; the query was cancelled".into(),
                ))
            }
        };
        let _ = reply.send(answer);
        if failed {
            return false;
        }
    }
    done && !failed && ahead.is_empty()
}

/// The rows of a query, asked for batch by batch.
struct Cursor {
    req: Option<mpsc::Sender<Req>>,
}

impl SqlCursor for Cursor {
    fn next(&mut self, max_rows: u32, by: Instant) -> Result<Option<Vec<u8>>, SqlError> {
        let Some(req) = &self.req else {
            return Ok(None);
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if req
            .try_send((max_rows.max(1), tokio::time::Instant::from_std(by), tx))
            .is_err()
        {
            self.req = None;
            return Ok(None);
        }
        let wait = by.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let r = rx
            .recv_timeout(wait)
            .unwrap_or_else(|_| Err(SqlError::Unavailable("the query did not answer".into())));
        if !matches!(r, Ok(Some(_))) {
            // Done or failed: the connection goes back to its owner.
            self.req = None;
        }
        r
    }
}
