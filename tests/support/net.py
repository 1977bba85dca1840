"""Loopback ports: the one free-port helper of the tests and the benchmarks (stdlib only)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
    try:
        socket.create_connection((host, port), 0.2).close()
        return True
    except OSError:
        return False
