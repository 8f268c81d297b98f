//! `weir-sdk`: write Weir plugins in Rust, against `weir:connector@0.2.2`.
//!
//! Enable exactly one world with a feature (`transform`, `source` or `sink`), implement its
//! trait ([`Transform`], [`Source`], [`Sink`]), export it with the matching macro, and build for
//! `wasm32-wasip2` as a `cdylib`. A transform that upper-cases values:
//!
//! ```ignore
//! use weir_sdk::{Descriptor, Error, PluginKind, RecordRef, Transform, Verdict};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn describe() -> Descriptor {
//!         weir_sdk::descriptor("upper", "0.1.0", PluginKind::Transform, "Upper-cases values")
//!     }
//!     fn open(_config: weir_sdk::Config) -> Result<Self, Error> {
//!         Ok(Upper)
//!     }
//!     fn transform(&mut self, r: &RecordRef<'_>) -> Result<Verdict, Error> {
//!         Ok(match r.value() {
//!             Some(v) => Verdict::Value(Some(v.to_ascii_uppercase())),
//!             None => Verdict::Keep,
//!         })
//!     }
//! }
//!
//! weir_sdk::export_transform!(Upper);
//! ```
//!
//! Records cross the boundary in batches, one buffer per batch (`wit/BATCH.md`): a plugin
//! reads them through zero-copy [`RecordRef`] views and writes them with a [`BatchBuilder`].
//! A transform either decides per record ([`Transform::transform`]: keep, drop, or change) and
//! lets the SDK answer `passthrough` (all kept, nothing copied back), `select` (some dropped)
//! or a new batch, or works on the whole batch in [`Transform::apply`] (the [`output`]
//! helpers: [`output::keep_if`], [`output::add_header`], [`output::map_values`]).
//!
//! Sources get the offsets last committed for their source partitions in `open` and push
//! records into the batch `poll` fills; `ack` tells them what the log stored. Sinks are opened
//! with the positions the runtime committed, get batches in `put`, and return from `flush` the
//! positions that are durable (only those are committed).
//!
//! Capabilities beyond logs and state are granted by the connector's configuration: files
//! through `std::fs` under preopened directories, [`watch`] for change events there,
//! [`http::send`] to allow-listed hosts, and [`sql`] connections to granted databases.

/// The contract's types and the host's capabilities (imports only; shared by every world).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "capabilities",
        generate_all,
    });
}

macro_rules! world_bindings {
    ($feature:literal, $module:ident, $world:literal, $bindings:literal, $macro_name:literal) => {
        #[cfg(feature = $feature)]
        #[doc(hidden)]
        pub mod $module {
            wit_bindgen::generate!({
                path: "../../wit",
                world: $world,
                with: {
                    "weir:connector/types@0.2.2": crate::bindings::weir::connector::types,
                    "weir:connector/log@0.2.2": crate::bindings::weir::connector::log,
                    "weir:connector/state@0.2.2": crate::bindings::weir::connector::state,
                    "weir:connector/http@0.2.2": crate::bindings::weir::connector::http,
                    "weir:connector/watch@0.2.2": crate::bindings::weir::connector::watch,
                    "weir:connector/sql@0.2.2": crate::bindings::weir::connector::sql,
                },
                pub_export_macro: true,
                default_bindings_module: $bindings,
                export_macro_name: $macro_name,
            });
        }
    };
}

world_bindings!(
    "transform",
    transform_bindings,
    "transform",
    "weir_sdk::transform_bindings",
    "export_transform_world"
);
world_bindings!(
    "source",
    source_bindings,
    "source-connector",
    "weir_sdk::source_bindings",
    "export_source_world"
);
world_bindings!(
    "sink",
    sink_bindings,
    "sink-connector",
    "weir_sdk::sink_bindings",
    "export_sink_world"
);

mod host;
pub mod output;
pub mod sql;

pub use bindings::weir::connector::log::Level;
pub use bindings::weir::connector::types::{
    BadRecord, ConfigError, ConfigKey, ConfigType, Descriptor, Error, LogPosition, Output,
    PluginKind,
};
pub use bindings::weir::connector::watch::{Change, Event};
pub use host::*;
pub use weir_batch::{Batch, BatchBuilder, Header, RecordData, RecordRef};

