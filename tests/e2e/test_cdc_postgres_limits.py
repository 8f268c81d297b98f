"""The PostgreSQL change stream's limits: memory and the WAL a slot holds back.

Through the real `weir` binary and its REST API, against the cluster `scripts/test` starts
(WEIR_TEST_PG_URL, wal_level=logical), reusing test_cdc_postgres's databases and readers:

* One transaction inserting 1,000,000 rows streams through in bounded memory: every change
  reaches the topic (counted with watermarks, spot-checked at both ends: keys, values, one
  transaction id) while `weir`'s peak resident set (VmHWM) stays under 200 MiB. PostgreSQL
  only sends a transaction once it commits, so the whole million arrives at once; the host's
  bounded queue and the connector's batches are all that stand between it and the log.
* A captured table that stays idle while another database of the same server writes 80 MiB of
  WAL does not hold that WAL back: heartbeats (`heartbeat.interval.ms`) carry the position
  forward, the slot's confirmed position passes the busy phase, its restart position follows
  and the retained WAL falls under 16 MiB; the task status' `replication_slots` reports the
  same. A connector without heartbeats (`heartbeat.interval.ms=0`) on the same idle table
  keeps its slot where it was, holding all of it.

Figures (peak RSS, rates, retained WAL) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

if not os.environ.get("WEIR_TEST_PG_URL"):
    pytest.skip(
        "WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical "
        "and exports it)",
        allow_module_level=True,
    )

from helpers import ck_consume_partition, ck_watermarks, list_topic_names, wait_until  # noqa: E402
from test_cdc_postgres import (  # noqa: E402
    PREFIX,
    PgDb,
    admin,
    check_envelope,
    check_key,
    check_source,
    high,
    lsn_now,
    pgdb,  # noqa: F401 - the fixture
    records,
    topic,
    unscaled_b64,
)
from test_connect import create, get, start_connect, wait_state  # noqa: E402

MIB = 1024 * 1024
WAIT = 30.0


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def proc_status_kb(pid: int, field: str) -> int:
    """A `kB` figure of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def child_pids(pid: int) -> list:
    """Direct children of `pid` (a plugin host would show up here if weir forked one)."""
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                kids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return kids


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every `every` seconds; keeps the largest."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.max_kb = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.max_kb = max(self.max_kb, proc_status_kb(self.pid, "VmRSS"))
                self.samples += 1
            except (OSError, AssertionError):
                return
            self.stop.wait(self.every)


def slot_row(name: str) -> dict | None:
    """The server's view of a slot: confirmed and restart positions, the WAL it retains."""
    with admin() as c:
        row = c.execute(
            "SELECT active, (confirmed_flush_lsn - '0/0'::pg_lsn)::int8, (restart_lsn - '0/0'::pg_lsn)::int8, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, wal_status "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (name,),
        ).fetchone()
    if row is None:
        return None
    return dict(zip(("active", "confirmed", "restart", "retained", "wal_status"), row))


def wait_slot_active(name: str) -> dict:
    def probe():
        row = slot_row(name)
        assert row is not None and row["active"], f"slot {name}: {row}"
        return row

    return wait_until(probe, timeout=WAIT, interval=0.1, what=f"slot {name} streaming")


def status_slots(broker, connector: str) -> dict:
    """{slot_name: retained_wal_bytes} of the connector's task status."""
    st = get(broker, f"/connectors/{connector}/status")
    tasks = st["tasks"]
    assert tasks and tasks[0]["state"] == "RUNNING", st
    slots = tasks[0].get("replication_slots")
    assert isinstance(slots, list) and slots, f"no replication_slots in the task status: {st}"
    for s in slots:
        assert set(s) == {"slot_name", "retained_wal_bytes"}, st
        assert s["retained_wal_bytes"] is None or (
            isinstance(s["retained_wal_bytes"], int) and s["retained_wal_bytes"] >= 0
        ), st
    return {s["slot_name"]: s["retained_wal_bytes"] for s in slots}


def mib(n: int | None) -> str:
    return "None" if n is None else f"{n / MIB:.2f} MiB"


