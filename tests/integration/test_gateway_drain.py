"""CONTRACT §4 Shutdown: SIGTERM under load drains without failing any
request the gateway accepted, then exits 0 within drain_delay + graceful_timeout.

Client accounting (per request the client wrote):
  * ok: a complete 200 response;
  * a response with `Connection: close` makes the client reconnect;
  * a refused connect (listeners closed) ends that client: fine;
  * FAILURE: the server closed or reset the connection with no byte of a
    response, a partial response, a non-200 status, or no answer in 10s.
Failures are reported by kind, distinguishing a request that was the first
on a new connection (e.g. reset in the accept queue when listeners closed)
from one on a reused keep-alive connection (the idle-close race).
"""

import collections
import signal
import threading
import time

import pytest

from gateway_harness import (
    RawConn,
    ResponseTimeout,
    ServerClosed,
    ServerReset,
    build_request,
    http_request,
)

CLIENTS = 32
DRAIN_DELAY = 1.0
GRACEFUL_TIMEOUT = 5.0


class LoadClient(threading.Thread):
    def __init__(self, index: int, port: int, stop: threading.Event):
        super().__init__(daemon=True, name="drain-client-%d" % index)
        self.index = index
        self.port = port
        self.stop_event = stop
        self.ok = 0
        self.reconnects = 0
        self.ended_by = None
        self.failures = []  # (kind, detail)

    def run(self) -> None:
        conn = None
        fresh = False
        n = 0
        while not self.stop_event.is_set():
            if conn is None:
                try:
                    conn = RawConn(self.port, timeout=5.0)
                    fresh = True
                except ConnectionRefusedError:
                    self.ended_by = "refused"
                    return
                except OSError as exc:
                    self.failures.append(("connect_error", repr(exc)))
                    return
            n += 1
            path = "/drain/work/%d/%d" % (self.index, n)
            where = "first request on a new connection" if fresh else "request on a reused connection"
            try:
                conn.send(build_request("GET", path))
            except OSError as exc:
                self.failures.append(("send_failed", "%s %s: %r" % (where, path, exc)))
                conn.close()
                return
            try:
                resp = conn.read_response(timeout=10.0)
            except (ServerClosed, ServerReset) as exc:
                kind = "no_response_bytes" if not exc.partial else "partial_response"
                how = "closed" if isinstance(exc, ServerClosed) else "reset"
                self.failures.append(("%s_%s_%s" % (kind, how, "new_conn" if fresh else "reused_conn"),
                                      "%s %s: %s" % (where, path, exc)))
                conn.close()
                return
            except ResponseTimeout as exc:
                self.failures.append(("timeout", "%s %s: %s" % (where, path, exc)))
                conn.close()
                return
            fresh = False
            if resp.status != 200:
                self.failures.append(("status_%d" % resp.status, "%s %s: %s" % (where, path, resp.describe())))
            else:
                self.ok += 1
            if "close" in resp.connection_tokens():
                conn.close()
                conn = None
                self.reconnects += 1
        if conn is not None:
            conn.close()
        self.ended_by = self.ended_by or "stopped"


