"""Just enough of the Kafka wire protocol to look under the clients.

Used where a client library hides what a test must see:
  * frame and header parsing for the TCP proxy of test_idempotence.py
    (which request a response answers; which batches a Produce carries);
  * a raw Fetch (v4) that returns record batches as the broker serves
    them, compressed or not, for test_compression.py, and one over several
    partitions with its own size limits (KIP-74), for test_kafka_semantics.py;
  * DescribeConfigs (v1) and IncrementalAlterConfigs (v0) for any resource,
    including the cluster-wide broker default (resource name ""), which
    neither Python client can address.

Only the fields those tests need are decoded; everything else is skipped
by its length. Written from the protocol's published message schemas.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from typing import Optional

API_PRODUCE = 0
API_FETCH = 1
API_DESCRIBE_CONFIGS = 32
API_INCREMENTAL_ALTER_CONFIGS = 44

# Config resource types and IncrementalAlterConfigs operations.
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
OP_SET, OP_DELETE = 0, 1

# DescribeConfigs config sources.
CONFIG_SOURCES = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
}

# Record batch attributes, bits 0-2.
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

# First version of each API that uses the flexible ("compact") encoding.
FLEXIBLE_FROM = {API_PRODUCE: 9, API_FETCH: 12}


class WireError(Exception):
    """Bytes that do not parse as the expected message."""


class Reader:
    """A cursor over a bytes object with Kafka's primitive types."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError(f"need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def int8(self) -> int:
        return self._unpack(">b")

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def uint32(self) -> int:
        return self._unpack(">I")

    def int64(self) -> int:
        return self._unpack(">q")

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise WireError("unsigned varint too long")

    def string(self, flexible: bool = False) -> Optional[str]:
        n = self.uvarint() - 1 if flexible else self.int16()
        return None if n < 0 else self.take(n).decode("utf-8")

    def bytes_(self, flexible: bool = False) -> Optional[bytes]:
        n = self.uvarint() - 1 if flexible else self.int32()
        return None if n < 0 else self.take(n)

    def array_len(self, flexible: bool = False) -> int:
        return self.uvarint() - 1 if flexible else self.int32()

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


def recv_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    """Read exactly n bytes; None if the peer closed the connection first."""
    parts = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def recv_frame(sock: socket.socket) -> Optional[bytes]:
    """One size-prefixed frame, prefix included; None on a clean close."""
    prefix = recv_exact(sock, 4)
    if prefix is None:
        return None
    (size,) = struct.unpack(">i", prefix)
    if size < 0 or size > 256 << 20:
        raise WireError(f"implausible frame size {size}")
    body = recv_exact(sock, size)
    if body is None:
        raise WireError("connection closed inside a frame")
    return prefix + body


