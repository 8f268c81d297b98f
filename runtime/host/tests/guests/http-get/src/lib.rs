//! GETs `url` on every batch and returns the body as one record with a `status` header.
use weir_sdk::http::{self, HttpError};
use weir_sdk::{Descriptor, Error, Header, PluginKind, Record, Transform};

struct Get(String);

impl Transform for Get {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("http-get", "0.1.0", PluginKind::Transform, "Fetches one URL")
    }
    fn open(config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Get(weir_sdk::config_required(&config, "url")?.to_string()))
    }
    fn apply(&mut self, _batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        let resp = http::get(&self.0).map_err(|e| match e {
            HttpError::Denied(m) => Error::Fatal(format!("denied: {m}")),
            HttpError::InvalidRequest(m) => Error::Fatal(format!("invalid request: {m}")),
            HttpError::Failed(m) => Error::Retriable(m),
        })?;
        Ok(vec![Record {
            key: None,
            value: Some(resp.body),
            headers: vec![Header { name: "status".into(), value: Some(resp.status.to_string().into_bytes()) }],
            timestamp: 0,
            topic: String::new(),
            partition: None,
            position: None,
            source_partition: None,
            source_offset: None,
        }])
    }
}

weir_sdk::export_transform!(Get);
