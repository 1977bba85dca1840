"""The event bodies, exactly as the extensions reference shows them.

A body is serialised **once**, when the event is created, and those same
bytes are sent (and signed) on every attempt.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def webhook_id(job_id: str, extension: str) -> str:
    """Stable per (job, extension): the receiver's idempotency key across retries."""
    return "msg_" + hashlib.sha256(f"{job_id}/{extension}".encode()).hexdigest()[:26]


def body_for(
    service: str, status: str, file_id: str | None, file_object: dict[str, Any] | None,
    error: dict[str, str] | None,
) -> str:
    if status == "success" and file_object is not None:
        event: dict[str, Any] = {"service": service, "status": "SUCCESS", "fileObject": file_object}
    else:
        err = error or {"message": "unknown error", "code": "internal_error"}
        event = {"service": service, "status": "FAILURE", "fileId": file_id,
                 "error": {"message": err["message"], "code": err["code"]}}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
