"""Issue 6, "Done when" 2: upstream resilience against a fault-injecting upstream.

`ScriptedUpstream` (below) answers each request under a path prefix with the
next action of a script ("503 once, then 200", "reset, then 200", "send half
the body, then reset", ...), answers the gateway's health polls, and records
every request with its arrival time, so the tests see each attempt the
gateway makes. A port that is bound but not listening refuses connections
until `listen()` is called.

Covered (CONTRACT §4 "Upstream resilience"):
  * a GET is retried and succeeds on the 2nd try after a 503, a reset, a
    refused connection, a stall past read_timeout (with `timeout` in retry_on);
    idempotent methods with a small body are replayed byte for byte;
  * POST / PATCH are never retried (one upstream request, 502/503 to the client);
  * no retry once a response byte went to the client (reset mid-body: the
    client sees a truncated response, the upstream saw one request);
  * backoff pauses within the full-jitter bounds [0, min(max, base * 2^k)];
  * the circuit breaker opens after the threshold, answers 503 at once without
    touching the upstream while open (gauge 1, outcome="circuit_open" grows),
    half-opens after open_duration and closes after successful probes (or
    re-opens on a failed probe);
  * retry_on is honoured (503 not listed -> passed through, not retried).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
import time
from typing import Optional

import pytest

from gateway_harness import RawConn, build_request, error_json_problems, http_request

# Scheduling slack for timing bounds on a busy 2-core machine.
MARGIN = 0.25
# A breaker that never opens, for tests about retries that fail many times in a row.
NO_BREAKER = {"min_requests": 100000}


# ---------------------------------------------------------------------------
# A fault-injecting upstream
# ---------------------------------------------------------------------------


class Attempt:
    def __init__(self, conn_id: int, method: str, path: str, headers: list, body: bytes, at: float):
        self.conn_id = conn_id
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.at = at  # time.monotonic() when the head had been read
        self.action = None


class ScriptedUpstream:
    """Raw-socket HTTP/1.1 origin whose answers follow a per-prefix script.

    Actions (tuples):
      ("ok",)                      200, small JSON body (Content-Length)
      ("status", code)             that status, small JSON body
      ("reset",)                   read the request, then RST (SO_LINGER 0)
      ("close",)                   read the request, then FIN without answering
      ("stall", seconds)           wait, then 200
      ("partial", total, sent)     head with Content-Length total, `sent` body bytes, then RST
      ("partial_chunked", sent)    chunked head, one chunk of `sent` bytes, then RST
    """

    HEALTH = "/readyz"

    def __init__(self, listen: bool = True):
        self._lock = threading.Lock()
        self._scripts: dict = {}
        self._defaults: dict = {}
        self.attempts: list = []
        self._conns: list = []
        self._stopping = False
        self._next_conn = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bound but not listening: connects are refused (RST to the SYN).
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self._thread: Optional[threading.Thread] = None
        if listen:
            self.listen()

    def listen(self) -> None:
        self.sock.listen(256)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def plan(self, prefix: str, actions: list, then=("ok",)) -> None:
        """Requests under `prefix` take `actions` in order, then `then` forever."""
        with self._lock:
            self._scripts[prefix] = list(actions)
            self._defaults[prefix] = then

    def attempts_for(self, prefix: str) -> list:
        with self._lock:
            return [a for a in self.attempts if a.path.startswith(prefix)]

    def wait_attempts(self, prefix: str, n: int, timeout: float = 5.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.attempts_for(prefix)
            if len(got) >= n:
                return got
            time.sleep(0.005)
        return self.attempts_for(prefix)

    def stop(self) -> None:
        self._stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    # ----- internals

    def _next_action(self, path: str):
        with self._lock:
            best = None
            for prefix in self._scripts:
                if path.startswith(prefix) and (best is None or len(prefix) > len(best)):
                    best = prefix
            if best is None:
                return ("ok",)
            if self._scripts[best]:
                return self._scripts[best].pop(0)
            return self._defaults[best]

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._next_conn += 1
                cid = self._next_conn
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, cid), daemon=True).start()

    @staticmethod
    def _rst(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def _serve(self, conn: socket.socket, cid: int) -> None:
        buf = b""
        try:
            while not self._stopping:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        conn.close()
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    n, _, v = line.partition(":")
                    headers.append((n.strip(), v.strip()))
                length = 0
                for n, v in headers:
                    if n.lower() == "content-length":
                        length = int(v)
                    if n.lower() == "transfer-encoding":
                        raise RuntimeError("chunked request bodies are not scripted")
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        conn.close()
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                path = target.split("?", 1)[0]
                if path == self.HEALTH:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
                                 b'{"ok":true}')
                    continue
                att = Attempt(cid, method, path, headers, body, time.monotonic())
                action = self._next_action(path)
                att.action = action
                with self._lock:
                    self.attempts.append(att)
                if not self._act(conn, att, action):
                    return
        except OSError:
            pass

    def _act(self, conn: socket.socket, att: Attempt, action) -> bool:
        kind = action[0]
        if kind == "reset":
            self._rst(conn)
            return False
        if kind == "close":
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
            return False
        if kind == "stall":
            time.sleep(action[1])
            kind, action = "ok", ("ok",)
        if kind in ("ok", "status"):
            status = 200 if kind == "ok" else action[1]
            body = json.dumps({"attempt_conn": att.conn_id, "path": att.path, "status": status,
                               "body_sha256": hashlib.sha256(att.body).hexdigest(),
                               "body_len": len(att.body)}).encode()
            if att.method == "HEAD":
                payload = b""
            else:
                payload = body
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % (status, len(body)) + payload)
            return True
        if kind == "partial":
            total, sent = action[1], action[2]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                         % total + b"x" * sent)
            time.sleep(0.1)  # let the head and the bytes reach the client first
            self._rst(conn)
            return False
        if kind == "partial_chunked":
            sent = action[1]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % sent + b"y" * sent + b"\r\n")
            time.sleep(0.1)
            self._rst(conn)
            return False
        raise AssertionError("unknown action %r" % (action,))


@pytest.fixture
def upstream():
    u = ScriptedUpstream()
    yield u
    u.stop()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _cfg(retry=None, breaker=None, read_timeout=None, extra=None) -> dict:
    up = {"retry": {"attempts": 3, "backoff_base": "50ms", "backoff_max": "200ms"}}
    if retry:
        up["retry"].update(retry)
    if breaker:
        up["circuit_breaker"] = breaker
    if read_timeout:
        up["read_timeout"] = read_timeout
    g = {"upstream": up}
    if extra:
        g.update(extra)
    return {"gateway": g}


def scrape(gw) -> str:
    resp = http_request(gw.admin_port, "GET", "/metrics")
    assert resp.status == 200, resp.describe()
    return resp.body.decode()


def sample(text: str, name: str, labels: Optional[dict] = None) -> float:
    """Value of one series; 0 if absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            return float(m.group(4))
    return 0.0


