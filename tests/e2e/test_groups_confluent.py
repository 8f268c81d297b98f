"""Consumer groups with confluent-kafka (librdkafka) against Weir.

  * Two members (cooperative-sticky, and range) consume a 4-partition topic,
    committing synchronously after processing each batch, while the broker
    is restarted (SIGTERM, start on the same port and data dir). Afterwards
    the group has resumed from its committed offsets: every record was
    consumed, and a record was consumed again only if no commit had covered
    it yet (a commit that succeeded is never lost).
  * A member that dies without leaving (SIGKILL of its process) is removed
    after its session timeout, not before, and the survivor takes over its
    partitions.
  * A static member (group.instance.id) that restarts within its session
    timeout gets its partitions back without a rebalance.

Members run on their own threads (one Consumer per thread); everything they
see goes into a shared, locked Ledger that the test inspects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient

from helpers import (
    FAST_GROUPS,
    ck_committed,
    ck_group_consumer,
    ck_high_watermarks,
    ck_produce_ok,
    create_topic,
    wait_until,
)

HERE = Path(__file__).resolve().parent


class Ledger:
    """What the members of one group consumed and committed (thread-safe)."""

    def __init__(self, topic: str):
        self.topic = topic
        self.lock = threading.Lock()
        self.ids: dict = {}  # record id -> times consumed
        self.consumed: set = set()  # (partition, offset) consumed at least once
        self.redelivered: list = []  # (member, partition, offset) consumed again
        # Highest offset a successful commit covered, per partition: a
        # record below it must never be delivered again.
        self.committed: dict = {}
        self.bad_redeliveries: list = []  # redelivered although committed
        self.commits_ok = 0
        self.commit_errors: list = []  # (time, member, error)
        self.assignment: dict = {}  # member -> set of partitions it owns
        self.events: list = []  # (time, member, event, partitions)

    def record(self, member: str, msg) -> None:
        p, o = msg.partition(), msg.offset()
        record_id = int(msg.value())
        with self.lock:
            self.ids[record_id] = self.ids.get(record_id, 0) + 1
            if (p, o) in self.consumed:
                self.redelivered.append((member, p, o))
                if o < self.committed.get(p, 0):
                    self.bad_redeliveries.append((member, p, o, self.committed[p]))
            self.consumed.add((p, o))

    def commit_succeeded(self, offsets: list) -> None:
        with self.lock:
            self.commits_ok += 1
            for tp in offsets:
                self.committed[tp.partition] = max(self.committed.get(tp.partition, 0), tp.offset)

    def commit_failed(self, member: str, error) -> None:
        with self.lock:
            self.commit_errors.append((time.monotonic(), member, str(error)))

    def event(self, member: str, what: str, partitions: list) -> None:
        parts = sorted(tp.partition for tp in partitions)
        with self.lock:
            owned = self.assignment.setdefault(member, set())
            if what == "assign":
                owned.update(parts)
            elif what == "assign-all":  # eager protocol: the full new assignment
                owned.clear()
                owned.update(parts)
            else:  # revoke / lost
                owned.difference_update(parts)
            self.events.append((time.monotonic(), member, what, parts))

    def owned(self, member: str) -> set:
        with self.lock:
            return set(self.assignment.get(member, ()))

    def balanced(self, members: list, partitions: int) -> bool:
        """The members' partitions are disjoint, complete, and nobody is idle."""
        with self.lock:
            owned = [self.assignment.get(m, set()) for m in members]
        everything = set().union(*owned)
        return all(owned) and sum(len(o) for o in owned) == partitions and everything == set(range(partitions))

    def missing(self, count: int) -> list:
        with self.lock:
            return [i for i in range(count) if i not in self.ids]


