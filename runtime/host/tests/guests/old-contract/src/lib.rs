//! A transform built against another version of the contract (weir:connector@0.1.0), which
//! the host must refuse by name.
wit_bindgen::generate!({
    inline: r#"
        package weir:connector@0.1.0;
        interface transformer {
            describe: func() -> string;
        }
        world transform {
            export transformer;
        }
    "#,
});

struct Old;

impl exports::weir::connector::transformer::Guest for Old {
    fn describe() -> String {
        "old".into()
    }
}

export!(Old);
