"""Test harness for the Weir end-to-end suite.

Provides `WeirBroker`, which runs the real `weir up` binary as a child
process on free loopback ports (Kafka listener and the Connect REST API)
with its own data directory, and the fixtures built on it:

  * `weir_bin`     - path of the binary under test ($WEIR_BIN, default
                     ${CARGO_TARGET_DIR:-/var/cache/weir/target}/release/weir)
  * `start_broker` - factory: start_broker(env={...}) -> WeirBroker
  * `broker`       - one broker with default settings

At teardown every broker still running gets SIGTERM and must exit with
code 0 within a bounded time; otherwise the test errors. When a test
fails (or teardown does), each broker's stderr log is printed so it shows
up in pytest's report.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

from helpers import free_port

DEFAULT_TARGET_DIR = "/var/cache/weir/target"


def default_weir_bin() -> str:
    target = os.environ.get("CARGO_TARGET_DIR") or DEFAULT_TARGET_DIR
    return os.environ.get("WEIR_BIN") or os.path.join(target, "release", "weir")


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


# Every broker process this session started and has not reaped yet, so that
# an aborted pytest run does not leave brokers behind.
_LIVE: dict = {}


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE.values()):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class WeirBroker:
    """One `weir up` process with fixed ports and data directory.

    The ports (Kafka and the REST API's, `--http-listen`) and the data
    directory stay the same across kill9()/restart(), so a restarted broker
    recovers the same log and clients can reconnect to the same addresses.
    """

    READY_TIMEOUT = 20.0  # seconds for both ports to accept connections
    STOP_TIMEOUT = 30.0  # seconds for a graceful shutdown after SIGTERM
    KILL_TIMEOUT = 10.0  # seconds for the process to vanish after SIGKILL

    def __init__(
        self,
        binary: str,
        workdir: Path,
        env: Optional[dict] = None,
        name: str = "weir",
        args: Optional[list] = None,
    ):
        self.binary = binary
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.data_dir = workdir / f"{name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.env_overrides = {str(k): str(v) for k, v in (env or {}).items()}
        # Extra `weir up` arguments, e.g. ["--advertised", "127.0.0.1:PORT"].
        self.extra_args = [str(a) for a in (args or [])]
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    # -- addresses ---------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        """host:port of the Connect REST API."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.http_address}"

    def rest(self, method: str, path: str, body=None, headers: Optional[dict] = None, timeout: float = 10.0):
        """One REST API request: returns (status, headers, payload) and never
        raises for an HTTP error status (4xx/5xx are returned like 2xx).

        `body`: None (no body), bytes or str (sent as they are), or anything
        else (sent as JSON). A body goes with `Content-Type: application/json`
        unless `headers` names another Content-Type. `headers` of the answer
        is a dict with lower-cased names; `payload` is the parsed JSON, the
        text when it is not JSON, or None when the body is empty.
        Connection errors (nothing listening) do raise.
        """
        data = None
        sent = {str(k): str(v) for k, v in (headers or {}).items()}
        if body is not None:
            if isinstance(body, bytes):
                data = body
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body).encode()
            if not any(k.lower() == "content-type" for k in sent):
                sent["Content-Type"] = "application/json"
        sent.setdefault("Accept", "application/json")
        request = urllib.request.Request(self.rest_url + path, data=data, headers=sent, method=method.upper())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, answer, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            status, answer, raw = err.code, err.headers, err.read()
        answer_headers = {k.lower(): v for k, v in answer.items()}
        if not raw:
            return status, answer_headers, None
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, answer_headers, json.loads(text)
        except ValueError:
            return status, answer_headers, text

    # -- lifecycle ---------------------------------------------------------

    def _env(self) -> dict:
        # Only the settings a test asks for: WEIR_* variables from the
        # caller's environment (e.g. WEIR_BIN) are not passed on.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")  # plain text in the dumped logs
        env.update(self.env_overrides)
        return env

    def _log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"\n===== [harness {time.strftime('%H:%M:%S')}] {line} =====\n")

    def start(self) -> "WeirBroker":
        assert not self.running, "broker already running"
        for port in (self.port, self.http_port):
            if port_accepts(port, timeout=0.2):
                raise RuntimeError(f"port {port} is already taken by another process")
        self.starts += 1
        cmd = [
            self.binary, "up", "--listen", self.bootstrap, "--http-listen", self.http_address,
            "--data-dir", str(self.data_dir), *self.extra_args,
        ]  # fmt: skip
        self._log(f"start #{self.starts}: {' '.join(cmd)} env={self.env_overrides}")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self._env(),
                # Own process group: Ctrl-C on pytest does not hit the broker
                # directly; the harness shuts it down itself.
                start_new_session=True,
            )
        finally:
            log.close()
        _LIVE[self.proc.pid] = self.proc
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.READY_TIMEOUT
        while True:
            code = self.proc.poll()
            if code is not None:
                _LIVE.pop(self.proc.pid, None)
                raise RuntimeError(
                    f"{self.name} exited with code {code} before accepting connections\n{self.log_tail()}"
                )
            if port_accepts(self.port) and port_accepts(self.http_port):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{self.name} did not accept connections on both {self.bootstrap} (Kafka) and "
                    f"{self.http_address} (REST) within {self.READY_TIMEOUT}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the broker (a crash: no shutdown code runs) and reap it."""
        assert self.running, "kill9() on a broker that is not running"
        self._log("SIGKILL")
        self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=self.KILL_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{self.name} still alive {self.KILL_TIMEOUT}s after SIGKILL")
        _LIVE.pop(self.proc.pid, None)

    def stop(self) -> int:
        """SIGTERM, wait (bounded) and return the exit code.

        If the broker does not exit in time it is SIGKILLed and an error is
        raised: a graceful shutdown must not hang.
        """
        assert self.running, "stop() on a broker that is not running"
        self._log("SIGTERM")
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=self.KILL_TIMEOUT)
            _LIVE.pop(self.proc.pid, None)
            raise RuntimeError(f"{self.name} did not exit within {self.STOP_TIMEOUT}s of SIGTERM")
        _LIVE.pop(self.proc.pid, None)
        self._log(f"exited with code {code}")
        return code

    def restart(self) -> "WeirBroker":
        """Start again on the same port and data dir.

        A broker that is still running is first shut down gracefully, and
        that shutdown must succeed (exit code 0).
        """
        if self.running:
            code = self.stop()
            assert code == 0, f"graceful shutdown before restart exited with {code}\n{self.log_tail()}"
        return self.start()

    # -- diagnostics -------------------------------------------------------

    def log_tail(self, max_bytes: int = 20000) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        cut = len(data) > max_bytes
        text = data[-max_bytes:].decode("utf-8", errors="replace")
        head = f"----- {self.name} log {self.log_path}" + (" (last %d bytes)" % max_bytes if cut else "") + " -----"
        return f"{head}\n{text}\n----- end of {self.name} log -----"


