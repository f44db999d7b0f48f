"""Fixtures for the gateway integration suite (real processes, 127.0.0.1 only).

* `redis_url` (session): a throwaway redis-server on a free port when the
  binary exists. The gateway's /readyz reports "redis" (CONTRACT §4 Health),
  so the tests give it a real Redis rather than depend on how it treats an
  unused, unreachable one.
* `fake_upstream`: a FakeUpstream per test.
* `start_gateway(overrides, upstream=..., wait_ready=True)`: writes the config,
  starts `gateway --config`, waits for /healthz (and /readyz), and at teardown
  sends SIGTERM and requires exit code 0 (unless `expect_clean_exit=False`).
* `data_stack` (session): the real PostgreSQL + PgBouncer + Redis from
  tests/harness/stack.py (DataStack), or a skip that names why it is missing.
* On failure the tail of every started process's stdout/stderr is attached
  to the report.
"""

from __future__ import annotations

import shutil
import socket
import sys
import subprocess
import time
from pathlib import Path

import pytest

from fake_upstream import FakeUpstream
from gateway_harness import REPO_ROOT, Gateway, free_port, gateway_config


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        # No Redis available: point at a closed port. Readiness tests then
        # depend on the gateway not requiring Redis when no rule uses it.
        yield "redis://127.0.0.1:%d/0" % free_port()
        return
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    log = open(workdir / "redis.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--daemonize", "no",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        if not _wait_port(port, 10):
            raise RuntimeError("redis-server did not start on port %d (log in %s)" % (port, workdir))
        yield "redis://127.0.0.1:%d/0" % port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.fixture
def fake_upstream():
    upstream = FakeUpstream()
    yield upstream
    upstream.stop()


# Shorter than the shipped defaults (5s / 30s) so that stopping a gateway at
# the end of a test takes a fraction of a second; drain tests set their own.
FAST_SHUTDOWN = {"gateway": {"drain_delay": "100ms", "graceful_timeout": "2s"}}


class _GatewayStarter:
    def __init__(self, request, tmp_path: Path, redis_url: str):
        self.request = request
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.started = []

    def __call__(
        self,
        overrides=None,
        upstream=None,
        upstream_address=None,
        wait_ready=True,
        expect_clean_exit=True,
        name=None,
    ) -> Gateway:
        if upstream_address is None:
            assert upstream is not None, "give upstream= or upstream_address="
            upstream_address = upstream.address
        from gateway_harness import deep_merge

        config = gateway_config(upstream_address, self.redis_url, deep_merge(FAST_SHUTDOWN, overrides or {}))
        gw = Gateway(config, self.tmp_path, name=name or "gateway%d" % len(self.started))
        gw.expect_clean_exit = expect_clean_exit
        self.started.append(gw)
        _register_process(self.request.node, gw)
        gw.start_and_wait()
        if wait_ready:
            gw.wait_ready()
        return gw

    def teardown(self) -> None:
        problems = []
        for gw in self.started:
            if gw.returncode is not None:
                continue  # the test stopped it and checked the exit itself
            # FAST_SHUTDOWN: drain_delay 100ms + graceful_timeout 2s, so 5s is ample.
            code = gw.stop(timeout=5)
            if gw.expect_clean_exit and code != 0:
                problems.append(
                    "%s: after SIGTERM at teardown exit code was %s (None = had to SIGKILL after 5s)\n%s"
                    % (gw.name, code, gw.log_tail())
                )
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def start_gateway(request, tmp_path, redis_url):
    starter = _GatewayStarter(request, tmp_path, redis_url)
    yield starter
    starter.teardown()


def _register_process(node, proc) -> None:
    procs = getattr(node, "_sidecar_processes", None)
    if procs is None:
        procs = []
        node._sidecar_processes = procs
    procs.append(proc)


@pytest.fixture
def register_process(request):
    """Attach a ManagedProcess to this test so its logs show on failure."""
    return lambda proc: _register_process(request.node, proc)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when in ("call", "teardown") and report.failed:
        for proc in getattr(item, "_sidecar_processes", []):
            report.sections.append(("%s logs" % proc.name, proc.log_tail(30)))


def _load_data_stack_class():
    """DataStack from tests/harness/stack.py, or None with the reason."""
    stack_py = REPO_ROOT / "tests" / "harness" / "stack.py"
    if not stack_py.exists():
        return None, "tests/harness/stack.py does not exist"
    tests_dir = str(REPO_ROOT / "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    try:
        from harness.stack import DataStack  # noqa: WPS433 (optional helper)
    except Exception as exc:  # an import error is a reason to skip, shown to the reader
        return None, "cannot import DataStack from tests/harness/stack.py: %r" % exc
    if not (REPO_ROOT / "scripts" / "stack.sh").exists():
        return None, "scripts/stack.sh (used by DataStack) does not exist"
    return DataStack, ""


@pytest.fixture(scope="session")
def data_stack():
    """The real PostgreSQL + PgBouncer + Redis, or a skip naming why not."""
    cls, reason = _load_data_stack_class()
    if cls is None:
        pytest.skip("data stack unavailable: " + reason)
    with cls() as stack:
        yield stack