@dataclasses.dataclass(frozen=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: Optional[str]
    body_offset: int  # where the request body starts in the frame


def parse_request_header(frame: bytes) -> RequestHeader:
    """Request header v1 or v2 (frame includes its size prefix)."""
    r = Reader(frame, 4)
    api_key, api_version, correlation_id = r.int16(), r.int16(), r.int32()
    client_id = r.string()  # client_id stays a plain nullable string in v2
    flexible = api_key in FLEXIBLE_FROM and api_version >= FLEXIBLE_FROM[api_key]
    if flexible:
        r.skip_tagged_fields()
    return RequestHeader(api_key, api_version, correlation_id, client_id, r.pos)


def response_correlation_id(frame: bytes) -> int:
    return struct.unpack(">i", frame[4:8])[0]


# ---------------------------------------------------------------------------
# Record batches
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    magic: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    raw: bytes  # the whole batch as on the wire

    @property
    def codec(self) -> str:
        return CODECS.get(self.attributes & 0x07, f"unknown({self.attributes & 0x07})")

    @property
    def log_append_time(self) -> bool:
        """Attribute bit 3: the broker stamped the batch (LogAppendTime), and
        max_timestamp is the time every record in it carries."""
        return bool(self.attributes & 0x08)


def parse_batches(records: Optional[bytes]) -> list:
    """The complete v2 record batches in a records field (a trailing partial
    batch, which Fetch may return, is left out)."""
    batches = []
    if not records:
        return batches
    pos = 0
    while pos + 12 <= len(records):
        base_offset, batch_length = struct.unpack(">qi", records[pos : pos + 12])
        end = pos + 12 + batch_length
        if end > len(records):
            break  # partial batch at the end of a fetch
        r = Reader(records, pos + 12)
        r.int32()  # partition leader epoch
        magic = r.int8()
        if magic != 2:
            raise WireError(f"record batch at offset {base_offset} has magic {magic}, expected 2")
        r.uint32()  # crc
        attributes = r.int16()
        last_offset_delta = r.int32()
        base_timestamp, max_timestamp = r.int64(), r.int64()
        producer_id, producer_epoch, base_sequence, record_count = r.int64(), r.int16(), r.int32(), r.int32()
        batches.append(
            BatchHeader(
                base_offset, batch_length, magic, attributes, last_offset_delta, base_timestamp, max_timestamp,
                producer_id, producer_epoch, base_sequence, record_count, records[pos:end],
            )  # fmt: skip
        )
        pos = end
    return batches


@dataclasses.dataclass(frozen=True)
class ProducedBatch:
    topic: str
    partition: int
    batch: BatchHeader


def parse_produce_request(frame: bytes) -> list:
    """The (topic, partition, batch header) of every batch in a Produce
    request, versions 3 to 9."""
    header = parse_request_header(frame)
    if header.api_key != API_PRODUCE:
        raise WireError(f"not a Produce request (api key {header.api_key})")
    flexible = header.api_version >= FLEXIBLE_FROM[API_PRODUCE]
    r = Reader(frame, header.body_offset)
    r.string(flexible)  # transactional id
    r.int16()  # acks
    r.int32()  # timeout
    produced = []
    for _ in range(r.array_len(flexible)):
        topic = r.string(flexible)
        for _ in range(r.array_len(flexible)):
            partition = r.int32()
            records = r.bytes_(flexible)
            for batch in parse_batches(records):
                produced.append(ProducedBatch(topic, partition, batch))
            if flexible:
                r.skip_tagged_fields()
        if flexible:
            r.skip_tagged_fields()
    return produced


# ---------------------------------------------------------------------------
# Raw requests
# ---------------------------------------------------------------------------


def _string(s: Optional[str]) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode("utf-8")
    return struct.pack(">h", len(b)) + b


def _array(items: list) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(items)


def call(host: str, port: int, api_key: int, api_version: int, body: bytes, *, timeout: float = 10.0) -> Reader:
    """Send one request (header v1, so non-flexible versions only) on a new
    connection and return a Reader at the start of the response body."""
    correlation_id = 7
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + _string("weir-e2e-raw")
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        frame = recv_frame(sock)
    if frame is None:
        raise WireError(f"the broker closed the connection instead of answering API {api_key} v{api_version}")
    r = Reader(frame, 4)
    if r.int32() != correlation_id:
        raise WireError(f"API {api_key} response with the wrong correlation id")
    return r


@dataclasses.dataclass(frozen=True)
class FetchedPartition:
    """One partition of a Fetch response, its records field as served."""

    topic: str
    partition: int
    error_code: int
    high_watermark: int
    records: bytes  # may end in a partial batch

    @property
    def batches(self) -> list:
        """The complete batches (a trailing partial one is left out)."""
        return parse_batches(self.records)


def fetch(
    host: str,
    port: int,
    positions: list,
    *,
    max_bytes: int,
    partition_max_bytes: int,
    max_wait_ms: int = 100,
    min_bytes: int = 1,
    timeout: float = 10.0,
) -> list:
    """Fetch (v4) from `positions`, a list of (topic, partition, offset) in
    request order; every partition gets `partition_max_bytes`, the response
    `max_bytes`. Returns one FetchedPartition per partition, in response order.
    """
    topics: dict = {}  # topic -> [(partition, offset)], in order of first appearance
    for topic, partition, offset in positions:
        topics.setdefault(topic, []).append((partition, offset))
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)  # replica, wait, min, max, isolation
    body += _array(
        [
            _string(topic) + _array([struct.pack(">iqi", p, o, partition_max_bytes) for p, o in parts])
            for topic, parts in topics.items()
        ]
    )
    r = call(host, port, API_FETCH, 4, body, timeout=timeout)
    r.int32()  # throttle time
    fetched = []
    for _ in range(r.array_len()):
        name = r.string()
        for _ in range(r.array_len()):
            index, error_code, high_watermark = r.int32(), r.int16(), r.int64()
            r.int64()  # last stable offset
            aborted = r.array_len()
            for _ in range(max(aborted, 0)):
                r.int64()
                r.int64()
            records = r.bytes_() or b""
            fetched.append(FetchedPartition(name, index, error_code, high_watermark, records))
    return fetched


