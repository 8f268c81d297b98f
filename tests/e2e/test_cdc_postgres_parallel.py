"""Parallel snapshots of the PostgreSQL source (`snapshot.max.threads` up to `tasks.max`),
through the real `weir` binary and its REST API, against the cluster `scripts/test` starts.

The connector splits the snapshot over its tasks: large tables in heap block ranges (one per
task), small ones whole; every task reads its share in one snapshot (task 0's, exported again),
and task 0 streams only once every share is in the log. What the tests hold it to:

* every row of every table arrives as exactly one `r` record (without restarts), tables without
  a primary key included, and no record says `snapshot: last` (several readers);
* changes made while the snapshot runs arrive after every snapshot record, and replaying the
  topic in order gives exactly the table as it is in the database at the end (no stale snapshot
  row after a change to it);
* the task configs carry the plan; a heartbeat marks the hand-over; source offsets of the
  readers are their own partitions;
* a reader task restarted mid-snapshot reads its share again before streaming starts, and a
  restart of `weir` after the hand-over takes no second snapshot;
* `initial_only` reads every row once over several tasks and creates no slot.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

if not os.environ.get("WEIR_TEST_PG_URL"):
    pytest.skip(
        "WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical "
        "and exports it)",
        allow_module_level=True,
    )

import psycopg  # noqa: E402

from helpers import ck_consume_partition, ck_watermarks, list_topic_names, wait_until  # noqa: E402
from test_cdc_postgres import PgDb, pgdb  # noqa: E402, F401 - the fixture
from test_connect import call, create, get, start_connect  # noqa: E402

WAIT = 60.0
PAD = "x" * 120


def cfg(db: PgDb, prefix: str, readers: int, **extra) -> dict:
    """Schemaless JSON (smaller records, faster tests); the slot and publication its own."""
    return db.config(
        **{
            "topic.prefix": prefix,
            "slot.name": f"{db.slot}_{prefix}",
            "publication.name": f"pub_{prefix}",
            "tasks.max": str(readers),
            "snapshot.max.threads": str(readers),
            "heartbeat.interval.ms": "0",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            **extra,
        }
    )


def wait_running(broker, name: str, tasks: int) -> dict:
    """The connector and its `tasks` tasks RUNNING."""

    def probe():
        status = get(broker, f"/connectors/{name}/status")
        assert status["connector"]["state"] == "RUNNING", status
        assert [(t["id"], t["state"]) for t in status["tasks"]] == [(i, "RUNNING") for i in range(tasks)], status
        return status

    return wait_until(probe, timeout=30, interval=0.2, what=f"connector {name} and {tasks} task(s) RUNNING")


def everything(bootstrap: str, topic: str) -> list:
    """(key, value) of every record of the topic's partition 0, in order."""
    got = ck_consume_partition(bootstrap, topic, 0, 0, timeout=60)
    return [
        (json.loads(r.key) if r.key is not None else None, json.loads(r.value) if r.value is not None else None)
        for r in got
    ]


def wait_for(bootstrap: str, topic: str, probe_value) -> list:
    """Every record of the topic once one whose value satisfies `probe_value` is in it."""

    def probe():
        assert topic in list_topic_names(bootstrap), f"no topic {topic} yet"
        got = everything(bootstrap, topic)
        assert any(v is not None and probe_value(v) for _, v in got), f"{len(got)} records, not the awaited one"
        return got

    return wait_until(probe, timeout=WAIT, interval=0.5, what=f"the awaited record in {topic}")


def replay(got: list) -> dict:
    """The table the records describe, by id: applied in topic order."""
    state: dict = {}
    for _, v in got:
        if v is None:
            continue
        if v["op"] in ("r", "c", "u"):
            if v["before"] is not None and v["before"]["id"] != v["after"]["id"]:
                state.pop(v["before"]["id"], None)
            state[v["after"]["id"]] = v["after"]
        elif v["op"] == "d":
            state.pop(v["before"]["id"], None)
    return state


def table_now(db: PgDb, table: str) -> dict:
    rows = db.conn.execute(f"SELECT id, v, pad FROM {table}").fetchall()
    return {i: {"id": i, "v": v, "pad": p} for i, v, p in rows}


def snapshot_before_stream(got: list) -> int:
    """Every snapshot record comes before every streamed one; the number of snapshot records."""
    ops = [v["op"] for _, v in got if v is not None]
    n = sum(1 for op in ops if op == "r")
    assert all(op == "r" for op in ops[:n]), f"a streamed change before the snapshot's end: {ops[: n + 5]}"
    assert "r" not in ops[n:], "a snapshot record after a streamed change"
    return n


