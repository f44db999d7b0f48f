"""Issue 10, faults: the upstream dies (SIGKILL) mid-response, or freezes (SIGSTOP).

The upstream here is a separate Python process (the script below, run with
`python3 -c`), so that the test can kill or stop it like a crashed or wedged
server; the in-process FakeUpstream cannot be killed that way. It answers every
path with a small keep-alive JSON 200, except `/stream` (a chunked body of
16 KiB pieces every 5 ms, for a minute) and `/slow?ms=N`. It appends each
request line's path to a log file, which tells what actually reached it.

CONTRACT §4 "Upstream resilience": connect failure -> 502 after retries,
read_timeout -> 504, retries only before any response byte went out, breaker
open -> 503 at once without touching the upstream, half-open probes decide.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway_harness import (
    RawConn,
    ResponseTimeout,
    ServerClosed,
    ServerReset,
    build_request,
    error_json_problems,
    free_port,
    http_request,
)

UPSTREAM_SCRIPT = r'''
import socket, sys, threading, time, urllib.parse
port, log_path = int(sys.argv[1]), sys.argv[2]
log = open(log_path, "a", buffering=1)
log_lock = threading.Lock()
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(512)
print("listening", flush=True)
PIECE = b"x" * 16384

def serve(conn):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            with log_lock:
                log.write(target + "\n")
            url = urllib.parse.urlsplit(target)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/stream":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    conn.sendall(b"4000\r\n" + PIECE + b"\r\n")
                    time.sleep(0.005)
                conn.sendall(b"0\r\n\r\n")
                continue
            if "ms" in query:
                time.sleep(int(query["ms"]) / 1000.0)
            body = ('{"path":"%s"}' % url.path).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
    except OSError:
        pass
    finally:
        conn.close()

while True:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


class UpstreamProcess:
    """The script above as a child process on a fixed port (so a successor can take the port)."""

    def __init__(self, port: int, workdir: Path, name: str = "upstream"):
        self.port = port
        self.name = name
        self.log_path = workdir / ("%s.requests.log" % name)
        self.out_path = workdir / ("%s.out.log" % name)
        self.proc = None

    def start(self, timeout: float = 5.0) -> "UpstreamProcess":
        self._out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM_SCRIPT, str(self.port), str(self.log_path)],
            stdout=subprocess.PIPE,
            stderr=self._out,
            stdin=subprocess.DEVNULL,
        )
        line = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not line:
            line = self.proc.stdout.readline()
        assert line.strip() == b"listening", "upstream did not start: %r (see %s)" % (line, self.out_path)
        return self

    def paths(self) -> list:
        try:
            return self.log_path.read_text().split()
        except OSError:
            return []

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self._out.close()

    # Shown in the report on failure (conftest's register_process).
    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.out_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return "--- %s stderr ---\n%s\n--- paths received: %r" % (self.name, "\n".join(text), self.paths()[-lines:])


@pytest.fixture
def upstream_processes(tmp_path, register_process):
    started = []

    def start(port: int, name: str = "upstream") -> UpstreamProcess:
        up = UpstreamProcess(port, tmp_path, name)
        started.append(up)
        register_process(up)
        return up.start()

    yield start
    for up in started:
        up.stop()


def read_until_end(conn: RawConn, limit_s: float) -> tuple:
    """Reads raw bytes until the server closes or resets, or `limit_s` passes.

    Returns (how, bytes, seconds): how is "closed", "reset" or "timeout"."""
    start = time.monotonic()
    data = bytearray(conn.buf)
    while True:
        remaining = limit_s - (time.monotonic() - start)
        if remaining <= 0:
            return "timeout", bytes(data), time.monotonic() - start
        conn.sock.settimeout(remaining)
        try:
            chunk = conn.sock.recv(262144)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset", bytes(data), time.monotonic() - start
        if not chunk:
            return "closed", bytes(data), time.monotonic() - start
        data += chunk


def timed_request(port: int, path: str, timeout: float = 10.0):
    start = time.monotonic()
    try:
        resp = http_request(port, "GET", path, timeout=timeout)
    except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
        return exc, time.monotonic() - start
    return resp, time.monotonic() - start


def describe(result) -> str:
    return result.describe() if hasattr(result, "describe") else repr(result)


def test_upstream_sigkill_mid_response_truncates_cleanly_and_the_pool_recovers(
    start_gateway, upstream_processes
):
    port = free_port()
    upstream = upstream_processes(port, "upstream1")
    gw = start_gateway(
        {
            "gateway": {
                "upstream": {
                    "read_timeout": "2s",
                    "retry": {"attempts": 3, "backoff_base": "50ms", "backoff_max": "200ms"},
                    # The breaker has its own test; here it must not hide the pool's recovery.
                    "circuit_breaker": {"min_requests": 1000},
                }
            }
        },
        upstream_address="127.0.0.1:%d" % port,
    )
    # Keep-alive connections in the pool, all about to go stale.
    with RawConn(gw.port) as warm:
        for i in range(10):
            warm.send(build_request("GET", "/warm/%d" % i))
            assert warm.read_response().status == 200

    stream = RawConn(gw.port, timeout=5.0)
    stream.send(build_request("GET", "/stream"))
    head = stream.sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(), "stream head: %r" % head[:300]
    received = len(head)
    while received < 512 * 1024:
        chunk = stream.sock.recv(262144)
        assert chunk, "stream ended before the kill after %d bytes" % received
        received += len(chunk)

    in_flight = {}
    slow_thread = threading.Thread(
        target=lambda: in_flight.setdefault("slow", timed_request(gw.port, "/slow?ms=5000")), daemon=True
    )
    slow_thread.start()
    deadline = time.monotonic() + 2
    while "/slow?ms=5000" not in upstream.paths() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "/slow?ms=5000" in upstream.paths(), "the slow request did not reach the upstream"

    upstream.signal(signal.SIGKILL)
    t_kill = time.monotonic()
    how, data, seconds = read_until_end(stream, 5.0)
    stream.close()
    total = received + len(data)
    print("stream after SIGKILL: %s after %.3fs, %d bytes in all" % (how, seconds, total))
    assert how in ("closed", "reset"), "streaming client still waiting %.1fs after the upstream died" % seconds
    assert seconds < 3.0, "streaming client cut off only %.2fs after the upstream died" % seconds
    assert not data.endswith(b"0\r\n\r\n"), (
        "the gateway ended a truncated upstream body with a terminating chunk: the client cannot "
        "tell it from a complete one"
    )

    # The gateway itself carries on.
    health, health_s = timed_request(gw.port, "/healthz", timeout=2)
    assert getattr(health, "status", None) == 200 and health_s < 0.5, "healthz after the kill: %s in %.2fs" % (
        describe(health), health_s)
    slow_thread.join(timeout=10)
    slow, slow_s = in_flight["slow"]
    print("in-flight request when the upstream died: %s after %.2fs" % (describe(slow)[:120], slow_s))
    assert getattr(slow, "status", None) in (502, 504), "in-flight request: %s" % describe(slow)
    assert not error_json_problems(slow), error_json_problems(slow)
    assert slow_s < 5.0

    down, down_s = timed_request(gw.port, "/while-down", timeout=10)
    print("request while the upstream is down: %s after %.2fs" % (describe(down)[:120], down_s))
    assert getattr(down, "status", None) == 502, "request while down: %s" % describe(down)
    assert not error_json_problems(down), error_json_problems(down)
    assert down_s < 3.0, "502 took %.2fs (retries with 50-200ms backoff)" % down_s
    access = []
    deadline = time.monotonic() + 2  # the log writer is asynchronous
    while not access and time.monotonic() < deadline:
        access = [json.loads(line) for line in gw.stdout_text().splitlines() if '"path":"/while-down"' in line]
        time.sleep(0.02)
    assert access and access[0].get("retries") == 2, "access log of the request while down (3 attempts): %r" % access

    # A successor on the same port: the pool drops the dead connections and serves again.
    upstream_processes(port, "upstream2")
    t_restart = time.monotonic()
    results = []
    conn = RawConn(gw.port)
    try:
        for i in range(20):
            conn.send(build_request("GET", "/after/%d" % i))
            resp = conn.read_response(timeout=5)
            results.append(resp.status)
            if "close" in resp.connection_tokens():
                conn.close()
                conn = RawConn(gw.port)
    finally:
        conn.close()
    print("after restart (%.2fs after the kill): statuses %r" % (t_restart - t_kill, results))
    assert results == [200] * 20, "requests after the upstream came back: %r" % results


def scrape_metric(port: int, name: str) -> float:
    text = http_request(port, "GET", "/metrics").body.decode()
    m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
    assert m, "%s missing from /metrics" % name
    return float(m.group(1))


class HealthPoller(threading.Thread):
    """GETs /healthz on both listeners every 50 ms; records failures and the worst latency."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports = ports
        self.stop_event = threading.Event()
        self.count = 0
        self.failures = []
        self.worst = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            for port in self.ports:
                resp, seconds = timed_request(port, "/healthz", timeout=2)
                self.count += 1
                self.worst = max(self.worst, seconds)
                if getattr(resp, "status", None) != 200:
                    self.failures.append((port, describe(resp)[:200]))
            self.stop_event.wait(0.05)