def test_sigterm_under_load_drains_every_accepted_request_and_exits_0(start_gateway, fake_upstream):
    fake_upstream.route("/drain/work", delay=0.02)
    fake_upstream.route("/drain/slow", delay=2.0)
    gw = start_gateway(
        {
            "gateway": {
                "workers": 2,
                "drain_delay": "1s",
                "graceful_timeout": "5s",
                "keep_alive_timeout": "30s",
            }
        },
        upstream=fake_upstream,
    )
    stop = threading.Event()
    clients = [LoadClient(i, gw.port, stop) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    slow_result = {}

    def slow_request():
        try:
            slow_result["resp"] = http_request(gw.port, "GET", "/drain/slow/1", timeout=10.0)
        except Exception as exc:  # reported below
            slow_result["resp"] = exc

    try:
        time.sleep(1.0)
        ok_before = sum(c.ok for c in clients)
        slow_thread = threading.Thread(target=slow_request, daemon=True)
        slow_thread.start()
        assert fake_upstream.wait_for_requests("/drain/slow/", 1, timeout=2.0), "slow request did not start"

        t_sig = time.monotonic()
        gw.signal(signal.SIGTERM)

        # /readyz on the admin port turns 503 {"status":"draining"} at once.
        readyz_latency = None
        last = None
        while time.monotonic() - t_sig < 0.5:
            try:
                last = http_request(gw.admin_port, "GET", "/readyz", timeout=1.0)
            except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
                last = exc
            else:
                if last.status == 503:
                    readyz_latency = time.monotonic() - t_sig
                    break
            time.sleep(0.005)
        assert readyz_latency is not None, "admin /readyz not 503 within 500ms of SIGTERM: %r" % (
            last.describe() if hasattr(last, "describe") else last
        )
        assert last.json().get("status") == "draining", "draining /readyz body: %s" % last.describe()

        # During drain_delay the listener still accepts and serves.
        time.sleep(max(0.0, t_sig + 0.5 - time.monotonic()))
        try:
            during = http_request(gw.port, "GET", "/drain/new-during-delay", timeout=5.0)
            during_problem = None if during.status == 200 else during.describe()
        except Exception as exc:
            during_problem = repr(exc)

        # After drain_delay the listener is closed (the slow request keeps the process alive).
        time.sleep(max(0.0, t_sig + DRAIN_DELAY + 0.5 - time.monotonic()))
        try:
            late = http_request(gw.port, "GET", "/drain/new-after-delay", timeout=2.0)
            after_delay = "served: %s" % late.describe()
        except ConnectionRefusedError:
            after_delay = "refused"
        except (OSError, ServerClosed, ServerReset, ResponseTimeout) as exc:
            after_delay = "not refused: %r" % exc

        budget = DRAIN_DELAY + GRACEFUL_TIMEOUT + 1.0
        code = gw.wait_exit(max(0.1, t_sig + budget - time.monotonic()))
        exit_after = time.monotonic() - t_sig
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=15)
        if gw.running():
            gw.kill()
            gw.returncode = -9

    slow_thread.join(timeout=5)
    failures = collections.Counter()
    examples = {}
    for c in clients:
        for kind, detail in c.failures:
            failures[kind] += 1
            examples.setdefault(kind, detail)
    ok_total = sum(c.ok for c in clients)
    summary = "ok=%d (before SIGTERM %d), reconnects=%d, ended: %r, failures=%r, examples=%r" % (
        ok_total,
        ok_before,
        sum(c.reconnects for c in clients),
        collections.Counter(c.ended_by for c in clients),
        dict(failures),
        examples,
    )
    print("drain summary: readyz 503 after %s s, exit after %.2fs, %s" % (readyz_latency, exit_after, summary))

    assert code is not None, "gateway still running %.1fs after SIGTERM (budget %.1fs); %s" % (
        exit_after, budget, summary)
    assert code == 0, "gateway exit code %s after SIGTERM; %s" % (code, summary)
    assert readyz_latency <= 0.1, "admin /readyz turned 503 only %.0f ms after SIGTERM" % (readyz_latency * 1000)
    assert ok_before > 200, "load too small to mean anything: %s" % summary
    assert not failures, "requests failed across the drain: %s" % summary
    slow = slow_result.get("resp")
    assert getattr(slow, "status", None) == 200, "in-flight 2s request across SIGTERM: %r" % (
        slow.describe() if hasattr(slow, "describe") else slow
    )
    assert during_problem is None, "new request 0.5s after SIGTERM (inside drain_delay): %s" % during_problem
    assert after_delay == "refused", "new connection 1.5s after SIGTERM (listeners should be closed): %s" % after_delay


def test_sigterm_when_idle_exits_0_after_drain_delay(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"drain_delay": "300ms", "graceful_timeout": "2s"}}, upstream=fake_upstream)
    # An idle keep-alive client connection must not hold the drain up.
    with RawConn(gw.port, timeout=3.0) as idle:
        idle.send(build_request("GET", "/drain/idle"))
        assert idle.read_response().status == 200
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        code = gw.wait_exit(5.0)
        elapsed = time.monotonic() - t0
        assert code == 0, "exit code %s after SIGTERM with an idle connection" % code
        assert 0.25 <= elapsed < 0.3 + 2.0, "idle gateway exited %.2fs after SIGTERM (drain_delay 300ms)" % elapsed
        state = idle.wait_closed(1.0)
        assert state in ("closed", "reset"), "idle connection after exit: %s" % state
