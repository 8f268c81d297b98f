//! A transform built against weir:connector@0.2.0 (a copy of that contract's WIT in `wit/`),
//! which a host at a later 0.2.x must keep running: it returns every batch unchanged.
wit_bindgen::generate!({
    path: "wit",
    world: "transform",
    generate_all,
});

use exports::weir::connector::transformer::Guest;
use weir::connector::types::{ConfigError, Descriptor, Error, Output, PluginKind};

struct Old;

impl Guest for Old {
    fn describe() -> Descriptor {
        Descriptor {
            name: "contract-020".into(),
            version: "0.2.0".into(),
            kind: PluginKind::Transform,
            description: "Built against weir:connector@0.2.0".into(),
            config: Vec::new(),
        }
    }
    fn validate(_config: Vec<(String, String)>) -> Vec<ConfigError> {
        Vec::new()
    }
    fn open(_config: Vec<(String, String)>) -> Result<(), Error> {
        Ok(())
    }
    fn apply(_input: Vec<u8>) -> Result<Output, Error> {
        Ok(Output::Passthrough)
    }
}

export!(Old);
