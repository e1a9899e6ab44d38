"""Hot reload of rule files: on change (polled) and on SIGHUP; a bad file keeps the old rules.

Polling ``stat`` (inode, mtime, size, following symlinks) rather than inotify works on
every filesystem and sees Kubernetes ConfigMap updates, which swap a symlink.

The task must outlive every file anyone writes: were it to die, no later fix would ever
load, and nothing would say so. So any exception while watching, loading or applying
(a ``RuleError``, but also a ``RecursionError``, a ``MemoryError`` or a bug) keeps the
running rules, is logged with its type and message, and is counted in
``watchkeeper_rule_reload_failures_total{reason}``; the loop goes on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from agent.errors import RuleError
from agent.logs import get_logger
from agent.rules import RuleSet, load_rules
from agent.rules.pricing import PriceTable

from .selfmetrics import SelfMetrics

__all__ = ["RuleReloader", "files_signature"]

_log = get_logger(__name__)


def files_signature(paths: Sequence[str]) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when any rule file (or a directory's listing) changes."""
    sig: list[tuple[str, int, int, int]] = []
    for raw in paths:
        p = Path(raw)
        targets = sorted(p.iterdir()) if p.is_dir() else [p]
        for t in targets:
            try:
                st = os.stat(t)
            except OSError:
                sig.append((str(t), -1, -1, -1))
                continue
            sig.append((str(t), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(sig)


class RuleReloader:
    """Watches rule files and hands every successfully loaded ``RuleSet`` to ``apply``."""

    def __init__(
        self,
        paths: Sequence[str],
        apply: Callable[[RuleSet], Awaitable[None]],
        metrics: SelfMetrics,
        *,
        interval_s: float = 2.0,
        prices: PriceTable | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self._prices = prices
        self._apply = apply
        self._metrics = metrics
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._signature = files_signature(self.paths)
        self.last_error: str | None = None

    def request(self) -> None:
        """Ask for a reload now (the SIGHUP handler calls this)."""
        self._wake.set()

    async def reload(self) -> bool:
        """Load and apply; on any failure log, count, and keep the running rules."""
        try:
            self._signature = files_signature(self.paths)
        except Exception as exc:  # noqa: BLE001 - a vanished directory must not end the task
            _log.warning("cannot stat the rule files; loading them anyway", error=_describe(exc))
        try:
            rules = load_rules(self.paths, self._prices)
        except RuleError as exc:
            return self._failed("invalid", str(exc))
        except (RecursionError, MemoryError) as exc:
            return self._failed("resources", f"loading the rules ran out of resources: {_describe(exc)}")
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            return self._failed("internal", f"loading the rules failed: {_describe(exc)}")
        try:
            await self._apply(rules)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            return self._failed("apply", f"putting the new rules in place failed: {_describe(exc)}")
        self.last_error = None
        self._metrics.rules_reloads.labels("success").inc()
        self._metrics.rules_last_reload_ok.set(1)
        self._metrics.rules_loaded.set(len(rules))
        _log.info("rules reloaded", rules=len(rules), files=len(rules.files))
        return True

    def _failed(self, reason: str, message: str) -> bool:
        self.last_error = message
        self._metrics.rules_reloads.labels("failure").inc()
        self._metrics.rule_reload_failures.labels(reason).inc()
        self._metrics.rules_last_reload_ok.set(0)
        _log.error("rules reload failed; keeping the previous rules", reason=reason, error=message)
        return False

    async def run(self) -> None:
        """Poll for changes until cancelled; no exception of one round ends the loop."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
                forced = True
            except asyncio.TimeoutError:
                forced = False
            self._wake.clear()
            try:
                changed = forced or files_signature(self.paths) != self._signature
            except Exception as exc:  # noqa: BLE001 - e.g. a directory removed while listed
                self._metrics.rule_reload_failures.labels("watch").inc()
                _log.error("cannot stat the rule files; will look again", error=_describe(exc))
                continue
            if changed:
                await self.reload()


def _describe(exc: BaseException) -> str:
    """Type and message, cut to one bounded line: never a traceback, never locals."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 500 else text[:499] + "…"
