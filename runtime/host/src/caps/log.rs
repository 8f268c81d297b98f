//! `log`: a plugin's log lines, into the host's tracing span of its connector task.

use wasmtime::component::{HasData, Linker};

use crate::bindings::weir::connector::log;

/// The `log` capability of one task.
pub(crate) struct LogCtx {
    plugin: String,
    task: String,
}

impl LogCtx {
    pub(crate) fn new(plugin: &str, task: &str) -> LogCtx {
        LogCtx {
            plugin: plugin.to_string(),
            task: task.to_string(),
        }
    }
}

impl log::Host for LogCtx {
    fn log(&mut self, level: log::Level, message: String) {
        let (plugin, task) = (self.plugin.as_str(), self.task.as_str());
        match level {
            log::Level::Trace => tracing::trace!(plugin, task, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, task, "{message}"),
            log::Level::Info => tracing::info!(plugin, task, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, task, "{message}"),
            log::Level::Error => tracing::error!(plugin, task, "{message}"),
        }
    }
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = &'a mut LogCtx;
}

pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LogCtx,
) -> wasmtime::Result<()> {
    log::add_to_linker::<T, HasLog>(linker, get)
}
