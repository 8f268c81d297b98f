//! The Weir changes layout (`wit/CHANGES.md`): a batch of row changes read from a database's
//! log (PostgreSQL logical replication), as one buffer. The tables the batch touches are
//! described once at its head; each change names its table by index, carries its position
//! in the log and its transaction, and its before and after images as the rows layout's
//! tagged values, plus one more tag for a value the log left out because it did not change
//! (PostgreSQL's unchanged TOAST values).
//!
//! [`Changes::parse`] validates a whole buffer; [`ChangesBuilder`] writes one.

use crate::{Reader, RowsError, ValueRef, put_short, tag};

/// The first four bytes of every changes buffer (version 1 of the layout).
pub const MAGIC: [u8; 4] = *b"WRC1";

/// The tag of a value the log did not carry because it did not change.
pub const UNCHANGED: u8 = 7;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    /// Debezium's letter for it (`c`, `u`, `d`, `t`), which is also its byte in the layout.
    pub fn code(self) -> u8 {
        match self {
            Op::Insert => b'c',
            Op::Update => b'u',
            Op::Delete => b'd',
            Op::Truncate => b't',
        }
    }

    fn from_code(c: u8) -> Option<Op> {
        Some(match c {
            b'c' => Op::Insert,
            b'u' => Op::Update,
            b'd' => Op::Delete,
            b't' => Op::Truncate,
            _ => return None,
        })
    }
}

/// Which columns an image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// Only the key columns (the replica identity); the others are null.
    Key,
    /// Every column.
    Full,
}

/// A column of a table in a changes buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeColumn<'a> {
    pub name: &'a str,
    /// The database's name for the column's type, as in the rows layout.
    pub type_name: &'a str,
    /// The type's modifier (PostgreSQL `atttypmod`: a numeric's precision and scale, a
    /// timestamp's precision), -1 when there is none.
    pub type_modifier: i32,
    /// Part of the table's replica identity (its primary key, by default).
    pub key: bool,
}

/// A table a batch touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub columns: Vec<ChangeColumn<'a>>,
}

/// Where a change sits in the log and in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeMeta {
    /// The change's own position (LSN).
    pub lsn: u64,
    /// The position of its transaction's commit: changes arrive in commit order.
    pub commit_lsn: u64,
    /// For the last change of its transaction, the position just past the commit (what to
    /// confirm once the transaction is stored); 0 for the others.
    pub end_lsn: u64,
    /// The transaction id.
    pub xid: u32,
    /// When the transaction committed, in microseconds since the Unix epoch.
    pub commit_time_us: i64,
    /// The change's index in its transaction (0 first).
    pub seq: u32,
}

/// A row image: one value per column of its table, `None` where unchanged and left out.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pub kind: ImageKind,
    bytes: &'a [u8],
    columns: usize,
}

impl<'a> Image<'a> {
    /// The values in column order; `None` for a value left out because it did not change.
    pub fn values(&self) -> impl Iterator<Item = Option<ValueRef<'a>>> + 'a {
        let mut r = Reader {
            buf: self.bytes,
            at: 0,
        };
        // Validated when the buffer was parsed.
        (0..self.columns).map(move |_| datum(&mut r).unwrap_or(Some(ValueRef::Null)))
    }

    /// Column `i`'s value (`None`: unchanged and left out; null past the last column).
    pub fn get(&self, i: usize) -> Option<ValueRef<'a>> {
        self.values().nth(i).unwrap_or(Some(ValueRef::Null))
    }
}

/// One change.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub op: Op,
    pub meta: ChangeMeta,
    /// The tables it touched, as indexes into [`Changes::relations`]: one, or for a
    /// truncate every table truncated together.
    pub relations: Vec<u32>,
    pub before: Option<Image<'a>>,
    pub after: Option<Image<'a>>,
}

