"""Process and raw-socket harness for the gateway integration tests.

* where the binaries are (`SIDECAR_BUILD_DIR`, default `build`, relative to
  the repo root), free ports on 127.0.0.1;
* a small YAML writer and the base configuration of CONTRACT §3 with only
  what the tests need set (everything else keeps its default);
* `ManagedProcess` / `Gateway` / `UpstreamApp`: start with stdout/stderr
  captured to files, wait for `/healthz`, stop with SIGTERM and report the
  exit code, RSS from /proc/PID/status;
* `RawConn`: send exact bytes, read one full response (status line, headers,
  Content-Length / chunked / close-delimited body), and tell whether the
  server closed the connection.

Python stdlib only: this runs under Debian's /usr/bin/python3 -m pytest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    d = Path(os.environ.get("SIDECAR_BUILD_DIR", "build"))
    return d if d.is_absolute() else REPO_ROOT / d


def gateway_binary() -> Path:
    return build_dir() / "gateway" / "gateway"


def upstream_app_binary() -> Path:
    return build_dir() / "upstream_app" / "upstream_app"


_handed_out_ports: set = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on right now (bound then released).

    Never returns the same port twice in one test session: the kernel may hand
    a just-released port out again, and two listeners (or a listener and the
    "dead upstream" address) on one port would make a test meaningless.
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise RuntimeError("no fresh free port after 100 tries")


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------

_PLAIN_SCALAR = re.compile(r"^[A-Za-z0-9_./@+-][A-Za-z0-9_./:@+-]*$")
_YAML_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(value, in_flow: bool = False) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    plain_ok = _PLAIN_SCALAR.match(text) and text.lower() not in _YAML_SPECIAL and not text.endswith(":")
    # Inside [a, b] keep URLs and host:port quoted: parsers differ on ':' there.
    if plain_ok and not (in_flow and ":" in text):
        return text
    # JSON string syntax is valid YAML double-quoted syntax.
    return json.dumps(text)


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML for dicts/lists of scalars (and lists of dicts)."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, dict):
                if value:
                    out.append("%s%s:\n%s" % (pad, key, to_yaml(value, indent + 1)))
                else:
                    out.append("%s%s: {}\n" % (pad, key))
            elif isinstance(value, list):
                if not value:
                    out.append("%s%s: []\n" % (pad, key))
                elif all(not isinstance(v, (dict, list)) for v in value):
                    out.append("%s%s: [%s]\n" % (pad, key, ", ".join(_scalar(v, in_flow=True) for v in value)))
                else:
                    out.append("%s%s:\n%s" % (pad, key, to_yaml(value, indent + 1)))
            else:
                out.append("%s%s: %s\n" % (pad, key, _scalar(value)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                inner = to_yaml(item, indent + 1).splitlines(keepends=True)
                first = inner[0].lstrip(" ")
                out.append("%s- %s" % (pad, first))
                out.extend(inner[1:])
            else:
                out.append("%s- %s\n" % (pad, _scalar(item)))
    else:
        out.append(pad + _scalar(obj) + "\n")
    return "".join(out)


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def gateway_config(upstream_address: str, redis_url: str, overrides: Optional[dict] = None) -> dict:
    """CONTRACT §3 config with only the keys these tests rely on.

    Listeners on free 127.0.0.1 ports, the upstream at `upstream_address`,
    health polled every 100ms, tracing/rate limits/cache rules off. The
    upstream_app keep-alive stays above the gateway's upstream idle_timeout so
    the cross-check of §3 passes.
    """
    base = {
        "redis": {"url": redis_url},
        "gateway": {
            "listen": "127.0.0.1:%d" % free_port(),
            "admin_listen": "127.0.0.1:%d" % free_port(),
            "workers": 1,
            "upstream": {
                "address": upstream_address,
                "idle_timeout": "60s",
                "health_interval": "100ms",
            },
            "tracing": {"enabled": False},
            "rate_limits": [],
            "cache": {"rules": []},
            "logging": {"level": "info", "access_log": True},
        },
        "upstream_app": {"keep_alive_timeout": "90s"},
    }
    return deep_merge(base, overrides or {})


def _port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------


def proc_status_kib(pid: int, key: str) -> int:
    """VmRSS / VmHWM (kB) of a process, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class RssSampler:
    """Samples VmRSS of a pid every `interval` seconds; `peak_kib` is the max."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid = pid
        self.interval = interval
        self.baseline_kib = proc_status_kib(pid, "VmRSS")
        self.peak_kib = self.baseline_kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, proc_status_kib(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        try:
            self.peak_kib = max(self.peak_kib, proc_status_kib(self.pid, "VmRSS"))
        except (OSError, KeyError):
            pass

    @property
    def growth_kib(self) -> int:
        return self.peak_kib - self.baseline_kib


# ---------------------------------------------------------------------------
# Raw HTTP client
# ---------------------------------------------------------------------------


class ServerClosed(Exception):
    """The server closed (FIN) before a complete response; `.partial` has the bytes."""

    def __init__(self, message: str, partial: bytes = b""):
        super().__init__(message + (" (got %d bytes: %r)" % (len(partial), partial[:300])))
        self.partial = partial


class ServerReset(Exception):
    """The connection was reset (RST) before a complete response."""

    def __init__(self, message: str, partial: bytes = b""):
        super().__init__(message + (" (got %d bytes: %r)" % (len(partial), partial[:300])))
        self.partial = partial


class ResponseTimeout(Exception):
    def __init__(self, message: str, partial: bytes = b""):
        super().__init__(message + (" (got %d bytes: %r)" % (len(partial), partial[:300])))
        self.partial = partial


@dataclasses.dataclass
class HttpResponse:
    status: int
    reason: str
    version: str
    headers: list  # [(name, value)] in order
    body: bytes
    raw_head: bytes
    chunked: bool = False
    body_sha256: str = ""

    def header(self, name: str) -> Optional[str]:
        values = [v for (n, v) in self.headers if n.lower() == name.lower()]
        if not values:
            return None
        return ", ".join(values)

    def header_list(self, name: str) -> list:
        return [v for (n, v) in self.headers if n.lower() == name.lower()]

    def has_header(self, name: str) -> bool:
        return any(n.lower() == name.lower() for (n, _) in self.headers)

    def connection_tokens(self) -> set:
        value = self.header("connection") or ""
        return {t.strip().lower() for t in value.split(",") if t.strip()}

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def describe(self) -> str:
        return "%s %d %s | headers=%r | body=%r" % (
            self.version,
            self.status,
            self.reason,
            self.headers,
            self.body[:500],
        )


class RawConn:
    """One client TCP connection with a read buffer (pipelining safe)."""

    def __init__(self, port: int, timeout: float = 5.0, host: str = "127.0.0.1"):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_more(self, deadline: float, what: str, partial: bytes = b"") -> None:
        """Append at least one byte to buf, or raise ServerClosed/ServerReset/ResponseTimeout."""
        if self.eof:
            raise ServerClosed("server closed the connection while waiting for " + what, partial)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ResponseTimeout("no complete %s within the timeout" % what, partial)
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(256 * 1024)
        except socket.timeout:
            raise ResponseTimeout("no complete %s within the timeout" % what, partial)
        except ConnectionResetError:
            raise ServerReset("connection reset by the server while waiting for " + what, partial)
        if not data:
            self.eof = True
            raise ServerClosed("server closed the connection while waiting for " + what, partial)
        self.buf += data

    def _read_line(self, deadline: float, what: str, consumed: bytearray) -> bytes:
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                line = bytes(self.buf[: idx + 1])
                del self.buf[: idx + 1]
                consumed += line
                return line
            self._recv_more(deadline, what, bytes(consumed + self.buf))

    def read_response(
        self,
        timeout: Optional[float] = None,
        method: str = "GET",
        keep_body: bool = True,
        body_pause: Optional[tuple] = None,
    ) -> HttpResponse:
        """Read one complete response.

        keep_body=False only hashes the body (for large downloads).
        body_pause=(after_bytes, seconds): stop reading for a while once that
        many body bytes arrived, so that the sender must hold back.
        """
        import hashlib

        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            consumed = bytearray()
            head_lines = []
            while True:
                line = self._read_line(deadline, "response head", consumed)
                if line in (b"\r\n", b"\n"):
                    break
                head_lines.append(line.rstrip(b"\r\n"))
            if not head_lines:
                raise AssertionError("empty response head: %r" % bytes(consumed))
            status_line = head_lines[0].decode("latin-1")
            m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", status_line)
            if not m:
                raise AssertionError("malformed status line %r (head %r)" % (status_line, bytes(consumed)))
            version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
            headers = []
            for raw in head_lines[1:]:
                name, sep, value = raw.decode("latin-1").partition(":")
                if not sep:
                    raise AssertionError("malformed response header line %r" % raw)
                headers.append((name, value.strip(" \t")))
            if 100 <= status < 200 and status != 101:
                continue  # interim response: the real one follows
            break

        resp = HttpResponse(status, reason, version, headers, b"", bytes(consumed))
        digest = hashlib.sha256()
        body = bytearray()
        received = 0
        paused = False

        def take(data: bytes) -> None:
            nonlocal received, paused
            digest.update(data)
            if keep_body:
                body.extend(data)
            received += len(data)
            if body_pause and not paused and received >= body_pause[0]:
                paused = True
                time.sleep(body_pause[1])

        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if method == "HEAD" or status in (204, 304):
            pass
        elif te is not None:
            if te.strip().lower() != "chunked":
                raise AssertionError("response Transfer-Encoding is not exactly 'chunked': %r" % te)
            resp.chunked = True
            while True:
                size_line = self._read_line(deadline, "chunk size", bytearray())
                size_text = size_line.rstrip(b"\r\n").split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise AssertionError("bad chunk size line in the response: %r" % size_line)
                if size == 0:
                    while self._read_line(deadline, "trailers", bytearray()) not in (b"\r\n", b"\n"):
                        pass
                    break
                remaining = size
                while remaining > 0:
                    if not self.buf:
                        self._recv_more(deadline, "chunk data", resp.raw_head + bytes(body[-200:]))
                    n = min(remaining, len(self.buf))
                    take(bytes(self.buf[:n]))
                    del self.buf[:n]
                    remaining -= n
                crlf = self._read_line(deadline, "chunk end", bytearray())
                if crlf not in (b"\r\n",):
                    raise AssertionError("chunk data not followed by CRLF: %r" % crlf)
        elif cl is not None:
            values = {v.strip() for v in cl.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise AssertionError("bad response Content-Length %r" % cl)
            remaining = int(next(iter(values)))
            while remaining > 0:
                if not self.buf:
                    self._recv_more(
                        deadline,
                        "response body (%d of %s bytes)" % (received, cl),
                        resp.raw_head + bytes(body[-200:]),
                    )
                n = min(remaining, len(self.buf))
                take(bytes(self.buf[:n]))
                del self.buf[:n]
                remaining -= n
        else:
            # Close-delimited body.
            while True:
                if self.buf:
                    take(bytes(self.buf))
                    self.buf.clear()
                try:
                    self._recv_more(deadline, "close-delimited body")
                except ServerClosed:
                    break
        resp.body = bytes(body)
        resp.body_sha256 = digest.hexdigest()
        return resp

    def wait_closed(self, timeout: float) -> str:
        """'closed' (FIN), 'reset' (RST), 'open' (nothing within timeout), or
        'data:<bytes>' if the server sent something instead."""
        if self.buf:
            return "data:%r" % bytes(self.buf[:300])
        if self.eof:
            return "closed"
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "open"
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return "open"
            except ConnectionResetError:
                return "reset"
            if not data:
                self.eof = True
                return "closed"
            self.buf += data
            return "data:%r" % bytes(self.buf[:300])

    def readable(self, timeout: float = 0.0) -> bool:
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)


def build_request(
    method: str = "GET",
    path: str = "/",
    headers: Optional[list] = None,
    body: Optional[bytes] = None,
    host: str = "gateway.test",
) -> bytes:
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + host]
    for name, value in headers or []:
        lines.append("%s: %s" % (name, value))
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def http_request(
    port: int,
    method: str = "GET",
    path: str = "/",
    headers: Optional[list] = None,
    body: Optional[bytes] = None,
    timeout: float = 5.0,
) -> HttpResponse:
    """One request on a fresh connection (closed afterwards)."""
    with RawConn(port, timeout=timeout) as conn:
        conn.send(build_request(method, path, headers, body))
        return conn.read_response(method=method)


def error_json_problems(resp: HttpResponse) -> list:
    """What is wrong with a gateway-made error reply (CONTRACT §4 'Errors')."""
    problems = []
    ctype = (resp.header("content-type") or "").lower()
    if not ctype.startswith("application/json"):
        problems.append("Content-Type is %r, expected application/json" % resp.header("content-type"))
    try:
        doc = resp.json()
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append("body is not JSON (%s): %r" % (exc, resp.body[:300]))
        return problems
    if not isinstance(doc, dict):
        problems.append("body is not a JSON object: %r" % doc)
        return problems
    if not isinstance(doc.get("error"), str) or not doc.get("error"):
        problems.append('body lacks a non-empty "error" string: %r' % doc)
    if not isinstance(doc.get("request_id"), str) or not doc.get("request_id"):
        problems.append('body lacks a non-empty "request_id" string: %r' % doc)
    else:
        echoed = resp.header("x-request-id")
        if echoed is not None and echoed != doc["request_id"]:
            problems.append(
                "request_id in body %r differs from X-Request-ID header %r" % (doc["request_id"], echoed)
            )
    return problems


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


class ManagedProcess:
    """A binary run with `--config FILE`, output captured to files."""

    binary_fn = staticmethod(gateway_binary)
    kind = "process"

    def __init__(self, config: dict, workdir: Path, name: Optional[str] = None, extra_args=()):
        self.config = config
        self.name = name or self.kind
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / ("%s.yaml" % self.name)
        self.stdout_path = self.workdir / ("%s.stdout.log" % self.name)
        self.stderr_path = self.workdir / ("%s.stderr.log" % self.name)
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "ManagedProcess":
        binary = self.binary_fn()
        if not binary.exists():
            raise AssertionError(
                "%s binary not found at %s (build it: cmake --build build -j2; "
                "or set SIDECAR_BUILD_DIR)" % (self.kind, binary)
            )
        self.config_path.write_text(to_yaml(self.config))
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "--config", str(self.config_path)] + self.extra_args,
            stdout=self._stdout,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            cwd=str(REPO_ROOT),
        )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_http_ok(self, port: int, path: str = "/healthz", timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.returncode = self.proc.returncode  # reported here, not again at teardown
                raise AssertionError(
                    "%s exited with code %s before answering %s\n%s"
                    % (self.name, self.proc.returncode, path, self.log_tail())
                )
            try:
                resp = http_request(port, "GET", path, timeout=1.0)
                if resp.status == 200:
                    return
                last = "status %d body %r" % (resp.status, resp.body[:200])
            except (OSError, ServerClosed, ServerReset, ResponseTimeout, AssertionError) as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise AssertionError(
            "%s did not answer 200 on 127.0.0.1:%d%s within %.1fs (last: %s)\n%s"
            % (self.name, port, path, timeout, last, self.log_tail())
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> Optional[int]:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM, wait up to `timeout`, SIGKILL if needed. Returns the exit
        code, or None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self._close_files()
            return self.returncode
        self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        if code is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self._close_files()
            return None
        self._close_files()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._close_files()

    def _close_files(self) -> None:
        for f in (getattr(self, "_stdout", None), getattr(self, "_stderr", None)):
            if f is not None and not f.closed:
                f.close()

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        out = self.stdout_text().splitlines()[-lines:]
        err = self.stderr_text().splitlines()[-lines:]
        return "--- %s stdout (last %d lines, %s) ---\n%s\n--- %s stderr (last %d lines, %s) ---\n%s" % (
            self.name,
            len(out),
            self.stdout_path,
            "\n".join(out),
            self.name,
            len(err),
            self.stderr_path,
            "\n".join(err),
        )

    def is_sanitized(self) -> bool:
        """Built with ASan (make asan) or TSan (make tsan): ASan's quarantine
        keeps freed buffers resident and TSan adds shadow memory per byte
        touched, so RSS budgets do not apply."""
        try:
            with open("/proc/%d/maps" % self.pid) as f:
                maps = f.read()
                if "libasan" in maps or "libtsan" in maps:
                    return True
        except OSError:
            pass
        try:
            binary = self.binary_fn().read_bytes()
            return b"__asan_init" in binary or b"__tsan_init" in binary
        except OSError:
            return False

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")


class Gateway(ManagedProcess):
    binary_fn = staticmethod(gateway_binary)
    kind = "gateway"

    @property
    def port(self) -> int:
        return _port_of(self.config["gateway"]["listen"])

    @property
    def admin_port(self) -> int:
        return _port_of(self.config["gateway"]["admin_listen"])

    @property
    def plain_port(self) -> int:
        """A port that speaks plain HTTP: the admin listener when `listen` terminates TLS."""
        tls = self.config["gateway"].get("tls") or {}
        return self.admin_port if tls.get("cert_file") else self.port

    def start_and_wait(self, timeout: float = 10.0) -> "Gateway":
        self.start()
        self.wait_http_ok(self.plain_port, "/healthz", timeout)
        return self

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until /readyz says 200 (upstream health polled OK)."""
        self.wait_http_ok(self.plain_port, "/readyz", timeout)


class UpstreamApp(ManagedProcess):
    binary_fn = staticmethod(upstream_app_binary)
    kind = "upstream_app"

    @property
    def port(self) -> int:
        return _port_of(self.config["upstream_app"]["listen"])


def run_cli(binary: Path, args: list, timeout: float = 20.0, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    if not binary.exists():
        raise AssertionError("binary not found at %s (build it first)" % binary)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [str(binary)] + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO_ROOT),
        env=full_env,
    )
