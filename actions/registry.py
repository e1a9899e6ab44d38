"""The table of action kinds a rule's ``actions[].type`` may name."""

from __future__ import annotations

from typing import Any

__all__ = ["ACTIONS"]

ACTIONS: dict[str, type[Any]] = {}
