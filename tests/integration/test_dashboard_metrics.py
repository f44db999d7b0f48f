"""deploy/observability/grafana-dashboard.json (issue 7, "Dashboards") queries only metrics that exist.

* The dashboard JSON has a sane minimal structure: unique panel ids, every non-row panel has
  targets with a non-empty `expr`, every datasource reference is the `${datasource}` variable.
* Every metric name in every panel target's `expr` (and in the template variables' queries) is
  extracted; `gateway_*` names must be in a real gateway's /metrics, every other name in a real
  upstream_app's /metrics (against the real data stack), `process_*` in both. A histogram must be
  queried through `_bucket`/`_sum`/`_count`, a counter or gauge by its own name.
* Exact label values used in selectors (`result="hit"`) must be values the process exports, and
  the labels named in `by (...)` must exist on a metric of the expression: a dashboard that
  queries `result="hits"` would draw an empty panel without any error.
* With promtool installed, every expression (Grafana variables substituted) parses as PromQL.

The gateway gets a cache rule, a rate-limit rule and a compressible route, and sees one request
of each kind, so that the families whose series appear only on first use have samples to check.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from gateway_harness import REPO_ROOT, http_request
from test_app_api import call, migrate_and_seed, start_app, stop_app

DASHBOARD = REPO_ROOT / "deploy" / "observability" / "grafana-dashboard.json"

# Labels Prometheus attaches at scrape time (target labels of deploy/prometheus/scrape.yaml),
# never present in the /metrics text itself.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "app"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# PromQL words that look like identifiers but are not metric names.
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan",
}


# -- PromQL scanning (no PromQL library on Debian; a small lexer suffices for dashboards) ------


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)


def _strip_grafana_variables(expr: str) -> str:
    # $__rate_interval, ${datasource}, $job, [[var]]
    expr = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]", "1m", expr)
    return expr


def metric_names(expr: str) -> set:
    """Metric names referenced by a PromQL expression (functions, keywords, labels, durations removed)."""
    text = _strip_grafana_variables(_strip_strings(expr))
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range / subquery selectors
    # Label lists of grouping and vector-matching modifiers.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)", text):
        word = m.group(1)
        rest = text[m.end():]
        if re.match(r"\s*\(", rest):
            continue  # a function or an aggregation operator
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def label_values_metric(query: str):
    """The metric of a Grafana `label_values(metric{...}, label)` variable query, if any."""
    m = re.match(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{,]", query)
    return m.group(1) if m else None


def selectors(expr: str):
    """(metric, [(label, op, value)]) for every `metric{...}` selector in the expression."""
    out = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{((?:[^}\"]|\"(?:[^\"\\]|\\.)*\")*)\}", expr):
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2))
        out.append((m.group(1), matchers))
    return out


def grouping_labels(expr: str) -> set:
    labels = set()
    for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels.update(x.strip() for x in m.group(1).split(",") if x.strip())
    return labels


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le, route) (rate(gateway_request_duration_seconds_bucket'
            '{job=~"$job", pod=~"$pod", route!="x y(z)"}[$__rate_interval]))) / on (pod) group_left '
            'max without (instance) (process_open_fds offset 5m) > bool 0 and up')
    assert metric_names(expr) == {"gateway_request_duration_seconds_bucket", "process_open_fds", "up"}
    assert metric_names('sum(increase(a_total{x="1"}[$__range])) / sum(b_total)') == {"a_total", "b_total"}
    assert label_values_metric('label_values(gateway_requests_total{job=~"$job"}, pod)') == "gateway_requests_total"
    assert label_values_metric("label_values(job)") is None
    assert selectors('sum(c_total{result="hit", x=~"a|b"})') == [("c_total", [("result", "=", "hit"), ("x", "=~", "a|b")])]
    assert grouping_labels("sum by (code, route) (x) + sum without(le)(y)") == {"code", "route", "le"}


# -- the dashboard -------------------------------------------------------------------------------


def load_dashboard() -> dict:
    assert DASHBOARD.exists(), "%s is missing" % DASHBOARD
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []) or [])  # panels inside collapsed rows
    return out


def query_panels(dashboard: dict) -> list:
    return [p for p in all_panels(dashboard) if p.get("type") != "row"]


def panel_exprs(dashboard: dict) -> list:
    """[(where, expr)] for every panel target."""
    out = []
    for panel in query_panels(dashboard):
        for target in panel.get("targets", []):
            out.append(("panel %s %r target %s" % (panel.get("id"), panel.get("title"), target.get("refId")),
                        target.get("expr", "")))
    return out


def variable_queries(dashboard: dict) -> list:
    out = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        out.append(("variable $%s" % var.get("name"), query or ""))
    return out


def _uses_datasource_variable(ds) -> bool:
    if isinstance(ds, str):
        return ds in ("${datasource}", "$datasource")
    return isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") in ("${datasource}", "$datasource")


def test_dashboard_structure():
    d = load_dashboard()
    assert isinstance(d.get("title"), str) and d["title"]
    assert isinstance(d.get("uid"), str) and d["uid"]
    assert isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, d.get("schemaVersion")

    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    assert variables.get("datasource", {}).get("type") == "datasource", "no ${datasource} variable"
    assert variables["datasource"].get("query") == "prometheus"
    for name in ("job", "pod"):
        assert name in variables, "no $%s template variable" % name
    for name, var in variables.items():
        if var.get("type") == "query":
            assert _uses_datasource_variable(var.get("datasource")), "variable $%s: datasource %r" % (name, var.get("datasource"))

    panels = all_panels(d)
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids), ids
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, "duplicate panel ids %s" % dupes

    problems = []
    for panel in query_panels(d):
        where = "panel %s %r" % (panel.get("id"), panel.get("title"))
        if not panel.get("title"):
            problems.append(where + ": no title")
        pos = panel.get("gridPos") or {}
        if not all(isinstance(pos.get(k), int) for k in ("h", "w", "x", "y")) or pos.get("x", 0) + pos.get("w", 0) > 24:
            problems.append(where + ": bad gridPos %r" % pos)
        if not _uses_datasource_variable(panel.get("datasource")):
            problems.append(where + ": datasource %r is not the ${datasource} variable" % panel.get("datasource"))
        targets = panel.get("targets") or []
        if not targets:
            problems.append(where + ": no targets")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids):
            problems.append(where + ": duplicate refIds %r" % ref_ids)
        for t in targets:
            if not (isinstance(t.get("expr"), str) and t["expr"].strip()):
                problems.append(where + ": target %s has an empty expr" % t.get("refId"))
            if "datasource" in t and not _uses_datasource_variable(t["datasource"]):
                problems.append(where + ": target %s datasource %r" % (t.get("refId"), t["datasource"]))
            expr = t.get("expr") or ""
            if "histogram_quantile" in expr and not ("_bucket" in expr and "le" in grouping_labels(expr)):
                problems.append(where + ": histogram_quantile needs _bucket series aggregated by le: " + expr)
            if "_bucket" in expr and "histogram_quantile" not in expr:
                problems.append(where + ": _bucket series outside histogram_quantile: " + expr)
    assert not problems, "\n".join(problems)


def test_dashboard_expressions_parse_with_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    d = load_dashboard()
    rules = []
    for i, (where, expr) in enumerate(panel_exprs(d)):
        # Grafana substitutes these before Prometheus sees the query.
        concrete = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
        concrete = re.sub(r"\$\{?\w+\}?", ".*", concrete)
        rules.append({"record": "dashboard:expr_%d" % i, "expr": concrete})
    # JSON is YAML: promtool reads a rules file written as JSON.
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, "promtool check rules:\n%s%s" % (result.stdout, result.stderr)


# -- the real processes --------------------------------------------------------------------------


def parse_exposition(text: str) -> dict:
    """family -> {"type": str, "samples": [(series_name, {label: value})]}."""
    families = {}
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        families[m.group(1)] = {"type": m.group(2), "samples": []}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+", line)
        assert m, "unparsable sample line %r" % line
        series = m.group(1)
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        family = series
        if series not in families:
            for suffix in HISTOGRAM_SUFFIXES:
                if series.endswith(suffix) and series[: -len(suffix)] in families:
                    family = series[: -len(suffix)]
        families.setdefault(family, {"type": "untyped", "samples": []})["samples"].append((series, labels))
    return families


def scrape(port: int) -> str:
    resp = http_request(port, "GET", "/metrics")
    assert resp.status == 200, resp.describe()
    return resp.body.decode()


@pytest.fixture(scope="module")
def app_metrics(data_stack, tmp_path_factory):
    migrate_and_seed(data_stack, tmp_path_factory.mktemp("dashboard-migrate"))
    app = start_app(data_stack, tmp_path_factory.mktemp("dashboard-app"))
    try:
        assert call(app, "GET", "/articles/1").status == 200  # miss, fills Redis
        assert call(app, "GET", "/articles/1").status == 200  # hit
        assert call(app, "GET", "/orders?limit=5").status == 200
        call(app, "GET", "/orders/1/shipment")  # no shipping service here: counts a client failure
        text = scrape(app.port)
    finally:
        stop_app(app)
    return parse_exposition(text)


BIG_JSON = json.dumps({"items": [{"id": i, "name": "item %d" % i} for i in range(200)]}).encode()


def gateway_metrics(start_gateway, fake_upstream, redis_url) -> dict:
    fake_upstream.route("/dash/big", body=BIG_JSON, headers=[("Content-Type", "application/json")],
                        replace_headers=True)
    gw = start_gateway(
        {
            "redis": {"url": redis_url},
            "gateway": {
                "cache": {"rules": [{"prefix": "/dash/cached/", "ttl": "60s"}]},
                "rate_limits": [{"name": "dash_limit", "prefix": "/dash/limited", "algorithm": "token_bucket",
                                 "limit": 1, "window": "60s", "key": "client_ip", "fail_open": True}],
            },
        },
        upstream=fake_upstream,
    )
    time.sleep(0.3)  # the worker's Redis connection
    for _ in range(2):
        assert http_request(gw.port, "GET", "/dash/cached/a").status == 200
    assert http_request(gw.port, "GET", "/dash/big", headers=[("Accept-Encoding", "gzip")]).status == 200
    for _ in range(3):
        http_request(gw.port, "GET", "/dash/limited")
    return parse_exposition(scrape(gw.admin_port))


def _family_of(name: str, families: dict):
    """(family, problem) for a series name used in a query."""
    if name in families:
        if families[name]["type"] in ("histogram", "summary"):
            return name, "%s is a %s: query %s_bucket/_sum/_count" % (name, families[name]["type"], name)
        return name, None
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if base in families:
                kind = families[base]["type"]
                if kind == "histogram" or (kind == "summary" and suffix != "_bucket"):
                    return base, None
                return base, "%s: %s is a %s, it has no %s series" % (name, base, kind, suffix)
    return None, "%s is not in the /metrics output" % name


def test_every_dashboard_metric_exists(app_metrics, start_gateway, fake_upstream, redis_url):
    gateway = gateway_metrics(start_gateway, fake_upstream, redis_url)
    d = load_dashboard()
    queries = panel_exprs(d) + variable_queries(d)

    used = {}  # name -> [where]
    for where, expr in panel_exprs(d):
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    for where, query in variable_queries(d):
        name = label_values_metric(query)
        if name:
            used.setdefault(name, []).append(where)
    assert any(n.startswith("gateway_") for n in used) and any(not n.startswith(("gateway_", "process_")) for n in used)

    problems = []
    for name, wheres in sorted(used.items()):
        if name.startswith("gateway_"):
            sources = [("gateway", gateway)]
        elif name.startswith("process_"):
            sources = [("gateway", gateway), ("upstream_app", app_metrics)]
        else:
            sources = [("upstream_app", app_metrics)]
        for source, families in sources:
            _, problem = _family_of(name, families)
            if problem:
                problems.append("%s /metrics: %s (used by %s)" % (source, problem, ", ".join(wheres[:3])))
    assert not problems, "\n".join(problems)

    # Label names and exact label values the queries rely on.
    def families_for(name):
        if name.startswith("gateway_"):
            return [gateway]
        if name.startswith("process_"):
            return [gateway, app_metrics]
        return [app_metrics]

    for where, expr in queries:
        expr_labels = set()
        for metric, matchers in selectors(expr):
            for families in families_for(metric):
                family, problem = _family_of(metric, families)
                if problem:
                    continue  # reported above
                samples = [labels for series, labels in families[family]["samples"] if series == metric]
                present = set().union(*[set(l) for l in samples]) if samples else set()
                expr_labels |= present
                for label, op, value in matchers:
                    if label in TARGET_LABELS or not samples:
                        continue
                    if label not in present:
                        problems.append("%s: %s has no label %r (labels: %s)" % (where, metric, label, sorted(present)))
                    elif op == "=" and value not in {l.get(label) for l in samples}:
                        problems.append("%s: %s{%s=%r} matches no exported series (values: %s)"
                                        % (where, metric, label, value, sorted({l.get(label) for l in samples})))
                    elif op == "=~" and re.fullmatch(r"[\w|]+", value):
                        seen = {l.get(label) for l in samples}
                        missing = [v for v in value.split("|") if v not in seen]
                        if missing:
                            problems.append("%s: %s{%s=~%r}: %s never exported (values: %s)"
                                            % (where, metric, label, value, missing, sorted(seen)))
        # Bare metric names (no selector) contribute their labels too.
        for name in metric_names(expr):
            for families in families_for(name):
                family, problem = _family_of(name, families)
                if not problem:
                    for series, labels in families[family]["samples"]:
                        if series == name:
                            expr_labels |= set(labels)
        for label in grouping_labels(expr) - TARGET_LABELS:
            if expr_labels and label not in expr_labels:
                problems.append("%s: groups by %r, which no metric of the expression has (labels: %s)"
                                % (where, label, sorted(expr_labels)))
    assert not problems, "\n".join(problems)
