//! Tailing one file: complete lines from a byte position on, and rotation detection.
//!
//! A [`Tail`] keeps no file open between reads: each [`Tail::read`] opens the path, checks
//! whether it is still the file it was reading, seeks to the position and reads. A handle
//! that has reached the end of a file may not see later appends under WASI, and reopening
//! the path is also what notices a file renamed away and recreated.
//!
//! Lines end with `\n`, `\r\n` or a lone `\r`, as in Kafka's FileStreamSourceTask; the
//! terminator is not part of the line. A last line without its terminator is left for a
//! later read (a `\r` at the end of the data waits too: a `\n` may follow). A line longer than
//! [`MAX_LINE`] is returned in pieces of that size, so a file without newlines cannot exhaust
//! the task's memory.
//!
//! The file at the path is taken to be a new one, read from byte 0, when it is shorter than
//! the position or when its first bytes (up to [`HEAD`]) differ from those seen before.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};

/// How much is read at once.
const CHUNK: usize = 64 * 1024;
/// The longest line returned whole.
pub const MAX_LINE: usize = 8 * 1024 * 1024;
/// How many leading bytes identify a file.
pub const HEAD: usize = 256;

/// Where one file is read up to.
#[derive(Debug, Clone)]
pub struct Tail {
    path: String,
    /// The byte just past the last line returned.
    position: u64,
    /// The file's first `min(position, HEAD)` bytes as last seen (fewer right after a
    /// restart: then only the length tells a new file).
    head: Vec<u8>,
}

/// How much one read may return.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub records: usize,
    pub bytes: usize,
}

/// What one read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// There is no file at the path.
    Missing,
    Read {
        /// Lines returned.
        lines: usize,
        /// The read stopped at a limit: there may be more now.
        more: bool,
        /// The file was a new one; reading restarted at 0 from this position.
        restarted_from: Option<u64>,
        /// Lines longer than [`MAX_LINE`] were cut.
        cut: bool,
    },
}

/// The first line of `buf`: the end of its content and where the next line starts; `None`
/// while no complete line is there.
pub fn next_line(buf: &[u8]) -> Option<(usize, usize)> {
    let i = buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
    if buf[i] == b'\n' {
        return Some((i, i + 1));
    }
    match buf.get(i + 1) {
        None => None,
        Some(b'\n') => Some((i, i + 2)),
        Some(_) => Some((i, i + 1)),
    }
}