class Writer(threading.Thread):
    """Updates, inserts and deletes rows of `big` spread over its whole id range while the
    snapshot runs."""

    def __init__(self, url: str, rows: int):
        super().__init__(daemon=True)
        self.url, self.rows, self.error = url, rows, None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as c:
                for k in range(200):
                    i = 1 + (k * 7919) % self.rows
                    c.execute("UPDATE big SET v = %s WHERE id = %s", (f"u{k}", i))
                    if k % 10 == 0:
                        c.execute("INSERT INTO big VALUES (%s, %s, %s)", (self.rows + 1 + k, f"n{k}", PAD))
                    if k % 25 == 0:
                        c.execute("DELETE FROM big WHERE id = %s", (1 + (k * 104729) % self.rows,))
                    time.sleep(0.005)
        except Exception as e:  # reported by the test
            self.error = e


def make_tables(db: PgDb, rows: int) -> None:
    db.run(
        "CREATE TABLE big (id int4 PRIMARY KEY, v text, pad text)",
        f"INSERT INTO big SELECT g, 'v' || g, '{PAD}' FROM generate_series(1, {rows}) g",
        "CREATE TABLE nokey (v text, pad text)",
        f"INSERT INTO nokey SELECT 'k' || g, '{PAD}' FROM generate_series(1, 30000) g",
        "CREATE TABLE small (id int4 PRIMARY KEY, v text, pad text)",
        "INSERT INTO small VALUES (1, 'a', ''), (2, 'b', ''), (3, 'c', '')",
        "ANALYZE",
    )


def test_parallel_snapshot_reads_each_row_once_and_streams_after_it(pgdb, start_broker, tmp_path):
    rows = 60_000
    make_tables(pgdb, rows)
    broker = start_connect(start_broker, tmp_path)
    create(broker, "par", cfg(pgdb, "par", 3))
    writer = Writer(pgdb.url, rows)
    writer.start()
    wait_running(broker, "par", 3)

    # Three tasks, each with its place in one plan that splits the large tables.
    tasks = get(broker, "/connectors/par/tasks")
    assert [t["id"]["task"] for t in tasks] == [0, 1, 2], tasks
    assert [t["config"]["weir.snapshot.reader"] for t in tasks] == ["0", "1", "2"]
    plans = {t["config"]["weir.snapshot.plan"] for t in tasks}
    assert len(plans) == 1, plans
    plan = json.loads(plans.pop())
    split = {(s, t) for share in plan for s, t, lo, hi in share if (lo, hi) != (None, None)}
    assert split == {("public", "big"), ("public", "nokey")}, plan
    assert sum(1 for share in plan for s, t, *_ in share if t == "small") == 1, plan

    writer.join(timeout=60)
    assert writer.error is None, writer.error
    pgdb.run(f"INSERT INTO big VALUES ({rows + 10_000}, 'sentinel', '')")
    got = wait_for(broker.bootstrap, "par.public.big", lambda v: v["after"] and v["after"]["v"] == "sentinel")

    n = snapshot_before_stream(got)
    snap_ids = [v["after"]["id"] for _, v in got[:n]]
    assert len(snap_ids) == len(set(snap_ids)), "a row snapshotted twice"
    assert {v["source"]["snapshot"] for _, v in got[:n]} == {"true"}, "several readers: no record says last"
    # Every row the snapshot saw: the table's first rows, less those deleted before it.
    assert set(range(1, rows + 1)) - set(snap_ids) <= {1 + (k * 104729) % rows for k in range(0, 200, 25)}
    assert replay(got) == table_now(pgdb, "big")

    nokey = everything(broker.bootstrap, "par.public.nokey")
    assert all(k is None and v["op"] == "r" for k, v in nokey), nokey[:3]
    assert sorted(v["after"]["v"] for _, v in nokey) == sorted(f"k{g}" for g in range(1, 30001))
    small = everything(broker.bootstrap, "par.public.small")
    assert [(k["id"], v["after"]["v"]) for k, v in small] == [(1, "a"), (2, "b"), (3, "c")]

    # The hand-over is a heartbeat carrying the stream's position; each reader kept offsets
    # under a partition of its own.
    assert ck_watermarks(broker.bootstrap, "__debezium-heartbeat.par", 0)[1] >= 1
    offsets = get(broker, "/connectors/par/offsets")["offsets"]
    parts = {json.dumps(o["partition"], sort_keys=True) for o in offsets}
    assert parts == {
        json.dumps({"server": "par"}),
        json.dumps({"server": "par", "snapshot_reader": 1}, sort_keys=True),
        json.dumps({"server": "par", "snapshot_reader": 2}, sort_keys=True),
    }, offsets
    main = next(o for o in offsets if o["partition"] == {"server": "par"})
    assert "lsn_proc" in main["offset"], main

    # Streaming goes on: a change arrives right away.
    pgdb.run("UPDATE small SET v = 'z' WHERE id = 2")
    small = wait_for(broker.bootstrap, "par.public.small", lambda v: v["op"] == "u")
    assert small[-1][1]["after"] == {"id": 2, "v": "z", "pad": ""}


