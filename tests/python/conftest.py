"""Fixtures of the Python official-client compatibility suite.

A REAL `stratus serve` process is started once per session (and a second one with zero
tombstone / queue-reuse windows, only when a test asks for it). Every test talks to it with
the official `google-cloud-tasks` client over REST, exactly as a user would (spec §9).

Environment:
  STRATUS_BIN   path of the server binary (default: <repo>/target/debug/stratus)
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

# The server is on loopback: never send its traffic through a proxy from the environment.
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1", "localhost"]))

# (label, log tail) of every server stopped, for the failure summary.
_LOGS: list[tuple[str, str]] = []


def _free_port() -> int:
    """A port that was free a moment ago (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stratus_bin() -> Path:
    raw = os.environ.get("STRATUS_BIN", "target/debug/stratus")
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class StratusServer:
    """One `stratus serve` child process on a free loopback port with its own data dir."""

    def __init__(self, label: str, extra_args: list[str], tls_ca: Path | None = None):
        self.label = label
        self.extra_args = extra_args
        # With TLS (--tls-cert/--tls-key in extra_args), the CA file that verifies the server.
        self.tls_ca = tls_ca
        self.tmp = tempfile.TemporaryDirectory(prefix=f"stratus-py-{label}-")
        self.data_dir = Path(self.tmp.name) / "data"
        self.log_path = Path(self.tmp.name) / "server.log"
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> None:
        binary = _stratus_bin()
        if not binary.is_file():
            raise RuntimeError(
                f"stratus binary not found at {binary}; build it (cargo build -p stratus) "
                "or set STRATUS_BIN"
            )
        self.port = _free_port()
        scheme = "https" if self.tls_ca else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        cmd = [
            str(binary),
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.tmp.name,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"stratus ({self.label}) exited with {rc} during startup: {' '.join(cmd)}\n"
                    f"{_tail(self.log_path)}"
                )
            try:
                r = requests.get(f"{self.url}/healthz", timeout=1, verify=str(self.tls_ca or True))
                if r.status_code == 200:
                    return
                last_error = f"/healthz answered {r.status_code}"
            except requests.RequestException as e:
                last_error = str(e)
            time.sleep(0.1)
        raise RuntimeError(
            f"stratus ({self.label}) did not answer GET /healthz with 200 within "
            f"{STARTUP_TIMEOUT_S:.0f}s ({last_error})\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None
            _LOGS.append((f"{self.label} ({self.url})", _tail(self.log_path)))
        self.tmp.cleanup()


def make_client(url: str) -> tasks_v2.CloudTasksClient:
    """The official client on REST, anonymous, pointed at `url` (spec §9)."""
    return tasks_v2.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=url),
    )


def _serve(label: str, extra_args: list[str]):
    server = StratusServer(label, extra_args)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server():
    """The main server: default windows (task tombstone 1h, queue reuse block 7d).

    The control-plane tests create tasks for hosts that are not on this machine and compare
    them field by field, so this server stores tasks without dispatching them; dispatch is
    tested against `server_dispatch` with receivers on 127.0.0.1.
    """
    yield from _serve(
        "default", ["--task-tombstone", "1h", "--queue-reuse-block", "7d", "--no-dispatch"]
    )


@pytest.fixture(scope="session")
def server_zero():
    """A second server with zero tombstone and queue-reuse windows."""
    yield from _serve(
        "zero", ["--task-tombstone", "0s", "--queue-reuse-block", "0s", "--no-dispatch"]
    )


@pytest.fixture(scope="session")
def server_dispatch():
    """A server that dispatches (the default), for tests with receivers on 127.0.0.1."""
    yield from _serve("dispatch", [])


@pytest.fixture(scope="session")
def client_dispatch(server_dispatch) -> tasks_v2.CloudTasksClient:
    return make_client(server_dispatch.url)


@pytest.fixture(scope="session")
def client(server) -> tasks_v2.CloudTasksClient:
    return make_client(server.url)


@pytest.fixture(scope="session")
def client_zero(server_zero) -> tasks_v2.CloudTasksClient:
    return make_client(server_zero.url)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """On failure, show the end of each server's log (its temp dir is gone by now)."""
    if exitstatus == 0:
        return
    for label, tail in _LOGS:
        terminalreporter.write_sep("-", f"stratus server log, {label}, last lines")
        terminalreporter.write_line(tail)


# ----------------------------------------------------------------- checklist results (tests/compat)

# (pair id, scenario) -> {"status": ..., "note": ...}, filled from tests marked checklist(N).
_CHECKLIST: dict[tuple[str, int], dict] = {}
_NOT_APPLICABLE = {
    19: "the REST error body without `status` is a Rust-client negative test (rust-rest)",
}


def pytest_runtest_makereport(item, call):
    marker = item.get_closest_marker("checklist")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None:
        return
    pair = f"python-{callspec.params['transport']}"
    key = (pair, int(marker.args[0]))
    excinfo = call.excinfo
    if excinfo is not None:
        # Any failure in setup, call or teardown, or a skip, fails the scenario.
        what = "skipped" if excinfo.errisinstance(pytest.skip.Exception) else call.when
        msg = str(excinfo.value).strip().splitlines()
        _CHECKLIST[key] = {"status": "fail", "note": f"{what}: {msg[0] if msg else excinfo.typename}"}
    elif call.when == "call" and key not in _CHECKLIST:
        notes = [v for k, v in item.user_properties if k == "limitation"]
        if notes:
            _CHECKLIST[key] = {"status": "limitation", "note": "; ".join(notes)}
        else:
            _CHECKLIST[key] = {"status": "pass", "note": ""}


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("STRATUS_COMPAT_RESULTS")
    if not out or not _CHECKLIST:
        return
    import importlib.metadata as md
    import json

    client = (
        f"google-cloud-tasks {md.version('google-cloud-tasks')}, "
        f"google-api-core {md.version('google-api-core')}, grpcio {md.version('grpcio')}"
    )
    Path(out).mkdir(parents=True, exist_ok=True)
    for pair in sorted({p for p, _ in _CHECKLIST}):
        results = {str(n): r for (p, n), r in sorted(_CHECKLIST.items()) if p == pair}
        for n, note in _NOT_APPLICABLE.items():
            results.setdefault(str(n), {"status": "n/a", "note": note})
        doc = {"pair": pair, "client": client, "results": results}
        (Path(out) / f"{pair}.json").write_text(json.dumps(doc, indent=1))
