//! `weir bench cdc`: PostgreSQL change data capture end to end in this process (the
//! postgres-source connector over the SQL capability, the Connect runtime, a broker on disk),
//! against PostgreSQL's own tools on the same server, the same changes, in the same run:
//!
//! - (a) 1,000,000 inserts in one transaction and (b) 1,000,000 updates in 10,000
//!   transactions of 100, already committed when capture starts (each side reads them from a
//!   slot of its own created before the workload): changes/s from the start of capture until
//!   every change is stored in the topic, against `pg_recvlogical` streaming the same slot
//!   contents (pgoutput, binary) to a file (goals: ≥ 1x its rate and ≥ 100,000 changes/s),
//!   with the process's peak resident memory while capturing;
//! - (c) the initial snapshot of the 1,000,000-row table (`snapshot.mode=initial_only`) in
//!   rows/s against `COPY ... TO STDOUT` into /dev/null through psql (goal ≥ 50% of it), read
//!   by one task and then split over two (`snapshot.max.threads` = `tasks.max` = 2).
//!
//! Each Weir figure is measured twice: with JsonConverter's default `schemas.enable=true`
//! (Debezium's JSON, the record's schema in every record: about 2.2 KB per change here) and
//! with `schemas.enable=false` (the payload alone: about 400 bytes).
//!
//! The server needs `wal_level=logical` and a role that may create databases and replication
//! slots; the benchmark works in a database of its own (`weir_bench`, dropped at the end) and
//! slots named `weir_bench_*`. `scripts/bench-cdc` starts such a server. Prints figures and a
//! verdict per goal; never fails on a timing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench_pipeline::{Rig, map, rss_mb};

#[derive(Debug, clap::Args)]
pub struct CdcArgs {
    /// PostgreSQL URL (postgres://user:password@host:port/db) of a server with
    /// wal_level=logical; the benchmark creates and drops its own database there.
    #[arg(long)]
    pg_url: String,
    /// Directory of PostgreSQL's client programs (psql, pg_recvlogical); by default the
    /// newest /usr/lib/postgresql/*/bin, else $PATH.
    #[arg(long)]
    pg_bin: Option<PathBuf>,
    /// Row changes per run.
    #[arg(long, default_value_t = 1_000_000)]
    changes: u64,
    /// Transactions of run (b).
    #[arg(long, default_value_t = 10_000)]
    txns: u64,
}

const DB: &str = "weir_bench";
const TABLE: &str = "bench_cdc";
const PUBLICATION: &str = "weir_bench";

/// psql and pg_recvlogical of one server.
struct Pg {
    bin: PathBuf,
    /// The URL of the benchmark's database.
    url: String,
    /// The URL the user gave (its database is where `weir_bench` is created and dropped).
    admin_url: String,
}

impl Pg {
    fn tool(&self, name: &str) -> PathBuf {
        let p = self.bin.join(name);
        if p.exists() { p } else { PathBuf::from(name) }
    }

    /// Runs SQL through psql (stopping at the first error); its output.
    fn sql_on(&self, url: &str, sql: &str) -> anyhow::Result<String> {
        let out = tokio::task::block_in_place(|| {
            Command::new(self.tool("psql"))
                .args([
                    "-X",
                    "-q",
                    "-t",
                    "-A",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    url,
                    "-c",
                    sql,
                ])
                .stdin(Stdio::null())
                .output()
        })
        .context("cannot run psql (is PostgreSQL's client installed? --pg-bin)")?;
        anyhow::ensure!(
            out.status.success(),
            "psql failed on {:?}: {}",
            sql.lines().next().unwrap_or_default(),
            weir_host::sql::mask_url(String::from_utf8_lossy(&out.stderr).trim(), url)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        self.sql_on(&self.url, sql)
    }

    fn create_slot(&self, slot: &str) -> anyhow::Result<()> {
        self.sql(&format!(
            "SELECT 1 FROM pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))?;
        Ok(())
    }

    /// Drops the benchmark's slots once no one uses them (a deleted connector's task lets go
    /// of its slot shortly after).
    async fn release_slots(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sql_on(
            &self.admin_url,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'weir\\_bench\\_%' AND active",
        )? != "0"
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.drop_slots()
    }

    /// Drops the benchmark's slots that no one is using.
    fn drop_slots(&self) -> anyhow::Result<()> {
        self.sql_on(
            &self.admin_url,
            "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots \
             WHERE slot_name LIKE 'weir\\_bench\\_%' AND NOT active",
        )?;
        Ok(())
    }
}

/// The URL with its database replaced.
fn with_db(url: &str, db: &str) -> anyhow::Result<String> {
    let scheme_end = url.find("://").context("--pg-url is not a URL")? + 3;
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    Ok(format!("{}/{db}{query}", &base[..host_end]))
}

fn default_pg_bin() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, p)| p).unwrap_or_default()
}

