"""`weir group ...` and `weir consume --group` against groups that
confluent-kafka consumers created.

The `weir group describe` table follows kafka-consumer-groups.sh --describe:
GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST
CLIENT-ID, with "-" for an empty cell (helpers.parse_group_describe).
Failures must exit non-zero with a message on stderr.
"""

from __future__ import annotations

import re
import time

import confluent_kafka as ck
import pytest

from helpers import (
    FAST_GROUPS,
    ck_committed,
    ck_group_consumer,
    ck_produce_ok,
    create_topic,
    describe_process,
    parse_group_describe,
    run_weir,
)

TOPIC = "cli-groups"
SIZES = {0: 10, 1: 20, 2: 30}  # records per partition
CLIENT_ID = "cli-test-client"


def value(p: int, i: int) -> str:
    return f"p{p}-r{i:02d}"


def ok(result) -> str:
    assert result.returncode == 0, describe_process(result)
    return result.stdout


def failed(result) -> str:
    assert result.returncode != 0, "expected a failure\n" + describe_process(result)
    assert result.stderr.strip(), "a failing command must explain itself on stderr\n" + describe_process(result)
    return result.stderr


def group_cmd(weir_bin, broker, *args):
    return run_weir(weir_bin, broker.bootstrap, "group", *args)


def describe_rows(weir_bin, broker, group: str) -> dict:
    """{partition: row} of `weir group describe GROUP` for TOPIC."""
    out = ok(group_cmd(weir_bin, broker, "describe", group))
    rows = {r["PARTITION"]: r for r in parse_group_describe(out, group) if r["TOPIC"] == TOPIC}
    assert set(rows) == set(SIZES), f"expected a row per partition of {TOPIC}:\n{out}"
    return rows


