//! Building a transform's [`Output`] at the least cost: `passthrough` copies nothing back,
//! `select` sends four bytes per kept record, and only a changed record costs a new batch.

use std::cell::Cell;

use crate::{Batch, BatchBuilder, Error, Output, RecordRef, Verdict};

thread_local! {
    /// The index of the record a per-record function is looking at, for the panic message.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Calls `f` on `r`, so that a panic inside says which record of the batch it was.
fn at_record<T>(r: &RecordRef<'_>, f: impl FnOnce(&RecordRef<'_>) -> T) -> T {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(i) = CURRENT.with(Cell::get) {
                eprintln!(
                    "weir: the panic was in the function for record {i} of the batch (index from 0)"
                );
            }
        }));
    });
    CURRENT.with(|c| c.set(Some(r.index())));
    let out = f(r);
    CURRENT.with(|c| c.set(None));
    out
}

/// Asks `f` about each record and answers `passthrough` (every record kept), `select` (some
/// dropped) or a new batch (some changed), copying unchanged records by their byte ranges.
pub fn per_record(
    batch: &Batch<'_>,
    mut f: impl FnMut(&RecordRef<'_>) -> Result<Verdict, Error>,
) -> Result<Output, Error> {
    let mut kept: Vec<u32> = Vec::new();
    let mut dropped = false;
    let mut out: Option<BatchBuilder> = None;
    for r in batch.iter() {
        let v = at_record(&r, &mut f)?;
        if out.is_none() {
            match v {
                Verdict::Keep => {
                    kept.push(r.index() as u32);
                    continue;
                }
                Verdict::Drop => {
                    dropped = true;
                    continue;
                }
                _ => {
                    // The first change: copy what was kept so far, then write from here on.
                    let mut b = BatchBuilder::with_capacity(batch.len(), batch.as_bytes().len());
                    for &i in &kept {
                        if let Some(k) = batch.get(i as usize) {
                            b.push_ref(&k);
                        }
                    }
                    out = Some(b);
                }
            }
        }
        let Some(b) = out.as_mut() else { continue };
        match v {
            Verdict::Keep => b.push_ref(&r),
            Verdict::Drop => {}
            Verdict::Value(value) => b.push_ref_with_value(&r, value.as_deref()),
            Verdict::AddHeaders(h) => {
                let extra: Vec<(&str, Option<&[u8]>)> =
                    h.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
                b.push_ref_with_headers(&r, &extra);
            }
            Verdict::Records(rs) => rs.iter().for_each(|x| x.push_to(b)),
        }
    }
    Ok(match out {
        Some(b) => Output::Replace(crate::__finish(b)?),
        None if dropped => Output::Select(kept),
        None => Output::Passthrough,
    })
}

/// Keeps the records for which `keep` is true: `passthrough` or `select`, never a copy.
pub fn keep_if(batch: &Batch<'_>, mut keep: impl FnMut(&RecordRef<'_>) -> bool) -> Output {
    let kept: Vec<u32> = batch
        .iter()
        .filter(|r| keep(r))
        .map(|r| r.index() as u32)
        .collect();
    if kept.len() == batch.len() {
        Output::Passthrough
    } else {
        Output::Select(kept)
    }
}

/// Every record with one header added after its own.
pub fn add_header(batch: &Batch<'_>, name: &str, value: Option<&[u8]>) -> Result<Output, Error> {
    let mut b = BatchBuilder::with_capacity(
        batch.len(),
        batch.as_bytes().len() + batch.len() * (name.len() + value.map_or(0, <[u8]>::len)),
    );
    for r in batch.iter() {
        b.push_ref_with_headers(&r, &[(name, value)]);
    }
    Ok(Output::Replace(crate::__finish(b)?))
}

/// Every record with its value replaced by what `f` returns (`None` keeps the value).
pub fn map_values(
    batch: &Batch<'_>,
    mut f: impl FnMut(&RecordRef<'_>) -> Result<Option<Vec<u8>>, Error>,
) -> Result<Output, Error> {
    let mut b = BatchBuilder::with_capacity(batch.len(), batch.as_bytes().len());
    for r in batch.iter() {
        match at_record(&r, &mut f)? {
            Some(v) => b.push_ref_with_value(&r, Some(&v)),
            None => b.push_ref(&r),
        }
    }
    Ok(Output::Replace(crate::__finish(b)?))
}
