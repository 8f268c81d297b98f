"""The SQL sink's Debezium JDBC sink options, through the real `weir` binary and its REST API.

Records are produced straight into topics (confluent-kafka, Connect JSON `{"schema",
"payload"}` keys and values as JsonConverter writes them with schemas), the built-in sql-sink
(`io.debezium.connector.jdbc.JdbcSinkConnector`) writes them into a PostgreSQL database of the
cluster `scripts/test` starts (WEIR_TEST_PG_URL; one database per test, dropped at the end) or
into a SQLite file, and the tables are read back row for row and column by column
(information_schema, PRAGMA table_info).

* `collection.name.format=copy_${topic}` with the topic `Shop.Sales.Orders`: the table is the
  format with dots made underscores. On PostgreSQL with `quote.identifiers` unset the table and
  its columns are lower case (as unquoted names are kept), a later batch upserts into it and a
  new mixed-case field becomes a lower-case column; with `quote.identifiers=true` they keep
  their case. The older `table.name.format` alone works the same. SQLite keeps names as written.
* `field.exclude.list=<topic>:<field>` leaves that field out of the created table and of the
  rows (and out of the columns `schema.evolution=basic` adds later), a key field named there is
  still written; `field.include.list` writes only the listed fields plus the key. Entries of
  another topic change nothing.
* `use.reduction.buffer=true` with `insert.mode=insert`: of one batch's records with the same
  key only the last is written (a tombstone last deletes), so no duplicate key; without it the
  same batch fails the task with PostgreSQL's duplicate key error and nothing is committed.
  The records are all in the topic before the connectors are created, so the first fetch hands
  them out as one batch.
* The same options on Debezium change events: postgres-source captures the mixed-case table
  `"Items"` into `shop.public.Items` and two sinks (reduction buffer on, deletes enabled, one
  excluding a field with names folded, one including a field with names quoted) end with the
  source's rows after a snapshot and a transaction of inserts, updates and deletes.
* Refused: `collection.name.format` with `table.name.format`, `database.time_zone` other than
  UTC, a naming strategy other than Debezium's default, `batch.size` that is not a number, each
  naming its key in the validate answer and in the 400 of POST /connectors. Accepted and
  working: `batch.size`, `connection.pool.*`, `flush.max.retries`, `flush.retry.delay.ms`,
  `database.time_zone=UTC` and the default naming strategy classes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
from pathlib import Path

import pytest

if not os.environ.get("WEIR_TEST_PG_URL"):
    pytest.skip(
        "WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster with wal_level=logical "
        "and exports it)",
        allow_module_level=True,
    )

from helpers import ck_produce_ok, ck_watermarks, create_topic, wait_until  # noqa: E402
from test_cdc_postgres import _URL, JSON, PG_PASSWORD, PgDb, pgdb  # noqa: E402, F401 - pgdb: the fixture
from test_connect import call, create, error, get, start_connect, wait_state  # noqa: E402

SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
WAIT = 30.0  # seconds: the bound of every poll loop
SCHEMAS = {"key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true"}
VALIDATE = f"/connector-plugins/{SINK_CLASS}/config/validate"


# ---------------------------------------------------------------------------
# Connect JSON records
# ---------------------------------------------------------------------------


def field(name: str, kind: str, optional: bool = True) -> dict:
    return {"field": name, "type": kind, "optional": optional}


def doc(name: str, fields: list, payload) -> bytes:
    """A JsonConverter (schemas.enable=true) document of a struct."""
    schema = {"type": "struct", "name": name, "optional": False, "fields": fields}
    return json.dumps({"schema": schema, "payload": payload}).encode()


def produce_one_go(bootstrap: str, topic: str, recs: list) -> None:
    """Produces (key, value) pairs with one producer and one flush (a long linger: one
    Produce request), and checks that they are the topic's next offsets, in order."""
    before = ck_watermarks(bootstrap, topic, 0)[1]
    deliveries = ck_produce_ok(bootstrap, topic, [{"key": k, "value": v} for k, v in recs], **{"linger.ms": 200})
    offsets = [d.offset for d in deliveries]
    assert offsets == list(range(before, before + len(recs))), offsets


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


@pytest.fixture
def target_db():
    """The sink's PostgreSQL database; request it before `start_broker` (the broker stops
    first, closing the sink's connections)."""
    db = PgDb()
    yield db
    db.drop()