def offsets_and_lag(rows: dict) -> dict:
    return {p: (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for p, r in rows.items()}


def listed_groups(weir_bin, broker) -> set:
    return set(ok(group_cmd(weir_bin, broker, "list")).split())


def setup_topic(broker) -> None:
    create_topic(broker.bootstrap, TOPIC, len(SIZES))
    records = [dict(value=value(p, i).encode(), partition=p) for p, n in SIZES.items() for i in range(n)]
    ck_produce_ok(broker.bootstrap, TOPIC, records)


def consume_all(consumer: ck.Consumer, count: int, timeout: float = 30.0) -> list:
    """Poll a subscribed consumer until `count` records arrived (bounded)."""
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records in {timeout}s"
        for msg in consumer.consume(num_messages=1000, timeout=0.2):
            if msg.error() is None:
                records.append(msg)
            elif msg.error().fatal():
                raise ck.KafkaException(msg.error())
    return records


def member_with_commits(broker, group: str, commits: dict) -> ck.Consumer:
    """A subscribed member of `group` that has read TOPIC and committed
    `commits` ({partition: offset}). Still in the group: the caller closes it."""
    consumer = ck_group_consumer(broker.bootstrap, group, **{"client.id": CLIENT_ID})
    consumer.subscribe([TOPIC])
    consume_all(consumer, sum(SIZES.values()))
    result = consumer.commit(offsets=[ck.TopicPartition(TOPIC, p, o) for p, o in commits.items()], asynchronous=False)
    assert all(tp.error is None for tp in result), result
    return consumer


@pytest.mark.timeout(120)
def test_describe_and_list_with_an_active_member(weir_bin, start_broker):
    broker = start_broker(env=FAST_GROUPS)
    setup_topic(broker)
    group = "cli-active"
    consumer = member_with_commits(broker, group, {0: 5, 1: 10, 2: 30})
    try:
        assert group in listed_groups(weir_bin, broker)
        rows = describe_rows(weir_bin, broker, group)
        assert offsets_and_lag(rows) == {0: (5, 10, 5), 1: (10, 20, 10), 2: (30, 30, 0)}
        member_id = consumer.memberid()
        for p, row in rows.items():
            assert row["CONSUMER-ID"] == member_id, f"partition {p}: {row} (member id {member_id})"
            assert row["CLIENT-ID"] == CLIENT_ID, row
            assert row["HOST"], row

        # Offsets cannot be reset, nor the group deleted, while it has a member.
        stderr = failed(group_cmd(weir_bin, broker, "reset-offsets", group, "--topic", TOPIC, "--to-earliest"))
        print(f"reset-offsets with an active member: {stderr.strip()}")
        stderr = failed(group_cmd(weir_bin, broker, "delete", group))
        print(f"delete with an active member: {stderr.strip()}")
        assert ck_committed(broker.bootstrap, group, TOPIC, len(SIZES)) == {0: 5, 1: 10, 2: 30}
    finally:
        consumer.close()

    # After the member left, the offsets are still described, without a consumer.
    rows = describe_rows(weir_bin, broker, group)
    assert offsets_and_lag(rows) == {0: (5, 10, 5), 1: (10, 20, 10), 2: (30, 30, 0)}
    assert all(r["CONSUMER-ID"] is None for r in rows.values()), rows


def consume_cli(weir_bin, broker, group: str, *extra: str) -> list:
    """`weir consume TOPIC --group GROUP ...`: the printed values, in order."""
    out = ok(run_weir(weir_bin, broker.bootstrap, "consume", TOPIC, "--group", group, *extra, timeout=60))
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.timeout(120)
def test_reset_offsets_and_consume_with_group(weir_bin, start_broker):
    broker = start_broker(env=FAST_GROUPS)
    setup_topic(broker)
    group = "cli-reset"
    member_with_commits(broker, group, {0: 5, 1: 10, 2: 30}).close()

    # --to-earliest: a consumer of the group reads every partition from 0.
    ok(group_cmd(weir_bin, broker, "reset-offsets", group, "--topic", TOPIC, "--to-earliest"))
    assert offsets_and_lag(describe_rows(weir_bin, broker, group)) == {p: (0, n, n) for p, n in SIZES.items()}
    consumer = ck_group_consumer(broker.bootstrap, group)
    try:
        consumer.subscribe([TOPIC])
        records = consume_all(consumer, sum(SIZES.values()))
    finally:
        consumer.close()
    first = {}
    for msg in records:
        first.setdefault(msg.partition(), msg.offset())
    assert first == {0: 0, 1: 0, 2: 0}, f"after --to-earliest the group started at {first}"
    assert sorted(m.value().decode() for m in records) == sorted(value(p, i) for p, n in SIZES.items() for i in range(n))

    # --to-offset 3, then `weir consume --group` prints what lies beyond
    # and commits as it goes: afterwards the lag is 0.
    ok(group_cmd(weir_bin, broker, "reset-offsets", group, "--topic", TOPIC, "--to-offset", "3"))
    assert offsets_and_lag(describe_rows(weir_bin, broker, group)) == {p: (3, n, n - 3) for p, n in SIZES.items()}
    remaining = sum(n - 3 for n in SIZES.values())
    printed = consume_cli(weir_bin, broker, group, "--max-messages", str(remaining), "--timeout-ms", "10000")
    assert sorted(printed) == sorted(value(p, i) for p, n in SIZES.items() for i in range(3, n)), printed
    assert offsets_and_lag(describe_rows(weir_bin, broker, group)) == {p: (n, n, 0) for p, n in SIZES.items()}

    # Nothing new: nothing printed. Two new records: exactly those.
    assert consume_cli(weir_bin, broker, group, "--timeout-ms", "2000") == []
    ck_produce_ok(broker.bootstrap, TOPIC, [dict(value=b"new-0", partition=0), dict(value=b"new-2", partition=2)])
    assert sorted(consume_cli(weir_bin, broker, group, "--max-messages", "2", "--timeout-ms", "10000")) == ["new-0", "new-2"]

    # --to-earliest then --to-latest: back at the end, lag 0.
    ok(group_cmd(weir_bin, broker, "reset-offsets", group, "--topic", TOPIC, "--to-earliest"))
    ok(group_cmd(weir_bin, broker, "reset-offsets", group, "--topic", TOPIC, "--to-latest"))
    ends = {0: SIZES[0] + 1, 1: SIZES[1], 2: SIZES[2] + 1}
    assert offsets_and_lag(describe_rows(weir_bin, broker, group)) == {p: (n, n, 0) for p, n in ends.items()}
    assert ck_committed(broker.bootstrap, group, TOPIC, len(SIZES)) == ends


@pytest.mark.timeout(120)
def test_delete_group_and_missing_group_errors(weir_bin, start_broker):
    broker = start_broker(env=FAST_GROUPS)
    setup_topic(broker)
    group, other = "cli-delete", "cli-keep"
    member_with_commits(broker, group, {0: 1, 1: 2, 2: 3}).close()
    member_with_commits(broker, other, {0: 4, 1: 4, 2: 4}).close()
    assert {group, other} <= listed_groups(weir_bin, broker)

    ok(group_cmd(weir_bin, broker, "delete", group))
    assert group not in listed_groups(weir_bin, broker)
    assert other in listed_groups(weir_bin, broker)
    # The deleted group's offsets are gone; the other group's are not.
    assert all(o < 0 for o in ck_committed(broker.bootstrap, group, TOPIC, len(SIZES)).values())
    assert ck_committed(broker.bootstrap, other, TOPIC, len(SIZES)) == {0: 4, 1: 4, 2: 4}

    for missing in (group, "cli-never-existed"):
        stderr = failed(group_cmd(weir_bin, broker, "describe", missing))
        assert missing in stderr or re.search(r"not found|does not exist|unknown|no such", stderr, re.IGNORECASE), (
            f"describing the missing group {missing!r} should say so clearly: {stderr}"
        )
    failed(group_cmd(weir_bin, broker, "delete", "cli-never-existed"))

    # A consumer of a deleted group starts over (auto.offset.reset=earliest).
    consumer = ck_group_consumer(broker.bootstrap, group)
    try:
        consumer.subscribe([TOPIC])
        records = consume_all(consumer, sum(SIZES.values()))
        assert group in listed_groups(weir_bin, broker), "a group with a member again must be listed"
    finally:
        consumer.close()
    assert len({(m.partition(), m.offset()) for m in records}) == sum(SIZES.values())
