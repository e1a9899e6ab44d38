"""The in-process TargetLock keeps the Lease contract: no waiting, takeover after expiry."""

from __future__ import annotations

from actions.local_lock import LocalLock


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_lock_contract() -> None:
    clock = Clock()
    lock = LocalLock(clock)
    assert await lock.acquire("t", "a", 10)
    assert not await lock.acquire("t", "b", 10)
    assert await lock.acquire("t", "a", 10)  # the holder renews
    assert await lock.acquire("u", "b", 10)  # other targets are independent
    clock.now = 10.5
    assert lock.holder("t") is None
    assert await lock.acquire("t", "b", 10)  # expired: taken over
    await lock.release("t", "a")  # not the holder: nothing happens
    assert lock.holder("t") == "b"
    await lock.release("t", "b")
    await lock.release("t", "b")  # idempotent
    assert lock.holder("t") is None
