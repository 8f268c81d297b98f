"""The `sql` capability through the real `weir` binary: the guest fixture `sql-shell` (built by
weir-host's build script) runs each record's value as a SQL command on its grant `db`, under
`weir plugin run`. SQLite files here; PostgreSQL is the cluster `scripts/test` starts
(WEIR_TEST_PG_URL), with password authentication."""

from __future__ import annotations

import json
import os

import pytest

from helpers import describe_process, run_cli
from test_connect import rust_guest


def shell(weir_bin: str, url: str, commands: list, *args: str):
    """Runs the commands, one call each; returns (values, process)."""
    guest = rust_guest(weir_bin, "sql_shell")
    lines = "".join(json.dumps({"value": c}) + "\n" for c in commands)
    r = run_cli(weir_bin, "plugin", "run", str(guest), "--batch", "1", "-c", f"weir.sql.db.url={url}", *args, input=lines)
    assert r.returncode == 0, describe_process(r)
    values = [json.loads(line)["value"] for line in r.stdout.splitlines() if line.strip()]
    assert len(values) == len(commands), describe_process(r)
    return values, r


@pytest.mark.timeout(120)
def test_sqlite_statements_transactions_and_cursors(weir_bin, tmp_path):
    url = f"sqlite://{tmp_path / 'app.db'}?mode=rwc"
    out, _ = shell(
        weir_bin,
        url,
        [
            "open",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
            "many INSERT INTO t VALUES (?, ?)",
            "query SELECT id, name FROM t ORDER BY id",
            "begin",
            "INSERT INTO t VALUES (9, 'nine')",
            "rollback",
            "INSERT INTO t VALUES (?, ?) ?int:4 ?null",
            "cursor 2 SELECT id FROM t ORDER BY id",
            "DELETE FROM t",
            "next 5",
            "next 5",
            "DELETE FROM t WHERE id = 4",
            f"ATTACH DATABASE '{tmp_path / 'other.db'}' AS other",
            "SELEC 1",
        ],
    )
    assert out[0] == "open sqlite"
    assert out[2] == "affected 3"
    assert out[3] == "id:INTEGER|name:TEXT\n1|row 1\n2|row 2\n3|row 3"
    assert out[4:7] == ["begun", "affected 1", "rolled back"]
    assert out[7] == "affected 1"
    assert out[8] == "id:INTEGER\n1\n2"
    # The connection is busy while its cursor is open.
    assert out[9].startswith("error statement: a cursor of this connection is still open"), out[9]
    assert out[10:12] == ["3\n4", "done"]
    assert out[12] == "affected 1", "the cursor is done: the connection runs statements again"
    assert out[13].startswith("error statement:") and "too many attached databases" in out[13], out[13]
    assert out[14].startswith("error statement:") and "syntax error" in out[14], out[14]
    assert not (tmp_path / "other.db").exists()


@pytest.mark.timeout(60)
def test_only_granted_connections_open(weir_bin, tmp_path):
    url = f"sqlite://{tmp_path / 'app.db'}?mode=rwc"
    out, _ = shell(weir_bin, url, ["open"], "-c", "connection=other")
    assert out == ['error denied: no SQL connection named "other" is granted (granted: db)'], out
    guest = rust_guest(weir_bin, "sql_shell")
    r = run_cli(weir_bin, "plugin", "run", str(guest), "-c", "weir.sql.a b.url=x", input="")
    assert r.returncode != 0 and "a SQL grant's name is letters, digits" in r.stderr, describe_process(r)


PG = os.environ.get("WEIR_TEST_PG_URL")


@pytest.mark.skipif(not PG, reason="WEIR_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
@pytest.mark.timeout(60)
def test_postgres_deadline_and_credentials(weir_bin):
    # A statement past the call deadline is cut by the database call, not by the epoch
    # interrupt: the call returns an error and the task goes on.
    out, _ = shell(weir_bin, PG, ["SELECT pg_sleep(5)", "query SELECT 40 + 2 AS answer"], "--deadline-ms", "1000")
    assert out[0].startswith("error unavailable:") and "deadline" in out[0], out[0]
    assert out[1] == "answer:INT4\n42"
    # A wrong password is denied, and the password is in no output.
    scheme, rest = PG.split("://", 1)
    userinfo, host = rest.split("@", 1)
    wrong = f"{scheme}://{userinfo.split(':')[0]}:hunter2-wrong@{host}"
    out, r = shell(weir_bin, wrong, ["open"])
    assert out[0].startswith("error denied:") and "password authentication failed" in out[0], out[0]
    assert "hunter2" not in r.stdout + r.stderr, describe_process(r)
