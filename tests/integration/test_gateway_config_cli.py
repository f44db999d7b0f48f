"""CONTRACT §2/§3: `--check-config`, `--version` of both binaries."""

import os
import re

import pytest

from gateway_harness import gateway_binary, to_yaml, upstream_app_binary

ERROR_LINE = re.compile(r"^[^:]+:\d+: [a-z_.\[\]0-9]+: .+")
BINARIES = [("gateway", gateway_binary), ("upstream_app", upstream_app_binary)]
IDS = [b[0] for b in BINARIES]

# conf/examples/broken.yaml: line 9 `backlog: lots` (type), line 10
# `keep_alive_timout` (unknown key), line 12 `gzip_level: 12` (range).
BROKEN_EXPECTED = {
    (9, "gateway.backlog"),
    (10, "gateway.keep_alive_timout"),
    (12, "gateway.compression.gzip_level"),
}


def _clean_env() -> dict:
    # The shipped file uses ${REDIS_URL:-...} etc.; do not inherit odd values.
    return {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DB_URL", "OTLP_ENDPOINT", "SHIPPING_URL")}


def _run(binary_fn, args, env=None):
    import subprocess

    from gateway_harness import REPO_ROOT

    binary = binary_fn()
    if not binary.exists():
        pytest.fail("binary not found at %s (build it first)" % binary)
    return subprocess.run(
        [str(binary)] + list(args),
        capture_output=True,
        text=True,
        timeout=20,
        cwd=str(REPO_ROOT),
        env=env if env is not None else _clean_env(),
    )


def _show(result) -> str:
    return "exit %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (result.returncode, result.stdout, result.stderr)


@pytest.mark.parametrize("binary_fn", [b[1] for b in BINARIES], ids=IDS)
def test_check_config_broken_example_lists_three_errors_and_exits_2(binary_fn):
    result = _run(binary_fn, ["--check-config", "conf/examples/broken.yaml"])
    assert result.returncode == 2, _show(result)
    lines = (result.stdout + "\n" + result.stderr).splitlines()
    errors = [line for line in lines if ERROR_LINE.match(line)]
    assert len(errors) == 3, "expected 3 lines like FILE:LINE: key.path: message, got %d\n%s" % (
        len(errors),
        _show(result),
    )
    found = set()
    for line in errors:
        m = re.match(r"^([^:]+):(\d+): ([a-z_.\[\]0-9]+): ", line)
        assert m.group(1).endswith("broken.yaml"), line
        found.add((int(m.group(2)), m.group(3)))
    assert found == BROKEN_EXPECTED, "errors name %r, expected %r\n%s" % (sorted(found), sorted(BROKEN_EXPECTED), _show(result))


@pytest.mark.parametrize("binary_fn", [b[1] for b in BINARIES], ids=IDS)
def test_check_config_shipped_app_yaml_exits_0(binary_fn):
    result = _run(binary_fn, ["--check-config", "conf/app.yaml"])
    assert result.returncode == 0, _show(result)


def test_gateway_check_config_prints_minimum_termination_grace_period():
    # conf/app.yaml: graceful_timeout 30s + drain_delay 5s.
    result = _run(gateway_binary, ["--check-config", "conf/app.yaml"])
    assert result.returncode == 0, _show(result)
    out = result.stdout + result.stderr
    assert "terminationGracePeriodSeconds" in out and "35" in out, _show(result)


@pytest.mark.parametrize("binary_fn", [b[1] for b in BINARIES], ids=IDS)
def test_version_exits_0_and_prints_a_version(binary_fn):
    result = _run(binary_fn, ["--version"])
    assert result.returncode == 0, _show(result)
    assert re.search(r"\d+\.\d+", result.stdout + result.stderr), _show(result)


@pytest.mark.parametrize("binary_fn", [b[1] for b in BINARIES], ids=IDS)
def test_check_config_idle_timeout_not_below_app_keep_alive_names_both_keys(binary_fn, tmp_path):
    path = tmp_path / "race.yaml"
    path.write_text(
        to_yaml(
            {
                "gateway": {"upstream": {"idle_timeout": "90s"}},
                "upstream_app": {"keep_alive_timeout": "60s"},
            }
        )
    )
    result = _run(binary_fn, ["--check-config", str(path)])
    assert result.returncode == 2, _show(result)
    out = result.stdout + result.stderr
    assert "gateway.upstream.idle_timeout" in out and "upstream_app.keep_alive_timeout" in out, _show(result)


@pytest.mark.parametrize("binary_fn", [b[1] for b in BINARIES], ids=IDS)
def test_check_config_unset_variable_without_default_is_an_error(binary_fn, tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("redis:\n  url: ${SIDECAR_TEST_SURELY_UNSET_VAR}\n")
    env = _clean_env()
    env.pop("SIDECAR_TEST_SURELY_UNSET_VAR", None)
    result = _run(binary_fn, ["--check-config", str(path)], env=env)
    assert result.returncode == 2, _show(result)
    assert "SIDECAR_TEST_SURELY_UNSET_VAR" in result.stdout + result.stderr, _show(result)


@pytest.mark.parametrize("binary_fn", [b[1] for b in BINARIES], ids=IDS)
def test_check_config_bad_duration_names_key_and_line(binary_fn, tmp_path):
    path = tmp_path / "duration.yaml"
    path.write_text("gateway:\n  upstream:\n    connect_timeout: fast\n")
    result = _run(binary_fn, ["--check-config", str(path)])
    assert result.returncode == 2, _show(result)
    errors = [l for l in (result.stdout + "\n" + result.stderr).splitlines() if ERROR_LINE.match(l)]
    assert any(":3: gateway.upstream.connect_timeout: " in l for l in errors), _show(result)
