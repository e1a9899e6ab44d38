"""Streaming detectors: pure, synchronous, driven by event time (see ``base.Detector``)."""

from .base import Detector
from .category_drift import CategoryDrift
from .drift import Drift
from .error_rate import ErrorRate
from .gpu_pressure import GpuPressure
from .latency_anomaly import LatencyAnomaly
from .registry import DETECTORS
from .threshold import Threshold
from .token_spend import TokenSpend

__all__ = [
    "DETECTORS",
    "CategoryDrift",
    "Detector",
    "Drift",
    "ErrorRate",
    "GpuPressure",
    "LatencyAnomaly",
    "Threshold",
    "TokenSpend",
]
