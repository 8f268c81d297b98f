//! `weir-sdk`: write Weir plugins in Rust.
//!
//! A transform is a type implementing [`Transform`], exported with [`export_transform!`], and
//! built for `wasm32-wasip2` as a `cdylib`:
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
//! Batches cross the boundary whole: `apply` gets and returns a `Vec`, never one record at a
//! time. Records may be dropped, changed or multiplied. Return [`Error::BadRecord`] to have
//! the runtime dead-letter one record, [`Error::Retriable`] to be called again later.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::bindings",
        export_macro_name: "export_transform_world",
    });
}

pub use bindings::weir::connector::log::Level;
pub use bindings::weir::connector::types::{
    BadRecord, ConfigError, ConfigKey, ConfigType, Descriptor, Error, Header, LogPosition, PluginKind, Record,
};

/// Logs into the host's tracing span for this connector task.
pub fn log(level: Level, message: &str) {
    bindings::weir::connector::log::log(level, message);
}

/// Reads a value from the task's private state.
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    bindings::weir::connector::state::get(key)
}

/// Stores a value (at most 1 MiB) in the task's private state.
pub fn state_set(key: &str, value: &[u8]) {
    bindings::weir::connector::state::set(key, value);
}

/// A descriptor with no configuration keys.
pub fn descriptor(name: &str, version: &str, kind: PluginKind, description: &str) -> Descriptor {
    Descriptor { name: name.into(), version: version.into(), kind, description: description.into(), config: Vec::new() }
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

/// Exports a [`Transform`] implementation as the component's `transformer` interface.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        struct __WeirTransformExport;

        ::std::thread_local! {
            static __WEIR_TRANSFORM: ::std::cell::RefCell<::std::option::Option<$t>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        impl $crate::bindings::exports::weir::connector::transformer::Guest for __WeirTransformExport {
            fn describe() -> $crate::Descriptor {
                <$t as $crate::Transform>::describe()
            }

            fn open(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<(), $crate::Error> {
                let t = <$t as $crate::Transform>::open(config)?;
                __WEIR_TRANSFORM.with(|slot| *slot.borrow_mut() = ::std::option::Option::Some(t));
                ::std::result::Result::Ok(())
            }

            fn apply(batch: ::std::vec::Vec<$crate::Record>) -> ::std::result::Result<::std::vec::Vec<$crate::Record>, $crate::Error> {
                __WEIR_TRANSFORM.with(|slot| match slot.borrow_mut().as_mut() {
                    ::std::option::Option::Some(t) => <$t as $crate::Transform>::apply(t, batch),
                    ::std::option::Option::None => ::std::result::Result::Err($crate::Error::Fatal("apply called before open".into())),
                })
            }
        }

        $crate::bindings::export_transform_world!(__WeirTransformExport with_types_in $crate::bindings);
    };
}
