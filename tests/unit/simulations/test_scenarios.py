"""Scenario files, fault transforms and the fleet generator, without a broker.

Every shipped scenario must validate (a typo in one would otherwise surface only in CI's
suite run), and its rule files must load.
"""

from __future__ import annotations

import doctest
import random
from pathlib import Path

import pytest

import simulations.faults
import simulations.fleet
import simulations.rag
import simulations.scenario
import simulations.signal
from agent.rules import load_rules
from simulations.faults import BadDeploy, CategoryMix, GpuMemoryLeak, TokenStorm
from simulations.fleet import fleet_events
from simulations.scenario import Fleet, Scenario, ScenarioError, load_scenario

SCENARIOS = sorted(p for p in (Path(__file__).resolve().parents[3] / "simulations").glob("*.yaml") if p.name != "scoreboard.yaml")
BASE = {
    "name": "t",
    "duration_s": 600,
    "fleet": {"inference": [{"service": "a", "model": "m"}]},
    "faults": [{"kind": "latency_spike", "where": {"service": "a"}, "start_s": 100, "duration_s": 60}],
    "expect": [{"alert": {"name": "X", "fires_within_s": 30}}],
}


@pytest.mark.parametrize("module", [simulations.faults, simulations.fleet, simulations.rag, simulations.scenario, simulations.signal])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def test_the_suite_ships_scenarios_for_every_fault_kind() -> None:
    kinds = {f.kind for path in SCENARIOS for f in load_scenario(path)[0].faults}
    assert kinds >= set(simulations.faults.APP_FAULTS) - {"feature_shift", "category_mix"} | {"agent_kill", "alertmanager_down", "broker_restart"}
    assert {"feature_shift", "category_mix"} <= kinds


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_validates_and_its_rules_load(path: Path) -> None:
    scenario, base = load_scenario(path)
    assert scenario.expect
    load_rules([str((base / r).resolve()) for r in scenario.rules])


def test_unknown_keys_are_refused_with_their_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nduration_s: 60\nfleet: {inference: [{service: a, model: m, rate: 3}]}\nexpect: [{no_event_lost: true}]\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: fleet.inference.0.*rate"):
        load_scenario(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"faults": [{"kind": "agent_kill", "start_s": 10, "duration_s": 5}]}, "needs a paced scenario"),
        ({"faults": [{"kind": "latency_spike", "start_s": 590, "duration_s": 60}]}, "after the scenario"),
        ({"expect": [{"alert": {"name": "X", "fault": "nope"}}]}, "names fault 'nope'"),
        ({"speed": 10, "faults": [{"kind": "alertmanager_down", "start_s": 1, "duration_s": 5}]}, "needs alertmanager: true"),
        ({"expect": [{"page": {"alert": "X"}}]}, "needs alertmanager: true"),
    ],
)
def test_inconsistent_scenarios_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario.model_validate(BASE | change)


def test_fault_ids_default_to_the_kind_and_count_repeats() -> None:
    s = Scenario.model_validate(BASE | {"faults": [BASE["faults"][0], BASE["faults"][0]]})  # type: ignore[index]
    assert [f.id for f in s.faults] == ["latency_spike", "latency_spike-2"]


def test_fleet_is_deterministic_and_ordered() -> None:
    fleet = Fleet.model_validate({"inference": [{"service": "a", "model": "m", "rate_per_s": 5}], "gpu": [{"node": "n"}]})
    one = list(fleet_events(fleet, [], start_ts=1000.0, duration_s=120, seed=3))
    two = list(fleet_events(fleet, [], start_ts=1000.0, duration_s=120, seed=3))
    assert one == two and len(one) > 500
    offsets = [o for o, _ in one]
    assert offsets == sorted(offsets) and all(e["ts"] == round(1000.0 + o, 3) for o, e in one)


def test_faults_change_only_their_window_and_target() -> None:
    leak = GpuMemoryLeak(where={"node": "n"}, start_s=60, duration_s=600, ratio_per_min=0.1)
    fleet = Fleet.model_validate({"gpu": [{"node": "n", "mem_used_ratio": 0.5}, {"node": "other", "mem_used_ratio": 0.5}]})
    events = list(fleet_events(fleet, [leak], start_ts=0.0, duration_s=400, seed=1))
    ratio = {(e["node"], o): e["mem_used_bytes"] / e["mem_total_bytes"] for o, e in events}
    assert ratio[("n", 0.0)] == pytest.approx(0.5, abs=0.02)
    assert ratio[("n", 360.0)] == pytest.approx(1.0, abs=0.01)  # 0.5 + 0.1/min * 5 min, capped
    assert ratio[("other", 360.0)] == pytest.approx(0.5, abs=0.02)


def test_bad_deploy_and_category_mix_and_token_storm() -> None:
    rng = random.Random(0)
    event = {"service": "a", "model_version": "7", "latency_ms": 10.0, "status": "ok", "features": {"country": "DE"}}
    deployed = BadDeploy(start_s=0, duration_s=10, to_version="8", error_ratio=1.0, latency_factor=3)
    assert deployed.transform(dict(event), 1.0, rng)[0] | {"features": {}} == {
        "service": "a", "model_version": "8", "latency_ms": 30.0, "status": "error", "features": {}
    }
    mix = CategoryMix(start_s=0, duration_s=10, feature="country", categories={"US": 1.0})
    assert mix.transform({"features": {"country": "DE"}}, 1.0, rng)[0]["features"]["country"] == "US"
    storm = TokenStorm(where={"tenant": "x"}, start_s=0, duration_s=10, factor=4)
    out = storm.transform({"tenant": "x", "ts": 5.0}, 1.0, rng)
    assert len(out) == 4 and all(5.0 <= e["ts"] <= 5.5 for e in out)
