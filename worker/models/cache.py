"""Loaded models, once per process, with an idle TTL (``EXTWORKER_MODEL_IDLE_TTL_S``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from worker.models.ref import ModelRef
from worker.models.remote import InferenceClient


class ModelCache:
    """Loaded models, once per process: concurrent ``get``s of one key load it once.

    Keys are ``ModelRef``s (``worker.models.ref``). A model unused for ``idle_ttl_s`` is
    dropped by ``sweep`` (a running inference keeps its own reference, so an
    unload never breaks it). Owned by the worker's runtime, not a module
    global; extensions receive it in their context.
    """

    def __init__(self, idle_ttl_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[int], None] | None = None,
                 remote: InferenceClient | None = None,
                 on_batch: Callable[[str, int], None] | None = None) -> None:
        """``on_change`` gets the number of loaded models after each load or unload.
        ``remote``: the node's inference process holds the models (``remote.py``); this
        cache then holds light proxies to them. ``on_batch(model, size)``: every micro-batch
        its models run (a metric)."""
        self.remote = remote
        self.on_batch = on_batch
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._items: dict[ModelRef, Any] = {}
        self._used: dict[ModelRef, float] = {}
        self.idle_ttl_s = idle_ttl_s
        self.clock = clock
        self.loads = 0  # how many loads ran (tests: concurrent gets load once)
        self.on_change = on_change

    def get(self, key: ModelRef, loader: Callable[[], Any]) -> Any:
        self._used[key] = self.clock()
        item = self._items.get(key)
        if item is not None:
            return item
        # One load at a time per process, not per key: transformers' lazy imports
        # and from_pretrained's meta-device initialisation are not thread-safe
        # (two threads loading two models at once fail with "meta tensor" errors).
        with self._load_lock:
            item = self._items.get(key)
            if item is None:
                try:
                    item = loader()
                except BaseException:
                    self._used.pop(key, None)  # a failed load leaves nothing behind
                    raise
                self.loads += 1
                self._items[key] = item
                self._used[key] = self.clock()
                self._changed()
        return item

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(len(self._items))

    def sweep(self) -> list[ModelRef]:
        """Unload models idle for longer than ``idle_ttl_s``; returns their keys."""
        if self.idle_ttl_s is None:
            return []
        now = self.clock()
        dropped = []
        with self._lock:
            for key in list(self._items):
                if now - self._used.get(key, now) > self.idle_ttl_s:
                    del self._items[key]
                    self._used.pop(key, None)
                    dropped.append(key)
        if dropped:
            import gc

            gc.collect()
            self._changed()
        return dropped

    def loaded(self) -> list[str]:
        """The loaded models, ``<kind>:<name>`` each."""
        return sorted(str(k) for k in self._items)

    def loaded_names(self) -> set[str]:
        return {k.name for k in self._items}
