"""Hot reload of rule files: on change (polled) and on SIGHUP; a bad file keeps the old rules.

Polling ``stat`` (inode, mtime, size, following symlinks) rather than inotify works on
every filesystem and sees Kubernetes ConfigMap updates, which swap a symlink.
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
        """Load and apply; on failure log, count, and keep the running rules."""
        self._signature = files_signature(self.paths)
        try:
            rules = load_rules(self.paths, self._prices)
        except RuleError as exc:
            self.last_error = str(exc)
            self._metrics.rules_reloads.labels("failure").inc()
            self._metrics.rules_last_reload_ok.set(0)
            _log.error("rules reload failed; keeping the previous rules", error=str(exc))
            return False
        await self._apply(rules)
        self.last_error = None
        self._metrics.rules_reloads.labels("success").inc()
        self._metrics.rules_last_reload_ok.set(1)
        self._metrics.rules_loaded.set(len(rules))
        _log.info("rules reloaded", rules=len(rules), files=len(rules.files))
        return True

    async def run(self) -> None:
        """Poll for changes until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
                forced = True
            except asyncio.TimeoutError:
                forced = False
            self._wake.clear()
            if forced or files_signature(self.paths) != self._signature:
                await self.reload()
