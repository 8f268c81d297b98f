//! The WIT contract's generated bindings: one `bindgen!` per world. The source and sink worlds
//! reuse the transform world's types and capability interfaces, so every task shares one set of
//! Rust types and the capability modules (`caps::*`) implement each interface once.

pub(crate) mod transform {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "transform",
        additional_derives: [PartialEq],
        with: {
            "weir:connector/sql.connection": crate::caps::sql::Connection,
            "weir:connector/sql.cursor": crate::caps::sql::Cursor,
            "weir:connector/sql.change-stream": crate::caps::sql::ChangeStream,
        },
    });
}

pub(crate) mod source {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "source-connector",
        with: {
            "weir:connector/types": super::transform::weir::connector::types,
            "weir:connector/log": super::transform::weir::connector::log,
            "weir:connector/state": super::transform::weir::connector::state,
            "weir:connector/http": super::transform::weir::connector::http,
            "weir:connector/watch": super::transform::weir::connector::watch,
            "weir:connector/sql": super::transform::weir::connector::sql,
        },
    });
}

pub(crate) mod sink {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "sink-connector",
        with: {
            "weir:connector/types": super::transform::weir::connector::types,
            "weir:connector/log": super::transform::weir::connector::log,
            "weir:connector/state": super::transform::weir::connector::state,
            "weir:connector/http": super::transform::weir::connector::http,
            "weir:connector/watch": super::transform::weir::connector::watch,
            "weir:connector/sql": super::transform::weir::connector::sql,
        },
    });
}

pub(crate) use transform::weir;
