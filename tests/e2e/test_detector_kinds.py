"""Every detector kind pages Slack through the real stack, and resolves after recovery.

One agent runs one rule per registered kind (tests/e2e/kinds.py), each matching its
own service or node, so the kinds share the agent, the broker and Alertmanager but no
series. For each kind the test publishes a clean warm-up and a fault to the Tansu
broker, waits for the firing page in the Slack recorder behind the real Alertmanager
(rule labels and annotations with the value and the evidence in words), then publishes
the recovery and waits for the resolved message. Events carry their own time, a few
minutes of it published at once, so each kind takes a few seconds of wall time.

Event time is one timeline for the whole module, as it is for producers sharing a
clock: it starts 30 minutes back and each kind's events follow the previous kind's.
(The agent ticks every active alert to the newest event time after each batch, so a
kind whose events lagged another's would see its alert resolved by that tick.)

``test_streams_fire_and_resolve_in_the_pipeline`` runs the same rules and events
through ``Pipeline`` alone, in milliseconds: when both fail the detector or its stream
is wrong, when only the end-to-end one fails the transport is.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent.model import EVENT_ADAPTER, AlertState
from agent.rules import RuleSet
from agent.rules.loader import load_rule_file
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.app import AgentApp
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.pipeline import Pipeline
from agent.runtime.selfmetrics import SelfMetrics
from detectors.registry import DETECTORS
from tests.e2e.kinds import CASES, Case, rules_yaml
from tests.integration.harness import Transitions, agent_config, running_agent, slack_about
from tests.kafka_tools import produce
from tests.testbed import Alertmanager, SlackRecorder

KINDS = [case.kind for case in CASES]
_PAGE_TIMEOUT_S = 30.0  # generous: a contended 2-core machine; a page normally takes 1-3 s
_TIMELINE_S = 3600.0  # event time starts this far back (all cases together span ~35 minutes): pages stay in the past for Alertmanager


def test_every_registered_kind_has_a_case() -> None:
    assert sorted(KINDS) == sorted(DETECTORS)


@dataclass(frozen=True)
class _Named:
    case: Case
    alertname: str
    owner: str


def _named(run: str) -> dict[str, _Named]:
    return {
        c.kind: _Named(c, f"WkE2e_{c.kind}_{run}", f"{c.kind.replace('_', '-')}-{run}")
        for c in CASES
    }


def _rules(named: dict[str, _Named]) -> str:
    return rules_yaml([(n.case, n.alertname, n.owner) for n in named.values()])


@pytest.mark.parametrize("kind", KINDS)
def test_streams_fire_and_resolve_in_the_pipeline(kind: str) -> None:
    named = _named("fast")
    pipeline = Pipeline(RuleSet(tuple(load_rule_file("kinds.yaml", _rules(named)))))
    this = named[kind]
    warmup, fault, recovery = this.case.events(this.owner, time.time() - 3600.0)
    seen: list[tuple[str, AlertState, dict[str, str]]] = []
    for phase, events in (("warm-up", warmup), ("fault", fault), ("recovery", recovery)):
        for event in events:
            for alert in pipeline.process(EVENT_ADAPTER.validate_python(event)):
                seen.append((phase, alert.state, dict(alert.annotations)))
    assert not [x for x in seen if x[0] == "warm-up"], seen  # quiet on clean data, not even pending
    states = [(phase, state) for phase, state, _ in seen if state is not AlertState.PENDING]
    assert states == [("fault", AlertState.FIRING), ("recovery", AlertState.RESOLVED)], seen
    text = " ".join(f"{k}={v}" for _, state, notes in seen if state is AlertState.FIRING for k, v in notes.items())
    for pattern in this.case.patterns(this.owner):
        assert pattern.search(text), (pattern.pattern, text)


@dataclass
class _Stack:
    bootstrap: str
    topics: dict[str, str]
    named: dict[str, _Named]
    transitions: Transitions
    app: AgentApp
    clock: float  # event time of the next case's first event: only ever moves forward


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    broker: EmbeddedBroker, alertmanager: Alertmanager, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[_Stack]:
    """One agent with a rule of every kind, paging the session's real Alertmanager."""
    run = uuid.uuid4().hex[:6]
    named = _named(run)
    rules = Path(tmp_path_factory.mktemp("kinds")) / "kinds.yaml"
    rules.write_text(_rules(named), encoding="utf-8")
    config = agent_config(broker.bootstrap, lambda prefix: f"{prefix}.e2e-kinds.{run}", rules)
    metrics = SelfMetrics()
    transitions = Transitions()
    topics = {source: topic for topic, source in config.topics.sources().items()}
    async with (
        AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
        running_agent(config, client, metrics=metrics, on_transition=transitions) as app,
    ):
        yield _Stack(broker.bootstrap, topics, named, transitions, app, time.time() - _TIMELINE_S)