/// A connector's configuration, as key/value strings.
pub type Config = Vec<(String, String)>;
/// Source partition -> source offset pairs, as opaque bytes.
pub type Offsets = Vec<(Vec<u8>, Vec<u8>)>;

/// What [`Transform::transform`] does with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep it unchanged.
    Keep,
    /// Drop it.
    Drop,
    /// Keep it with this value.
    Value(Option<Vec<u8>>),
    /// Keep it with these headers added after its own.
    AddHeaders(Vec<(String, Option<Vec<u8>>)>),
    /// Replace it with these records (none, one or several).
    Records(Vec<OwnedRecord>),
}

/// A record with owned fields, to create records or replace one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnedRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub topic: String,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub source_partition: Option<Vec<u8>>,
    pub source_offset: Option<Vec<u8>>,
}

impl OwnedRecord {
    /// A copy of a record of a batch.
    pub fn from_ref(r: &RecordRef<'_>) -> OwnedRecord {
        OwnedRecord {
            timestamp: r.timestamp(),
            key: r.key().map(<[u8]>::to_vec),
            value: r.value().map(<[u8]>::to_vec),
            headers: r
                .headers()
                .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            topic: r.topic().to_string(),
            partition: r.partition(),
            offset: r.offset(),
            source_partition: r.source_partition().map(<[u8]>::to_vec),
            source_offset: r.source_offset().map(<[u8]>::to_vec),
        }
    }

    /// Appends it to a batch.
    pub fn push_to(&self, b: &mut BatchBuilder) {
        let headers: Vec<(&str, Option<&[u8]>)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect();
        b.push(&RecordData {
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &headers,
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            source_partition: self.source_partition.as_deref(),
            source_offset: self.source_offset.as_deref(),
        });
    }
}

/// A transform plugin. One value lives per task, created by `open`.
pub trait Transform: Sized + 'static {
    /// Name, version, kind and configuration definition.
    fn describe() -> Descriptor;
    /// Checks a configuration beyond what the descriptor declares (the host has already
    /// checked required keys, unknown keys and types).
    fn validate(_config: &Config) -> Vec<ConfigError> {
        Vec::new()
    }
    /// Builds the task's state from its configuration.
    fn open(config: Config) -> Result<Self, Error>;
    /// One record; the default [`Transform::apply`] calls it for each. Keeps every record
    /// unless overridden.
    fn transform(&mut self, _record: &RecordRef<'_>) -> Result<Verdict, Error> {
        Ok(Verdict::Keep)
    }
    /// One batch. The default asks [`Transform::transform`] about each record and answers
    /// `passthrough`, `select` or a new batch, whichever costs least.
    fn apply(&mut self, batch: &Batch<'_>) -> Result<Output, Error> {
        output::per_record(batch, |r| self.transform(r))
    }
}

/// A source plugin. One value lives per task, created by `open`.
pub trait Source: Sized + 'static {
    fn describe() -> Descriptor;
    fn validate(_config: &Config) -> Vec<ConfigError> {
        Vec::new()
    }
    /// Splits the connector's work into at most `max_tasks` task configurations (one task
    /// unless overridden).
    fn task_configs(config: Config, _max_tasks: u32) -> Result<Vec<Config>, Error> {
        Ok(vec![config])
    }
    /// `committed` holds the offset last stored for each source partition, where reading
    /// resumes.
    fn open(config: Config, committed: Offsets) -> Result<Self, Error>;
    /// Pushes at most `max` records into `out` (none: nothing now). Each record names its
    /// source partition and source offset.
    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error>;
    /// The log has stored records up to these source offsets.
    fn ack(&mut self, _stored: Offsets) {}
    /// The task is stopping.
    fn close(&mut self) {}
}

/// A sink plugin. One value lives per task, created by `open`.
pub trait Sink: Sized + 'static {
    fn describe() -> Descriptor;
    fn validate(_config: &Config) -> Vec<ConfigError> {
        Vec::new()
    }
    fn task_configs(config: Config, _max_tasks: u32) -> Result<Vec<Config>, Error> {
        Ok(vec![config])
    }
    /// `committed`: per topic partition, the last position the runtime committed; output
    /// written past it before a crash is to be dropped or overwritten.
    fn open(config: Config, committed: Vec<LogPosition>) -> Result<Self, Error>;
    /// Takes one batch (it may buffer).
    fn put(&mut self, batch: &Batch<'_>) -> Result<(), Error>;
    /// Makes everything up to these positions durable, and returns the positions that are
    /// durable now (the runtime commits exactly those).
    fn flush(&mut self, up_to: Vec<LogPosition>) -> Result<Vec<LogPosition>, Error>;
    /// The task is stopping.
    fn close(&mut self) {}
}

