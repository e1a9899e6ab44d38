"""A TargetLock for one agent process: mutual exclusion without a Kubernetes API server.

Used when no Kubernetes client is configured (a single agent, the demo, tests). It keeps
the same contract as the Lease lock (``actions/lease.py``): ``acquire`` never waits,
a live lock of another holder refuses, an expired one is taken over, and the current
holder may re-acquire (renew) its own lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["LocalLock"]


class LocalLock:
    """In-process locks by target key, each with a time to live.

    Parameters
    ----------
    clock
        Monotonic seconds; tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}

    async def acquire(self, key: str, holder: str, ttl_s: float) -> bool:
        now = self._clock()
        current = self._held.get(key)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._held[key] = (holder, now + ttl_s)
        self._forget_expired(now)
        return True

    async def release(self, key: str, holder: str) -> None:
        current = self._held.get(key)
        if current is not None and current[0] == holder:
            del self._held[key]

    def holder(self, key: str) -> str | None:
        """Who holds ``key`` now (None when free or expired)."""
        current = self._held.get(key)
        return current[0] if current is not None and current[1] > self._clock() else None

    def _forget_expired(self, now: float) -> None:
        if len(self._held) > 1024:
            for key in [k for k, (_, until) in self._held.items() if until <= now]:
                del self._held[key]
