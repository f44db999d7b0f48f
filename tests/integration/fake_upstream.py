"""A scriptable HTTP/1.1 origin for the gateway's integration tests.

It works on raw sockets (no http.server) so that a test controls every byte
the gateway receives from its upstream, in the spirit of HAProxy's VTest
servers. One thread per accepted connection; keep-alive by default.

What it offers a test:
  * counts accepted connections and records every request it read
    (connection id, method, target, headers in order, body length and sha256);
  * per path prefix (longest prefix wins) a `Behaviour`: status, extra or
    replaced headers, fixed body, a generated body of N bytes sent with
    Content-Length or chunked, a delay before answering, a pause while reading
    the request body (to exercise the gateway's backpressure), closing the
    connection without answering;
  * per request overrides from the query string: `delay_ms`, `status`,
    `size` (generated body), `chunked=1`.

The default answer is a JSON echo of what the upstream saw, with the headers
`X-Echo-Path` and `X-Upstream-Conn`, so a test can check what was forwarded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import threading
import time
import urllib.parse
from typing import Iterator, Optional

# Deterministic content for generated bodies: a 64 KiB block derived from a
# fixed seed, repeated. Tests recompute the sha256 with `expected_sha256`.
_BLOCK_SIZE = 64 * 1024


def _make_block() -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < _BLOCK_SIZE:
        out += hashlib.sha256(b"sidecar-fake-upstream-%d" % counter).digest()
        counter += 1
    return bytes(out[:_BLOCK_SIZE])


PATTERN_BLOCK = _make_block()


def generated_chunks(size: int, piece: int = _BLOCK_SIZE) -> Iterator[bytes]:
    """The bytes of a generated body of `size` bytes, in pieces of <= piece."""
    sent = 0
    while sent < size:
        n = min(piece, size - sent, _BLOCK_SIZE)
        yield PATTERN_BLOCK[:n]
        sent += n


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in generated_chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


@dataclasses.dataclass
class Behaviour:
    """How the fake upstream answers requests under one path prefix."""

    status: int = 200
    # Extra response headers, sent in this order after the defaults.
    headers: list = dataclasses.field(default_factory=list)
    # True: send only `headers` (plus framing unless `raw_framing`), no defaults.
    replace_headers: bool = False
    # Fixed body; None means the JSON echo (unless stream_size is set).
    body: Optional[bytes] = None
    # Generated body of this many bytes (see generated_chunks).
    stream_size: Optional[int] = None
    # Frame the body with chunked encoding instead of Content-Length.
    chunked: bool = False
    # Do not add Content-Length / Transfer-Encoding: `headers` carry framing.
    raw_framing: bool = False
    # Seconds to wait after reading the request before answering.
    delay: float = 0.0
    # (after_bytes, seconds): stop reading the request body for a while once
    # after_bytes of it were read, so that the gateway must hold back.
    read_pause: Optional[tuple] = None
    # Close the connection after reading the request, without any answer.
    close_without_response: bool = False
    # Answer, then close the connection (with `Connection: close`).
    close_after: bool = False
    # Answer as keep-alive, then close the connection this many seconds later
    # without saying so (an upstream whose idle timeout fired).
    silent_close_after: Optional[float] = None


@dataclasses.dataclass
class RecordedRequest:
    conn_id: int
    method: str
    target: str
    path: str
    version: str
    headers: list  # [(name, value)] as received, in order
    received_at: float
    body_len: int = 0
    body_sha256: str = ""
    body_complete: bool = False

    def header(self, name: str) -> Optional[str]:
        """The values of `name` joined by ", " (None when absent)."""
        values = [v for (n, v) in self.headers if n.lower() == name.lower()]
        if not values:
            return None
        return ", ".join(values)

    def header_names(self) -> set:
        return {n.lower() for (n, _) in self.headers}


class _ConnectionClosed(Exception):
    pass


class _BadRequest(Exception):
    pass


class _Reader:
    """Buffered reads from a socket, for parsing heads, lines and bodies."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise _ConnectionClosed()
        self.buf += data

    def read_until(self, marker: bytes, limit: int = 1 << 20) -> bytes:
        start = 0
        while True:
            idx = self.buf.find(marker, start)
            if idx >= 0:
                out = bytes(self.buf[: idx + len(marker)])
                del self.buf[: idx + len(marker)]
                return out
            if len(self.buf) > limit:
                raise _BadRequest("head too large")
            start = max(0, len(self.buf) - len(marker) + 1)
            self._fill()

    def read_some(self, max_bytes: int) -> bytes:
        if not self.buf:
            self._fill()
        out = bytes(self.buf[:max_bytes])
        del self.buf[:max_bytes]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class FakeUpstream:
    """A threaded HTTP/1.1 origin on 127.0.0.1:<free port>."""

    def __init__(self, health_path: str = "/readyz"):
        self.health_path = health_path
        self._lock = threading.Lock()
        self._routes: dict = {}
        self._requests: list = []
        self._conns: dict = {}
        self._threads: list = []
        self._accepted = 0
        self._next_conn_id = 0
        self._stopping = False
        self.errors: list = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self.port = self._listener.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        # The gateway polls health_path for its readiness; answer 200 like a
        # healthy upstream_app unless a test says otherwise.
        self.route(health_path, body=b'{"db":"ok","cache":"ok"}')
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="fake-upstream-accept", daemon=True
        )
        self._accept_thread.start()

    # ----- scripting -------------------------------------------------------

    def route(self, prefix: str, **kwargs) -> Behaviour:
        """Answer requests whose path starts with `prefix` as described."""
        behaviour = Behaviour(**kwargs)
        with self._lock:
            self._routes[prefix] = behaviour
        return behaviour

    def set_health(self, status: int) -> None:
        body = b'{"db":"ok","cache":"ok"}' if status == 200 else b'{"db":"down"}'
        self.route(self.health_path, status=status, body=body)

    # ----- observations ----------------------------------------------------

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def requests(self, include_health: bool = False) -> list:
        with self._lock:
            reqs = list(self._requests)
        if include_health:
            return reqs
        return [r for r in reqs if r.path != self.health_path]

    def requests_for(self, prefix: str) -> list:
        return [r for r in self.requests(include_health=True) if r.path.startswith(prefix)]

    def wait_for_requests(self, prefix: str, count: int, timeout: float = 5.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests_for(prefix)
            if len(got) >= count:
                return got
            time.sleep(0.005)
        return self.requests_for(prefix)

    def conn_ids_for(self, prefix: str) -> set:
        return {r.conn_id for r in self.requests_for(prefix)}

    # ----- lifecycle -------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        self._accept_thread.join(timeout=2)
        for t in self._threads:
            t.join(timeout=2)

    def close_listener(self) -> None:
        """Stop accepting new connections (existing ones keep working)."""
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass

    def __enter__(self) -> "FakeUpstream":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- server internals ------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._accepted += 1
                self._next_conn_id += 1
                conn_id = self._next_conn_id
                self._conns[conn_id] = conn
            t = threading.Thread(
                target=self._serve, args=(conn, conn_id), name="fake-upstream-%d" % conn_id, daemon=True
            )
            self._threads.append(t)
            t.start()

    def _behaviour_for(self, path: str) -> Behaviour:
        with self._lock:
            best = None
            for prefix, behaviour in self._routes.items():
                if path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                    best = (prefix, behaviour)
        return dataclasses.replace(best[1]) if best else Behaviour()

    def _serve(self, conn: socket.socket, conn_id: int) -> None:
        reader = _Reader(conn)
        try:
            while not self._stopping:
                if not self._serve_one(conn, reader, conn_id):
                    break
        except (_ConnectionClosed, ConnectionError, OSError):
            pass
        except _BadRequest as exc:
            self.errors.append("conn %d: %s" % (conn_id, exc))
            try:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
        finally:
            with self._lock:
                self._conns.pop(conn_id, None)
            try:
                conn.close()
            except OSError:
                pass

    def _serve_one(self, conn: socket.socket, reader: _Reader, conn_id: int) -> bool:
        head = reader.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ", 2)
        except ValueError:
            raise _BadRequest("bad request line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _BadRequest("bad header line %r" % line)
            headers.append((name, value.strip(" \t")))
        parsed = urllib.parse.urlsplit(target)
        path = parsed.path or target
        query = dict(urllib.parse.parse_qsl(parsed.query))
        rec = RecordedRequest(
            conn_id=conn_id,
            method=method,
            target=target,
            path=path,
            version=version,
            headers=headers,
            received_at=time.monotonic(),
        )
        with self._lock:
            self._requests.append(rec)

        behaviour = self._behaviour_for(path)
        if "delay_ms" in query:
            behaviour.delay = int(query["delay_ms"]) / 1000.0
        if "status" in query:
            behaviour.status = int(query["status"])
        if "size" in query:
            behaviour.stream_size = int(query["size"])
        if query.get("chunked") == "1":
            behaviour.chunked = True

        self._read_body(reader, rec, behaviour)
        if behaviour.close_without_response:
            return False
        if behaviour.delay > 0:
            time.sleep(behaviour.delay)
        client_wants_close = any(
            n.lower() == "connection" and "close" in v.lower() for (n, v) in headers
        )
        close = behaviour.close_after or client_wants_close
        self._respond(conn, rec, behaviour, close, head_only=(method == "HEAD"))
        if behaviour.silent_close_after is not None and not close:
            time.sleep(behaviour.silent_close_after)
            return False
        return not close

    def _read_body(self, reader: _Reader, rec: RecordedRequest, behaviour: Behaviour) -> None:
        te = rec.header("transfer-encoding")
        cl = rec.header("content-length")
        digest = hashlib.sha256()
        paused = False

        def consume(data: bytes) -> None:
            nonlocal paused
            digest.update(data)
            rec.body_len += len(data)
            if behaviour.read_pause and not paused and rec.body_len >= behaviour.read_pause[0]:
                paused = True
                time.sleep(behaviour.read_pause[1])

        if te is not None and te.strip().lower().endswith("chunked"):
            while True:
                size_line = reader.read_until(b"\r\n", limit=4096)
                size_text = size_line[:-2].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _BadRequest("bad chunk size %r" % size_line)
                if size == 0:
                    # Trailers (usually none) end with an empty line.
                    while reader.read_until(b"\r\n", limit=65536) != b"\r\n":
                        pass
                    break
                remaining = size
                while remaining > 0:
                    data = reader.read_some(min(remaining, 256 * 1024))
                    remaining -= len(data)
                    consume(data)
                if reader.read_exact(2) != b"\r\n":
                    raise _BadRequest("chunk not followed by CRLF")
        elif cl is not None:
            try:
                remaining = int(cl)
            except ValueError:
                raise _BadRequest("bad content-length %r" % cl)
            while remaining > 0:
                data = reader.read_some(min(remaining, 256 * 1024))
                remaining -= len(data)
                consume(data)
        rec.body_sha256 = digest.hexdigest()
        rec.body_complete = True

    def _respond(self, conn, rec: RecordedRequest, behaviour: Behaviour, close: bool, head_only: bool) -> None:
        status = behaviour.status
        reason = _REASONS.get(status, "Status")
        if behaviour.stream_size is not None:
            size = behaviour.stream_size
            body_iter = generated_chunks(size)
            content_type = "application/octet-stream"
        else:
            if behaviour.body is not None:
                body = behaviour.body
            else:
                body = json.dumps(
                    {
                        "method": rec.method,
                        "target": rec.target,
                        "path": rec.path,
                        "headers": rec.headers,
                        "body_len": rec.body_len,
                        "body_sha256": rec.body_sha256,
                        "conn_id": rec.conn_id,
                    }
                ).encode()
            size = len(body)
            body_iter = iter([body]) if body else iter([])
            content_type = "application/json"
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        if not behaviour.replace_headers:
            lines.append("Content-Type: " + content_type)
            lines.append("X-Echo-Path: " + rec.path)
            lines.append("X-Upstream-Conn: %d" % rec.conn_id)
        for name, value in behaviour.headers:
            lines.append("%s: %s" % (name, value))
        no_body = status in (204, 304) or 100 <= status < 200
        if not behaviour.raw_framing and not no_body:
            if behaviour.chunked:
                lines.append("Transfer-Encoding: chunked")
            else:
                lines.append("Content-Length: %d" % size)
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn.sendall(head)
        if head_only or no_body:
            return
        for piece in body_iter:
            if behaviour.chunked:
                conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                conn.sendall(piece)
        if behaviour.chunked:
            conn.sendall(b"0\r\n\r\n")


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