def test_upstream_sigstop_times_out_opens_the_breaker_and_recovers_after_sigcont(
    start_gateway, upstream_processes
):
    port = free_port()
    upstream = upstream_processes(port)
    gw = start_gateway(
        {
            "gateway": {
                "upstream": {
                    "read_timeout": "500ms",
                    "retry": {"attempts": 1},
                    "circuit_breaker": {
                        "failure_ratio": 0.5,
                        "min_requests": 5,
                        "window": "5s",
                        "open_duration": "1s",
                        "half_open_requests": 3,
                    },
                }
            }
        },
        upstream_address="127.0.0.1:%d" % port,
    )
    for i in range(2):
        assert http_request(gw.port, "GET", "/warm/%d" % i).status == 200
    assert scrape_metric(gw.admin_port, "gateway_circuit_breaker_state") == 0

    poller = HealthPoller([gw.port, gw.admin_port])
    poller.start()
    try:
        upstream.signal(signal.SIGSTOP)
        results = [None] * 6
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, timed_request(gw.port, "/frozen/%d" % i)))
            for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        print("requests to the frozen upstream: %s" % [(getattr(r, "status", r), round(s, 2)) for r, s in results])
        for resp, seconds in results:
            assert getattr(resp, "status", None) == 504, "frozen upstream: %s" % describe(resp)
            assert not error_json_problems(resp), error_json_problems(resp)
            assert 0.4 <= seconds < 1.5, "504 after %.2fs (read_timeout 500ms)" % seconds

        # 6 of 8 failed in the window (>= min_requests 5, ratio 0.75): open, 503 at once.
        state = scrape_metric(gw.admin_port, "gateway_circuit_breaker_state")
        assert state == 1, "gateway_circuit_breaker_state %s after 6 timeouts" % state
        t_open = time.monotonic()
        for i in range(5):
            resp, seconds = timed_request(gw.port, "/open/%d" % i)
            assert getattr(resp, "status", None) == 503, "breaker open: %s" % describe(resp)
            assert not error_json_problems(resp), error_json_problems(resp)
            assert seconds < 0.1, "503 with the breaker open took %.3fs" % seconds

        upstream.signal(signal.SIGCONT)
        # After open_duration the half-open probes go through and close the breaker.
        recovered_after = None
        statuses = []
        deadline = t_open + 5.0
        i = 0
        while time.monotonic() < deadline:
            resp, _ = timed_request(gw.port, "/recover/%d" % i, timeout=3)
            i += 1
            statuses.append(getattr(resp, "status", None))
            if statuses[-1] == 200:
                recovered_after = time.monotonic() - t_open
                break
            time.sleep(0.1)
        print("after SIGCONT: statuses %r, first 200 %.2fs after the breaker opened" % (statuses, recovered_after or -1))
        assert recovered_after is not None, "no 200 within 5s of the breaker opening: %r" % statuses
        assert recovered_after >= 0.9, "breaker let a request through %.2fs after opening (open_duration 1s)" % (
            recovered_after)
        for j in range(5):
            assert http_request(gw.port, "GET", "/closed/%d" % j).status == 200
        deadline = time.monotonic() + 2
        while scrape_metric(gw.admin_port, "gateway_circuit_breaker_state") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scrape_metric(gw.admin_port, "gateway_circuit_breaker_state") == 0
    finally:
        poller.stop_event.set()
        poller.join(timeout=5)
        upstream.signal(signal.SIGCONT)

    # What the upstream saw once it ran again: the frozen requests (queued in its socket buffers),
    # never the ones answered 503 while the breaker was open.
    time.sleep(0.2)
    reached = [p for p in upstream.paths() if p.startswith("/open/")]
    assert not reached, "requests answered 503 while open still reached the upstream: %r" % reached
    print("healthz during the fault: %d checks, worst %.3fs, failures %r" % (poller.count, poller.worst, poller.failures))
    assert not poller.failures, poller.failures
    assert poller.worst < 0.5, "/healthz took %.3fs while the upstream was frozen" % poller.worst
