#!/usr/bin/python3
"""Soak test: mixed traffic through the full stack for a long time, with a fault every interval.

    scripts/soak.py --seconds 1800            # what `make soak` runs (SOAK_SECONDS)
    scripts/soak.py --seconds 60 --no-plot    # the short version in `make test`

Stack: a real PostgreSQL 15 + PgBouncer (transaction pooling) + Redis from tests/harness/stack.py on
free loopback ports, migrated and seeded, then build/upstream_app/upstream_app and
build/gateway/gateway with one config derived from conf/app.yaml (listeners moved to free
127.0.0.1 ports; everything else as shipped, tracing exported to a counting OTLP sink started here).

Traffic: --clients threads at --rate requests/s in all (modest on purpose: the machine is shared).
Thread 0 opens a new connection per request (accept/close paths), the others keep theirs alive.
Mix: GET /articles/{id} (hot set + long tail, half with Accept-Encoding: gzip, body checked),
conditional GETs expecting 304, GET /orders?limit=20 (sometimes with &after=), GET /orders/{id},
POST /orders with an Idempotency-Key (some replayed: same order back), GET /heavy (rate limited:
200 or 429 with Retry-After), GET /healthz. Anything else is an error: another status, a reset,
a close without a response, a timeout, a wrong body.

Faults, one every --fault-interval seconds, rotating: upstream_app SIGKILL + restart, Redis restart,
PgBouncer restart, upstream_app SIGSTOP for a few seconds then SIGCONT, gateway SIGHUP with a
changed config, PostgreSQL restart. A fault window lasts from the fault's start until recovery
(gateway /readyz 200, upstream_app /readyz 200, three good requests in a row through the gateway)
plus --grace seconds.

Every --sample-interval seconds: VmRSS and open fds of the gateway and the app (/proc), their pool
sizes (/metrics) and the host's CPU pressure (PSI, to read errors against a busy shared machine).

Fails (exit 1) on: an unexpected exit of the gateway or the app, a sanitizer report in their
stderr, a non-zero exit at the final SIGTERM, a fault not recovered within 90 s, any error outside
a fault window, and a leak trend. Trends use the second half of the run (samples outside fault
windows, the first 20 s of each app process skipped) and a least-squares slope per process (app
restarts are separate segments with their own intercepts): VmRSS above --rss-slope-kib KiB/min,
or "fds-pools" growing by more than --fd-growth over that half. fds-pools is open fds minus the
connections the pools and clients hold (gateway: upstream pool + client connections; app: DB pool
+ shipping pool + the gateway's upstream pool): pools grow and shrink with load and faults, a leak
only goes up. An RSS slope is only meaningful over minutes: when the second half is shorter than
4 minutes (the 60 s version), the RSS check is a coarse one instead (growth within the second
half above --short-rss-growth-mib MiB).

Writes to --out: samples.csv, requests_10s.csv, windows.csv, errors.csv, the process logs,
summary.txt and, when gnuplot is installed (and not --no-plot), soak.png.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from harness.ports import free_ports  # noqa: E402
from harness.stack import STACK_SCRIPT, DataStack  # noqa: E402
from gateway_harness import (  # noqa: E402
    RawConn,
    ResponseTimeout,
    ServerClosed,
    ServerReset,
    build_request,
    http_request,
)

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "WARNING: ThreadSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "ERROR: ThreadSanitizer")
ARTICLES = 10000  # CONTRACT §5 demo data
ORDERS = 1000
HOT_ARTICLES = 300
REQUEST_TIMEOUT = 20.0  # above read_timeout (3 s) x 3 attempts + backoff: a slow answer is still an answer
RECOVERY_TIMEOUT = 90.0
APP_WARMUP = 20.0  # seconds after an app (re)start not used for trends (pools, caches filling)

FAULTS = ["upstream_sigkill", "redis_restart", "pgbouncer_restart", "upstream_sigstop", "gateway_sighup",
          "postgres_restart"]


def log(msg: str) -> None:
    print("soak: %s" % msg, flush=True)


class SoakFailure(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# OTLP sink: the tracing exporters need a collector; this one counts and forgets.
# ---------------------------------------------------------------------------------------------


class _OtlpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.server.posts += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


class OtlpSink:
    def __init__(self, port: int):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _OtlpHandler)
        self.server.daemon_threads = True
        self.server.posts = 0  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "OtlpSink":
        self.thread.start()
        return self

    @property
    def posts(self) -> int:
        return self.server.posts  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


class Proc:
    """One binary started with --config, stdout/stderr appended to files in `out`."""

    def __init__(self, name: str, binary: Path, config_path: Path, out: Path):
        self.name = name
        self.binary = binary
        self.config_path = config_path
        self.stdout_path = out / ("%s.stdout.log" % name)
        self.stderr_path = out / ("%s.stderr.log" % name)
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.expected_down = False  # set while a fault deliberately has it down

    def start(self) -> None:
        self.starts += 1
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            stamp = ("--- soak: start #%d at %s ---\n" % (self.starts, time.strftime("%H:%M:%S"))).encode()
            out.write(stamp)
            err.write(stamp)
            out.flush()
            err.flush()
            # A ThreadSanitizer build (make tsan) gets the project's suppressions; others ignore it.
            env = dict(os.environ)
            env.setdefault("TSAN_OPTIONS", "suppressions=%s" % (REPO_ROOT / "tests" / "tsan.supp"))
            self.proc = subprocess.Popen([str(self.binary), "--config", str(self.config_path)], stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL, cwd=str(REPO_ROOT), env=env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float) -> Optional[int]:
        """SIGTERM and wait; None when it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGCONT)  # never leave it stopped
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def stderr_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def sanitizer_reports(self) -> list:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def wait_http(port: int, path: str, timeout: float, proc: Optional[Proc] = None) -> None:
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and proc.exited() is not None:
            raise SoakFailure("%s exited (%s) during start-up:\n%s" % (proc.name, proc.exited(), proc.stderr_tail()))
        try:
            resp = http_request(port, "GET", path, timeout=2.0)
            if resp.status == 200:
                return
            last = "%d %r" % (resp.status, resp.body[:200])
        except (OSError, ServerClosed, ServerReset, ResponseTimeout, AssertionError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise SoakFailure("127.0.0.1:%d%s not 200 within %.0fs (last: %s)" % (port, path, timeout, last))


def cpu_pressure_total() -> Optional[int]:
    """Microseconds some task waited for a CPU, host-wide (PSI), or None without PSI.

    Sampled so that an error outside a fault window can be read against what the rest of the
    machine was doing (a shared 2-core machine stalls everything now and then)."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def scrape(port: int) -> Optional[dict]:
    """Prometheus text from 127.0.0.1:port/metrics as {metric name: sum over its label sets}."""
    try:
        resp = http_request(port, "GET", "/metrics", timeout=1.5, headers=[("X-Request-ID", "soak-scrape")])
    except (OSError, ServerClosed, ServerReset, ResponseTimeout, AssertionError):
        return None
    if resp.status != 200:
        return None
    totals = {}
    for line in resp.body.decode(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        name = name_labels.split("{", 1)[0]
        totals[name] = totals.get(name, 0.0) + v
    return totals


def proc_sample(pid: int) -> tuple:
    """(VmRSS KiB, open fds, threads, cpu seconds) of a live process, or Nones."""
    try:
        rss = threads = None
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        fds = len(os.listdir("/proc/%d/fd" % pid))
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return rss, fds, threads, cpu
    except (OSError, ValueError, IndexError):
        return None, None, None, None


# ---------------------------------------------------------------------------------------------
# Traffic
# ---------------------------------------------------------------------------------------------


class Recorder:
    """Every request's (start, end, kind, outcome) and the errors, thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (t0, t1, kind, ok)
        self.errors = []  # dicts
        self.x_cache = {}

    def add(self, t0: float, t1: float, kind: str, ok: bool, outcome: str, detail: str = "", rid: str = "") -> None:
        with self.lock:
            self.requests.append((t0, t1, kind, ok))
            if not ok:
                self.errors.append({"t0": t0, "t1": t1, "kind": kind, "outcome": outcome, "detail": detail[:300],
                                    "request_id": rid})

    def cache(self, value: Optional[str]) -> None:
        if value:
            with self.lock:
                self.x_cache[value] = self.x_cache.get(value, 0) + 1


class Bad(Exception):
    """A response that is not what this request must get."""

    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome = outcome


def decoded_body(resp) -> bytes:
    encoding = (resp.header("content-encoding") or "").lower()
    if encoding == "gzip":
        return gzip.decompress(resp.body)
    if encoding in ("", "identity"):
        return resp.body
    raise Bad("bad_encoding", "Content-Encoding %r not asked for" % encoding)


def json_body(resp):
    try:
        return json.loads(decoded_body(resp))
    except (ValueError, OSError, zlib.error, EOFError) as exc:
        raise Bad("bad_body", "%s: %r" % (exc, resp.body[:200]))


def expect_status(resp, *statuses: int) -> None:
    if resp.status not in statuses:
        raise Bad(str(resp.status), "%d %r" % (resp.status, resp.body[:200]))


class Client(threading.Thread):
    MIX = [("article", 33), ("article_304", 15), ("orders", 12), ("order", 8), ("order_post", 10),
           ("heavy", 6), ("healthz", 16)]

    def __init__(self, soak: "Soak", index: int, rate: float, fresh_connections: bool):
        super().__init__(name="client-%d" % index, daemon=True)
        self.soak = soak
        self.index = index
        self.interval = 1.0 / rate
        self.fresh = fresh_connections
        self.rng = random.Random(1000 + index)
        self.conn: Optional[RawConn] = None
        self.conn_left = 0
        self.etags = {}  # (article id, gzip) -> ETag
        self.last_post = None  # (key, body, order id, redis epoch)
        self.n = 0
        self.kinds = [k for k, _ in self.MIX]
        self.weights = [w for _, w in self.MIX]

    def run(self) -> None:
        next_t = time.monotonic() + self.rng.random() * self.interval
        while not self.soak.stop_traffic.is_set():
            next_t += self.interval * (0.5 + self.rng.random())
            delay = next_t - time.monotonic()
            if delay > 0:
                if self.soak.stop_traffic.wait(delay):
                    break
            elif delay < -1.0:
                next_t = time.monotonic()  # after a stall, no burst to catch up
            self.one()
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def one(self) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind == "article_304" and not self.etags:
            kind = "article"
        self.n += 1
        rid = "soak-%d-%d" % (self.index, self.n)
        headers = [("X-Request-ID", rid), ("User-Agent", "soak")]
        method, body, check = self.plan(kind, headers)
        path = check.path  # type: ignore[attr-defined]
        now = self.soak.now
        t0 = now()
        try:
            if self.conn is None:
                self.conn = RawConn(self.soak.gw_port, timeout=REQUEST_TIMEOUT)
                self.conn_left = 1 if self.fresh else self.rng.randint(20, 300)
            self.conn_left -= 1
            if self.conn_left <= 0:
                headers.append(("Connection", "close"))
            self.conn.send(build_request(method, path, headers, body))
            resp = self.conn.read_response(timeout=REQUEST_TIMEOUT, method=method)
            self.soak.rec.cache(resp.header("x-cache"))
            if resp.header("x-request-id") not in (None, rid):
                raise Bad("bad_request_id", "X-Request-ID %r for %r" % (resp.header("x-request-id"), rid))
            check(resp)
            if self.conn_left <= 0 or "close" in resp.connection_tokens():
                self.close()
            self.soak.rec.add(t0, now(), kind, True, str(resp.status))
        except Bad as exc:
            self.close()
            self.soak.rec.add(t0, now(), kind, False, exc.outcome, "%s %s: %s" % (method, path, exc), rid)
        except (ServerClosed, ServerReset, ResponseTimeout, OSError, AssertionError) as exc:
            self.close()
            outcome = {ServerClosed: "closed", ServerReset: "reset", ResponseTimeout: "timeout"}.get(
                type(exc), "conn_error" if isinstance(exc, OSError) else "malformed")
            self.soak.rec.add(t0, now(), kind, False, outcome, "%s %s: %r" % (method, path, exc), rid)

    # Each plan returns (method, body, check); check.path is the request target.
    def plan(self, kind: str, headers: list):
        rng = self.rng
        if kind == "article":
            aid = rng.randint(1, HOT_ARTICLES) if rng.random() < 0.8 else rng.randint(1, ARTICLES)
            gz = rng.random() < 0.5
            if gz:
                headers.append(("Accept-Encoding", "gzip"))

            def check(resp):
                expect_status(resp, 200)
                doc = json_body(resp)
                if doc.get("id") != aid or not doc.get("title") or not doc.get("body"):
                    raise Bad("bad_body", "article %d: %r" % (aid, str(doc)[:200]))
                etag = resp.header("etag")
                if not etag:
                    raise Bad("no_etag", "article %d without ETag" % aid)
                self.etags[(aid, gz)] = etag

            check.path = "/articles/%d" % aid
            return "GET", None, check
        if kind == "article_304":
            (aid, gz), etag = rng.choice(list(self.etags.items()))
            if gz:
                headers.append(("Accept-Encoding", "gzip"))
            headers.append(("If-None-Match", etag))

            def check(resp):
                if resp.status == 304:
                    return
                expect_status(resp, 200)
                if resp.header("etag") == etag:
                    raise Bad("ignored_if_none_match", "200 with the ETag %s that was sent" % etag)
                self.etags[(aid, gz)] = resp.header("etag")  # changed representation: a 200 is right

            check.path = "/articles/%d" % aid
            return "GET", None, check
        if kind == "orders":
            path = "/orders?limit=20"
            if rng.random() < 0.2:
                path += "&after=%d" % rng.randint(2, ORDERS)

            def check(resp):
                expect_status(resp, 200)
                doc = json_body(resp)
                items = doc.get("orders") if isinstance(doc, dict) else doc
                if not isinstance(items, list) or len(items) > 20:
                    raise Bad("bad_body", "orders page: %r" % str(doc)[:200])

            check.path = path
            return "GET", None, check
        if kind == "order":
            oid = rng.randint(1, ORDERS)

            def check(resp):
                expect_status(resp, 200)
                doc = json_body(resp)
                if doc.get("id") != oid:
                    raise Bad("bad_body", "order %d: %r" % (oid, str(doc)[:200]))

            check.path = "/orders/%d" % oid
            return "GET", None, check
        if kind == "order_post":
            epoch = self.soak.redis_epoch
            replay = self.last_post if (self.last_post and self.last_post[3] == epoch and rng.random() < 0.3) else None
            if replay:
                key, body = replay[0], replay[1]
            else:
                key = "soak-%d-%d-%d" % (os.getpid(), self.index, self.n)
                body = json.dumps({"customer_id": rng.randint(1, 100), "items": [
                    {"sku": "SOAK-%d" % rng.randint(1, 50), "quantity": rng.randint(1, 3),
                     "unit_price_cents": rng.randint(100, 5000)} for _ in range(rng.randint(1, 3))]}).encode()
            headers.extend([("Content-Type", "application/json"), ("Idempotency-Key", key)])

            def check(resp):
                expect_status(resp, 201)
                doc = json_body(resp)
                if not isinstance(doc.get("id"), int):
                    raise Bad("bad_body", "created order: %r" % str(doc)[:200])
                if replay:
                    if doc["id"] != replay[2]:
                        raise Bad("idempotency", "key %s replayed as order %s, first was %s"
                                  % (key, doc["id"], replay[2]))
                    self.last_post = None
                else:
                    self.last_post = (key, body, doc["id"], epoch)

            check.path = "/orders"
            return "POST", body, check
        if kind == "heavy":
            def check(resp):
                expect_status(resp, 200, 429)
                if resp.status == 429 and not resp.header("retry-after"):
                    raise Bad("429_without_retry_after", resp.describe()[:300])
                if not resp.header("ratelimit-limit"):
                    raise Bad("no_ratelimit_headers", resp.describe()[:300])

            check.path = "/heavy"
            return "GET", None, check

        def check_health(resp):
            expect_status(resp, 200)
            if json_body(resp) != {"ok": True}:
                raise Bad("bad_body", repr(resp.body[:100]))

        check_health.path = "/healthz"
        return "GET", None, check_health


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class Window:
    def __init__(self, name: str, start: float):
        self.name = name
        self.start = start
        self.action_done: Optional[float] = None
        self.recovered: Optional[float] = None
        self.end: Optional[float] = None  # None while open
        self.note = ""


class Soak:
    def __init__(self, args):
        self.args = args
        self.out: Path = args.out
        self.build = args.build_dir
        self.rec = Recorder()
        self.stop_traffic = threading.Event()
        self.stop_sampling = threading.Event()
        self.windows: list = []
        self.samples: list = []
        self.failures: list = []
        self.crash: Optional[str] = None
        self.redis_epoch = 0
        self.t0 = 0.0
        self.stack: Optional[DataStack] = None
        self.gateway: Optional[Proc] = None
        self.app: Optional[Proc] = None
        self.sink: Optional[OtlpSink] = None
        self.reload_toggle = False
        self.lock = threading.Lock()

    # -- setup --------------------------------------------------------------------------------

    def config(self) -> dict:
        # ${VAR:-default} is replaced before parsing, as the binaries do (PyYAML cannot parse it
        # inside a flow mapping); every value that names a host or port is overridden below.
        text = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""),
                      (REPO_ROOT / "conf" / "app.yaml").read_text())
        doc = yaml.safe_load(text)
        gw_port, admin_port, app_port, otlp_port, shipping_port = free_ports(5)
        self.gw_port, self.admin_port, self.app_port, self.otlp_port = gw_port, admin_port, app_port, otlp_port
        otlp = "http://127.0.0.1:%d/v1/traces" % otlp_port
        assert self.stack is not None
        doc["redis"]["url"] = self.stack.redis_url
        g = doc["gateway"]
        g["listen"] = "127.0.0.1:%d" % gw_port
        g["admin_listen"] = "127.0.0.1:%d" % admin_port
        g["upstream"]["address"] = "127.0.0.1:%d" % app_port
        g["tracing"]["otlp_endpoint"] = otlp
        a = doc["upstream_app"]
        a["listen"] = "127.0.0.1:%d" % app_port
        a["database"]["url"] = self.stack.db_url
        a["shipping"]["base_url"] = "http://127.0.0.1:%d" % shipping_port  # not called by this traffic
        a["tracing"]["otlp_endpoint"] = otlp
        return doc

    def write_config(self) -> None:
        # A reload must change something real: the gzip level and the cache rule's TTL flip.
        g = self.doc["gateway"]
        g["compression"]["gzip_level"] = 6 if self.reload_toggle else 5
        g["cache"]["rules"][0]["ttl"] = "55s" if self.reload_toggle else "60s"
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text("# Written by scripts/soak.py from conf/app.yaml.\n" + yaml.safe_dump(self.doc, sort_keys=False))
        os.replace(tmp, self.config_path)

    def setup(self) -> None:
        if self.out.exists():
            shutil.rmtree(self.out)
        (self.out / "conf").mkdir(parents=True)
        for binary in (self.build / "gateway" / "gateway", self.build / "upstream_app" / "upstream_app"):
            if not binary.exists():
                raise SoakFailure("%s is missing: build first (make build)" % binary)
        t = time.monotonic()
        self.stack = DataStack()
        self.stack.start()
        log("data stack up in %.1fs (%s)" % (time.monotonic() - t, self.stack.directory))
        self.doc = self.config()
        # Its own directory: the gateway watches the config's directory for changes.
        self.config_path = self.out / "conf" / "soak.yaml"
        self.write_config()
        app_bin = self.build / "upstream_app" / "upstream_app"
        for flag in ("--migrate", "--seed-demo"):
            t = time.monotonic()
            r = subprocess.run([str(app_bin), "--config", str(self.config_path), flag], capture_output=True,
                               text=True, timeout=300, cwd=str(REPO_ROOT))
            if r.returncode != 0:
                raise SoakFailure("upstream_app %s failed:\n%s%s" % (flag, r.stdout[-2000:], r.stderr[-2000:]))
            log("upstream_app %s in %.1fs" % (flag, time.monotonic() - t))
        self.sink = OtlpSink(self.otlp_port).start()
        self.app = Proc("upstream_app", app_bin, self.config_path, self.out)
        self.app.start()
        wait_http(self.app_port, "/readyz", 30, self.app)
        self.gateway = Proc("gateway", self.build / "gateway" / "gateway", self.config_path, self.out)
        self.gateway.start()
        wait_http(self.gw_port, "/readyz", 30, self.gateway)
        log("gateway 127.0.0.1:%d (admin %d) -> upstream_app 127.0.0.1:%d; logs in %s"
            % (self.gw_port, self.admin_port, self.app_port, self.out))

    def teardown(self) -> None:
        self.stop_traffic.set()
        self.stop_sampling.set()
        for proc in (self.gateway, self.app):  # gateway first: it drains while the app still answers
            if proc is None or proc.proc is None:
                continue
            if proc.exited() is not None:
                continue
            code = proc.stop(timeout=45)
            if code != 0:
                self.failures.append("%s: exit code %s after SIGTERM at the end (None = killed after 45s)\n%s"
                                     % (proc.name, code, proc.stderr_tail()))
        if self.sink is not None:
            self.sink.stop()
        if self.stack is not None:
            if self.stack.directory is not None:  # the stack's directory goes away with it
                logs = self.stack.directory / "log"
                for name in ("postgres.log", "pgbouncer.log", "redis.log"):
                    if (logs / name).exists():
                        shutil.copy(logs / name, self.out / ("stack-" + name))
            try:
                self.stack.stop()
            except Exception as exc:  # a stop problem is worth a line, not a traceback over the summary
                log("data stack stop: %s" % exc)

    # -- time ---------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def in_window(self, t: float) -> bool:
        for w in self.windows:
            end = w.end if w.end is not None else float("inf")
            if w.start <= t <= end:
                return True
        return False

    # -- monitoring ---------------------------------------------------------------------------

    def check_alive(self) -> None:
        for proc in (self.gateway, self.app):
            if proc is None or proc.expected_down:
                continue
            code = proc.exited()
            if code is not None and self.crash is None:
                self.crash = "%s exited unexpectedly with %s at t=%.1fs\n%s" % (proc.name, code, self.now(),
                                                                               proc.stderr_tail())
                self.stop_traffic.set()

    def sampler(self) -> None:
        last_psi, last_t = cpu_pressure_total(), self.now()
        while not self.stop_sampling.is_set():
            t = self.now()
            self.check_alive()
            row = {"t": round(t, 2), "in_window": int(self.in_window(t))}
            metrics = {}
            for label, proc, port in (("gw", self.gateway, self.admin_port), ("app", self.app, self.app_port)):
                live = proc is not None and proc.proc is not None and proc.exited() is None
                pid = proc.pid if live else None
                metrics[label] = scrape(port) if pid else None
                rss, fds, threads, cpu = proc_sample(pid) if pid else (None, None, None, None)
                row.update({label + "_pid": pid, label + "_rss_kib": rss, label + "_fds": fds,
                            label + "_threads": threads, label + "_cpu_s": cpu})
            # Open fds minus the connections the pools and clients account for: what a leak
            # raises, while pools legitimately grow and shrink with load and faults.
            gm, am = metrics["gw"], metrics["app"]
            gw_pool = gm.get("gateway_upstream_pool_connections") if gm else None
            row["gw_fds_other"] = (int(row["gw_fds"] - gw_pool - gm.get("gateway_connections_active", 0))
                                   if gw_pool is not None and row["gw_fds"] is not None else None)
            row["app_fds_other"] = (int(row["app_fds"] - am.get("db_pool_connections", 0)
                                        - am.get("http_client_pool_connections", 0) - gw_pool)
                                    if am and gw_pool is not None and row["app_fds"] is not None else None)
            psi, tp = cpu_pressure_total(), self.now()
            # Share of the interval in which some runnable task on the host waited for a CPU.
            row["host_cpu_pressure_pct"] = (round(100.0 * (psi - last_psi) / 1e6 / (tp - last_t), 1)
                                            if psi is not None and last_psi is not None and tp > last_t else None)
            last_psi, last_t = psi, tp
            with self.lock:
                self.samples.append(row)
            self.stop_sampling.wait(self.args.sample_interval)

    # -- faults -------------------------------------------------------------------------------

    def stack_start(self) -> None:
        assert self.stack is not None
        env = dict(os.environ, STACK_FSYNC="off", STACK_WAIT_SECONDS="30")
        r = subprocess.run([str(STACK_SCRIPT), "start", str(self.stack.directory), str(self.stack.pg_port),
                            str(self.stack.pgbouncer_port), str(self.stack.redis_port)],
                           capture_output=True, text=True, timeout=150, env=env)
        if r.returncode != 0:
            raise SoakFailure("stack.sh start failed:\n%s%s\n%s" % (r.stdout, r.stderr, self.stack.log_tail()))

    def stop_pidfile(self, name: str) -> None:
        assert self.stack is not None
        pid = int((self.stack.directory / "run" / name).read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while os.path.exists("/proc/%d" % pid):
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            if time.monotonic() > deadline:
                raise SoakFailure("%s (pid %d) did not stop within 15s" % (name, pid))
            time.sleep(0.05)

    def fault_redis_restart(self, w: Window) -> None:
        self.redis_epoch += 1  # idempotency keys live in Redis: older ones are gone after this
        self.stop_pidfile("redis.pid")
        time.sleep(self.args.down_seconds)
        self.stack_start()

    def fault_pgbouncer_restart(self, w: Window) -> None:
        self.stop_pidfile("pgbouncer.pid")
        time.sleep(self.args.down_seconds)
        self.stack_start()

    def fault_postgres_restart(self, w: Window) -> None:
        assert self.stack is not None
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.stack.directory / "pg"), "-l",
               str(self.stack.directory / "log" / "postgres.log"), "-m", "fast", "-w", "-t", "60", "restart"]
        if os.geteuid() == 0:
            user = os.environ.get("STACK_USER", "postgres")
            cmd = ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=str(self.stack.directory))
        if r.returncode != 0:
            raise SoakFailure("pg_ctl restart failed: %s%s" % (r.stdout, r.stderr))

    def fault_upstream_sigstop(self, w: Window) -> None:
        assert self.app is not None
        self.app.signal(signal.SIGSTOP)
        try:
            time.sleep(self.args.stop_seconds)
        finally:
            self.app.signal(signal.SIGCONT)

    def fault_upstream_sigkill(self, w: Window) -> None:
        assert self.app is not None
        self.app.expected_down = True
        self.app.signal(signal.SIGKILL)
        code = self.app.proc.wait(timeout=10)  # type: ignore[union-attr]
        w.note = "exit %d" % code
        time.sleep(1.0)  # like a container restart: the gateway sees a dead upstream meanwhile
        self.app.start()
        self.app.expected_down = False
        wait_http(self.app_port, "/healthz", 30, self.app)

    def fault_gateway_sighup(self, w: Window) -> None:
        assert self.gateway is not None
        before = self.reloads_logged()
        self.reload_toggle = not self.reload_toggle
        self.write_config()  # the directory watch may reload on this already; SIGHUP reloads regardless
        self.gateway.signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while self.reloads_logged() <= before:
            if time.monotonic() > deadline:
                raise SoakFailure("gateway logged no 'config reloaded' within 15s of SIGHUP")
            time.sleep(0.1)
        w.note = "gzip_level %d" % self.doc["gateway"]["compression"]["gzip_level"]

    def reloads_logged(self) -> int:
        assert self.gateway is not None
        n = 0
        with open(self.gateway.stdout_path, "rb") as f:
            for line in f:
                if b'"config reloaded"' in line:
                    n += 1
        return n

    def recovered(self) -> bool:
        try:
            if http_request(self.admin_port, "GET", "/readyz", timeout=2).status != 200:
                return False
            if http_request(self.app_port, "GET", "/readyz", timeout=2).status != 200:
                return False
            for _ in range(3):
                if http_request(self.gw_port, "GET", "/orders?limit=1", timeout=5,
                                headers=[("X-Request-ID", "soak-probe")]).status != 200:
                    return False
            return True
        except (OSError, ServerClosed, ServerReset, ResponseTimeout, AssertionError):
            return False

    def run_fault(self, name: str) -> Window:
        w = Window(name, self.now())
        with self.lock:
            self.windows.append(w)
        log("t=%6.1fs fault %s" % (w.start, name))
        getattr(self, "fault_" + name)(w)
        w.action_done = self.now()
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while not self.recovered():
            self.check_alive()
            if self.crash:
                raise SoakFailure(self.crash)
            if time.monotonic() > deadline:
                raise SoakFailure("no recovery within %.0fs after %s (gateway /readyz, app /readyz, "
                                  "3 good requests in a row)" % (RECOVERY_TIMEOUT, name))
            time.sleep(0.2)
        w.recovered = self.now()
        w.end = w.recovered + self.args.grace
        log("t=%6.1fs   %s recovered (%.1fs after the fault)" % (w.recovered, name, w.recovered - w.start))
        return w

    def save_metrics(self) -> None:
        """The gateway's /metrics at the end (the summary quotes the resilience counters)."""
        self.metrics_lines = []
        try:
            resp = http_request(self.admin_port, "GET", "/metrics", timeout=5)
        except (OSError, ServerClosed, ServerReset, ResponseTimeout, AssertionError):
            return
        (self.out / "gateway_metrics.txt").write_bytes(resp.body)
        wanted = ("gateway_upstream_requests_total", "gateway_upstream_retries_total", "gateway_rate_limited_total",
                  "gateway_config_reload", "gateway_circuit_breaker")
        self.metrics_lines = [line for line in resp.body.decode(errors="replace").splitlines()
                              if line.startswith(wanted)]

    # -- main ---------------------------------------------------------------------------------

    def schedule(self) -> list:
        a = self.args
        tail = min(a.fault_interval, 15.0)
        times, k = [], 1
        while k * a.fault_interval <= a.seconds - tail:
            times.append(k * a.fault_interval)
            k += 1
        return times

    def run(self) -> None:
        a = self.args
        clients = []
        self.t0 = time.monotonic()
        sampler = threading.Thread(target=self.sampler, name="sampler", daemon=True)
        sampler.start()
        for i in range(a.clients):
            c = Client(self, i, a.rate / a.clients, fresh_connections=(i == 0))
            clients.append(c)
            c.start()
        times = self.schedule()
        log("%d clients, %.0f req/s, %ds, faults at %s" % (a.clients, a.rate, a.seconds,
                                                             ", ".join("%.0fs" % t for t in times) or "none"))
        order = a.faults.split(",") if a.faults else FAULTS
        end = float(a.seconds)
        try:
            for k, t in enumerate(times):
                while self.now() < t and not self.stop_traffic.is_set():
                    self.check_alive()
                    time.sleep(min(0.5, max(0.01, t - self.now())))
                if self.stop_traffic.is_set():
                    break
                w = self.run_fault(order[k % len(order)])
                end = max(end, w.end + 5.0)  # traffic goes on past the last window's end
            while self.now() < end and not self.stop_traffic.is_set():
                self.check_alive()
                time.sleep(0.5)
        except SoakFailure as exc:
            self.failures.append(str(exc))
        finally:
            self.stop_traffic.set()
            for c in clients:
                c.join(timeout=REQUEST_TIMEOUT + 5)
            self.check_alive()
            self.save_metrics()
            self.duration = self.now()
            self.stop_sampling.set()
            sampler.join(timeout=10)
        if self.crash:
            self.failures.append(self.crash)


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------


