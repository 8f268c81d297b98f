//! Request frames: the 4-byte size prefix, the request header, and the body.
//!
//! [`decode_request`] is the single entry point for untrusted bytes: it never panics, and any
//! input it cannot make sense of becomes a [`DecodeError`] that names what was wrong.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::versions;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("API {key:?} version {version} is not supported (supported {min}..={max})")]
    UnsupportedVersion {
        key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
        correlation_id: i32,
    },
    #[error("API {key:?} is not supported by this broker")]
    UnsupportedApi { key: ApiKey, correlation_id: i32 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub key: ApiKey,
    pub body: RequestKind,
}

/// Decodes one frame body (without the size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    let Some((min, max)) = versions::range(key) else {
        return Err(DecodeError::UnsupportedApi {
            key,
            correlation_id,
        });
    };
    if version < min || version > max {
        return Err(DecodeError::UnsupportedVersion {
            key,
            version,
            min,
            max,
            correlation_id,
        });
    }
    let header =
        RequestHeader::decode(&mut frame, key.request_header_version(version)).map_err(|e| {
            DecodeError::Malformed {
                what: "request header".into(),
                reason: e.to_string(),
            }
        })?;
    let body =
        RequestKind::decode(key, &mut frame, version).map_err(|e| DecodeError::Malformed {
            what: format!("{key:?} v{version} request"),
            reason: e.to_string(),
        })?;
    if frame.has_remaining() {
        tracing::debug!(api = ?key, version, trailing = frame.remaining(), "request has trailing bytes");
    }
    Ok(Request { header, key, body })
}

/// Encodes a response with its size prefix and header.
pub fn encode_response<T: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &T,
) -> Result<Bytes, String> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let hv = T::header_version(version);
    let size = header.compute_size(hv).map_err(|e| e.to_string())?
        + body.compute_size(version).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.extend_from_slice(&(size as i32).to_be_bytes());
    header.encode(&mut buf, hv).map_err(|e| e.to_string())?;
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}