/// A validated changes buffer.
#[derive(Debug, Clone)]
pub struct Changes<'a> {
    /// Every change at or before this position has been delivered, in this batch or an
    /// earlier one: once they are stored, the position may be confirmed.
    pub position: u64,
    pub relations: Vec<Relation<'a>>,
    pub changes: Vec<Change<'a>>,
}

fn datum<'a>(r: &mut Reader<'a>) -> Result<Option<ValueRef<'a>>, RowsError> {
    if r.buf.get(r.at) == Some(&UNCHANGED) {
        r.at += 1;
        return Ok(None);
    }
    r.value().map(Some)
}

impl<'a> Changes<'a> {
    /// Validates `buf` entirely.
    pub fn parse(buf: &'a [u8]) -> Result<Changes<'a>, RowsError> {
        if buf.len() < 16 || buf[..4] != MAGIC {
            return Err(RowsError(
                "not a changes buffer (no WRC1 magic at its start)".into(),
            ));
        }
        let mut r = Reader { buf, at: 4 };
        let position = r.u64("position")?;
        let nrel = r.u32("relation count")? as usize;
        if nrel > buf.len() / 6 {
            return Err(RowsError(format!(
                "relation count {nrel} is more than the buffer can hold"
            )));
        }
        let mut relations = Vec::with_capacity(nrel);
        for i in 0..nrel {
            let schema = r.short(i, "relation schema")?;
            let table = r.short(i, "relation table")?;
            let ncols = r.u16("column count")? as usize;
            let mut columns = Vec::with_capacity(ncols);
            for c in 0..ncols {
                let name = r.short(c, "name")?;
                let type_name = r.short(c, "type name")?;
                let type_modifier = r.u32("type modifier")? as i32;
                let flags = r.take(1, "column flags")?[0];
                columns.push(ChangeColumn {
                    name,
                    type_name,
                    type_modifier,
                    key: flags & 1 != 0,
                });
            }
            relations.push(Relation {
                schema,
                table,
                columns,
            });
        }
        let n = r.u32("change count")? as usize;
        if n > (buf.len() - r.at) / 40 {
            return Err(RowsError(format!(
                "change count {n} is more than the buffer can hold"
            )));
        }
        let mut changes = Vec::with_capacity(n);
        for k in 0..n {
            let change = Self::change(&mut r, &relations)
                .map_err(|e| RowsError(format!("change {k}: {}", e.0)))?;
            changes.push(change);
        }
        if r.at != buf.len() {
            return Err(RowsError(format!(
                "{} bytes after the last change",
                buf.len() - r.at
            )));
        }
        Ok(Changes {
            position,
            relations,
            changes,
        })
    }

    fn change(r: &mut Reader<'a>, relations: &[Relation<'a>]) -> Result<Change<'a>, RowsError> {
        let code = r.take(1, "op")?[0];
        let op = Op::from_code(code).ok_or_else(|| RowsError(format!("unknown op {code}")))?;
        let meta = ChangeMeta {
            lsn: r.u64("lsn")?,
            commit_lsn: r.u64("commit lsn")?,
            end_lsn: r.u64("end lsn")?,
            xid: r.u32("xid")?,
            commit_time_us: r.u64("commit time")? as i64,
            seq: r.u32("seq")?,
        };
        let nrel = r.u16("relation count")? as usize;
        let mut rels = Vec::with_capacity(nrel.min(64));
        for _ in 0..nrel {
            let i = r.u32("relation index")?;
            if i as usize >= relations.len() {
                return Err(RowsError(format!("relation index {i} out of range")));
            }
            rels.push(i);
        }
        if op != Op::Truncate && rels.len() != 1 {
            return Err(RowsError(format!(
                "an {op:?} names {} tables, not one",
                rels.len()
            )));
        }
        let columns = rels
            .first()
            .map(|i| relations[*i as usize].columns.len())
            .unwrap_or(0);
        let before = Self::image(r, columns)?;
        let after = Self::image(r, columns)?;
        Ok(Change {
            op,
            meta,
            relations: rels,
            before,
            after,
        })
    }

    fn image(r: &mut Reader<'a>, columns: usize) -> Result<Option<Image<'a>>, RowsError> {
        let kind = match r.take(1, "image kind")?[0] {
            0 => return Ok(None),
            1 => ImageKind::Key,
            2 => ImageKind::Full,
            other => return Err(RowsError(format!("unknown image kind {other}"))),
        };
        let from = r.at;
        for c in 0..columns {
            datum(r).map_err(|e| RowsError(format!("column {c}: {}", e.0)))?;
        }
        Ok(Some(Image {
            kind,
            bytes: &r.buf[from..r.at],
            columns,
        }))
    }
}

