"""The PostgreSQL source's options, through the real `weir` binary and its REST API.

Against the cluster `scripts/test` starts (WEIR_TEST_PG_URL, wal_level=logical), reusing
test_cdc_postgres's databases (one per test, dropped at the end, with its slots) and readers.
Each option is checked by what it changes: the records in the topics (read back field by field),
the rows of pg_replication_slots / pg_publication / pg_publication_tables, and the
connector's status.

* `slot.drop.on.stop=true`: once the task of a deleted connector has stopped, its slot is gone
  from the server; with the default (false) it stays, inactive. The same holds (on delete and
  on a clean shutdown of `weir`) when the server learns late that the replication session
  ended: a TCP proxy in the test delays what the replication sessions send by 0.5 s.
* `publication.autocreate.mode=disabled`: a missing publication fails the task, naming it
  (no publication and no slot are created); an existing publication `FOR TABLE` one table
  streams that table's changes and is left exactly as it was, even when the connector captures
  more tables than it publishes (Debezium never creates or alters it in this mode).
* `publication.autocreate.mode=filtered`: the publication holds exactly the captured tables
  (`table.include.list`, or all but `table.exclude.list`), and follows a changed list.
* `schema.include.list`: only the included schema's tables are snapshotted and streamed.
* `skipped.operations`: `u,d` drops updates and deletes (and their tombstones) but not
  inserts, snapshot rows or truncates; `t` drops truncates only.
* `table.exclude.list`: excluded tables give no topic and no record, the others do.

Negative checks ("nothing else arrived") are ordered, not timed: the last change of each
test is one that must arrive, and a connector hands changes out in commit order, so once it is
in the topic anything the connector would wrongly have emitted before it is there too.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest

if not os.environ.get("WEIR_TEST_PG_URL"):
    pytest.skip(
        "WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical "
        "and exports it)",
        allow_module_level=True,
    )

from helpers import list_topic_names, wait_until  # noqa: E402
from test_cdc_postgres import (  # noqa: E402
    _URL,
    FAST_RESTARTS,
    PgDb,
    failed_with,
    high,
    pgdb,  # noqa: F401 - the fixture
    records,
)
from test_connect import call, create, start_connect, wait_state  # noqa: E402

WAIT = 30.0
TABLE_DDL = "CREATE TABLE {} (id int4 PRIMARY KEY, v text)"


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def cfg(db: PgDb, prefix: str, slot_suffix: str, **extra) -> dict:
    """A Debezium config of its own: `prefix` for the topics, a slot of its own (slots are
    cluster-wide) and a publication of its own (connectors starting together do not race to
    create one), heartbeats off (no heartbeat topic to tell apart)."""
    return db.config(**{"topic.prefix": prefix, "slot.name": f"{db.slot}_{slot_suffix}",
                        "publication.name": f"pub_{slot_suffix}", "heartbeat.interval.ms": "0", **extra})  # fmt: skip


def slot_row(db: PgDb, slot: str):
    """(plugin, database, active) of the slot, None when there is none (slots are cluster-wide)."""
    return db.one("SELECT plugin::text, database::text, active FROM pg_replication_slots WHERE slot_name = %s", slot)


def published(db: PgDb, publication: str) -> set:
    """The (schema, table) pairs the publication holds."""
    rows = db.conn.execute(
        "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = %s", (publication,)
    ).fetchall()
    return {tuple(r) for r in rows}


def publication_row(db: PgDb, publication: str):
    """(puballtables, pubinsert, pubupdate, pubdelete, pubtruncate), None when it does not exist."""
    return db.one(
        "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = %s",
        publication,
    )


def topics_of(broker, prefix: str) -> set:
    """The topics named `<prefix>.<schema>.<table>` (the connector's data topics)."""
    return {t for t in list_topic_names(broker.bootstrap) if t.startswith(prefix + ".")}


def summary(got: list) -> list:
    """(op, id) of each record, for assertion messages (None for a tombstone)."""
    out = []
    for k, v in got:
        if v is None:
            out.append((None, k and k["payload"]))
        else:
            p = v["payload"]
            row = p["after"] or p["before"] or {}
            out.append((p["op"], row.get("id")))
    return out


def check_records(got: list, db: PgDb, prefix: str, schema: str, table: str, expected: list) -> None:
    """Every record of a topic, field by field.

    `expected`: (op, snapshot, key id, before, after) per record; op None is a tombstone
    (null value, the key of its delete), op "t" a truncate (no key, no images).
    """
    assert len(got) == len(expected), f"{prefix}.{schema}.{table}: {summary(got)}, want {expected}"
    for i, ((k, v), (op, snapshot, key_id, before, after)) in enumerate(zip(got, expected)):
        where = f"{prefix}.{schema}.{table} record {i}"
        if op is None:
            assert v is None, f"{where}: want a tombstone, got {v}"
            assert k is not None and k["payload"] == {"id": key_id}, f"{where}: tombstone key {k}"
            continue
        assert v is not None and set(v) == {"schema", "payload"}, f"{where}: {v}"
        assert v["schema"]["name"] == f"{prefix}.{schema}.{table}.Envelope", f"{where}: {v['schema']}"
        p = v["payload"]
        assert set(p) == {"before", "after", "source", "op", "ts_ms"}, f"{where}: {p}"
        assert (p["op"], p["before"], p["after"]) == (op, before, after), f"{where}: {p}"
        src = p["source"]
        assert (src["connector"], src["name"], src["db"], src["schema"], src["table"], src["snapshot"]) == (
            "postgresql", prefix, db.name, schema, table, snapshot,
        ), f"{where}: {src}"  # fmt: skip
        if snapshot == "false":
            assert isinstance(src["txId"], int) and isinstance(src["lsn"], int), f"{where}: {src}"
        if op == "t":
            assert k is None, f"{where}: a truncate has no key: {k}"
        else:
            assert k is not None and k["schema"]["name"] == f"{prefix}.{schema}.{table}.Key", f"{where}: {k}"
            assert k["payload"] == {"id": key_id}, f"{where}: key {k}"


def read(broker, prefix: str, schema: str, table: str, want: int) -> list:
    """The topic's records once it holds `want` (all of them, so extra ones show)."""
    return records(broker.bootstrap, f"{prefix}.{schema}.{table}", want)


def row(id_: int, v: str | None) -> dict:
    return {"id": id_, "v": v}


def key_only(id_: int) -> dict:
    """A delete's before image under the default replica identity: the key, the rest null."""
    return {"id": id_, "v": None}


def task_stopped(broker, name: str) -> bool:
    """Whether the log says the connector's task has stopped (after its close ran)."""
    marker = f"connector={name} task=0}}"
    return any(marker in line and "source task stopped" in line
               for line in broker.log_path.read_text(errors="replace").splitlines())  # fmt: skip


def wait_task_stopped(broker, name: str) -> None:
    wait_until(lambda: task_stopped(broker, name), timeout=WAIT, interval=0.1, what=f"{name}'s task stopped")


class LaggyProxy:
    """A TCP proxy to the PostgreSQL server that delivers what a replication session sends
    (its startup packet names `replication`) `lag` seconds late, in order, end of stream
    included: the server sees a stream end `lag` seconds after the client ended it, as over a
    slow network. Everything else (SQL sessions, the server's side) passes straight through."""

    def __init__(self, host: str, port: int, lag: float):
        self.target, self.lag = (host, port), lag
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list = []
        self.replication_sessions = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            server.settimeout(None)
            self.sockets += [client, server]
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()

    @staticmethod
    def _down(server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        due: queue.Queue = queue.Queue()
        replication = None  # unknown until the startup packet

        def send() -> None:
            try:
                while True:
                    at, data = due.get()
                    time.sleep(max(0.0, at - time.monotonic()))
                    if data is None:
                        server.shutdown(socket.SHUT_WR)
                        return
                    server.sendall(data)
            except OSError:
                pass

        threading.Thread(target=send, daemon=True).start()
        try:
            while True:
                data = client.recv(65536)
                if replication is None and data and data != b"\x00\x00\x00\x08\x04\xd2\x16\x2f":  # not SSLRequest
                    replication = b"replication\x00" in data
                    self.replication_sessions += replication
                lag = self.lag if replication else 0.0
                due.put((time.monotonic() + lag, data or None))
                if not data:
                    return
        except OSError:
            due.put((time.monotonic() + (self.lag if replication else 0.0), None))


@pytest.fixture
def laggy_proxy():
    """Request it before `start_broker`: then the broker stops before the proxy closes."""
    proxy = LaggyProxy(_URL.hostname, _URL.port or 5432, lag=0.5)
    yield proxy
    proxy.close()


def delete(broker, name: str) -> None:
    call(broker, "DELETE", f"/connectors/{name}", status=204)
    code, _, payload = broker.rest("GET", f"/connectors/{name}")
    assert code == 404, f"{name} still there after DELETE: {code} {payload}"


# ---------------------------------------------------------------------------
# 1. slot.drop.on.stop
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_slot_drop_on_stop(pgdb, start_broker, tmp_path):
    """`slot.drop.on.stop=true` drops the slot when the task stops (`DELETE /connectors/<name>`):
    once the task has stopped the slot is gone. With the default (false) the slot stays,
    released (inactive), at the position it had confirmed."""
    pgdb.run(TABLE_DDL.format("t"), "INSERT INTO t VALUES (1, 'one')")
    broker = start_connect(start_broker, tmp_path)
    configs = {
        "keeper": cfg(pgdb, "keeper", "keep"),
        "dropper": cfg(pgdb, "dropper", "drop", **{"slot.drop.on.stop": "true"}),
    }
    slots = {name: c["slot.name"] for name, c in configs.items()}
    for name, c in configs.items():
        create(broker, name, c)
    for name in configs:
        wait_state(broker, name, "RUNNING")
        # The snapshot first (RUNNING may come before the slot exists).
        check_records(read(broker, name, "public", "t", 1), pgdb, name, "public", "t",
                      [("r", "last", 1, None, row(1, "one"))])  # fmt: skip
    pgdb.run("INSERT INTO t VALUES (2, 'two')")
    for name in configs:
        # Then a streamed change: the slot exists and is streamed from.
        check_records(read(broker, name, "public", "t", 2), pgdb, name, "public", "t", [
            ("r", "last", 1, None, row(1, "one")),
            ("c", "false", 2, None, row(2, "two")),
        ])  # fmt: skip
        assert slot_row(pgdb, slots[name]) == ("pgoutput", pgdb.name, True), (name, slot_row(pgdb, slots[name]))

    # The default: after the delete the slot is released, and kept.
    delete(broker, "keeper")
    wait_task_stopped(broker, "keeper")

    def released():
        r = slot_row(pgdb, slots["keeper"])
        assert r == ("pgoutput", pgdb.name, False), f"keeper's slot: {r}"
        return r

    wait_until(released, timeout=WAIT, interval=0.1, what="keeper's slot inactive")
    confirmed = "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s"
    kept_at = pgdb.one(confirmed, slots["keeper"])

    # slot.drop.on.stop=true: the slot is dropped as the task stops.
    delete(broker, "dropper")
    wait_task_stopped(broker, "dropper")
    assert slot_row(pgdb, slots["dropper"]) is None, f"dropper's slot {slots['dropper']} left after its task stopped"
    # The keeper's close (long done) dropped nothing.
    assert slot_row(pgdb, slots["keeper"]) == ("pgoutput", pgdb.name, False)
    assert pgdb.one(confirmed, slots["keeper"]) == kept_at


@pytest.mark.timeout(120)
def test_postgres_slot_drop_on_stop_over_a_slow_network(pgdb, laggy_proxy, start_broker, tmp_path):
    """`slot.drop.on.stop=true` when the server learns 0.5 s late that the replication session
    ended (the sessions go through `LaggyProxy`, as over a slow network): Debezium retries the
    drop while the slot is still active, so once the task has stopped the slot is gone, on
    `DELETE /connectors/<name>` and on a clean shutdown of `weir` alike."""
    pgdb.run(TABLE_DDL.format("t"), "INSERT INTO t VALUES (1, 'one')")
    broker = start_connect(start_broker, tmp_path)
    via_proxy = {"database.hostname": "127.0.0.1", "database.port": str(laggy_proxy.port), "slot.drop.on.stop": "true"}
    slots = {}
    for name in ("lag-delete", "lag-shutdown"):
        config = cfg(pgdb, name.replace("-", ""), name.replace("-", "_"), **via_proxy)
        slots[name] = config["slot.name"]
        create(broker, name, config)
    for name in slots:
        prefix = name.replace("-", "")
        check_records(read(broker, prefix, "public", "t", 1), pgdb, prefix, "public", "t",
                      [("r", "last", 1, None, row(1, "one"))])  # fmt: skip
    pgdb.run("INSERT INTO t VALUES (2, 'two')")
    for name in slots:
        prefix = name.replace("-", "")
        check_records(read(broker, prefix, "public", "t", 2), pgdb, prefix, "public", "t", [
            ("r", "last", 1, None, row(1, "one")),
            ("c", "false", 2, None, row(2, "two")),
        ])  # fmt: skip
        assert slot_row(pgdb, slots[name]) == ("pgoutput", pgdb.name, True)
    assert laggy_proxy.replication_sessions == 2, "both replication sessions go through the proxy"

    left = {}
    delete(broker, "lag-delete")
    wait_task_stopped(broker, "lag-delete")
    if (r := slot_row(pgdb, slots["lag-delete"])) is not None:
        left["after DELETE"] = (slots["lag-delete"], r)
    assert broker.stop() == 0
    if (r := slot_row(pgdb, slots["lag-shutdown"])) is not None:
        left["after shutdown"] = (slots["lag-shutdown"], r)
    assert left == {}, f"slots left behind once their task stopped: {left}"


# ---------------------------------------------------------------------------
# 2. publication.autocreate.mode=disabled
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_publication_disabled_missing_publication_fails(pgdb, start_broker, tmp_path):
    """`disabled` and a publication that does not exist: the task goes FAILED with a trace naming
    the publication and saying it does not exist; the connector created neither the
    publication nor the slot."""
    pgdb.run(TABLE_DDL.format("t"), "INSERT INTO t VALUES (1, 'one')")
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    missing = f"nopub_{pgdb.slot}"
    config = cfg(pgdb, "nopub", "nopub", **{"publication.autocreate.mode": "disabled", "publication.name": missing})
    create(broker, "nopub", config)
    st = failed_with(broker, "nopub", missing, "does not exist", "disabled")
    assert st["name"] == "nopub" and st["type"] == "source", st
    assert [t["id"] for t in st["tasks"]] == [0], st
    assert publication_row(pgdb, missing) is None, "disabled: the connector must not create the publication"
    assert pgdb.one("SELECT count(*) FROM pg_publication")[0] == 0
    assert slot_row(pgdb, config["slot.name"]) is None, "no slot for a connector that cannot stream"
    assert topics_of(broker, "nopub") == set(), "nothing was written"


@pytest.mark.timeout(120)
def test_postgres_publication_disabled_uses_the_existing_publication(pgdb, start_broker, tmp_path):
    """`disabled` with a publication the test created `FOR TABLE t1` (and t1 the captured table):
    t1's snapshot and its insert, update and delete arrive; the publication is left exactly as
    created; changes of t2 (neither captured nor published) give nothing."""
    pub = "ops_pub"
    pgdb.run(
        TABLE_DDL.format("t1"), TABLE_DDL.format("t2"),
        "INSERT INTO t1 VALUES (1, 'one')", "INSERT INTO t2 VALUES (1, 'other')",
        f"CREATE PUBLICATION {pub} FOR TABLE t1",
    )  # fmt: skip
    assert published(pgdb, pub) == {("public", "t1")}
    broker = start_connect(start_broker, tmp_path)
    create(broker, "disabled", cfg(pgdb, "dis", "dis", **{
        "publication.autocreate.mode": "disabled", "publication.name": pub, "table.include.list": "public\\.t1",
    }))  # fmt: skip
    wait_state(broker, "disabled", "RUNNING")
    check_records(read(broker, "dis", "public", "t1", 1), pgdb, "dis", "public", "t1",
                  [("r", "last", 1, None, row(1, "one"))])  # fmt: skip
    pgdb.run(
        "INSERT INTO t2 VALUES (2, 'other two')",
        "INSERT INTO t1 VALUES (2, 'two')",
        "UPDATE t1 SET v = 'uno' WHERE id = 1",
        "UPDATE t2 SET v = 'changed' WHERE id = 1",
        "DELETE FROM t1 WHERE id = 2",
        "INSERT INTO t1 VALUES (3, 'three')",
    )  # fmt: skip
    check_records(read(broker, "dis", "public", "t1", 6), pgdb, "dis", "public", "t1", [
        ("r", "last", 1, None, row(1, "one")),
        ("c", "false", 2, None, row(2, "two")),
        ("u", "false", 1, None, row(1, "uno")),
        ("d", "false", 2, key_only(2), None),
        (None, None, 2, None, None),
        ("c", "false", 3, None, row(3, "three")),
    ])  # fmt: skip
    assert topics_of(broker, "dis") == {"dis.public.t1"}
    assert publication_row(pgdb, pub) == (False, True, True, True, True)
    assert published(pgdb, pub) == {("public", "t1")}
    assert pgdb.one("SELECT count(*) FROM pg_publication")[0] == 1, "no other publication created"
    assert slot_row(pgdb, f"{pgdb.slot}_dis") == ("pgoutput", pgdb.name, True)
    wait_state(broker, "disabled", "RUNNING")


@pytest.mark.timeout(120)
def test_postgres_publication_disabled_never_alters_the_publication(pgdb, start_broker, tmp_path):
    """`disabled` with a publication `FOR TABLE t1` while the connector captures t1 and t2 (no
    include list): Debezium leaves the publication alone (it is the administrator's), so it still
    holds only t1, and t2's streamed changes do not come (the server does not publish them);
    both tables are snapshotted, as Debezium snapshots every captured table."""
    pub = "admin_pub"
    pgdb.run(
        TABLE_DDL.format("t1"), TABLE_DDL.format("t2"),
        "INSERT INTO t1 VALUES (1, 'one')", "INSERT INTO t2 VALUES (1, 'other')",
        f"CREATE PUBLICATION {pub} FOR TABLE t1",
    )  # fmt: skip
    broker = start_connect(start_broker, tmp_path)
    create(broker, "disabled", cfg(pgdb, "dis", "dis", **{
        "publication.autocreate.mode": "disabled", "publication.name": pub,
    }))  # fmt: skip
    wait_state(broker, "disabled", "RUNNING")
    check_records(read(broker, "dis", "public", "t1", 1), pgdb, "dis", "public", "t1",
                  [("r", "true", 1, None, row(1, "one"))])  # fmt: skip
    check_records(read(broker, "dis", "public", "t2", 1), pgdb, "dis", "public", "t2",
                  [("r", "last", 1, None, row(1, "other"))])  # fmt: skip
    # The stream is open (the snapshot came from its slot): the publication is as created.
    assert published(pgdb, pub) == {("public", "t1")}, "disabled: the publication is not the connector's to change"
    pgdb.run("INSERT INTO t2 VALUES (2, 'unpublished')", "INSERT INTO t1 VALUES (2, 'two')")
    check_records(read(broker, "dis", "public", "t1", 2), pgdb, "dis", "public", "t1", [
        ("r", "true", 1, None, row(1, "one")),
        ("c", "false", 2, None, row(2, "two")),
    ])  # fmt: skip
    assert high(broker.bootstrap, "dis.public.t2") == 1, "t2 is not published: only its snapshot row"


# ---------------------------------------------------------------------------
# 3. publication.autocreate.mode=filtered
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_publication_filtered_holds_exactly_the_captured_tables(pgdb, start_broker, tmp_path):
    """`filtered` creates the publication `FOR TABLE` exactly the captured tables: those of
    `table.include.list` (regular expressions, two schemas), or every table but those of
    `table.exclude.list`. A new include list (PUT config) sets the publication's tables to it,
    and the newly captured table's changes stream."""
    pgdb.run(
        "CREATE SCHEMA inv",
        *(TABLE_DDL.format(t) for t in ("a", "b", "c", "inv.d", "inv.e")),
        "INSERT INTO a VALUES (1, 'a1')", "INSERT INTO b VALUES (1, 'b1')", "INSERT INTO inv.d VALUES (1, 'd1')",
    )  # fmt: skip
    broker = start_connect(start_broker, tmp_path, env=FAST_RESTARTS)
    inc = cfg(pgdb, "inc", "inc", **{"publication.autocreate.mode": "filtered", "publication.name": "pub_inc",
                                     "table.include.list": "public\\.a,inv\\.d"})  # fmt: skip
    exc = cfg(pgdb, "exc", "exc", **{"publication.autocreate.mode": "filtered", "publication.name": "pub_exc",
                                     "table.exclude.list": "public\\.b"})  # fmt: skip
    create(broker, "inc", inc)
    create(broker, "exc", exc)
    wait_state(broker, "inc", "RUNNING")
    wait_state(broker, "exc", "RUNNING")
    # The snapshot is taken from the slot's exported snapshot: by then the publication exists.
    # Tables in name order: inv.d, then public.a (the last).
    for prefix in ("inc", "exc"):
        check_records(read(broker, prefix, "inv", "d", 1), pgdb, prefix, "inv", "d",
                      [("r", "true", 1, None, row(1, "d1"))])  # fmt: skip
        check_records(read(broker, prefix, "public", "a", 1), pgdb, prefix, "public", "a",
                      [("r", "last", 1, None, row(1, "a1"))])  # fmt: skip

    assert publication_row(pgdb, "pub_inc") == (False, True, True, True, True)
    assert published(pgdb, "pub_inc") == {("public", "a"), ("inv", "d")}
    assert publication_row(pgdb, "pub_exc") == (False, True, True, True, True)
    assert published(pgdb, "pub_exc") == {("public", "a"), ("public", "c"), ("inv", "d"), ("inv", "e")}
    assert topics_of(broker, "inc") == {"inc.public.a", "inc.inv.d"}
    assert topics_of(broker, "exc") == {"exc.public.a", "exc.inv.d"}, "empty tables give no topic"

    # Changes: only the published (captured) tables'.
    pgdb.run("INSERT INTO b VALUES (2, 'b2')", "INSERT INTO inv.e VALUES (2, 'e2')", "INSERT INTO c VALUES (2, 'c2')",
             "INSERT INTO a VALUES (2, 'a2')")  # fmt: skip
    check_records(read(broker, "inc", "public", "a", 2), pgdb, "inc", "public", "a", [
        ("r", "last", 1, None, row(1, "a1")), ("c", "false", 2, None, row(2, "a2")),
    ])  # fmt: skip
    check_records(read(broker, "exc", "public", "a", 2), pgdb, "exc", "public", "a", [
        ("r", "last", 1, None, row(1, "a1")), ("c", "false", 2, None, row(2, "a2")),
    ])  # fmt: skip
    check_records(read(broker, "exc", "inv", "e", 1), pgdb, "exc", "inv", "e", [("c", "false", 2, None, row(2, "e2"))])
    check_records(read(broker, "exc", "public", "c", 1), pgdb, "exc", "public", "c",
                  [("c", "false", 2, None, row(2, "c2"))])  # fmt: skip
    assert topics_of(broker, "inc") == {"inc.public.a", "inc.inv.d"}
    assert "exc.public.b" not in topics_of(broker, "exc")

    # A new include list: the publication follows it, and b streams.
    call(broker, "PUT", "/connectors/inc/config", {**inc, "table.include.list": "public\\.a,public\\.b,inv\\.d"},
         status=200)  # fmt: skip

    def follows():
        got = published(pgdb, "pub_inc")
        assert got == {("public", "a"), ("public", "b"), ("inv", "d")}, got
        return got

    wait_until(follows, timeout=WAIT, interval=0.2, what="pub_inc holding a, b and inv.d")
    wait_state(broker, "inc", "RUNNING")
    pgdb.run("INSERT INTO b VALUES (3, 'b3')")
    check_records(read(broker, "inc", "public", "b", 1), pgdb, "inc", "public", "b",
                  [("c", "false", 3, None, row(3, "b3"))])  # fmt: skip


# ---------------------------------------------------------------------------
# 4. schema.include.list
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_schema_include_list(pgdb, start_broker, tmp_path):
    """`schema.include.list=inv`: tables of inv are snapshotted and streamed; tables of the
    schemas `other` (one with the same name as inv's) and public give no topic and no record,
    though the publication (all_tables) publishes them."""
    pgdb.run(
        "CREATE SCHEMA inv", "CREATE SCHEMA other",
        *(TABLE_DDL.format(t) for t in ("inv.stock", "inv.bins", "other.stock", "other.notes", "public.stock")),
        "INSERT INTO inv.stock VALUES (1, 'inv 1')", "INSERT INTO other.stock VALUES (1, 'other 1')",
        "INSERT INTO other.notes VALUES (1, 'note 1')", "INSERT INTO public.stock VALUES (1, 'public 1')",
        "INSERT INTO inv.bins VALUES (1, 'bin 1')",
    )  # fmt: skip
    broker = start_connect(start_broker, tmp_path)
    create(broker, "inv-only", cfg(pgdb, "sch", "sch", **{"schema.include.list": "inv"}))
    wait_state(broker, "inv-only", "RUNNING")
    # Snapshot in name order: inv.bins, then inv.stock (the last).
    check_records(read(broker, "sch", "inv", "bins", 1), pgdb, "sch", "inv", "bins",
                  [("r", "true", 1, None, row(1, "bin 1"))])  # fmt: skip
    check_records(read(broker, "sch", "inv", "stock", 1), pgdb, "sch", "inv", "stock",
                  [("r", "last", 1, None, row(1, "inv 1"))])  # fmt: skip
    pgdb.run(
        "INSERT INTO other.stock VALUES (2, 'other 2')",
        "UPDATE other.notes SET v = 'note changed' WHERE id = 1",
        "INSERT INTO public.stock VALUES (2, 'public 2')",
        "DELETE FROM other.stock WHERE id = 1",
        "INSERT INTO inv.stock VALUES (2, 'inv 2')",
        "UPDATE inv.bins SET v = 'bin moved' WHERE id = 1",
    )  # fmt: skip
    check_records(read(broker, "sch", "inv", "stock", 2), pgdb, "sch", "inv", "stock", [
        ("r", "last", 1, None, row(1, "inv 1")), ("c", "false", 2, None, row(2, "inv 2")),
    ])  # fmt: skip
    check_records(read(broker, "sch", "inv", "bins", 2), pgdb, "sch", "inv", "bins", [
        ("r", "true", 1, None, row(1, "bin 1")), ("u", "false", 1, None, row(1, "bin moved")),
    ])  # fmt: skip
    assert topics_of(broker, "sch") == {"sch.inv.stock", "sch.inv.bins"}
    assert publication_row(pgdb, "pub_sch") == (True, True, True, True, True), "all_tables: FOR ALL TABLES"
    assert published(pgdb, "pub_sch") >= {("other", "stock"), ("other", "notes"), ("public", "stock")}
    wait_state(broker, "inv-only", "RUNNING")


# ---------------------------------------------------------------------------
# 5. skipped.operations
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_skipped_operations(pgdb, start_broker, tmp_path):
    """Two connectors on the same table and changes: `skipped.operations=u,d` gives the snapshot,
    the inserts and the truncate, but no update, no delete and no tombstone; `t` gives all but
    the truncate."""
    pgdb.run(TABLE_DDL.format("t"), "INSERT INTO t VALUES (1, 'one')")
    broker = start_connect(start_broker, tmp_path)
    create(broker, "skip-ud", cfg(pgdb, "skipud", "ud", **{"skipped.operations": "u,d"}))
    create(broker, "skip-t", cfg(pgdb, "skipt", "t", **{"skipped.operations": "t"}))
    wait_state(broker, "skip-ud", "RUNNING")
    wait_state(broker, "skip-t", "RUNNING")
    for prefix in ("skipud", "skipt"):
        check_records(read(broker, prefix, "public", "t", 1), pgdb, prefix, "public", "t",
                      [("r", "last", 1, None, row(1, "one"))])  # fmt: skip
    pgdb.run(
        "INSERT INTO t VALUES (2, 'two')",
        "UPDATE t SET v = 'uno' WHERE id = 1",
        "DELETE FROM t WHERE id = 1",
        "TRUNCATE t",
        "INSERT INTO t VALUES (3, 'three')",
        "UPDATE t SET v = 'tres' WHERE id = 3",
        "DELETE FROM t WHERE id = 3",
        "INSERT INTO t VALUES (4, 'four')",  # the last change: every connector emits it
    )  # fmt: skip
    check_records(read(broker, "skipud", "public", "t", 5), pgdb, "skipud", "public", "t", [
        ("r", "last", 1, None, row(1, "one")),
        ("c", "false", 2, None, row(2, "two")),
        ("t", "false", None, None, None),
        ("c", "false", 3, None, row(3, "three")),
        ("c", "false", 4, None, row(4, "four")),
    ])  # fmt: skip
    check_records(read(broker, "skipt", "public", "t", 10), pgdb, "skipt", "public", "t", [
        ("r", "last", 1, None, row(1, "one")),
        ("c", "false", 2, None, row(2, "two")),
        ("u", "false", 1, None, row(1, "uno")),
        ("d", "false", 1, key_only(1), None),
        (None, None, 1, None, None),
        ("c", "false", 3, None, row(3, "three")),
        ("u", "false", 3, None, row(3, "tres")),
        ("d", "false", 3, key_only(3), None),
        (None, None, 3, None, None),
        ("c", "false", 4, None, row(4, "four")),
    ])  # fmt: skip
    for name in ("skip-ud", "skip-t"):
        wait_state(broker, name, "RUNNING")


# ---------------------------------------------------------------------------
# 6. table.exclude.list
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_postgres_table_exclude_list(pgdb, start_broker, tmp_path):
    """`table.exclude.list=public\\.secret.*`: the tables it matches (a regular expression over
    `schema.table`, anchored) give no topic and no record, in the snapshot or the stream; a
    table whose name only starts alike in another schema (`inv.secrets`), and the others, do."""
    pgdb.run(
        "CREATE SCHEMA inv",
        *(TABLE_DDL.format(t) for t in ("orders", "secrets", "secret_keys", "inv.secrets")),
        "INSERT INTO orders VALUES (1, 'order 1')", "INSERT INTO secrets VALUES (1, 'hush')",
        "INSERT INTO secret_keys VALUES (1, 'key 1')", "INSERT INTO inv.secrets VALUES (1, 'inv hush')",
    )  # fmt: skip
    broker = start_connect(start_broker, tmp_path)
    create(broker, "excl", cfg(pgdb, "excl", "excl", **{"table.exclude.list": "public\\.secret.*"}))
    wait_state(broker, "excl", "RUNNING")
    check_records(read(broker, "excl", "inv", "secrets", 1), pgdb, "excl", "inv", "secrets",
                  [("r", "true", 1, None, row(1, "inv hush"))])  # fmt: skip
    check_records(read(broker, "excl", "public", "orders", 1), pgdb, "excl", "public", "orders",
                  [("r", "last", 1, None, row(1, "order 1"))])  # fmt: skip
    pgdb.run(
        "INSERT INTO secrets VALUES (2, 'hush 2')",
        "UPDATE secret_keys SET v = 'rotated' WHERE id = 1",
        "DELETE FROM secrets WHERE id = 1",
        "TRUNCATE secret_keys",
        "INSERT INTO inv.secrets VALUES (2, 'inv hush 2')",
        "INSERT INTO orders VALUES (2, 'order 2')",
    )  # fmt: skip
    check_records(read(broker, "excl", "public", "orders", 2), pgdb, "excl", "public", "orders", [
        ("r", "last", 1, None, row(1, "order 1")), ("c", "false", 2, None, row(2, "order 2")),
    ])  # fmt: skip
    check_records(read(broker, "excl", "inv", "secrets", 2), pgdb, "excl", "inv", "secrets", [
        ("r", "true", 1, None, row(1, "inv hush")), ("c", "false", 2, None, row(2, "inv hush 2")),
    ])  # fmt: skip
    assert topics_of(broker, "excl") == {"excl.public.orders", "excl.inv.secrets"}
    wait_state(broker, "excl", "RUNNING")


