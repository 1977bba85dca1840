"""A claimed batch of deliveries, kept leased while its attempts run.

A claim pushes each id's score in the due set to *now + lease*; when the lease runs out the
id is due again and another worker attempts it — that is how a crashed worker's deliveries
are never lost. So a live worker must never let the lease of an attempt it is making run
out: the receiver would get the same webhook-id twice. Checking the time once, before the
attempt, is not enough: a stalled event loop, a thread pool queue or a slow Redis can put
the record of an attempt past its lease even when the attempt itself was quick.

``HeldClaim`` therefore renews the whole batch from a thread of its own every third of the
lease, while the batch runs, and records every outcome under the lease it holds at that
moment. Renewals and records take one lock, so a record never carries a lease that a
renewal has just replaced. Only a process that stops renewing for two thirds of a lease (a
crash, a freeze) lets another worker attempt its deliveries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from webhooks.store import DeliveryStore

log = logging.getLogger(__name__)


class HeldClaim:
    def __init__(self, store: DeliveryStore, ids: list[str], lease: int, lease_ms: int,
                 now_ms: Callable[[], int]) -> None:
        """``lease``: the score the claim gave ``ids``; ``lease_ms``: how far each renewal
        pushes it beyond ``now_ms()``."""
        self.store = store
        self.lease = lease
        self.lease_ms = lease_ms
        self.now_ms = now_ms
        self.held = set(ids)
        self.period_s = lease_ms / 3000
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="webhook-lease",
                                        daemon=True)

    def __enter__(self) -> HeldClaim:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def holds(self, delivery_id: str) -> bool:
        """Whether an attempt of ``delivery_id`` may start now: still ours, and with more
        than one renewal period of lease left (else renewals are late: something stalls)."""
        with self._lock:
            return (delivery_id in self.held
                    and self.lease - self.now_ms() > self.period_s * 1000)

    def release(self, ids: list[str]) -> None:
        """Give ids back unattempted: due at once for another claim."""
        with self._lock:
            self.store.release(ids, self.lease, self.now_ms())
            self.held.difference_update(ids)

    def finish_many(self, batch: list[tuple[dict[str, Any], int | None, bool, int]]
                    ) -> list[bool]:
        """``DeliveryStore.finish_many`` under the lease held now; the ids leave the claim."""
        with self._lock:
            applied = self.store.finish_many(
                [(doc, self.lease, next_due, exhausted, now)
                 for doc, next_due, exhausted, now in batch])
            self.held.difference_update(doc["id"] for doc, *_ in batch)
        return applied

    def renew(self) -> None:
        with self._lock:
            if not self.held:
                return
            new = self.now_ms() + self.lease_ms
            kept = set(self.store.renew_many(sorted(self.held), self.lease, new))
            lost = self.held - kept
            if lost:
                log.warning("webhook deliveries %s: lease lost; another worker owns them",
                            sorted(lost))
            self.held, self.lease = kept, new

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.renew()
            except Exception as e:  # Redis away: try again next period (the lease may lapse)
                log.warning("webhook lease renewal failed: %s", e)
