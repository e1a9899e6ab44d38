"""Guarded remediations (scale, rollback, retrain, notify) triggered by alerts.

``base`` is the contract every kind implements, ``registry`` the table of kinds a
rule's ``actions[].type`` names; ``guards``, ``ledger`` and ``audit`` are the framework
the runtime (agent/runtime/remediator.py) runs every kind through.
"""

from .registry import ACTIONS

__all__ = ["ACTIONS"]
