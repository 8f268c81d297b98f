//! Tries to open a TCP connection to `addr` (no capability grants sockets): the error is
//! returned as a fatal plugin error, a connection as a record.
use weir_sdk::{Descriptor, Error, PluginKind, Record, Transform};

struct Socket(String);

impl Transform for Socket {
    fn describe() -> Descriptor {
        weir_sdk::descriptor("socket", "0.1.0", PluginKind::Transform, "Opens a socket")
    }
    fn open(config: Vec<(String, String)>) -> Result<Self, Error> {
        Ok(Socket(weir_sdk::config_required(&config, "addr")?.to_string()))
    }
    fn apply(&mut self, _batch: Vec<Record>) -> Result<Vec<Record>, Error> {
        match std::net::TcpStream::connect(&self.0) {
            Ok(_) => Err(Error::Fatal(format!("connected to {}", self.0))),
            Err(e) => Err(Error::Retriable(format!("refused: {e}"))),
        }
    }
}

weir_sdk::export_transform!(Socket);
