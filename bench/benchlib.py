#!/usr/bin/env python3
"""Helpers for bench/run.sh: payload generation, wrk/h2load parsing, the report.

Standard library only. Subcommands:
  gen-json OUT SIZE            deterministic JSON document of exactly SIZE bytes
  run-row  KEY=VALUE...        parse one wrk run, print one TSV row for runs.tsv
  report   RUNS PROFILE META   print the markdown report
"""

import json
import random
import re
import statistics
import sys

RUN_FIELDS = [
    "scenario", "proxy", "round", "requests", "rps", "p50_ms", "p99_ms", "errors",
    "wall_s", "proxy_cpu_s", "wrk_cpu_s", "origin_cpu_s", "proxy_core_busy_s",
    "client_core_busy_s",
]

WORDS = ("gateway proxy upstream latency header request response keep alive pool "
         "socket buffer worker event loop json article order shipping cache etag "
         "compress stream chunk timeout retry circuit breaker trace span metric").split()


def genJson(out, size):
    rng = random.Random(214)
    items = []
    doc = ""
    i = 0
    while True:
        items.append({
            "id": i,
            "title": " ".join(rng.choice(WORDS) for _ in range(6)),
            "author": {"id": rng.randrange(1000), "name": rng.choice(WORDS).title()},
            "tags": rng.sample(WORDS, 3),
            "views": rng.randrange(1_000_000),
            "body": " ".join(rng.choice(WORDS) for _ in range(40)),
        })
        candidate = json.dumps({"items": items, "pad": ""}, separators=(",", ":"))
        if len(candidate) > size:
            items.pop()
            break
        doc = candidate
        i += 1
    pad = size - len(doc)
    doc = json.dumps({"items": items, "pad": "x" * pad}, separators=(",", ":"))
    assert len(doc) == size, (len(doc), size)
    with open(out, "w") as f:
        f.write(doc)


