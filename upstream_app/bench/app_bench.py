#!/usr/bin/env python3
"""Full-stack benchmark of upstream_app's data endpoints (issue #9), direct and through the gateway.

    /usr/bin/python3 upstream_app/bench/app_bench.py [--duration 5] [--warmup 2] [--rounds 1]
        [--connections 64] [--threads 2] [--app-workers 1] [--gateway-workers 1]
        [--scenarios articles,304,orders,post] [--targets app,gateway,gateway-cache]

Starts its own stack on free 127.0.0.1 ports (PostgreSQL 15 + PgBouncer in transaction mode +
Redis, via tests/harness/stack.py), migrates and seeds the demo data (CONTRACT §5), starts
build/upstream_app/upstream_app and two gateways (build/gateway/gateway), then runs wrk --latency
for each scenario against each target:

  articles  GET /articles/{uniform random 1..10000}, every article cached first ("warm")
  304       GET /articles/1 with the matching If-None-Match
  orders    GET /orders?limit=20
  post      POST /orders, one new order with one item per request (201)

  app            upstream_app directly
  gateway        gateway -> upstream_app, no cache rule: every request reaches the app, so a warm
                 article is the app's Redis cache-aside hit
  gateway-cache  gateway with conf/app.yaml's cache rule (/articles/, ttl 60 s): a warm article
                 and the 304 are answered from the gateway's own cache (this is the product
                 configuration's warm path); only run for the article scenarios

Every gateway: one worker (--gateway-workers), logging and access log off, tracing and rate limits
off (conf/app.yaml samples 10 % of traces and writes access logs; this measures the request path
without them). Each timed run follows an untimed warm-up of --warmup
seconds; with --rounds N the report gives the median run (by req/s).

For each run the table gives req/s, p50, p99 and the CPU time per request of every process of the
stack (sum of /proc/PID/task/*/schedstat over the process and its children between the start and
the end of the timed run, divided by the requests wrk completed): gateway, upstream_app,
PgBouncer, PostgreSQL (postmaster and all backends), Redis and wrk itself; then the ratios to the
seed FastAPI stack's figures (/work/shared/seed-stack.md: same wrk -t2 -c64 on 2 vCPUs).
Everything shares this machine's CPUs: the figures compare targets measured in the same session.
Stdlib only; needs wrk and the built binaries (cmake --build build).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
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

# One order per request; customer and item vary so rows are not all alike.
POST_LUA = """
math.randomseed(os.time())
request = function()
  local body = string.format('{"customer_id":%d,"items":[{"sku":"SKU-%d","quantity":%d,"unit_price_cents":%d}]}',
    math.random(1, 1000), math.random(1, 500), math.random(1, 5), math.random(100, 20000))
  return wrk.format("POST", "/orders", {["Content-Type"] = "application/json"}, body)
end
"""

# The seed FastAPI stack (gunicorn 2 workers, wrk -t2 -c64, 2 vCPUs): /work/shared/seed-stack.md.
SEED = {
    "articles": {"rps": 3587, "p50": 15.60, "p99": 67.07},
    "304": {"rps": 7324, "p50": 7.49, "p99": 55.36},
    "orders": {"rps": 329, "p50": 168.07, "p99": 708.48},
}

PROCESSES = ("gateway", "upstream_app", "pgbouncer", "postgres", "redis", "wrk")


# ---------------------------------------------------------------- CPU accounting


def children_of() -> dict:
    """ppid -> [pid] for every process now."""
    tree: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the fields after the last ')' are fixed.
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_pids(root: int, tree: dict) -> list:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` (schedstat: nanoseconds on CPU), 0 if it is gone."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


class CpuMeter:
    """Per-process-tree CPU between start() and stop(); processes born in between count from 0,
    those gone before stop() lose their share (PgBouncer keeps its server connections, so the
    PostgreSQL backends live through a run)."""

    def __init__(self, roots: dict):
        self.roots = roots  # name -> pid of the tree's root
        self.before: dict = {}

    def _snapshot(self, extra: dict) -> dict:
        tree = children_of()
        snap = {}
        for name, root in {**self.roots, **extra}.items():
            if root is None:
                continue
            snap[name] = {pid: cpu_ns(pid) for pid in tree_pids(root, tree)}
        return snap

    def start(self, extra: dict) -> None:
        self.before = self._snapshot(extra)

    def stop(self, extra: dict) -> dict:
        after = self._snapshot(extra)
        out = {}
        for name, pids in after.items():
            base = self.before.get(name, {})
            out[name] = sum(max(0, ns - base.get(pid, 0)) for pid, ns in pids.items())
        return out


def busy_ns() -> int:
    """CPU time spent busy by the whole machine (all CPUs) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) * (10**9 // os.sysconf("SC_CLK_TCK"))


def read_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


# ---------------------------------------------------------------- wrk


def wrk_cmd(url: str, args, duration: int, connections: int, threads: int) -> list:
    return ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration, "--latency", *args, url]