def fetch_batches(
    host: str,
    port: int,
    topic: str,
    partition: int,
    offset: int = 0,
    *,
    max_bytes: int = 32 << 20,
    timeout: float = 10.0,
) -> tuple:
    """Fetch (v4) `topic`/`partition` from `offset` on one connection.

    Returns (error_code, high_watermark, [BatchHeader]) with the batches
    exactly as served: compressed batches stay compressed.
    """
    for p in fetch(host, port, [(topic, partition, offset)], max_bytes=max_bytes, partition_max_bytes=max_bytes,
                   timeout=timeout):  # fmt: skip
        if p.topic == topic and p.partition == partition:
            return p.error_code, p.high_watermark, p.batches
    raise WireError(f"the Fetch response has no entry for {topic}/{partition}")


@dataclasses.dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: Optional[str]
    read_only: bool
    source: str  # a CONFIG_SOURCES name


def describe_configs(
    host: str, port: int, resource_type: int, name: str, keys: Optional[list] = None, *, timeout: float = 10.0
) -> tuple:
    """DescribeConfigs (v1) for one resource: (error_code, error_message,
    {name: ConfigEntry}). `keys` None asks for every config."""
    keys_field = struct.pack(">i", -1) if keys is None else _array([_string(k) for k in keys])
    body = _array([struct.pack(">b", resource_type) + _string(name) + keys_field]) + struct.pack(">b", 0)
    r = call(host, port, API_DESCRIBE_CONFIGS, 1, body, timeout=timeout)
    r.int32()  # throttle time
    results = r.array_len()
    if results != 1:
        raise WireError(f"DescribeConfigs for one resource answered with {results} results")
    error_code, error_message = r.int16(), r.string()
    r.int8()  # resource type
    r.string()  # resource name
    entries = {}
    for _ in range(max(r.array_len(), 0)):
        key, value, read_only, source = r.string(), r.string(), r.int8() != 0, r.int8()
        r.int8()  # is sensitive
        for _ in range(max(r.array_len(), 0)):  # synonyms
            r.string()
            r.string()
            r.int8()
        entries[key] = ConfigEntry(key, value, read_only, CONFIG_SOURCES.get(source, f"unknown({source})"))
    return error_code, error_message, entries


def incremental_alter_configs(
    host: str,
    port: int,
    resource_type: int,
    name: str,
    ops: list,
    *,
    validate_only: bool = False,
    timeout: float = 10.0,
) -> tuple:
    """IncrementalAlterConfigs (v0) of one resource with `ops`, a list of
    (config name, OP_SET or OP_DELETE, value or None): (error_code, error_message)."""
    configs = _array([_string(key) + struct.pack(">b", op) + _string(value) for key, op, value in ops])
    body = _array([struct.pack(">b", resource_type) + _string(name) + configs]) + struct.pack(">b", validate_only)
    r = call(host, port, API_INCREMENTAL_ALTER_CONFIGS, 0, body, timeout=timeout)
    r.int32()  # throttle time
    results = r.array_len()
    if results != 1:
        raise WireError(f"IncrementalAlterConfigs for one resource answered with {results} results")
    return r.int16(), r.string()


def api_versions(host: str, port: int, timeout: float = 10.0) -> dict:
    """{api key: (min version, max version)} from an ApiVersions v0 request."""
    r = call(host, port, 18, 0, b"", timeout=timeout)
    error_code = r.int16()
    if error_code != 0:
        raise WireError(f"ApiVersions v0 answered with error {error_code}")
    versions = {}
    for _ in range(r.array_len()):
        key, low, high = r.int16(), r.int16(), r.int16()
        versions[key] = (low, high)
    return versions
