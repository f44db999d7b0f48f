#!/usr/bin/env python3
"""Regression check of the gateway's cost per request (issue #9), run by `make test`.

    /usr/bin/python3 tests/perf/instructions_check.py

Runs build/gateway/gateway (tests/perf/gateway.yaml.in: bench s1's configuration) under
`valgrind --tool=callgrind` in front of a tiny origin answering a fixed 214-byte JSON, sends
warm-up requests, zeroes the counters (callgrind_control -z), sends a fixed count of keep-alive
GETs over a few connections, dumps (callgrind_control -d) and divides the instructions executed
by all of the gateway's threads by the requests answered. Prints measured vs the bound in
tests/perf/bounds.yaml and exits 1 above it: a change that makes the proxied GET much more
expensive fails the suite without a timed (noisy) benchmark. Instruction counts do not depend on
machine load, so the check is stable on a busy shared machine.

Exit: 0 within the bound, 1 over it, 2 when the measurement itself failed.
Environment: SIDECAR_BUILD_DIR (default build), PERF_S1_IR_MAX (overrides the bound; the
self-test sets a bound that cannot hold), PERF_REQUESTS (2000), PERF_CONNECTIONS (8),
PERF_WARMUP (400).
Stdlib only (the origin and the client are Python: their cost is not measured); needs valgrind.
"""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The bench's s1 document (bench/run.sh BODY), so the figures compare with bench's instr/req.
BODY = (b'{"id":4217,"title":"Proxy benchmark payload","author":{"id":17,"name":"Ada"},'
        b'"tags":["bench","json","keep-alive"],"published":true,"views":123456,"rating":4.5,'
        b'"summary":"A fixed JSON document for the proxy bench."}')
assert len(BODY) == 214
PATH = "/json"


