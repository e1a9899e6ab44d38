"""The detector interface: ``update(x, ts)`` returns a ``Score``; state round-trips as bytes.

Modelled on river's drift detectors: one method that learns and scores, parameters that
are plain keyword arguments stored under their own names (so a rule's YAML maps straight
onto the constructor and ``repr``/contract tests can read them back), no I/O and no clock
(the event time is passed in), and anything random takes a ``seed``.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, ClassVar

from agent.model import Score

__all__ = ["Detector", "Score"]


class Detector:
    """Base class of every detector: learns one series, one observation at a time.

    Subclasses implement ``update`` and the private ``_dump``/``_load`` pair, which turn
    their learned state into JSON-able data. Parameters are validated in ``__init__`` and
    raise ``DetectorError`` so a bad rule fails at load time, never at run time.
    """

    kind: ClassVar[str] = ""
    #: what ``update`` receives: "number" (a float), "category" (a string) or "vector" (a tuple of floats)
    observes: ClassVar[str] = "number"

    def update(self, x: float, ts: float) -> Score:
        """Learn from one observation at event time ``ts`` (epoch seconds) and score it."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything learned; parameters stay."""
        self._load(type(self)(**self.params())._dump())

    # --- parameters -----------------------------------------------------------------
    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        sig = inspect.signature(cls.__init__)
        return tuple(n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY)

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    # --- contract tests (river's ``_unit_test_params``) -------------------------------
    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Parameters under which the contract stream below must be detected."""
        return {}

    @classmethod
    def _unit_test_stream(cls, seed: int, n: int = 400) -> list[tuple[float, Any]]:
        """(ts, x) pairs, one per second: clean for the first half, faulty in the second.

        The default is a numeric level shift (100 -> 900, noise sd 10); detectors of
        other faults or of categories override it.
        """
        import random

        rng = random.Random(seed)
        return [(float(i), rng.gauss(100.0 if i < n // 2 else 900.0, 10.0)) for i in range(n)]

    # --- checkpoints ----------------------------------------------------------------
    def state(self) -> bytes:
        """Parameters and learned state, serialised for checkpoints."""
        return json.dumps(
            {"params": self.params(), "state": self._dump()}, separators=(",", ":")
        ).encode()

    @classmethod
    def restore(cls, blob: bytes) -> "Detector":
        data = json.loads(blob)
        detector = cls(**data["params"])
        detector._load(data["state"])
        return detector

    def _dump(self) -> Any:
        raise NotImplementedError

    def _load(self, state: Any) -> None:
        raise NotImplementedError
