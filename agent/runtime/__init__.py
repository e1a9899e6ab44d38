"""The running agent: engine, lifecycle, pipeline, ingestion, notification, metrics."""

from .alerts import AlertLifecycle
from .engine import RuleEngine
from .pipeline import Pipeline
from .selfmetrics import SelfMetrics

__all__ = ["AlertLifecycle", "Pipeline", "RuleEngine", "SelfMetrics"]
