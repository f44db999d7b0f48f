#!/usr/bin/env python3
"""Helpers for bench/run.sh's `rl` scenario: the cost of a Redis rate limit.

The scenario runs two gateways side by side with the same configuration
(conf/gateway.yaml.in), except that `gateway_rl` has a real Redis and one rule
on the benchmarked path whose limit is far above what the run can send, so
every request makes its EVALSHA round trip and none is refused.

Standard library only. Subcommands:
  config BASE OUT REDIS_PORT ALGORITHM PATH
        BASE (a rendered gateway.yaml) with redis.url pointing at REDIS_PORT and
        rate_limits replaced by one never-triggering rule on PATH
  report RUNS [SCENARIO]
        markdown section: medians of gateway_rl vs gateway in SCENARIO (default rl),
        req/s ratio (target >= 0.85) and CPU/request ratio
"""

import re
import statistics
import sys

# Far above any run (a few hundred thousand requests per minute here), and
# limit * window_ms stays well below 2^53 as the scripts require.
NEVER_LIMIT = 1_000_000_000
TARGET = 0.85


def makeConfig(base, out, redisPort, algorithm, path):
    with open(base) as f:
        text = f.read()
    text, n1 = re.subn(r"(?m)^(\s*url:\s*)redis://\S+", r"\g<1>redis://127.0.0.1:%d/0" % int(redisPort), text, count=1)
    rule = ("  rate_limits:\n"
            "    # Never triggers: every request pays its Redis round trip, none is refused.\n"
            "    - {name: bench, path: %s, algorithm: %s, limit: %d, window: 60s, key: client_ip, fail_open: true}"
            % (path, algorithm, NEVER_LIMIT))
    text, n2 = re.subn(r"(?m)^  rate_limits:\s*\[\]\s*$", rule, text, count=1)
    if n1 != 1 or n2 != 1:
        sys.exit("ratelimit.py config: %s has no `url: redis://...` (%d) or no `  rate_limits: []` (%d) line"
                 % (base, n1, n2))
    with open(out, "w") as f:
        f.write(text)


def readRuns(path):
    with open(path) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    header = lines[0].split("\t")
    return [dict(zip(header, l.split("\t"))) for l in lines[1:]]


def med(rows, key):
    vals = []
    for r in rows:
        try:
            vals.append(float(r[key]))
        except (KeyError, ValueError):
            pass
    return statistics.median(vals) if vals else float("nan")


def cpuPerReq(rows):
    vals = [float(r["proxy_cpu_s"]) * 1e6 / float(r["requests"]) for r in rows if float(r["requests"]) > 0]
    return statistics.median(vals) if vals else float("nan")


def report(runsPath, scenario="rl"):
    runs = [r for r in readRuns(runsPath) if r["scenario"] == scenario]
    plain = [r for r in runs if r["proxy"] == "gateway"]
    limited = [r for r in runs if r["proxy"] == "gateway_rl"]
    out = ["## Rate limit overhead (scenario %s)" % scenario, ""]
    if not plain or not limited:
        out.append("No runs of both `gateway` and `gateway_rl` in scenario %s." % scenario)
        print("\n".join(out))
        return
    rpsPlain, rpsLimited = med(plain, "rps"), med(limited, "rps")
    cpuPlain, cpuLimited = cpuPerReq(plain), cpuPerReq(limited)
    errors = sum(int(float(r["errors"])) for r in limited)
    ratio = rpsLimited / rpsPlain if rpsPlain else float("nan")
    # Each run pairs with the run of the other gateway in the same round (interleaved).
    perRound = []
    for r in limited:
        p = [x for x in plain if x["round"] == r["round"]]
        if p and float(p[0]["rps"]) > 0:
            perRound.append(float(r["rps"]) / float(p[0]["rps"]))
    verdict = "meets" if ratio >= TARGET else "BELOW"
    out.append("The same gateway configuration without a rule (`gateway`) and with one never-triggering "
               "Redis rule on the benchmarked path (`gateway_rl`: one EVALSHA round trip per request), "
               "interleaved rounds, medians. Non-2xx responses of gateway_rl would mean the limit triggered "
               "or Redis failed.")
    out.append("")
    out.append("| | gateway | gateway_rl | rl / plain |")
    out.append("|---|---:|---:|---:|")
    out.append("| req/s | %s | %s | **%.2f** (target >= %.2f: %s) |"
               % (f"{rpsPlain:,.0f}", f"{rpsLimited:,.0f}", ratio, TARGET, verdict))
    out.append("| CPU µs/req | %.1f | %.1f | %.2f |" % (cpuPlain, cpuLimited,
                                                     cpuLimited / cpuPlain if cpuPlain else float("nan")))
    out.append("| p99 ms | %.2f | %.2f | %.2f |" % (med(plain, "p99_ms"), med(limited, "p99_ms"),
                                                   med(limited, "p99_ms") / med(plain, "p99_ms")))
    out.append("")
    out.append("req/s ratio per round: %s; gateway_rl non-2xx/socket errors: %d."
               % (", ".join("%.2f" % x for x in perRound) or "n/a", errors))
    out.append("")
    print("\n".join(out))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "config" and len(sys.argv) == 7:
        makeConfig(*sys.argv[2:7])
    elif cmd == "report" and len(sys.argv) in (3, 4):
        report(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
