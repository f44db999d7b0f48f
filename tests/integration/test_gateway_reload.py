"""Issue 8 config reload: SIGHUP and file changes (including a Kubernetes-style ..data symlink
swap) apply new CORS / limits to new requests without dropping connections; an invalid file
is rejected and the running config kept; gateway_config_reloads_total counts both."""

import os
import signal
import time

from gateway_harness import RawConn, build_request, deep_merge, http_request, to_yaml

ORIGIN_A = "https://a.example"
ORIGIN_B = "https://b.example"


def _preflight(port, origin):
    return http_request(port, "OPTIONS", "/x", headers=[("Origin", origin), ("Access-Control-Request-Method", "GET")])


def _reloads(gw, result):
    text = http_request(gw.admin_port, "GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith('gateway_config_reloads_total{result="%s"}' % result):
            return float(line.split()[-1])
    return 0.0


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _rewrite(gw, overrides):
    gw.config = deep_merge(gw.config, overrides)
    tmp = gw.config_path.with_suffix(".tmp")
    tmp.write_text(to_yaml(gw.config))
    os.replace(tmp, gw.config_path)  # atomic, as editors and config tooling do


def test_file_change_reloads_cors_without_dropping_keepalive_connections(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"cors": {"allow_origins": [ORIGIN_A]}}}, upstream=fake_upstream)
    assert _preflight(gw.port, ORIGIN_A).status == 204
    assert _preflight(gw.port, ORIGIN_B).status == 403
    with RawConn(gw.port) as conn:
        conn.send(build_request("GET", "/before"))
        assert conn.read_response().status == 200
        _rewrite(gw, {"gateway": {"cors": {"allow_origins": [ORIGIN_B]}}})
        assert _wait(lambda: _preflight(gw.port, ORIGIN_B).status == 204), "the new origin never became allowed"
        assert _preflight(gw.port, ORIGIN_A).status == 403
        # The keep-alive connection opened before the reload still works, under the new policy.
        conn.send(build_request("OPTIONS", "/x", headers=[("Origin", ORIGIN_B), ("Access-Control-Request-Method", "GET")]))
        assert conn.read_response().status == 204
    assert _reloads(gw, "success") >= 1


def test_invalid_file_is_rejected_and_old_config_kept(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"cors": {"allow_origins": [ORIGIN_A]}}}, upstream=fake_upstream)
    good = gw.config_path.read_text()
    gw.config_path.write_text(good.replace("cors:", "cors:\n    bogus_key: 1", 1))
    assert _wait(lambda: _reloads(gw, "failure") >= 1), "an invalid file must be counted as a failed reload"
    assert _preflight(gw.port, ORIGIN_A).status == 204, "the running config must be kept"
    assert http_request(gw.port, "GET", "/still-up").status == 200
    # Log lines are flushed by a background writer: wait for them rather than racing it.
    assert _wait(lambda: "config reload rejected" in gw.stdout_path.read_text())
    assert "bogus_key" in gw.stdout_path.read_text()


def test_sighup_reloads_and_restart_only_keys_are_reported(start_gateway, fake_upstream):
    gw = start_gateway({"gateway": {"limit_concurrency": 1000}}, upstream=fake_upstream)
    gw.config = deep_merge(gw.config, {"gateway": {"cors": {"allow_origins": [ORIGIN_B]}, "backlog": 100}})
    # Write without a watch event being needed: SIGHUP alone must reload.
    gw.config_path.write_text(to_yaml(gw.config))
    os.kill(gw.pid, signal.SIGHUP)
    assert _wait(lambda: _preflight(gw.port, ORIGIN_B).status == 204)
    assert _wait(lambda: "needs a restart" in gw.stdout_path.read_text())
    assert "gateway.backlog" in gw.stdout_path.read_text()


def test_configmap_style_symlink_swap_is_picked_up(fake_upstream, redis_url, tmp_path, register_process):
    # Kubernetes mounts a ConfigMap as dir/app.yaml -> ..data/app.yaml with ..data -> ..<stamp>;
    # an update writes a new stamped directory and swaps the ..data symlink atomically.
    from gateway_harness import Gateway, gateway_config

    mount = tmp_path / "configmap"
    (mount / "..v1").mkdir(parents=True)
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/app.yaml", mount / "app.yaml")
    config = gateway_config(fake_upstream.address, redis_url, {"gateway": {"cors": {"allow_origins": [ORIGIN_A]}, "drain_delay": "100ms", "graceful_timeout": "2s"}})
    gw = Gateway(config, tmp_path, name="gw_configmap")
    gw.config_path = mount / "app.yaml"  # the harness writes through the symlink into ..v1/
    register_process(gw)
    gw.start_and_wait()
    try:
        assert _preflight(gw.port, ORIGIN_A).status == 204
        (mount / "..v2").mkdir()
        (mount / "..v2" / "app.yaml").write_text(to_yaml(deep_merge(config, {"gateway": {"cors": {"allow_origins": [ORIGIN_B]}}})))
        os.symlink("..v2", mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")
        assert _wait(lambda: _preflight(gw.port, ORIGIN_B).status == 204), "the ..data swap was not noticed"
        assert _preflight(gw.port, ORIGIN_A).status == 403
    finally:
        assert gw.stop(timeout=5) == 0
