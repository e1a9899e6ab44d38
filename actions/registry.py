"""The table of action kinds a rule's ``actions[].type`` may name."""

from __future__ import annotations

from typing import Any

from .notify import Notify
from .retrain import Retrain
from .rollback import Rollback
from .scale import Scale

__all__ = ["ACTIONS"]

ACTIONS: dict[str, type[Any]] = {
    "notify": Notify,
    "retrain": Retrain,
    "rollback": Rollback,
    "scale": Scale,
}