def parse_wrk(out: str) -> dict:
    result = {"rps": 0.0, "p50": None, "p99": None, "errors": 0, "requests": 0, "raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        result["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ", out)
    if m:
        result["requests"] = int(m.group(1))
    for pct, key in (("50%", "p50"), ("99%", "p99")):
        m = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(pct), out, re.M)
        if m:
            result[key] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        result["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["errors"] += sum(int(x) for x in m.groups())
    return result


def run_wrk(cmd: list, duration: int, meter: CpuMeter = None, gateway_pid: int = None) -> dict:
    extra = {"gateway": gateway_pid}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if meter is not None:
        meter.start(extra)
    out, _ = proc.communicate(timeout=duration + 60)
    result = parse_wrk(out)
    if meter is not None:
        # wrk's own CPU is added by the caller from the reaped child's rusage.
        result["cpu_ns"] = meter.stop(extra)
    return result


# ---------------------------------------------------------------- warm-up helpers


def warm_articles(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for article in range(1, 10001):
        conn.request("GET", "/articles/%d" % article)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit("warm-up: /articles/%d answered %d" % (article, resp.status))
    conn.close()


def get(port: int, path: str, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


# ---------------------------------------------------------------- report


def fmt_ms(v) -> str:
    return "-" if v is None else "%.2f" % v


def fmt_us(ns, requests) -> str:
    if ns is None or not requests:
        return "-"
    return "%.1f" % (ns / 1000.0 / requests)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--app-workers", type=int, default=1)
    ap.add_argument("--gateway-workers", type=int, default=1)
    ap.add_argument("--scenarios", default="articles,304,orders,post")
    ap.add_argument("--targets", default="app,gateway,gateway-cache")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    args = ap.parse_args()
    env_build = Path(os.environ.get("SIDECAR_BUILD_DIR", REPO / "build"))
    for binary in (env_build / "upstream_app" / "upstream_app", env_build / "gateway" / "gateway"):
        if not binary.exists():
            raise SystemExit("%s is missing: cmake --build build first" % binary)

    work = Path(tempfile.mkdtemp(prefix="app-bench-"))
    scenarios_wanted = args.scenarios.split(",")
    targets_wanted = args.targets.split(",")
    rows = []
    with DataStack() as stack:
        app_conf = {
            "redis": {"url": stack.redis_url},
            "upstream_app": {
                "listen": "127.0.0.1:%d" % free_port(),
                "workers": args.app_workers,
                "database": {"url": stack.db_url},
                # Longer than the whole run, so "warm" stays warm (conf/app.yaml: 60 s).
                "cache_ttl": "600s",
                "tracing": {"enabled": False},
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
        upstream = "127.0.0.1:%d" % app.port

        def make_gateway(name: str, rules: list) -> Gateway:
            return Gateway(gateway_config(upstream, stack.redis_url, {"gateway": {
                "workers": args.gateway_workers,
                "logging": {"level": "warn", "access_log": False},
                "upstream": {"max_idle_connections": 200, "health_path": "/readyz", "health_interval": "1s"},
                "cache": {"max_bytes": "64MiB", "max_object_bytes": "1MiB", "rules": rules},
            }}), work, name=name)

        gateways = {
            "gateway": make_gateway("gateway", []),
            # conf/app.yaml's rule.
            "gateway-cache": make_gateway("gateway-cache", [
                {"prefix": "/articles/", "ttl": "60s", "cache_control": "public, max-age=60"}]),
        }
        gateways = {k: v for k, v in gateways.items() if k in targets_wanted}
        try:
            for gw in gateways.values():
                gw.start_and_wait()
                gw.wait_ready(10)
            meter = CpuMeter({
                "upstream_app": app.pid,
                "pgbouncer": read_pid(stack.directory / "run" / "pgbouncer.pid"),
                "postgres": read_pid(stack.directory / "pg" / "postmaster.pid"),
                "redis": read_pid(stack.directory / "run" / "redis.pid"),
            })
            print("warming the article cache (10,000 GETs)...", file=sys.stderr)
            warm_articles(app.port)
            (work / "articles.lua").write_text(ARTICLES_LUA)
            (work / "post.lua").write_text(POST_LUA)
            resp, _ = get(app.port, "/articles/1")
            etag = resp.getheader("ETag")
            scenarios = {
                "articles": ("GET /articles/{random} (warm)", "/articles/", ["-s", str(work / "articles.lua")]),
                "304": ("GET /articles/1 + If-None-Match (304)", "/articles/1", ["-H", "If-None-Match: " + etag]),
                "orders": ("GET /orders?limit=20", "/orders?limit=20", []),
                "post": ("POST /orders (1 item)", "/orders", ["-s", str(work / "post.lua")]),
            }
            ports = {"app": app.port, **{k: v.port for k, v in gateways.items()}}
            for name in scenarios_wanted:
                title, path, extra = scenarios[name]
                for target in targets_wanted:
                    if target == "gateway-cache" and name not in ("articles", "304"):
                        continue  # no cache rule matches: the same path as `gateway`
                    port = ports[target]
                    gw_pid = gateways[target].pid if target in gateways else None
                    if name == "articles":
                        # Re-warm (Redis entries, and the gateway's cache through its own port).
                        warm_articles(port)
                    if name == "304":
                        resp, _ = get(port, path, {"If-None-Match": etag})
                        if resp.status != 304:
                            raise SystemExit("%s %s: expected 304, got %d" % (target, path, resp.status))
                    url = "http://127.0.0.1:%d%s" % (port, path)
                    runs = []
                    for _ in range(args.rounds):
                        if args.warmup > 0:
                            run_wrk(wrk_cmd(url, extra, args.warmup, args.connections, args.threads), args.warmup)
                        t0, b0, w0 = os.times(), busy_ns(), time.monotonic()
                        res = run_wrk(wrk_cmd(url, extra, args.duration, args.connections, args.threads),
                                      args.duration, meter, gw_pid)
                        t1, b1, w1 = os.times(), busy_ns(), time.monotonic()
                        res["cpu_ns"]["wrk"] = int(((t1.children_user - t0.children_user)
                                                    + (t1.children_system - t0.children_system)) * 1e9)
                        # CPU the machine spent on anything but this stack: other users' work
                        # disturbs req/s and latency (CPU per request much less).
                        other = (b1 - b0) - sum(v for v in res["cpu_ns"].values() if v)
                        res["other_pct"] = max(0.0, 100.0 * other / ((w1 - w0) * 1e9 * os.cpu_count()))
                        runs.append(res)
                        print("%-40s %-13s %8.0f req/s  p50 %s ms  p99 %s ms  errors %d  CPU us/req: %s  other load %.0f%%"
                              % (title, target, res["rps"], fmt_ms(res["p50"]), fmt_ms(res["p99"]), res["errors"],
                                 " ".join("%s %s" % (p, fmt_us(res["cpu_ns"].get(p), res["requests"]))
                                          for p in PROCESSES), res["other_pct"]), file=sys.stderr)
                    runs.sort(key=lambda r: r["rps"])
                    rows.append((name, title, target, runs[len(runs) // 2], runs))
            if "post" in scenarios_wanted:
                count = stack.psql("select count(*) from orders")
                print("orders in the database after the run: %s" % count, file=sys.stderr)
        finally:
            for gw in gateways.values():
                gw.stop(10)
            app.stop(10)
            if args.keep:
                print("work directory kept: %s" % work, file=sys.stderr)

    print()
    print("wrk -t%d -c%d, %ds after %ds warm-up, %d round(s) (median by req/s); upstream_app workers %d, "
          "gateway workers %d; %d CPUs shared by every process"
          % (args.threads, args.connections, args.duration, args.warmup, args.rounds, args.app_workers,
             args.gateway_workers, os.cpu_count()))
    print()
    print("CPU µs/req: CPU time of each process tree during the timed run / requests completed. other load: "
          "CPU busy on anything outside this stack, as %% of all %d CPUs (above ~10%% the run was disturbed)."
          % os.cpu_count())
    print()
    print("| scenario | target | req/s | p50 ms | p99 ms | errors | CPU µs/req: gateway | upstream_app | pgbouncer "
          "| postgres | redis | wrk | total | other load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for _, title, target, res, _ in rows:
        cpu = res.get("cpu_ns", {})
        total = sum(v for v in cpu.values() if v)
        print("| %s | %s | %s | %s | %s | %d | %s | %.0f%% |" % (
            title, target, "{:,.0f}".format(res["rps"]), fmt_ms(res["p50"]), fmt_ms(res["p99"]), res["errors"],
            " | ".join(fmt_us(cpu.get(p), res["requests"]) for p in PROCESSES)
            + " | " + fmt_us(total, res["requests"]), res["other_pct"]))
    compared = [r for r in rows if r[0] in SEED]
    if compared:
        print()
        print("Against the seed FastAPI stack (/work/shared/seed-stack.md; target: req/s >= 10x, p99 <= 0.2x "
              "on articles warm and orders):")
        print()
        print("| scenario | target | req/s | seed req/s | req/s ratio | p99 ms | seed p99 ms | p99 ratio |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for name, title, target, res, _ in compared:
            seed = SEED[name]
            p99_ratio = "-" if res["p99"] is None else "%.3f" % (res["p99"] / seed["p99"])
            print("| %s | %s | %s | %s | %.1fx | %s | %.2f | %s |" % (
                title, target, "{:,.0f}".format(res["rps"]), "{:,}".format(seed["rps"]),
                res["rps"] / seed["rps"], fmt_ms(res["p99"]), seed["p99"], p99_ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
