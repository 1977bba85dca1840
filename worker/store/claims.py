"""Who reports an extension's outcome: the synchronous caller or the webhook.

A client that waits (``submit(job, wait=S)``) publishes the job with
``syncUntil`` = now + S. Extensions finishing before that are returned to
the caller and get no webhook; the rest get the webhook. Exactly one of the
two happens, decided by one ``SET NX`` per (job, extension) on
``<ns>:claim:<jobId>:<extension>``:

* the caller, when it returns, claims ``sync`` for every extension it saw
  final — if the webhook already holds the claim, it reports ``pending``;
* the deliverer, before the first attempt (not due before ``syncUntil``),
  claims ``webhook`` — if the caller holds it, the delivery ends
  ``suppressed`` without being sent.
"""

from __future__ import annotations

import redis

from worker.core.settings import Settings

SYNC = "sync"
WEBHOOK = "webhook"


def claim_key(settings: Settings, job_id: str, extension: str) -> str:
    return settings.keys.claim(job_id, extension)


def claim(client: redis.Redis, settings: Settings, job_id: str, extension: str, who: str) -> str:
    """Try to claim the report for ``who``; returns the owner (``who`` when won)."""
    key = claim_key(settings, job_id, extension)
    if client.set(key, who, nx=True, ex=settings.job_ttl_s):
        return who
    owner = client.get(key)
    return owner.decode() if owner else who
