"""Topic helper for the broker benchmark (runs under the bench venv's Python).

bench.py itself is stdlib-only; it shells out to this script, run by the
venv interpreter that has confluent-kafka installed, to create a topic with
an explicit partition count and wait until the broker's metadata shows every
partition with a leader.

Usage:
    python topics.py create --bootstrap 127.0.0.1:9092 --topic t --partitions 8
    python topics.py version

Exit status 0 on success; 1 with a one-line reason on stderr otherwise.
"""

import argparse
import sys
import time


def _create(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    deadline = time.monotonic() + args.timeout
    admin = AdminClient(
        {
            "bootstrap.servers": args.bootstrap,
            "socket.timeout.ms": 10000,
            "log_level": 3,
        }
    )

    # CreateTopics, retried while the broker is still coming up.
    last_err = None
    while time.monotonic() < deadline:
        remaining = max(1.0, deadline - time.monotonic())
        futs = admin.create_topics(
            [NewTopic(args.topic, args.partitions, 1)],
            request_timeout=min(15.0, remaining),
            operation_timeout=min(15.0, remaining),
        )
        try:
            futs[args.topic].result(timeout=min(20.0, remaining))
            last_err = None
            break
        except KafkaException as e:
            err = e.args[0] if e.args else e
            code = getattr(err, "name", lambda: "")()
            if code == "TOPIC_ALREADY_EXISTS":
                last_err = None
                break
            last_err = f"CreateTopics failed: {err}"
            if getattr(err, "retriable", lambda: False)():
                time.sleep(0.2)
                continue
            break
        except Exception as e:  # timeouts from the future, etc.
            last_err = f"CreateTopics failed: {e!r}"
            time.sleep(0.2)
    if last_err:
        print(last_err, file=sys.stderr)
        return 1

    # Wait for metadata to show the wanted partitions, each with a leader.
    seen = "no metadata"
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(topic=args.topic, timeout=5)
            t = md.topics.get(args.topic)
            if t is not None and t.error is None:
                parts = t.partitions
                ok = len(parts) == args.partitions and all(
                    p.error is None and p.leader >= 0 for p in parts.values()
                )
                if ok:
                    return 0
                seen = (
                    f"{len(parts)} partitions, leaders "
                    f"{sorted((p.id, p.leader) for p in parts.values())}"
                )
            elif t is not None:
                seen = f"topic error {t.error}"
        except KafkaException as e:
            seen = f"metadata error {e}"
        time.sleep(0.2)
    print(
        f"topic {args.topic}: wanted {args.partitions} partitions with leaders, "
        f"saw {seen} within {args.timeout}s",
        file=sys.stderr,
    )
    return 1


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, required=True)
    c.add_argument("--timeout", type=float, default=30.0)
    sub.add_parser("version")
    args = ap.parse_args()
    if args.cmd == "version":
        import importlib.metadata

        import confluent_kafka

        print(f"confluent-kafka {importlib.metadata.version('confluent-kafka')} "
              f"librdkafka {confluent_kafka.libversion()[0]}")
        return 0
    return _create(args)


if __name__ == "__main__":
    sys.exit(main())
