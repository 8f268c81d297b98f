"""SIGKILLs of `weir` while the SQLite source streams a busy table.

A SQLite file in WAL mode is captured by the built-in sqlite-source while a writer thread keeps
committing transactions of one to three statements: inserts, updates, deletes and primary key
updates of `ticks`, every row version with a value of its own. `weir up` is SIGKILLed three times
mid-stream (the writer goes on while it is down; the triggers record into the change table
whatever is committed) and started again; the connector comes back from `connect-offsets`.

What must hold once the writer has stopped and the topic has caught up:

* replaying the topic in order (the snapshot, then every change: `c`/`u` set a row, `d` removes
  it) gives exactly the table's final contents;
* no change is missed: every row version the writer committed is the after image of some record
  (the seeded rows' of a snapshot record), and every row it deleted is the before image of a
  `d` record;
* the source is at least once, so a record may be there twice, but only as a re-read: the same
  change (`source.lsn` is the change table's `seq`) with the same images each time, changes
  first appearing in commit order, and no second snapshot (the snapshot's offsets are stored
  before the first kill).

Offsets are flushed every 500 ms (test_connect's CONNECT_ENV), so kills land both before and
after flushes.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import confluent_kafka as ck
import pytest

from helpers import ck_admin, ck_consume_partition, ck_watermarks, wait_until
from test_connect import create, start_connect, wait_state

CLASS = "io.weir.connector.sqlite.SqliteConnector"
JSON = "org.apache.kafka.connect.json.JsonConverter"
PREFIX = "shop"
TOPIC = f"{PREFIX}.main.ticks"
CONNECTOR = "ticks-cdc"
# Task restarts with a short backoff (a failed open: the file busy at a restart).
FAST_RESTARTS = {"WEIR_CONNECT__RESTART_BACKOFF_INITIAL_MS": "200", "WEIR_CONNECT__RESTART_BACKOFF_MAX_MS": "1000"}
SEEDED = 50
KILLS = 3
WAIT = 60.0


def high(bootstrap: str) -> int:
    return ck_watermarks(bootstrap, TOPIC, 0)[1]


def stored_offset(bootstrap: str):
    """The connector's last offset in `connect-offsets` (None: none stored)."""
    meta = ck_admin(bootstrap).list_topics(timeout=10).topics.get("connect-offsets")
    found = None
    if meta is None or meta.error is not None:
        return None
    for p in sorted(meta.partitions):
        for r in ck_consume_partition(bootstrap, "connect-offsets", p, ck.OFFSET_BEGINNING, timeout=30):
            key = json.loads(r.key)
            if key[0] == CONNECTOR and key[1] == {"server": PREFIX}:
                found = json.loads(r.value) if r.value is not None else None
    return found


class Writer(threading.Thread):
    """Commits transactions of 1-3 random changes to `ticks` until told to stop, and keeps what
    it committed: `history`, in commit order, ("put", id, v) for a row version written and
    ("del", id, v) for a row version deleted; `rows`, the table as it committed it."""

    def __init__(self, path: Path, seed: int, rows: dict):
        super().__init__(daemon=True)
        self.path, self.rng = path, random.Random(seed)
        self.rows = dict(rows)
        self.history: list = []
        self.commits = 0
        self.next_id = max(rows) + 1
        self.version = 0
        self.error: Exception | None = None
        self.stop = threading.Event()

    def new_v(self) -> str:
        self.version += 1
        return f"v{self.version}"

    def run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            db.execute("PRAGMA synchronous=NORMAL")
            deadline = time.monotonic() + 150
            while not self.stop.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"writer still running after 150 s ({self.commits} commits)")
                rows, done = dict(self.rows), []
                db.execute("BEGIN IMMEDIATE")
                for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
                    what = self.rng.random()
                    if what < 0.4 or len(rows) < 10:
                        i, v = self.next_id, self.new_v()
                        self.next_id += 1
                        db.execute("INSERT INTO ticks VALUES (?, ?)", (i, v))
                        rows[i] = v
                        done.append(("put", i, v))
                    elif what < 0.75:
                        i, v = self.rng.choice(sorted(rows)), self.new_v()
                        db.execute("UPDATE ticks SET v = ? WHERE id = ?", (v, i))
                        done += [("put", i, v)]
                        rows[i] = v
                    elif what < 0.9:
                        i = self.rng.choice(sorted(rows))
                        db.execute("DELETE FROM ticks WHERE id = ?", (i,))
                        done.append(("del", i, rows.pop(i)))
                    else:
                        # A primary key update: a delete of the old key and a create of the new.
                        old, new, v = self.rng.choice(sorted(rows)), self.next_id, self.new_v()
                        self.next_id += 1
                        db.execute("UPDATE ticks SET id = ?, v = ? WHERE id = ?", (new, v, old))
                        done += [("del", old, rows.pop(old)), ("put", new, v)]
                        rows[new] = v
                db.execute("COMMIT")
                self.rows = rows
                self.history += done
                self.commits += 1
                time.sleep(0.004)
            db.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