class Member(threading.Thread):
    """One group member: poll a batch, process it (record it in the
    ledger), commit it synchronously; until stopped."""

    def __init__(self, name: str, bootstrap: str, group: str, ledger: Ledger, *, pace: float = 0.0, **config):
        super().__init__(name=name, daemon=True)
        self.ledger = ledger
        self.pace = pace  # seconds to "process" each record
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.closed = False
        self.cooperative = config.get("partition.assignment.strategy") == "cooperative-sticky"
        self.consumer = ck_group_consumer(bootstrap, group, **{"client.id": name, **config})

    def _on_assign(self, consumer, partitions):
        self.ledger.event(self.name, "assign" if self.cooperative else "assign-all", partitions)

    def _on_revoke(self, consumer, partitions):
        self.ledger.event(self.name, "revoke", partitions)

    def _on_lost(self, consumer, partitions):
        self.ledger.event(self.name, "lost", partitions)

    def run(self) -> None:
        try:
            self.consumer.subscribe(
                [self.ledger.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            while not self.stop_event.is_set():
                msgs = self.consumer.consume(num_messages=20, timeout=0.2)
                ends: dict = {}
                for msg in msgs:
                    if msg.error() is not None:
                        if msg.error().fatal():
                            raise ck.KafkaException(msg.error())
                        continue
                    self.ledger.record(self.name, msg)
                    ends[msg.partition()] = msg.offset() + 1
                if not ends:
                    continue
                if self.pace:
                    time.sleep(self.pace * len(msgs))
                offsets = [ck.TopicPartition(self.ledger.topic, p, o) for p, o in ends.items()]
                try:
                    result = self.consumer.commit(offsets=offsets, asynchronous=False)
                except ck.KafkaException as exc:
                    self.ledger.commit_failed(self.name, exc)
                    continue
                failed = [tp for tp in result if tp.error is not None]
                if failed:
                    self.ledger.commit_failed(self.name, [(tp.partition, tp.error) for tp in failed])
                else:
                    self.ledger.commit_succeeded(result)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        """Stop polling and close the consumer, which leaves the group (or,
        for a static member, does not). Idempotent; raises what the member
        thread failed with."""
        self.stop_event.set()
        if self.is_alive() or self.ident is not None:
            self.join(timeout=30)
        assert not self.is_alive(), f"{self.name} did not stop"
        if not self.closed:
            self.closed = True
            self.consumer.close()
        if self.error is not None:
            raise self.error


def produce_ids(bootstrap: str, topic: str, ids: range, partitions: int) -> None:
    ck_produce_ok(bootstrap, topic, [dict(key=b"%d" % i, value=b"%d" % i, partition=i % partitions) for i in ids])


def all_consumed(ledger: Ledger, count: int) -> bool:
    """Probe for wait_until: ids 0..count-1 were all consumed (else says which not)."""
    missing = ledger.missing(count)
    assert not missing, f"{len(missing)} of {count} ids not consumed yet, e.g. {missing[:10]}"
    return True


def stop_all(members: list) -> None:
    errors = []
    for m in members:
        try:
            m.stop()
        except BaseException as exc:  # noqa: BLE001 - reported together
            errors.append(f"{m.name}: {exc!r}")
    assert not errors, "members failed: " + "; ".join(errors)


# ---------------------------------------------------------------------------
# Restart in the middle
# ---------------------------------------------------------------------------

PARTITIONS = 4
BEFORE, AFTER = 3000, 1000  # records produced before / after the restart


@pytest.mark.timeout(180)
@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_group_resumes_from_committed_offsets_after_broker_restart(start_broker, strategy):
    broker = start_broker(env=FAST_GROUPS)
    topic, group = f"restart-{strategy}", f"restart-group-{strategy}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_ids(broker.bootstrap, topic, range(BEFORE), PARTITIONS)

    ledger = Ledger(topic)
    config = {"partition.assignment.strategy": strategy}
    # ~2 ms per record and member: phase 1 takes a few seconds to consume,
    # so the restart lands in the middle of it.
    members = [Member(f"m{i}", broker.bootstrap, group, ledger, pace=0.002, **config) for i in (1, 2)]
    try:
        for m in members:
            m.start()
        names = [m.name for m in members]
        wait_until(lambda: ledger.balanced(names, PARTITIONS), timeout=30, what="both members to own partitions")

        wait_until(lambda: len(ledger.consumed) >= BEFORE // 3, timeout=30, what=f"{BEFORE // 3} records consumed")
        consumed_at_restart = len(ledger.consumed)
        committed_at_restart = dict(ledger.committed)
        t_restart = time.monotonic()
        broker.restart()
        print(f"restarted after {consumed_at_restart} records; committed then: {committed_at_restart}")
        assert consumed_at_restart < BEFORE, "the restart must happen while phase 1 is still being consumed"

        # After the restart the members rejoin and commits succeed again.
        ok_before = ledger.commits_ok
        wait_until(lambda: ledger.commits_ok > ok_before, timeout=40, what="a commit to succeed after the restart")
        produce_ids(broker.bootstrap, topic, range(BEFORE, BEFORE + AFTER), PARTITIONS)

        total = BEFORE + AFTER
        wait_until(lambda: all_consumed(ledger, total), timeout=60, interval=0.2, what=f"all {total} ids to be consumed")
        highs = ck_high_watermarks(broker.bootstrap, topic, PARTITIONS)
        assert sum(highs.values()) == total

        def all_committed():
            assert ledger.committed == highs, f"committed {ledger.committed}, ends {highs}"
            return True

        wait_until(all_committed, timeout=30, what="the members to commit the end of every partition")
        wait_until(lambda: ledger.balanced(names, PARTITIONS), timeout=30, what="both members to own partitions again")
    finally:
        stop_all(members)

    # The members went through a rejoin after the restart (the coordinator
    # forgot them: UNKNOWN_MEMBER_ID, then a new join).
    after_restart = [e for e in ledger.events if e[0] > t_restart]
    assert any(what.startswith("assign") for _, _, what, _ in after_restart), (
        f"no assignment after the restart; events: {ledger.events}"
    )
    # Nothing that a successful commit covered was delivered again.
    assert not ledger.bad_redeliveries, (
        f"{len(ledger.bad_redeliveries)} records delivered again although a successful commit had covered them "
        f"(member, partition, offset, committed): {ledger.bad_redeliveries[:10]}"
    )
    # The committed offsets outlived the restart and belong to the group.
    assert ck_committed(broker.bootstrap, group, topic, PARTITIONS) == highs
    print(
        f"{strategy}: {len(ledger.consumed)} offsets consumed, {len(ledger.redelivered)} redelivered, "
        f"{ledger.commits_ok} commits ok, {len(ledger.commit_errors)} failed, e.g. {ledger.commit_errors[:3]}"
    )


# ---------------------------------------------------------------------------
# Session timeout
# ---------------------------------------------------------------------------

# A group member in a child process, so that it can be SIGKILLed: no
# LeaveGroup, no more heartbeats. Prints its partitions after every change.
DOOMED_MEMBER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import confluent_kafka as ck
from helpers import ck_group_consumer
bootstrap, group, topic, session_ms = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
owned = set()
def show():
    print("OWNED " + ",".join(str(p) for p in sorted(owned)), flush=True)
def on_assign(c, parts):
    owned.update(tp.partition for tp in parts); show()
def on_revoke(c, parts):
    owned.difference_update(tp.partition for tp in parts); show()
consumer = ck_group_consumer(bootstrap, group, **{
    "client.id": "doomed", "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": int(session_ms), "heartbeat.interval.ms": 300})
consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    consumer.poll(0.1)
"""


@pytest.mark.timeout(120)
def test_dead_member_is_removed_after_session_timeout(start_broker):
    broker = start_broker(env=FAST_GROUPS)
    topic, group = "session-timeout", "session-timeout-group"
    session_ms = 3000
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_ids(broker.bootstrap, topic, range(40), PARTITIONS)

    ledger = Ledger(topic)
    survivor = Member("survivor", broker.bootstrap, group, ledger, **{"partition.assignment.strategy": "cooperative-sticky"})
    child = subprocess.Popen(
        [sys.executable, "-c", DOOMED_MEMBER, str(HERE), broker.bootstrap, group, topic, str(session_ms)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child_owned: list = [set()]

    def read_child() -> None:
        for line in child.stdout:
            if line.startswith("OWNED"):
                child_owned[0] = {int(p) for p in line.split()[1].split(",")} if len(line.split()) > 1 else set()

    reader = threading.Thread(target=read_child, daemon=True)
    reader.start()
    try:
        survivor.start()
        # Both own two partitions, together all four.
        wait_until(
            lambda: len(child_owned[0]) == 2 and len(ledger.owned("survivor")) == 2
            and not child_owned[0] & ledger.owned("survivor"),
            timeout=30,
            what=f"the two members to split the partitions (child {child_owned[0]}, survivor {ledger.owned('survivor')})",
        )  # fmt: skip
        time.sleep(1.0)  # a few heartbeats in the stable group
        t_kill = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)

        wait_until(lambda: ledger.owned("survivor") == set(range(PARTITIONS)), timeout=session_ms / 1000 + 20,
                   interval=0.05, what="the survivor to take over the dead member's partitions")  # fmt: skip
        took = time.monotonic() - t_kill
        print(f"partitions moved {took:.2f}s after the kill (session timeout {session_ms} ms)")
        # The dead member's last heartbeat was at most heartbeat.interval.ms
        # (300 ms) before the kill, so its session cannot expire sooner than
        # this: a broker that moved the partitions earlier did not wait for
        # the session timeout.
        assert took >= session_ms / 1000 - 0.5, f"partitions moved after {took:.2f}s, before the session timeout"

        # The survivor now reads the dead member's partitions too (from the
        # start: the dead member never committed) and new records anywhere.
        produce_ids(broker.bootstrap, topic, range(40, 80), PARTITIONS)
        wait_until(lambda: all_consumed(ledger, 80), timeout=30, what="the survivor to consume every record")

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        assert len(desc.members) == 1 and desc.members[0].client_id == "survivor", desc.members
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        survivor.stop()
        print("child stderr:\n" + (child.stderr.read() if child.stderr else ""))


# ---------------------------------------------------------------------------
# Static membership
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_static_member_restart_keeps_assignment_without_rebalance(start_broker):
    broker = start_broker(env=FAST_GROUPS)
    topic, group = "static-members", "static-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_ids(broker.bootstrap, topic, range(40), PARTITIONS)

    ledger = Ledger(topic)
    eager = {"partition.assignment.strategy": "range"}  # any rebalance revokes everything: easy to see
    static = {**eager, "group.instance.id": "static-1", "session.timeout.ms": 10000}
    # The dynamic member joins first and stays the group leader.
    dynamic = Member("dynamic", broker.bootstrap, group, ledger, **eager)
    first = Member("static", broker.bootstrap, group, ledger, **static)
    second = None
    try:
        dynamic.start()
        wait_until(lambda: ledger.owned("dynamic") == set(range(PARTITIONS)), timeout=30, what="the first member to own all")
        first.start()
        wait_until(lambda: ledger.balanced(["dynamic", "static"], PARTITIONS), timeout=30, what="two members to split")
        static_partitions = ledger.owned("static")
        time.sleep(1.0)
        events_before = [e for e in ledger.events if e[1] == "dynamic"]

        # The static member goes away without leaving (librdkafka sends no
        # LeaveGroup for a static member) and comes back with the same
        # group.instance.id well within its 10 s session timeout.
        first.stop()
        ledger.event("static", "revoke", [ck.TopicPartition(topic, p) for p in range(PARTITIONS)])
        second = Member("static", broker.bootstrap, group, ledger, **static)
        second.start()
        wait_until(lambda: ledger.owned("static"), timeout=20, what="the restarted static member to get partitions")
        assert ledger.owned("static") == static_partitions, "a static member must get its old partitions back"
        time.sleep(2.0)  # several heartbeat intervals: a rebalance would show by now

        events_after = [e for e in ledger.events if e[1] == "dynamic"]
        assert events_after == events_before, (
            "the other member went through a rebalance although the static member came back in time: "
            f"{events_after[len(events_before):]}"
        )
        assert ledger.balanced(["dynamic", "static"], PARTITIONS)
        produce_ids(broker.bootstrap, topic, range(40, 80), PARTITIONS)
        wait_until(lambda: all_consumed(ledger, 80), timeout=30, what="every record to be consumed")
    finally:
        stop_all([m for m in (dynamic, first, second) if m is not None])
