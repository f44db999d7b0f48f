"""Free TCP ports on 127.0.0.1 for servers started by the tests."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now.

    The kernel picks it (bind to port 0) and we release it at once, so another
    process can take it before our server binds: callers that start a server on
    it should retry with a new port when the server reports "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held open together while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
