//! `log`: a plugin's log lines, into the host's tracing span of its connector task (every
//! call runs inside a span naming the plugin, the task and the function).

use wasmtime::component::{HasData, Linker};

use crate::bindings::weir::connector::log;

/// The `log` capability of one task. It holds nothing: the span of the call names the plugin,
/// the task and the function.
pub(crate) struct LogCtx;

impl log::Host for LogCtx {
    fn log(&mut self, level: log::Level, message: String) {
        match level {
            log::Level::Trace => tracing::trace!("{message}"),
            log::Level::Debug => tracing::debug!("{message}"),
            log::Level::Info => tracing::info!("{message}"),
            log::Level::Warn => tracing::warn!("{message}"),
            log::Level::Error => tracing::error!("{message}"),
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
