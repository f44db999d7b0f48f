"""CONTRACT §6, issue 8: the deploy/ files, checked offline.

* Both kustomizations (deploy/k8s, deploy/k8s/deps) render with `kubectl
  kustomize`, and every object, plus the *.example.yaml Secrets, validates
  against the Kubernetes API schemas with unknown fields refused
  (deploy/tools/validate-manifests.mjs); deliberately broken copies fail.
* The pod's invariants: native sidecar, probe paths/ports, grace period vs the
  drain settings of conf/app.yaml, hardened securityContexts, the Service
  exposing the gateway port only, the ConfigMap equal to conf/app.yaml, secrets
  only through Secret references.
* PgBouncer/Redis, Prometheus and OpenTelemetry configs, the Dockerfiles, and
  the runtime packages of the image against `ldd` of the built binaries.

No cluster, registry or network: kubectl only renders, node validates.
"""

from __future__ import annotations

import configparser
import copy
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

import deploy_checks as dc  # noqa: E402
from gateway_harness import gateway_binary  # noqa: E402

CONFIG_DIR = "/etc/sidecar"
CONFIG_PATH = CONFIG_DIR + "/app.yaml"


def _need(fn, *args):
    try:
        return fn(*args)
    except dc.ToolMissing as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def conf():
    return dc.load_conf()


@pytest.fixture(scope="module")
def base_docs():
    if not (dc.REPO_ROOT / "conf" / "kustomization.yaml").exists():
        pytest.fail("conf/kustomization.yaml is missing: deploy/k8s generates its ConfigMap through it")
    return _need(dc.render_docs, dc.K8S_BASE)


@pytest.fixture(scope="module")
def deps_docs():
    return _need(dc.render_docs, dc.K8S_DEPS)


@pytest.fixture(scope="module")
def deployment(base_docs):
    return dc.one(base_docs, "Deployment", "sidecar-gateway")


@pytest.fixture(scope="module")
def pod(deployment):
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def gateway(pod):
    found = [c for c in pod.get("initContainers", []) if c["name"] == "gateway"]
    assert len(found) == 1, "the gateway must be an init container (native sidecar)"
    return found[0]


@pytest.fixture(scope="module")
def app(pod):
    found = [c for c in pod.get("containers", []) if c["name"] == "upstream-app"]
    assert len(found) == 1, "upstream-app must be the main container"
    return found[0]


@pytest.fixture(scope="module")
def example_secret():
    return yaml.safe_load((dc.K8S_BASE / "secret.example.yaml").read_text())


# ---- schema validation -------------------------------------------------------


def _examples():
    return sorted(dc.K8S_BASE.glob("*.example.yaml")) + sorted(dc.K8S_DEPS.glob("*.example.yaml"))


def test_base_renders_and_every_object_matches_the_kubernetes_schemas(base_docs):
    kinds = sorted(d["kind"] for d in base_docs)
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "ServiceAccount"]
    )
    result = _need(dc.validate_docs, base_docs)
    assert result.returncode == 0, result.stderr + result.stdout


def test_deps_render_and_match_the_kubernetes_schemas(deps_docs):
    assert {d["kind"] for d in deps_docs} >= {"ConfigMap", "Deployment", "Service"}
    result = _need(dc.validate_docs, deps_docs)
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_example_files_match_the_kubernetes_schemas(path):
    result = _need(dc.validate_text, path.read_text())
    assert result.returncode == 0, result.stderr + result.stdout


