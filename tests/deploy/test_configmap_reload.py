"""Rules mounted from a ConfigMap reload live, as the Deployment mounts them (a directory, no subPath).

kubelet writes a ConfigMap volume with its atomic writer: the files live in a timestamped
directory, ``..data`` is a symlink to it, and each key is a symlink ``name -> ..data/name``.
An update writes a new timestamped directory, swaps ``..data`` with one rename, and adds or
removes the per-key links. The test reproduces exactly that on disk (there is no kubelet on
the test control plane) and checks the agent's reloader takes every change, keeps the
running rules on a broken update, and never loads kubelet's hidden ``..`` entries.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from agent.rules import RuleSet
from agent.runtime.reload import RuleReloader
from agent.runtime.selfmetrics import SelfMetrics

RULE = """groups:
  - name: group-{name}
    rules:
      - alert: {name}
        source: inference
        detector: {{kind: threshold, field: latency_ms, agg: p99, window_s: 1m, op: ">", threshold: {threshold}, min_count: 5}}
"""


class ConfigMapVolume:
    """A directory laid out the way kubelet's atomic writer lays out a ConfigMap volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir()

    def write(self, files: dict[str, str]) -> None:
        self.generation += 1
        payload = self.root / f"..2026_11_26_00_00_{self.generation:02d}.{os.getpid()}"
        payload.mkdir()
        for name, text in files.items():
            (payload / name).write_text(text)
        tmp_link = self.root / "..data_tmp"
        tmp_link.symlink_to(payload.name)
        old = os.path.realpath(self.root / "..data") if (self.root / "..data").exists() else None
        os.rename(tmp_link, self.root / "..data")  # the atomic swap
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for entry in self.root.iterdir():
            if not entry.name.startswith("..") and entry.name not in files:
                entry.unlink()
        if old:
            for leftover in Path(old).iterdir():
                leftover.unlink()
            Path(old).rmdir()


async def test_rules_from_a_configmap_volume_reload_on_every_update(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "rules")
    volume.write({"a.yaml": RULE.format(name="Slow", threshold=500)})
    applied: list[RuleSet] = []
    changed = asyncio.Event()

    async def apply(rules: RuleSet) -> None:
        applied.append(rules)
        changed.set()

    metrics = SelfMetrics()
    reloader = RuleReloader([str(volume.root)], apply, metrics, interval_s=0.05)
    assert await reloader.reload()
    task = asyncio.create_task(reloader.run())

    async def next_rules() -> RuleSet:
        changed.clear()
        await asyncio.wait_for(changed.wait(), timeout=10)
        return applied[-1]

    def threshold(rules: RuleSet, name: str) -> float:
        (rule,) = [r for r in rules.rules if r.name == name]
        return rule.detector_params["threshold"]

    try:
        assert [r.name for r in applied[-1].rules] == ["Slow"]
        volume.write({"a.yaml": RULE.format(name="Slow", threshold=900)})  # kubectl apply of an edited ConfigMap
        rules = await next_rules()
        assert threshold(rules, "Slow") == 900

        volume.write({"a.yaml": RULE.format(name="Slow", threshold=900), "b.yaml": RULE.format(name="Slower", threshold=2000)})
        rules = await next_rules()
        assert sorted(r.name for r in rules.rules) == ["Slow", "Slower"]  # a key added to the ConfigMap
        assert all(Path(f).name in ("a.yaml", "b.yaml") for f in rules.files)  # never ..data/ or ..2026_*

        before = len(applied)
        volume.write({"a.yaml": "groups: [", "b.yaml": RULE.format(name="Slower", threshold=2000)})  # a broken edit
        await asyncio.sleep(0.5)
        assert len(applied) == before and metrics.rules_last_reload_ok._value.get() == 0  # old rules keep running

        volume.write({"b.yaml": RULE.format(name="Slower", threshold=2000)})  # a.yaml removed from the ConfigMap
        rules = await next_rules()
        assert [r.name for r in rules.rules] == ["Slower"] and metrics.rules_last_reload_ok._value.get() == 1
    finally:
        task.cancel()

