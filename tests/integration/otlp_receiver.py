"""A minimal OTLP/HTTP (JSON) trace receiver for tests: a stand-in collector.

It accepts `POST` on any path (the exporters post to /v1/traces), requires
`Content-Type: application/json` and a body that parses as JSON, records each
request, and answers `200 {}` like a collector that accepted everything. For
failure tests it can answer the first N requests with a chosen status (e.g.
503 or 429 with `Retry-After`).

Two ways to use it:

* as a script, for tests in other languages (the C++ exporter test):
      python3 otlp_receiver.py --port 4318 --out /tmp/spans.jsonl
  Each accepted request becomes one line of FILE, written and flushed before
  the answer is sent: {"path": ..., "content_type": ..., "body": <the JSON>}.
  `--port 0` picks a free port; the chosen port is printed as "PORT <n>" on
  stdout and written to `--port-file` when given.

* as a module, from pytest:
      receiver = OtlpReceiver(); receiver.start()
      ... point `tracing.otlp_endpoint` at receiver.endpoint ...
      spans = receiver.spans()   # flattened, with the resource's service.name
      receiver.stop()

* `validate_otlp_json(bodies)` runs tests/otlp/validate-otlp.mjs (node + the
  opentelemetry-proto schema installed by `make deps`) on raw request bodies,
  e.g. `receiver.raw_bodies()`: every body must decode as an
  ExportTraceServiceRequest under the strict OTLP/JSON rules.

127.0.0.1 only, stdlib only, one thread per connection, HTTP/1.1 keep-alive.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional, Union

MAX_BODY_BYTES = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests read the recorded requests, not an access log

    def _answer(self, status: int, body: bytes, extra: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit() or int(length_text) > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(411, b'{"error":"Content-Length required"}')
            return
        raw = self.rfile.read(int(length_text))
        receiver = self.server.receiver
        forced = receiver._next_forced_status()
        if forced is not None:
            extra = {}
            if receiver.retry_after is not None:
                extra["Retry-After"] = str(receiver.retry_after)
            self._answer(forced, b'{"error":"forced failure"}', extra)
            return
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            self._answer(415, b'{"error":"Content-Type must be application/json"}')
            return
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            receiver._record_error(f"bad JSON: {exc}")
            self._answer(400, json.dumps({"error": f"bad JSON: {exc}"}).encode())
            return
        receiver._record({"path": self.path, "content_type": content_type, "body": body}, raw)
        self._answer(200, b"{}")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._answer(405, b'{"error":"POST only"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: "OtlpReceiver"


class OtlpReceiver:
    """Collects OTLP/HTTP JSON export requests on 127.0.0.1."""

    def __init__(
        self,
        port: int = 0,
        out_path: Optional[str] = None,
        fail_first: int = 0,
        fail_status: int = 503,
        retry_after: Optional[int] = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._lock = threading.Lock()
        self.requests: list[dict] = []
        self.raw: list[bytes] = []  # the accepted bodies as received (in memory only)
        self.errors: list[str] = []
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.failures_sent = 0
        self._out = open(out_path, "a", encoding="utf-8") if out_path else None
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def start(self) -> "OtlpReceiver":
        self._thread = threading.Thread(target=self.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._out is not None:
            self._out.close()
            self._out = None

    def _next_forced_status(self) -> Optional[int]:
        with self._lock:
            if self.failures_sent < self.fail_first:
                self.failures_sent += 1
                return self.fail_status
        return None

    def _record(self, entry: dict, raw: bytes = b"") -> None:
        with self._lock:
            self.requests.append(entry)
            self.raw.append(raw)
            if self._out is not None:
                self._out.write(json.dumps(entry, separators=(",", ":")) + "\n")
                self._out.flush()

    def _record_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def spans(self) -> list[dict]:
        """Every span received, each with `service.name` of its resource added as "_service"."""
        with self._lock:
            requests = list(self.requests)
        return flatten_spans(requests)


    def raw_bodies(self) -> list[bytes]:
        """The accepted request bodies, byte for byte."""
        with self._lock:
            return list(self.raw)


VALIDATOR = Path(__file__).resolve().parents[1] / "otlp" / "validate-otlp.mjs"


def validate_otlp_json(bodies: list[Union[bytes, str]], timeout: float = 60.0) -> dict:
    """Runs tests/otlp/validate-otlp.mjs on OTLP/HTTP JSON bodies; returns its verdict
    {"documents": N, "spans": M, "errors": [...], "returncode": rc}. Raises RuntimeError when
    node or the schema packages are missing (install them with `make deps`)."""
    lines = []
    for body in bodies:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        # A raw CR/LF can only be JSON whitespace (inside strings they are escaped): one line each.
        lines.append(text.replace("\r", " ").replace("\n", " "))
    try:
        proc = subprocess.run(["node", str(VALIDATOR)], input="\n".join(lines) + "\n", capture_output=True,
                              text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise RuntimeError("node is not installed (run `make deps`)") from exc
    if proc.returncode == 2 or not proc.stdout.strip():
        raise RuntimeError("validate-otlp.mjs could not run (run `make deps`): %s" % proc.stderr.strip())
    verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    verdict["returncode"] = proc.returncode
    return verdict


def flatten_spans(requests: list[dict]) -> list[dict]:
    out = []
    for request in requests:
        for rs in request["body"].get("resourceSpans", []):
            service = None
            for attr in rs.get("resource", {}).get("attributes", []):
                if attr.get("key") == "service.name":
                    service = attr.get("value", {}).get("stringValue")
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    out.append(dict(span, _service=service))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", help="append each accepted request as a JSON line to this file")
    parser.add_argument("--port-file", help="write the bound port to this file")
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first N POSTs with --fail-status")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--retry-after", type=int, default=None, help="Retry-After seconds on forced failures")
    args = parser.parse_args(argv)

    receiver = OtlpReceiver(
        port=args.port,
        out_path=args.out,
        fail_first=args.fail_first,
        fail_status=args.fail_status,
        retry_after=args.retry_after,
        host=args.host,
    )
    if args.port_file:
        with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
            f.write(str(receiver.port))
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"PORT {receiver.port}", flush=True)

    def stop(_signum: int, _frame: Any) -> None:
        # shutdown() waits for serve_forever, which runs on this thread: do it from another one.
        threading.Thread(target=receiver._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # A test process that crashes cannot stop us: exit when our parent goes away.
    parent = os.getppid()

    def watch_parent() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    receiver.serve_forever()
    receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