# ---------------------------------------------------------------------------
# 1. A million-row transaction
# ---------------------------------------------------------------------------

ROWS = 1_000_000
RSS_LIMIT_KB = 200 * 1024  # 200 MiB
TS0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
BIG_FIELDS = [
    {"field": "id", "type": "int64", "optional": False},
    {"field": "name", "type": "string", "optional": True},
    {"field": "amount", "type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
     "parameters": {"scale": "2", "connect.decimal.precision": "12"}},
    {"field": "ts", "type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp"},
]  # fmt: skip
BIG_KEY = [{"field": "id", "type": "int64", "optional": False}]


def big_row(i: int) -> dict:
    """Row `i` as the INSERT below writes it, as Debezium renders it."""
    amount = f"{i * 37 // 100}.{i * 37 % 100:02d}"  # round(i * 0.37, 2), exact
    return {
        "id": i,
        "name": f"name-{i:015d}",
        "amount": unscaled_b64(amount, 2),
        "ts": (TS0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def big_insert(first: int, last: int) -> str:
    return (
        "INSERT INTO big SELECT g, 'name-' || lpad(g::text, 15, '0'), (g * 37)::numeric(14, 0) / 100, "
        f"timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series({first}, {last}) g"
    )


@pytest.mark.timeout(600)
def test_a_million_row_transaction_streams_in_bounded_memory(pgdb, start_broker, tmp_path):
    pgdb.run("CREATE TABLE big (id int8 PRIMARY KEY, name text, amount numeric(12, 2), ts timestamptz)")
    broker = start_connect(start_broker, tmp_path)
    pid = broker.proc.pid
    create(broker, "big-cdc", pgdb.config(**{"snapshot.mode": "no_data", "table.include.list": "public.big"}))
    wait_state(broker, "big-cdc", "RUNNING")
    big = topic("big")

    # Live: the slot streams (no_data: nothing before it exists is sent), a first row arrives.
    wait_slot_active(pgdb.slot)
    t0 = pgdb.tx(big_insert(0, 0))
    ((k0, v0),) = records(broker.bootstrap, big, 1)
    p0 = check_envelope(v0, "big", BIG_FIELDS)
    check_key(k0, "big", BIG_KEY, {"id": 0})
    check_source(p0, pgdb.name, "big", "false", t0)
    assert (p0["op"], p0["before"], p0["after"]) == ("c", None, big_row(0)), p0

    hwm_start = proc_status_kb(pid, "VmHWM")
    rss_start = proc_status_kb(pid, "VmRSS")
    sampler = RssSampler(pid)
    sampler.start()
    try:
        # One transaction, a million rows.
        started = time.monotonic()
        tx = pgdb.tx(big_insert(1, ROWS))
        committed = time.monotonic()
        wal = tx.lsn_after - tx.lsn_before
        print(f"\nINSERT of {ROWS} rows committed in {committed - started:.1f}s ({mib(wal)} of WAL), xid {tx.xid}")

        # Wait (watermarks only) until every change is in the topic; fail on a stall.
        want = 1 + ROWS
        at, since, first, last_print = 1, time.monotonic(), None, time.monotonic()
        while True:
            got = high(broker.bootstrap, big)
            now = time.monotonic()
            if got > at:
                first = first or now
                at, since = got, now
            if got >= want:
                break
            assert broker.running, f"weir exited at {got}/{want} records"
            st = get(broker, "/connectors/big-cdc/status")
            if any(t["state"] == "FAILED" for t in st["tasks"]):
                raise AssertionError(
                    f"the task failed at {got}/{want} records {now - committed:.0f}s after the commit "
                    f"(VmRSS max {sampler.max_kb / 1024:.1f} MiB): {st}"
                )
            if now - since > 120 or now - started > 540:
                raise AssertionError(
                    f"{got}/{want} records {now - committed:.0f}s after the commit, no progress for "
                    f"{now - since:.0f}s; VmRSS max {sampler.max_kb / 1024:.1f} MiB; status {st}"
                )
            if now - last_print >= 10:
                print(f"  {got - 1} changes {now - committed:.0f}s after the commit "
                      f"({(got - 1) / (now - committed):,.0f}/s), VmRSS max {sampler.max_kb / 1024:.1f} MiB")  # fmt: skip
                last_print = now
            time.sleep(0.5)
        done = time.monotonic()
    finally:
        sampler.stop.set()
        sampler.join(timeout=5)
    hwm_end = proc_status_kb(pid, "VmHWM")
    first = first or done
    print(
        f"{ROWS} changes in the topic {done - committed:.1f}s after the commit "
        f"(the first after {first - committed:.1f}s): {ROWS / (done - committed):,.0f} changes/s overall, "
        f"{ROWS / max(1e-3, done - first):,.0f} changes/s once flowing"
    )
    print(
        f"weir VmHWM: {hwm_start / 1024:.1f} MiB before the transaction (VmRSS {rss_start / 1024:.1f} MiB), "
        f"{hwm_end / 1024:.1f} MiB after; sampled VmRSS max {sampler.max_kb / 1024:.1f} MiB "
        f"({sampler.samples} samples)"
    )
    kids = child_pids(pid)
    for kid in kids:
        try:
            print(f"child {kid}: VmHWM {proc_status_kb(kid, 'VmHWM') / 1024:.1f} MiB")
        except OSError:
            pass

    # Exactly the changes: nothing more arrives.
    time.sleep(2.0)
    assert high(broker.bootstrap, big) == want, f"{high(broker.bootstrap, big)} records, want {want}"

    # Spot checks: the first and last few, and one in the middle; all one transaction.
    def read(start: int, n: int) -> list:
        # max_records stops after the client's batch that reaches it: keep the first n.
        got = ck_consume_partition(broker.bootstrap, big, 0, start, max_records=n, timeout=60)[:n]
        assert [r.offset for r in got] == list(range(start, start + n)), [r.offset for r in got]
        return got

    picked = read(1, 5) + read(1 + ROWS // 2, 3) + read(want - 5, 5)
    ids = [1, 2, 3, 4, 5, 1 + ROWS // 2, 2 + ROWS // 2, 3 + ROWS // 2] + list(range(ROWS - 4, ROWS + 1))
    lsns = []
    for r, i in zip(picked, ids):
        assert r.offset == i, (r.offset, i)  # offset i holds id i: commit order is insert order
        key, value = json.loads(r.key), json.loads(r.value)
        p = check_envelope(value, "big", BIG_FIELDS)
        check_key(key, "big", BIG_KEY, {"id": i})
        src = check_source(p, pgdb.name, "big", "false", tx)
        assert (p["op"], p["before"], p["after"]) == ("c", None, big_row(i)), p
        lsns.append(src["lsn"])
    tx_ids = {json.loads(r.value)["payload"]["source"]["txId"] for r in picked}
    assert tx_ids == {tx.xid}, f"one transaction: {tx_ids}, the server said {tx.xid}"
    assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns), lsns

    # The slot moved past the transaction once it was stored.
    def confirmed():
        row = slot_row(pgdb.slot)
        assert row is not None and row["confirmed"] >= lsns[-1], f"slot {row}, last change at {lsns[-1]}"
        return row

    wait_until(confirmed, timeout=WAIT, interval=0.3, what="the slot confirmed past the transaction")
    wait_state(broker, "big-cdc", "RUNNING")

    assert not kids, f"weir runs the connector in its own process, found children {kids}"
    assert hwm_end < RSS_LIMIT_KB, (
        f"weir's peak RSS (VmHWM) was {hwm_end / 1024:.1f} MiB streaming {ROWS} changes of one transaction, "
        f"limit {RSS_LIMIT_KB / 1024:.0f} MiB (before the transaction: {hwm_start / 1024:.1f} MiB)"
    )


# ---------------------------------------------------------------------------
# 2. An idle captured table, a busy neighbour
# ---------------------------------------------------------------------------

BUSY_WAL = 80 * MIB
RETAINED_LIMIT = 16 * MIB
QUIET_PREFIX = "still"  # the connector without heartbeats


@pytest.fixture
def busydb():
    """Another database of the same server (request it before `start_broker`)."""
    db = PgDb()
    yield db
    db.drop()


def checkpoint() -> None:
    with admin() as c:
        c.execute("CHECKPOINT")


@pytest.mark.timeout(300)
def test_an_idle_captured_table_does_not_hold_wal_back(pgdb, busydb, start_broker, tmp_path):
    pgdb.run("CREATE TABLE quiet (id int4 PRIMARY KEY, v text)")
    busydb.run("CREATE TABLE filler (id int8 PRIMARY KEY, pad text)")
    broker = start_connect(start_broker, tmp_path)
    beating = pgdb.slot
    held = pgdb.slot + "_nohb"
    create(broker, "quiet-cdc", pgdb.config(**{"heartbeat.interval.ms": "1000", "table.include.list": "public.quiet"}))
    # The contrast: the same idle table, no heartbeats (its own slot, publication and prefix).
    create(
        broker,
        "still-cdc",
        pgdb.config(**{
            "heartbeat.interval.ms": "0",
            "table.include.list": "public.quiet",
            "topic.prefix": QUIET_PREFIX,
            "slot.name": held,
            "publication.name": "still_pub",
        }),
    )  # fmt: skip
    wait_state(broker, "quiet-cdc", "RUNNING")
    wait_state(broker, "still-cdc", "RUNNING")
    wait_slot_active(beating)
    wait_slot_active(held)

    # Both stream: one change to the captured table reaches both topics and is confirmed.
    t1 = pgdb.tx("INSERT INTO quiet VALUES (1, 'the only change')")
    ((_, v),) = records(broker.bootstrap, topic("quiet"), 1)
    ((_, v2),) = records(broker.bootstrap, f"{QUIET_PREFIX}.public.quiet", 1)
    for value in (v, v2):
        assert value["payload"]["op"] == "c" and value["payload"]["source"]["txId"] == t1.xid, value
    change_lsn = v2["payload"]["source"]["lsn"]

    def held_confirmed():
        row = slot_row(held)
        assert row["confirmed"] > change_lsn, f"{held}: {row}, the change at {change_lsn}"
        return row

    wait_until(held_confirmed, timeout=WAIT, interval=0.2, what=f"{held} confirmed past the change")
    time.sleep(1.0)
    held_before = slot_row(held)
    beats_before = high(broker.bootstrap, f"__debezium-heartbeat.{PREFIX}") if (
        f"__debezium-heartbeat.{PREFIX}" in list_topic_names(broker.bootstrap)
    ) else 0  # fmt: skip
    print(f"\nbefore the busy phase: {beating} {slot_row(beating)}, {held} {held_before}, {beats_before} heartbeats")

    # The neighbour gets busy: 80 MiB of WAL in another database, nothing in the captured one.
    busy_start = lsn_now(busydb.conn)
    started = time.monotonic()
    n = 0
    while lsn_now(busydb.conn) - busy_start < BUSY_WAL:
        busydb.tx(f"INSERT INTO filler SELECT g, repeat(md5(g::text), 32) FROM generate_series({n + 1}, {n + 10000}) g")
        n += 10000
    busy_end = lsn_now(busydb.conn)
    busy_wal = busy_end - busy_start
    print(f"busy phase: {n} rows, {mib(busy_wal)} of WAL in {time.monotonic() - started:.1f}s in {busydb.name}")

    # Heartbeats carry the idle slot's confirmed position past the busy phase.
    def past_busy():
        row = slot_row(beating)
        assert row["confirmed"] >= busy_end, f"{beating}: {row}, busy phase ended at {busy_end}"
        return row

    row = wait_until(past_busy, timeout=WAIT, interval=0.2, what=f"{beating} confirmed past the busy phase")
    print(f"{time.monotonic() - started:.1f}s after the busy phase began: {beating} confirmed past it: {row}")

    # The restart position (what the server actually keeps) follows the confirmed one only at
    # an xl_running_xacts record the slot decodes after it: the server logs one at each
    # checkpoint, and the background writer every 15 s while WAL is written. Left alone, the
    # restart position here followed 10 to 21 s after the busy phase (the last record logged
    # during the busy phase is where it stops until then); a CHECKPOINT makes it happen now. A
    # round can fall short (the server keeps one candidate restart position per slot and takes
    # it only once the confirmed position reaches where it was logged), hence the retries.
    rounds = {"n": 0}

    def bounded():
        checkpoint()
        rounds["n"] += 1
        time.sleep(1.5)  # a heartbeat (1 s), its ack and the next status update (1 s)
        row = slot_row(beating)
        assert row["retained"] < RETAINED_LIMIT, f"{beating} retains {mib(row['retained'])}: {row}"
        return row

    row = wait_until(bounded, timeout=60, interval=0.1, what=f"{beating} retaining less than {mib(RETAINED_LIMIT)}")
    after_busy = time.monotonic()
    print(f"{beating} retains {mib(row['retained'])} after {rounds['n']} CHECKPOINT(s): {row}")
    assert row["wal_status"] in ("reserved", "extended"), row

    # The task status reports it (measured every 5 s).
    def reported():
        got = status_slots(broker, "quiet-cdc")
        assert list(got) == [beating], got
        now = slot_row(beating)["retained"]
        r = got[beating]
        assert r is not None and r < RETAINED_LIMIT, f"status says {mib(r)}, the server {mib(now)}"
        assert abs(r - now) < RETAINED_LIMIT, f"status says {mib(r)}, the server {mib(now)}"
        return r, now

    r, now = wait_until(reported, timeout=20, interval=0.5, what="the status reporting the bounded slot")
    print(f"status of quiet-cdc: retained_wal_bytes {mib(r)} (the server: {mib(now)}), "
          f"{time.monotonic() - after_busy:.1f}s after")  # fmt: skip

    # Heartbeat records, keyed by the server name.
    hb_topic = f"__debezium-heartbeat.{PREFIX}"
    beats_after = high(broker.bootstrap, hb_topic)
    assert beats_after > beats_before, f"no heartbeat since the busy phase began: {beats_before} -> {beats_after}"
    beats = ck_consume_partition(broker.bootstrap, hb_topic, 0, 0, timeout=30)
    assert len(beats) == beats_after, (len(beats), beats_after)
    for b in beats:
        key, value = json.loads(b.key), json.loads(b.value)
        assert key["payload"] == {"serverName": PREFIX}, key
        assert key["schema"]["name"] == "io.debezium.connector.common.ServerNameKey", key
        assert value["schema"]["name"] == "io.debezium.connector.common.Heartbeat", value
        assert isinstance(value["payload"]["ts_ms"], int), value
    print(f"{len(beats)} heartbeat records in {hb_topic} ({beats_after - beats_before} since the busy phase began)")

    # The contrast: without heartbeats nothing is stored, so nothing is confirmed: the slot
    # stays where the last captured change left it and holds the neighbour's WAL.
    still = slot_row(held)
    assert still["confirmed"] == held_before["confirmed"], f"{held} moved without heartbeats: {held_before} -> {still}"
    assert still["retained"] >= busy_wal, f"{held} retains {mib(still['retained'])}, the busy phase wrote {mib(busy_wal)}"

    def held_reported():
        got = status_slots(broker, "still-cdc")
        assert got.get(held) is not None and got[held] >= busy_wal, f"status says {got}, want >= {busy_wal}"
        return got[held]

    r_held = wait_until(held_reported, timeout=20, interval=0.5, what="the status reporting the held slot")
    print(f"{held} (heartbeat.interval.ms=0) retains {mib(still['retained'])}, status says {mib(r_held)}")
    assert f"__debezium-heartbeat.{QUIET_PREFIX}" not in list_topic_names(broker.bootstrap)
    # The captured topics hold just the one change.
    assert high(broker.bootstrap, topic("quiet")) == 1
    assert ck_watermarks(broker.bootstrap, f"{QUIET_PREFIX}.public.quiet", 0)[1] == 1
    wait_state(broker, "quiet-cdc", "RUNNING")
    wait_state(broker, "still-cdc", "RUNNING")
