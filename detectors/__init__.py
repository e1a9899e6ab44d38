"""Streaming detectors: pure, synchronous, driven by event time (see ``base.Detector``)."""

from .base import Detector
from .registry import DETECTORS
from .threshold import Threshold

__all__ = ["DETECTORS", "Detector", "Threshold"]
