//! The sidecar: what the sink has made durable, kept next to the output file as
//! `.<file name>.weir-sink`. One JSON object:
//!
//! ```json
//! {"version":1,"length":1234,"positions":[{"topic":"orders","partition":0,"offset":41}]}
//! ```
//!
//! `length` is the output file's length after the last flush, and `positions` the offset of the
//! last record written before it, per topic partition (inclusive, as `log-position`s are). A
//! flush writes the output file and syncs it, then writes the sidecar to a temporary file, syncs
//! it and renames it over the old one, so the sidecar on disk is always whole and never claims
//! bytes the output file does not durably hold.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// Last offset written per topic, then per partition.
pub type Positions = BTreeMap<String, BTreeMap<i32, i64>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    topic: String,
    partition: i32,
    offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u32,
    length: u64,
    positions: Vec<Position>,
}

/// What a sidecar records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sidecar {
    /// The output file's length after the last flush.
    pub length: u64,
    /// The last offset written per topic partition.
    pub positions: Positions,
}

/// The sidecar's path for an output file: `.<name>.weir-sink` in the same directory.
pub fn path_for(file: &str) -> Result<PathBuf, String> {
    let p = Path::new(file);
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{file} does not name a file"))?;
    Ok(p.with_file_name(format!(".{name}.weir-sink")))
}

impl Sidecar {
    pub fn to_json(&self) -> Vec<u8> {
        let stored = Stored {
            version: VERSION,
            length: self.length,
            positions: self
                .positions
                .iter()
                .flat_map(|(topic, ps)| {
                    ps.iter().map(|(&partition, &offset)| Position {
                        topic: topic.clone(),
                        partition,
                        offset,
                    })
                })
                .collect(),
        };
        let mut json = serde_json::to_vec(&stored).unwrap_or_default();
        json.push(b'\n');
        json
    }

    pub fn from_json(bytes: &[u8]) -> Result<Sidecar, String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if stored.version != VERSION {
            return Err(format!(
                "version {} (this sink writes version {VERSION})",
                stored.version
            ));
        }
        let mut positions = Positions::new();
        for p in stored.positions {
            positions
                .entry(p.topic)
                .or_default()
                .insert(p.partition, p.offset);
        }
        Ok(Sidecar {
            length: stored.length,
            positions,
        })
    }

    /// The sidecar at `path`; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Sidecar>, String> {
        match std::fs::read(path) {
            Ok(bytes) => Sidecar::from_json(&bytes)
                .map(Some)
                .map_err(|e| format!("{} is not a file sink's sidecar: {e}", path.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Replaces the sidecar at `path` durably: a synced temporary file renamed over it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.to_json())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a crash of the process as it is; syncing the directory
        // makes it survive a power cut too, where the platform allows opening a directory.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let mut s = Sidecar {
            length: 1234,
            ..Sidecar::default()
        };
        s.positions
            .entry("orders".into())
            .or_default()
            .insert(0, 41);
        s.positions.entry("orders".into()).or_default().insert(2, 7);
        let json = s.to_json();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            "{\"version\":1,\"length\":1234,\"positions\":[{\"topic\":\"orders\",\"partition\":0,\"offset\":41},{\"topic\":\"orders\",\"partition\":2,\"offset\":7}]}\n"
        );
        assert_eq!(Sidecar::from_json(&json).unwrap(), s);
        assert!(Sidecar::from_json(b"{\"version\":2,\"length\":0,\"positions\":[]}").is_err());
        assert!(Sidecar::from_json(b"{\"version\":1,\"length\":").is_err());
    }

    #[test]
    fn sidecar_sits_next_to_the_file() {
        assert_eq!(
            path_for("/data/out.txt").unwrap(),
            Path::new("/data/.out.txt.weir-sink")
        );
        assert_eq!(
            path_for("out.txt").unwrap(),
            Path::new(".out.txt.weir-sink")
        );
        assert!(path_for("/").is_err());
    }

    #[test]
    fn written_and_read_back() {
        let dir =
            std::env::temp_dir().join(format!("weir-file-sink-sidecar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(".out.weir-sink");
        let _ = std::fs::remove_file(&p);
        assert_eq!(Sidecar::read(&p).unwrap(), None);
        let s = Sidecar {
            length: 5,
            ..Sidecar::default()
        };
        s.write(&p).unwrap();
        assert_eq!(Sidecar::read(&p).unwrap(), Some(s));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(
            Sidecar::read(&p)
                .unwrap_err()
                .contains("is not a file sink's sidecar")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
