"""One copy of each model per node (per GPU): an inference process the workers call.

``extworker serve`` with shared models (``EXTWORKER_SHARED_MODELS``: ``auto`` = on when a GPU
is visible) starts one ``InferenceServer`` process before dramatiq forks its workers. The
server loads each model once (its own ``ModelCache``) and answers every worker thread of every
worker process over a Unix socket in a private directory (``multiprocessing.connection``, with
an HMAC challenge on a per-``serve`` random key). Each connection has a thread in the server,
so concurrent calls meet in the models' micro-batchers there: batches gather across all the
node's jobs, not one process's. Workers keep the CPU work (decode, resize, normalise,
composite, encode) in their own processes and send only model-sized arrays.

Why a process and not threads in one process: measured on this project's remove-bg path, a job
holds the GIL for ~20 ms of Python (records, Redis, pydantic, glue) besides ~100 ms of
GIL-free C work (decode, resize, deflate) — one process tops out near 50 jobs/s whatever its
thread count, far below what one GPU serves. Many worker processes feeding one inference
process keep every core busy and one copy of each model on the GPU.

Errors cross as values: a ``PermanentError`` (bad input, a missing model) stays permanent with
its message and code; a server that is gone, restarting or silent past the timeout is a
``RetryableError`` (dramatiq retries the message), and the thread reconnects on its next call.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from worker.core.errors import PermanentError, RetryableError
from worker.models.ref import ModelRef

log = logging.getLogger(__name__)

# What a worker may call on each kind of model, besides ``describe``.
METHODS: dict[str, frozenset[str]] = {
    "remove-bg": frozenset({"infer"}),
    "imagenet": frozenset({"predict", "embed", "predict_and_embed"}),
    "classifier": frozenset({"predict"}),
    "zero-shot": frozenset({"predict", "scores"}),
    "captioner": frozenset({"predict"}),
}


def describe(model: Any) -> dict[str, Any]:
    """What a worker needs to know of a model it does not hold (and its recent batch sizes,
    for logs and tests)."""
    batcher = getattr(model, "batcher", None)
    return {"device": model.device, "decode_side": getattr(model, "decode_side", 0),
            "pid": os.getpid(),
            "batches": list(batcher.batches)[-100:] if batcher is not None else []}


class InferenceServer:
    """Serves ``get_model(key)``'s models to every connection, one thread per connection."""

    def __init__(self, address: str, authkey: bytes, get_model: Callable[[ModelRef], Any]) -> None:
        self.address, self.authkey, self.get_model = address, authkey, get_model

    def serve_forever(self) -> None:
        with Listener(self.address, family="AF_UNIX", authkey=self.authkey) as listener:
            log.info("inference server listening on %s (pid %d)", self.address, os.getpid())
            while True:
                try:
                    conn = listener.accept()
                except (OSError, EOFError, AuthenticationError) as e:  # that client only
                    log.warning("inference server: refused a connection: %s", e)
                    continue
                threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name="inference-conn").start()

    def _serve(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    key, method, args = conn.recv()
                except (EOFError, OSError):
                    return  # the worker went away
                answer = self._answer(key, method, args)
                try:
                    conn.send(answer)
                except (EOFError, OSError):
                    return
                except Exception as e:  # noqa: BLE001 - a result that cannot be pickled
                    conn.send(("retry", f"inference server could not send the result: {e}", ""))

    def _answer(self, key: ModelRef, method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        try:
            if not isinstance(key, ModelRef):
                raise PermanentError(f"inference server: {key!r} is not a ModelRef")
            kind = key.kind
            if method != "describe" and method not in METHODS.get(kind, ()):
                raise PermanentError(f"inference server: {kind!r} has no method {method!r}")
            model = self.get_model(key)
            result = describe(model) if method == "describe" else getattr(model, method)(*args)
            return ("ok", result)
        except PermanentError as e:
            return ("permanent", str(e), e.code)
        except Exception as e:  # noqa: BLE001 - crosses to the worker as a retryable error
            log.exception("inference server: %s.%s failed", key, method)
            return ("retry", f"{type(e).__name__}: {e}", "")


class InferenceClient:
    """Calls ``InferenceServer``s; one connection per calling thread.

    ``address``: one socket path, or several comma-separated (one inference process per GPU):
    threads are spread over them in turn, and a thread whose server is gone reconnects to the
    next one that accepts."""

    def __init__(self, address: str, authkey: bytes, timeout_s: float = 300.0,
                 connect_wait_s: float = 10.0) -> None:
        """``connect_wait_s``: how long a call waits for a socket to accept (the process
        may be restarting) before it fails as retryable."""
        self.addresses = [a for a in address.split(",") if a]
        self.address = address
        self.authkey, self.timeout_s = authkey, timeout_s
        self.connect_wait_s = connect_wait_s
        self._turn = itertools.count()
        self._local = threading.local()

    def _conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            deadline = time.monotonic() + self.connect_wait_s
            while True:
                address = self.addresses[next(self._turn) % len(self.addresses)]
                try:
                    conn = Client(address, family="AF_UNIX", authkey=self.authkey)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.1 / len(self.addresses))
            self._local.conn = conn
        return conn  # type: ignore[no-any-return]

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def unreachable(self) -> list[str]:
        """The addresses that do not accept a connection with our key right now, each with
        the reason (readiness probes)."""
        problems = []
        for address in self.addresses:
            try:
                Client(address, family="AF_UNIX", authkey=self.authkey).close()
            except (OSError, EOFError, AuthenticationError) as e:
                problems.append(f"inference process at {address} does not answer: {e}")
        return problems

    def call(self, key: ModelRef, method: str, *args: Any) -> Any:
        try:
            conn = self._conn()
            conn.send((key, method, args))
            if not conn.poll(self.timeout_s):
                raise TimeoutError(f"no answer within {self.timeout_s:g} s")
            answer = conn.recv()
        except (OSError, EOFError, TimeoutError, AuthenticationError) as e:
            self._drop()  # next call reconnects (the server may be restarting)
            raise RetryableError(f"inference server at {self.address} unavailable: {e}") from e
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "permanent":
            raise PermanentError(answer[1], code=answer[2] or None)
        raise RetryableError(f"inference server: {answer[1]}")
