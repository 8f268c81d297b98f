//! SQLite: pools over a granted file with `ATTACH` disabled, binding, and reading values
//! (SQLite's five storage classes map one to one onto the rows layout's values).

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, Sqlite, TypeInfo, ValueRef};
use weir_host::sql::{SqlError, mask_url};
use weir_sqlbuf::{RowsBuilder, Value, ValueRef as V};

pub(crate) fn pool(url: &str) -> Result<sqlx::SqlitePool, SqlError> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| SqlError::Denied(mask_url(&e.to_string(), url)))?
        // Writers of the same file wait for each other instead of failing at once.
        .busy_timeout(Duration::from_secs(5))
        // A plugin's long query (a snapshot's read of a whole table) is no warning.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    Ok(SqlitePoolOptions::new()
        .max_connections(crate::POOL_SIZE)
        .min_connections(0)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                let mut handle = conn.lock_handle().await?;
                deny_attach(handle.as_raw_handle());
                Ok(())
            })
        })
        .connect_lazy_with(opts))
}

/// No `ATTACH` (nor `VACUUM INTO`, which attaches): the connection reaches only its file.
#[allow(unsafe_code)]
fn deny_attach(db: std::ptr::NonNull<libsqlite3_sys::sqlite3>) {
    // SAFETY: `db` is the open connection sqlx handed us, locked for the duration of this
    // call; sqlite3_limit only reads and sets a limit on it.
    unsafe {
        libsqlite3_sys::sqlite3_limit(db.as_ptr(), libsqlite3_sys::SQLITE_LIMIT_ATTACHED, 0);
    }
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, SqliteArguments>,
    params: &[Value],
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
    for p in params {
        q = match p {
            Value::Null => q.bind(None::<i64>),
            Value::Bool(b) => q.bind(*b),
            Value::Int(i) => q.bind(*i),
            Value::Float(f) => q.bind(*f),
            Value::Text(s) => q.bind(s.clone()),
            Value::Bytes(b) => q.bind(b.clone()),
        };
    }
    q
}

pub(crate) fn query(
    sql: String,
    params: &[Value],
) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    bind(sqlx::query(sqlx::AssertSqlSafe(sql)), params)
}

pub(crate) async fn execute(
    c: &mut PoolConnection<Sqlite>,
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

pub(crate) fn write_row(row: &SqliteRow, out: &mut Option<RowsBuilder>) -> Result<(), sqlx::Error> {
    let b = out.get_or_insert_with(|| {
        RowsBuilder::new(
            row.columns()
                .iter()
                .map(|c| (c.name(), c.type_info().name())),
        )
    });
    for i in 0..row.columns().len() {
        let v = row.try_get_raw(i)?;
        if v.is_null() {
            b.push(V::Null);
            continue;
        }
        let class = v.type_info().name().to_string();
        match class.as_str() {
            "INTEGER" | "BOOLEAN" => b.push(V::Int(row.try_get::<i64, _>(i)?)),
            "REAL" => b.push(V::Float(row.try_get::<f64, _>(i)?)),
            "BLOB" => b.push(V::Bytes(row.try_get::<&[u8], _>(i)?)),
            _ => b.push(V::Text(row.try_get::<&str, _>(i)?)),
        }
    }
    Ok(())
}
