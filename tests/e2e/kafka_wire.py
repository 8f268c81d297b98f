"""Just enough of the Kafka wire protocol to look under the clients.

Used where a client library hides what a test must see:
  * frame and header parsing for the TCP proxy of test_idempotence.py
    (which request a response answers; which batches a Produce carries);
  * a raw Fetch (v4) that returns record batches as the broker serves
    them, compressed or not, for test_compression.py.

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
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    raw: bytes  # the whole batch as on the wire

    @property
    def codec(self) -> str:
        return CODECS.get(self.attributes & 0x07, f"unknown({self.attributes & 0x07})")


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
        r.int64()  # base timestamp
        r.int64()  # max timestamp
        producer_id, producer_epoch, base_sequence, record_count = r.int64(), r.int16(), r.int32(), r.int32()
        batches.append(
            BatchHeader(
                base_offset, batch_length, magic, attributes, last_offset_delta,
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
# A raw Fetch
# ---------------------------------------------------------------------------


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">h", len(b)) + b


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
    correlation_id = 7
    body = b"".join(
        [
            struct.pack(">iiiib", -1, 100, 1, max_bytes, 0),  # replica, max wait, min bytes, max bytes, isolation
            struct.pack(">i", 1),
            _string(topic),
            struct.pack(">i", 1),
            struct.pack(">iqi", partition, offset, max_bytes),
        ]
    )
    header = struct.pack(">hhi", API_FETCH, 4, correlation_id) + _string("weir-e2e-raw-fetch")
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        frame = recv_frame(sock)
    if frame is None:
        raise WireError("the broker closed the connection instead of answering the Fetch")
    r = Reader(frame, 4)
    if r.int32() != correlation_id:
        raise WireError("Fetch response with the wrong correlation id")
    r.int32()  # throttle time
    for _ in range(r.array_len()):
        name = r.string()
        for _ in range(r.array_len()):
            index, error_code, high_watermark = r.int32(), r.int16(), r.int64()
            r.int64()  # last stable offset
            aborted = r.array_len()
            for _ in range(max(aborted, 0)):
                r.int64()
                r.int64()
            records = r.bytes_()
            if name == topic and index == partition:
                return error_code, high_watermark, parse_batches(records)
    raise WireError(f"the Fetch response has no entry for {topic}/{partition}")


def api_versions(host: str, port: int, timeout: float = 10.0) -> dict:
    """{api key: (min version, max version)} from an ApiVersions v0 request."""
    correlation_id = 3
    request = struct.pack(">hhi", 18, 0, correlation_id) + _string("weir-e2e-raw")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        frame = recv_frame(sock)
    if frame is None:
        raise WireError("the broker closed the connection instead of answering ApiVersions")
    r = Reader(frame, 4)
    if r.int32() != correlation_id:
        raise WireError("ApiVersions response with the wrong correlation id")
    error_code = r.int16()
    if error_code != 0:
        raise WireError(f"ApiVersions v0 answered with error {error_code}")
    versions = {}
    for _ in range(r.array_len()):
        key, low, high = r.int16(), r.int16(), r.int16()
        versions[key] = (low, high)
    return versions
