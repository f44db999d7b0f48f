#!/usr/bin/env python3
"""Helpers for bench/run.sh's `trace` scenario: what tracing costs the gateway.

The scenario runs three gateways side by side with the same configuration
(conf/gateway.yaml.in), except for `gateway.tracing`: `gateway` has it off
(the template's setting), `gateway_trace10` samples 10 % of requests and
`gateway_trace100` every request, both exporting over OTLP/HTTP JSON to a
local sink (this script's `sink`), so the exporter thread really batches,
encodes and POSTs -- inside the gateway process, whose CPU is what is
measured.

Standard library only. Subcommands:
  config BASE OUT RATIO ENDPOINT
        BASE (a rendered gateway.yaml) with its `tracing: {enabled: false}` block
        replaced by tracing at RATIO to ENDPOINT
  sink PORT
        a minimal OTLP/HTTP collector on 127.0.0.1:PORT: answers every POST with
        200 {} without parsing it (so its own cost stays small), counts requests,
        bytes and spans (occurrences of `"spanId":`) per path; GET /stats returns
        the counts as JSON
  report RUNS [SCENARIO [STATS_JSON [METRICS...]]]
        markdown section: medians of the three gateways in SCENARIO (default
        trace), req/s and CPU/request ratios to tracing off (target at 0.1:
        req/s >= 0.95), spans received by the sink and the gateways' own
        exported/dropped counters (METRICS: NAME=FILE of each /metrics scrape)
"""

import asyncio
import json
import re
import statistics
import sys

TARGET_10 = 0.95
VARIANTS = (("gateway", "off", None), ("gateway_trace10", "0.1", "trace10"), ("gateway_trace100", "1.0", "trace100"))


