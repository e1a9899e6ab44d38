"""freeze_startup_heap: what is alive at start-up leaves the collector's generations."""

from __future__ import annotations

import gc

from agent.runtime.heap import freeze_startup_heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_startup_objects_are_frozen_and_later_garbage_is_still_collected():
    kept = _Cycle()
    try:
        frozen = freeze_startup_heap()
        assert frozen > 0 and gc.get_freeze_count() > 0  # frozen objects may still die by refcount
        assert not any(o is kept for o in gc.get_objects())  # out of every generation
        later = _Cycle()
        marker = id(later)
        del later
        gc.collect()
        assert not any(id(o) == marker and isinstance(o, _Cycle) for o in gc.get_objects())
    finally:
        gc.unfreeze()  # the test process starts agents over and over: never leave it frozen
    assert any(o is kept for o in gc.get_objects())
