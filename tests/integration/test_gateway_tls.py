"""TLS termination on `listen` (issue 10): TLS 1.2+ only, ALPN http/1.1, plaintext and old
protocols refused cleanly, truncated handshakes closed by header_timeout, certificates reloaded
with the config. Uses the real openssl and curl command-line tools against a test certificate."""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from gateway_harness import RawConn, build_request


def _make_cert(directory, name):
    cert, key = directory / (name + ".pem"), directory / (name + ".key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=" + name,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def _fingerprint(cert_path):
    out = subprocess.run(["openssl", "x509", "-in", str(cert_path), "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def _served_fingerprint(port):
    hello = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost"],
                           input="", capture_output=True, text=True, timeout=10)
    pem = hello.stdout[hello.stdout.index("-----BEGIN CERTIFICATE-----"):hello.stdout.index("-----END CERTIFICATE-----") + 25]
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=pem, capture_output=True,
                         text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


@pytest.fixture
def tls_gateway(start_gateway, fake_upstream, tmp_path):
    if shutil.which("openssl") is None or shutil.which("curl") is None:
        pytest.skip("openssl and curl command-line tools are needed")
    cert, key = _make_cert(tmp_path, "first")
    gw = start_gateway({"gateway": {"tls": {"cert_file": str(cert), "key_file": str(key)}, "header_timeout": "1s"}},
                       upstream=fake_upstream, wait_ready=False)
    gw.cert, gw.key, gw.tmp = cert, key, tmp_path
    return gw


def _curl(gw, path, *extra):
    return subprocess.run(
        ["curl", "-sS", "--cacert", str(gw.cert), "-o", "/dev/null", "-w", "%{http_code} %{num_connects} %{http_version}",
         *extra, "https://localhost:%d%s" % (gw.port, path)],
        capture_output=True, text=True, timeout=15)


def test_tls_curl_with_ca_works_and_keeps_the_connection(tls_gateway, fake_upstream):
    r = subprocess.run(
        ["curl", "-sS", "--cacert", str(tls_gateway.cert), "-w", "%{http_code} %{num_connects}\\n", "-o", "/dev/null",
         "https://localhost:%d/tls/a" % tls_gateway.port, "-o", "/dev/null", "https://localhost:%d/tls/b" % tls_gateway.port],
        capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["200 1", "200 0"], "two requests, one TLS connection: %r" % r.stdout
    seen = fake_upstream.requests_for("/tls/a")[0]
    assert ("X-Forwarded-Proto", "https") in [(k, v) for k, v in seen.headers]


def test_tls_alpn_http11_and_tls12_minimum(tls_gateway):
    ok = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_gateway.port, "-alpn", "h2,http/1.1",
                         "-tls1_2"], input="", capture_output=True, text=True, timeout=10)
    assert "ALPN protocol: http/1.1" in ok.stdout, ok.stdout[-2000:]
    assert "Protocol  : TLSv1.2" in ok.stdout or "TLSv1.2" in ok.stdout
    for old in ("-tls1", "-tls1_1"):
        refused = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_gateway.port, old],
                                 input="", capture_output=True, text=True, timeout=10)
        assert "Cipher is (NONE)" in refused.stdout or refused.returncode != 0, "%s was accepted" % old
    # The gateway is still fine afterwards.
    assert _curl(tls_gateway, "/tls/after").stdout.startswith("200")


def test_tls_port_answers_plaintext_http_with_400_and_closes(tls_gateway, fake_upstream):
    with RawConn(tls_gateway.port, timeout=3) as conn:
        conn.send(build_request("GET", "/tls/plain"))
        resp = conn.read_response()
        assert resp.status == 400, resp.describe()
        assert "TLS" in resp.json()["error"]
        assert conn.wait_closed(3) in ("closed", "reset")
    assert fake_upstream.requests_for("/tls/plain") == []


def test_tls_truncated_handshake_is_closed_by_header_timeout(tls_gateway):
    # The first bytes of a TLS record header, then silence.
    s = socket.create_connection(("127.0.0.1", tls_gateway.port), timeout=5)
    try:
        s.sendall(b"\x16\x03\x01\x02\x00\x01")
        t0 = time.monotonic()
        s.settimeout(5)
        data = s.recv(1024)
        elapsed = time.monotonic() - t0
        assert data == b"" or data[:1] == b"\x15", "expected a close (or an alert), got %r" % data[:20]
        assert elapsed < 3.5, "closed after %.2fs, header_timeout is 1s" % elapsed
    finally:
        s.close()
    assert _curl(tls_gateway, "/tls/still").stdout.startswith("200")


def test_tls_certificate_is_reloaded_with_the_config(tls_gateway):
    first = _fingerprint(tls_gateway.cert)
    assert _served_fingerprint(tls_gateway.port) == first
    cert2, key2 = _make_cert(tls_gateway.tmp, "second")
    tls_gateway.config["gateway"]["tls"] = {"cert_file": str(cert2), "key_file": str(key2)}
    from gateway_harness import to_yaml

    tls_gateway.config_path.write_text(to_yaml(tls_gateway.config))
    os.kill(tls_gateway.pid, signal.SIGHUP)
    second = _fingerprint(cert2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _served_fingerprint(tls_gateway.port) != second:
        time.sleep(0.1)
    assert _served_fingerprint(tls_gateway.port) == second, "new connections must get the reloaded certificate"
