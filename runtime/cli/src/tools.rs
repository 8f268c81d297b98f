//! Client commands: topic admin, produce and consume, over the Kafka protocol.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use kafka_protocol::records::Compression;
use weir_client::{Client, NewRecord};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Prints a line to stdout. A closed pipe (`weir ... | head`) ends the program quietly, as
/// command-line tools do, instead of panicking as `println!` would.
macro_rules! outln {
    ($($arg:tt)*) => {
        write_line(&format!($($arg)*))
    };
}

fn write_line(line: &str) {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

#[derive(Debug, clap::Args)]
pub struct Conn {
    /// Broker address (host:port).
    #[arg(long, short, default_value = "127.0.0.1:9092", env = "WEIR_BOOTSTRAP")]
    bootstrap: String,
}

impl Conn {
    async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.bootstrap, CONNECT_TIMEOUT).await?)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short, default_value_t = 1)]
        partitions: i32,
        /// Topic config as key=value (repeatable), e.g. cleanup.policy=compact.
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List topics.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a topic's partitions, offsets and configs.
    Describe {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

fn key_value(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{what} {s:?} must be key=value"))?;
    Ok((k.to_string(), v.to_string()))
}

pub async fn topic(cmd: TopicCmd) -> anyhow::Result<()> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            configs,
            conn,
        } => {
            let configs = configs
                .iter()
                .map(|c| key_value(c, "config"))
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            conn.connect()
                .await?
                .create_topic(&name, partitions, &configs)
                .await?;
            outln!("created topic {name} with {partitions} partition(s)");
        }
        TopicCmd::List { conn } => {
            for t in conn.connect().await?.metadata(None).await? {
                outln!("{}", t.name);
            }
        }
        TopicCmd::Describe { name, conn } => {
            let client = conn.connect().await?;
            let meta = client.metadata(Some(std::slice::from_ref(&name))).await?;
            let t = meta
                .first()
                .with_context(|| format!("topic {name} does not exist"))?;
            outln!(
                "topic: {}  id: {}  partitions: {}",
                t.name,
                t.id,
                t.partitions
            );
            outln!(
                "{:>9}  {:>14}  {:>14}  {:>10}",
                "PARTITION",
                "START-OFFSET",
                "END-OFFSET",
                "RECORDS"
            );
            for p in 0..t.partitions {
                let start = client.list_offset(&name, p, -2).await?.unwrap_or(0);
                let end = client.list_offset(&name, p, -1).await?.unwrap_or(0);
                outln!("{p:>9}  {start:>14}  {end:>14}  {:>10}", end - start);
            }
            outln!("configs:");
            for (k, v, is_override) in client.describe_topic_configs(&name).await? {
                outln!("  {k}={v}{}", if is_override { "" } else { "  (default)" });
            }
        }
        TopicCmd::Delete { name, conn } => {
            conn.connect().await?.delete_topic(&name).await?;
            outln!("deleted topic {name}");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Key for every record (otherwise see --key-separator, or no key).
    #[arg(long, short)]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// Header as name=value (repeatable), added to every record.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Partition to write to (default: by key hash as Kafka clients do, else round-robin).
    #[arg(long, short)]
    partition: Option<i32>,
    /// Read records from this file instead of stdin.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Records per produce request.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    #[command(flatten)]
    conn: Conn,
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let compression = match args.compression.as_str() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => anyhow::bail!("unknown compression {other:?} (none, gzip, snappy, lz4, zstd)"),
    };
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|h| key_value(h, "header").map(|(k, v)| (k, Some(Bytes::from(v)))))
        .collect::<anyhow::Result<_>>()?;
    let client = args.conn.connect().await?;
    let partitions = client.partitions(&args.topic).await?;
    if let Some(p) = args.partition
        && (p < 0 || p >= partitions)
    {
        anyhow::bail!(
            "topic {} has no partition {p} (it has {partitions})",
            args.topic
        );
    }
    let reader: Box<dyn BufRead> = match &args.file {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let mut pending: BTreeMap<i32, Vec<NewRecord>> = BTreeMap::new();
    let mut round_robin = 0i32;
    let mut total = 0usize;
    for line in reader.lines() {
        let line = line.context("cannot read input")?;
        let (key, value) = match (&args.key, &args.key_separator) {
            (Some(k), _) => (Some(k.clone()), line),
            (None, Some(sep)) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            (None, None) => (None, line),
        };
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => weir_client::murmur2_partition(k.as_bytes(), partitions),
            (None, None) => {
                round_robin = (round_robin + 1) % partitions;
                round_robin
            }
        };
        let batch = pending.entry(partition).or_default();
        batch.push(NewRecord {
            key: key.map(Bytes::from),
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
            timestamp: None,
        });
        if batch.len() >= args.batch_size {
            let recs = std::mem::take(batch);
            client
                .produce(&args.topic, partition, &recs, compression)
                .await?;
            total += recs.len();
        }
    }
    for (partition, recs) in pending {
        if !recs.is_empty() {
            client
                .produce(&args.topic, partition, &recs, compression)
                .await?;
            total += recs.len();
        }
    }
    eprintln!("produced {total} record(s) to {}", args.topic);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Only this partition (default: all).
    #[arg(long, short)]
    partition: Option<i32>,
    /// Start at the earliest offset (default: the end, printing only new records).
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Start at this offset (in every consumed partition).
    #[arg(long)]
    offset: Option<i64>,
    /// Start at the first record with this timestamp or later (ms since the epoch).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Exit after this many records.
    #[arg(long, short = 'n')]
    max_messages: Option<usize>,
    /// Exit when no record arrives for this long (ms).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print the partition.
    #[arg(long)]
    print_partition: bool,
    /// Print the offset.
    #[arg(long)]
    print_offset: bool,
    /// Print the timestamp.
    #[arg(long)]
    print_timestamp: bool,
    /// Print the key.
    #[arg(long)]
    print_key: bool,
    /// Print the headers.
    #[arg(long)]
    print_headers: bool,
    /// Consume as a member of this consumer group: partitions are assigned by the group,
    /// positions start from its committed offsets, and progress is committed.
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    group: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

