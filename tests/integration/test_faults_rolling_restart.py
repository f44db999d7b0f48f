"""Issue 10, rolling restart: a new gateway process binds the same port
(SO_REUSEPORT), the old one gets SIGTERM and drains, and a client load running
across the switch sees no failed request.

Failure definition as in test_gateway_drain.py (per request the client wrote):
ok = a complete 200; a response with `Connection: close` makes the client
reconnect; FAILURE = closed or reset with no byte or part of a response, a
non-200 status, or no answer in 10 s. Unlike the single-gateway drain, a
refused connect is a failure too: the new process listens throughout.

Two kinds of clients: keep-alive clients looping on one connection (the
common case behind a load balancer), and "churn" clients opening a new
connection per request, which is what exposes connections queued on the old
listener when it closes.
"""

from __future__ import annotations

import collections
import signal
import threading
import time

from gateway_harness import RawConn, ResponseTimeout, ServerClosed, ServerReset, build_request

KEEPALIVE_CLIENTS = 8
CHURN_CLIENTS = 2


class Client(threading.Thread):
    def __init__(self, index: int, port: int, stop: threading.Event, churn: bool):
        super().__init__(daemon=True, name="roll-client-%d" % index)
        self.index = index
        self.port = port
        self.stop_event = stop
        self.churn = churn
        self.ok = 0
        self.ok_times = []
        self.reconnects = 0
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
                except OSError as exc:
                    self.failures.append(("connect_%s" % type(exc).__name__, repr(exc)))
                    time.sleep(0.05)
                    continue
            n += 1
            path = "/roll/%d/%d" % (self.index, n)
            where = "new connection" if fresh else "reused connection"
            try:
                conn.send(build_request("GET", path))
                resp = conn.read_response(timeout=10.0)
            except (ServerClosed, ServerReset) as exc:
                kind = "no_response_bytes" if not exc.partial else "partial_response"
                how = "closed" if isinstance(exc, ServerClosed) else "reset"
                self.failures.append(("%s_%s_%s" % (kind, how, "new_conn" if fresh else "reused_conn"),
                                      "%s %s: %s" % (where, path, exc)))
                conn.close()
                conn = None
                continue
            except (ResponseTimeout, OSError) as exc:
                self.failures.append(("%s" % type(exc).__name__, "%s %s: %r" % (where, path, exc)))
                conn.close()
                conn = None
                continue
            fresh = False
            if resp.status != 200:
                self.failures.append(("status_%d" % resp.status, "%s %s: %s" % (where, path, resp.describe())))
            else:
                self.ok += 1
                self.ok_times.append(time.monotonic())
            if self.churn or "close" in resp.connection_tokens():
                conn.close()
                conn = None
                self.reconnects += 1
        if conn is not None:
            conn.close()


def test_rolling_restart_on_the_same_port_loses_no_request(start_gateway, fake_upstream):
    fake_upstream.route("/roll", delay=0.005)
    drain = {"workers": 2, "drain_delay": "1s", "graceful_timeout": "5s", "keep_alive_timeout": "30s"}
    old = start_gateway({"gateway": drain}, upstream=fake_upstream, name="old")
    stop = threading.Event()
    clients = [Client(i, old.port, stop, churn=i >= KEEPALIVE_CLIENTS)
               for i in range(KEEPALIVE_CLIENTS + CHURN_CLIENTS)]
    for c in clients:
        c.start()
    try:
        time.sleep(0.8)
        # The successor: same client port, its own admin port (to tell the two apart).
        new = start_gateway({"gateway": dict(drain, listen=old.config["gateway"]["listen"])},
                            upstream=fake_upstream, name="new")
        # The starter's health checks went to the shared port, which the old process also
        # answers; the admin port is the new process's own.
        new.wait_http_ok(new.admin_port, "/readyz", timeout=10)
        time.sleep(0.3)
        t_term = time.monotonic()
        old.signal(signal.SIGTERM)
        code = old.wait_exit(1.0 + 5.0 + 2.0)
        t_exit = time.monotonic()
        time.sleep(1.0)  # load on the new process alone
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=15)

    failures = collections.Counter()
    examples = {}
    for c in clients:
        for kind, detail in c.failures:
            failures[kind] += 1
            examples.setdefault(kind, detail)
    ok_total = sum(c.ok for c in clients)
    ok_after_exit = sum(1 for c in clients for t in c.ok_times if t > t_exit)
    ok_churn = sum(c.ok for c in clients if c.churn)
    summary = "ok=%d (churn clients %d, after the old process exited %d), reconnects=%d, failures=%r, examples=%r" % (
        ok_total, ok_churn, ok_after_exit, sum(c.reconnects for c in clients), dict(failures), examples)
    print("rolling restart: old exited %.2fs after SIGTERM with %s; %s" % (t_exit - t_term, code, summary))
    assert code == 0, "old gateway exit code %s; %s" % (code, summary)
    assert ok_after_exit > 50, "the new gateway served too little after the switch: %s" % summary
    assert not failures, "requests failed across the rolling restart: %s" % summary
