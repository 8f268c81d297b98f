"""sql-source: the new rows of a table, read by an increasing integer column through the host's
SQL capability, as JSON records (what Kafka Connect's JDBC source does in `incrementing` mode).

Each poll asks for the rows whose `column` is above the last one read, in its order, at most
`max_records` of them; a poll that finds none waits `poll.interval.ms` before the next query.
A record's value is the row as a JSON object (bytes as base64, a non-finite float as a string),
its key `{"<column>": value}`. The source partition is `{"table": "<table>"}` and a record's
source offset `{"incrementing": value}`, so a restarted task resumes after the committed row.
The database is the grant `weir.sql.<connection>.url` (`connection` defaults to `db`).
"""
import base64
import json
import math
import re
import time

import weir

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
INTEGER = re.compile(r"[0-9]+\Z")


def identifier(key, name):
    """The parts of `name` (`table` or `schema.table`); InvalidConfig when they are not plain
    identifiers (nothing else reaches a statement)."""
    parts = name.split(".")
    if not 1 <= len(parts) <= (2 if key == "table" else 1) or not all(IDENTIFIER.match(p) for p in parts):
        raise weir.InvalidConfig(key, f"{name!r} is not a plain SQL identifier")
    return parts


def quoted(parts, dialect):
    """Quoted for the dialect. SQLite reads a double-quoted name that matches no column as a
    string (`"nope"` would be the text 'nope'), a backquoted one never."""
    q = "`" if dialect == "sqlite" else '"'
    return ".".join(q + p + q for p in parts)


def jsonable(v):
    if v.__class__ is bytes:
        return base64.b64encode(v).decode()
    if v.__class__ is float and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return v


def dumps(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


class SqlSource(weir.Source):
    name, version = "sql-source", "0.1.0"
    description = "Reads the new rows of a table by an increasing integer column (JDBC source, incrementing mode)"
    config_keys = [
        weir.key("table", "the table to read (`name` or `schema.name`)", required=True),
        weir.key("column", "its strictly increasing integer column (an id)", required=True),
        weir.key("topic", "the topic to write to", required=True),
        weir.key("connection", "the SQL grant to read: weir.sql.<connection>.url", default="db"),
        weir.key("poll.interval.ms", "how long to wait after a poll that found no new row",
                 type="long", default="1000"),
        weir.key("weir.value.format", "values are JSON", default="json"),
        weir.key("weir.key.format", "keys are JSON", default="json"),
    ]

    def validate(self, config):
        errors = []
        for key in ("table", "column"):
            try:
                identifier(key, config.get(key, "x"))
            except weir.InvalidConfig as e:
                errors.append(e)
        if not INTEGER.match(config.get("poll.interval.ms", "0")):
            errors.append(("poll.interval.ms", "not a whole number of milliseconds"))
        return errors

    def open(self, config, committed):
        self.table_name = config.require("table")
        self.column_name = config.require("column")
        table, column = identifier("table", self.table_name), identifier("column", self.column_name)
        self.topic = config.require("topic")
        interval = config.get("poll.interval.ms", "1000")
        if not INTEGER.match(interval):
            raise weir.InvalidConfig("poll.interval.ms", "not a whole number of milliseconds")
        self.interval, self.quiet_until, self.described = int(interval) / 1000, 0.0, False
        self.partition = dumps({"table": self.table_name})
        self.last = None
        # Resume after the committed offset of this table's partition (JSON: the runtime may
        # give it back re-serialized); one that is not {"incrementing": <int>} counts as none.
        for partition, offset in committed:
            try:
                if json.loads(partition) != {"table": self.table_name}:
                    continue
                last = json.loads(offset).get("incrementing")
            except (ValueError, AttributeError):
                last = None
            if last.__class__ is int:
                self.last = last
            else:
                weir.log(f"ignoring the committed offset {offset!r}: not {{\"incrementing\": <int>}}", "warn")
        self.db = weir.sql.connect(config.get("connection", "db"))
        dialect = self.db.dialect
        table, column = quoted(table, dialect), quoted(column, dialect)
        p = ("?", "?") if dialect == "sqlite" else ("$1", "$2")
        self.first = f"SELECT * FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} LIMIT {p[0]}"
        self.after = f"SELECT * FROM {table} WHERE {column} > {p[0]} ORDER BY {column} LIMIT {p[1]}"
        try:  # the table and the column exist
            self.db.query_one(f"SELECT {column} FROM {table} WHERE 1 = 0")
        except weir.SqlStatementFailed as e:
            key = "column" if "column" in e.message.lower() else "table"
            raise weir.InvalidConfig(key, f"cannot read {self.column_name} of {self.table_name}: {e.message}")
        weir.log(f"reading {self.table_name} by {self.column_name} after "
                 f"{'the start' if self.last is None else self.last}")

    def poll(self, max_records):
        if time.monotonic() < self.quiet_until:
            return None
        if self.last is None:
            query = self.db.query(self.first, (max_records,), batch=max_records)
        else:
            query = self.db.query(self.after, (self.last, max_records), batch=max_records)
        out = weir.Builder()
        with query:
            for rows in query.batches():
                names = rows.names
                lower = [n.lower() for n in names]
                if self.column_name.lower() not in lower:
                    raise weir.Fatal(f"the rows of {self.table_name} have no column {self.column_name}")
                at = lower.index(self.column_name.lower())
                if not self.described:
                    self.described = True
                    weir.log("columns: " + ", ".join(f"{c.name} {c.type}".rstrip() for c in rows.columns))
                for row in rows:
                    n = row[at]
                    if n.__class__ is not int:
                        raise weir.Fatal(f"{self.table_name}.{self.column_name} holds {n!r}, not an integer")
                    out.append(key=dumps({names[at]: n}),
                               value=dumps({k: jsonable(v) for k, v in zip(names, row)}),
                               topic=self.topic, source_partition=self.partition,
                               source_offset=dumps({"incrementing": n}))
                    self.last = n
        if not len(out):
            self.quiet_until = time.monotonic() + self.interval
            return None
        return out

    def ack(self, stored):
        for partition, offset in stored:
            if partition == self.partition:
                weir.log(f"stored {self.table_name} up to {offset.decode('utf-8', 'replace')}", "debug")

    def close(self):
        db, self.db = getattr(self, "db", None), None
        if db is not None:
            db.close()


Source = weir.source(SqlSource)