def pooled_slope(points: list) -> Optional[tuple]:
    """Least-squares slope of y over t with one intercept per segment: [(segment, t, y)].

    Returns (slope per second, seconds spanned) or None with too few points.
    """
    by_seg = {}
    for seg, t, y in points:
        by_seg.setdefault(seg, []).append((t, y))
    num = den = 0.0
    count = 0
    span = 0.0
    for pts in by_seg.values():
        if len(pts) < 3:
            continue
        mt = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        num += sum((t - mt) * (y - my) for t, y in pts)
        den += sum((t - mt) ** 2 for t, _ in pts)
        count += len(pts)
        span += pts[-1][0] - pts[0][0]
    if count < 5 or den == 0:
        return None
    return num / den, span


def analyse(soak: Soak) -> list:
    a = soak.args
    lines = []
    failures = soak.failures
    dur = soak.duration
    windows = soak.windows

    def window_of(t0: float, t1: float) -> Optional[Window]:
        for w in windows:
            end = w.end if w.end is not None else float("inf")
            if t0 <= end and t1 >= w.start:
                return w
        return None

    reqs = soak.rec.requests
    errs = soak.rec.errors
    total = len(reqs)
    bad = len(errs)
    lines.append("soak: %.0fs, %d requests (%.1f/s), %d errors, %d faults" % (dur, total, total / max(dur, 1), bad,
                                                                              len(windows)))
    by_kind = {}
    for _, _, kind, ok in reqs:
        n = by_kind.setdefault(kind, [0, 0])
        n[0] += 1
        n[1] += 0 if ok else 1
    lines.append("requests by kind: " + ", ".join("%s %d (%d err)" % (k, v[0], v[1]) for k, v in sorted(by_kind.items())))
    if soak.rec.x_cache:
        lines.append("gateway X-Cache: " + ", ".join("%s %d" % kv for kv in sorted(soak.rec.x_cache.items())))
    if soak.sink is not None:
        lines.append("OTLP exports received: %d" % soak.sink.posts)
    if getattr(soak, "metrics_lines", None):
        lines.append("gateway metrics at the end: " + "; ".join(soak.metrics_lines))

    # Errors per window.
    per_window = {id(w): {} for w in windows}
    outside = []
    for e in errs:
        w = window_of(e["t0"], e["t1"])
        e["window"] = w.name if w else ""
        if w is None:
            outside.append(e)
        else:
            d = per_window[id(w)]
            d[e["outcome"]] = d.get(e["outcome"], 0) + 1
    lines.append("")
    lines.append("%-3s %-18s %8s %8s %10s %8s %6s  %s" % ("#", "fault", "start_s", "action_s", "recovery_s",
                                                          "requests", "errors", "errors by outcome"))
    for i, w in enumerate(windows, 1):
        end = w.end if w.end is not None else dur
        n_req = sum(1 for r in reqs if r[0] <= end and r[1] >= w.start)
        d = per_window[id(w)]
        rec = "%.1f" % (w.recovered - w.start) if w.recovered is not None else "NONE"
        act = "%.1f" % (w.action_done - w.start) if w.action_done is not None else "-"
        lines.append("%-3d %-18s %8.1f %8s %10s %8d %6d  %s%s" % (
            i, w.name, w.start, act, rec, n_req, sum(d.values()),
            ", ".join("%s:%d" % kv for kv in sorted(d.items())) or "-", ("  (" + w.note + ")") if w.note else ""))
    n_out = sum(1 for r in reqs if window_of(r[0], r[1]) is None)
    lines.append("%-3s %-18s %8s %8s %10s %8d %6d  %s" % ("-", "outside windows", "", "", "", n_out, len(outside),
                                                           ", ".join(sorted({e["outcome"] for e in outside})) or "-"))
    samples = soak.samples
    pressure = [s["host_cpu_pressure_pct"] for s in samples if s.get("host_cpu_pressure_pct") is not None]

    def pressure_near(t: float) -> str:
        near = [s["host_cpu_pressure_pct"] for s in samples
                if s.get("host_cpu_pressure_pct") is not None and t - 2 * a.sample_interval <= s["t"] <= t + 2 * a.sample_interval]
        return "host CPU pressure %.0f%%" % max(near) if near else "host CPU pressure n/a"

    if outside:
        failures.append("%d errors outside fault windows (first: %s)" % (
            len(outside), "; ".join("t=%.1f %s %s (%s) %s" % (e["t0"], e["outcome"], e["request_id"],
                                                              pressure_near(e["t0"]), e["detail"])
                                    for e in outside[:5])))

    # Resources.
    if pressure:
        srt = sorted(pressure)
        lines.append("host CPU pressure (PSI some, %% of each %.0fs sample): median %.0f%%, p90 %.0f%%, max %.0f%%"
                     % (a.sample_interval, srt[len(srt) // 2], srt[int(len(srt) * 0.9)], srt[-1]))
    lines.append("")
    lines.append("%-13s %12s %12s %12s %12s %14s %10s %15s" % (
        "process", "rss_start_mb", "rss_mid_mb", "rss_end_mb", "rss_max_mb", "slope_kib/min", "fds s/m/e",
        "fds-pools min/max"))
    half = dur / 2
    long_enough = (dur - half) >= 240
    for label, name in (("gw", "gateway"), ("app", "upstream_app")):
        rows = [s for s in samples if s[label + "_rss_kib"] is not None]
        if not rows:
            continue
        steady = [s for s in rows if not s["in_window"]]
        # App segments: one per process; its first seconds are warm-up.
        starts = {}
        for s in rows:
            starts.setdefault(s[label + "_pid"], s["t"])
        second = [s for s in steady if s["t"] >= half and s["t"] - starts[s[label + "_pid"]] >= APP_WARMUP]

        def at(frac: float, key: str):
            cands = [s for s in steady if s["t"] >= frac * dur] or rows
            return cands[0][key]

        rss_slope = pooled_slope([(s[label + "_pid"], s["t"], s[label + "_rss_kib"]) for s in second])
        fd_slope = pooled_slope([(s[label + "_pid"], s["t"], s[label + "_fds_other"]) for s in second
                                 if s[label + "_fds_other"] is not None])
        others = [s[label + "_fds_other"] for s in steady if s[label + "_fds_other"] is not None]
        slope_txt = "%.1f" % (rss_slope[0] * 60) if rss_slope else "n/a"
        lines.append("%-13s %12.1f %12.1f %12.1f %12.1f %14s %10s %15s" % (
            name, rows[0][label + "_rss_kib"] / 1024, at(0.5, label + "_rss_kib") / 1024,
            rows[-1][label + "_rss_kib"] / 1024, max(s[label + "_rss_kib"] for s in rows) / 1024, slope_txt,
            "%s/%s/%s" % (rows[0][label + "_fds"], at(0.5, label + "_fds"), rows[-1][label + "_fds"]),
            "%s/%s" % (min(others), max(others)) if others else "n/a"))
        if long_enough:
            if rss_slope is None:
                failures.append("%s: too few steady samples in the second half for the RSS trend" % name)
            elif rss_slope[0] * 60 > a.rss_slope_kib:
                failures.append("%s: RSS leak trend: %.0f KiB/min over the second half (bound %d KiB/min)"
                                % (name, rss_slope[0] * 60, a.rss_slope_kib))
        elif second:
            by_pid = {}
            for s in second:
                by_pid.setdefault(s[label + "_pid"], []).append(s[label + "_rss_kib"])
            growth = max(v[-1] - min(v) for v in by_pid.values()) / 1024
            if growth > a.short_rss_growth_mib:
                failures.append("%s: RSS grew %.1f MiB within the second half (coarse bound for short runs: %d MiB)"
                                % (name, growth, a.short_rss_growth_mib))
        if fd_slope is None:
            failures.append("%s: too few steady samples of fds and pool sizes in the second half" % name)
        else:
            growth = fd_slope[0] * (dur - half)
            if growth > a.fd_growth:
                failures.append("%s: open fds not held by a pool or client growing: +%.1f over the second half "
                                "(bound %d)" % (name, growth, a.fd_growth))
    lines.append("trend check: %s" % (
        "RSS slope over the 2nd half, bound %d KiB/min" % a.rss_slope_kib if long_enough
        else "run too short for an RSS slope; coarse bound %d MiB growth in the 2nd half" % a.short_rss_growth_mib)
        + "; fds-pools (open fds minus pool and client connections from /metrics) growth bound %d over the "
          "2nd half" % a.fd_growth)

    for proc in (soak.gateway, soak.app):
        if proc is None:
            continue
        reports = proc.sanitizer_reports()
        if reports:
            failures.append("%s: sanitizer reports in %s: %s" % (proc.name, proc.stderr_path, reports[:3]))
    return lines


def write_outputs(soak: Soak, lines: list) -> Optional[Path]:
    out = soak.out
    if soak.samples:
        with open(out / "samples.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(soak.samples[0].keys()))
            w.writeheader()
            w.writerows(soak.samples)
    with open(out / "windows.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fault", "start_s", "action_done_s", "recovered_s", "end_s", "note"])
        for win in soak.windows:
            w.writerow([win.name, round(win.start, 2), _r(win.action_done), _r(win.recovered), _r(win.end), win.note])
    with open(out / "errors.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t0", "t1", "kind", "outcome", "window", "request_id", "detail"])
        for e in soak.rec.errors:
            w.writerow([round(e["t0"], 3), round(e["t1"], 3), e["kind"], e["outcome"], e.get("window", ""),
                        e["request_id"], e["detail"]])
    buckets = {}
    for t0, _, _, ok in soak.rec.requests:
        b = buckets.setdefault(int(t0 // 10), [0, 0])
        b[0] += 1
        b[1] += 0 if ok else 1
    with open(out / "requests_10s.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "requests_per_s", "errors"])
        for k in sorted(buckets):
            if (k + 1) * 10 > soak.duration:
                break  # a partial bucket would read as a drop in traffic
            w.writerow([k * 10 + 5, round(buckets[k][0] / 10, 2), buckets[k][1]])
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    if soak.args.no_plot or not soak.samples:
        return None
    if shutil.which("gnuplot") is None:
        log("gnuplot not installed: no plot (make soak installs gnuplot-nox)")
        return None
    return plot(soak)


def _r(v: Optional[float]):
    return "" if v is None else round(v, 2)


def plot(soak: Soak) -> Optional[Path]:
    out = soak.out
    png = out / "soak.png"
    rects = []
    for i, w in enumerate(soak.windows, 1):
        end = w.end if w.end is not None else soak.duration
        rects.append("set object %d rect from %.1f, graph 0 to %.1f, graph 1 fc rgb '#ffd0d0' fs solid 0.6 noborder "
                     "behind" % (i, w.start, end))
    labels = ["set label %d '%s' at %.1f, graph 0.97 rotate by 90 right font ',7' tc rgb '#a03030'"
              % (i, w.name.replace("_", " "), w.start) for i, w in enumerate(soak.windows, 1)]
    script = """
set terminal pngcairo size 1400,1000 noenhanced font ',9'
set output '{png}'
set datafile separator ','
set key autotitle columnhead top left
set multiplot layout 3,1 title 'soak: {dur:.0f}s, {n} faults (shaded: fault windows)'
{rects}
{labels}
set grid
set xrange [0:{dur:.0f}]
set xlabel 't (s)'
set ylabel 'VmRSS (MiB)'
plot '{d}/samples.csv' using 1:($4/1024) with lines lw 2 title 'gateway', \\
     '' using 1:($9/1024) with lines lw 2 title 'upstream_app'
unset label
set key bottom right
set ylabel 'open fds'
plot '{d}/samples.csv' using 1:5 with lines lw 2 title 'gateway', '' using 1:10 with lines lw 2 title 'upstream_app', \
     '' using 1:13 with lines dt 2 title 'gateway minus pool/client conns', \
     '' using 1:14 with lines dt 2 title 'upstream_app minus pool/client conns'
set key top left
set ylabel 'req/s | errors per 10 s'
plot '{d}/requests_10s.csv' using 1:2 with lines lw 2 title 'requests/s', '' using 1:3 with impulses lw 3 title 'errors'
unset multiplot
""".format(png=png, d=out, dur=soak.duration, n=len(soak.windows), rects="\n".join(rects), labels="\n".join(labels))
    (out / "soak.gp").write_text(script)
    r = subprocess.run(["gnuplot", str(out / "soak.gp")], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        # pngcairo missing in some gnuplot builds: the libgd png terminal is the fallback.
        (out / "soak.gp").write_text(script.replace("pngcairo size 1400,1000 noenhanced font ',9'",
                                                    "png size 1400,1000 noenhanced"))
        r = subprocess.run(["gnuplot", str(out / "soak.gp")], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        log("gnuplot failed: %s" % r.stderr[-500:])
        return None
    return png


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "1800")))
    p.add_argument("--fault-interval", type=float, default=None,
                   help="seconds between faults (default 60, or seconds/4 clamped to 15..60)")
    p.add_argument("--faults", default="", help="comma-separated rotation (default: %s)" % ",".join(FAULTS))
    p.add_argument("--rate", type=float, default=60.0, help="requests/s over all clients")
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--grace", type=float, default=5.0, help="seconds a window lasts past recovery")
    p.add_argument("--down-seconds", type=float, default=2.0, help="how long Redis/PgBouncer stay down")
    p.add_argument("--stop-seconds", type=float, default=4.0, help="how long upstream_app stays SIGSTOPped")
    p.add_argument("--sample-interval", type=float, default=2.0)
    p.add_argument("--rss-slope-kib", type=int, default=256, help="RSS slope bound, KiB/min (long runs)")
    p.add_argument("--short-rss-growth-mib", type=int, default=32, help="RSS growth bound for short runs")
    p.add_argument("--fd-growth", type=int, default=8, help="open-fd growth bound over the second half")
    p.add_argument("--build-dir", type=Path, default=Path(os.environ.get("SIDECAR_BUILD_DIR", "build")))
    p.add_argument("--out", type=Path, default=None, help="output directory (default BUILD_DIR/soak)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args()
    if not args.build_dir.is_absolute():
        args.build_dir = REPO_ROOT / args.build_dir
    if args.out is None:
        args.out = args.build_dir / "soak"
    if args.fault_interval is None:
        args.fault_interval = min(60.0, max(15.0, args.seconds / 4))
    for name in filter(None, args.faults.split(",")):
        if name not in FAULTS:
            p.error("unknown fault %r (known: %s)" % (name, ", ".join(FAULTS)))
    args.out = args.out.resolve()

    soak = Soak(args)
    interrupted = False
    def on_term(*_):
        raise KeyboardInterrupt()

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        soak.setup()
        soak.run()
    except SoakFailure as exc:
        soak.failures.append(str(exc))
        soak.duration = soak.now() if soak.t0 else 0.0
    except KeyboardInterrupt:
        interrupted = True
        soak.failures.append("interrupted")
        soak.duration = soak.now() if soak.t0 else 0.0
    finally:
        soak.teardown()
        signal.signal(signal.SIGTERM, old_term)
    if not hasattr(soak, "duration"):
        soak.duration = 0.0
    lines = analyse(soak) if soak.t0 else []
    png = write_outputs(soak, lines) if soak.t0 else None
    print("\n".join(lines))
    if png:
        print("plot: %s" % png)
    print("data: %s (samples.csv, windows.csv, errors.csv, requests_10s.csv, logs)" % args.out)
    if soak.failures:
        print("\nSOAK FAILED:")
        for f in soak.failures:
            print("  - " + f.replace("\n", "\n    "))
        return 130 if interrupted else 1
    print("\nSOAK PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
