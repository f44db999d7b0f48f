"""Issue 10, file descriptors exhausted: the gateway runs with RLIMIT_NOFILE 64.

Client connections are opened (each serving one request, then held open) until
the gateway cannot take more. Then, while saturated: a new connection must be
refused or closed at once (libuv accepts and closes it when accept() says
EMFILE), the gateway must not spin (its CPU time over 2 s stays low), the held
connections keep being served, and once they close new clients are served
again. CONTRACT §4 "Limits": more than max_connections -> refused or closed;
running out of descriptors must look the same to a client, never a hang.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import threading
import time

from gateway_harness import (
    REPO_ROOT,
    Gateway,
    RawConn,
    ResponseTimeout,
    ServerClosed,
    ServerReset,
    build_request,
    gateway_config,
    http_request,
    to_yaml,
)

NOFILE = 64


class LowFdGateway(Gateway):
    """The gateway started with RLIMIT_NOFILE = NOFILE (ManagedProcess.start plus preexec_fn)."""

    def start(self) -> "LowFdGateway":
        binary = self.binary_fn()
        assert binary.exists(), "gateway binary not found at %s" % binary
        self.config_path.write_text(to_yaml(self.config))
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "--config", str(self.config_path)],
            stdout=self._stdout,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            cwd=str(REPO_ROOT),
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE)),
        )
        return self


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def try_new_connection(port: int, timeout: float = 2.0) -> tuple:
    """One request on a new connection: ("served", status) or how it failed, and the seconds."""
    start = time.monotonic()
    try:
        with RawConn(port, timeout=timeout) as conn:
            conn.send(build_request("GET", "/new"))
            resp = conn.read_response(timeout=timeout)
            return ("served", resp.status), time.monotonic() - start
    except ConnectionRefusedError:
        return ("refused", None), time.monotonic() - start
    except ServerClosed as exc:
        return ("closed", len(exc.partial)), time.monotonic() - start
    except (ServerReset, ConnectionResetError, BrokenPipeError) as exc:
        return ("reset", repr(exc)[:60]), time.monotonic() - start
    except (ResponseTimeout, socket.timeout) as exc:
        return ("timeout", repr(exc)[:60]), time.monotonic() - start


def test_fd_exhaustion_refuses_new_connections_cleanly_keeps_serving_and_recovers(
    tmp_path, redis_url, fake_upstream, register_process
):
    config = gateway_config(
        fake_upstream.address,
        redis_url,
        {
            "gateway": {
                "workers": 1,
                "keep_alive_timeout": "30s",
                "drain_delay": "100ms",
                "graceful_timeout": "2s",
                "upstream": {"max_idle_connections": 4},
            }
        },
    )
    gw = LowFdGateway(config, tmp_path, name="gateway-nofile%d" % NOFILE)
    register_process(gw)
    held = []
    try:
        gw.start_and_wait()
        gw.wait_ready()
        baseline_fds = len(os.listdir("/proc/%d/fd" % gw.pid))
        assert http_request(gw.port, "GET", "/warm").status == 200  # an upstream connection in the pool

        # Fill the descriptor table with served, held keep-alive connections.
        first_failure = None
        for i in range(NOFILE * 2):
            try:
                conn = RawConn(gw.port, timeout=2.0)
                conn.send(build_request("GET", "/held/%d" % i))
                resp = conn.read_response(timeout=2.0)
            except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
                first_failure = repr(exc)[:120]
                break
            assert resp.status == 200, resp.describe()
            held.append(conn)
        saturated_fds = len(os.listdir("/proc/%d/fd" % gw.pid))
        assert first_failure is not None, "the gateway took %d connections with RLIMIT_NOFILE %d" % (len(held), NOFILE)
        assert len(held) >= 10, "only %d connections before running out (baseline %d fds)" % (len(held), baseline_fds)

        # Saturated: new connections fail fast, the gateway does not spin.
        outcomes = []
        stop = threading.Event()

        def knock():
            while not stop.is_set():
                outcomes.append(try_new_connection(gw.port))
                stop.wait(0.1)

        knocker = threading.Thread(target=knock, daemon=True)
        cpu_before = cpu_seconds(gw.pid)
        knocker.start()
        time.sleep(2.0)
        cpu_used = cpu_seconds(gw.pid) - cpu_before
        stop.set()
        knocker.join(timeout=10)

        # The held connections are still served.
        for i, conn in enumerate(held[:5]):
            conn.send(build_request("GET", "/held-again/%d" % i))
            resp = conn.read_response(timeout=2.0)
            assert resp.status == 200, "held connection %d while saturated: %s" % (i, resp.describe())
        alive = gw.running()

        held_count = len(held)
        for conn in held:
            conn.close()
        held = []
        time.sleep(0.3)
        recovered = [try_new_connection(gw.port) for _ in range(10)]
        kinds = {}
        for (kind, _), _ in outcomes:
            kinds[kind] = kinds.get(kind, 0) + 1
        print(
            "fd exhaustion (RLIMIT_NOFILE %d): %d fds at start, %d held connections served (%d fds), first "
            "failure %s; while saturated over 2s: %d new connections -> %r, slowest %.3fs, gateway CPU %.3fs; "
            "after closing: %r"
            % (NOFILE, baseline_fds, held_count, saturated_fds, first_failure, len(outcomes),
               kinds, max(s for _, s in outcomes), cpu_used, [o for o, _ in recovered])
        )
        assert alive, "gateway died when out of descriptors\n%s" % gw.log_tail()
        assert outcomes, "no connection attempt while saturated"
        for (kind, detail), seconds in outcomes:
            assert kind in ("refused", "closed", "reset"), "new connection while saturated: %s %s" % (kind, detail)
            assert seconds < 1.0, "refusing a connection took %.2fs" % seconds
        assert cpu_used < 0.3, "gateway used %.2fs of CPU in 2s while saturated (busy loop?)" % cpu_used
        assert all(o == ("served", 200) for o, _ in recovered), "after the held connections closed: %r" % recovered
    finally:
        for conn in held:
            conn.close()
        code = gw.stop(timeout=5)
    assert code == 0, "gateway exit code %s\n%s" % (code, gw.log_tail())
