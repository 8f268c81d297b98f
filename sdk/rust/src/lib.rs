//! `weir-sdk`: write Weir plugins in Rust.
//!
//! Enable exactly one world with a feature (`transform`, `source` or `sink`), implement its
//! trait ([`Transform`], [`Source`], [`Sink`]), export it with the matching macro, and build
//! for `wasm32-wasip2` as a `cdylib`. A transform:
//!
//! ```ignore
//! use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn describe() -> Descriptor {
//!         weir_sdk::descriptor("upper", "0.1.0", PluginKind::Transform, "Upper-cases values")
//!     }
//!     fn open(_config: Vec<(String, String)>) -> Result<Self, Error> {
//!         Ok(Upper)
//!     }
//!     fn apply(&mut self, mut batch: Vec<Record>) -> Result<Vec<Record>, Error> {
//!         for r in &mut batch {
//!             if let Some(v) = &mut r.value {
//!                 v.make_ascii_uppercase();
//!             }
//!         }
//!         Ok(batch)
//!     }
//! }
//!
//! weir_sdk::export_transform!(Upper);
//! ```
//!
//! Sources get the offsets last committed for their source partitions in `open`, return
//! batches from `poll` (each record naming its source partition and offset), and are told in
//! `ack` what the log has stored. Sinks get batches in `put` and must make everything up to the
//! given positions durable in `flush`, after which the runtime commits them.
//!
//! Capabilities beyond logs and state are granted by the connector's configuration: files
//! through `std::fs` under preopened directories, [`watch`] for change events there, and
//! [`http::send`] to allow-listed hosts.
//!
//! Batches cross the boundary whole: `apply` gets and returns a `Vec`, never one record at a
//! time. Records may be dropped, changed or multiplied. Return [`Error::BadRecord`] to have
//! the runtime dead-letter one record, [`Error::Retriable`] to be called again later.

/// The contract's types and the host's capabilities (imports only; shared by every world).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "capabilities",
        generate_all,
    });
}

#[cfg(feature = "transform")]
#[doc(hidden)]
pub mod transform_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform",
        with: {
            "weir:connector/types@0.1.0": crate::bindings::weir::connector::types,
            "weir:connector/log@0.1.0": crate::bindings::weir::connector::log,
            "weir:connector/state@0.1.0": crate::bindings::weir::connector::state,
            "weir:connector/http@0.1.0": crate::bindings::weir::connector::http,
            "weir:connector/watch@0.1.0": crate::bindings::weir::connector::watch,
        },
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::transform_bindings",
        export_macro_name: "export_transform_world",
    });
}

#[cfg(feature = "source")]
#[doc(hidden)]
pub mod source_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "source-connector",
        with: {
            "weir:connector/types@0.1.0": crate::bindings::weir::connector::types,
            "weir:connector/log@0.1.0": crate::bindings::weir::connector::log,
            "weir:connector/state@0.1.0": crate::bindings::weir::connector::state,
            "weir:connector/http@0.1.0": crate::bindings::weir::connector::http,
            "weir:connector/watch@0.1.0": crate::bindings::weir::connector::watch,
        },
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::source_bindings",
        export_macro_name: "export_source_world",
    });
}

#[cfg(feature = "sink")]
#[doc(hidden)]
pub mod sink_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sink-connector",
        with: {
            "weir:connector/types@0.1.0": crate::bindings::weir::connector::types,
            "weir:connector/log@0.1.0": crate::bindings::weir::connector::log,
            "weir:connector/state@0.1.0": crate::bindings::weir::connector::state,
            "weir:connector/http@0.1.0": crate::bindings::weir::connector::http,
            "weir:connector/watch@0.1.0": crate::bindings::weir::connector::watch,
        },
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::sink_bindings",
        export_macro_name: "export_sink_world",
    });
}

pub use bindings::weir::connector::log::Level;
pub use bindings::weir::connector::types::{
    BadRecord, ConfigError, ConfigKey, ConfigType, Descriptor, Error, Header, LogPosition, PluginKind, Record,
};
pub use bindings::weir::connector::watch::{Change, Event};

/// Source partition -> source offset pairs, as opaque bytes.
pub type Offsets = Vec<(Vec<u8>, Vec<u8>)>;

