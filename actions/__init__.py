"""Guarded remediations (scale, rollback, retrain, notify) triggered by alerts.

The spine ships the registry only; a rule's ``actions`` list must be empty until an
action kind is registered here.
"""

from .registry import ACTIONS

__all__ = ["ACTIONS"]