def metric(gw, name: str, labels: Optional[dict] = None) -> float:
    return sample(scrape(gw), name, labels)


def _timed(port: int, method: str, path: str, body: Optional[bytes] = None, timeout: float = 10.0):
    t0 = time.monotonic()
    resp = http_request(port, method, path, body=body, timeout=timeout)
    return resp, time.monotonic() - t0


def _settle(upstream: ScriptedUpstream, prefix: str, wait: float = 0.3) -> list:
    """The attempts for `prefix` after a pause long enough for a wrongly scheduled retry."""
    time.sleep(wait)
    return upstream.attempts_for(prefix)


# ---------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------


def test_get_retried_after_503_succeeds_on_second_try(start_gateway, upstream):
    upstream.plan("/r503", [("status", 503)])
    gw = start_gateway(_cfg(), upstream_address=upstream.address)
    retries0 = metric(gw, "gateway_upstream_retries_total")
    resp = http_request(gw.port, "GET", "/r503/x")
    assert resp.status == 200, resp.describe()
    got = _settle(upstream, "/r503")
    assert [a.action[0] for a in got] == ["status", "ok"], [a.action for a in got]
    assert resp.json()["status"] == 200
    assert metric(gw, "gateway_upstream_retries_total") - retries0 == 1


def test_get_retried_after_reset_succeeds_on_second_try(start_gateway, upstream):
    upstream.plan("/rreset", [("reset",)])
    gw = start_gateway(_cfg(), upstream_address=upstream.address)
    resp = http_request(gw.port, "GET", "/rreset/x")
    assert resp.status == 200, resp.describe()
    got = _settle(upstream, "/rreset")
    assert [a.action[0] for a in got] == ["reset", "ok"], [a.action for a in got]
    # A fresh connection for the retry: the reset one is gone.
    assert got[0].conn_id != got[1].conn_id


