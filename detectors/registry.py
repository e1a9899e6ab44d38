"""The table of detector kinds a rule's ``detector.kind`` may name.

Adding a detector is one module plus one line here; the key is the module's name.
"""

from __future__ import annotations

from .base import Detector
from .category_drift import CategoryDrift
from .drift import Drift
from .embedding_drift import EmbeddingDrift
from .error_rate import ErrorRate
from .gpu_pressure import GpuPressure
from .latency_anomaly import LatencyAnomaly
from .score_drop import ScoreDrop
from .threshold import Threshold
from .token_spend import TokenSpend

__all__ = ["DETECTORS"]

DETECTORS: dict[str, type[Detector]] = {
    "threshold": Threshold,
    "error_rate": ErrorRate,
    "token_spend": TokenSpend,
    "gpu_pressure": GpuPressure,
    "latency_anomaly": LatencyAnomaly,
    "drift": Drift,
    "category_drift": CategoryDrift,
    "embedding_drift": EmbeddingDrift,
    "score_drop": ScoreDrop,
}
