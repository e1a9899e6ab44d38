"""Rules reload while the agent runs: on file change, on request, and on a real SIGHUP.

A broken rule file is refused (the reload metric drops to 0) and the running rules keep
working; a fixed file is taken (the metric is back to 1) and its new threshold decides
from the next event on. Events of one test go to one partition (one key), so when a
later event's alert fires, every earlier event has been processed.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.model import AlertState
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.notifier import TerminalSink
from tests.integration.harness import (
    AGENT_COMMAND,
    REPO_ROOT,
    Transitions,
    agent_config,
    agent_env,
    eventually,
    inference,
    rule_file,
    running_agent,
    sample,
    topics_for,
    unique_name,
    write_atomically,
)
from tests.kafka_tools import produce

pytestmark = pytest.mark.integration

KEY = "one-partition"
BROKEN = (
    "groups:\n  - name: it\n    rules:\n      - alert: Broken\n        source: inference\n        detector: {kind: threshhold}\n"
)


def _reloads(registry: object, outcome: str) -> float:
    return sample(registry, "watchkeeper_rules_reloads_total", {"outcome": outcome})  # type: ignore[arg-type]


async def test_broken_file_keeps_old_rules_and_fixed_file_takes_effect(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    alertname = unique_name("WkReload")
    rules = tmp_path / "rules.yaml"
    write_atomically(rules, rule_file(alertname, threshold=500))
    config = agent_config(broker.bootstrap, unique_topic, rules, reload_interval_s=0.1)
    transitions = Transitions()
    t0 = time.time() - 200

    def burst(service: str, latency: float, start: float) -> list[tuple[str, bytes]]:
        return [(KEY, inference(service, latency, start + i)) for i in range(3)]

    async with running_agent(config, TerminalSink(io.StringIO()), on_transition=transitions) as app:
        registry = app.metrics.registry

        def reload_ok() -> float:
            return sample(registry, "watchkeeper_rules_last_reload_successful")

        assert reload_ok() == 1
        write_atomically(rules, BROKEN)
        await eventually(lambda: reload_ok() == 0, timeout_s=10, what="the broken file to be refused")
        assert _reloads(registry, "failure") >= 1 and _reloads(registry, "success") == 0
        assert app.reloader.last_error is not None and f"{rules}:6:" in app.reloader.last_error
        assert "threshhold" in app.reloader.last_error

        # The old rule (threshold 500) still runs: 1000 ms fires it.
        await produce(broker.bootstrap, config.topics.inference, burst("svc-old", 1000.0, t0))
        await eventually(
            lambda: transitions.of(AlertState.FIRING, "svc-old") != [],
            timeout_s=20,
            what="the previous rules to fire on new events",
        )

        write_atomically(rules, rule_file(alertname, threshold=2000))
        await eventually(lambda: reload_ok() == 1, timeout_s=10, what="the fixed file to be loaded")
        assert _reloads(registry, "success") == 1
        assert app.reloader.last_error is None
        assert sample(registry, "watchkeeper_rules") == 1

        # New threshold 2000: 1000 ms no longer fires, 3000 ms does. Same partition, so
        # by the time svc-new fires, svc-quiet has been processed.
        later = burst("svc-quiet", 1000.0, t0 + 10) + burst("svc-new", 3000.0, t0 + 20)
        await produce(broker.bootstrap, config.topics.inference, later)
        await eventually(
            lambda: transitions.of(AlertState.FIRING, "svc-new") != [],
            timeout_s=20,
            what="the reloaded rule to fire",
        )
        assert transitions.of(AlertState.FIRING, "svc-quiet") == []
        assert sample(registry, "watchkeeper_events_total", {"source": "inference", "outcome": "processed"}) == 9

    [fired] = transitions.of(AlertState.FIRING, "svc-new")
    assert fired.annotations["limit"] == "2000 ms"
    assert fired.annotations["summary"] == "mean latency of svc-new is 3000 ms"
    assert transitions.of(AlertState.FIRING, "svc-old")[0].annotations["limit"] == "500 ms"


async def test_reload_request_reloads_at_once(broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path) -> None:
    """What the SIGHUP handler calls: with polling an hour apart, only the request reloads."""
    alertname = unique_name("WkRequest")
    rules = tmp_path / "rules.yaml"
    write_atomically(rules, rule_file(alertname, threshold=500))
    config = agent_config(broker.bootstrap, unique_topic, rules, reload_interval_s=3600)
    transitions = Transitions()

    async with running_agent(config, TerminalSink(io.StringIO()), on_transition=transitions) as app:
        registry = app.metrics.registry
        write_atomically(rules, rule_file(alertname, threshold=5))
        app.reloader.request()
        await eventually(lambda: _reloads(registry, "success") == 1, timeout_s=5, what="the requested reload")

        # Unchanged files reload too when asked (a SIGHUP after editing a referenced file).
        app.reloader.request()
        await eventually(lambda: _reloads(registry, "success") == 2, timeout_s=5, what="a second requested reload")

        await produce(
            broker.bootstrap, config.topics.inference, [(KEY, inference("svc", 10.0, time.time() - 60 + i)) for i in range(3)]
        )
        await eventually(
            lambda: transitions.of(AlertState.FIRING, "svc") != [],
            timeout_s=20,
            what="the threshold loaded on request (5 ms) to fire on 10 ms",
        )


def _metric(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                return float(s.value)
    return None


async def test_sighup_reloads_a_running_watchkeeper(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    """A real SIGHUP to ``watchkeeper run``: the rules reload and the process keeps running.

    The file does not change, so the 2 s polling never reloads it: only the signal can.
    """
    rules = tmp_path / "rules.yaml"
    write_atomically(rules, rule_file(unique_name("WkSighup"), threshold=500))
    env = agent_env(broker.bootstrap, topics_for(unique_topic), rules, WATCHKEEPER_LOG_LEVEL="info")
    base = f"http://{env['WATCHKEEPER_HTTP_ADDR']}"
    output = tmp_path / "agent.log"
    with output.open("ab") as out:
        proc = subprocess.Popen(
            AGENT_COMMAND, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=2) as http:
            state: dict[str, str] = {"metrics": ""}

            async def poll(path: str, key: str) -> bool:
                try:
                    response = await http.get(path)
                except httpx.HTTPError:
                    return False
                state[key] = response.text
                return response.status_code == 200

            async def ready() -> bool:
                return proc.poll() is not None or await poll("/readyz", "ready")

            await _until(ready, timeout_s=30, what="watchkeeper run to be ready", log=output)
            assert proc.poll() is None, f"watchkeeper run exited ({proc.returncode}):\n{output.read_text()}"
            assert await poll("/metrics", "metrics")
            assert _metric(state["metrics"], "watchkeeper_rules_reloads_total", {"outcome": "success"}) is None

            os.kill(proc.pid, signal.SIGHUP)

            async def reloaded() -> bool:
                await poll("/metrics", "metrics")
                return _metric(state["metrics"], "watchkeeper_rules_reloads_total", {"outcome": "success"}) == 1

            await _until(reloaded, timeout_s=10, what="a reload after SIGHUP", log=output)
            assert proc.poll() is None, "SIGHUP must not end the agent"
            assert _metric(state["metrics"], "watchkeeper_rules_last_reload_successful") == 1
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    assert proc.returncode == 0, f"SIGTERM should stop watchkeeper run cleanly:\n{output.read_text()[-3000:]}"
    assert '"rules reloaded"' in output.read_text()


async def _until(check: Callable[[], object], *, timeout_s: float, what: str, log: Path) -> None:
    """Like ``eventually`` for an async check."""
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; agent output:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)


async def test_removing_a_firing_rule_resolves_its_alert(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    """As in Prometheus: an alert whose rule is gone resolves at the next reload."""
    gone, kept = unique_name("WkGone"), unique_name("WkKept")
    rules = tmp_path / "rules.yaml"
    both = rule_file(gone, threshold=500) + rule_file(kept, threshold=500).split("rules:\n", 1)[1]
    write_atomically(rules, both)
    config = agent_config(broker.bootstrap, unique_topic, rules, reload_interval_s=3600)
    transitions = Transitions()

    async with running_agent(config, TerminalSink(io.StringIO()), on_transition=transitions) as app:
        t0 = time.time() - 60
        await produce(broker.bootstrap, config.topics.inference, [(KEY, inference("svc", 900.0, t0 + i)) for i in range(3)])
        await eventually(lambda: len(transitions.of(AlertState.FIRING, "svc")) == 2, timeout_s=20, what="both rules to fire")
        write_atomically(rules, rule_file(kept, threshold=500))
        app.reloader.request()
        await eventually(
            lambda: transitions.of(AlertState.RESOLVED, "svc") != [], timeout_s=10, what="the removed rule's alert to resolve"
        )
        assert [a.name for a in transitions.of(AlertState.RESOLVED, "svc")] == [gone]
        assert [a.name for a in app.pipeline.firing()] == [kept]