def test_get_retried_after_connection_refused_succeeds_once_upstream_listens(start_gateway):
    """Nothing listens at first (port bound, not listening: connects are refused). Once
    the gateway has scheduled its first retry (gateway_upstream_retries_total moves), the
    upstream starts listening; the retry, after its jittered pause in [0, 1s], gets 200."""
    up = ScriptedUpstream(listen=False)
    try:
        gw = start_gateway(_cfg(retry={"attempts": 3, "backoff_base": "1s", "backoff_max": "1s"}),
                           upstream_address=up.address, wait_ready=False)
        result = {}

        def run():
            result["resp"] = http_request(gw.port, "GET", "/refused/x", timeout=10)

        t = threading.Thread(target=run, daemon=True)
        t0 = time.monotonic()
        t.start()
        while metric(gw, "gateway_upstream_retries_total") < 1:
            assert time.monotonic() - t0 < 5, "no retry scheduled after a refused connect"
            time.sleep(0.005)
        up.listen()
        t.join(timeout=10)
        resp = result.get("resp")
        assert resp is not None and resp.status == 200, resp.describe() if resp else "no response"
        assert len(up.attempts_for("/refused")) == 1, "a refused attempt never reaches the upstream"
        text = scrape(gw)
        assert sample(text, "gateway_upstream_requests_total", {"outcome": "connect_failure"}) >= 1
        # 1 normally; 2 only if the first pause drew < ~10ms and also hit the closed port.
        assert sample(text, "gateway_upstream_retries_total") in (1, 2), text
    finally:
        up.stop()


def test_get_retried_after_stall_past_read_timeout_when_timeout_is_listed(start_gateway, upstream):
    upstream.plan("/stall", [("stall", 1.5)])
    gw = start_gateway(_cfg(retry={"retry_on": ["connect_failure", "reset", "timeout", "502", "503", "504"]},
                            read_timeout="300ms"), upstream_address=upstream.address)
    resp, elapsed = _timed(gw.port, "GET", "/stall/x")
    assert resp.status == 200, resp.describe()
    assert len(upstream.attempts_for("/stall")) == 2
    assert 0.3 <= elapsed < 0.3 + 0.2 + 1.0, "stall 1.5s, read_timeout 300ms, retry: %.2fs" % elapsed


def test_stall_past_read_timeout_not_retried_by_default(start_gateway, upstream):
    upstream.plan("/stall", [("stall", 1.5)])
    gw = start_gateway(_cfg(read_timeout="300ms"), upstream_address=upstream.address)
    resp, elapsed = _timed(gw.port, "GET", "/stall/y")
    assert resp.status == 504, resp.describe()
    assert not error_json_problems(resp), resp.describe()
    assert len(_settle(upstream, "/stall", wait=0.5)) == 1, "timeout is not in the default retry_on"


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_methods_retried_with_the_same_body(start_gateway, upstream, method):
    upstream.plan("/idem", [("status", 502)])
    gw = start_gateway(_cfg(), upstream_address=upstream.address)
    body = b'{"k":"v","pad":"' + b"z" * 2000 + b'"}' if method in ("PUT", "DELETE") else None
    resp = http_request(gw.port, method, "/idem/x", body=body)
    assert resp.status == 200, "%s after one 502: %s" % (method, resp.describe())
    got = _settle(upstream, "/idem")
    assert len(got) == 2, "%s: upstream saw %d attempts" % (method, len(got))
    assert all(a.method == method for a in got)
    if body is not None:
        assert got[0].body == body and got[1].body == body, "the replayed body differs"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("fault,client_status", [
    (("status", 503), 503),
    (("status", 502), 502),
    (("reset",), 502),
    (("close",), 502),
])
def test_non_idempotent_methods_never_retried(start_gateway, upstream, method, fault, client_status):
    upstream.plan("/post", [fault])
    gw = start_gateway(_cfg(), upstream_address=upstream.address)
    retries0 = metric(gw, "gateway_upstream_retries_total")
    resp = http_request(gw.port, method, "/post/x", body=b'{"order":1}')
    assert resp.status == client_status, "%s, upstream %r: %s" % (method, fault, resp.describe())
    if fault[0] != "status":
        assert not error_json_problems(resp), resp.describe()
    got = _settle(upstream, "/post", wait=0.4)
    assert len(got) == 1, "%s was sent %d times after %r" % (method, len(got), fault)
    assert metric(gw, "gateway_upstream_retries_total") == retries0


