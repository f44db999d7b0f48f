"""The real data stack (PostgreSQL 15 + PgBouncer + Redis) for integration tests.

Starts the same servers as `make run` through scripts/stack.sh, but in a fresh
temporary directory, on free 127.0.0.1 ports, with fsync off (throwaway data):

    with DataStack() as s:
        s.db_url      # postgresql://app@127.0.0.1:<pgbouncer_port>/app (transaction pooling)
        s.redis_url   # redis://127.0.0.1:<redis_port>/0
        s.psql("select count(*) from articles")   # through PgBouncer

As a pytest session fixture:

    @pytest.fixture(scope="session")
    def data_stack():
        with DataStack() as stack:
            yield stack

Set SIDECAR_KEEP_STACK=1 to keep the directory (configs, logs) after stop.
Python stdlib only: runs under Debian's /usr/bin/python3 -m pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from .ports import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = REPO_ROOT / "scripts" / "stack.sh"

# Unix socket paths (DIR/run/.s.PGSQL.PORT) must stay under ~100 bytes.
_MAX_DIR_LEN = 70


class StackError(RuntimeError):
    """The stack could not be started or stopped; the message holds the log tails."""


class DataStack:
    """PostgreSQL + PgBouncer (transaction mode) + Redis on free loopback ports.

    `start()` retries with new ports when a start fails (a free port can be
    taken by another process between choosing and binding it). `stop()` stops
    all three servers and removes the directory unless asked to keep it.
    """

    def __init__(
        self,
        directory: Optional[Path] = None,
        attempts: int = 3,
        wait_seconds: int = 30,
        keep_directory: Optional[bool] = None,
    ):
        self._given_directory = Path(directory) if directory is not None else None
        self._attempts = attempts
        self._wait_seconds = wait_seconds
        if keep_directory is None:
            keep_directory = os.environ.get("SIDECAR_KEEP_STACK", "") not in ("", "0")
        self._keep_directory = keep_directory
        self.directory: Optional[Path] = None
        self.pg_port = 0
        self.pgbouncer_port = 0
        self.redis_port = 0
        self.start_output = ""
        self._running = False

    # -- connection strings -------------------------------------------------

    @property
    def db_url(self) -> str:
        """What the app uses: role `app`, database `app`, through PgBouncer."""
        return "postgresql://app@127.0.0.1:%d/app" % self.pgbouncer_port

    @property
    def direct_db_url(self) -> str:
        """Straight to PostgreSQL, bypassing PgBouncer (for session-level checks)."""
        return "postgresql://app@127.0.0.1:%d/app" % self.pg_port

    @property
    def redis_url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.redis_port

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> "DataStack":
        if self._running:
            return self
        self.directory = self._given_directory or self._make_directory()
        failures = []
        for attempt in range(1, self._attempts + 1):
            self.pg_port, self.pgbouncer_port, self.redis_port = free_ports(3)
            result = self._run("start", timeout=3 * self._wait_seconds + 60)
            if result.returncode == 0:
                self.start_output = result.stdout.strip()
                self._running = True
                return self
            failures.append(
                "attempt %d (ports %d %d %d) exit %d:\n%s%s\n%s"
                % (
                    attempt,
                    self.pg_port,
                    self.pgbouncer_port,
                    self.redis_port,
                    result.returncode,
                    result.stdout,
                    result.stderr,
                    self.log_tail(),
                )
            )
            # Leave nothing half-started before trying other ports.
            self._run("stop", timeout=60)
        self._remove_directory()
        raise StackError("data stack did not start in %s:\n%s" % (self.directory, "\n".join(failures)))

    def stop(self) -> None:
        if self.directory is None:
            return
        problems = ""
        if self._running:
            result = self._run("stop", timeout=90)
            self._running = False
            if result.returncode != 0:
                problems = result.stdout + result.stderr + self.log_tail()
        if problems:
            raise StackError("data stack did not stop cleanly (directory kept: %s):\n%s" % (self.directory, problems))
        self._remove_directory()

    def __enter__(self) -> "DataStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for tests --------------------------------------------------

    def psql(self, sql: str, via_pgbouncer: bool = True, user: str = "app", database: str = "app",
             timeout: float = 30) -> str:
        """Runs `sql` with psql -At (unaligned, tuples only) and returns stdout.

        Raises StackError with psql's message on any SQL error.
        """
        port = self.pgbouncer_port if via_pgbouncer else self.pg_port
        result = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=timeout, env=_client_env(),
        )
        if result.returncode != 0:
            raise StackError("psql failed (exit %d) for %r:\n%s" % (result.returncode, sql, result.stderr))
        return result.stdout.strip()

    def redis_cli(self, *args: str, timeout: float = 10) -> str:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), *args],
            capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise StackError("redis-cli %s failed: %s" % (" ".join(args), result.stderr))
        return result.stdout.strip()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of each server log (for failure reports)."""
        if self.directory is None:
            return ""
        parts = []
        for name in ("initdb.log", "postgres.log", "pgbouncer.log", "redis.log"):
            path = self.directory / "log" / name
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append("--- %s ---\n%s" % (path, "\n".join(text)))
        return "\n".join(parts)

    # -- internals ----------------------------------------------------------

    def _run(self, action: str, timeout: float) -> subprocess.CompletedProcess:
        env = dict(os.environ, STACK_FSYNC="off", STACK_WAIT_SECONDS=str(self._wait_seconds))
        try:
            return subprocess.run(
                [str(STACK_SCRIPT), action, str(self.directory),
                 str(self.pg_port), str(self.pgbouncer_port), str(self.redis_port)],
                capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT,
            )
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, _text(e.stdout), _text(e.stderr) + "\n(timed out)")

    @staticmethod
    def _make_directory() -> Path:
        base = tempfile.gettempdir()
        if len(base) > _MAX_DIR_LEN - 20:
            base = "/tmp"
        return Path(tempfile.mkdtemp(prefix="sidecar-stack-", dir=base))

    def _remove_directory(self) -> None:
        if self.directory is None or self._keep_directory or self._given_directory is not None:
            return
        shutil.rmtree(self.directory, ignore_errors=True)


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _client_env() -> dict:
    # Explicit -h/-p/-U/-d on every call; keep the caller's PG* settings out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "5"
    return env