impl Tail {
    /// A file to read from `position` on (0, or a committed offset).
    pub fn new(path: String, position: u64) -> Tail {
        Tail {
            path,
            position,
            head: Vec::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads the complete lines appended since the position, within `limits`, handing each
    /// to `emit` with the position just past it (its source offset).
    pub fn read(
        &mut self,
        limits: Limits,
        mut emit: impl FnMut(&[u8], u64),
    ) -> io::Result<Outcome> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Outcome::Missing),
            Err(e) => return Err(e),
        };
        let meta = f.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::new(ErrorKind::InvalidInput, "is a directory"));
        }
        let len = meta.len();
        let mut restarted_from = None;
        if len < self.position || !self.same_head(&mut f)? {
            restarted_from = Some(self.position);
            self.position = 0;
            self.head.clear();
        }
        let (mut lines, mut bytes, mut more, mut cut) = (0, 0, false, false);
        if len > self.position {
            f.seek(SeekFrom::Start(self.position))?;
            // `buf` holds the file from `base` on: what was read and not yet returned.
            let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
            let mut base = self.position;
            let mut eof = false;
            loop {
                let mut at = 0;
                while lines < limits.records && bytes < limits.bytes {
                    let Some((end, next)) = next_line(&buf[at..]) else {
                        break;
                    };
                    emit(&buf[at..at + end], base + (at + next) as u64);
                    (at, lines, bytes) = (at + next, lines + 1, bytes + end);
                }
                if at == 0 && buf.len() >= MAX_LINE && lines < limits.records {
                    emit(&buf[..MAX_LINE], base + MAX_LINE as u64);
                    (at, lines, bytes, cut) = (MAX_LINE, lines + 1, bytes + MAX_LINE, true);
                }
                buf.drain(..at);
                base += at as u64;
                if lines >= limits.records || bytes >= limits.bytes {
                    more = true;
                    break;
                }
                if eof {
                    break;
                }
                let n = (&mut f).take(CHUNK as u64).read_to_end(&mut buf)?;
                eof = n < CHUNK;
            }
            self.position = base;
        }
        if (self.head.len() as u64) < self.position.min(HEAD as u64) {
            // Remember the first bytes of what was just read (a file replaced in between
            // is taken for the one read: it is noticed by its length or the next change).
            self.same_head(&mut f)?;
        }
        Ok(Outcome::Read {
            lines,
            more,
            restarted_from,
            cut,
        })
    }

    /// Whether the file starts with the bytes seen before; remembers its first
    /// `min(position, HEAD)` bytes.
    fn same_head(&mut self, f: &mut File) -> io::Result<bool> {
        let want = self.position.min(HEAD as u64) as usize;
        if want == 0 {
            return Ok(true);
        }
        f.seek(SeekFrom::Start(0))?;
        let mut now = Vec::with_capacity(want);
        f.take(want as u64).read_to_end(&mut now)?;
        if now.len() < want || !now.starts_with(&self.head) {
            return Ok(false);
        }
        self.head = now;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ALL: Limits = Limits {
        records: usize::MAX,
        bytes: usize::MAX,
    };

    fn dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("weir-file-source-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn append(path: &std::path::Path, data: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(data).unwrap();
    }

    fn read(t: &mut Tail, limits: Limits) -> (Vec<(String, u64)>, Outcome) {
        let mut got = Vec::new();
        let o = t
            .read(limits, |l, p| {
                got.push((String::from_utf8_lossy(l).into_owned(), p))
            })
            .unwrap();
        (got, o)
    }

    fn lines(v: &[(String, u64)]) -> Vec<&str> {
        v.iter().map(|(l, _)| l.as_str()).collect()
    }

    #[test]
    fn line_ends() {
        assert_eq!(next_line(b"ab\ncd"), Some((2, 3)));
        assert_eq!(next_line(b"ab\r\ncd"), Some((2, 4)));
        assert_eq!(next_line(b"ab\rcd"), Some((2, 3)));
        assert_eq!(next_line(b"ab\r"), None, "a \\n may follow");
        assert_eq!(next_line(b"ab"), None);
        assert_eq!(next_line(b"\n"), Some((0, 1)));
    }

    #[test]
    fn tails_appends_and_waits_for_the_newline() {
        let d = dir("tail");
        let p = d.join("a.txt");
        let mut t = Tail::new(p.display().to_string(), 0);
        assert_eq!(read(&mut t, ALL).1, Outcome::Missing);
        append(&p, b"one\ntwo\r\nthr");
        let (got, _) = read(&mut t, ALL);
        assert_eq!(got, [("one".to_string(), 4), ("two".to_string(), 9)]);
        assert_eq!(t.position(), 9);
        assert!(read(&mut t, ALL).0.is_empty());
        append(&p, b"ee\n\nfour\r");
        let (got, _) = read(&mut t, ALL);
        assert_eq!(got, [("three".to_string(), 15), (String::new(), 16)]);
        append(&p, b"five\n");
        assert_eq!(lines(&read(&mut t, ALL).0), ["four", "five"]);
    }

    #[test]
    fn limits_and_resuming_from_an_offset() {
        let d = dir("limits");
        let p = d.join("a.txt");
        append(&p, b"1\n2\n3\n4\n5\n");
        let path = p.display().to_string();
        let mut t = Tail::new(path.clone(), 0);
        let lim = Limits {
            records: 2,
            bytes: usize::MAX,
        };
        let (got, o) = read(&mut t, lim);
        assert_eq!(lines(&got), ["1", "2"]);
        assert!(matches!(o, Outcome::Read { more: true, .. }));
        let mut t = Tail::new(path, got[1].1);
        assert_eq!(lines(&read(&mut t, ALL).0), ["3", "4", "5"]);
    }

    #[test]
    fn a_new_file_at_the_path_is_read_from_the_start() {
        let d = dir("rotate");
        let p = d.join("a.txt");
        append(&p, b"old 1\nold 2\n");
        let mut t = Tail::new(p.display().to_string(), 0);
        assert_eq!(read(&mut t, ALL).0.len(), 2);
        // Renamed away and recreated, longer than what was read.
        std::fs::rename(&p, d.join("a.txt.1")).unwrap();
        append(&p, b"new 1\nnew 2\nnew 3\n");
        let (got, o) = read(&mut t, ALL);
        assert_eq!(lines(&got), ["new 1", "new 2", "new 3"]);
        assert!(matches!(
            o,
            Outcome::Read {
                restarted_from: Some(12),
                ..
            }
        ));
        // Truncated.
        std::fs::write(&p, b"x\n").unwrap();
        assert_eq!(lines(&read(&mut t, ALL).0), ["x"]);
        // After a restart only the length tells.
        let mut t = Tail::new(p.display().to_string(), 100);
        assert_eq!(lines(&read(&mut t, ALL).0), ["x"]);
    }

    #[test]
    fn long_lines_are_cut() {
        let d = dir("long");
        let p = d.join("a.txt");
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nshort\n");
        append(&p, &data);
        let mut t = Tail::new(p.display().to_string(), 0);
        let (got, o) = read(&mut t, ALL);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0.len(), MAX_LINE);
        assert_eq!(got[1].0.len(), 10);
        assert_eq!(got[2], ("short".to_string(), data.len() as u64));
        assert!(matches!(o, Outcome::Read { cut: true, .. }));
    }
}