def test_post_not_retried_against_a_refusing_upstream(start_gateway):
    up = ScriptedUpstream(listen=False)
    try:
        gw = start_gateway(_cfg(), upstream_address=up.address, wait_ready=False)
        resp = http_request(gw.port, "POST", "/post/refused", body=b"x")
        assert resp.status == 502, resp.describe()
        text = scrape(gw)
        assert sample(text, "gateway_upstream_retries_total") == 0
        assert sample(text, "gateway_upstream_requests_total", {"outcome": "connect_failure"}) == 1
    finally:
        up.stop()


def _read_until_closed(conn: RawConn, timeout: float) -> tuple:
    """Every byte until the server closes (FIN or RST) or `timeout`; returns (bytes, how)."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(data), "open"
        conn.sock.settimeout(remaining)
        try:
            chunk = conn.sock.recv(65536)
        except socket.timeout:
            return bytes(data), "open"
        except ConnectionResetError:
            return bytes(data), "reset"
        if not chunk:
            return bytes(data), "closed"
        data += chunk


@pytest.mark.parametrize("fault", [("partial", 100_000, 5000), ("partial_chunked", 5000)],
                         ids=["content_length", "chunked"])
def test_no_retry_after_the_first_response_byte(start_gateway, upstream, fault):
    """The upstream sends the head and 5000 body bytes, then resets. The client must get
    that head and those bytes, then a closed connection (a truncated response cannot look
    complete), and the gateway must not try again (the upstream sees one request)."""
    upstream.plan("/mid", [fault])
    gw = start_gateway(_cfg(), upstream_address=upstream.address)
    with RawConn(gw.port, timeout=5) as conn:
        conn.send(build_request("GET", "/mid/x"))
        raw, how = _read_until_closed(conn, 5)
    assert how in ("closed", "reset"), "the cut response was left hanging: %r" % raw[:300]
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200"), "the upstream's head went out before the reset: %r" % raw[:300]
    if fault[0] == "partial":
        assert b"content-length: 100000" in head.lower(), head
        assert 0 < len(body) < 100_000 and set(body) == {ord("x")}, "body of %d bytes" % len(body)
    else:
        assert b"y" * 100 in body, body[:200]
        assert not body.endswith(b"0\r\n\r\n"), "a cut chunked response was terminated as complete"
    got = _settle(upstream, "/mid", wait=0.5)
    assert len(got) == 1, "retried after response bytes went out: %d upstream attempts" % len(got)


# ---------------------------------------------------------------------------
# Backoff
# ---------------------------------------------------------------------------


def _gaps(upstream: ScriptedUpstream, prefix: str, n: int) -> list:
    got = upstream.wait_attempts(prefix, n)
    assert len(got) == n, "%s: %d attempts, expected %d" % (prefix, len(got), n)
    return [got[i + 1].at - got[i].at for i in range(n - 1)]


def test_backoff_pauses_within_full_jitter_bounds(start_gateway, upstream):
    """attempts 3, base 200ms, max 1s: pause k (k = 0, 1) in [0, min(1s, 200ms * 2^k)]."""
    upstream.plan("/bo", [], then=("reset",))
    gw = start_gateway(_cfg(retry={"attempts": 3, "backoff_base": "200ms", "backoff_max": "1s"}, breaker=NO_BREAKER),
                       upstream_address=upstream.address)
    ceilings = [0.2, 0.4]
    samples = []
    for i in range(8):
        resp, elapsed = _timed(gw.port, "GET", "/bo/%d" % i)
        assert resp.status == 502, resp.describe()
        gaps = _gaps(upstream, "/bo/%d" % i, 3)
        samples.append(gaps)
        for k, (gap, ceiling) in enumerate(zip(gaps, ceilings)):
            assert 0 <= gap <= ceiling + MARGIN, "request %d pause %d: %.3fs, ceiling %.1fs" % (i, k, gap, ceiling)
        assert elapsed <= sum(ceilings) + 2 * MARGIN, "request %d took %.2fs" % (i, elapsed)
    # Jitter, not a fixed pause: the pauses before the 2nd try spread over the interval.
    first = [g[0] for g in samples]
    assert max(first) - min(first) > 0.03, "pauses before the 2nd try barely vary: %r" % first
    assert len(_settle(upstream, "/bo/", wait=0.2)) == 24, "exactly 3 attempts per request"


def test_backoff_ceiling_capped_by_backoff_max(start_gateway, upstream):
    """attempts 4, base 200ms, max 300ms: ceilings 200ms, 300ms (not 400), 300ms (not 800)."""
    upstream.plan("/cap", [], then=("reset",))
    gw = start_gateway(_cfg(retry={"attempts": 4, "backoff_base": "200ms", "backoff_max": "300ms"}, breaker=NO_BREAKER),
                       upstream_address=upstream.address)
    ceilings = [0.2, 0.3, 0.3]
    last = []
    for i in range(6):
        resp = http_request(gw.port, "GET", "/cap/%d" % i)
        assert resp.status == 502, resp.describe()
        gaps = _gaps(upstream, "/cap/%d" % i, 4)
        for k, (gap, ceiling) in enumerate(zip(gaps, ceilings)):
            assert 0 <= gap <= ceiling + MARGIN, "request %d pause %d: %.3fs, ceiling %.1fs" % (i, k, gap, ceiling)
        last.append(gaps[2])
    # Uncapped (ceiling 800ms) six draws would all stay under 550ms with probability ~(0.69)^6 = 11%;
    # capped, the largest is at most 300ms + scheduling.
    assert max(last) <= 0.3 + MARGIN, last


def test_refused_connects_total_time_within_backoff_bounds(start_gateway):
    up = ScriptedUpstream(listen=False)
    try:
        gw = start_gateway(_cfg(retry={"attempts": 3, "backoff_base": "200ms", "backoff_max": "1s"},
                                breaker=NO_BREAKER), upstream_address=up.address, wait_ready=False)
        for i in range(5):
            resp, elapsed = _timed(gw.port, "GET", "/refused/%d" % i)
            assert resp.status == 502, resp.describe()
            assert not error_json_problems(resp), resp.describe()
            assert elapsed <= 0.2 + 0.4 + 2 * MARGIN, "3 refused attempts took %.2fs (pauses <= 200ms + 400ms)" % elapsed
        text = scrape(gw)
        assert sample(text, "gateway_upstream_retries_total") == 10
        assert sample(text, "gateway_upstream_requests_total", {"outcome": "connect_failure"}) == 15
    finally:
        up.stop()


# ---------------------------------------------------------------------------
# Circuit breaker
# ---------------------------------------------------------------------------

BREAKER = {"min_requests": 5, "failure_ratio": 0.5, "window": "5s", "open_duration": "1s", "half_open_requests": 2}


def _breaker_gateway(start_gateway, upstream):
    # One attempt per request, so that each request is one breaker outcome.
    return start_gateway(_cfg(retry={"attempts": 1}, breaker=BREAKER), upstream_address=upstream.address)


def _open_breaker(gw, upstream) -> None:
    upstream.plan("/cb", [], then=("status", 500))
    for i in range(4):
        assert http_request(gw.port, "GET", "/cb/fail%d" % i).status == 500
        assert metric(gw, "gateway_circuit_breaker_state") == 0, "opened before min_requests (%d failures)" % (i + 1)
    assert http_request(gw.port, "GET", "/cb/fail4").status == 500
    assert metric(gw, "gateway_circuit_breaker_state") == 1, "5 of 5 failed (>= 0.5, min 5): should be open"


def test_breaker_opens_after_threshold_fails_fast_then_closes_after_probes(start_gateway, upstream):
    gw = _breaker_gateway(start_gateway, upstream)
    # Below the ratio: 3 successes + 2 failures (0.4) keeps it closed.
    upstream.plan("/cb", [("ok",), ("status", 500), ("ok",), ("status", 500), ("ok",)])
    for i in range(5):
        http_request(gw.port, "GET", "/cb/mixed%d" % i)
    assert metric(gw, "gateway_circuit_breaker_state") == 0, "2 of 5 failed (< 0.5): must stay closed"
    # One more failure: 3 of 6 = 0.5 >= failure_ratio with 6 >= min_requests -> open.
    upstream.plan("/cb", [], then=("status", 500))
    assert http_request(gw.port, "GET", "/cb/more").status == 500
    assert metric(gw, "gateway_circuit_breaker_state") == 1, "3 of 6 failed: should be open"
    seen = len(upstream.attempts_for("/cb"))
    open0 = metric(gw, "gateway_upstream_requests_total", {"outcome": "circuit_open"})

    # Open: 503 at once, the upstream untouched.
    upstream.plan("/cb", [], then=("ok",))
    for i in range(5):
        resp, elapsed = _timed(gw.port, "GET", "/cb/open%d" % i)
        assert resp.status == 503, resp.describe()
        assert not error_json_problems(resp), resp.describe()
        assert elapsed < 0.1 + MARGIN, "fail-fast 503 took %.3fs" % elapsed
    assert len(upstream.attempts_for("/cb")) == seen, "the upstream was contacted while the breaker was open"
    text = scrape(gw)
    assert sample(text, "gateway_circuit_breaker_state") == 1
    assert sample(text, "gateway_upstream_requests_total", {"outcome": "circuit_open"}) - open0 == 5

    # After open_duration (1s): half-open, 2 successful probes close it.
    time.sleep(1.1)
    assert metric(gw, "gateway_circuit_breaker_state") == 2, "after open_duration the gauge shows half-open"
    for i in range(2):
        resp = http_request(gw.port, "GET", "/cb/probe%d" % i)
        assert resp.status == 200, "probe %d: %s" % (i, resp.describe())
    assert metric(gw, "gateway_circuit_breaker_state") == 0, "2 successful probes (half_open_requests 2) close it"
    assert len(upstream.attempts_for("/cb/probe")) == 2
    for i in range(5):
        assert http_request(gw.port, "GET", "/cb/after%d" % i).status == 200
    assert metric(gw, "gateway_circuit_breaker_state") == 0


def test_breaker_failed_probe_reopens(start_gateway, upstream):
    gw = _breaker_gateway(start_gateway, upstream)
    _open_breaker(gw, upstream)
    time.sleep(1.1)
    assert metric(gw, "gateway_circuit_breaker_state") == 2
    # The probe fails (still 500): open again for another second.
    assert http_request(gw.port, "GET", "/cb/probe-fail").status == 500
    assert metric(gw, "gateway_circuit_breaker_state") == 1
    seen = len(upstream.attempts_for("/cb"))
    resp, elapsed = _timed(gw.port, "GET", "/cb/again")
    assert resp.status == 503 and elapsed < 0.1 + MARGIN, resp.describe()
    assert len(upstream.attempts_for("/cb")) == seen
    upstream.plan("/cb", [], then=("ok",))
    time.sleep(1.1)
    assert [http_request(gw.port, "GET", "/cb/p%d" % i).status for i in range(2)] == [200, 200]
    assert metric(gw, "gateway_circuit_breaker_state") == 0


def test_breaker_counts_connect_failures_and_resets(start_gateway, upstream):
    """Transport failures count like 5xx: 5 resets (retries off) open the breaker."""
    gw = _breaker_gateway(start_gateway, upstream)
    upstream.plan("/cb", [], then=("reset",))
    for i in range(5):
        assert http_request(gw.port, "GET", "/cb/r%d" % i).status == 502
    assert metric(gw, "gateway_circuit_breaker_state") == 1
    seen = len(upstream.attempts_for("/cb"))
    resp = http_request(gw.port, "GET", "/cb/fast")
    assert resp.status == 503, resp.describe()
    assert len(upstream.attempts_for("/cb")) == seen


def test_open_breaker_stops_retries_of_a_request(start_gateway, upstream):
    """With retries on, each try takes a breaker permit: once the breaker opens in the
    middle of a request's retries, that request stops (503) instead of hitting the upstream."""
    gw = start_gateway(_cfg(retry={"attempts": 3, "backoff_base": "10ms", "backoff_max": "20ms"}, breaker=BREAKER),
                       upstream_address=upstream.address)
    upstream.plan("/cb", [], then=("status", 503))
    statuses = [http_request(gw.port, "GET", "/cb/x%d" % i).status for i in range(3)]
    # 1st request: 3 tries (503 x3) -> 503; 2nd: tries 4, 5 fail -> opens -> 3rd try refused -> 503.
    assert statuses == [503, 503, 503], statuses
    assert len(upstream.attempts_for("/cb")) == 5, "attempts after the breaker opened: %r" % [
        a.path for a in upstream.attempts_for("/cb")]
    assert metric(gw, "gateway_circuit_breaker_state") == 1


