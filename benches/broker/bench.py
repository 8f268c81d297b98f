#!/usr/bin/env python3
"""Weir vs. Tansu broker benchmark driver (stdlib only, Python 3.11).

Normally started by scripts/bench-broker, which builds/installs everything
into the cache directory first and then runs this file.  It can also be run
directly once the cache is populated:

    python3 benches/broker/bench.py --quick --only tansu

What it does, per repetition (default 3, --quick: 1), with the brokers
interleaved (weir-none, tansu-memory, weir-batch, ...) and a freshly started
broker with empty storage for every single run:

  * throughput: for record size in {100 B, 1 KiB} x acks in {1, all} x
    partitions in {1, 8}: create the topic, produce COUNT records with
    librdkafka's rdkafka_performance (-P), then consume all of them from the
    beginning (-C -o beginning, "catch-up").
  * compression: for record size in {100 B, 1 KiB} x codec in {lz4, zstd}:
    produce with -z CODEC (acks=1, 1 partition), consume it back; compared
    with the uncompressed "SIZE acks=1 p=1" run of the same bench (which is
    added to the selection when a compression scenario is selected).
  * consumer group: produce COUNT records into an 8-partition topic, then
    start 1 (resp. 4) rdkafka_performance -G members in one group at once and
    time them until every record has been consumed exactly once overall.
  * latency: a producer at a fixed rate (-r, default 10,000 msg/s) and a
    consumer, both in latency mode (-l, -A): every record carries its send
    wall-clock time, the consumer logs now - sent per record.

Each figure is the median over the repetitions.  A table is printed and all
raw data is written as JSON.  Exit status: 0 if everything ran (whatever the
figures), 1 if some run broke (broker crash, lost records, tool error), 2 on
bad usage, 130 if interrupted.  A peer (Tansu) failure in a compression or
consumer-group scenario is reported as "n/a" with its reason instead.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1_000_000  # rdkafka_performance's MB/s is bytes/us, i.e. 10^6 B/s.
SIZES = (100, 1024)
ACKS = ("1", "all")
PARTITIONS = (1, 8)
CODECS = ("gzip", "snappy", "lz4", "zstd")  # librdkafka compression.codec values
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Interrupted(Exception):
    pass


class RunError(Exception):
    pass


# --------------------------------------------------------------------------
# Process bookkeeping: every process we start lives in its own session (so
# pid == process group id) and is listed in a pid file that the bash wrapper's
# trap also reads, so nothing outlives the bench even if this driver dies.
# --------------------------------------------------------------------------


class Procs:
    def __init__(self, pidfile: Path | None):
        self.pidfile = pidfile
        self.live: dict[int, subprocess.Popen] = {}

    def _write(self) -> None:
        if not self.pidfile:
            return
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text("".join(f"{pid}\n" for pid in self.live))
        tmp.replace(self.pidfile)

    def spawn(self, cmd: list[str], *, env: dict | None, stdout, stderr=subprocess.STDOUT,
              cwd: str | None = None) -> subprocess.Popen:
        p = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, cwd=cwd,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.live[p.pid] = p
        self._write()
        return p

    def forget(self, p: subprocess.Popen) -> None:
        self.live.pop(p.pid, None)
        self._write()

    def kill(self, p: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        """Signal p's process group, wait up to grace seconds, then SIGKILL it."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self.forget(p)
        return p.returncode

    def kill_all(self) -> None:
        for p in list(self.live.values()):
            self.kill(p, signal.SIGTERM, grace=5.0)
        if self.pidfile:
            try:
                self.pidfile.unlink()
            except FileNotFoundError:
                pass


PROCS: Procs


