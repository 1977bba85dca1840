"""Standard Webhooks signatures (and, optionally, the legacy ``x-ik-signature``).

``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` is
computed with the stock ``standardwebhooks`` package — the same code a
receiver verifies with. Several secrets (during a rotation's grace period)
give several space-separated signatures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from standardwebhooks import Webhook


def headers(msg_id: str, timestamp: int, body: str, secrets: list[str],
            legacy: bool = False) -> dict[str, str]:
    # An aware UTC datetime: the package's sign() would read a naive one as UTC.
    ts = datetime.fromtimestamp(timestamp, tz=UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, ts, body) for s in secrets)
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
           "webhook-signature": signatures}
    if legacy:
        key = base64.b64decode(secrets[0].removeprefix("whsec_"))
        t_ms = timestamp * 1000
        digest = hmac.new(key, f"{t_ms}.{body}".encode(), hashlib.sha256).hexdigest()
        out["x-ik-signature"] = f"t={t_ms},v1={digest}"
    return out