/// Reads a batch the host sent. The host built it, so only its header is checked (constant
/// time, not per record); views stay bounds-checked whatever the bytes say.
#[doc(hidden)]
pub fn __parse(input: &[u8]) -> Result<Batch<'_>, Error> {
    Batch::parse_trusted(input)
        .map_err(|e| Error::Fatal(format!("the host sent an invalid batch: {e}")))
}

/// A finished batch, or a fatal error when it could not be (over 4 GiB).
#[doc(hidden)]
pub fn __finish(b: BatchBuilder) -> Result<Vec<u8>, Error> {
    b.finish().map_err(|e| Error::Fatal(e.to_string()))
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

        fn __weir_with<R>(
            f: impl FnOnce(&mut $t) -> ::std::result::Result<R, $crate::Error>,
        ) -> ::std::result::Result<R, $crate::Error> {
            __WEIR_PLUGIN.with(|slot| match slot.borrow_mut().as_mut() {
                ::std::option::Option::Some(t) => f(t),
                ::std::option::Option::None => {
                    ::std::result::Result::Err($crate::Error::Fatal("called before open".into()))
                }
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

            fn validate(config: $crate::Config) -> ::std::vec::Vec<$crate::ConfigError> {
                <$t as $crate::Transform>::validate(&config)
            }

            fn open(config: $crate::Config) -> ::std::result::Result<(), $crate::Error> {
                __weir_set(<$t as $crate::Transform>::open(config)?);
                ::std::result::Result::Ok(())
            }

            fn apply(input: ::std::vec::Vec<u8>) -> ::std::result::Result<$crate::Output, $crate::Error> {
                let batch = $crate::__parse(&input)?;
                __weir_with(|t| <$t as $crate::Transform>::apply(t, &batch))
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

            fn validate(config: $crate::Config) -> ::std::vec::Vec<$crate::ConfigError> {
                <$t as $crate::Source>::validate(&config)
            }

            fn task_configs(config: $crate::Config, max_tasks: u32) -> ::std::result::Result<::std::vec::Vec<$crate::Config>, $crate::Error> {
                <$t as $crate::Source>::task_configs(config, max_tasks)
            }

            fn open(config: $crate::Config, committed: $crate::Offsets) -> ::std::result::Result<(), $crate::Error> {
                __weir_set(<$t as $crate::Source>::open(config, committed)?);
                ::std::result::Result::Ok(())
            }

            fn poll(max: u32) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::Error> {
                __weir_with(|t| {
                    let mut out = $crate::BatchBuilder::new();
                    <$t as $crate::Source>::poll(t, max, &mut out)?;
                    $crate::__finish(out)
                })
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

            fn validate(config: $crate::Config) -> ::std::vec::Vec<$crate::ConfigError> {
                <$t as $crate::Sink>::validate(&config)
            }

            fn task_configs(config: $crate::Config, max_tasks: u32) -> ::std::result::Result<::std::vec::Vec<$crate::Config>, $crate::Error> {
                <$t as $crate::Sink>::task_configs(config, max_tasks)
            }

            fn open(config: $crate::Config, committed: ::std::vec::Vec<$crate::LogPosition>) -> ::std::result::Result<(), $crate::Error> {
                __weir_set(<$t as $crate::Sink>::open(config, committed)?);
                ::std::result::Result::Ok(())
            }

            fn put(input: ::std::vec::Vec<u8>) -> ::std::result::Result<(), $crate::Error> {
                let batch = $crate::__parse(&input)?;
                __weir_with(|t| <$t as $crate::Sink>::put(t, &batch))
            }

            fn flush(up_to: ::std::vec::Vec<$crate::LogPosition>) -> ::std::result::Result<::std::vec::Vec<$crate::LogPosition>, $crate::Error> {
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