# ---------------------------------------------------------------------------
# retry_on
# ---------------------------------------------------------------------------


def test_retry_on_without_503_passes_503_through_unretried(start_gateway, upstream):
    upstream.plan("/ro", [("status", 503)])
    gw = start_gateway(_cfg(retry={"retry_on": ["connect_failure", "reset", "502", "504"]}),
                       upstream_address=upstream.address)
    resp = http_request(gw.port, "GET", "/ro/x")
    assert resp.status == 503, resp.describe()
    assert resp.json()["status"] == 503, "the upstream's own 503 body passes through: %s" % resp.describe()
    assert len(_settle(upstream, "/ro", wait=0.4)) == 1
    assert metric(gw, "gateway_upstream_retries_total") == 0
    # 502 is still listed: retried.
    upstream.plan("/ro", [("status", 502)])
    assert http_request(gw.port, "GET", "/ro/y").status == 200
    assert len(upstream.attempts_for("/ro/y")) == 2


def test_retry_on_without_reset_passes_reset_as_502(start_gateway, upstream):
    upstream.plan("/ro", [("reset",)])
    gw = start_gateway(_cfg(retry={"retry_on": ["connect_failure", "502", "503", "504"]}),
                       upstream_address=upstream.address)
    resp = http_request(gw.port, "GET", "/ro/reset")
    assert resp.status == 502, resp.describe()
    assert len(_settle(upstream, "/ro", wait=0.4)) == 1