def toMs(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        return float("nan")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[m.group(2)]
    return float(m.group(1)) * scale


def parseWrk(text):
    res = {"requests": 0, "rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"), "errors": 0}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", text, re.M)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s*" + pct + r"(?:\.0+)?%\s+(\S+)", text, re.M)
        if m:
            res[key] = toMs(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        res["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        res["errors"] += sum(int(x) for x in m.groups())
    return res


def runRow(args):
    kv = dict(a.split("=", 1) for a in args)
    with open(kv["wrk_out"]) as f:
        wrk = parseWrk(f.read())
    # bash `time` with TIMEFORMAT='%3U %3S': wrk's user and system seconds.
    with open(kv["wrk_time"]) as f:
        nums = f.read().split()
    wrkCpu = float(nums[-2]) + float(nums[-1])
    tck = float(kv["clk_tck"])
    row = {
        "scenario": kv["scenario"], "proxy": kv["proxy"], "round": kv["round"],
        "requests": wrk["requests"], "rps": wrk["rps"], "p50_ms": wrk["p50_ms"],
        "p99_ms": wrk["p99_ms"], "errors": wrk["errors"],
        "wall_s": int(kv["wall_ns"]) / 1e9,
        "proxy_cpu_s": int(kv["proxy_ns"]) / 1e9,
        "wrk_cpu_s": wrkCpu,
        "origin_cpu_s": int(kv["origin_ns"]) / 1e9,
        "proxy_core_busy_s": int(kv["proxy_core_jiffies"]) / tck,
        "client_core_busy_s": int(kv["client_core_jiffies"]) / tck,
    }
    print("\t".join(fmtField(row[k]) for k in RUN_FIELDS))


def fmtField(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def readTsv(path):
    rows = []
    try:
        with open(path) as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
    except FileNotFoundError:
        return rows
    if not lines:
        return rows
    header = lines[0].split("\t")
    for line in lines[1:]:
        rows.append(dict(zip(header, line.split("\t"))))
    return rows


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("nan")


def median(vals):
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float("nan")


def fmt(v, digits=0, comma=False):
    if v != v:
        return "n/a"
    if comma:
        return f"{v:,.{digits}f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a != a or b != b or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def bottleneck(r):
    """Which side limited the run: the one whose CPU was busy for ~the whole wall time."""
    wall = r["wall_s"]
    proxyUtil = r["proxy_cpu_s"] / wall
    clientUtil = (r["wrk_cpu_s"] + r["origin_cpu_s"]) / wall
    if proxyUtil >= 0.9 and clientUtil >= 0.9:
        return "both"
    if proxyUtil >= 0.9:
        return "proxy"
    if clientUtil >= 0.9:
        return "client"
    return "neither"


def report(runsPath, profilePath, metaPath):
    with open(metaPath) as f:
        meta = json.load(f)
    runs = readTsv(runsPath)
    for r in runs:
        for k in RUN_FIELDS[3:]:
            r[k] = num(r[k])
        r["cpu_us_per_req"] = r["proxy_cpu_s"] * 1e6 / r["requests"] if r["requests"] else float("nan")
        r["proxy_util"] = r["proxy_cpu_s"] / r["wall_s"]
        r["client_util"] = (r["wrk_cpu_s"] + r["origin_cpu_s"]) / r["wall_s"]
        # CPU time on the proxy's core that was not the proxy: other tenants, builds, IRQs.
        r["other_util"] = max(0.0, (r["proxy_core_busy_s"] - r["proxy_cpu_s"]) / r["wall_s"])
        r["other_client_util"] = max(0.0, (r["client_core_busy_s"] - r["wrk_cpu_s"] - r["origin_cpu_s"]) / r["wall_s"])
        r["bottleneck"] = bottleneck(r)
    profile = {}
    for p in readTsv(profilePath):
        profile[(p["scenario"], p["proxy"])] = p

    out = []
    w = out.append
    w("# Proxy benchmark: gateway vs nginx vs HAProxy")
    w("")
    w(f"- date: {meta['date']}")
    w(f"- host: `nproc` = {meta['nproc']}, CPU: {meta['cpu_model']}, kernel: `{meta['kernel']}`")
    w(f"- command: `{meta['command']}`")
    w(f"- versions: {meta['versions']}")
    w(f"- method: every proxy has 1 worker pinned to CPU {meta['proxy_cpu']}; origin (nginx, 1 worker, "
      f"`return 200` from memory) and `wrk -t1` pinned together to CPU {meta['client_cpu']}; "
      f"{meta['rounds']} interleaved rounds ({' '.join(meta['proxies'])} ...) of {meta['duration']} s "
      f"after a {meta['warmup']} s warm-up per run; figures are medians over rounds; "
      f"benchmark processes at nice {meta.get('nice', '0')}. "
      "Access logs are off on all three proxies; all add X-Forwarded-For/-Proto/-Host and an "
      "X-Request-ID and gzip JSON >= 1 KiB (HAProxy with libslz, which has no compression levels).")
    w("- CPU µs/req = proxy process CPU time (sum of /proc/PID/task/*/schedstat over the process tree) "
      "during the timed run / requests wrk completed. proxy/client util = CPU seconds / wall seconds "
      "(client = wrk + origin, which share one core). bottleneck = the side whose core was "
      "busy >= 90% of the wall time (both: the two cores were; neither: latency-bound or noise). "
      "other load = busy time on that core not spent in the benchmark's processes (other processes, "
      "softirq work not charged to a task): above ~10% the run was disturbed.")
    w("")

    scenarios = []
    for r in runs:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    proxies = [p for p in meta["proxies"]]
    descs = meta.get("scenario_desc", {})

    hasProfile = bool(profile)
    failed = {tuple(x) for x in meta.get("failed_checks", [])}

    def label(sc, px):
        return f"{px} (CHECK FAILED)" if (sc, px) in failed else px
    w("## Medians")
    w("")
    head = "| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | proxy util | client util | other load proxy/client core | bottleneck | errors |"
    sep = "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    if hasProfile:
        head += " syscalls/req | instr/req |"
        sep += "---:|---:|"
    w(head)
    w(sep)
    med = {}
    for sc in scenarios:
        for px in proxies:
            rs = [r for r in runs if r["scenario"] == sc and r["proxy"] == px]
            if not rs:
                continue
            m = {k: median([r[k] for r in rs]) for k in
                 ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "proxy_util", "client_util", "other_util",
                  "other_client_util")}
            m["errors"] = sum(r["errors"] for r in rs)
            votes = [r["bottleneck"] for r in rs]
            m["bottleneck"] = max(set(votes), key=votes.count)
            med[(sc, px)] = m
            line = (f"| {sc} | {label(sc, px)} | {fmt(m['rps'], 0, True)} | {fmt(m['p50_ms'], 2)} | {fmt(m['p99_ms'], 2)} "
                    f"| {fmt(m['cpu_us_per_req'], 1)} | {fmt(m['proxy_util'] * 100)}% | {fmt(m['client_util'] * 100)}% "
                    f"| {fmt(m['other_util'] * 100)}% / {fmt(m['other_client_util'] * 100)}% | {m['bottleneck']} | {int(m['errors'])} |")
            if hasProfile:
                p = profile.get((sc, px), {})
                line += f" {fmtProfile(p.get('syscalls_per_req'), 1)} | {fmtProfile(p.get('instr_per_req'), 0, True)} |"
            w(line)
    w("")

    if "gateway" in proxies:
        w("## Ratios (gateway / other, from the medians)")
        w("")
        w("CPU per request: below 1 means the gateway spends less CPU per request. req/s: above 1 means the gateway served more.")
        w("")
        w("| scenario | CPU/req gw/nginx | CPU/req gw/HAProxy | req/s gw/nginx | req/s gw/HAProxy | p99 gw/nginx | p99 gw/HAProxy |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        nan = {"rps": float("nan"), "cpu_us_per_req": float("nan"), "p99_ms": float("nan")}
        for sc in scenarios:
            g = med.get((sc, "gateway"), nan)
            n = med.get((sc, "nginx"), nan)
            h = med.get((sc, "haproxy"), nan)
            flag = " (check failed: not comparable)" if any((sc, p) in failed for p in proxies) else ""
            w(f"| {sc}{flag} | {ratio(g['cpu_us_per_req'], n['cpu_us_per_req'])} | {ratio(g['cpu_us_per_req'], h['cpu_us_per_req'])} "
              f"| {ratio(g['rps'], n['rps'])} | {ratio(g['rps'], h['rps'])} "
              f"| {ratio(g['p99_ms'], n['p99_ms'])} | {ratio(g['p99_ms'], h['p99_ms'])} |")
        w("")

    bases = meta.get("bases", {})
    wire = meta.get("wire", {})
    based = [sc for sc in scenarios if bases.get(sc)]
    if based:
        w("## Compression and cache: ratios to the uncompressed path")
        w("")
        w("Each proxy against its own run of the base scenario (same body, no Accept-Encoding): CPU/req above 1 "
          "is what compressing (or serving from cache) costs on top of proxying the plain body; wire bytes are the "
          "compressed response size from the check before timing. Last column: the gateway's CPU/req over this "
          "proxy's in the same scenario.")
        w("")
        w("| scenario | proxy | encoding | wire bytes | req/s | CPU µs/req | CPU/req ÷ base | req/s ÷ base | gw CPU/req ÷ this |")
        w("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for sc in based:
            base = bases[sc]
            for px in proxies:
                m = med.get((sc, px))
                if m is None:
                    continue
                b = med.get((base, px), {"rps": float("nan"), "cpu_us_per_req": float("nan")})
                g = med.get((sc, "gateway"), {"cpu_us_per_req": float("nan")})
                size, enc = wire.get(sc, {}).get(px, ["n/a", "n/a"])
                w(f"| {sc} (base {base}) | {label(sc, px)} | {enc} | {size} | {fmt(m['rps'], 0, True)} "
                  f"| {fmt(m['cpu_us_per_req'], 1)} | {ratio(m['cpu_us_per_req'], b['cpu_us_per_req'])} "
                  f"| {ratio(m['rps'], b['rps'])} | {'-' if px == 'gateway' else ratio(g['cpu_us_per_req'], m['cpu_us_per_req'])} |")
        w("")

    w("## Scenarios")
    w("")
    for sc in scenarios:
        w(f"- **{sc}**: {descs.get(sc, '')}")
    checks = meta.get("checks", [])
    if checks:
        w("")
        w("Response checks before timing (status, body bytes on the wire, Content-Encoding):")
        w("")
        for c in checks:
            w(f"- {c}")
    if hasProfile:
        w("")
        w(f"Fixed-count profile: {meta.get('profile_desc', '')}")
    w("")

    noisy = [r for r in runs if r["other_util"] > 0.10]
    if noisy:
        w(f"Disturbed runs (more than 10% of the proxy core busy with other work): {len(noisy)} of {len(runs)}; "
          "their req/s and latency are low and spread, CPU µs/req is affected much less.")
        w("")
    w("## Every run")
    w("")
    w("| scenario | proxy | round | requests | req/s | p50 ms | p99 ms | CPU µs/req | proxy CPU s | wrk CPU s | origin CPU s | wall s | other % proxy/client core | bottleneck | errors |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in runs:
        w(f"| {r['scenario']} | {r['proxy']} | {r['round']} | {int(r['requests'])} | {fmt(r['rps'], 0, True)} "
          f"| {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['cpu_us_per_req'], 1)} | {fmt(r['proxy_cpu_s'], 2)} "
          f"| {fmt(r['wrk_cpu_s'], 2)} | {fmt(r['origin_cpu_s'], 2)} | {fmt(r['wall_s'], 2)} "
          f"| {fmt(r['other_util'] * 100)} / {fmt(r['other_client_util'] * 100)} "
          f"| {r['bottleneck']} | {int(r['errors'])} |")
    w("")
    print("\n".join(out))


def fmtProfile(v, digits, comma=False):
    if v is None or v == "":
        return "n/a"
    return fmt(num(v), digits, comma)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "gen-json":
        genJson(sys.argv[2], int(sys.argv[3]))
    elif cmd == "run-row":
        runRow(sys.argv[2:])
    elif cmd == "run-header":
        print("\t".join(RUN_FIELDS))
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
