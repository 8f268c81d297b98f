//! GETs `url` on every batch and returns the body as one record with a `status` header.
use weir_sdk::http::{self, HttpError};
use weir_sdk::{
    Batch, BatchBuilder, Config, Descriptor, Error, Output, PluginKind, RecordData, Transform,
};

struct Get(String);

impl Transform for Get {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "http-get",
            "0.2.0",
            PluginKind::Transform,
            "Fetches one URL",
        );
        d.config.push(weir_sdk::config_key(
            "url",
            weir_sdk::ConfigType::String,
            true,
            None,
            "URL to fetch",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        Ok(Get(weir_sdk::config_required(&config, "url")?.to_string()))
    }
    fn apply(&mut self, _batch: &Batch<'_>) -> Result<Output, Error> {
        let resp = http::get(&self.0).map_err(|e| match e {
            HttpError::Denied(m) => Error::Fatal(format!("denied: {m}")),
            HttpError::InvalidRequest(m) => Error::Fatal(format!("invalid request: {m}")),
            HttpError::Failed(m) => Error::Retriable(m),
        })?;
        let status = resp.status.to_string();
        let mut b = BatchBuilder::new();
        b.push(&RecordData {
            value: Some(&resp.body),
            headers: &[("status", Some(status.as_bytes()))],
            ..Default::default()
        });
        Ok(Output::Replace(
            b.finish().map_err(|e| Error::Fatal(e.to_string()))?,
        ))
    }
}

weir_sdk::export_transform!(Get);
