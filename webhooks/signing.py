"""Standard Webhooks signatures (and, optionally, the legacy ``x-ik-signature``).

``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` is
computed with the stock ``standardwebhooks`` package — the same code a
receiver verifies with. Several secrets (during a rotation's grace period)
give several space-separated signatures.

Two receivers read one secret ``whsec_<base64>`` two ways, and both must accept every
delivery: the stock library strips ``whsec_`` and base64-decodes the rest into the HMAC
key; the hosted API's SDKs (``client.webhooks.unwrap(body, headers=…, key=secret)``)
base64-*encode* the whole secret string and hand that to the same library, so their
HMAC key is the secret's own UTF-8 bytes. Each secret therefore signs twice, once per
key; a verifier accepts a message when any one signature matches.
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
    signers = [Webhook(s) for s in secrets]
    # The SDKs' reading of the same secret: the string's bytes are the key.
    signers += [Webhook(base64.b64encode(s.encode()).decode()) for s in secrets]
    signatures = " ".join(w.sign(msg_id, ts, body) for w in signers)
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
           "webhook-signature": signatures}
    if legacy:
        key = base64.b64decode(secrets[0].removeprefix("whsec_"))
        t_ms = timestamp * 1000
        digest = hmac.new(key, f"{t_ms}.{body}".encode(), hashlib.sha256).hexdigest()
        out["x-ik-signature"] = f"t={t_ms},v1={digest}"
    return out
