"""When attempts happen: the published retry schedule, jitter and ``Retry-After``.

Default delays after the previous attempt (seconds): 0, 5, 5 min, 30 min,
2 h, 5 h, 10 h, and a last one of 23 095 s (6 h 25 min) so that the series
ends 24 h after the first attempt. Each delay but the first is jittered by
±20 %. ``EXTWORKER_WEBHOOK_DELAYS_S`` replaces the list.
"""

from __future__ import annotations

import random

DEFAULT_DELAYS_S: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 23095)
JITTER = 0.2


def jittered(delay_s: float, rng: random.Random | None = None) -> float:
    if delay_s <= 0:
        return 0.0
    return delay_s * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def next_delay(
    delays: tuple[int, ...] | list[int], attempts_made: int, retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` failures; ``None`` = exhausted.

    ``Retry-After`` (429/503) is honoured but bounded to between the scheduled
    delay and twice it, so a receiver can slow us down but not stall the series.
    """
    if attempts_made >= len(delays):
        return None
    scheduled = jittered(delays[attempts_made], rng)
    if retry_after_s is not None:
        return min(max(retry_after_s, scheduled), 2 * scheduled)
    return scheduled
