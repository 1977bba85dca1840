"""Puts a dead worker's unacknowledged messages back in their queues, on a timer.

dramatiq's Redis broker does this only during *maintenance*, which its Lua script runs on
``maintenance_chance`` of every million commands of a queue: an idle consumer polls about
once a second, so after the heartbeat timeout a crashed worker's message waited of the
order of a thousand seconds, with a long tail (measured: 568 s for one remove-bg job).

Here every worker process runs that same maintenance — dramatiq's own ``dispatch.lua``,
with its ``do_maintenance`` argument set — for each queue it consumes (and its delay queue)
every ``EXTWORKER_BROKER_SWEEP_S``. A dead worker's messages are therefore back within
``heartbeat timeout + sweep interval``. A sweep finds no dead worker → it does nothing
more; otherwise, per queue, one transaction reads the dead workers' unacked sets and runs the
maintenance, so the count of messages put back is that sweep's own (maintenance is
idempotent: a message moved by one sweeper is in no ack set for the next).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)


class Sweeper:
    """Runs dramatiq's queue maintenance for ``queues`` (and their delay queues)."""

    def __init__(self, broker: RedisBroker, queues: Iterable[str],
                 on_recovered: Callable[[str, int], None] = lambda queue, n: None) -> None:
        self.broker = broker
        self.queues = sorted({name for q in queues for name in (q, dq_name(q))})
        self.on_recovered = on_recovered

    def sweep(self) -> dict[str, int]:
        """One maintenance pass over every queue; returns the messages put back, by queue."""
        b = self.broker
        client, ns = b.client, b.namespace
        now = current_millis()
        dead = [w.decode() if isinstance(w, bytes) else w for w in client.zrangebyscore(
            f"{ns}:__heartbeats__", 0, now - b.heartbeat_timeout)]
        recovered: dict[str, int] = {}
        if not dead:
            return recovered
        for queue in self.queues:
            with client.pipeline(transaction=True) as pipe:
                for worker in dead:
                    pipe.smembers(f"{ns}:__acks__.{worker}.{queue}")
                # dramatiq's dispatch(command, timestamp, queue, worker id, heartbeat timeout,
                # dead-message ttl, do_maintenance, max unpack size): ``qsize`` only reads
                # (and heartbeats this live process's own id).
                b.scripts["dispatch"](
                    keys=[ns], client=pipe,
                    args=["qsize", now, queue, b.broker_id, b.heartbeat_timeout,
                          b.dead_message_ttl, 1, b._max_unpack_size()])
                *unacked, _ = pipe.execute()
            count = sum(len(ids) for ids in unacked)
            if count:
                recovered[queue] = count
                self.on_recovered(queue, count)
                log.warning("recovered %d message(s) of dead workers on queue %s",
                            count, queue)
        return recovered


class QueueSweeper(Middleware):
    """Runs a ``Sweeper`` every ``interval_s`` in each worker process, over the queues that
    process consumes."""

    def __init__(self, interval_s: float,
                 on_recovered: Callable[[str, int], None] = lambda queue, n: None) -> None:
        self.interval_s = interval_s
        self.on_recovered = on_recovered
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def _run(self, sweeper: Sweeper) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                sweeper.sweep()
            except Exception:
                log.exception("queue sweep: error; retrying next interval")

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.interval_s <= 0 or not isinstance(broker, RedisBroker):
            return
        queues = getattr(worker, "consumer_whitelist", None) or broker.get_declared_queues()
        sweeper = Sweeper(broker, {q for q in queues if not q.endswith(".DQ")},
                          self.on_recovered)
        self.thread = threading.Thread(target=self._run, args=(sweeper,), name="queue-sweeper",
                                       daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