fn show(b: &Option<Bytes>) -> String {
    match b {
        None => "null".into(),
        Some(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Where a partition's consumption starts, from the flags (`--offset`, `--timestamp`,
/// `--from-beginning`, else the end).
async fn start_offset(client: &Client, args: &ConsumeArgs, p: i32) -> anyhow::Result<i64> {
    Ok(if let Some(o) = args.offset {
        let earliest = client.list_offset(&args.topic, p, -2).await?.unwrap_or(0);
        let latest = client.list_offset(&args.topic, p, -1).await?.unwrap_or(0);
        if o < earliest || o > latest {
            anyhow::bail!("offset {o} is outside partition {p}'s range {earliest}..={latest}");
        }
        o
    } else if let Some(ts) = args.timestamp {
        match client.list_offset(&args.topic, p, ts).await? {
            Some(o) => o,
            None => client.list_offset(&args.topic, p, -1).await?.unwrap_or(0),
        }
    } else if args.from_beginning {
        client.list_offset(&args.topic, p, -2).await?.unwrap_or(0)
    } else {
        client.list_offset(&args.topic, p, -1).await?.unwrap_or(0)
    })
}

fn print_record(
    args: &ConsumeArgs,
    p: i32,
    r: &kafka_protocol::records::Record,
) -> anyhow::Result<()> {
    let mut fields = Vec::new();
    if args.print_partition {
        fields.push(format!("partition:{p}"));
    }
    if args.print_offset {
        fields.push(format!("offset:{}", r.offset));
    }
    if args.print_timestamp {
        fields.push(format!("timestamp:{}", r.timestamp));
    }
    if args.print_key {
        fields.push(format!("key:{}", show(&r.key)));
    }
    if args.print_headers {
        let hs: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{}={}", k, show(v)))
            .collect();
        fields.push(format!("headers:{}", hs.join(",")));
    }
    fields.push(show(&r.value));
    write_line(&fields.join("\t"));
    Ok(())
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.conn.connect().await?;
    let partitions = client.partitions(&args.topic).await?;
    if let Some(group) = args.group.clone() {
        return consume_group(client, args, &group).await;
    }
    let parts: Vec<i32> = match args.partition {
        Some(p) if p < 0 || p >= partitions => anyhow::bail!(
            "topic {} has no partition {p} (it has {partitions})",
            args.topic
        ),
        Some(p) => vec![p],
        None => (0..partitions).collect(),
    };
    let mut next = BTreeMap::new();
    for &p in &parts {
        next.insert(p, start_offset(&client, &args, p).await?);
    }
    let mut printed = 0usize;
    let mut last_data = Instant::now();
    let wait = Duration::from_millis(if parts.len() > 1 { 50 } else { 500 });
    loop {
        let mut got = false;
        for &p in &parts {
            let (records, _hw) = client.fetch(&args.topic, p, next[&p], wait).await?;
            for r in records {
                got = true;
                print_record(&args, p, &r)?;
                next.insert(p, r.offset + 1);
                printed += 1;
                if args.max_messages.is_some_and(|m| printed >= m) {
                    return Ok(());
                }
            }
        }
        if got {
            last_data = Instant::now();
        } else if args
            .timeout_ms
            .is_some_and(|t| last_data.elapsed() >= Duration::from_millis(t))
        {
            return Ok(());
        }
    }
}

/// Consumes as a member of `group`: partitions come from the group's assignment, positions
/// from its committed offsets, and consumed positions are committed as it goes.
async fn consume_group(client: Client, args: ConsumeArgs, group: &str) -> anyhow::Result<()> {
    let mut member = weir_client::GroupMember::new(group, vec![args.topic.clone()]);
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut dirty = false;
    let mut printed = 0usize;
    let mut last_data = Instant::now();
    let mut last_heartbeat = Instant::now();
    let mut rejoin = true;
    let result: anyhow::Result<()> = async {
        loop {
            if rejoin {
                if dirty {
                    commit_positions(&client, &member, &args.topic, &next).await?;
                    dirty = false;
                }
                member.join(&client).await?;
                let committed = client.committed(group).await?;
                next.clear();
                for (t, ps) in &member.assignment {
                    if t != &args.topic {
                        continue;
                    }
                    for &p in ps {
                        let start = match committed.get(&(t.clone(), p)) {
                            Some(&o) => o,
                            None => start_offset(&client, &args, p).await?,
                        };
                        next.insert(p, start);
                    }
                }
                tracing::info!(group, generation = member.generation, partitions = ?next.keys().collect::<Vec<_>>(), "joined group");
                rejoin = false;
                last_heartbeat = Instant::now();
            }
            let mut got = false;
            let parts: Vec<i32> = next.keys().copied().collect();
            let wait = Duration::from_millis(if parts.len() > 1 { 50 } else { 300 });
            for p in parts {
                let (records, _) = client.fetch(&args.topic, p, next[&p], wait).await?;
                for r in records {
                    got = true;
                    print_record(&args, p, &r)?;
                    next.insert(p, r.offset + 1);
                    dirty = true;
                    printed += 1;
                    if args.max_messages.is_some_and(|m| printed >= m) {
                        return Ok(());
                    }
                }
            }
            if next.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if dirty {
                commit_positions(&client, &member, &args.topic, &next).await?;
                dirty = false;
            }
            if last_heartbeat.elapsed() >= Duration::from_secs(1) {
                rejoin = member.heartbeat(&client).await?;
                last_heartbeat = Instant::now();
            }
            if got {
                last_data = Instant::now();
            } else if args.timeout_ms.is_some_and(|t| last_data.elapsed() >= Duration::from_millis(t)) {
                return Ok(());
            }
        }
    }
    .await;
    if dirty {
        let _ = commit_positions(&client, &member, &args.topic, &next).await;
    }
    if !member.member_id.is_empty() {
        let _ = member.leave(&client).await;
    }
    result
}

async fn commit_positions(
    client: &Client,
    member: &weir_client::GroupMember,
    topic: &str,
    next: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let offsets: BTreeMap<(String, i32), i64> = next
        .iter()
        .map(|(p, o)| ((topic.to_string(), *p), *o))
        .collect();
    client
        .commit(
            &member.group,
            member.generation,
            &member.member_id,
            &offsets,
        )
        .await?;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupCmd {
    /// List consumer groups.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a group's members, and per partition the committed offset, the end offset and the lag.
    Describe {
        group: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete an empty group and its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move a group's committed offsets for a topic (the group must have no active members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// To each partition's earliest offset.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To each partition's end.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset (clamped to each partition's range).
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// To the first record at or after this time (ms since the epoch).
        #[arg(long, group = "to")]
        to_datetime: Option<i64>,
        /// Only print the plan.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn group(cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::List { conn } => {
            let client = conn.connect().await?;
            for (id, ptype, state) in client.list_groups().await? {
                outln!("{id}\t{state}\t{ptype}");
            }
        }
        GroupCmd::Describe { group, conn } => {
            let client = conn.connect().await?;
            let info = client.describe_group(&group).await?;
            let committed = client.committed(&group).await?;
            if info.state == "Dead" && committed.is_empty() {
                anyhow::bail!("consumer group {group} does not exist");
            }
            let mut owner: BTreeMap<(String, i32), &weir_client::MemberInfo> = BTreeMap::new();
            for m in &info.members {
                for (t, ps) in &m.assignment {
                    for p in ps {
                        owner.insert((t.clone(), *p), m);
                    }
                }
            }
            let mut keys: Vec<(String, i32)> = committed
                .keys()
                .cloned()
                .chain(owner.keys().cloned())
                .collect();
            keys.sort();
            keys.dedup();
            outln!(
                "group {group}: state {}, {} member(s), protocol {}",
                info.state,
                info.members.len(),
                if info.protocol.is_empty() {
                    "-"
                } else {
                    &info.protocol
                }
            );
            outln!(
                "{:<20} {:<20} {:>9} {:>14} {:>14} {:>8}  {:<40} {:<16} CLIENT-ID",
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST"
            );
            for (t, p) in keys {
                let end = client.list_offset(&t, p, -1).await.ok().flatten();
                let cur = committed.get(&(t.clone(), p)).copied();
                let lag = match (cur, end) {
                    (Some(c), Some(e)) => (e - c).max(0).to_string(),
                    _ => "-".into(),
                };
                let (cid, host, client_id) = owner
                    .get(&(t.clone(), p))
                    .map(|m| (m.member_id.clone(), m.host.clone(), m.client_id.clone()))
                    .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
                outln!(
                    "{:<20} {:<20} {:>9} {:>14} {:>14} {:>8}  {:<40} {:<16} {}",
                    group,
                    t,
                    p,
                    cur.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    end.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                    lag,
                    cid,
                    host,
                    client_id
                );
            }
        }
        GroupCmd::Delete { group, conn } => {
            conn.connect().await?.delete_group(&group).await?;
            outln!("deleted group {group}");
        }
        GroupCmd::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            dry_run,
            conn,
        } => {
            let client = conn.connect().await?;
            let info = client.describe_group(&group).await?;
            if !info.members.is_empty() {
                anyhow::bail!(
                    "group {group} has {} active member(s); stop them before resetting offsets",
                    info.members.len()
                );
            }
            let n = client.partitions(&topic).await?;
            let mut plan = BTreeMap::new();
            for p in 0..n {
                let earliest = client.list_offset(&topic, p, -2).await?.unwrap_or(0);
                let latest = client.list_offset(&topic, p, -1).await?.unwrap_or(0);
                let target = if to_earliest {
                    earliest
                } else if to_latest {
                    latest
                } else if let Some(o) = to_offset {
                    o.clamp(earliest, latest)
                } else if let Some(ts) = to_datetime {
                    client.list_offset(&topic, p, ts).await?.unwrap_or(latest)
                } else {
                    anyhow::bail!(
                        "say where to: --to-earliest, --to-latest, --to-offset N or --to-datetime MS"
                    );
                };
                plan.insert((topic.clone(), p), target);
            }
            outln!(
                "{:<20} {:<20} {:>9} {:>14}",
                "GROUP",
                "TOPIC",
                "PARTITION",
                "NEW-OFFSET"
            );
            for ((t, p), o) in &plan {
                outln!("{group:<20} {t:<20} {p:>9} {o:>14}");
            }
            if dry_run {
                outln!("(dry run: nothing changed)");
            } else {
                client.commit(&group, -1, "", &plan).await?;
            }
        }
    }
    Ok(())
}