/// Logs into the host's tracing span for this connector task.
pub fn log(level: Level, message: &str) {
    bindings::weir::connector::log::log(level, message);
}

/// Reads a value from the task's private state (it survives instance recycling).
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    bindings::weir::connector::state::get(key)
}

/// Stores a value in the task's private state (keys up to 1 KiB, values up to 1 MiB, 64 MiB
/// per task); the error says which bound it hit.
pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
    bindings::weir::connector::state::set(key, value)
}

/// Removes a value from the task's private state.
pub fn state_delete(key: &str) {
    bindings::weir::connector::state::delete(key);
}

/// Outgoing HTTP to the hosts the connector's `weir.http.allow` names.
pub mod http {
    pub use crate::bindings::weir::connector::http::{HttpError, Request, Response, send};

    /// A GET request with no headers.
    pub fn get(url: &str) -> Result<Response, HttpError> {
        send(&Request { method: "GET".into(), url: url.into(), headers: Vec::new(), body: None })
    }
}

/// Starts watching `path` (under a directory the connector grants) for changes.
pub fn watch(path: &str, recursive: bool) -> Result<(), String> {
    bindings::weir::connector::watch::watch(path, recursive)
}

/// The change events since the last call, oldest first, at most `max`.
pub fn watch_events(max: u32) -> Vec<Event> {
    bindings::weir::connector::watch::events(max)
}

/// A descriptor with no configuration keys.
pub fn descriptor(name: &str, version: &str, kind: PluginKind, description: &str) -> Descriptor {
    Descriptor { name: name.into(), version: version.into(), kind, description: description.into(), config: Vec::new() }
}

/// A configuration key's definition.
pub fn config_key(name: &str, type_: ConfigType, required: bool, default_value: Option<&str>, documentation: &str) -> ConfigKey {
    ConfigKey {
        name: name.into(),
        type_,
        default_value: default_value.map(Into::into),
        documentation: documentation.into(),
        required,
        secret: false,
    }
}

/// The value of `key` in a plugin's configuration.
pub fn config_get<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The value of a required key, or the `invalid-config` error the runtime expects.
pub fn config_required<'a>(config: &'a [(String, String)], key: &str) -> Result<&'a str, Error> {
    config_get(config, key).ok_or_else(|| Error::InvalidConfig(ConfigError { key: key.into(), message: "required".into() }))
}

/// A transform plugin. One value lives per task, created by `open`.
pub trait Transform: Sized + 'static {
    /// Name, version, kind and configuration definition.
    fn describe() -> Descriptor;
    /// Validates the configuration and builds the task's state.
    fn open(config: Vec<(String, String)>) -> Result<Self, Error>;
    /// Transforms one batch.
    fn apply(&mut self, batch: Vec<Record>) -> Result<Vec<Record>, Error>;
}

/// A source plugin. One value lives per task, created by `open`.
pub trait Source: Sized + 'static {
    /// Name, version, kind and configuration definition.
    fn describe() -> Descriptor;
    /// Validates the configuration; `committed` holds the offset last stored for each source
    /// partition, where reading resumes.
    fn open(config: Vec<(String, String)>, committed: Offsets) -> Result<Self, Error>;
    /// At most `max` records; an empty batch when there is nothing now.
    fn poll(&mut self, max: u32) -> Result<Vec<Record>, Error>;
    /// The log has stored records up to these source offsets.
    fn ack(&mut self, _stored: Offsets) {}
    /// The task is stopping.
    fn close(&mut self) {}
}

/// A sink plugin. One value lives per task, created by `open`.
pub trait Sink: Sized + 'static {
    /// Name, version, kind and configuration definition.
    fn describe() -> Descriptor;
    /// Validates the configuration and connects.
    fn open(config: Vec<(String, String)>) -> Result<Self, Error>;
    /// Takes one batch (it may buffer).
    fn put(&mut self, batch: Vec<Record>) -> Result<(), Error>;
    /// Makes everything up to these positions durable.
    fn flush(&mut self, up_to: Vec<LogPosition>) -> Result<(), Error>;
    /// The task is stopping.
    fn close(&mut self) {}
}

