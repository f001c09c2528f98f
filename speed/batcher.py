"""Dynamic micro-batching: concurrent requests in one worker share one forward pass.

Request threads ``submit`` their trips and wait on a future. One batching
thread takes the first waiting request and everything queued behind it, runs
the model once on the concatenation and hands each request its slice.

It waits for company only when company is coming: a request thread that has
accepted a request but not parsed it yet ``announce``-s it, and the batcher
holds a batch open (up to ``max_size`` trips, at most ``max_wait_s`` after its
first request) only while announced requests are still on their way. So a lone
request is scored at once, as by a per-request handler, and under load the
requests that arrive while a forward pass runs, or are being parsed, share the
next one.

A request that finds nobody waiting and no forward pass running is scored in its
own thread, with no hand-off to the batching thread: on this machine that hand-off
cost about 150 us a request, as much as the forward pass of one trip. When a batch
may wait for company (``max_wait_s`` > 0), it must also find nobody announced. With
no wait (the default), an announced request would not be waited for anyway, so it
does not send the request to the batching thread: under load, other requests are
often in flight and announced, and the hand-offs held the service to 750/s at p99
<= 20 ms where one pass a request held 875/s (2026-12-05, ``bench.endpoint``; 800
against 875 after this change). One forward pass runs at a time either way;
requests that come during a pass queue up and share the batching thread's next
one, and no inline pass jumps ahead of a batch that is waiting for its turn.

The queue is bounded: with ``max_pending`` set, ``submit`` refuses (``Overloaded``) a request
whose trips would take the trips waiting or being scored over that many, so memory and waiting
time stay bounded whatever the load. A request whose caller gave up (its future cancelled) is
dropped from its batch unscored.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from speed.admission import Overloaded

T = TypeVar("T")
R = TypeVar("R")
_WAKE = object()  # queued by ``withdraw``: re-check whether anybody is still coming


@dataclass
class _Pending(Generic[T]):
    items: Sequence[T]
    future: Future


class MicroBatcher(Generic[T, R]):
    """Merges ``submit`` calls from many threads into calls of ``run(items) -> (results, context)``."""

    def __init__(self, run: Callable[[list[T]], tuple[Sequence[R], object]], max_size: int, max_wait_s: float,
                 on_batch: Callable[[int, int], None] | None = None, name: str = "micro-batcher",
                 max_pending: int | None = None, inline: bool = True):
        self._run = run
        self.inline = inline  # score a lone request in its caller's thread (see the module's docstring)
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self._on_batch = on_batch
        self._pending_lock = threading.Lock()
        self._pending = 0
        self._announced = 0
        self._pass_lock = threading.Lock()  # held by whoever runs a forward pass: one at a time
        self._batch_waiting = False  # the batching thread holds requests and waits for the pass lock
        self._queue: queue.SimpleQueue[_Pending[T] | object | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def announce(self) -> None:
        """A request is on its way (being read or parsed): a batch may wait for it. Follow with
        ``submit(..., announced=True)`` or ``withdraw()``."""
        with self._pending_lock:
            self._announced += 1

    def withdraw(self) -> None:
        """An announced request will not come (bad input, refused): stop waiting for it."""
        with self._pending_lock:
            self._announced -= 1
        self._queue.put(_WAKE)

    @property
    def announced(self) -> int:
        return self._announced

    def submit(self, items: Sequence[T], announced: bool = False) -> Future:
        """A future of ``(results for items, context)``; context is what ``run`` returned with them.

        ``announced``: this request was ``announce``-d. Raises ``Overloaded`` when ``max_pending`` is
        set and these items would go over it.
        """
        n = len(items)
        with self._pending_lock:
            if announced:
                self._announced -= 1
            if self.max_pending is not None and self._pending + n > self.max_pending:
                raise Overloaded("queue", f"{self._pending} trips are waiting to be scored; {n} more would go "
                                          f"over the limit of {self.max_pending}")
            self._pending += n
        fut: Future = Future()
        pending = _Pending(items, fut)
        alone = self._queue.empty() and not self._batch_waiting and (self.max_wait_s <= 0 or self._announced == 0)
        if self.inline and alone and self._pass_lock.acquire(blocking=False):
            try:  # alone: score it here rather than hand it to the batching thread and back
                self._execute([pending], n)
            finally:
                self._pass_lock.release()
            return fut
        self._queue.put(pending)
        return fut

    @property
    def pending(self) -> int:
        """Trips submitted and not yet answered (queued or in a forward pass)."""
        return self._pending

    def _done(self, n: int) -> None:
        with self._pending_lock:
            self._pending -= n

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        carry: _Pending[T] | None = None
        while True:
            first = carry or self._queue.get()
            carry = None
            if first is None:
                return
            if first is _WAKE:
                continue
            self._batch_waiting = True
            with self._pass_lock:  # after an inline pass, what queued meanwhile joins this batch
                self._batch_waiting = False
                carry = self._collect_and_run(first)

    def _collect_and_run(self, first: _Pending[T]) -> _Pending[T] | None:
        """Gather a batch behind ``first``, score it; the request that did not fit, if any."""
        carry: _Pending[T] | None = None
        batch, size = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_size:
            timeout = deadline - time.monotonic()
            try:  # what is queued already; then wait, but only for requests announced and not yet here
                nxt = (self._queue.get(timeout=timeout) if timeout > 0 and self._announced > 0
                       else self._queue.get_nowait())
            except queue.Empty:
                break
            if nxt is _WAKE:
                continue
            if nxt is None:
                self._queue.put(None)
                break
            if size + len(nxt.items) > self.max_size:
                carry = nxt  # starts the next batch; a request is never split
                break
            batch.append(nxt)
            size += len(nxt.items)
        self._execute(batch, size)
        return carry

    def _execute(self, batch: list[_Pending[T]], size: int) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]  # callers that gave up: unscored
        live_size = sum(len(p.items) for p in live)
        try:
            if live:
                self._score(live, live_size)
        finally:
            self._done(size)

    def _score(self, batch: list[_Pending[T]], size: int) -> None:
        items = [item for p in batch for item in p.items]
        try:
            results, context = self._run(items)
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear about it
            for p in batch:
                p.future.set_exception(exc)
            return
        if self._on_batch:
            self._on_batch(len(batch), size)
        start = 0
        for p in batch:
            end = start + len(p.items)
            p.future.set_result((results[start:end], context))
            start = end