def _encoded(events: list[dict[str, Any]], owner_field: str) -> Iterator[tuple[str, bytes]]:
    for event in events:
        yield event[owner_field], json.dumps(event).encode()


def _labels_line(alertname: str, owner_field: str, owner: str, kind: str) -> str:
    labels = {"alertname": alertname, owner_field: owner, "kind": kind, "severity": "page"}
    if owner_field == "node":
        labels["gpu"] = "0"  # gpu rules key series by (node, gpu)
    return "labels:" + "".join(f" {k}={v}" for k, v in sorted(labels.items())) + "\n"


async def _page(stack: _Stack, slack: SlackRecorder, alertname: str, status: str) -> dict[str, Any]:
    """The Slack message for ``alertname`` going ``status``; on a timeout, also what the agent did."""
    try:
        return await asyncio.to_thread(slack.wait_for, slack_about(alertname, status), _PAGE_TIMEOUT_S)
    except AssertionError as exc:
        mine = [(a.state.value, a.active_at, a.fired_at, a.resolved_at) for a in stack.transitions.alerts if a.name == alertname]
        raise AssertionError(f"{exc}\nthe agent's transitions of {alertname}: {mine}") from None


@pytest.mark.e2e
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", KINDS)
async def test_kind_pages_slack_and_resolves(kind: str, stack: _Stack, slack_recorder: SlackRecorder) -> None:
    this = stack.named[kind]
    case = this.case
    started = time.monotonic()
    warmup, fault, recovery = case.events(this.owner, stack.clock)
    stack.clock = recovery[-1]["ts"] + 1.0
    assert stack.clock < time.time() + 240, "the cases' timeline runs too far ahead of wall time"
    topic = stack.topics[case.source]

    await produce(stack.bootstrap, topic, _encoded(warmup, case.owner_field))
    await produce(stack.bootstrap, topic, _encoded(fault, case.owner_field))
    firing = await _page(stack, slack_recorder, this.alertname, "firing")
    await produce(stack.bootstrap, topic, _encoded(recovery, case.owner_field))
    resolved = await _page(stack, slack_recorder, this.alertname, "resolved")

    text = firing["attachments"][0]["text"]
    assert firing["channel"] == "#pages"
    assert _labels_line(this.alertname, case.owner_field, this.owner, kind) in text, text
    annotations = text.split("annotations:", 1)[1]
    for pattern in case.patterns(this.owner):
        assert pattern.search(annotations), (pattern.pattern, text)
    assert f"{case.owner_field}={this.owner}" in resolved["attachments"][0]["text"]
    fired = [a for a in stack.transitions.alerts if a.name == this.alertname and a.state is AlertState.FIRING]
    assert len(fired) == 1, fired  # one incident, one page
    assert sum(slack_about(this.alertname, "firing")(m) for m in slack_recorder.messages) == 1
    assert time.monotonic() - started < 2 * _PAGE_TIMEOUT_S