# ---------------------------------------------------------------------------
# pytest wiring
# ---------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the item so fixtures can see failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def weir_bin() -> str:
    path = default_weir_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"weir binary not found or not executable: {path} (set WEIR_BIN)", pytrace=False)
    return path


@pytest.fixture
def start_broker(weir_bin, tmp_path, request):
    """Factory fixture: start_broker(env=None, name=None, args=None) -> running WeirBroker.

    `args` are extra `weir up` arguments (kept across restarts).
    """
    brokers: list = []

    def start(env: Optional[dict] = None, name: Optional[str] = None, args: Optional[list] = None) -> WeirBroker:
        broker = WeirBroker(weir_bin, tmp_path, env=env, name=name or f"weir{len(brokers)}", args=args)
        brokers.append(broker)
        return broker.start()

    yield start

    problems = []
    for broker in brokers:
        if broker.running:
            try:
                code = broker.stop()
            except RuntimeError as exc:
                problems.append(f"{broker.name}: {exc}")
            else:
                if code != 0:
                    problems.append(f"{broker.name}: exit code {code} after SIGTERM (expected 0)")
    call_report = getattr(request.node, "rep_call", None)
    test_failed = call_report is None or call_report.failed
    if problems or test_failed:
        for broker in brokers:
            print(broker.log_tail())
    if problems:
        pytest.fail("broker shutdown problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def broker(start_broker) -> WeirBroker:
    """A broker with default settings."""
    return start_broker()
