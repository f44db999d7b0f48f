#!/usr/bin/env python3
"""Benchmark of upstream_app's data endpoints, direct and through the gateway.

    /usr/bin/python3 upstream_app/bench/app_bench.py [--duration 5] [--connections 64] [--threads 2]
                                                     [--app-workers 1] [--scenarios articles,orders,304]

Starts its own stack on free 127.0.0.1 ports (PostgreSQL 15 + PgBouncer in transaction mode +
Redis, via tests/harness/stack.py), migrates and seeds the demo data, starts
build/upstream_app/upstream_app and build/gateway/gateway (gateway cache rules, rate limits,
tracing and both access logs off, so the gateway forwards every request), then runs wrk --latency
for each scenario against each target and prints requests/s, p50 and p99:

  articles  GET /articles/{uniform random 1..10000}, every article in Redis first (cache warm)
  orders    GET /orders?limit=20
  304       GET /articles/1 with the matching If-None-Match

Each timed run follows an untimed warm-up of the same length as --warmup. Everything runs on this
machine: the figures compare targets measured in the same session, not machines.
Stdlib only; needs wrk and the built binaries (cmake --build build).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from harness.stack import DataStack  # noqa: E402
from gateway_harness import Gateway, UpstreamApp, free_port, gateway_config, to_yaml  # noqa: E402

ARTICLES_LUA = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/articles/" .. math.random(1, 10000))
end
"""


def wrk(url: str, args, duration: int, connections: int, threads: int) -> dict:
    cmd = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration, "--latency", *args, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    result = {"rps": 0.0, "p50": "-", "p99": "-", "errors": 0, "raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        result["rps"] = float(m.group(1))
    for pct, key in (("50%", "p50"), ("99%", "p99")):
        m = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(pct), out, re.M)
        if m:
            value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[key] = "%.2f" % value
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        result["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["errors"] += sum(int(x) for x in m.groups())
    return result


def warm_articles(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for article in range(1, 10001):
        conn.request("GET", "/articles/%d" % article)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit("warm-up: /articles/%d answered %d" % (article, resp.status))
    conn.close()


def etag_of(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.getheader("ETag")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--app-workers", type=int, default=1)
    ap.add_argument("--scenarios", default="articles,orders,304")
    ap.add_argument("--targets", default="app,gateway")
    args = ap.parse_args()
    env_build = Path(os.environ.get("SIDECAR_BUILD_DIR", REPO / "build"))
    for binary in (env_build / "upstream_app" / "upstream_app", env_build / "gateway" / "gateway"):
        if not binary.exists():
            raise SystemExit("%s is missing: cmake --build build first" % binary)

    work = Path(tempfile.mkdtemp(prefix="app-bench-"))
    with DataStack() as stack:
        app_conf = {
            "redis": {"url": stack.redis_url},
            "upstream_app": {
                "listen": "127.0.0.1:%d" % free_port(),
                "workers": args.app_workers,
                "database": {"url": stack.db_url},
                "logging": {"level": "warn", "access_log": False},
            },
        }
        (work / "migrate.yaml").write_text(to_yaml(app_conf))
        for flag in ("--migrate", "--seed-demo"):
            r = subprocess.run([str(env_build / "upstream_app" / "upstream_app"), "--config",
                                str(work / "migrate.yaml"), flag], capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise SystemExit("%s failed: %s%s" % (flag, r.stdout, r.stderr))
        app = UpstreamApp(app_conf, work, name="upstream_app")
        app.start()
        app.wait_http_ok(app.port, "/healthz", 10)
        gw = Gateway(gateway_config("127.0.0.1:%d" % app.port, stack.redis_url,
                                    {"gateway": {"logging": {"level": "warn", "access_log": False},
                                                 "upstream": {"max_idle_connections": 200}}}), work, name="gateway")
        try:
            gw.start_and_wait()
            gw.wait_ready(10)
            print("warming the article cache (10,000 GETs)...", file=sys.stderr)
            warm_articles(app.port)
            (work / "articles.lua").write_text(ARTICLES_LUA)
            etag = etag_of(app.port, "/articles/1")
            scenarios = {
                "articles": ("GET /articles/{random} (cache warm)", "/", ["-s", str(work / "articles.lua")]),
                "orders": ("GET /orders?limit=20", "/orders?limit=20", []),
                "304": ("GET /articles/1 + If-None-Match (304)", "/articles/1", ["-H", "If-None-Match: " + etag]),
            }
            targets = {"app": app.port, "gateway": gw.port}
            rows = []
            for name in args.scenarios.split(","):
                title, path, extra = scenarios[name]
                for target in args.targets.split(","):
                    url = "http://127.0.0.1:%d%s" % (targets[target], path)
                    if args.warmup > 0:
                        wrk(url, extra, args.warmup, args.connections, args.threads)
                    res = wrk(url, extra, args.duration, args.connections, args.threads)
                    rows.append((title, target, res))
                    print("%-40s %-8s %10.0f req/s  p50 %s ms  p99 %s ms  errors %d"
                          % (title, target, res["rps"], res["p50"], res["p99"], res["errors"]), file=sys.stderr)
        finally:
            gw.stop(10)
            app.stop(10)
    print()
    print("wrk -t%d -c%d, %ds after %ds warm-up; upstream_app workers: %d; %d CPUs"
          % (args.threads, args.connections, args.duration, args.warmup, args.app_workers, os.cpu_count()))
    print()
    print("| scenario | target | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for title, target, res in rows:
        print("| %s | %s | %.0f | %s | %s | %d |" % (title, target, res["rps"], res["p50"], res["p99"], res["errors"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