/// The per-task value of an exported plugin.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_slot {
    ($t:ty) => {
        ::std::thread_local! {
            static __WEIR_PLUGIN: ::std::cell::RefCell<::std::option::Option<$t>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        fn __weir_with<R>(f: impl FnOnce(&mut $t) -> ::std::result::Result<R, $crate::Error>) -> ::std::result::Result<R, $crate::Error> {
            __WEIR_PLUGIN.with(|slot| match slot.borrow_mut().as_mut() {
                ::std::option::Option::Some(t) => f(t),
                ::std::option::Option::None => ::std::result::Result::Err($crate::Error::Fatal("called before open".into())),
            })
        }

        fn __weir_set(t: $t) {
            __WEIR_PLUGIN.with(|slot| *slot.borrow_mut() = ::std::option::Option::Some(t));
        }
    };
}

/// Exports a [`Transform`] implementation as the component's `transformer` interface.
#[cfg(feature = "transform")]
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        struct __WeirTransformExport;
        $crate::__weir_slot!($t);

        impl $crate::transform_bindings::exports::weir::connector::transformer::Guest for __WeirTransformExport {
            fn describe() -> $crate::Descriptor {
                <$t as $crate::Transform>::describe()
            }

            fn open(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<(), $crate::Error> {
                __weir_set(<$t as $crate::Transform>::open(config)?);
                ::std::result::Result::Ok(())
            }

            fn apply(batch: ::std::vec::Vec<$crate::Record>) -> ::std::result::Result<::std::vec::Vec<$crate::Record>, $crate::Error> {
                __weir_with(|t| <$t as $crate::Transform>::apply(t, batch))
            }
        }

        $crate::transform_bindings::export_transform_world!(__WeirTransformExport with_types_in $crate::transform_bindings);
    };
}

/// Exports a [`Source`] implementation as the component's `source` interface.
#[cfg(feature = "source")]
#[macro_export]
macro_rules! export_source {
    ($t:ty) => {
        struct __WeirSourceExport;
        $crate::__weir_slot!($t);

        impl $crate::source_bindings::exports::weir::connector::source::Guest for __WeirSourceExport {
            fn describe() -> $crate::Descriptor {
                <$t as $crate::Source>::describe()
            }

            fn open(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>, committed: $crate::Offsets) -> ::std::result::Result<(), $crate::Error> {
                __weir_set(<$t as $crate::Source>::open(config, committed)?);
                ::std::result::Result::Ok(())
            }

            fn poll(max: u32) -> ::std::result::Result<::std::vec::Vec<$crate::Record>, $crate::Error> {
                __weir_with(|t| <$t as $crate::Source>::poll(t, max))
            }

            fn ack(stored: $crate::Offsets) {
                let _ = __weir_with(|t| {
                    <$t as $crate::Source>::ack(t, stored);
                    ::std::result::Result::Ok(())
                });
            }

            fn close() {
                let _ = __weir_with(|t| {
                    <$t as $crate::Source>::close(t);
                    ::std::result::Result::Ok(())
                });
            }
        }

        $crate::source_bindings::export_source_world!(__WeirSourceExport with_types_in $crate::source_bindings);
    };
}

/// Exports a [`Sink`] implementation as the component's `sink` interface.
#[cfg(feature = "sink")]
#[macro_export]
macro_rules! export_sink {
    ($t:ty) => {
        struct __WeirSinkExport;
        $crate::__weir_slot!($t);

        impl $crate::sink_bindings::exports::weir::connector::sink::Guest for __WeirSinkExport {
            fn describe() -> $crate::Descriptor {
                <$t as $crate::Sink>::describe()
            }

            fn open(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<(), $crate::Error> {
                __weir_set(<$t as $crate::Sink>::open(config)?);
                ::std::result::Result::Ok(())
            }

            fn put(batch: ::std::vec::Vec<$crate::Record>) -> ::std::result::Result<(), $crate::Error> {
                __weir_with(|t| <$t as $crate::Sink>::put(t, batch))
            }

            fn flush(up_to: ::std::vec::Vec<$crate::LogPosition>) -> ::std::result::Result<(), $crate::Error> {
                __weir_with(|t| <$t as $crate::Sink>::flush(t, up_to))
            }

            fn close() {
                let _ = __weir_with(|t| {
                    <$t as $crate::Sink>::close(t);
                    ::std::result::Result::Ok(())
                });
            }
        }

        $crate::sink_bindings::export_sink_world!(__WeirSinkExport with_types_in $crate::sink_bindings);
    };
}