def test_retry_on_5xx_retries_500(start_gateway, upstream):
    upstream.plan("/ro", [("status", 500), ("status", 500)])
    gw = start_gateway(_cfg(retry={"retry_on": ["5xx"]}), upstream_address=upstream.address)
    resp = http_request(gw.port, "GET", "/ro/500")
    assert resp.status == 200, resp.describe()
    assert len(upstream.attempts_for("/ro")) == 3


def test_half_open_admits_only_half_open_requests_probes_at_a_time(start_gateway, upstream):
    gw = _breaker_gateway(start_gateway, upstream)
    _open_breaker(gw, upstream)
    upstream.plan("/cb", [], then=("stall", 0.6))
    time.sleep(1.1)
    results = {}

    def run(i):
        results[i] = _timed(gw.port, "GET", "/cb/hp%d" % i)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)  # the first two are probes in flight when the others arrive
    for t in threads:
        t.join(timeout=10)
    statuses = sorted(r.status for r, _ in results.values())
    assert statuses == [200, 200, 503, 503], "4 concurrent requests, half_open_requests 2: %r" % statuses
    for resp, elapsed in results.values():
        if resp.status == 503:
            assert elapsed < 0.1 + MARGIN, "refused half-open request took %.3fs" % elapsed
    assert len(upstream.attempts_for("/cb/hp")) == 2
    assert metric(gw, "gateway_circuit_breaker_state") == 0


# ---------------------------------------------------------------------------
# request_timeout bounds the retries
# ---------------------------------------------------------------------------


def test_retries_never_run_past_request_timeout(start_gateway, upstream):
    upstream.plan("/deadline", [], then=("reset",))
    gw = start_gateway(_cfg(retry={"attempts": 10, "backoff_base": "1s", "backoff_max": "1s"}, breaker=NO_BREAKER,
                            extra={"request_timeout": "600ms"}), upstream_address=upstream.address)
    for i in range(3):
        resp, elapsed = _timed(gw.port, "GET", "/deadline/%d" % i)
        assert resp.status in (502, 504), resp.describe()
        assert not error_json_problems(resp), resp.describe()
        assert elapsed <= 0.6 + MARGIN, "request_timeout 600ms, yet %.2fs with retries" % elapsed
    time.sleep(0.3)
    last = upstream.attempts_for("/deadline/2")
    assert last and last[-1].at - last[0].at <= 0.6 + MARGIN, "an attempt started past request_timeout"