/// Writes a changes buffer: tables as they are first touched, then changes.
#[derive(Debug, Default)]
pub struct ChangesBuilder {
    relations: Vec<u8>,
    relation_count: u32,
    body: Vec<u8>,
    changes: u32,
}

impl ChangesBuilder {
    pub fn new() -> ChangesBuilder {
        ChangesBuilder::default()
    }

    /// Describes a table; its index for [`ChangesBuilder::change`].
    pub fn relation<'c>(
        &mut self,
        schema: &str,
        table: &str,
        columns: impl ExactSizeIterator<Item = ChangeColumn<'c>>,
    ) -> u32 {
        put_short(&mut self.relations, schema);
        put_short(&mut self.relations, table);
        let n = columns.len().min(u16::MAX as usize);
        self.relations.extend_from_slice(&(n as u16).to_le_bytes());
        for c in columns.take(n) {
            put_short(&mut self.relations, c.name);
            put_short(&mut self.relations, c.type_name);
            self.relations
                .extend_from_slice(&c.type_modifier.to_le_bytes());
            self.relations.push(u8::from(c.key));
        }
        self.relation_count += 1;
        self.relation_count - 1
    }

    /// Starts a change; write its before image, then its after image ([`Self::image`] or
    /// [`Self::no_image`]), each with one value per column of its table. Returns where its
    /// `end_lsn` is, for [`Self::set_end_lsn`].
    pub fn change(&mut self, op: Op, meta: &ChangeMeta, relations: &[u32]) -> usize {
        let b = &mut self.body;
        b.push(op.code());
        let at = b.len() + 16;
        b.extend_from_slice(&meta.lsn.to_le_bytes());
        b.extend_from_slice(&meta.commit_lsn.to_le_bytes());
        b.extend_from_slice(&meta.end_lsn.to_le_bytes());
        b.extend_from_slice(&meta.xid.to_le_bytes());
        b.extend_from_slice(&meta.commit_time_us.to_le_bytes());
        b.extend_from_slice(&meta.seq.to_le_bytes());
        b.extend_from_slice(&(relations.len() as u16).to_le_bytes());
        for r in relations {
            b.extend_from_slice(&r.to_le_bytes());
        }
        self.changes += 1;
        at
    }

    /// Sets the `end_lsn` of the change [`Self::change`] returned `at` for (its transaction
    /// committed).
    pub fn set_end_lsn(&mut self, at: usize, end_lsn: u64) {
        if let Some(b) = self.body.get_mut(at..at + 8) {
            b.copy_from_slice(&end_lsn.to_le_bytes());
        }
    }

    /// An absent image.
    pub fn no_image(&mut self) {
        self.body.push(0);
    }

    /// Starts an image; push its values with [`Self::value`] and [`Self::unchanged`].
    pub fn image(&mut self, kind: ImageKind) {
        self.body.push(match kind {
            ImageKind::Key => 1,
            ImageKind::Full => 2,
        });
    }

    /// The next value of the image being written.
    pub fn value(&mut self, v: ValueRef<'_>) {
        let b = &mut self.body;
        match v {
            ValueRef::Null => b.push(tag::NULL),
            ValueRef::Bool(false) => b.push(tag::FALSE),
            ValueRef::Bool(true) => b.push(tag::TRUE),
            ValueRef::Int(i) => {
                b.push(tag::INT);
                b.extend_from_slice(&i.to_le_bytes());
            }
            ValueRef::Float(f) => {
                b.push(tag::FLOAT);
                b.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            ValueRef::Text(s) => {
                b.push(tag::TEXT);
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
            }
            ValueRef::Bytes(x) => {
                b.push(tag::BYTES);
                b.extend_from_slice(&(x.len() as u32).to_le_bytes());
                b.extend_from_slice(x);
            }
        }
    }

    /// A value left out because it did not change.
    pub fn unchanged(&mut self) {
        self.body.push(UNCHANGED);
    }

    /// Changes written so far.
    pub fn len(&self) -> usize {
        self.changes as usize
    }

    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    /// Bytes written so far.
    pub fn byte_len(&self) -> usize {
        self.relations.len() + self.body.len() + 20
    }

    /// The buffer, with every change at or before `position` delivered.
    pub fn finish(self, position: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&position.to_le_bytes());
        out.extend_from_slice(&self.relation_count.to_le_bytes());
        out.extend_from_slice(&self.relations);
        out.extend_from_slice(&self.changes.to_le_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip() {
        let mut b = ChangesBuilder::new();
        let cols = [
            ChangeColumn {
                name: "id",
                type_name: "INT4",
                type_modifier: -1,
                key: true,
            },
            ChangeColumn {
                name: "doc",
                type_name: "TEXT",
                type_modifier: -1,
                key: false,
            },
        ];
        let t = b.relation("public", "items", cols.iter().copied());
        let u = b.relation("s", "other", cols[..1].iter().copied());
        let meta = ChangeMeta {
            lsn: 10,
            commit_lsn: 20,
            end_lsn: 0,
            xid: 7,
            commit_time_us: -5,
            seq: 0,
        };
        b.change(Op::Update, &meta, &[t]);
        b.image(ImageKind::Key);
        b.value(ValueRef::Int(1));
        b.value(ValueRef::Null);
        b.image(ImageKind::Full);
        b.value(ValueRef::Int(2));
        b.unchanged();
        let at = b.change(Op::Truncate, &ChangeMeta { seq: 1, ..meta }, &[t, u]);
        b.set_end_lsn(at, 30);
        b.no_image();
        b.no_image();
        let buf = b.finish(30);
        let c = Changes::parse(&buf).unwrap();
        assert_eq!(c.position, 30);
        assert_eq!(c.relations.len(), 2);
        assert_eq!(c.relations[0].columns, cols);
        assert_eq!(c.relations[1].table, "other");
        assert_eq!(c.changes.len(), 2);
        let up = &c.changes[0];
        assert_eq!(up.op, Op::Update);
        assert_eq!(up.meta, meta);
        let before = up.before.unwrap();
        assert_eq!(before.kind, ImageKind::Key);
        assert_eq!(
            before.values().collect::<Vec<_>>(),
            [Some(ValueRef::Int(1)), Some(ValueRef::Null)]
        );
        let after = up.after.unwrap();
        assert_eq!(after.get(0), Some(ValueRef::Int(2)));
        assert_eq!(after.get(1), None);
        let tr = &c.changes[1];
        assert_eq!(tr.op, Op::Truncate);
        assert_eq!(tr.relations, [0, 1]);
        assert_eq!(tr.meta.end_lsn, 30);
        assert!(tr.before.is_none() && tr.after.is_none());

        // Every truncation of a valid buffer is refused, never a panic.
        for n in 0..buf.len() {
            assert!(Changes::parse(&buf[..n]).is_err(), "cut at {n}");
        }
        let mut bad = buf.clone();
        bad.push(0);
        assert!(Changes::parse(&bad).is_err());
    }
}
