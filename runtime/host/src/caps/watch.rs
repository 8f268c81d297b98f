//! `watch`: change events for files under the directories a task is granted, fed by the
//! host's `notify` watcher. Symlinks are never followed; events from outside a grant are
//! dropped; the queue is bounded.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasData, Linker};

use super::{DirGrant, guest_to_host, host_to_guest};
use crate::bindings::weir::connector::watch;

/// Most change events kept for a task between two `events` calls; older ones are dropped
/// (and the drop is logged), so a plugin that never reads cannot grow the host's memory.
const MAX_EVENTS: usize = 10_000;

/// The task's file watcher: events from `notify`, mapped to guest paths.
struct Watch {
    watcher: notify::RecommendedWatcher,
    events: Arc<Mutex<VecDeque<watch::Event>>>,
}

impl Watch {
    fn new(dirs: &[DirGrant], plugin: &str) -> Result<Watch, String> {
        use notify::event::{EventKind, ModifyKind, RenameMode};
        let roots: Vec<(PathBuf, String)> = dirs
            .iter()
            .filter_map(|d| Some((d.host.canonicalize().ok()?, d.guest.clone())))
            .collect();
        let events: Arc<Mutex<VecDeque<watch::Event>>> = Arc::default();
        let sink = events.clone();
        let plugin = plugin.to_string();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            let push = |path: &Path, change: watch::Change| {
                // The directory an event happened in must really be inside a grant (a path
                // through a symlink is not).
                let inside = path
                    .parent()
                    .and_then(|p| p.canonicalize().ok())
                    .is_some_and(|p| roots.iter().any(|(root, _)| p.starts_with(root)));
                if !inside {
                    return;
                }
                let Some(path) = host_to_guest(&roots, path) else {
                    return;
                };
                let mut q = sink.lock().unwrap_or_else(|p| p.into_inner());
                if q.len() >= MAX_EVENTS {
                    q.pop_front();
                    tracing::warn!(plugin, "watch events not read; dropping the oldest");
                }
                q.push_back(watch::Event { path, change });
            };
            match ev.kind {
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => ev
                    .paths
                    .iter()
                    .for_each(|p| push(p, watch::Change::Created)),
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => ev
                    .paths
                    .iter()
                    .for_each(|p| push(p, watch::Change::Removed)),
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                    if let [from, to] = ev.paths.as_slice() {
                        push(from, watch::Change::Removed);
                        push(to, watch::Change::Created);
                    }
                }
                EventKind::Modify(ModifyKind::Metadata(_)) => {}
                EventKind::Modify(_) => ev
                    .paths
                    .iter()
                    .for_each(|p| push(p, watch::Change::Modified)),
                _ => {}
            }
        };
        // Never follow symlinks while walking a recursive watch: one could lead out of the
        // grant (WASI lets a plugin create relative symlinks inside a writable directory).
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = <notify::RecommendedWatcher as notify::Watcher>::new(handler, config)
            .map_err(|e| format!("cannot start a file watcher: {e}"))?;
        Ok(Watch { watcher, events })
    }

    fn add(&mut self, host: &Path, recursive: bool) -> Result<(), String> {
        use notify::Watcher;
        let mode = if recursive {
            notify::RecursiveMode::Recursive
        } else {
            notify::RecursiveMode::NonRecursive
        };
        self.watcher
            .watch(host, mode)
            .map_err(|e| format!("cannot watch {}: {e}", host.display()))
    }

    fn drain(&self, max: u32) -> Vec<watch::Event> {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let n = q.len().min(max as usize);
        q.drain(..n).collect()
    }
}

/// The `watch` capability of one task. It survives the recycling of the plugin's instance.
pub(crate) struct WatchCtx {
    plugin: String,
    dirs: Vec<DirGrant>,
    watch: Option<Watch>,
}

impl WatchCtx {
    pub(crate) fn new(plugin: &str, dirs: &[DirGrant]) -> WatchCtx {
        WatchCtx {
            plugin: plugin.to_string(),
            dirs: dirs.to_vec(),
            watch: None,
        }
    }
}

impl watch::Host for WatchCtx {
    fn watch(&mut self, path: String, recursive: bool) -> Result<(), String> {
        let host = guest_to_host(&self.dirs, &path)?;
        let w = match &mut self.watch {
            Some(w) => w,
            None => self.watch.insert(Watch::new(&self.dirs, &self.plugin)?),
        };
        w.add(&host, recursive)
    }

    fn events(&mut self, max: u32) -> Vec<watch::Event> {
        self.watch
            .as_ref()
            .map(|w| w.drain(max))
            .unwrap_or_default()
    }
}

struct HasWatch;

impl HasData for HasWatch {
    type Data<'a> = &'a mut WatchCtx;
}

pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut WatchCtx,
) -> wasmtime::Result<()> {
    watch::add_to_linker::<T, HasWatch>(linker, get)
}
