"""The rule reloader outlives whatever a file (or a bug) throws at it.

Were its task to die, every later fix would be silently ignored. Each test feeds it a
file that fails to load in its own way, checks the loop is still running with the old
rules and the failure counted, then writes a good file and sees it taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.rules import RuleSet, load_rules
from agent.runtime import reload as reload_module
from agent.runtime.reload import RuleReloader
from agent.runtime.selfmetrics import SelfMetrics

TESTDATA = Path(__file__).parents[2] / "rules" / "testdata"
GOOD = (TESTDATA / "equals.good.yaml").read_text()
OTHER_GOOD = (TESTDATA / "inference.good.yaml").read_text()


class _Applied:
    """What the reloader handed over, in order."""

    def __init__(self) -> None:
        self.rule_sets: list[RuleSet] = []

    async def __call__(self, rules: RuleSet) -> None:
        self.rule_sets.append(rules)


def _failures(metrics: SelfMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value("watchkeeper_rule_reload_failures_total", {"reason": reason}) or 0.0


def _reload_ok(metrics: SelfMetrics) -> float | None:
    return metrics.registry.get_sample_value("watchkeeper_rules_last_reload_successful")


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _survives(tmp_path: Path, bad_text: str, reason: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    metrics = SelfMetrics()
    applied = _Applied()
    reloader = RuleReloader([str(rules)], applied, metrics, interval_s=0.01)
    task = asyncio.create_task(reloader.run())
    try:
        rules.write_text(bad_text)
        await _until(lambda: _failures(metrics, reason) >= 1, f"the {reason} failure to be counted")
        assert _reload_ok(metrics) == 0
        assert reloader.last_error and len(reloader.last_error) < 100_000
        assert not task.done(), task.exception() if task.done() else None
        assert applied.rule_sets == []  # the old rules stay

        rules.write_text(OTHER_GOOD)
        await _until(lambda: len(applied.rule_sets) == 1, "the fixed file to be loaded")
        assert _reload_ok(metrics) == 1
        assert {r.name for r in applied.rule_sets[0].rules} == {r.name for r in load_rules([rules]).rules}
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "name", ["yaml_recursive_alias.bad.yaml", "yaml_alias_bomb.bad.yaml", "yaml_too_deep.bad.yaml", "unknown_detector.bad.yaml"]
)
async def test_a_hostile_file_is_refused_and_a_later_fix_loads(tmp_path: Path, name: str) -> None:
    await _survives(tmp_path, (TESTDATA / name).read_text(), "invalid")


class _Exploding:
    """``load_rules`` that raises ``error`` for a file holding the word BOOM, else loads."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, paths, prices=None) -> RuleSet:
        if any("BOOM" in Path(p).read_text() for p in paths):
            raise self.error
        return load_rules(paths, prices)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RecursionError("maximum recursion depth exceeded"), "resources"),
        (MemoryError(), "resources"),
        (KeyError("a bug"), "internal"),
        (ValueError("x" * 1_000_000), "internal"),
    ],
)
async def test_any_exception_while_loading_is_survived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException, reason: str
) -> None:
    monkeypatch.setattr(reload_module, "load_rules", _Exploding(error))
    await _survives(tmp_path, GOOD + "# BOOM\n", reason)


class _FailingApply(_Applied):
    """An ``apply`` that fails once, then works."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def __call__(self, rules: RuleSet) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("could not swap the engine's rules")
        await super().__call__(rules)


async def test_a_failing_apply_is_counted_and_the_next_change_retried(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    metrics = SelfMetrics()
    applied = _FailingApply()
    reloader = RuleReloader([str(rules)], applied, metrics, interval_s=0.01)
    task = asyncio.create_task(reloader.run())
    try:
        rules.write_text(OTHER_GOOD)
        await _until(lambda: _failures(metrics, "apply") == 1, "the apply failure to be counted")
        rules.write_text(GOOD)
        await _until(lambda: len(applied.rule_sets) == 1, "the next change to be applied")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class _FlakySignature:
    """``files_signature`` that fails ``times`` times (a listing that races a ConfigMap swap)."""

    def __init__(self, real: Callable[..., object], times: int) -> None:
        self.real = real
        self.times = times

    def __call__(self, paths):
        if self.times > 0:
            self.times -= 1
            raise FileNotFoundError(2, "No such file or directory", "..2026_12_07_22_00_00.123")
        return self.real(paths)


async def test_a_failing_stat_of_the_rule_files_does_not_end_the_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    metrics = SelfMetrics()
    applied = _Applied()
    reloader = RuleReloader([str(rules)], applied, metrics, interval_s=0.01)
    monkeypatch.setattr(reload_module, "files_signature", _FlakySignature(reload_module.files_signature, times=5))
    task = asyncio.create_task(reloader.run())
    try:
        await _until(lambda: _failures(metrics, "watch") == 5, "the failed looks to be counted")
        rules.write_text(OTHER_GOOD)
        await _until(lambda: len(applied.rule_sets) == 1, "the change to be loaded")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