def log(msg: str) -> None:
    print("perf-check: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- origin (own process)


def serve_origin(port: int) -> None:
    """Keep-alive HTTP/1.1 server: 200 + BODY for any GET (the gateway sends no request bodies)."""
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(BODY)) + BODY
    health = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(health if head.startswith(b"GET /healthz ") else answer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


# ---------------------------------------------------------------- client


class ClientError(Exception):
    pass


def run_client(port: int, requests: int, connections: int, timeout: float) -> int:
    """Sends `requests` GETs over `connections` keep-alive connections, one in flight per
    connection (like h2load --h1 -m1); returns how many got a 200 with the full body."""
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: perf-check\r\nAccept: */*\r\n\r\n"
               % (PATH, port)).encode()
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(min(connections, requests)):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns.append(s)
    sent = done = 0
    buffers = {}
    for s in conns:
        s.sendall(request)
        sent += 1
        buffers[s] = bytearray()
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while done < requests:
            if time.monotonic() > deadline:
                raise ClientError("timed out after %d of %d responses" % (done, requests))
            for key, _ in sel.select(1.0):
                s = key.fileobj
                chunk = s.recv(65536)
                if not chunk:
                    raise ClientError("the gateway closed a connection after %d responses" % done)
                buf = buffers[s]
                buf += chunk
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = bytes(buf[:end])
                    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                    if not head.startswith(b"HTTP/1.1 200 ") or not m:
                        raise ClientError("unexpected response: %r" % head[:200])
                    total = end + 4 + int(m.group(1))
                    if len(buf) < total:
                        break
                    if bytes(buf[end + 4:total]) != BODY:
                        raise ClientError("unexpected body: %r" % bytes(buf[end + 4:total])[:100])
                    del buf[:total]
                    done += 1
                    if sent < requests:
                        s.sendall(request)
                        sent += 1
    finally:
        for s in conns:
            sel.unregister(s)
            s.close()
        sel.close()
    return done


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClientError("%s exited with %s before listening" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise ClientError("%s not listening on %d after %.0fs" % (what, port, timeout))


def wait_serving(port: int, proc: subprocess.Popen, timeout: float) -> None:
    """The gateway answers 502/503 until its upstream pool is up: wait for a proxied 200."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClientError("gateway exited with %s during start-up" % proc.returncode)
        try:
            if run_client(port, 1, 1, 10) == 1:
                return
        except (OSError, ClientError) as e:
            last = str(e)
        time.sleep(0.2)
    raise ClientError("gateway did not proxy a 200 within %.0fs (%s)" % (timeout, last))


def read_bound() -> tuple[int, str]:
    env = os.environ.get("PERF_S1_IR_MAX")
    if env:
        return int(env), "PERF_S1_IR_MAX"
    path = HERE / "bounds.yaml"
    m = re.search(r"^s1_instructions_per_request_max:\s*(\d+)\s*$", path.read_text(), re.M)
    if not m:
        raise SystemExit("perf-check: no s1_instructions_per_request_max in %s" % path)
    return int(m.group(1)), str(path.relative_to(REPO))


def callgrind_control(flag: str, pid: int) -> None:
    r = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise ClientError("callgrind_control %s %d failed: %s%s" % (flag, pid, r.stdout, r.stderr))


def last_dump_total(work: Path, pid: int) -> int:
    """Instructions in the dump `-d` wrote: the one with the highest sequence number."""
    dumps = sorted(work.glob("cg.%d.out.*" % pid), key=lambda p: int(p.suffix[1:]))
    if not dumps:
        raise ClientError("no callgrind dump in %s" % work)
    total = None
    for line in dumps[-1].read_text(errors="replace").splitlines():
        m = re.match(r"^(?:totals|summary):\s+(\d+)", line)
        if m:
            total = int(m.group(1))
    if total is None:
        raise ClientError("no totals line in %s" % dumps[-1])
    return total


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- main


def measure(build: Path, work: Path, requests: int, connections: int, warmup: int) -> tuple[int, int]:
    """Returns (instructions, responses) of the measured window."""
    gateway = build / "gateway" / "gateway"
    if not gateway.exists():
        raise ClientError("%s is missing (cmake --build build)" % gateway)
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            raise ClientError("%s not found (Debian package valgrind; `make deps` installs it)" % tool)
    origin_port, port, admin_port = free_port(), free_port(), free_port()
    conf = (HERE / "gateway.yaml.in").read_text()
    for key, value in (("PORT", port), ("ADMIN_PORT", admin_port), ("ORIGIN_PORT", origin_port)):
        conf = conf.replace("@%s@" % key, str(value))
    (work / "gateway.yaml").write_text(conf)

    origin = subprocess.Popen([sys.executable, __file__, "--serve-origin", str(origin_port)],
                              stdout=subprocess.DEVNULL, stderr=open(work / "origin.log", "w"))
    gw = None
    try:
        wait_accepting(origin_port, origin, 10, "origin")
        gw_log = open(work / "gateway.log", "w")
        gw = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg.%%p.out" % work,
                               str(gateway), "--config", str(work / "gateway.yaml")],
                              stdout=gw_log, stderr=subprocess.STDOUT)
        wait_accepting(port, gw, 60, "gateway under callgrind")
        wait_serving(port, gw, 30)
        run_client(port, warmup, connections, 60)
        callgrind_control("-z", gw.pid)
        t0 = time.monotonic()
        done = run_client(port, requests, connections, 120)
        callgrind_control("-d", gw.pid)
        log("%d requests over %d connections in %.1fs under callgrind" % (done, connections, time.monotonic() - t0))
        return last_dump_total(work, gw.pid), done
    except ClientError:
        if gw is not None:
            log("gateway output:\n" + (work / "gateway.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        if gw is not None:
            stop(gw)
        stop(origin)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-origin":
        serve_origin(int(sys.argv[2]))
        return 0
    build = Path(os.environ.get("SIDECAR_BUILD_DIR", REPO / "build"))
    if not build.is_absolute():
        build = REPO / build
    requests = int(os.environ.get("PERF_REQUESTS", "2000"))
    connections = int(os.environ.get("PERF_CONNECTIONS", "8"))
    warmup = int(os.environ.get("PERF_WARMUP", "400"))
    bound, source = read_bound()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="perf-check-") as tmp:
        try:
            instructions, done = measure(build, Path(tmp), requests, connections, warmup)
        except ClientError as e:
            log("measurement failed: %s" % e)
            return 2
    per_request = instructions / done
    verdict = "ok" if per_request <= bound else "OVER THE BOUND"
    print("perf-check: S1 GET through the gateway: %.0f instructions/request measured (%d requests, "
          "callgrind), bound %d (%s): %s [%.0fs]"
          % (per_request, done, bound, source, verdict, time.monotonic() - start), flush=True)
    return 0 if per_request <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
