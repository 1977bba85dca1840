"""Finds extension handlers through the ``extworker.extensions`` entry-point group, and
assembles the job contract from the params model each one owns."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from worker.core.contract import Contract

from .base import Extension

log = logging.getLogger(__name__)
GROUP = "extworker.extensions"


class Registry:
    """Extension instances by name (one instance per process), and the contract.

    ``params`` has the params model of every extension found — also of those this
    process cannot run (a missing extra): a job naming one is still valid, and fails
    with "not available in this deployment" rather than "unknown extension"."""

    def __init__(self, handlers: dict[str, Extension],
                 params: dict[str, type[BaseModel]] | None = None) -> None:
        self.handlers = handlers
        self.params = {**{n: h.params_model for n, h in handlers.items()}, **(params or {})}
        self.contract = Contract(self.params)

    @classmethod
    def discover(cls, extra: list[str] | None = None) -> Registry:
        """Load every installed handler (entry points, then ``extra`` import paths
        ``"module:Class"``); a broken plug-in is logged and skipped."""
        handlers: dict[str, Extension] = {}
        params: dict[str, type[BaseModel]] = {}
        found = list(entry_points(group=GROUP))
        for path in extra or []:
            found.append(EntryPoint(name="", value=path, group=GROUP))
        for ep in found:
            try:
                handler_cls = ep.load()
                if not ep.name:  # an import path: the class names itself
                    ep = EntryPoint(name=handler_cls.name, value=ep.value, group=GROUP)
                if getattr(handler_cls, "name", None) == ep.name:
                    params[ep.name] = handler_cls.params_model
                if not handler_cls.available():
                    log.info("extension %s is not available here (missing extra)", ep.name)
                    continue
                handler = handler_cls()
            except Exception:
                log.exception("extension entry point %s failed to load; skipped", ep.value)
                continue
            if getattr(handler, "name", None) != ep.name:
                log.error("entry point %s loads %r, whose name differs; skipped", ep.name, handler)
                continue
            handlers[ep.name] = handler
        return cls(handlers, params)

    def get(self, name: str) -> Extension | None:
        return self.handlers.get(name)

    @property
    def synchronous(self) -> list[str]:
        """The extensions an HTTP API caller may be answered for in the response."""
        return sorted(n for n, h in self.handlers.items() if h.synchronous)
