//! Tries to open a TCP connection to `addr` (no capability grants sockets): the error is
//! returned as a fatal plugin error, a connection as a record.
use weir_sdk::{Batch, Config, Descriptor, Error, Output, PluginKind, Transform};

struct Socket(String);

impl Transform for Socket {
    fn describe() -> Descriptor {
        let mut d =
            weir_sdk::descriptor("socket", "0.2.0", PluginKind::Transform, "Opens a socket");
        d.config.push(weir_sdk::config_key(
            "addr",
            weir_sdk::ConfigType::String,
            true,
            None,
            "host:port to connect to",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        Ok(Socket(
            weir_sdk::config_required(&config, "addr")?.to_string(),
        ))
    }
    fn apply(&mut self, _batch: &Batch<'_>) -> Result<Output, Error> {
        match std::net::TcpStream::connect(&self.0) {
            Ok(_) => Err(Error::Fatal(format!("connected to {}", self.0))),
            Err(e) => Err(Error::Retriable(format!("refused: {e}"))),
        }
    }
}

weir_sdk::export_transform!(Socket);
