"""`make test`'s cost-per-request check (instructions_check.py), and proof that it can fail."""

import os
import re
import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parent / "instructions_check.py"


def run_check(extra_env=None, timeout=120):
    env = dict(os.environ)
    env.pop("PERF_S1_IR_MAX", None)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, env=env, timeout=timeout)


def measured(out: str) -> float:
    m = re.search(r"(\d+) instructions/request measured", out)
    assert m, out
    return float(m.group(1))


def test_s1_instructions_per_request_within_the_repo_bound():
    r = run_check()
    print(r.stdout.strip())
    assert r.returncode == 0, "exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    assert "bound" in r.stdout and "tests/perf/bounds.yaml" in r.stdout


def test_check_fails_when_the_cost_exceeds_the_bound():
    # A bound no proxied request can meet stands for "the per-request cost doubled": the
    # same measurement must then exit 1, not 0 and not 2 (measurement broken).
    r = run_check({"PERF_S1_IR_MAX": "1000", "PERF_REQUESTS": "500"})
    assert r.returncode == 1, "exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    assert "OVER THE BOUND" in r.stdout
    assert measured(r.stdout) > 1000
