"""Structured logs with structlog: JSON lines for machines, console for people.

Every line carries what is bound for the message being processed (``jobId``,
``fileId``, ``extension``, ``attempt``) plus any ``extra=`` fields (``device``,
``status``…). Standard-library loggers (dramatiq's included) go through the
same formatter. Secrets never reach the output: keys that look like secrets
are dropped and ``whsec_…`` values are masked wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from worker.core.settings import Settings

_SECRET_KEYS = re.compile(r"secret|signature|authorization|password|token|api[_-]?key", re.I)
_SECRET_VALUES = re.compile(
    r"whsec_[A-Za-z0-9+/=]{8,}|v1,[A-Za-z0-9+/=]{20,}"
    # presigned URLs: their credentials ride in the query string
    r"|(?i:x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|signature|sig|token|access_token)=[^&\s\"']+")


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_VALUES.sub("[redacted]", value)
    return value


def redact(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Drop secret-looking keys, mask secret-looking values (webhook secrets, signatures)."""
    return {k: ("[redacted]" if _SECRET_KEYS.search(k) else _mask(v)) for k, v in event.items()}


def configure(settings: Settings, stream: Any = None) -> None:
    stream = stream or sys.stderr
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore"):  # one line per webhook request is too much
        logging.getLogger(noisy).setLevel(logging.WARNING)
