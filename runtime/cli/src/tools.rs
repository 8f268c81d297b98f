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
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCmd::List { conn } => {
            for t in conn.connect().await?.metadata(None).await? {
                println!("{}", t.name);
            }
        }
        TopicCmd::Describe { name, conn } => {
            let client = conn.connect().await?;
            let meta = client.metadata(Some(std::slice::from_ref(&name))).await?;
            let t = meta
                .first()
                .with_context(|| format!("topic {name} does not exist"))?;
            println!(
                "topic: {}  id: {}  partitions: {}",
                t.name, t.id, t.partitions
            );
            println!(
                "{:>9}  {:>14}  {:>14}  {:>10}",
                "PARTITION", "START-OFFSET", "END-OFFSET", "RECORDS"
            );
            for p in 0..t.partitions {
                let start = client.list_offset(&name, p, -2).await?.unwrap_or(0);
                let end = client.list_offset(&name, p, -1).await?.unwrap_or(0);
                println!("{p:>9}  {start:>14}  {end:>14}  {:>10}", end - start);
            }
            println!("configs:");
            for (k, v, is_override) in client.describe_topic_configs(&name).await? {
                println!("  {k}={v}{}", if is_override { "" } else { "  (default)" });
            }
        }
        TopicCmd::Delete { name, conn } => {
            conn.connect().await?.delete_topic(&name).await?;
            println!("deleted topic {name}");
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
    #[command(flatten)]
    conn: Conn,
}

fn show(b: &Option<Bytes>) -> String {
    match b {
        None => "null".into(),
        Some(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.conn.connect().await?;
    let partitions = client.partitions(&args.topic).await?;
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
        let start = if let Some(o) = args.offset {
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
        };
        next.insert(p, start);
    }
    let mut printed = 0usize;
    let mut last_data = Instant::now();
    let wait = Duration::from_millis(if parts.len() > 1 { 50 } else { 500 });
    let stdout = std::io::stdout();
    loop {
        let mut got = false;
        for &p in &parts {
            let offset = next[&p];
            let (records, _hw) = client.fetch(&args.topic, p, offset, wait).await?;
            for r in records {
                got = true;
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
                {
                    use std::io::Write;
                    let mut out = stdout.lock();
                    writeln!(out, "{}", fields.join("\t")).context("cannot write to stdout")?;
                }
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
