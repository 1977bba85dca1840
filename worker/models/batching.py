"""Micro-batching: concurrent calls of one model in a process become one forward pass.

Worker threads call ``MicroBatcher.submit(item)`` and block for their own result. The first
caller to find no batch in progress leads: it waits up to ``max_wait_s`` for more items (or
until ``max_batch`` are queued), runs ``run_batch`` on them, hands each caller its own
output, and goes on with what queued before its own item — but once its own call is done it
returns, and wakes the first caller still queued to lead next. (A leader that drained
everything that kept arriving never returned under sustained load: measured, one call of
twelve busy threads waited 4 s, the whole run, while the others took 60–80 ms.) No
background thread, nothing to stop. Results never cross between callers (each
gets the output at its own position), and a batch that raises is run again one item at a
time, so one bad input fails only its own caller.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class _Call(Generic[In, Out]):
    __slots__ = ("done", "error", "item", "result", "wake")

    def __init__(self, item: In) -> None:
        self.item = item
        self.done = threading.Event()
        self.wake = threading.Event()  # set when done, or when asked to lead
        self.result: Out | None = None
        self.error: BaseException | None = None


class MicroBatcher(Generic[In, Out]):
    def __init__(self, run_batch: Callable[[list[In]], list[Out]], max_batch: int = 16,
                 max_wait_s: float = 0.002, on_batch: Callable[[int], None] | None = None
                 ) -> None:
        """``run_batch`` maps a list of inputs to their outputs, in order; ``on_batch`` gets
        the size of every batch run (a metric)."""
        self.run_batch = run_batch
        self.on_batch = on_batch
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self._cond = threading.Condition()
        self._queue: list[_Call[In, Out]] = []
        self._leading = False
        # Sizes of the last 1,000 batches run (tests, logs); bounded, for long-lived workers.
        self.batches: deque[int] = deque(maxlen=1000)

    def submit(self, item: In) -> Out:
        call: _Call[In, Out] = _Call(item)
        with self._cond:
            self._queue.append(call)
            if len(self._queue) >= self.max_batch:
                self._cond.notify_all()
        while not call.done.is_set():
            with self._cond:
                lead = not self._leading
                self._leading = True
            if lead:
                self._lead(call)
            else:  # a leader runs it, or hands us the lead (the poll covers a lost wake-up)
                call.wake.wait(0.01)
                call.wake.clear()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _lead(self, own: _Call[In, Out]) -> None:
        try:
            deadline = time.monotonic() + self.max_wait_s
            with self._cond:
                while len(self._queue) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            while not own.done.is_set():
                with self._cond:
                    batch = self._queue[:self.max_batch]
                    del self._queue[:self.max_batch]
                    if not batch:
                        return
                self._run(batch, own)
        finally:
            with self._cond:
                self._leading = False
                if self._queue:  # the next caller leads at once, not at its next poll
                    self._queue[0].wake.set()

    def _run(self, batch: list[_Call[In, Out]], own: _Call[In, Out]) -> None:
        self.batches.append(len(batch))
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            outputs = self.run_batch([c.item for c in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"run_batch returned {len(outputs)} outputs for "
                                   f"{len(batch)} inputs")
        except Exception as e:
            if len(batch) == 1:
                batch[0].error = e
                batch[0].done.set()
                batch[0].wake.set()
                return
            for call in batch:  # one bad input must fail only its own caller
                self._run([call], own)
            return
        except BaseException as e:
            # Meant for this thread (a time limit, an interrupt): the others' items go back
            # to the queue for the next leader; this thread's own call fails with it.
            with self._cond:
                self._queue[:0] = [c for c in batch if c is not own]
            if own in batch:
                own.error = e
                own.done.set()
            raise
        for call, out in zip(batch, outputs, strict=True):
            call.result = out
            call.done.set()
            call.wake.set()
