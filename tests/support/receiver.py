"""A programmable local webhook receiver (127.0.0.1 only) for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 resets concurrent clients

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (the 30 s-limit tests) are expected here


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0  # before the status line
    trickle_s: float | None = None  # then send one body byte every trickle_s, forever


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """``script(n)`` returns the reply to the n-th request (0-based)."""

    def __init__(self, script: Callable[[int], Reply] | None = None) -> None:
        self.script = script or (lambda n: Reply())
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer.lock:
                    n = len(outer.requests)
                    outer.requests.append(Seen(dict(self.headers), body, time.time()))
                reply = outer.script(n)
                if reply.delay_s and outer.stop_event.wait(reply.delay_s):
                    return
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    if reply.trickle_s is not None:
                        self.send_header("Content-Length", "100000000")
                        self.end_headers()
                        while not outer.stop_event.wait(reply.trickle_s):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        return
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()