def pg_url(db: PgDb) -> str:
    return f"jdbc:postgresql://{_URL.hostname}:{_URL.port or 5432}/{db.name}"


def pg_login() -> dict:
    return {"connection.username": urllib.parse.unquote(_URL.username or ""), "connection.password": PG_PASSWORD}


def sink_config(topics: str, url: str, **extra) -> dict:
    config = {
        "connector.class": SINK_CLASS,
        "topics": topics,
        "connection.url": url,
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "schema.evolution": "basic",
        "key.converter": JSON,
        "value.converter": JSON,
        **SCHEMAS,
    }
    if url.startswith("jdbc:postgresql:"):
        config.update(pg_login())
    config.update(extra)
    return config


def pg_tables(db: PgDb) -> list:
    got = db.conn.execute(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in got]


def pg_columns(db: PgDb, table: str) -> list:
    got = db.conn.execute(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [r[0] for r in got]


def pg_primary_key(db: PgDb, table: str) -> list:
    got = db.conn.execute(
        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        ('"' + table.replace('"', '""') + '"',),
    ).fetchall()
    return [r[0] for r in got]


def pg_select(db: PgDb, query: str) -> list:
    return [tuple(r) for r in db.conn.execute(query).fetchall()]


def sqlite_read(path: Path, query: str, params=()) -> list:
    """Read only: the test never writes the sink's file."""
    assert path.exists(), f"{path} does not exist yet"
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def sqlite_tables(path: Path) -> list:
    return [r[0] for r in sqlite_read(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def sqlite_columns(path: Path, table: str) -> list:
    return [r[1] for r in sqlite_read(path, "SELECT * FROM pragma_table_info(?)", (table,))]


def statuses(broker, *names: str) -> str:
    out = []
    for n in names:
        try:
            out.append(json.dumps(get(broker, f"/connectors/{n}/status")))
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            out.append(f"{n}: status unavailable: {exc!r}")
    return "\n".join(out)


def wait_rows(broker, names: tuple, read, want, what: str):
    """Polls `read()` until it equals `want`; a timeout shows the last rows and the statuses."""

    def probe():
        got = read()
        assert got == want, f"got {got!r}, want {want!r}"
        return True

    try:
        wait_until(probe, timeout=WAIT, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- connector statuses ---\n{statuses(broker, *names)}") from None


# ---------------------------------------------------------------------------
# 1. Table and column names
# ---------------------------------------------------------------------------

ORDERS = "Shop.Sales.Orders"
ORDER_KEY = [field("OrderId", "int32", False)]
ORDER_FIELDS = [field("OrderId", "int32", False), field("CustomerName", "string", False), field("Total", "int64")]
ORDER_FIELDS_2 = [*ORDER_FIELDS, field("ShipNote", "string")]


def order(order_id: int, name: str, total, note=None, *, second: bool = False) -> tuple:
    value = {"OrderId": order_id, "CustomerName": name, "Total": total}
    if second:
        value["ShipNote"] = note
    return (
        doc("Shop.Sales.Orders.Key", ORDER_KEY, {"OrderId": order_id}),
        doc("Shop.Sales.Orders.Value", ORDER_FIELDS_2 if second else ORDER_FIELDS, value),
    )


@pytest.mark.timeout(120)
def test_collection_name_format_and_quote_identifiers(target_db, start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    create_topic(broker.bootstrap, ORDERS)
    url = pg_url(target_db)
    replica = tmp_path / "names.db"
    names = ("folded", "quoted", "legacy", "sqlite")
    create(broker, "folded", sink_config(ORDERS, url, **{"collection.name.format": "copy_${topic}"}))
    create(broker, "quoted", sink_config(ORDERS, url, **{"collection.name.format": "kept_${topic}",
                                                         "quote.identifiers": "true"}))  # fmt: skip
    create(broker, "legacy", sink_config(ORDERS, url, **{"table.name.format": "old_${topic}"}))
    create(broker, "sqlite", sink_config(ORDERS, f"jdbc:sqlite:{replica}", **{"collection.name.format": "copy_${topic}"}))
    for n in names:
        wait_state(broker, n, "RUNNING")

    produce_one_go(broker.bootstrap, ORDERS, [order(1, "Ada", 100), order(2, "Bob", None)])
    want_pg = [(1, "Ada", 100), (2, "Bob", None)]
    # Unquoted names in the queries: only lower-case tables and columns answer them.
    wait_rows(broker, names, lambda: pg_select(target_db, "SELECT orderid, customername, total FROM copy_shop_sales_orders ORDER BY 1"),
              want_pg, "the first batch in copy_shop_sales_orders")  # fmt: skip
    wait_rows(broker, names, lambda: pg_select(target_db, "SELECT orderid, customername, total FROM old_shop_sales_orders ORDER BY 1"),
              want_pg, "the first batch in old_shop_sales_orders")  # fmt: skip
    wait_rows(broker, names, lambda: pg_select(target_db, 'SELECT "OrderId", "CustomerName", "Total" FROM "kept_Shop_Sales_Orders" ORDER BY 1'),
              want_pg, "the first batch in kept_Shop_Sales_Orders")  # fmt: skip
    wait_rows(broker, names, lambda: sqlite_read(replica, 'SELECT "OrderId", "CustomerName", "Total" FROM "copy_Shop_Sales_Orders" ORDER BY 1'),
              want_pg, "the first batch in SQLite")  # fmt: skip

    # A second batch: an upsert over an existing key and a new (mixed-case) field.
    produce_one_go(broker.bootstrap, ORDERS, [order(1, "Ada L.", 150, "fragile", second=True),
                                              order(3, "Cy", 7, None, second=True)])  # fmt: skip
    want = [(1, "Ada L.", 150, "fragile"), (2, "Bob", None, None), (3, "Cy", 7, None)]
    wait_rows(broker, names, lambda: pg_select(target_db, "SELECT orderid, customername, total, shipnote FROM copy_shop_sales_orders ORDER BY 1"),
              want, "the second batch in copy_shop_sales_orders")  # fmt: skip
    wait_rows(broker, names, lambda: pg_select(target_db, "SELECT orderid, customername, total, shipnote FROM old_shop_sales_orders ORDER BY 1"),
              want, "the second batch in old_shop_sales_orders")  # fmt: skip
    wait_rows(broker, names, lambda: pg_select(target_db, 'SELECT "OrderId", "CustomerName", "Total", "ShipNote" FROM "kept_Shop_Sales_Orders" ORDER BY 1'),
              want, "the second batch in kept_Shop_Sales_Orders")  # fmt: skip
    wait_rows(broker, names, lambda: sqlite_read(replica, 'SELECT "OrderId", "CustomerName", "Total", "ShipNote" FROM "copy_Shop_Sales_Orders" ORDER BY 1'),
              want, "the second batch in SQLite")  # fmt: skip

    # Exactly these tables and columns: nothing under another spelling.
    assert pg_tables(target_db) == ["copy_shop_sales_orders", "kept_Shop_Sales_Orders", "old_shop_sales_orders"]
    folded = ["orderid", "customername", "total", "shipnote"]
    assert pg_columns(target_db, "copy_shop_sales_orders") == folded
    assert pg_columns(target_db, "old_shop_sales_orders") == folded
    assert pg_columns(target_db, "kept_Shop_Sales_Orders") == ["OrderId", "CustomerName", "Total", "ShipNote"]
    assert pg_primary_key(target_db, "copy_shop_sales_orders") == ["orderid"]
    assert pg_primary_key(target_db, "kept_Shop_Sales_Orders") == ["OrderId"]
    assert sqlite_tables(replica) == ["copy_Shop_Sales_Orders"]
    assert sqlite_columns(replica, "copy_Shop_Sales_Orders") == ["OrderId", "CustomerName", "Total", "ShipNote"]
    for n in names:
        wait_state(broker, n, "RUNNING")


# ---------------------------------------------------------------------------
# 2. Which fields are written
# ---------------------------------------------------------------------------

CUSTOMERS = "crm.customers"
CUSTOMER_KEY = [field("id", "int64", False)]
CUSTOMER_FIELDS = [field("id", "int64", False), field("name", "string", False), field("email", "string"),
                   field("secret", "string")]  # fmt: skip
CUSTOMER_FIELDS_2 = [*CUSTOMER_FIELDS, field("phone", "string")]


def customer(id_: int, name: str, email, secret, phone=None, *, second: bool = False) -> tuple:
    value = {"id": id_, "name": name, "email": email, "secret": secret}
    if second:
        value["phone"] = phone
    return (
        doc("crm.customers.Key", CUSTOMER_KEY, {"id": id_}),
        doc("crm.customers.Value", CUSTOMER_FIELDS_2 if second else CUSTOMER_FIELDS, value),
    )


@pytest.mark.timeout(120)
def test_field_include_and_exclude_lists(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    create_topic(broker.bootstrap, CUSTOMERS)
    replica = tmp_path / "fields.db"
    url = f"jdbc:sqlite:{replica}"
    names = ("excluded", "included")
    # The key field `id` is named in the exclude list: key fields are written all the same.
    create(broker, "excluded", sink_config(CUSTOMERS, url, **{
        "collection.name.format": "excl_${topic}",
        "field.exclude.list": f"{CUSTOMERS}:secret,{CUSTOMERS}:id,other.topic:name",
    }))  # fmt: skip
    create(broker, "included", sink_config(CUSTOMERS, url, **{
        "collection.name.format": "incl_${topic}",
        "field.include.list": f"{CUSTOMERS}:name, other.topic:email",
    }))  # fmt: skip
    for n in names:
        wait_state(broker, n, "RUNNING")

    produce_one_go(broker.bootstrap, CUSTOMERS, [customer(1, "Ada", "ada@example.com", "s3cret"),
                                                 customer(2, "Bob", None, "hunter2")])  # fmt: skip
    wait_rows(broker, names, lambda: sqlite_read(replica, "SELECT * FROM excl_crm_customers ORDER BY id"),
              [(1, "Ada", "ada@example.com"), (2, "Bob", None)], "the first batch without secret")  # fmt: skip
    wait_rows(broker, names, lambda: sqlite_read(replica, "SELECT * FROM incl_crm_customers ORDER BY id"),
              [(1, "Ada"), (2, "Bob")], "the first batch with only id and name")  # fmt: skip
    assert sqlite_columns(replica, "excl_crm_customers") == ["id", "name", "email"]
    assert sqlite_columns(replica, "incl_crm_customers") == ["id", "name"]

    # Later records with a new field: schema.evolution=basic adds it where it is written, and
    # still not the excluded (or not included) fields.
    produce_one_go(broker.bootstrap, CUSTOMERS, [customer(3, "Cy", "cy@example.com", "pw", "555", second=True),
                                                 customer(1, "Ada L.", "ada@l.example", "changed", "111",
                                                          second=True)])  # fmt: skip
    wait_rows(broker, names, lambda: sqlite_read(replica, "SELECT * FROM excl_crm_customers ORDER BY id"),
              [(1, "Ada L.", "ada@l.example", "111"), (2, "Bob", None, None), (3, "Cy", "cy@example.com", "555")],
              "the second batch without secret")  # fmt: skip
    wait_rows(broker, names, lambda: sqlite_read(replica, "SELECT * FROM incl_crm_customers ORDER BY id"),
              [(1, "Ada L."), (2, "Bob"), (3, "Cy")], "the second batch with only id and name")  # fmt: skip
    assert sqlite_columns(replica, "excl_crm_customers") == ["id", "name", "email", "phone"]
    assert sqlite_columns(replica, "incl_crm_customers") == ["id", "name"]
    assert sqlite_tables(replica) == ["excl_crm_customers", "incl_crm_customers"]
    for n in names:
        wait_state(broker, n, "RUNNING")


# ---------------------------------------------------------------------------
# 3. The reduction buffer
# ---------------------------------------------------------------------------

LEDGER = "ledger.entries"
LEDGER_KEY = [field("id", "int32", False)]
LEDGER_FIELDS = [field("id", "int32", False), field("amount", "int64", False), field("note", "string")]


def entry(id_: int, amount: int, note: str) -> tuple:
    return (doc("ledger.entries.Key", LEDGER_KEY, {"id": id_}),
            doc("ledger.entries.Value", LEDGER_FIELDS, {"id": id_, "amount": amount, "note": note}))  # fmt: skip


def tombstone(id_: int) -> tuple:
    return doc("ledger.entries.Key", LEDGER_KEY, {"id": id_}), None


def task_failed_with(broker, name: str, *words: str) -> dict:
    """Waits for the task to be FAILED with a trace naming every word; returns the status."""

    def probe():
        st = get(broker, f"/connectors/{name}/status")
        tasks = st["tasks"]
        assert tasks and tasks[0]["state"] == "FAILED", st
        trace = tasks[0].get("trace") or ""
        for w in words:
            assert w in trace, f"{w!r} not in the trace: {trace!r}"
        return st

    return wait_until(probe, timeout=WAIT, interval=0.05, what=f"{name} FAILED naming {words}")


@pytest.mark.timeout(120)
def test_reduction_buffer_writes_the_last_record_of_a_key(target_db, start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    create_topic(broker.bootstrap, LEDGER)
    # All in the topic before any sink reads it: the first fetch is one batch.
    produce_one_go(broker.bootstrap, LEDGER, [
        entry(1, 10, "first"), entry(2, 20, "two"), entry(1, 11, "second"), entry(3, 30, "three"),
        entry(1, 12, "last"), entry(2, 21, "two, last"), tombstone(3),
    ])  # fmt: skip
    url = pg_url(target_db)
    common = {"insert.mode": "insert", "primary.key.mode": "record_key", "delete.enabled": "true"}
    create(broker, "reduced", sink_config(LEDGER, url, **common, **{"collection.name.format": "reduced_${topic}",
                                                                    "use.reduction.buffer": "true"}))  # fmt: skip
    create(broker, "plain", sink_config(LEDGER, url, **common, **{"collection.name.format": "plain_${topic}"}))

    wait_rows(broker, ("reduced", "plain"),
              lambda: pg_select(target_db, "SELECT id, amount, note FROM reduced_ledger_entries ORDER BY id"),
              [(1, 12, "last"), (2, 21, "two, last")], "one row per key, the last one")  # fmt: skip

    # Without the buffer the second insert of key 1 is a duplicate key: the task fails and the
    # batch's transaction (the table it created included) is rolled back.
    st = task_failed_with(broker, "plain", "duplicate key")
    assert "plain_ledger_entries" in st["tasks"][0]["trace"], st
    assert target_db.one("SELECT to_regclass('plain_ledger_entries') IS NULL")[0], "nothing of the batch committed"

    wait_state(broker, "reduced", "RUNNING")
    assert pg_select(target_db, "SELECT id, amount, note FROM reduced_ledger_entries ORDER BY id") == [
        (1, 12, "last"), (2, 21, "two, last")]  # fmt: skip
    assert pg_primary_key(target_db, "reduced_ledger_entries") == ["id"]


# ---------------------------------------------------------------------------
# 4. From the PostgreSQL source: Debezium's change events
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_change_events_from_postgres_source(pgdb, target_db, start_broker, tmp_path):  # noqa: F811
    """postgres-source captures a mixed-case table into `shop.public.Items`; two sinks write
    its `after` rows (deletes too, the reduction buffer on) with the options above."""
    pgdb.run(
        'CREATE TABLE "Items" (id int4 PRIMARY KEY, "Name" text NOT NULL, secret text, "Qty" int4)',
        """INSERT INTO "Items" VALUES (1, 'one', 's1', 10), (2, 'two', 's2', 20), (4, 'four', NULL, NULL)""",
    )
    broker = start_connect(start_broker, tmp_path)
    topic = "shop.public.Items"
    url = pg_url(target_db)
    names = ("items-cdc", "items-folded", "items-quoted")
    create(broker, names[0], pgdb.config(**{"table.include.list": "public.Items", **SCHEMAS}))
    common = {"delete.enabled": "true", "use.reduction.buffer": "true", "collection.name.format": "replica_${topic}"}
    create(broker, names[1], sink_config(topic, url, **common, **{"field.exclude.list": f"{topic}:secret"}))
    create(broker, names[2], sink_config(topic, url, **common, **{"field.include.list": f"{topic}:Name",
                                                                   "quote.identifiers": "true"}))  # fmt: skip

    def folded():
        return pg_select(target_db, "SELECT id, name, qty FROM replica_shop_public_items ORDER BY id")

    def quoted():
        return pg_select(target_db, 'SELECT id, "Name" FROM "replica_shop_public_Items" ORDER BY id')

    wait_rows(broker, names, folded, [(1, "one", 10), (2, "two", 20), (4, "four", None)], "the snapshot, folded")
    wait_rows(broker, names, quoted, [(1, "one"), (2, "two"), (4, "four")], "the snapshot, quoted")

    # One transaction: a row inserted and updated twice, a row updated, one deleted, one
    # inserted and deleted again.
    pgdb.tx(
        """INSERT INTO "Items" VALUES (3, 'three', 's3', 30), (5, 'gone again', 's5', 50)""",
        """UPDATE "Items" SET "Qty" = 31, secret = 'x' WHERE id = 3""",
        """UPDATE "Items" SET "Name" = 'three, last', "Qty" = 32 WHERE id = 3""",
        """UPDATE "Items" SET "Name" = 'one, renamed', "Qty" = NULL WHERE id = 1""",
        'DELETE FROM "Items" WHERE id = 2',
        'DELETE FROM "Items" WHERE id = 5',
    )
    pgdb.run("""UPDATE "Items" SET "Qty" = 44 WHERE id = 4""")
    wait_rows(broker, names, folded, [(1, "one, renamed", None), (3, "three, last", 32), (4, "four", 44)],
              "the changes, folded")  # fmt: skip
    wait_rows(broker, names, quoted, [(1, "one, renamed"), (3, "three, last"), (4, "four")], "the changes, quoted")
    assert pg_tables(target_db) == ["replica_shop_public_Items", "replica_shop_public_items"]
    assert pg_columns(target_db, "replica_shop_public_items") == ["id", "name", "qty"]
    assert pg_columns(target_db, "replica_shop_public_Items") == ["id", "Name"]
    for n in names:
        wait_state(broker, n, "RUNNING")


# ---------------------------------------------------------------------------
# 5. Configs refused, and keys accepted without effect
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_refused_and_accepted_configs(start_broker, tmp_path):
    broker = start_connect(start_broker, tmp_path)
    replica = tmp_path / "accepted.db"
    url = f"jdbc:sqlite:{replica}"
    topic = "acc.items"

    def errors(config: dict) -> dict:
        _, payload = call(broker, "PUT", VALIDATE, config, status=200)
        found = {c["value"]["name"]: c["value"]["errors"] for c in payload["configs"] if c["value"]["errors"]}
        assert payload["error_count"] == sum(len(e) for e in found.values()), payload
        return found

    refused = [
        ({"collection.name.format": "a_${topic}", "table.name.format": "b_${topic}"}, "table.name.format",
         "collection.name.format"),
        ({"database.time_zone": "Europe/Paris"}, "database.time_zone", "Europe/Paris"),
        ({"column.naming.strategy": "com.example.Custom"}, "column.naming.strategy",
         "io.debezium.connector.jdbc.naming.DefaultColumnNamingStrategy"),
        ({"table.naming.strategy": "com.example.Custom"}, "table.naming.strategy",
         "io.debezium.connector.jdbc.naming.DefaultTableNamingStrategy"),
        ({"batch.size": "many"}, "batch.size", "many"),
    ]  # fmt: skip
    for extra, key, word in refused:
        bad = sink_config(topic, url, **extra)
        found = errors(bad)
        assert list(found) == [key] and len(found[key]) == 1 and word in found[key][0], (extra, found)
        message = error(broker, "POST", "/connectors", {"name": "refused", "config": bad}, status=400,
                        mentions=(key,))  # fmt: skip
        assert word in message, (extra, message)
    assert get(broker, "/connectors") == []
    assert not replica.exists(), "nothing was opened"

    accepted = sink_config(topic, url, **{
        "batch.size": "1",
        "connection.pool.min_size": "1",
        "connection.pool.max_size": "4",
        "connection.pool.acquire_increment": "1",
        "connection.pool.timeout": "60",
        "flush.max.retries": "0",
        "flush.retry.delay.ms": "10",
        "database.time_zone": "UTC",
        "collection.naming.strategy": "io.debezium.connector.jdbc.naming.DefaultCollectionNamingStrategy",
        "table.naming.strategy": "io.debezium.connector.jdbc.naming.DefaultTableNamingStrategy",
        "column.naming.strategy": "io.debezium.connector.jdbc.naming.DefaultColumnNamingStrategy",
        "table.name.format": "t_${topic}",
    })  # fmt: skip
    assert errors(accepted) == {}
    create_topic(broker.bootstrap, topic)
    create(broker, "accepted", accepted)
    wait_state(broker, "accepted", "RUNNING")
    produce_one_go(broker.bootstrap, topic, [entry(i, i * 10, f"n{i}") for i in (1, 2, 3)])
    wait_rows(broker, ("accepted",), lambda: sqlite_read(replica, "SELECT id, amount, note FROM t_acc_items ORDER BY id"),
              [(1, 10, "n1"), (2, 20, "n2"), (3, 30, "n3")], "the rows of the accepted config")  # fmt: skip
    wait_state(broker, "accepted", "RUNNING")
    assert get(broker, "/connectors") == ["accepted"]