def run_tool(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> tuple[int | None, str, bool]:
    """Run a command to completion (bounded); returns (rc, output, timed_out)."""
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        p = PROCS.spawn(cmd, env=env, stdout=f)
        timed_out = False
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            # SIGINT makes rdkafka_performance stop and print its summary.
            PROCS.kill(p, signal.SIGINT, grace=10.0)
        PROCS.forget(p)
    return p.returncode, log.read_text(errors="replace"), timed_out


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    | " + ln for ln in lines[-n:])


# --------------------------------------------------------------------------
# Brokers
# --------------------------------------------------------------------------


@dataclass
class BrokerSpec:
    key: str
    label: str
    kind: str  # "weir" | "tansu"
    binary: str
    env: dict = field(default_factory=dict)
    storage: str = ""  # tansu storage engine URL


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_peak_mb(pid: int) -> float | None:
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def dir_bytes(path: Path) -> tuple[int, int]:
    """(apparent size, allocated size as du counts it) of the files under path."""
    total = alloc = 0
    for root, _dirs, files in os.walk(path):
        for fn in files:
            try:
                st = os.lstat(os.path.join(root, fn))
            except OSError:
                continue
            total += st.st_size
            alloc += st.st_blocks * 512
    return total, alloc


class Broker:
    def __init__(self, spec: BrokerSpec, run_dir: Path, rust_log: str | None):
        self.spec = spec
        self.run_dir = run_dir
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log = run_dir / "broker.log"
        self.data_dir = run_dir / "data"
        self.proc: subprocess.Popen | None = None
        self.rust_log = rust_log
        self.cmd: list[str] = []

    def start(self, timeout: float) -> float:
        # Brokers run in their run dir (so no ./weir.toml is picked up) and
        # see no WEIR_* settings but the ones of their config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        if self.rust_log:
            env["RUST_LOG"] = self.rust_log
        env.update(self.spec.env)
        if self.spec.kind == "weir":
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.cmd = [self.spec.binary, "up", "--listen", self.addr, "--advertised", self.addr,
                        "--data-dir", str(self.data_dir)]
        else:
            url = f"tcp://{self.addr}"
            self.cmd = [self.spec.binary, "broker", "--listener-url", url,
                        "--advertised-listener-url", url,
                        "--storage-engine", self.spec.storage]
        t0 = time.monotonic()
        with open(self.log, "ab") as f:
            envs = " ".join(f"{k}={v}" for k, v in self.spec.env.items())
            f.write(f"$ {envs} {' '.join(self.cmd)}\n".encode())
            f.flush()
            self.proc = PROCS.spawn(self.cmd, env=env, stdout=f, cwd=str(self.run_dir))
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RunError(f"{self.spec.label} exited with status {self.proc.returncode} "
                               f"before accepting connections:\n{tail(self.log)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return time.monotonic() - t0
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RunError(f"{self.spec.label} did not accept TCP on {self.addr} "
                               f"within {timeout:.0f}s:\n{tail(self.log)}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, what: str) -> None:
        if not self.alive():
            rc = self.proc.returncode if self.proc else None
            raise RunError(f"{self.spec.label} died (status {rc}) during {what}:\n{tail(self.log)}")

    def cpu(self) -> float | None:
        return proc_cpu_seconds(self.proc.pid) if self.alive() else None

    def rss_peak_mb(self) -> float | None:
        return proc_rss_peak_mb(self.proc.pid) if self.alive() else None

    def stop(self, timeout: float = 20.0) -> dict:
        """SIGTERM, bounded wait, SIGKILL.  Returns how it went."""
        if self.proc is None:
            return {}
        was_alive = self.proc.poll() is None
        t0 = time.monotonic()
        rc = PROCS.kill(self.proc, signal.SIGTERM, grace=timeout)
        took = time.monotonic() - t0
        return {"was_alive": was_alive, "exit_status": rc,
                "stop_seconds": round(took, 3),
                "needed_sigkill": was_alive and rc == -signal.SIGKILL}


# --------------------------------------------------------------------------
# Load generator (rdkafka_performance) wrappers
# --------------------------------------------------------------------------

PROD_RE = re.compile(
    r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered "
    r"\(offset (-?\d+), (\d+) failed\) in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s")
CONS_RE = re.compile(
    r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")
EOF_RE = re.compile(r"% Consumer reached end of (\S+) \[(\d+)\] message queue at offset (-?\d+)")
ASSIGN_RE = re.compile(r"% Group rebalanced \((\w+)\): (\d+) new partition\(s\) assigned")


def payload_pattern(length: int) -> str:
    """Non-zero, non-repeating (within a record) printable payload pattern.

    rdkafka_performance tiles -m PATTERN over the record; with the pattern at
    least as long as the record nothing repeats inside a record, and -S adds
    a per-record sequence number in front so records differ from each other.
    Fixed seed: identical bytes for every broker and run.
    """
    rng = random.Random(0x5745_4952)  # "WEIR"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return "".join(rng.choice(alphabet) for _ in range(length))


class Loadgen:
    def __init__(self, args: argparse.Namespace):
        self.bin = args.rdkafka_performance
        self.timeout = args.timeout
        self.pattern = payload_pattern(max(max(SIZES), args.latency_size, args.group_size) + 64)
        self.args = args

    def common(self, bootstrap: str, topic: str) -> list[str]:
        return [self.bin, "-t", topic, "-b", bootstrap, "-i", "1000"]

    def produce(self, bootstrap: str, topic: str, size: int, count: int, acks: str,
                partitions: int, log: Path, codec: str | None = None,
                partition: int | None = None) -> dict:
        cmd = self.common(bootstrap, topic) + [
            "-P", "-s", str(size), "-c", str(count), "-a", "-1" if acks == "all" else acks,
            "-S", "1", "-m", self.pattern,
            "-X", f"linger.ms={self.args.linger_ms}",
        ]
        if codec:
            cmd += ["-z", codec]  # sets compression.codec
        for kv in self.args.producer_conf:
            cmd += ["-X", kv]
        if partition is not None:
            cmd += ["-p", str(partition)]
        elif partitions == 1:
            cmd += ["-p", "0"]  # else: no -p, librdkafka's partitioner spreads them
        rc, out, timed_out = run_tool(cmd, log, self.timeout)
        m = None
        for m in PROD_RE.finditer(out):
            pass
        if m is None:
            raise RunError(f"producer printed no summary (rc={rc}, timed_out={timed_out}):\n{tail(log)}")
        produced, _b, delivered, _off, failed, ms = (int(m.group(i)) for i in range(1, 7))
        res = {"delivered": delivered, "failed": failed, "elapsed_ms": ms, "rc": rc,
               "timed_out": timed_out}
        if timed_out or rc != 0 or delivered != count:
            raise RunError(f"producer: {delivered}/{count} delivered, {failed} failed, rc={rc}, "
                           f"timed_out={timed_out}:\n{tail(log)}")
        secs = max(ms, 1) / 1000
        res["msgs_per_s"] = delivered / secs
        res["mb_per_s"] = delivered * size / secs / MB
        return res

    def consume(self, bootstrap: str, topic: str, size: int, count: int, partitions: int,
                log: Path) -> dict:
        # librdkafka's own statistics (every 100 ms, into a file) give the client's view of
        # each broker's fetches: how many, how large, how long each took to come back.
        stats = log.with_suffix(".stats.jsonl")
        stats.unlink(missing_ok=True)
        cmd = self.common(bootstrap, topic) + ["-C", "-o", "beginning", "-e", "-c", str(count),
                                               "-T", "100", "-Y", f"cat >> {stats}"]
        for kv in self.args.consumer_conf:
            cmd += ["-X", kv]
        for p in range(partitions):
            cmd += ["-p", str(p)]
        rc, out, timed_out = run_tool(cmd, log, self.timeout)
        m = None
        for m in CONS_RE.finditer(out):
            pass
        if m is None:
            raise RunError(f"consumer printed no summary (rc={rc}, timed_out={timed_out}):\n{tail(log)}")
        got, nbytes, ms = int(m.group(1)), int(m.group(2)), int(m.group(3))
        errs = len(re.findall(r"^% Consume error", out, re.M))
        if timed_out or rc != 0 or got != count or nbytes != count * size:
            raise RunError(f"consumer: {got}/{count} records ({nbytes} bytes), rc={rc}, "
                           f"timed_out={timed_out}, {errs} consume errors:\n{tail(log)}")
        secs = max(ms, 1) / 1000
        res = {"consumed": got, "elapsed_ms": ms, "consume_errors": errs,
               "msgs_per_s": got / secs, "mb_per_s": nbytes / secs / MB}
        res.update(fetch_anatomy(stats))
        return res

    def group_consume(self, broker: "Broker", topic: str, group: str, members: int, size: int,
                      count: int, expected_ends: dict[int, int], run_dir: Path) -> dict:
        """Start `members` balanced consumers (-G) in one group at once, wait until all exit.

        Every member runs with -e: it exits once it has seen end-of-partition
        on every partition assigned to it.  The throughput window runs from
        the first record any member received to the moment the last
        partition was drained:
          * start: rdkafka_performance's own clock starts at a member's first
            record and stops right after the end-of-partition event that ends
            its loop, and its summary gives that span; so first record =
            (arrival time of that last end-of-partition line) - span.
          * end: for each partition the first end-of-partition line, by any
            member, at the partition's final offset; the latest of those.
        Each member's stdout goes through a pipe (line-buffered with stdbuf)
        and every line is time-stamped on arrival, also in its log.

        librdkafka reports end-of-partition only from a fetch response that
        has nothing new for the partition, and a long-polling broker holds
        such a response for fetch.wait.max.ms: hence --group-fetch-wait-ms
        (default 10) rather than the 500 ms default, which would add up to
        half a second to the end of every run.
        """
        a = self.args
        stdbuf = shutil.which("stdbuf")
        if not stdbuf:
            raise RunError("stdbuf (coreutils) is needed to time-stamp the group members' output")
        cmd = [stdbuf, "-oL", self.bin, "-G", group, "-t", topic, "-b", broker.addr, "-e",
               "-i", "1000", "-X", f"fetch.wait.max.ms={a.group_fetch_wait_ms}"]
        for kv in a.group_conf:
            cmd += ["-X", kv]

        def pump(stream, logf, lines: list, t0: float) -> None:
            for raw in iter(stream.readline, b""):
                t = time.monotonic()
                lines.append((t, raw.decode(errors="replace").rstrip("\r\n")))
                logf.write(f"[{t - t0:8.3f}s] ".encode() + raw)
            stream.close()

        ms: list[dict] = []
        # CPU samples (time, broker CPU s, members' CPU s) every ~20 ms, to tell
        # how many cores broker and members kept busy while the records flowed.
        samples: list[tuple[float, float | None, float]] = []
        member_cpu: dict[int, float] = {}

        def sample() -> None:
            for m in ms:
                if m["proc"].returncode is None:  # not reaped yet (a zombie still has its times)
                    v = proc_cpu_seconds(m["proc"].pid)
                    if v is not None:
                        member_cpu[m["n"]] = v
            samples.append((time.monotonic(), broker.cpu(), sum(member_cpu.values())))

        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0 = broker.cpu()
        t_launch = time.monotonic()
        timed_out = stalled = False
        try:
            for i in range(members):
                log = run_dir / f"group-member-{i + 1}.log"
                f = open(log, "ab")
                f.write(("$ " + " ".join(cmd) + "\n").encode())
                f.flush()
                p = PROCS.spawn(cmd, env=None, stdout=subprocess.PIPE)
                m = {"n": i + 1, "proc": p, "log": log, "file": f, "lines": [], "exit_t": None}
                m["thread"] = threading.Thread(target=pump, args=(p.stdout, f, m["lines"], t_launch),
                                               daemon=True)
                m["thread"].start()
                ms.append(m)
            deadline = t_launch + a.group_timeout
            stall_deadline = t_launch + min(a.group_timeout, 30.0)
            progressed = False
            while True:
                sample()
                now = time.monotonic()
                for m in ms:
                    if m["exit_t"] is None and m["proc"].poll() is not None:
                        m["exit_t"] = now
                if all(m["exit_t"] is not None for m in ms) or not broker.alive():
                    break
                if now > deadline:
                    timed_out = True
                    break
                if now > stall_deadline and not progressed:
                    progressed = any(EOF_RE.search(ln) or ((x := CONS_RE.search(ln)) and int(x.group(1)) > 0)
                                     for m in ms for _t, ln in list(m["lines"]))
                    if not progressed:
                        stalled = True  # no member got a record or reached an end in 30 s
                        break
                time.sleep(0.02)
        finally:
            for m in ms:
                # SIGINT: a member still running stops, closes and prints its summary.
                PROCS.kill(m["proc"], signal.SIGINT, grace=10.0)
                m["thread"].join(timeout=10)
                m["file"].close()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c1 = broker.cpu()
        broker.check_alive("the group consume")

        res: dict[str, Any] = {"members": [], "group": group,
                               "fetch_wait_max_ms": a.group_fetch_wait_ms}
        problems: list[str] = []
        bad_exit: list[tuple[int, int | None, str]] = []  # (member, status, its last line)
        ends: dict[int, int] = {}
        drained: dict[int, float] = {}
        starts: list[float] = []
        total = total_bytes = 0
        for m in ms:
            lines = m["lines"]
            summ = None
            for _t, ln in lines:
                if (x := CONS_RE.search(ln)):
                    summ = x
            eofs = [(t, int(x.group(2)), int(x.group(3))) for t, ln in lines if (x := EOF_RE.search(ln))]
            assigns = [(t, int(x.group(2))) for t, ln in lines if (x := ASSIGN_RE.search(ln))]
            errs = sum(1 for _t, ln in lines if ln.startswith("% Consume error"))
            rc = m["proc"].returncode
            got = int(summ.group(1)) if summ else None
            nbytes = int(summ.group(2)) if summ else None
            span_ms = int(summ.group(3)) if summ and got else None  # with no record it has no start
            mres = {"member": m["n"], "consumed": got, "bytes": nbytes, "span_ms": span_ms, "rc": rc,
                    "assignments": [n for _t, n in assigns], "consume_errors": errs,
                    "exited_s": None if m["exit_t"] is None else round(m["exit_t"] - t_launch, 3),
                    "log": str(m["log"])}
            if summ is None and rc == 0:
                problems.append(f"member {m['n']} printed no summary")
            elif summ is not None:
                total += got
                total_bytes += nbytes
                if got > 0 and eofs:
                    st = eofs[-1][0] - span_ms / 1000
                    starts.append(st)
                    mres["first_record_s"] = round(st - t_launch, 3)
            if rc != 0 and not (timed_out or stalled):
                last = next((ln for _t, ln in reversed(lines) if ln.strip() and not ln.startswith("%7|")), "")
                bad_exit.append((m["n"], rc, last.strip()))
            for t, part, off in eofs:
                ends[part] = max(ends.get(part, -1), off)
            res["members"].append(mres)
            m["eofs"] = eofs
        for m in ms:
            for t, part, off in m["eofs"]:
                if off == ends.get(part) and (part not in drained or t < drained[part]):
                    drained[part] = t
        res.update({"consumed": total, "bytes": total_bytes, "partition_ends": ends,
                    "clients_cpu_s": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 2),
                    "all_exited_s": round(max((m["exit_t"] or time.monotonic()) for m in ms) - t_launch, 3)})
        if None not in (c0, c1):
            res["broker_cpu_s"] = round(c1 - c0, 2)
        if bad_exit:
            n0, _rc0, last0 = bad_exit[0]
            problems.insert(0, f"{len(bad_exit)} of {members} members exited with status "
                               f"{'/'.join(sorted({str(rc) for _n, rc, _l in bad_exit}))} "
                               f"(member {n0}: {last0[:160] or 'no output'})")
        last_err = next((ln for m in ms for _t, ln in reversed(m["lines"])
                         if ln.startswith("% Consume error") or "fail" in ln.lower()), "")
        last_err = f" (last error: {last_err.lstrip('% ')[:160]})" if last_err else ""
        if stalled:
            problems.insert(0, "no member received a record or reached a partition end within 30s; "
                               f"the group never got going{last_err}")
        elif timed_out:
            problems.insert(0, f"timed out after {a.group_timeout:g}s{last_err}")
        if not (bad_exit or stalled) and (total != count or total_bytes != count * size):
            what = "duplicates" if total > count else "records missing"
            problems.append(f"members consumed {total:,} records ({total_bytes:,} bytes) in all for "
                            f"{count:,} produced ({what})")
        if ends != expected_ends and not (bad_exit or stalled):
            missing = sorted(set(expected_ends) - set(ends))
            wrong = sorted(p for p in ends if p in expected_ends and ends[p] != expected_ends[p])
            problems.append(f"end-of-partition not seen for partitions {missing}" if missing else
                            f"end offsets differ from the produced counts on partitions {wrong}")
        if not problems and (not starts or not drained):
            problems.append("could not place the first or last record in time (no end-of-partition lines)")
        if problems:
            logs = "\n".join(f"  member {m['n']} ({m['log'].name}):\n{tail(m['log'], 6)}" for m in ms)
            raise RunError("group consume: " + "; ".join(problems) + ":\n" + logs)
        t_first = min(starts)
        t_last = max(drained.values())
        secs = max(t_last - t_first, 1e-3)
        assigned_before_end = sum(1 for m in ms for t, ln in m["lines"] if t <= t_last and ASSIGN_RE.search(ln))

        def cpu_at(t: float, idx: int) -> float | None:
            pts = [(x[0], x[idx]) for x in samples if x[idx] is not None]
            if not pts:
                return None
            if t <= pts[0][0]:
                return pts[0][1]
            for (ta, va), (tb, vb) in zip(pts, pts[1:]):
                if ta <= t <= tb:
                    return va + (vb - va) * (t - ta) / (tb - ta) if tb > ta else vb
            return pts[-1][1]

        for idx, key in ((1, "drain_broker_cores"), (2, "drain_members_cores")):
            a0, a1 = cpu_at(t_first, idx), cpu_at(t_last, idx)
            res[key] = None if None in (a0, a1) else round((a1 - a0) / secs, 2)
        res.update({"elapsed_s": round(secs, 3), "msgs_per_s": count / secs,
                    "mb_per_s": count * size / secs / MB,
                    "first_record_s": round(t_first - t_launch, 3),
                    "last_record_s": round(t_last - t_launch, 3),
                    "assignments_before_end": assigned_before_end,
                    "members_with_records": sum(1 for x in res["members"] if x["consumed"])})
        return res


def percentile(sorted_vals: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def latency_stats(path: Path, skip: int) -> dict:
    try:
        vals = [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        vals = []
    total = len(vals)
    vals = sorted(vals[skip:])
    if not vals:
        return {"samples": 0, "samples_total": total}
    ms = lambda us: round(us / 1000.0, 3)  # noqa: E731
    return {"samples": len(vals), "samples_total": total, "skipped_warmup": min(skip, total),
            "p50_ms": ms(percentile(vals, 50)), "p99_ms": ms(percentile(vals, 99)),
            "p999_ms": ms(percentile(vals, 99.9)), "max_ms": ms(vals[-1]),
            "mean_ms": ms(sum(vals) / len(vals))}


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    kind: str  # "throughput" | "compress" | "group" | "latency"
    size: int
    partitions: int
    acks: str
    count: int
    codec: str = "none"  # compress: librdkafka compression.codec
    members: int = 0  # group: consumers in the group


def human_size(n: int) -> str:
    return "1KiB" if n == 1024 else f"{n}B"


def human_bytes(n: float) -> str:
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}B"


def compress_baseline(size: int) -> str:
    """The uncompressed throughput scenario a compression scenario is compared with."""
    return f"{human_size(size)} acks=1 p=1"


def build_scenarios(args: argparse.Namespace) -> list[Scenario]:
    out = []
    for size in SIZES:
        count = args.count_100b if size == 100 else args.count_1kib
        for acks in ACKS:
            for parts in PARTITIONS:
                out.append(Scenario(f"{human_size(size)} acks={acks} p={parts}", "throughput",
                                    size, parts, acks, count))
    for size in SIZES:
        count = args.count_100b if size == 100 else args.count_1kib
        for codec in args.codecs:
            out.append(Scenario(f"{codec} {human_size(size)} acks=1 p=1", "compress", size, 1, "1",
                                count, codec=codec))
    for members in args.group_members:
        out.append(Scenario(f"group {human_size(args.group_size)} p={args.group_partitions} "
                            f"members={members}", "group", args.group_size, args.group_partitions,
                            "1", args.group_count, members=members))
    lat_count = int(args.latency_rate * args.latency_seconds)
    out.append(Scenario(f"latency {human_size(args.latency_size)} acks={args.latency_acks} "
                        f"p={args.latency_partitions}", "latency", args.latency_size,
                        args.latency_partitions, args.latency_acks, lat_count))
    if args.scenarios:
        rx = re.compile(args.scenarios)
        want = {s.name for s in out if rx.search(s.name)}
        # A compression figure is compared with the uncompressed run of the same bench.
        want |= {compress_baseline(s.size) for s in out if s.kind == "compress" and s.name in want}
        out = [s for s in out if s.name in want]
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, specs: list[BrokerSpec], out_dir: Path):
        self.args = args
        self.specs = specs
        self.out_dir = out_dir
        self.loadgen = Loadgen(args)
        self.runs: list[dict] = []
        self.failures = 0
        self.peer_na: dict[tuple[str, str], str] = {}  # (scenario, broker) -> why n/a

    def create_topic(self, broker: Broker, topic: str, partitions: int, log: Path) -> None:
        cmd = [self.args.venv_python, str(Path(__file__).with_name("topics.py")), "create",
               "--bootstrap", broker.addr, "--topic", topic, "--partitions", str(partitions),
               "--timeout", "30"]
        rc, _out, timed_out = run_tool(cmd, log, 60)
        if rc != 0 or timed_out:
            broker.check_alive("topic creation")
            raise RunError(f"creating topic {topic} ({partitions} partitions) failed:\n{tail(log, 5)}")

    def one_run(self, rep: int, sc: Scenario, spec: BrokerSpec) -> dict:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", sc.name).strip("-")
        run_dir = self.out_dir / f"r{rep}-{slug}-{spec.key}"
        run_dir.mkdir(parents=True, exist_ok=True)
        rec: dict[str, Any] = {"rep": rep, "scenario": sc.name, "kind": sc.kind,
                               "broker": spec.key, "size": sc.size, "partitions": sc.partitions,
                               "acks": sc.acks, "count": sc.count, "ok": False,
                               "logs": str(run_dir)}
        if sc.kind == "compress":
            rec["codec"] = sc.codec
        if sc.kind == "group":
            rec["members"] = sc.members
        broker = Broker(spec, run_dir, self.args.rust_log)
        topic = f"bench-{slug}-{rep}".lower()
        t0 = time.monotonic()
        try:
            rec["startup_s"] = round(broker.start(self.args.start_timeout), 3)
            rec["broker_cmd"] = broker.cmd
            self.create_topic(broker, topic, sc.partitions, run_dir / "topic.log")
            if sc.kind in ("throughput", "compress"):
                self._throughput(broker, sc, topic, run_dir, rec)
            elif sc.kind == "group":
                self._group(broker, sc, topic, run_dir, rec)
            else:
                self._latency(broker, sc, topic, run_dir, rec)
            broker.check_alive("the run")
            rec["broker_rss_peak_mb"] = broker.rss_peak_mb()
            rec["ok"] = True
        except RunError as e:
            rec["error"] = str(e)
            if spec.kind == "tansu" and sc.kind in ("compress", "group"):
                # The peer may not support this: n/a with the reason, not a bench failure.
                rec["na"] = str(e).split("\n", 1)[0].rstrip(":")
        finally:
            rec["stop"] = broker.stop()
            if broker.data_dir.exists():
                rec["data_dir_bytes"], rec["data_dir_du_bytes"] = dir_bytes(broker.data_dir)
                if not self.args.keep_data:
                    shutil.rmtree(broker.data_dir, ignore_errors=True)
            rec["wall_s"] = round(time.monotonic() - t0, 2)
        st = rec["stop"]
        if rec["ok"] and st.get("needed_sigkill"):
            rec["warning"] = f"{spec.label} ignored SIGTERM for {st['stop_seconds']}s (SIGKILLed)"
        return rec

    def _throughput(self, broker: Broker, sc: Scenario, topic: str, run_dir: Path, rec: dict) -> None:
        c0 = broker.cpu()
        prod = self.loadgen.produce(broker.addr, topic, sc.size, sc.count, sc.acks,
                                    sc.partitions, run_dir / "produce.log",
                                    codec=sc.codec if sc.kind == "compress" else None)
        broker.check_alive("produce")
        c1 = broker.cpu()
        cons = self.loadgen.consume(broker.addr, topic, sc.size, sc.count, sc.partitions,
                                    run_dir / "consume.log")
        broker.check_alive("consume")
        c2 = broker.cpu()
        if None not in (c0, c1, c2):
            prod["broker_cpu_s"] = round(c1 - c0, 2)
            cons["broker_cpu_s"] = round(c2 - c1, 2)
        rec["produce"] = prod
        rec["consume"] = cons

    def _group(self, broker: Broker, sc: Scenario, topic: str, run_dir: Path, rec: dict) -> None:
        # An equal share per partition, one producer run per partition: every
        # member gets the same work and each partition's end offset is known.
        ends = {p: sc.count // sc.partitions + (1 if p < sc.count % sc.partitions else 0)
                for p in range(sc.partitions)}
        c0 = broker.cpu()
        t0 = time.monotonic()
        for p, n in ends.items():
            if n:
                self.loadgen.produce(broker.addr, topic, sc.size, n, sc.acks, sc.partitions,
                                     run_dir / "produce.log", partition=p)
        broker.check_alive("produce")
        c1 = broker.cpu()
        rec["produce"] = {"seconds": round(time.monotonic() - t0, 2), "per_partition": ends}
        if None not in (c0, c1):
            rec["produce"]["broker_cpu_s"] = round(c1 - c0, 2)
        group = f"{topic}-group"
        rec["group"] = self.loadgen.group_consume(broker, topic, group, sc.members, sc.size, sc.count,
                                                  ends, run_dir)

    def _latency(self, broker: Broker, sc: Scenario, topic: str, run_dir: Path, rec: dict) -> None:
        a = self.args
        lg = self.loadgen
        cons_lat = run_dir / "latency-consumer.txt"
        prod_lat = run_dir / "latency-producer.txt"
        cons_log = run_dir / "latency-consume.log"
        ccmd = lg.common(broker.addr, topic) + ["-C", "-o", "beginning", "-l", "-A", str(cons_lat),
                                                "-c", str(sc.count)]
        for p in range(sc.partitions):
            ccmd += ["-p", str(p)]
        if shutil.which("stdbuf"):
            ccmd = ["stdbuf", "-oL"] + ccmd  # so its "reached end" line shows up promptly
        pcmd = lg.common(broker.addr, topic) + [
            "-P", "-s", str(sc.size), "-c", str(sc.count),
            "-a", "-1" if sc.acks == "all" else sc.acks,
            "-l", "-A", str(prod_lat), "-r", str(a.latency_rate), "-m", lg.pattern,
            "-X", f"linger.ms={a.latency_linger_ms}"]
        if sc.partitions == 1:
            pcmd += ["-p", "0"]
        with open(cons_log, "ab") as f:
            f.write(("$ " + " ".join(ccmd) + "\n").encode())
            f.flush()
            cons = PROCS.spawn(ccmd, env=None, stdout=f)
        try:
            # Wait until the consumer has fetched up to the (empty) end of
            # every partition, so no record waits for the consumer to start.
            deadline = time.monotonic() + 20
            ready = False
            while time.monotonic() < deadline and cons.poll() is None:
                if cons_log.read_text(errors="replace").count("reached end of") >= sc.partitions:
                    ready = True
                    break
                time.sleep(0.05)
            if cons.poll() is not None:
                raise RunError(f"latency consumer exited early (rc={cons.returncode}):\n{tail(cons_log)}")
            rec["consumer_ready_marker_seen"] = ready
            c0 = broker.cpu()
            prod_to = sc.count / a.latency_rate * 3 + 60
            rc, out, timed_out = run_tool(pcmd, run_dir / "latency-produce.log", prod_to)
            stats = [(int(x.group(1)), int(x.group(3)), int(x.group(6))) for x in PROD_RE.finditer(out)]
            if not stats or rc != 0 or timed_out or stats[-1][1] != sc.count:
                raise RunError(f"latency producer failed (rc={rc}, timed_out={timed_out}):\n"
                               f"{tail(run_dir / 'latency-produce.log')}")
            produced_ms = stats[-1][2]
            # Send rate: rdkafka_performance's -r limiter sleeps a fixed
            # 1/rate after each send (busy-polling below 1 ms), so when its
            # thread loses the CPU it falls behind for good.  Measure what it
            # really sent, from the last once-a-second line before it had
            # sent everything.
            during = [(n, ms) for n, _d, ms in stats if n < sc.count and ms > 0]
            n, ms = during[-1] if during else (sc.count, produced_ms)
            send_rate = n / max(ms, 1) * 1000
            try:
                cons.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            c1 = broker.cpu()
        finally:
            # SIGINT: it stops, prints its summary and closes the -A file.
            consumer_rc = PROCS.kill(cons, signal.SIGINT, grace=10.0)
        broker.check_alive("latency run")
        skip = int(a.latency_warmup_seconds * a.latency_rate)
        e2e = latency_stats(cons_lat, skip)
        ack = latency_stats(prod_lat, skip)
        rec["latency"] = {
            "rate_target": a.latency_rate,
            "rate_achieved": round(send_rate, 1),
            "delivered_rate": round(sc.count / max(produced_ms, 1) * 1000, 1),
            "linger_ms": a.latency_linger_ms,
            "end_to_end": e2e,
            "produce_ack": ack,
            "consumer_rc": consumer_rc,
        }
        if None not in (c0, c1):
            rec["latency"]["broker_cpu_s"] = round(c1 - c0, 2)
        if e2e.get("samples_total", 0) < sc.count:
            raise RunError(f"latency consumer saw {e2e.get('samples_total', 0)}/{sc.count} "
                           f"records:\n{tail(cons_log)}")

    def run(self, scenarios: list[Scenario]) -> None:
        total = self.args.runs * len(scenarios) * len(self.specs)
        i = 0
        for rep in range(1, self.args.runs + 1):
            for sc in scenarios:
                for spec in self.specs:  # interleaved: weir, tansu, weir, ...
                    i += 1
                    head = f"[{i}/{total}] rep {rep} {sc.name:<24} {spec.label:<20}"
                    print(head, end=" ", flush=True)
                    na = self.peer_na.get((sc.name, spec.key))
                    if na:
                        # Failed in an earlier repetition: not worth another (maybe long) timeout.
                        self.runs.append({"rep": rep, "scenario": sc.name, "kind": sc.kind,
                                          "broker": spec.key, "ok": False, "na": na, "skipped": True})
                        print(f"n/a (skipped; an earlier run failed: {na})", flush=True)
                        continue
                    rec = self.one_run(rep, sc, spec)
                    self.runs.append(rec)
                    if not rec["ok"] and rec.get("na"):
                        self.peer_na[(sc.name, spec.key)] = rec["na"]
                        print(f"n/a: {rec['na']} (peer; not counted as a failure)")
                        print("    " + rec["error"].replace("\n", "\n    "), flush=True)
                        continue
                    if not rec["ok"]:
                        self.failures += 1
                        print("FAILED")
                        print("    " + rec["error"].replace("\n", "\n    "), flush=True)
                        continue
                    if sc.kind == "group":
                        g = rec["group"]
                        split = "/".join(f"{x['consumed']:,}" for x in g["members"])
                        print(f"group   {g['msgs_per_s']:>11,.0f} msg/s {g['mb_per_s']:>8.1f} MB/s | "
                              f"first record +{g['first_record_s']:.2f}s, {g['elapsed_s']:.2f}s to drain; "
                              f"records per member {split}", flush=True)
                    elif sc.kind in ("throughput", "compress"):
                        p, c = rec["produce"], rec["consume"]
                        disk = ""
                        if sc.kind == "compress" and rec.get("data_dir_du_bytes"):
                            disk = f" | disk {rec['data_dir_du_bytes'] / MB:.1f} MB"
                        print(f"produce {p['msgs_per_s']:>11,.0f} msg/s {p['mb_per_s']:>8.1f} MB/s | "
                              f"consume {c['msgs_per_s']:>11,.0f} msg/s {c['mb_per_s']:>8.1f} MB/s{disk}",
                              flush=True)
                    else:
                        lat = rec["latency"]["end_to_end"]
                        print(f"e2e p50 {lat.get('p50_ms', float('nan')):.2f} p99 "
                              f"{lat.get('p99_ms', float('nan')):.2f} p99.9 "
                              f"{lat.get('p999_ms', float('nan')):.2f} ms "
                              f"@ {rec['latency']['rate_achieved']:,.0f} msg/s", flush=True)
                    if rec.get("warning"):
                        print("    warning: " + rec["warning"], flush=True)


# --------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------


def fetch_anatomy(stats_path: Path) -> dict:
    """Fetch figures of the data broker, from librdkafka's statistics JSON lines.

    Counters (Fetch requests, responses, bytes received) are cumulative, so the last line
    has the totals; the round-trip time (request written -> response read, as the client saw
    it) is a window per interval, combined here weighted by each window's count.
    Returns {} when the file is missing or unreadable (the figures are a diagnosis, never a
    reason for a run to fail).
    """
    try:
        lines = stats_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    docs = []
    for line in lines:
        try:
            docs.append(json.loads(line))
        except ValueError:
            continue
    if not docs:
        return {}

    def data_brokers(doc: dict) -> list:
        # The bootstrap entry and the one learned from metadata are both listed; the data
        # broker is the one with a node id (not -1) that served Fetch requests.
        return [b for b in doc.get("brokers", {}).values()
                if b.get("nodeid", -1) >= 0 and b.get("req", {}).get("Fetch", 0) > 0]

    last = data_brokers(docs[-1])
    if not last:
        return {}
    fetches = sum(b["req"]["Fetch"] for b in last)
    rx = sum(b.get("rx", 0) for b in last)
    rxbytes = sum(b.get("rxbytes", 0) for b in last)
    rtt_sum = rtt_n = 0.0
    p99s = []
    for doc in docs:
        for b in data_brokers(doc):
            r = b.get("rtt", {})
            n = r.get("cnt", 0)
            if n:
                rtt_sum += r.get("avg", 0) * n
                rtt_n += n
                p99s.append(r.get("p99", 0))
    return {
        "fetch_requests": fetches,
        "bytes_per_response": round(rxbytes / rx) if rx else None,
        "rtt_avg_ms": round(rtt_sum / rtt_n / 1000, 2) if rtt_n else None,
        "rtt_p99_ms": round(max(p99s) / 1000, 2) if p99s else None,
    }


def med(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs: list[dict], specs: list[BrokerSpec], scenarios: list[Scenario]) -> dict:
    keys = [s.key for s in specs]
    produce: dict = {}
    consume: dict = {}
    latency: dict = {}
    for sc in scenarios:
        if sc.kind == "throughput":
            produce[sc.name] = {}
            # Consume catch-up does not depend on the acks the data was
            # produced with: pool the acks=1 and acks=all runs.
            cname = f"{human_size(sc.size)} p={sc.partitions}"
            consume.setdefault(cname, {})
            for k in keys:
                rs = [r for r in runs if r["ok"] and r["scenario"] == sc.name and r["broker"] == k]
                if rs:
                    produce[sc.name][k] = {
                        "msgs_per_s": med([r["produce"]["msgs_per_s"] for r in rs]),
                        "mb_per_s": med([r["produce"]["mb_per_s"] for r in rs]),
                        "broker_cpu_s": med([r["produce"].get("broker_cpu_s") for r in rs]),
                        "samples": [round(r["produce"]["msgs_per_s"]) for r in rs]}
                cs = consume[cname].setdefault(k, {"_samples": []})
                cs["_samples"].extend((r["consume"]["msgs_per_s"], r["consume"]["mb_per_s"],
                                       r["consume"].get("broker_cpu_s"), r["consume"]) for r in rs)
        elif sc.kind == "latency":
            latency[sc.name] = {}
            for k in keys:
                rs = [r for r in runs if r["ok"] and r["scenario"] == sc.name and r["broker"] == k]
                if rs:
                    e = [r["latency"]["end_to_end"] for r in rs]
                    a = [r["latency"]["produce_ack"] for r in rs]
                    latency[sc.name][k] = {
                        "p50_ms": med([x.get("p50_ms") for x in e]),
                        "p99_ms": med([x.get("p99_ms") for x in e]),
                        "p999_ms": med([x.get("p999_ms") for x in e]),
                        "max_ms": med([x.get("max_ms") for x in e]),
                        "ack_p50_ms": med([x.get("p50_ms") for x in a]),
                        "ack_p99_ms": med([x.get("p99_ms") for x in a]),
                        "rate_achieved": med([r["latency"]["rate_achieved"] for r in rs]),
                        "samples": [x.get("p99_ms") for x in e]}
    for cname, per in consume.items():
        for k in list(per):
            smp = per[k].pop("_samples")
            if smp:
                per[k] = {"msgs_per_s": med([s[0] for s in smp]), "mb_per_s": med([s[1] for s in smp]),
                          "broker_cpu_s": med([s[2] for s in smp]),
                          "samples": [round(s[0]) for s in smp]}
                for f in ("fetch_requests", "bytes_per_response", "rtt_avg_ms", "rtt_p99_ms"):
                    per[k][f] = med([s[3].get(f) for s in smp])
                secs = [s[3]["elapsed_ms"] / 1000 for s in smp if s[3].get("elapsed_ms")]
                fr = [s[3].get("fetch_requests") for s in smp]
                per[k]["fetches_per_s"] = med([f / t for f, t in zip(fr, secs) if f and t])
            else:
                del per[k]
    return {"produce": produce, "consume": consume, "latency": latency,
            "compress": summarize_compress(runs, keys, scenarios),
            "group": summarize_group(runs, keys, scenarios)}


def na_reason(runs: list[dict], name: str, key: str) -> str | None:
    for r in runs:
        if r["scenario"] == name and r["broker"] == key and r.get("na"):
            return r["na"]
    return None


def summarize_compress(runs: list[dict], keys: list[str], scenarios: list[Scenario]) -> dict:
    """size -> codec ("none" = the uncompressed baseline run) -> broker -> medians."""
    by_name = {sc.name: sc for sc in scenarios}
    out: dict = {}
    for sc in scenarios:
        if sc.kind != "compress":
            continue
        row = out.setdefault(human_size(sc.size), {})
        for codec, name in (("none", compress_baseline(sc.size)), (sc.codec, sc.name)):
            if codec in row or name not in by_name:
                continue
            row[codec] = {"scenario": name, "payload_bytes": by_name[name].count * by_name[name].size}
            for k in keys:
                rs = [r for r in runs if r["ok"] and r["scenario"] == name and r["broker"] == k]
                if rs:
                    row[codec][k] = {
                        "produce_msgs_per_s": med([r["produce"]["msgs_per_s"] for r in rs]),
                        "produce_mb_per_s": med([r["produce"]["mb_per_s"] for r in rs]),
                        "produce_broker_cpu_s": med([r["produce"].get("broker_cpu_s") for r in rs]),
                        "consume_msgs_per_s": med([r["consume"]["msgs_per_s"] for r in rs]),
                        "consume_mb_per_s": med([r["consume"]["mb_per_s"] for r in rs]),
                        "consume_broker_cpu_s": med([r["consume"].get("broker_cpu_s") for r in rs]),
                        "disk_du_bytes": med([r.get("data_dir_du_bytes") for r in rs]),
                        "disk_bytes": med([r.get("data_dir_bytes") for r in rs]),
                        "samples": [round(r["produce"]["msgs_per_s"]) for r in rs]}
                elif (na := na_reason(runs, name, k)):
                    row[codec][k] = {"na": na}
    return out


def summarize_group(runs: list[dict], keys: list[str], scenarios: list[Scenario]) -> dict:
    out: dict = {}
    for sc in scenarios:
        if sc.kind != "group":
            continue
        out[sc.name] = {"members": sc.members}
        for k in keys:
            gs = [r["group"] for r in runs if r["ok"] and r["scenario"] == sc.name and r["broker"] == k]
            if gs:
                out[sc.name][k] = {
                    "msgs_per_s": med([g["msgs_per_s"] for g in gs]),
                    "mb_per_s": med([g["mb_per_s"] for g in gs]),
                    "elapsed_s": med([g["elapsed_s"] for g in gs]),
                    "first_record_s": med([g["first_record_s"] for g in gs]),
                    "assignments_before_end": med([g["assignments_before_end"] for g in gs]),
                    "members_with_records": min(g["members_with_records"] for g in gs),
                    "broker_cpu_s": med([g.get("broker_cpu_s") for g in gs]),
                    "clients_cpu_s": med([g.get("clients_cpu_s") for g in gs]),
                    "drain_broker_cores": med([g.get("drain_broker_cores") for g in gs]),
                    "drain_members_cores": med([g.get("drain_members_cores") for g in gs]),
                    "records_per_member": [[m["consumed"] for m in g["members"]] for g in gs],
                    "samples": [round(g["msgs_per_s"]) for g in gs]}
            elif (na := na_reason(runs, sc.name, k)):
                out[sc.name][k] = {"na": na}
    return out


def ratio(a: dict | None, b: dict | None, field_: str = "msgs_per_s") -> float | None:
    if not a or not b or not b.get(field_):
        return None
    return a[field_] / b[field_]


def goal(value: float | None, ok: bool) -> str:
    return "-" if value is None else ("ok" if ok else "MISS")


def fmt_rate(d: dict | None) -> str:
    if not d:
        return f"{'-':>11} {'-':>7}"
    return f"{d['msgs_per_s']:>11,.0f} {d['mb_per_s']:>7.1f}"


def fmt_ratio(r: float | None) -> str:
    return f"{'-':>6}" if r is None else f"{r:>5.2f}x"


def report(summary: dict, specs: list[BrokerSpec], args: argparse.Namespace) -> tuple[str, dict]:
    have = {s.key for s in specs}
    labels = {s.key: s.label for s in specs}
    cols = [k for k in ("weir-none", "weir-batch", "tansu-memory") if k in have]
    cols += [s.key for s in specs if s.key not in cols]
    lines: list[str] = []
    goals: dict[str, Any] = {"produce_vs_peer": {}, "consume_vs_peer": {}, "fsync_batch_vs_none_1kib": {},
                             "latency_p99": {}}
    w = 19

    def header(title: str, goal_x: float) -> None:
        lines.append("")
        lines.append(title)
        lines.append(f"{'':<22}" + "".join(f" {labels[k]:>{w}}" for k in cols)
                     + f"   Weir/Tansu (goal >= {goal_x:g}x)")
        lines.append(f"{'scenario':<22}" + "".join(f" {'msg/s':>11} {'MB/s':>7}" for _ in cols)
                     + "   none    batch   goal")

    def rows(kind: str, table: dict, goal_x: float) -> None:
        for name, per in table.items():
            peer = per.get("tansu-memory")
            r_none = ratio(per.get("weir-none"), peer)
            r_batch = ratio(per.get("weir-batch"), peer)
            g_ok = r_none is not None and r_none >= goal_x
            goals[f"{kind}_vs_peer"][name] = {"weir_none_over_tansu": r_none,
                                              "weir_batch_over_tansu": r_batch,
                                              "met": None if r_none is None else g_ok}
            lines.append(f"{name:<22}" + "".join(f" {fmt_rate(per.get(k))}" for k in cols)
                         + f"   {fmt_ratio(r_none)}  {fmt_ratio(r_batch)}  {goal(r_none, g_ok)}")

    n = args.runs
    lines.append(f"Broker benchmark: median of {n} run{'s' if n != 1 else ''} per figure; "
                 f"MB = 10^6 bytes; records {args.count_100b:,} x 100 B, {args.count_1kib:,} x 1 KiB; "
                 f"producer linger.ms={args.linger_ms}")
    if summary["produce"]:
        header("PRODUCE (rdkafka_performance -P; time from first send to last delivery report)", 1.0)
        rows("produce", summary["produce"], 1.0)
    if summary["consume"]:
        header("CONSUME catch-up (everything just produced, from offset 0; acks=1 and acks=all runs pooled)",
               1.5)
        rows("consume", summary["consume"], 1.5)
        # What the consumer's fetches looked like, from librdkafka's statistics: a broker can
        # neither hide nor fake these (a peer that stalls shows a long round trip).
        lines.append("")
        lines.append("CONSUME fetch anatomy (librdkafka statistics of the consumer): Fetch requests "
                     "per second, bytes per response, round trip avg/p99 ms")
        lines.append(f"{'scenario':<22}" + "".join(f" {labels[k]:>{w + 8}}" for k in cols))
        for name, per in summary["consume"].items():
            def anat(k: str) -> str:
                d = per.get(k) or {}
                if d.get("fetch_requests") is None:
                    return "-"
                fps = d.get("fetches_per_s")
                bpr = d.get("bytes_per_response")
                avg, p99 = d.get("rtt_avg_ms"), d.get("rtt_p99_ms")
                return (f"{'-' if fps is None else f'{fps:,.0f}'}/s "
                        f"{'-' if bpr is None else human_bytes(bpr)} "
                        f"{'-' if avg is None else f'{avg:.1f}'}/{'-' if p99 is None else f'{p99:.1f}'}")
            lines.append(f"{name:<22}" + "".join(f" {anat(k):>{w + 8}}" for k in cols))

    # Broker CPU: on 2 cores the client (librdkafka) is often the limit, so
    # what each broker spent is shown too.
    if summary["produce"]:
        lines.append("")
        lines.append("BROKER CPU seconds (user+sys of the broker process) per run: produce / consume")
        lines.append(f"{'scenario':<22}" + "".join(f" {labels[k]:>{w}}" for k in cols))
        for name, per in summary["produce"].items():
            sc_size, sc_parts = name.split()[0], name.split()[-1]
            cper = summary["consume"].get(f"{sc_size} {sc_parts}", {})

            def cpu(k: str) -> str:
                pv = (per.get(k) or {}).get("broker_cpu_s")
                cv = (cper.get(k) or {}).get("broker_cpu_s")
                return ("-" if pv is None else f"{pv:.2f}") + " / " + ("-" if cv is None else f"{cv:.2f}")
            lines.append(f"{name:<22}" + "".join(f" {cpu(k):>{w}}" for k in cols))
        for row in summary["compress"].values():
            for codec, cper_ in row.items():
                if codec == "none":
                    continue  # the uncompressed run is a row above

                def ccpu(k: str) -> str:
                    d = cper_.get(k) or {}
                    pv, cv = d.get("produce_broker_cpu_s"), d.get("consume_broker_cpu_s")
                    if d.get("na") or (pv is None and cv is None):
                        return "-"
                    return ("-" if pv is None else f"{pv:.2f}") + " / " + ("-" if cv is None else f"{cv:.2f}")
                lines.append(f"{cper_['scenario']:<22}" + "".join(f" {ccpu(k):>{w}}" for k in cols))

    # fsync per batch vs no fsync at 1 KiB.
    fs_rows = [(name, per) for name, per in summary["produce"].items() if name.startswith("1KiB")]
    if fs_rows and {"weir-none", "weir-batch"} <= have:
        lines.append("")
        lines.append("FSYNC COST: Weir fsync-per-batch / Weir no-fsync, produce at 1 KiB (goal >= 50%)")
        for name, per in fs_rows:
            r = ratio(per.get("weir-batch"), per.get("weir-none"))
            ok = r is not None and r >= 0.5
            goals["fsync_batch_vs_none_1kib"][name] = {"ratio": r, "met": None if r is None else ok}
            rs = "-" if r is None else f"{r * 100:5.1f}%"
            lines.append(f"{name:<22} {rs:>8}   {goal(r, ok)}")

    if summary["compress"]:
        report_compress(lines, summary["compress"], cols, labels, w)
    if summary["group"]:
        report_group(lines, summary["group"], cols, labels, w, args)

    if summary["latency"]:
        lines.append("")
        lines.append(f"LATENCY at a fixed {args.latency_rate:,} msg/s (produce -> consume, wall clock, "
                     f"{args.latency_seconds:g}s per run, first {args.latency_warmup_seconds:g}s dropped; "
                     f"producer linger.ms={args.latency_linger_ms}); goal p99 <= {args.latency_goal_ms:g} ms")
        for name, per in summary["latency"].items():
            lines.append(f"{name}")
            lines.append(f"  {'broker':<20} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}"
                         f" {'ack p50':>8} {'ack p99':>8} {'sent/s':>8}   goal")
            slow = False
            for k in cols:
                d = per.get(k)
                if not d:
                    lines.append(f"  {labels[k]:<20} {'-':>8} {'-':>8} {'-':>9} {'-':>8} {'-':>8} {'-':>8} {'-':>8}   -")
                    continue
                p99 = d["p99_ms"]
                ok = p99 is not None and p99 <= args.latency_goal_ms
                rate_ok = d["rate_achieved"] >= 0.95 * args.latency_rate
                slow = slow or not rate_ok
                if k.startswith("weir"):
                    goals["latency_p99"][f"{name} {k}"] = {"p99_ms": p99, "met": ok,
                                                           "rate_achieved": d["rate_achieved"],
                                                           "rate_reached_target": rate_ok}
                f = lambda v: "nan" if v is None else f"{v:.2f}"  # noqa: E731
                mark = (goal(p99, ok) if k.startswith("weir") else "(peer)") + ("" if rate_ok else " *")
                lines.append(f"  {labels[k]:<20} {f(d['p50_ms']):>8} {f(p99):>8} {f(d['p999_ms']):>9} "
                             f"{f(d['max_ms']):>8} {f(d['ack_p50_ms']):>8} {f(d['ack_p99_ms']):>8} "
                             f"{d['rate_achieved']:>8,.0f}   {mark}")
            if slow:
                lines.append(f"  * sent below 95% of {args.latency_rate:,} msg/s: rdkafka_performance's rate "
                             "limiter falls behind when the broker leaves it too little CPU (2 cores), so "
                             "that row is at a lower load than asked")
    return "\n".join(lines), goals


def fmt_na_cell(d: dict | None, value: str, extra: str) -> str:
    """One 19-character broker cell: VALUE (11) and EXTRA (7), or n/a / -."""
    if d and d.get("na"):
        return f" {'n/a':>11} {'':>7}"
    if not d:
        return f" {'-':>11} {'-':>7}"
    return f" {value:>11} {extra:>7}"


def report_compress(lines: list[str], comp: dict, cols: list[str], labels: dict, w: int) -> None:
    disk_key = next((k for k in ("weir-none", "weir-batch") if k in cols), None)
    for phase, title in (
            ("produce", "COMPRESSION produce (rdkafka_performance -P -z CODEC, acks=1, 1 partition; "
                        "MB/s counts uncompressed payload)"),
            ("consume", "COMPRESSION consume catch-up (the same records read back by the simple consumer)")):
        f_ = f"{phase}_msgs_per_s"
        lines.append("")
        lines.append(title)
        lines.append("  'x none' = this codec's msg/s over the uncompressed run of the same size in this bench"
                     + ("; Weir disk = du of Weir's data dir after the run, payload/disk = how much "
                        "smaller than the raw payload it stored" if phase == "produce" and disk_key else ""))
        lines.append(f"{'':<22}" + "".join(f" {labels[k]:>{w}}" for k in cols) + "   Weir/Tansu"
                     + (f"      {labels[disk_key]} disk" if phase == "produce" and disk_key else ""))
        lines.append(f"{'scenario':<22}" + "".join(f" {'msg/s':>11} {'x none':>7}" for _ in cols)
                     + "   none    batch" + ("       MB  payload/disk" if phase == "produce" and disk_key else ""))
        for _size, row in comp.items():
            base = row.get("none", {})
            for codec, per in row.items():
                cells = ""
                for k in cols:
                    d = per.get(k)
                    if d and not d.get("na"):
                        b = base.get(k) or {}
                        r = d[f_] / b[f_] if b.get(f_) else None
                        cells += fmt_na_cell(d, f"{d[f_]:,.0f}", "-" if r is None else f"{r:.2f}x")
                    else:
                        cells += fmt_na_cell(d, "", "")
                peer = per.get("tansu-memory")
                peer = None if not peer or peer.get("na") else peer
                r_none = ratio(per.get("weir-none"), peer, f_)
                r_batch = ratio(per.get("weir-batch"), peer, f_)
                extra = ""
                if phase == "produce" and disk_key:
                    dd = per.get(disk_key) or {}
                    du = dd.get("disk_du_bytes")
                    extra = (f"  {'-':>8} {'-':>12}" if not du else
                             f"  {du / MB:>8.1f} {per['payload_bytes'] / du:>11.1f}x")
                lines.append(f"{per['scenario']:<22}{cells}   {fmt_ratio(r_none)}  {fmt_ratio(r_batch)}{extra}")
        nas = [(per["scenario"], labels[k], per[k]["na"]) for row in comp.values() for per in row.values()
               for k in cols if (per.get(k) or {}).get("na")]
        for name, label, why in nas:
            lines.append(f"  n/a: {label}, {name}: {why}")
    if disk_key:
        lines.append("  Every record repeats the same -m pattern (only the -S sequence number in front differs), so "
                     "these payloads compress far better than real data: read the codec columns as the broker's "
                     "handling of compressed batches, not as typical compression ratios.")


def report_group(lines: list[str], grp: dict, cols: list[str], labels: dict, w: int,
                 args: argparse.Namespace) -> None:
    lines.append("")
    lines.append(f"CONSUMER GROUP: {args.group_count:,} x {args.group_size} B produced first into "
                 f"{args.group_partitions} partitions (an equal share each), then N rdkafka_performance -G "
                 "members started together in one group read it all once (-e)")
    lines.append("  msg/s = all records / (first record at any member -> last partition drained); "
                 f"fetch.wait.max.ms={args.group_fetch_wait_ms}; members and broker share "
                 f"{os.cpu_count()} cores")
    lines.append(f"{'':<26}" + "".join(f" {labels[k]:>{w}}" for k in cols) + "   Weir/Tansu")
    lines.append(f"{'scenario':<26}" + "".join(f" {'msg/s':>11} {'MB/s':>7}" for _ in cols) + "   none    batch")
    for name, per in grp.items():
        cells = "".join(fmt_na_cell(per.get(k), f"{per[k]['msgs_per_s']:,.0f}" if per.get(k) and
                                    not per[k].get("na") else "",
                                    f"{per[k]['mb_per_s']:.1f}" if per.get(k) and not per[k].get("na") else "")
                        for k in cols)
        peer = per.get("tansu-memory")
        peer = None if not peer or peer.get("na") else peer
        lines.append(f"{name:<26}{cells}   {fmt_ratio(ratio(per.get('weir-none'), peer))}  "
                     f"{fmt_ratio(ratio(per.get('weir-batch'), peer))}")
    by_members = {per["members"]: per for per in grp.values()}
    if len(by_members) > 1:
        lo, hi = min(by_members), max(by_members)
        parts = []
        for k in cols:
            a, b = by_members[hi].get(k), by_members[lo].get(k)
            ok = a and b and not a.get("na") and not b.get("na")
            parts.append(f"{labels[k]} {fmt_ratio(ratio(a, b)).strip() if ok else '-'}")
        lines.append(f"  members={hi} / members={lo}: " + ", ".join(parts))
    lines.append("  details (medians): drain s = first record -> last partition drained; 1st rec s = from "
                 "starting the members to the first record (join, SyncGroup, OffsetFetch); assigns = "
                 "partition assignments handed out before the last record (one per member when no rebalance "
                 "interrupted the work); busy = members that got records (fewest of the runs); cores = CPU "
                 "cores kept busy while draining by the broker + all members (of "
                 f"{os.cpu_count()})")
    lines.append(f"  {'scenario':<26} {'broker':<20} {'drain s':>7} {'1st rec s':>9} {'assigns':>7} {'busy':>5} "
                 f"{'cores':>11}  records per member, each run")
    f2 = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    kfmt = lambda n: "-" if n is None else (f"{n / 1000:.0f}k" if n >= 1000 else str(n))  # noqa: E731
    for name, per in grp.items():
        for k in cols:
            d = per.get(k)
            if not d:
                continue
            if d.get("na"):
                lines.append(f"  {name:<26} {labels[k]:<20} n/a: {d['na']}")
                continue
            split = " | ".join("/".join(kfmt(n) for n in run) for run in d["records_per_member"])
            cores = f"{f2(d['drain_broker_cores'])} + {f2(d['drain_members_cores'])}"
            lines.append(f"  {name:<26} {labels[k]:<20} {f2(d['elapsed_s']):>7} {f2(d['first_record_s']):>9} "
                         f"{d['assignments_before_end']:>7g} {d['members_with_records']:>2}/{per['members']:<2} "
                         f"{cores:>11}  {split}")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def tool_version(cmd: list[str], timeout: float = 15) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        out = (p.stdout + p.stderr).strip()
        return out.splitlines()[0] if out and p.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def librdkafka_version(rdkp: str) -> str | None:
    try:
        p = subprocess.run([rdkp], capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
        m = re.search(r"librdkafka version (\S+)", p.stdout + p.stderr)
        return m.group(1) if m else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_info(repo: Path) -> dict:
    def g(*a: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, timeout=15)
            return p.stdout.strip() if p.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None
    st = g("status", "--porcelain")
    return {"commit": g("rev-parse", "HEAD"), "dirty": bool(st) if st is not None else None}


def parse_args(argv: list[str]) -> argparse.Namespace:
    cache = Path(os.environ.get("WEIR_BENCH_CACHE", "/var/cache/weir-bench"))
    target = os.environ.get("CARGO_TARGET_DIR", "/var/cache/weir/target")
    ap = argparse.ArgumentParser(
        prog="bench-broker",
        description="Benchmark Weir against Tansu (produce, consume catch-up, compression, "
                    "consumer groups, latency).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run per figure instead of --runs")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median is reported)")
    ap.add_argument("--only", choices=("weir", "tansu"), help="benchmark only this broker")
    ap.add_argument("--brokers", help="comma list of broker configs "
                    "(weir-none, weir-batch, tansu-memory); overrides --only")
    ap.add_argument("--scenarios", metavar="REGEX",
                    help="only scenarios whose name matches, e.g. '^100B', 'lz4|zstd', '^group' or "
                    "'latency' (names: '100B acks=1 p=8', 'lz4 1KiB acks=1 p=1', "
                    "'group 100B p=8 members=4', 'latency 100B acks=all p=1', ...); a compression "
                    "scenario brings its uncompressed 'SIZE acks=1 p=1' run along")
    ap.add_argument("--count-100b", type=int, default=2_000_000, help="records per 100 B run")
    ap.add_argument("--count-1kib", type=int, default=500_000, help="records per 1 KiB run")
    ap.add_argument("--linger-ms", type=int, default=5, help="producer linger.ms for throughput runs")
    ap.add_argument("--producer-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra librdkafka setting for the throughput producer (repeatable)")
    ap.add_argument("--consumer-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra librdkafka setting for the catch-up consumer (repeatable)")
    ap.add_argument("--codecs", default="lz4,zstd",
                    help=f"comma list of producer compression codecs to compare ({', '.join(CODECS)}); "
                    "'' for none")
    ap.add_argument("--group-count", type=int, default=2_000_000, help="records per consumer-group run")
    ap.add_argument("--group-size", type=int, default=100, help="record size in the consumer-group runs")
    ap.add_argument("--group-partitions", type=int, default=8, help="partitions of the consumer-group topic")
    ap.add_argument("--group-members", default="1,4",
                    help="comma list: one consumer-group scenario per member count")
    ap.add_argument("--group-timeout", type=float, default=120,
                    help="limit for the group members to consume everything (s); a run in which no "
                    "member gets a record within 30 s is stopped then")
    ap.add_argument("--group-fetch-wait-ms", type=int, default=10,
                    help="fetch.wait.max.ms of the group members (end-of-partition needs an empty fetch)")
    ap.add_argument("--group-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra librdkafka setting for the group members (repeatable)")
    ap.add_argument("--latency-rate", type=int, default=10_000, help="msg/s in the latency runs")
    ap.add_argument("--latency-seconds", type=float, default=10, help="length of a latency run")
    ap.add_argument("--latency-warmup-seconds", type=float, default=1,
                    help="samples from the first this many seconds are dropped")
    ap.add_argument("--latency-size", type=int, default=100, help="record size in the latency runs")
    ap.add_argument("--latency-acks", default="all", choices=("1", "all"))
    ap.add_argument("--latency-partitions", type=int, default=1)
    ap.add_argument("--latency-linger-ms", type=int, default=0, help="producer linger.ms for latency runs")
    ap.add_argument("--latency-goal-ms", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=300, help="limit for each producer/consumer process (s)")
    ap.add_argument("--start-timeout", type=float, default=30, help="limit for a broker to accept TCP (s)")
    ap.add_argument("--rust-log", default=os.environ.get("BENCH_BROKER_RUST_LOG", "warn"),
                    help="RUST_LOG given to both brokers ('' to leave it alone)")
    ap.add_argument("--keep-data", action="store_true", help="keep broker data dirs after each run")
    ap.add_argument("--json", help="where to write the JSON results (default: under the cache dir)")
    ap.add_argument("--cache", default=str(cache), help="cache dir ($WEIR_BENCH_CACHE)")
    ap.add_argument("--weir-bin", default=os.environ.get("WEIR_BIN", f"{target}/release/weir"))
    ap.add_argument("--tansu-bin", default=None, help="default: CACHE/tansu/bin/tansu")
    ap.add_argument("--rdkafka-performance", default=None,
                    help="default: CACHE/rdkafka_performance/rdkafka_performance")
    ap.add_argument("--venv-python", default=None, help="default: CACHE/venv/bin/python")
    ap.add_argument("--pidfile", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    c = Path(args.cache)
    args.tansu_bin = args.tansu_bin or str(c / "tansu/bin/tansu")
    args.rdkafka_performance = args.rdkafka_performance or str(c / "rdkafka_performance/rdkafka_performance")
    args.venv_python = args.venv_python or str(c / "venv/bin/python")
    if args.quick:
        args.runs = 1
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    args.codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    bad = [c for c in args.codecs if c not in CODECS]
    if bad:
        ap.error(f"--codecs: unknown {bad}; known: {', '.join(CODECS)}")
    try:
        args.group_members = sorted({int(x) for x in args.group_members.split(",") if x.strip()})
    except ValueError:
        ap.error("--group-members: a comma list of numbers")
    if args.group_partitions < 1 or args.group_count < 1 or args.group_size < 1:
        ap.error("--group-partitions, --group-count and --group-size must be >= 1")
    if any(m < 1 or m > args.group_partitions for m in args.group_members):
        # A member with no partition never sees an end of partition and never exits (-e).
        ap.error("--group-members: each count must be between 1 and --group-partitions")
    return args


def broker_specs(args: argparse.Namespace) -> list[BrokerSpec]:
    all_specs = [
        BrokerSpec("weir-none", "Weir (no fsync)", "weir", args.weir_bin, {"WEIR_LOG__FLUSH": "none"}),
        BrokerSpec("tansu-memory", "Tansu (memory)", "tansu", args.tansu_bin, {},
                   storage="memory://tansu/"),
        BrokerSpec("weir-batch", "Weir (fsync/batch)", "weir", args.weir_bin, {"WEIR_LOG__FLUSH": "batch"}),
    ]
    if args.brokers:
        want = [b.strip() for b in args.brokers.split(",") if b.strip()]
        known = {s.key for s in all_specs}
        bad = [b for b in want if b not in known]
        if bad:
            raise SystemExit(f"bench-broker: unknown broker config(s) {bad}; known: {sorted(known)}")
        return [s for s in all_specs if s.key in want]
    if args.only:
        return [s for s in all_specs if s.kind == args.only]
    return all_specs


def fs_type(path: Path) -> str | None:
    """Filesystem type of the mount holding path (from /proc/mounts)."""
    best, typ = "", None
    try:
        real = str(path.resolve())
        for ln in Path("/proc/mounts").read_text().splitlines():
            parts = ln.split()
            if len(parts) >= 3:
                mnt = parts[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, typ = mnt, parts[2]
    except OSError:
        return None
    return typ


def main(argv: list[str]) -> int:
    global PROCS
    args = parse_args(argv)
    specs = broker_specs(args)
    cache = Path(args.cache)
    repo = Path(__file__).resolve().parents[2]

    missing = []
    for path, what in [(args.rdkafka_performance, "rdkafka_performance"), (args.venv_python, "venv python")]:
        if not os.access(path, os.X_OK):
            missing.append(f"{what}: {path}")
    for kind, binpath in (("weir", args.weir_bin), ("tansu", args.tansu_bin)):
        if any(s.kind == kind for s in specs) and not os.access(binpath, os.X_OK):
            missing.append(f"{kind} binary: {binpath}")
    if missing:
        print("bench-broker: missing (run scripts/bench-broker, which builds them):\n  "
              + "\n  ".join(missing), file=sys.stderr)
        return 2

    scenarios = build_scenarios(args)
    if not scenarios or not specs:
        print("bench-broker: nothing to run (check --scenarios / --brokers)", file=sys.stderr)
        return 2

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = cache / "runs" / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_root = cache / "runs"
    old = sorted(p for p in runs_root.iterdir() if p.is_dir() and p != out_dir)
    for p in old[:-9]:  # keep the logs of the last 10 invocations
        shutil.rmtree(p, ignore_errors=True)
    json_path = Path(args.json) if args.json else cache / "results" / f"broker-bench-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)

    PROCS = Procs(Path(args.pidfile) if args.pidfile else out_dir / "pids")

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    meta = {
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                 "loadavg_at_start": os.getloadavg()},
        "repo": git_info(repo),
        "librdkafka": librdkafka_version(args.rdkafka_performance),
        "brokers": {},
        "logs": str(out_dir),
        "data_dir_fs": fs_type(out_dir),
    }
    for s in specs:
        info = {"label": s.label, "binary": s.binary, "env": s.env}
        if s.kind == "tansu":
            info["version"] = tool_version([s.binary, "--version"])
            info["storage"] = s.storage
        else:
            try:
                st = os.stat(s.binary)
                info["binary_mtime"] = _dt.datetime.fromtimestamp(st.st_mtime).astimezone().isoformat(
                    timespec="seconds")
            except OSError:
                pass
            info["version"] = tool_version([s.binary, "--version"])
        meta["brokers"][s.key] = info

    print(f"bench-broker: {len(scenarios)} scenarios x {len(specs)} broker configs x {args.runs} runs; "
          f"librdkafka {meta['librdkafka']}; logs in {out_dir}", flush=True)
    for s in specs:
        print(f"  {s.label:<20} {s.binary} ({meta['brokers'][s.key].get('version') or 'version ?'})")
    if meta["data_dir_fs"] in ("tmpfs", "ramfs") and any(s.kind == "weir" for s in specs):
        print(f"  warning: {out_dir} is on {meta['data_dir_fs']}: Weir's fsync costs nothing there",
              flush=True)

    bench = Bench(args, specs, out_dir)
    interrupted = None
    try:
        bench.run(scenarios)
    except Interrupted as e:
        interrupted = str(e)
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        PROCS.kill_all()

    summary = summarize(bench.runs, specs, scenarios)
    text, goals = report(summary, specs, args)
    print(text)
    result = {"meta": meta, "config": {k: v for k, v in vars(args).items() if k != "pidfile"},
              "scenarios": [vars(s) for s in scenarios], "summary": summary, "goals": goals,
              "runs": bench.runs, "failures": bench.failures, "interrupted": interrupted}
    meta["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    meta["host"]["loadavg_at_end"] = os.getloadavg()
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON results: {json_path}")
    if interrupted:
        print(f"bench-broker: interrupted ({interrupted})", file=sys.stderr)
        return 130
    if bench.failures:
        print(f"bench-broker: {bench.failures} run(s) FAILED (see errors above and logs in {out_dir})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
