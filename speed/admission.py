"""Admission control of one worker: a bounded number of requests in flight, shed at once past it.

A gunicorn ``gthread`` worker keeps accepting connections while its threads are busy, and the
micro-batcher queues whatever they hand it. Under overload both would only grow the latency of
every request. ``Admission`` caps the prediction requests a worker works on at the same time:
one over the cap is refused before its body is read or parsed, so the answer (503 with
``Retry-After``) costs next to nothing, and the threads left over (``threads - max_in_flight``)
keep answering, so a refusal never waits behind the queue it protects. The batcher bounds the
trips it holds in the same way (``MicroBatcher(max_pending=...)``).
"""

from __future__ import annotations

import threading


class Overloaded(Exception):
    """Refused for lack of capacity; the caller may retry after ``retry_after_s``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class Admission:
    """At most ``limit`` holders at once; ``try_enter`` never blocks."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"the in-flight limit must be at least 1, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def try_enter(self) -> bool:
        """Take a place if one is free; False (and nothing taken) if ``limit`` are in flight."""
        with self._lock:
            if self._in_flight >= self.limit:
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        """Give back a place taken by a successful ``try_enter``."""
        with self._lock:
            if self._in_flight <= 0:
                raise RuntimeError("leave() without a matching try_enter()")
            self._in_flight -= 1