def _broken_cases():
    def typo(d):
        c = d["spec"]["template"]["spec"]["initContainers"][0]
        c["readinesProbe"] = c.pop("readinessProbe")
        return "unknown field \"readinesProbe\""

    def nested_typo(d):
        d["spec"]["template"]["spec"]["initContainers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
        return "unknown field \"paht\""

    def wrong_type(d):
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "50s"
        return "terminationGracePeriodSeconds: must be integer"

    def bad_enum(d):
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
        return "imagePullPolicy: must be equal to one of the allowed values"

    def missing_required(d):
        del d["spec"]["selector"]
        return "must have required property selector"

    def removed_api(d):
        d["apiVersion"] = "extensions/v1beta1"
        return "not a GA API version"

    def unknown_kind(d):
        d["kind"] = "Deploymnet"
        return "not a built-in Kubernetes API type"

    return [typo, nested_typo, wrong_type, bad_enum, missing_required, removed_api, unknown_kind]


@pytest.mark.parametrize("breaker", _broken_cases(), ids=lambda f: f.__name__)
def test_validator_rejects_a_broken_deployment(deployment, breaker):
    broken = copy.deepcopy(deployment)
    expected = breaker(broken)
    result = _need(dc.validate_docs, [broken])
    assert result.returncode == 1, "a broken manifest passed:\n" + result.stdout
    assert expected in result.stderr, result.stderr


def test_validator_rejects_invalid_yaml():
    result = _need(dc.validate_text, "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nmetadata: {name: b}\n")
    assert result.returncode == 1
    assert "YAML" in result.stderr


def test_kustomize_fails_on_a_broken_kustomization(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    code, _, err = _need(dc.render, tmp_path)
    assert code != 0 and "missing.yaml" in err


# ---- the pod -----------------------------------------------------------------


def test_gateway_is_a_native_sidecar_and_the_app_the_main_container(pod, gateway, app):
    assert gateway.get("restartPolicy") == "Always"
    assert [c["name"] for c in pod["containers"]] == ["upstream-app"]
    assert gateway["command"][0].endswith("/gateway")
    assert app["command"][0].endswith("/upstream_app")
    for c in (gateway, app):
        cmd = c["command"] + c.get("args", [])
        assert cmd[cmd.index("--config") + 1] == CONFIG_PATH, c["name"]


def test_probes_hit_healthz_and_readyz_on_the_gateway_listen_port(conf, gateway, app):
    _, listen_port = dc.host_port(conf["gateway"]["listen"])
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        spec = gateway.get(probe)
        assert spec, "gateway has no %s" % probe
        assert spec["httpGet"]["path"] == path, probe
        assert dc.resolve_port(gateway, spec["httpGet"]["port"]) == listen_port, probe
    drain = dc.seconds(conf["gateway"]["drain_delay"])
    startup, live, ready = gateway["startupProbe"], gateway["livenessProbe"], gateway["readinessProbe"]
    # Enough time to start, not so eager that a slow node restarts it.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10
    assert live["periodSeconds"] * live["failureThreshold"] >= 20
    # Readiness notices /readyz turning 503 before drain_delay ends and the listeners close.
    assert ready["periodSeconds"] * ready["failureThreshold"] <= drain
    # The app listens on loopback: the kubelet (pod IP) could not probe it.
    for probe in expected:
        assert probe not in app, "upstream-app cannot be probed on 127.0.0.1 from the kubelet"


def test_grace_period_covers_the_app_pause_and_the_gateway_drain(conf, pod, app):
    drain = dc.seconds(conf["gateway"]["drain_delay"])
    graceful = dc.seconds(conf["gateway"]["graceful_timeout"])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > drain + graceful
    pause = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The app keeps serving while endpoint removal propagates, as long as the gateway's drain_delay.
    assert pause >= drain
    assert grace > pause + drain + graceful
    binary = gateway_binary()
    if binary.exists():
        out = subprocess.run(
            [str(binary), "--check-config", str(dc.CONF)], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stdout + out.stderr
        m = re.search(r"minimum terminationGracePeriodSeconds: (\d+)", out.stdout)
        assert m, out.stdout
        assert grace > int(m.group(1))


def _security_contexts(pod_spec):
    """(container, effective settings) for every container of a pod."""
    pod_sc = pod_spec.get("securityContext", {})
    for c in dc.all_containers(pod_spec):
        sc = c.get("securityContext", {})
        yield c, {
            "runAsNonRoot": sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")),
            "runAsUser": sc.get("runAsUser", pod_sc.get("runAsUser")),
            "seccomp": (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type"),
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem"),
            "allowPrivilegeEscalation": sc.get("allowPrivilegeEscalation"),
            "drop": (sc.get("capabilities") or {}).get("drop", []),
            "privileged": sc.get("privileged", False),
        }


def test_every_container_is_hardened_and_has_resources(base_docs, deps_docs):
    deployments = dc.find(base_docs, "Deployment") + dc.find(deps_docs, "Deployment")
    assert len(deployments) == 3
    for d in deployments:
        pod_spec = d["spec"]["template"]["spec"]
        assert pod_spec.get("automountServiceAccountToken") is False, d["metadata"]["name"]
        for c, eff in _security_contexts(pod_spec):
            where = "%s/%s" % (d["metadata"]["name"], c["name"])
            assert eff["runAsNonRoot"] is True, where
            assert isinstance(eff["runAsUser"], int) and eff["runAsUser"] > 0, where
            assert eff["seccomp"] == "RuntimeDefault", where
            assert eff["readOnlyRootFilesystem"] is True, where
            assert eff["allowPrivilegeEscalation"] is False, where
            assert "ALL" in eff["drop"], where
            assert eff["privileged"] is False, where
            res = c.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(section, {})), "%s: resources.%s" % (where, section)


def test_the_app_is_reachable_only_through_the_gateway(conf, app):
    host, port = dc.host_port(conf["upstream_app"]["listen"])
    assert host == "127.0.0.1"
    assert conf["gateway"]["upstream"]["address"] == conf["upstream_app"]["listen"]
    assert not app.get("ports"), "the app must not declare ports"


def test_service_exposes_the_gateway_port_only(conf, base_docs, deployment, gateway):
    _, listen_port = dc.host_port(conf["gateway"]["listen"])
    _, admin_port = dc.host_port(conf["gateway"]["admin_listen"])
    _, app_port = dc.host_port(conf["upstream_app"]["listen"])
    svc = dc.one(base_docs, "Service")
    ports = svc["spec"]["ports"]
    assert len(ports) == 1
    assert ports[0]["name"] == "http" and ports[0]["port"] == listen_port
    assert dc.resolve_port(gateway, ports[0]["targetPort"]) == listen_port
    assert app_port not in (ports[0]["port"], dc.resolve_port(gateway, ports[0]["targetPort"]))
    assert admin_port != ports[0]["port"]
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()


def test_configmap_is_conf_app_yaml_mounted_into_both_containers(base_docs, pod, gateway, app):
    cm = dc.one(base_docs, "ConfigMap")
    assert cm["data"] == {"app.yaml": dc.CONF.read_text()}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volumes = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    assert len(config_volumes) == 1, "no pod volume uses the generated ConfigMap %s" % cm["metadata"]["name"]
    for c in (gateway, app):
        mounts = [m for m in c["volumeMounts"] if m["name"] == config_volumes[0]]
        assert mounts and mounts[0]["mountPath"] == CONFIG_DIR and mounts[0].get("readOnly"), c["name"]
        # A subPath mount would never see ConfigMap updates.
        assert "subPath" not in mounts[0]


def test_credentials_come_from_the_secret_only(base_docs, gateway, app, example_secret):
    assert not dc.find(base_docs, "Secret"), "the base must not ship a Secret"
    secret_name = example_secret["metadata"]["name"]
    keys = set(example_secret["stringData"])
    wanted = {"upstream-app": {"DB_URL", "REDIS_URL"}, "gateway": {"REDIS_URL"}}
    for c in (gateway, app):
        env = {e["name"]: e for e in c.get("env", [])}
        for name in wanted[c["name"]]:
            assert name in env, "%s lacks %s" % (c["name"], name)
            ref = env[name].get("valueFrom", {}).get("secretKeyRef")
            assert ref and ref["name"] == secret_name and ref["key"] in keys, "%s.%s" % (c["name"], name)
            assert "value" not in env[name]
        for e in c.get("env", []):
            assert "@" not in str(e.get("value", "")), "%s: credentials in a literal env value" % e["name"]
    # conf/app.yaml must read them from the environment.
    text = dc.CONF.read_text()
    assert "${DB_URL" in text and "${REDIS_URL" in text


def test_admin_port_is_annotated_for_prometheus(conf, deployment, gateway):
    _, admin_port = dc.host_port(conf["gateway"]["admin_listen"])
    ann = deployment["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == admin_port
    assert ann["prometheus.io/path"] == "/metrics"
    assert admin_port in [p["containerPort"] for p in gateway["ports"]]


def test_pdb_and_hpa_target_the_deployment(base_docs, deployment):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = dc.one(base_docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = dc.one(base_docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    # The HPA owns the replica count.
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_image_is_the_one_built_here_for_both_containers(gateway, app):
    assert gateway["image"] == app["image"]
    assert gateway["image"].split("/")[-1].startswith("sidecar-gateway:")


# ---- PgBouncer and Redis -------------------------------------------------------


def _generated(docs, prefix):
    names = [d["metadata"]["name"] for d in dc.find(docs, "ConfigMap") if d["metadata"]["name"].startswith(prefix)]
    assert len(names) == 1, names
    return names[0]


def test_pgbouncer_runs_in_transaction_mode(deps_docs, example_secret):
    ini = configparser.ConfigParser(inline_comment_prefixes=None, comment_prefixes=(";", "#"))
    ini.read_string(dc.one(deps_docs, "ConfigMap", _generated(deps_docs, "pgbouncer-config"))["data"]["pgbouncer.ini"])
    pgb = ini["pgbouncer"]
    assert pgb["pool_mode"] == "transaction"
    assert pgb["server_reset_query"] == ""
    assert int(pgb["default_pool_size"]) > 0
    assert int(pgb["max_client_conn"]) >= int(pgb["default_pool_size"])
    db = dict(kv.split("=", 1) for kv in ini["databases"]["app"].split())
    assert db["host"] == "postgresql" and db["port"] == "5432"
    # DB_URL of the example Secret points at the PgBouncer Service.
    url = urllib.parse.urlsplit(example_secret["stringData"]["DB_URL"])
    svc = dc.one(deps_docs, "Service", "pgbouncer")
    assert url.hostname == "pgbouncer" and url.port == int(pgb["listen_port"]) == svc["spec"]["ports"][0]["port"]
    dep = dc.one(deps_docs, "Deployment", "pgbouncer")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert dc.resolve_port(c, svc["spec"]["ports"][0]["targetPort"]) == int(pgb["listen_port"])
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert c["command"][-1] == mounts["config"] + "/pgbouncer.ini"
    assert pgb["auth_file"] == mounts["auth"] + "/userlist.txt"


def test_redis_password_and_url_agree(deps_docs, example_secret):
    conf_text = dc.one(deps_docs, "ConfigMap", _generated(deps_docs, "redis-config"))["data"]["redis.conf"]
    include = re.search(r"^include (\S+)$", conf_text, re.MULTILINE).group(1)
    dep = dc.one(deps_docs, "Deployment", "redis")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert include == mounts["auth"] + "/auth.conf"
    auth = yaml.safe_load((dc.K8S_DEPS / "redis-auth.example.yaml").read_text())
    password = re.search(r"requirepass (\S+)", auth["stringData"]["auth.conf"]).group(1)
    url = urllib.parse.urlsplit(example_secret["stringData"]["REDIS_URL"])
    svc = dc.one(deps_docs, "Service", "redis")
    assert url.hostname == "redis" and url.port == svc["spec"]["ports"][0]["port"]
    assert url.password == password
    assert 'save ""' in conf_text and "appendonly no" in conf_text


# ---- Prometheus and OpenTelemetry -------------------------------------------------


def test_prometheus_scrape_config(conf):
    path = dc.DEPLOY / "prometheus" / "scrape.yaml"
    cfg = yaml.safe_load(path.read_text())
    jobs = cfg["scrape_configs"]
    assert len(jobs) == 1
    sd = jobs[0]["kubernetes_sd_configs"]
    assert [s["role"] for s in sd] == ["pod"]
    sources = [l for r in jobs[0]["relabel_configs"] for l in r.get("source_labels", [])]
    for ann in ("scrape", "port", "path"):
        assert "__meta_kubernetes_pod_annotation_prometheus_io_" + ann in sources
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian package prometheus)")
    # Debian's Prometheus is built without Kubernetes service discovery, so its
    # promtool rejects `kubernetes_sd_configs`; check the rest (relabel actions,
    # RE2 regexes, labels) with the discovery swapped for a static target.
    for job in jobs:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:%d" % dc.host_port(conf["gateway"]["admin_listen"])[1]]}]
    tmp = Path(subprocess.run(["mktemp", "--suffix=.yaml"], capture_output=True, text=True).stdout.strip())
    try:
        tmp.write_text(yaml.safe_dump(cfg))
        out = subprocess.run([promtool, "check", "config", str(tmp)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        tmp.unlink()


def test_otel_collector_receives_otlp_http_on_4318():
    cfg = yaml.safe_load((dc.DEPLOY / "otel" / "collector.yaml").read_text())
    endpoint = cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert endpoint.endswith(":4318")
    pipeline = cfg["service"]["pipelines"]["traces"]
    for section, key in (("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")):
        for name in pipeline[key]:
            assert name in cfg[section], "%s %s used by the pipeline but not defined" % (section, name)
    types = {n.split("/")[0] for n in pipeline["exporters"]}
    assert "debug" in types and types & {"otlp", "otlphttp"}
    assert pipeline["processors"][0] == "memory_limiter"
    # The senders' endpoint (deployment.yaml) is this receiver's default path.
    assert "/v1/traces" in (dc.K8S_BASE / "deployment.yaml").read_text()


# ---- container build ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stages():
    return dc.dockerfile_stages(dc.DEPLOY / "docker" / "Dockerfile")


def test_dockerfile_is_multistage_debian_12_and_non_root(stages, pod):
    assert [s["from"] for s in stages] == ["debian:12", "debian:12-slim"]
    final = stages[-1]
    users = [a for k, a in final["instructions"] if k == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "USER must be a fixed numeric non-root UID"
    assert int(uid) == pod["securityContext"]["runAsUser"]
    for k, a in final["instructions"]:
        if k in ("ENTRYPOINT", "CMD"):
            assert a.startswith("["), "%s must use the exec form: %s" % (k, a)
    copies = " ".join(a for k, a in final["instructions"] if k == "COPY")
    assert "/usr/local/bin/gateway" in copies and "/usr/local/bin/upstream_app" in copies
    assert re.search(r"upstream_app/migrations/?\s+/usr/share/upstream_app/migrations", copies)
    assert all("--from=build" in a for k, a in final["instructions"] if k == "COPY" and "/build/" in a)


def test_dockerfile_build_stage_installs_the_makefile_build_packages(stages):
    build_pkgs = set(dc.apt_installed_packages(stages[0]))
    wanted = {
        p
        for p in dc.makefile_deb_packages()
        if p.endswith("-dev") or p in ("build-essential", "cmake", "pkg-config", "node-llhttp")
    }
    assert wanted <= build_pkgs, "missing in the build stage: %s" % sorted(wanted - build_pkgs)
    runs = " ".join(a for k, a in stages[0]["instructions"] if k == "RUN")
    assert "cmake -S . -B build" in runs and "cmake --build build" in runs
    # The Makefile's build type: flags (and -Werror diagnostics) differ between types.
    makefile_type = re.search(r"cmake -S \. -B \$\(BUILD_DIR\) -DCMAKE_BUILD_TYPE=(\w+)",
                              (dc.REPO_ROOT / "Makefile").read_text())
    assert makefile_type, "the Makefile's release configure line changed; update this check"
    assert "-DCMAKE_BUILD_TYPE=%s" % makefile_type.group(1) in runs
    # The final stage gets no compilers or headers.
    final_pkgs = dc.apt_installed_packages(stages[-1])
    assert not [p for p in final_pkgs if p.endswith("-dev") or p in ("build-essential", "cmake")]


def test_runtime_packages_exist_in_debian_12(stages):
    packages = dc.apt_installed_packages(stages[-1])
    assert packages
    out = subprocess.run(["apt-cache", "show", "--no-all-versions"] + packages, capture_output=True, text=True)
    found = set(re.findall(r"^Package: (\S+)$", out.stdout, re.MULTILINE))
    assert not set(packages) - found, "not Debian 12 packages: %s" % sorted(set(packages) - found)


def test_runtime_packages_cover_every_library_the_binaries_load(stages):
    build = dc.REPO_ROOT / "build"
    binaries = [build / "gateway" / "gateway", build / "upstream_app" / "upstream_app"]
    if not all(b.exists() for b in binaries):
        pytest.skip("release binaries not built in build/")
    listed = set(dc.apt_installed_packages(stages[-1]))
    closure = dc.installed_dependency_closure(listed)
    for binary in binaries:
        paths = dc.ldd_paths(binary)
        if any("libasan" in s or "libubsan" in s for s in paths):
            pytest.skip("build/ holds a sanitizer build; the image is a release build")
        owners = dc.owning_packages(list(paths.values()))
        # Direct dependencies must be named in the Dockerfile...
        for soname in dc.needed_sonames(binary):
            pkg = owners[paths[soname]]
            assert pkg in listed, "%s needs %s from %s, which the final stage does not install" % (
                binary.name, soname, pkg)
        # ...and the libraries those pull in must come with them through apt.
        for soname, path in paths.items():
            assert owners[path] in closure, "%s loads %s (%s), not pulled in by the final stage's packages" % (
                binary.name, soname, owners[path])


def test_pgbouncer_image_runs_as_the_manifest_user(deps_docs):
    stages = dc.dockerfile_stages(dc.DEPLOY / "docker" / "pgbouncer.Dockerfile")
    assert [s["from"] for s in stages] == ["debian:12-slim"]
    assert "pgbouncer" in dc.apt_installed_packages(stages[0])
    uid = [a for k, a in stages[0]["instructions"] if k == "USER"][-1].split(":")[0]
    pod_spec = dc.one(deps_docs, "Deployment", "pgbouncer")["spec"]["template"]["spec"]
    assert int(uid) == pod_spec["securityContext"]["runAsUser"]
    assert ("STOPSIGNAL", "SIGINT") in stages[0]["instructions"]
