"""Helpers for the offline checks of deploy/ (tests/integration/test_deploy_manifests.py).

Rendering uses `kubectl kustomize` (no cluster is contacted). Schema validation
runs deploy/tools/validate-manifests.mjs with the npm packages pinned in
deploy/package.json (`npm ci --prefix deploy`). Nothing here needs the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s"
K8S_DEPS = DEPLOY / "k8s" / "deps"
VALIDATOR = DEPLOY / "tools" / "validate-manifests.mjs"
CONF = REPO_ROOT / "conf" / "app.yaml"


class ToolMissing(Exception):
    """A tool the checks need is not installed; the message says how to get it."""


# ---- kubectl kustomize -----------------------------------------------------

def kubectl() -> str:
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        raise ToolMissing(
            "kubectl not found: it renders the kustomize bases offline "
            "(Debian: apt-get install kubernetes-client, when no kubectl is installed)"
        )
    return path


def kustomize_major(binary: str) -> int:
    """Major version of the kustomize built into kubectl (2 for kubectl 1.20, 5 for 1.27+)."""
    out = subprocess.run([binary, "version", "--client"], capture_output=True, text=True, timeout=30)
    m = re.search(r"Kustomize Version: v(\d+)", out.stdout + out.stderr)
    if m:
        return int(m.group(1))
    # kubectl before 1.24 does not print its kustomize version; up to 1.20 it is v2.0.3.
    m = re.search(r'Minor:"(\d+)', out.stdout) or re.search(r"v1\.(\d+)\.", out.stdout)
    if m and int(m.group(1)) <= 20:
        return 2
    return 4


def _legacy_copy(target: Path, tmp: Path) -> Path:
    """kustomize v2 (Debian's kubectl 1.20) accepts directories only under `bases:`.

    Copies conf/ and deploy/ into `tmp` with directory entries of `resources`
    moved to `bases`, and returns the copy of `target`.
    """
    for name in ("conf", "deploy"):
        shutil.copytree(REPO_ROOT / name, tmp / name, ignore=shutil.ignore_patterns("node_modules"))
    for kfile in list((tmp / "deploy").rglob("kustomization.yaml")) + [tmp / "conf" / "kustomization.yaml"]:
        if not kfile.exists():
            continue
        doc = yaml.safe_load(kfile.read_text())
        dirs = [r for r in doc.get("resources", []) if (kfile.parent / r).is_dir()]
        if dirs:
            doc["resources"] = [r for r in doc["resources"] if r not in dirs]
            doc["bases"] = dirs + doc.get("bases", [])
            kfile.write_text(yaml.safe_dump(doc))
    return tmp / target.relative_to(REPO_ROOT)


def render(target: Path) -> Tuple[int, str, str]:
    """`kubectl kustomize target` -> (exit code, stdout, stderr)."""
    binary = kubectl()
    inside_repo = REPO_ROOT in Path(target).resolve().parents
    if kustomize_major(binary) >= 4 or not inside_repo:
        p = subprocess.run([binary, "kustomize", str(target)], capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr
    with tempfile.TemporaryDirectory() as tmp:
        copy = _legacy_copy(target, Path(tmp))
        p = subprocess.run([binary, "kustomize", str(copy)], capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr


def render_docs(target: Path) -> List[dict]:
    code, out, err = render(target)
    if code != 0:
        raise AssertionError("kubectl kustomize %s failed (%d):\n%s" % (target, code, err))
    return [d for d in yaml.safe_load_all(out) if d]


# ---- schema validation -----------------------------------------------------

def validator_ready() -> None:
    if not shutil.which("node"):
        raise ToolMissing("node not found (Node.js runs deploy/tools/validate-manifests.mjs)")
    if not (DEPLOY / "node_modules" / "kubernetes-models").is_dir():
        raise ToolMissing("deploy/node_modules missing: run `npm ci --prefix deploy` (make deps)")


def validate_text(text: str) -> subprocess.CompletedProcess:
    """Runs the schema validator on YAML text (one or more documents)."""
    validator_ready()
    return subprocess.run(
        ["node", str(VALIDATOR), "--quiet"], input=text, capture_output=True, text=True, timeout=120
    )


def validate_docs(docs: Iterable[dict]) -> subprocess.CompletedProcess:
    return validate_text(yaml.safe_dump_all(list(docs), sort_keys=False))


# ---- conf/app.yaml ---------------------------------------------------------

_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")


def seconds(value) -> float:
    """`5s` -> 5.0, `250ms` -> 0.25, `30m` -> 1800.0 (CONTRACT §3 durations)."""
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError("not a duration: %r" % (value,))
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def host_port(value: str) -> Tuple[str, int]:
    host, _, port = str(value).rpartition(":")
    return host, int(port)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_conf() -> dict:
    """conf/app.yaml after `${VAR:-default}` substitution, with the defaults.

    The substitution happens before parsing (CONTRACT §3), and the file is not
    YAML before it (`${...}` inside a flow mapping).
    """
    text = _ENV_REF.sub(lambda m: m.group(2) or "", CONF.read_text())
    return yaml.safe_load(text)


# ---- objects ---------------------------------------------------------------

def find(docs: List[dict], kind: str, name: Optional[str] = None) -> List[dict]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: List[dict], kind: str, name: Optional[str] = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, "expected one %s%s, found %d" % (kind, " " + name if name else "", len(found))
    return found[0]


def all_containers(pod_spec: dict) -> List[dict]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec.get("containers", []))


def resolve_port(container: dict, port) -> int:
    """A probe/Service port (number or container port name) -> number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError("container %s has no port named %r" % (container["name"], port))


# ---- Dockerfile ------------------------------------------------------------

def dockerfile_stages(path: Path) -> List[dict]:
    """Parses a Dockerfile into stages: {from, name, instructions: [(KEYWORD, args)]}."""
    lines: List[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    stages: List[dict] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            stages.append({"from": m.group(1), "name": m.group(2), "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, args.strip()))
    return stages


def apt_installed_packages(stage: dict) -> List[str]:
    """Package names given to `apt-get install` in a stage's RUN instructions."""
    packages: List[str] = []
    for keyword, args in stage["instructions"]:
        if keyword != "RUN":
            continue
        for part in re.split(r"&&|;", args):
            words = part.split()
            if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
                after = words[words.index("install") + 1:]
                packages += [w for w in after if not w.startswith("-")]
    return packages


def makefile_deb_packages() -> List[str]:
    """DEB_PACKAGES of the Makefile (continuation lines joined)."""
    text = (REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(r"^DEB_PACKAGES\s*:?=\s*(.*)$", text, re.MULTILINE)
    assert m, "DEB_PACKAGES not found in the Makefile"
    return m.group(1).split()


# ---- shared libraries -> Debian packages -----------------------------------

def needed_sonames(binary: Path) -> List[str]:
    out = subprocess.run(["objdump", "-p", str(binary)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"^\s*NEEDED\s+(\S+)", out, re.MULTILINE)


def ldd_paths(binary: Path) -> Dict[str, str]:
    """soname -> resolved path, for every library the loader maps (transitively)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    result = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", line)
        if m and m.group(2) != "not":
            result[m.group(1)] = m.group(2)
        elif "not found" in line:
            raise AssertionError("%s: %s" % (binary, line.strip()))
    return result


def owning_packages(paths: Iterable[str]) -> Dict[str, str]:
    """library path -> the Debian package that ships it (merged-/usr aware), one dpkg call."""
    variants: Dict[str, str] = {}
    for path in paths:
        real = os.path.realpath(path)
        for p in {path, real}:
            variants[p] = path
            if p.startswith("/usr/lib/"):
                variants[p[len("/usr"):]] = path
            elif p.startswith("/lib/"):
                variants["/usr" + p] = path
    out = subprocess.run(["dpkg", "-S"] + sorted(variants), capture_output=True, text=True)
    owners: Dict[str, str] = {}
    for line in out.stdout.splitlines():
        pkgs, _, file = line.partition(": ")
        if file in variants:
            owners[variants[file]] = pkgs.split(",")[0].split(":")[0].strip()
    missing = [p for p in paths if p not in owners]
    if missing:
        raise AssertionError("no Debian package owns %s" % ", ".join(missing))
    return owners


def installed_dependency_closure(packages: Iterable[str]) -> Set[str]:
    """Packages plus everything they (pre-)depend on, following installed packages."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Depends}, ${Pre-Depends}\n"],
        capture_output=True, text=True, check=True,
    ).stdout
    depends: Dict[str, List[str]] = {}
    for line in out.splitlines():
        name, _, deps = line.partition("\t")
        names = []
        for alternative in re.split(r"[,|]", deps):
            dep = re.sub(r"\(.*?\)", "", alternative).strip().split(":")[0]
            if dep:
                names.append(dep)
        depends.setdefault(name, []).extend(names)
    seen: Set[str] = set()
    todo = list(packages)
    while todo:
        pkg = todo.pop()
        if pkg not in seen:
            seen.add(pkg)
            todo.extend(depends.get(pkg, []))
    return seen