def makeConfig(base, out, ratio, endpoint):
    with open(base) as f:
        text = f.read()
    block = ("  tracing:\n"
             "    # bench/tracing.py: spans exported to the local sink.\n"
             "    enabled: true\n"
             "    sample_ratio: %s\n"
             "    otlp_endpoint: %s\n"
             "    service_name: gateway" % (float(ratio), endpoint))
    text, n = re.subn(r"(?m)^  tracing:\s*\n\s+enabled:\s*false\s*$", block, text, count=1)
    if n != 1:
        text, n = re.subn(r"(?m)^  tracing:\s*\{\s*enabled:\s*false\s*\}\s*$", block, text, count=1)
    if n != 1:
        sys.exit("tracing.py config: %s has no `  tracing:` block with `enabled: false`" % base)
    with open(out, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- sink

class Sink:
    def __init__(self):
        self.stats = {}

    def count(self, path, body):
        s = self.stats.setdefault(path, {"requests": 0, "bytes": 0, "spans": 0})
        s["requests"] += 1
        s["bytes"] += len(body)
        s["spans"] += body.count(b'"spanId":')

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                if method == "POST":
                    self.count(path, body)
                    answer = b"{}"
                else:
                    answer = json.dumps(self.stats).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(answer), answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


def runSink(port):
    sink = Sink()

    async def main():
        server = await asyncio.start_server(sink.handle, "127.0.0.1", int(port), limit=64 * 1024 * 1024)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------- report

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


def bottleneckOf(r):
    # As run.sh prints it per run: a side at >= 90 % of the wall time is saturated.
    wall = float(r["wall_s"]) or float("nan")
    proxy = float(r["proxy_cpu_s"]) / wall >= 0.9
    client = (float(r["wrk_cpu_s"]) + float(r["origin_cpu_s"])) / wall >= 0.9
    return "both" if proxy and client else "proxy" if proxy else "client" if client else "neither"


def metric(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def report(runsPath, scenario="trace", statsPath=None, *metricArgs):
    runs = [r for r in readRuns(runsPath) if r["scenario"] == scenario]
    byVariant = {name: [r for r in runs if r["proxy"] == name] for name, _, _ in VARIANTS}
    out = ["## Tracing overhead (scenario %s)" % scenario, ""]
    if not all(byVariant.values()):
        out.append("No runs of all of gateway, gateway_trace10 and gateway_trace100 in scenario %s." % scenario)
        print("\n".join(out))
        return
    stats = {}
    if statsPath:
        try:
            with open(statsPath) as f:
                stats = json.load(f)
        except (OSError, ValueError):
            stats = {}
    metrics = dict(a.split("=", 1) for a in metricArgs)
    plain = byVariant["gateway"]
    rpsPlain, cpuPlain = med(plain, "rps"), cpuPerReq(plain)
    out.append("The same gateway configuration with tracing off (`gateway`), sampling 10 % (`gateway_trace10`) "
               "and every request (`gateway_trace100`), the last two exporting OTLP/HTTP JSON batches to a local "
               "sink; interleaved rounds, medians. CPU is the gateway process's, exporter thread included.")
    out.append("")
    out.append("| | sample ratio | req/s | req/s ÷ off | CPU µs/req | CPU/req ÷ off | p50 ms | p99 ms | bottleneck | "
               "spans received | exported / dropped (gateway) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    verdict = ""
    for name, ratioText, path in VARIANTS:
        rows = byVariant[name]
        rps, cpu = med(rows, "rps"), cpuPerReq(rows)
        votes = [bottleneckOf(r) for r in rows]
        bottleneck = max(set(votes), key=votes.count) if votes else ""
        rr = rps / rpsPlain if rpsPlain else float("nan")
        if name == "gateway_trace10":
            verdict = "meets" if rr >= TARGET_10 else "BELOW"
        received = "-"
        if path is not None:
            s = stats.get("/v1/traces/" + path)
            received = f"{s['spans']:,} in {s['requests']:,} POSTs" if s else "0"
        counters = "-"
        if name in metrics:
            exported = metric(metrics[name], "gateway_trace_spans_exported_total")
            dropped = metric(metrics[name], "gateway_trace_spans_dropped_total")
            counters = "%s / %s" % ("n/a" if exported is None else f"{exported:,.0f}",
                                    "n/a" if dropped is None else f"{dropped:,.0f}")
        out.append("| %s | %s | %s | **%.3f** | %.2f | %.3f | %.2f | %.2f | %s | %s | %s |"
                   % (name, ratioText, f"{rps:,.0f}", rr, cpu, cpu / cpuPlain if cpuPlain else float("nan"),
                      med(rows, "p50_ms"), med(rows, "p99_ms"), bottleneck, received, counters))
    out.append("")
    perRound, perRoundMedian = {}, {}
    for name, _, _ in VARIANTS[1:]:
        vals = []
        for r in byVariant[name]:
            p = [x for x in plain if x["round"] == r["round"]]
            if p and float(p[0]["rps"]) > 0:
                vals.append(float(r["rps"]) / float(p[0]["rps"]))
        perRound[name] = ", ".join("%.3f" % v for v in vals) or "n/a"
        perRoundMedian[name] = "%.3f" % statistics.median(vals) if vals else "n/a"
    out.append("req/s ratio to tracing off at 0.1: %s (target >= %.2f: %s); per round (each against the "
               "untraced run of the same round): 0.1: %s (median %s); 1.0: %s (median %s)."
               % ("%.3f" % (med(byVariant["gateway_trace10"], "rps") / rpsPlain), TARGET_10, verdict,
                  perRound["gateway_trace10"], perRoundMedian["gateway_trace10"],
                  perRound["gateway_trace100"], perRoundMedian["gateway_trace100"]))
    if all(bottleneckOf(r) == "neither" for r in runs):
        out.append("Every run was `neither`-bound: the machine was busy with other work, so the req/s figures "
                   "measure the contention, not the gateway; CPU µs/req (and a quiet re-run) are the ones to read.")
    out.append("When the client side is the bottleneck (`client`/`both`), req/s understates the cost: "
               "compare CPU µs/req.")
    out.append("")
    print("\n".join(out))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "config" and len(sys.argv) == 6:
        makeConfig(*sys.argv[2:6])
    elif cmd == "sink" and len(sys.argv) == 3:
        runSink(sys.argv[2])
    elif cmd == "report" and len(sys.argv) >= 3:
        report(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
