"""Parallel snapshots of the SQLite source (`snapshot.max.threads` up to `tasks.max`), through the
real `weir` binary and its REST API.

The connector plans rowid ranges of the large tables (small ones whole) and every task reads
its share in a read transaction of its own, after the watermark task 0 published; task 0 holds
its last row back and writes it as `snapshot: last` only once every other task said (in the
rendezvous table `_weir_cdc_<slot>_snapshot`) that its share is in the log, then streams from
the watermark. What the tests hold it to:

* every row arrives as an `r` record, each exactly once when nothing restarts, and the very
  last snapshot record (after every other) is the only one saying `last`;
* changes made while the snapshot runs arrive after every snapshot record, and replaying the
  topic in order gives exactly the table as it is at the end (the stream may repeat a change a
  share already holds, never miss one);
* a restart of `weir` afterwards takes no second snapshot, and a rollback-journal database
  (where tasks' small writes would wait on each other's reads) is read by one task.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from helpers import ck_consume_partition, list_topic_names, wait_until
from test_connect import create, get, start_connect

CLASS = "io.weir.connector.sqlite.SqliteConnector"
WAIT = 60.0


def make_db(path: Path, rows: int, journal: str = "WAL") -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)")
    db.execute("CREATE TABLE small (id INTEGER PRIMARY KEY, v TEXT)")
    db.execute("CREATE TABLE tiny (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    db.execute("BEGIN")
    db.executemany("INSERT INTO big VALUES (?, ?)", ((i, f"v{i}") for i in range(1, rows + 1)))
    db.executemany("INSERT INTO small VALUES (?, ?)", ((i, f"s{i}") for i in range(1, 6)))
    db.execute("INSERT INTO tiny VALUES ('a', '1'), ('b', '2')")
    db.execute("COMMIT")
    db.close()


def config(path: Path, prefix: str, readers: int, **extra) -> dict:
    return {
        "connector.class": CLASS,
        "database.path": str(path),
        "topic.prefix": prefix,
        "tasks.max": str(readers),
        "snapshot.max.threads": str(readers),
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        **extra,
    }


def wait_running(broker, name: str, tasks: int) -> None:
    def probe():
        status = get(broker, f"/connectors/{name}/status")
        assert status["connector"]["state"] == "RUNNING", status
        assert [(t["id"], t["state"]) for t in status["tasks"]] == [(i, "RUNNING") for i in range(tasks)], status
        return True

    wait_until(probe, timeout=30, interval=0.2, what=f"{name} and {tasks} task(s) RUNNING")


def everything(bootstrap: str, topic: str) -> list:
    got = ck_consume_partition(bootstrap, topic, 0, 0, timeout=60)
    return [
        (json.loads(r.key) if r.key is not None else None, json.loads(r.value) if r.value is not None else None)
        for r in got
    ]


def wait_for(bootstrap: str, topic: str, probe_value) -> list:
    def probe():
        assert topic in list_topic_names(bootstrap), f"no topic {topic} yet"
        got = everything(bootstrap, topic)
        assert any(v is not None and probe_value(v) for _, v in got), f"{len(got)} records, not the awaited one"
        return got

    return wait_until(probe, timeout=WAIT, interval=0.5, what=f"the awaited record in {topic}")


def replay(got: list) -> dict:
    state: dict = {}
    for _, v in got:
        if v is None:
            continue
        if v["op"] == "d":
            state.pop(v["before"]["id"], None)
        else:
            state[v["after"]["id"]] = v["after"]["v"]
    return state


class Writer(threading.Thread):
    """Updates, inserts and deletes rows all over `big` while the snapshot runs."""

    def __init__(self, path: Path, rows: int):
        super().__init__(daemon=True)
        self.path, self.rows, self.error = path, rows, None

    def run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            for k in range(150):
                db.execute("UPDATE big SET v = ? WHERE id = ?", (f"u{k}", 1 + (k * 7919) % self.rows))
                if k % 10 == 0:
                    db.execute("INSERT INTO big VALUES (?, ?)", (self.rows + 1 + k, f"n{k}"))
                if k % 25 == 0:
                    db.execute("DELETE FROM big WHERE id = ?", (1 + (k * 104729) % self.rows,))
                time.sleep(0.005)
            db.close()
        except Exception as e:  # reported by the test
            self.error = e


def test_sqlite_parallel_snapshot_then_stream(start_broker, tmp_path):
    rows = 60_000
    path = tmp_path / "big.db"
    make_db(path, rows)
    broker = start_connect(start_broker, tmp_path)
    create(broker, "sqpar", config(path, "sqpar", 3))
    writer = Writer(path, rows)
    writer.start()
    wait_running(broker, "sqpar", 3)

    tasks = get(broker, "/connectors/sqpar/tasks")
    assert [t["config"]["weir.snapshot.reader"] for t in tasks] == ["0", "1", "2"]
    assert len({t["config"]["weir.snapshot.plan"] for t in tasks}) == 1
    plan = json.loads(tasks[0]["config"]["weir.snapshot.plan"])
    assert len(plan) == 3, plan
    # big splits into three rowid ranges; small and tiny (WITHOUT ROWID) go whole.
    assert sorted((s, t, lo is None, hi is None) for share in plan for s, t, lo, hi in share if t == "big") == [
        ("main", "big", False, False),
        ("main", "big", False, True),
        ("main", "big", True, False),
    ], plan
    assert [(t, lo, hi) for share in plan for _, t, lo, hi in share if t != "big"].count(("tiny", None, None)) == 1

    writer.join(timeout=60)
    assert writer.error is None, writer.error
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("INSERT INTO big VALUES (?, 'sentinel')", (rows + 10_000,))
    got = wait_for(broker.bootstrap, "sqpar.main.big", lambda v: v["after"] and v["after"]["v"] == "sentinel")

    ops = [v["op"] for _, v in got if v is not None]
    n = min([i for i, op in enumerate(ops) if op != "r"], default=len(ops))
    assert "r" not in ops[n:], "a snapshot record after a streamed change"
    snap_ids = [v["after"]["id"] for _, v in got[:n]]
    assert len(snap_ids) == len(set(snap_ids)), "a row snapshotted twice"
    assert set(range(1, rows + 1)) - set(snap_ids) <= {1 + (k * 104729) % rows for k in range(0, 150, 25)}
    marks = [v["source"]["snapshot"] for _, v in got[:n]]
    small = everything(broker.bootstrap, "sqpar.main.small")
    tiny = everything(broker.bootstrap, "sqpar.main.tiny")
    all_marks = marks + [v["source"]["snapshot"] for _, v in small + tiny]
    assert all_marks.count("last") == 1, "exactly one record says last"
    assert replay(got) == dict(db.execute("SELECT id, v FROM big").fetchall())
    assert [v["after"]["v"] for _, v in small] == [f"s{i}" for i in range(1, 6)]
    assert sorted(v["after"]["k"] for _, v in tiny) == ["a", "b"]
    # The rendezvous row is gone once streaming.
    assert db.execute("SELECT count(*) FROM _weir_cdc_weir_snapshot WHERE reader = 0").fetchone()[0] == 0

    # A restart of weir streams on: no second snapshot.
    before = len(got)
    assert broker.stop() == 0
    db.execute("UPDATE big SET v = 'after restart' WHERE id = 7")
    broker.start()
    wait_running(broker, "sqpar", 3)
    got = wait_for(broker.bootstrap, "sqpar.main.big", lambda v: v["after"] and v["after"]["v"] == "after restart")
    later = [v["op"] for _, v in got[before:] if v is not None]
    assert later == ["u"], later
    assert replay(got) == dict(db.execute("SELECT id, v FROM big").fetchall())


def test_sqlite_rollback_journal_database_is_snapshotted_by_one_task(start_broker, tmp_path):
    path = tmp_path / "journal.db"
    make_db(path, 30_000, journal="DELETE")
    broker = start_connect(start_broker, tmp_path)
    create(broker, "sqone", config(path, "sqone", 2, **{"snapshot.mode": "initial_only"}))
    wait_running(broker, "sqone", 1)
    got = wait_for(broker.bootstrap, "sqone.main.tiny", lambda v: v["source"]["snapshot"] == "last")
    got = everything(broker.bootstrap, "sqone.main.big")
    assert sorted(v["after"]["id"] for _, v in got) == list(range(1, 30_001))
    assert get(broker, "/connectors/sqone/tasks")[0]["config"].get("weir.snapshot.plan") is None
