"""The table of detector kinds a rule's ``detector.kind`` may name.

Adding a detector is one module plus one line here; the key is the module's name.
"""

from __future__ import annotations

from .base import Detector
from .threshold import Threshold

__all__ = ["DETECTORS"]

DETECTORS: dict[str, type[Detector]] = {
    "threshold": Threshold,
}