@pytest.mark.timeout(240)
def test_sqlite_kill9_mid_stream_loses_nothing(start_broker, tmp_path):
    path = tmp_path / "shop.db"
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute("CREATE TABLE ticks (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    seeded = {i: f"seed{i}" for i in range(1, SEEDED + 1)}
    db.execute("BEGIN")
    db.executemany("INSERT INTO ticks VALUES (?, ?)", sorted(seeded.items()))
    db.execute("COMMIT")

    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    create(broker, CONNECTOR, {
        "connector.class": CLASS,
        "database.path": str(path),
        "topic.prefix": PREFIX,
        "key.converter": JSON,
        "value.converter": JSON,
    })  # fmt: skip
    wait_state(broker, CONNECTOR, "RUNNING")
    wait_until(lambda: high(broker.bootstrap) >= SEEDED, timeout=WAIT, interval=0.2, what="the snapshot")

    def snapshot_stored():
        o = stored_offset(broker.bootstrap)
        assert o is not None and "seq" in o and not o.get("snapshot"), f"stored offset {o}"
        return o

    wait_until(snapshot_stored, timeout=WAIT, interval=0.3, what="the snapshot's offset stored")

    seed = random.randrange(1 << 30)
    print(f"writer seed {seed}")
    writer = Writer(path, seed, seeded)
    writer.start()
    try:
        for _ in range(KILLS):
            mark = high(broker.bootstrap)
            wait_until(lambda: high(broker.bootstrap) >= mark + 300, timeout=WAIT, interval=0.1,
                       what="changes streaming")  # fmt: skip
            time.sleep(random.uniform(0.0, 0.7))
            broker.kill9()
            time.sleep(random.uniform(0.1, 0.5))
            broker.start()
            wait_state(broker, CONNECTOR, "RUNNING")
        mark = high(broker.bootstrap)
        wait_until(lambda: high(broker.bootstrap) >= mark + 300, timeout=WAIT, interval=0.1,
                   what="changes streaming after the last restart")  # fmt: skip
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert not writer.is_alive(), "the writer did not stop"
    assert writer.error is None, f"writer failed after {writer.commits} commits: {writer.error!r}"
    final = dict(db.execute("SELECT id, v FROM ticks").fetchall())
    assert final == writer.rows, "the table is what the writer committed"

    def caught_up():
        got = ck_consume_partition(broker.bootstrap, TOPIC, 0, 0, timeout=60)
        values = [json.loads(r.value)["payload"] if r.value is not None else None for r in got]
        state: dict = {}
        for p in values:
            if p is None:
                continue
            if p["op"] == "d":
                state.pop(p["before"]["id"], None)
            else:
                state[p["after"]["id"]] = p["after"]["v"]
        assert state == final, (
            f"{len(got)} records; replayed {len(state)} rows, the table has {len(final)}: "
            f"{len(set(final.items()) - set(state.items()))} rows differ or are missing, "
            f"{len(set(state) - set(final))} too many"
        )
        return got, values

    got, values = wait_until(caught_up, timeout=WAIT, interval=1.0, what="the topic replaying to the final table")

    # Every row version committed is in the topic; every row deleted is a `d` record.
    written = {(p["after"]["id"], p["after"]["v"]) for p in values if p and p["op"] in ("r", "c", "u")}
    deleted = {(p["before"]["id"], p["before"]["v"]) for p in values if p and p["op"] == "d"}
    want_written = set(seeded.items()) | {(i, v) for kind, i, v in writer.history if kind == "put"}
    want_deleted = {(i, v) for kind, i, v in writer.history if kind == "del"}
    missing = sorted(want_written - written)
    assert not missing, f"{len(missing)} committed row versions never in the topic, e.g. {missing[:10]}"
    missing = sorted(want_deleted - deleted)
    assert not missing, f"{len(missing)} deletes never in the topic, e.g. {missing[:10]}"
    assert written <= want_written and deleted <= want_deleted, "nothing the writer did not commit"

    # One snapshot, at the start; afterwards only changes.
    ops = [p and p["op"] for p in values]
    assert ops[:SEEDED] == ["r"] * SEEDED, ops[:SEEDED]
    assert [p["source"]["snapshot"] for p in values[:SEEDED]][-1] == "last"
    later = [(r.offset, p["after"]["id"]) for r, p in zip(got[SEEDED:], values[SEEDED:]) if p and p["op"] == "r"]
    assert not later, f"no second snapshot: {len(later)} `r` records later, e.g. {later[:5]}"

    # A repeat re-reads the same change (same seq and images); changes first appear in commit order.
    by_change: dict = {}
    order: list = []
    for r, p in zip(got[SEEDED:], values[SEEDED:]):
        if p is None:
            continue
        change = (p["source"]["lsn"], p["op"])
        images = (p["before"], p["after"])
        if change not in by_change:
            by_change[change] = images
            order.append(p["source"]["lsn"])
        assert by_change[change] == images, (r.offset, change, by_change[change], images)
    assert order == sorted(order), "changes first appear in commit order"
    changes = len(set(order))
    repeats = len(values) - SEEDED - sum(1 for p in values[SEEDED:] if p is None) - len(by_change)
    print(f"{len(values)} records, {writer.commits} commits, {len(writer.history)} row changes, "
          f"{changes} changes of the change table, {repeats} records read again")  # fmt: skip
    for r, p in zip(got, values):
        row = p["after"] if p and p["op"] != "d" else (p and p["before"])
        if row is not None:
            assert json.loads(r.key)["payload"] == {"id": row["id"]}, (r.offset, r.key, p)
    wait_state(broker, CONNECTOR, "RUNNING")
    db.close()