def test_parallel_snapshot_survives_a_reader_restart_and_takes_no_second(pgdb, start_broker, tmp_path):
    rows = 120_000
    make_tables(pgdb, rows)
    broker = start_connect(start_broker, tmp_path)
    create(broker, "par2", cfg(pgdb, "par2", 2, **{"snapshot.fetch.size": "200"}))
    wait_running(broker, "par2", 2)
    topic = "par2.public.big"

    def some():
        assert topic in list_topic_names(broker.bootstrap)
        assert ck_watermarks(broker.bootstrap, topic, 0)[1] >= 2000
        return True

    wait_until(some, timeout=WAIT, interval=0.2, what="the snapshot under way")
    # Task 1 (a reader) restarted mid-snapshot: it reads its share again; nothing streams
    # before it is done.
    call(broker, "POST", "/connectors/par2/tasks/1/restart", status=204)
    pgdb.run("UPDATE big SET v = 'changed' WHERE id = 5", f"UPDATE big SET v = 'changed' WHERE id = {rows - 5}")
    pgdb.run(f"INSERT INTO big VALUES ({rows + 1}, 'sentinel', '')")
    got = wait_for(broker.bootstrap, topic, lambda v: v["after"] and v["after"]["v"] == "sentinel")
    n = snapshot_before_stream(got)
    assert set(range(1, rows + 1)) <= {v["after"]["id"] for _, v in got[:n]}
    assert replay(got) == table_now(pgdb, "big")
    status = get(broker, "/connectors/par2/status")
    assert [t["state"] for t in status["tasks"]] == ["RUNNING", "RUNNING"], status

    # After the hand-over a restart of weir streams on: no second snapshot.
    before = ck_watermarks(broker.bootstrap, topic, 0)[1]
    assert broker.stop() == 0
    pgdb.run("UPDATE big SET v = 'after restart' WHERE id = 7")
    broker.start()
    wait_running(broker, "par2", 2)
    got = wait_for(broker.bootstrap, topic, lambda v: v["after"] and v["after"]["v"] == "after restart")
    later = [v for _, v in got[before:] if v is not None]
    assert [v["op"] for v in later] == ["u"], [(v["op"], v["after"]["id"]) for v in later][:5]
    assert replay(got) == table_now(pgdb, "big")


def test_parallel_initial_only_reads_every_row_once_and_creates_no_slot(pgdb, start_broker, tmp_path):
    rows = 40_000
    make_tables(pgdb, rows)
    broker = start_connect(start_broker, tmp_path)
    create(broker, "par3", cfg(pgdb, "par3", 2, **{"snapshot.mode": "initial_only"}))
    wait_running(broker, "par3", 2)

    def complete():
        got = everything(broker.bootstrap, "par3.public.big") if "par3.public.big" in list_topic_names(
            broker.bootstrap
        ) else []
        assert len(got) >= rows, f"{len(got)} of {rows}"
        return got

    got = wait_until(complete, timeout=WAIT, interval=0.5, what="the whole table")
    time.sleep(1.0)
    got = everything(broker.bootstrap, "par3.public.big")
    assert sorted(v["after"]["id"] for _, v in got) == list(range(1, rows + 1))
    assert pgdb.one("SELECT count(*) FROM pg_replication_slots WHERE database = %s", pgdb.name)[0] == 0

    # snapshot.max.threads above tasks.max: as many readers as tasks.max allows.
    create(broker, "par4", cfg(pgdb, "par4", 1, **{"snapshot.mode": "initial_only", "snapshot.max.threads": "4"}))
    wait_running(broker, "par4", 1)
    assert len(get(broker, "/connectors/par4/tasks")) == 1