/// Records stored in every partition of `topic`.
fn stored(broker: &weir_broker::BrokerHandle, topic: &str) -> i64 {
    let Some(t) = broker.topic(topic) else {
        return 0;
    };
    (0..t.partitions as i32)
        .map(|p| broker.offsets(topic, p).map_or(0, |o| o.log_end))
        .sum()
}

/// One capture run's figures.
struct Capture {
    /// Changes/s from the connector's creation until all are stored.
    total: f64,
    /// Changes/s from the first record stored (the plugin's start not counted).
    steady: f64,
    peak_rss: f64,
}

/// Creates connector `name` and waits until `n` records are in `topic`; stops early with
/// the task's error if it fails.
async fn capture(
    rt: &weir_connect::Runtime,
    broker: &weir_broker::BrokerHandle,
    name: &str,
    config: std::collections::BTreeMap<String, String>,
    topic: &str,
    n: i64,
) -> anyhow::Result<Capture> {
    let mut peak = rss_mb();
    let t0 = Instant::now();
    rt.create(name, config).await?;
    let deadline = t0 + Duration::from_secs(900);
    let mut first: Option<(Instant, i64)> = None;
    let mut last_status = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let have = stored(broker, topic);
        if first.is_none() && have > 0 {
            first = Some((Instant::now(), have));
        }
        if have >= n {
            break;
        }
        peak = peak.max(rss_mb());
        if last_status.elapsed() > Duration::from_millis(500) {
            last_status = Instant::now();
            let st = rt.status(name).await?;
            if let Some(t) = st
                .tasks
                .iter()
                .find(|t| t.state == weir_connect::State::Failed)
            {
                anyhow::bail!(
                    "connector {name} failed: {}",
                    t.trace.as_deref().unwrap_or("no trace")
                );
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!("          ... {have} of {n} stored");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name}: {have} of {n} records after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t0.elapsed();
    let (t1, base) = first.unwrap_or((t0, 0));
    Ok(Capture {
        total: n as f64 / took.as_secs_f64(),
        steady: (n - base) as f64 / t1.elapsed().as_secs_f64().max(1e-9),
        peak_rss: peak,
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

/// `pg_recvlogical` from `slot` until `endpos` into a file: changes/s.
fn recvlogical(pg: &Pg, slot: &str, endpos: &str, out: &Path, n: u64) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let status = tokio::task::block_in_place(|| {
        Command::new(pg.tool("pg_recvlogical"))
            .args(["-d", &pg.url, "--slot", slot, "--start", "--no-loop"])
            .args(["--endpos", endpos, "-f"])
            .arg(out)
            .args([
                "-o",
                "proto_version=1",
                "-o",
                &format!("publication_names={PUBLICATION}"),
                "-o",
                "binary=true",
            ])
            .stdin(Stdio::null())
            .status()
    })
    .context("cannot run pg_recvlogical")?;
    let took = t0.elapsed();
    anyhow::ensure!(status.success(), "pg_recvlogical failed: {status}");
    Ok(n as f64 / took.as_secs_f64())
}

pub async fn run(args: CdcArgs) -> anyhow::Result<()> {
    let n = args.changes.max(1000);
    let txns = args.txns.clamp(1, n);
    let per_txn = n / txns;
    let n_updates = per_txn * txns;
    let pg = Pg {
        bin: args.pg_bin.clone().unwrap_or_else(default_pg_bin),
        url: with_db(&args.pg_url, DB)?,
        admin_url: args.pg_url.clone(),
    };
    let level = pg.sql_on(&pg.admin_url, "SHOW wal_level")?;
    anyhow::ensure!(
        level == "logical",
        "the server's wal_level is {level}; change data capture needs logical"
    );
    let version = pg.sql_on(&pg.admin_url, "SHOW server_version")?;
    pg.drop_slots()?;
    pg.sql_on(
        &pg.admin_url,
        &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
    )?;
    pg.sql_on(&pg.admin_url, &format!("CREATE DATABASE {DB}"))?;
    pg.sql(&format!(
        "ALTER DATABASE {DB} SET synchronous_commit = off; \
         CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name text NOT NULL, amount double precision, \
         ts timestamptz NOT NULL DEFAULT now()); \
         CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}; \
         CREATE PROCEDURE bench_updates(txns bigint, per bigint) LANGUAGE plpgsql AS $$ \
         BEGIN FOR i IN 0..txns - 1 LOOP \
           UPDATE {TABLE} SET amount = amount + 1 WHERE id > i * per AND id <= (i + 1) * per; \
           COMMIT; \
         END LOOP; END $$"
    ))?;
    println!(
        "PostgreSQL {version}; {n} changes per run; pg_recvlogical and psql from {}",
        pg.bin.display()
    );

    let rig = Rig::start("cdc").await?;
    let host = weir_host::Host::new(weir_host::HostConfig {
        cache_dir: crate::plugin::cache_dir(),
        memory_limit: 256 << 20,
        call_deadline: Duration::from_secs(30),
    })?
    .with_sql_backend(std::sync::Arc::new(
        weir_sql::SqlxBackend::new().context("cannot start the SQL backend")?,
    ));
    let rt = rig.connect(host, None).await?;
    let rss_start = rss_mb();
    let connector = |prefix: &str, slot: &str, mode: &str, schemas: bool| {
        let schemas = schemas.to_string();
        map(&[
            (
                "connector.class",
                "io.debezium.connector.postgresql.PostgresConnector",
            ),
            ("weir.sql.db.url", &pg.url),
            ("topic.prefix", prefix),
            ("slot.name", slot),
            ("publication.name", PUBLICATION),
            ("publication.autocreate.mode", "disabled"),
            ("table.include.list", &format!("public.{TABLE}")),
            ("snapshot.mode", mode),
            (
                "key.converter",
                "org.apache.kafka.connect.json.JsonConverter",
            ),
            ("key.converter.schemas.enable", &schemas),
            (
                "value.converter",
                "org.apache.kafka.connect.json.JsonConverter",
            ),
            ("value.converter.schemas.enable", &schemas),
        ])
    };
    // Debezium's JSON with its schema in every record (JsonConverter's default), then the
    // payload alone (schemas.enable=false).
    let converters = [(true, "with schemas   "), (false, "schemas off    ")];

    let workloads: [(&str, String, String); 2] = [
        (
            "a",
            format!("{n} inserts in 1 transaction"),
            format!(
                "INSERT INTO {TABLE} (id, name, amount) \
                 SELECT g, 'customer-' || lpad(g::text, 10, '0'), g * 1.5 FROM generate_series(1, {n}) g"
            ),
        ),
        (
            "b",
            format!("{n_updates} updates in {txns} transactions"),
            format!("CALL bench_updates({txns}, {per_txn})"),
        ),
    ];
    for (run, what, workload) in &workloads {
        let base_slot = format!("weir_bench_base_{run}");
        pg.create_slot(&base_slot)?;
        for (schemas, _) in converters {
            pg.create_slot(&format!("weir_bench_{run}_{schemas}"))?;
        }
        println!("({run})       {what}: writing them");
        let t0 = Instant::now();
        pg.sql(workload)?;
        let wrote = t0.elapsed();
        let endpos = pg.sql("SELECT pg_current_wal_lsn()")?;
        let file = rig.dir.join(format!("recvlogical-{run}.out"));
        let base = recvlogical(&pg, &base_slot, &endpos, &file, n)?;
        let size = std::fs::metadata(&file).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(&file);
        println!(
            "          written in {:.1} s; pg_recvlogical to a file   {:>12.0} changes/s ({:.0} MB)",
            wrote.as_secs_f64(),
            base,
            size as f64 / 1e6
        );
        for (schemas, label) in converters {
            let name = format!("cdc-{run}-{schemas}");
            let prefix = format!("bench{run}{}", if schemas { "s" } else { "p" });
            let topic = format!("{prefix}.public.{TABLE}");
            let c = capture(
                &rt,
                &rig.broker,
                &name,
                connector(
                    &prefix,
                    &format!("weir_bench_{run}_{schemas}"),
                    "no_data",
                    schemas,
                ),
                &topic,
                n as i64,
            )
            .await?;
            rt.delete(&name).await?;
            println!(
                "          weir -> topic, JSON {label}{:>12.0} changes/s = {:.2}x pg_recvlogical (goals >= 1x: {}, >= 100,000/s: {}); {:.0}/s after the first record; peak RSS {:.1} MB (at start {rss_start:.1} MB)",
                c.total,
                c.total / base,
                verdict(c.total >= base),
                verdict(c.total >= 100_000.0),
                c.steady,
                c.peak_rss
            );
        }
        pg.release_slots().await?;
    }

    // (c) The initial snapshot against COPY.
    let t0 = Instant::now();
    let copied = tokio::task::block_in_place(|| {
        Command::new(pg.tool("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &pg.url, "-c"])
            .arg(format!("COPY {TABLE} TO STDOUT"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
    })?;
    let copy = n as f64 / t0.elapsed().as_secs_f64();
    anyhow::ensure!(copied.success(), "COPY failed: {copied}");
    println!("(c)       snapshot of {n} rows: COPY TO STDOUT > /dev/null {copy:>12.0} rows/s");
    // One task, then the snapshot split over two (`snapshot.max.threads` = `tasks.max` = 2).
    for readers in [1u32, 2] {
        for (schemas, label) in converters {
            let name = format!("cdc-c-{readers}-{schemas}");
            let prefix = format!("benchc{readers}{}", if schemas { "s" } else { "p" });
            let mut config = connector(&prefix, "weir_bench_c", "initial_only", schemas);
            config.insert("tasks.max".into(), readers.to_string());
            config.insert("snapshot.max.threads".into(), readers.to_string());
            let c = capture(
                &rt,
                &rig.broker,
                &name,
                config,
                &format!("{prefix}.public.{TABLE}"),
                n as i64,
            )
            .await?;
            rt.delete(&name).await?;
            println!(
                "          weir snapshot -> topic, {readers} task(s), JSON {label}{:>12.0} rows/s = {:.0}% of COPY (goal >= 50%: {}); {:.0}/s after the first record; peak RSS {:.1} MB",
                c.total,
                100.0 * c.total / copy,
                verdict(c.total >= 0.5 * copy),
                c.steady,
                c.peak_rss
            );
        }
    }

    rt.shutdown().await;
    rig.stop().await;
    pg.release_slots().await?;
    pg.sql_on(
        &pg.admin_url,
        &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_db;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_db("postgres://u:p@h:5/postgres", "x").unwrap(),
            "postgres://u:p@h:5/x"
        );
        assert_eq!(with_db("postgres://h", "x").unwrap(), "postgres://h/x");
        assert_eq!(
            with_db("postgresql://u@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u@h/x?sslmode=disable"
        );
    }
}
