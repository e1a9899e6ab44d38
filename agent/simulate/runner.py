"""Run one scenario for real: broker, agent, pager, simulated traffic in event time, faults.

The traffic is generated in scenario seconds and stamped in event time (``start_ts`` +
offset, a window ending just before now so no event is "in the future"). With
``speed`` set it is paced at that many scenario seconds per wall second, and the
infrastructure faults are acted out when the traffic reaches their start and end;
without it the traffic goes out as fast as the broker takes it. Either way the agent
decides in event time, so detection and resolution delays are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from agent.config import Topics
from agent.errors import WatchkeeperError
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.topics import create_topics
from simulations.expectations import Observed, Result, check
from simulations.faults import signal_of
from simulations.fleet import fleet_events
from simulations.scenario import Scenario
from simulations.signal import SignalSeries
from simulations.trace import TraceMissing

from .agents import InProcessAgent, SubprocessAgent, read_positions
from .fault_proxy import FaultProxy
from .pager import AlertmanagerProcess, SlackRecorder
from .preflight import RunSettings, skip_reason, with_trace
from .targets import ensure_deployment, kube_upstream, proxied_kubeconfig, seed_registry

__all__ = ["RunSettings", "ScenarioRun", "run_scenario"]

_EPOCH_MARGIN_S = 30.0  # the last event is this far before "now"


@dataclass
class ScenarioRun:
    """One scenario's outcome: results, what was observed, timings, the plotted signal."""

    scenario: Scenario
    file: Path
    results: list[Result] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    observed: Observed | None = None
    wall_s: float = 0.0
    produced: int = 0
    processed: int = 0  # distinct positions in the agent's processed log
    proxy_refused: dict[str, int] = field(default_factory=dict)  # fault kind -> requests the fault proxy answered
    signal: SignalSeries | None = None
    infra_scenario_s: dict[str, tuple[float, float]] = field(default_factory=dict)
    wall_at: list[tuple[float, float]] = field(default_factory=list)  # (wall epoch, scenario s)

    @property
    def passed(self) -> bool:
        """Every expectation held (whatever ``xfail`` says)."""
        return self.skipped is None and self.error is None and all(r.ok for r in self.results)

    @property
    def ok(self) -> bool:
        """Does not fail the suite: skipped, passed, or failed as its ``xfail`` reason says it will."""
        return self.skipped is not None or self.passed or self.scenario.xfail is not None

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        if self.scenario.xfail is not None:
            return "XPASS" if self.passed else "XFAIL"
        if self.error:
            return "ERROR"
        return "PASS" if self.passed else "FAIL"

    def scenario_s_at_wall(self, wall: float) -> float | None:
        """Where the traffic was (scenario seconds) at a wall time: for action times."""
        if not self.wall_at:
            return None
        best = self.wall_at[0][1]
        for w, s in self.wall_at:
            if w > wall:
                break
            best = s
        return best


def _resolve(paths: list[str], base: Path) -> list[str]:
    return [str(p if Path(p).is_absolute() else (base / p).resolve()) for p in paths]


class _Run:
    """The moving parts of one run, so each fault can reach the one it breaks."""

    def __init__(self, s: Scenario, base: Path, settings: RunSettings, workdir: Path, progress: Callable[[float, str], None]) -> None:
        self.s, self.base, self.settings, self.workdir, self.progress = s, base, settings, workdir, progress
        tag = f"{s.name}.{uuid.uuid4().hex[:8]}"
        self.topics = Topics(**{f.name: f"sim.{tag}.{f.name}" for f in dataclasses.fields(Topics)})
        self._source_topics = {source: topic for topic, source in self.topics.sources().items()}  # RAG's too
        self.audit_topic = str(getattr(self.topics, "audit", f"sim.{tag}.audit"))
        self.group = f"wk-sim-{tag}"
        self.embedded: EmbeddedBroker | None = None
        self.bootstrap = settings.bootstrap or ""
        self.slack: SlackRecorder | None = None
        self.am: AlertmanagerProcess | None = None
        self.am_urls: list[str] = []
        self.agent: InProcessAgent | SubprocessAgent | None = None
        self.observer: Any = None
        self.producer: AIOKafkaProducer | None = None
        self.produced: set[tuple[str, int, int]] = set()
        self.broker_restarted = False
        self.infra_wall: dict[str, tuple[float, float]] = {}
        self.mlflow_uri = settings.mlflow_uri
        self.kubeconfig = settings.kubeconfig
        self.proxies: dict[str, FaultProxy] = {}  # fault kind -> the proxy that acts it out

    async def setup(self) -> None:
        from .observe import TopicObserver

        if not self.bootstrap:
            self.embedded = await asyncio.to_thread(EmbeddedBroker(log_dir=self.workdir).start)
            self.bootstrap = self.embedded.bootstrap
        await self._create_topics()
        if self.s.alertmanager:
            if self.settings.alertmanager_url:
                self.am_urls = [self.settings.alertmanager_url]
            else:
                self.slack = SlackRecorder().start()
                self.am = await asyncio.to_thread(AlertmanagerProcess(self.slack.url, self.workdir / "alertmanager").start)
                self.am_urls = [self.am.url]
        await self._setup_targets()
        self.observer = TopicObserver(self.bootstrap, self.topics.alerts, self.audit_topic)
        await self.observer.start()
        self.agent = self._make_agent()
        await self.agent.start()
        await self._start_producer()

    async def _setup_targets(self) -> None:
        """Seed MLflow and Kubernetes when configured; put fault proxies in front of them."""
        s = self.s
        kinds = {f.kind for f in s.faults}
        if self.settings.mlflow_uri:
            if s.registry is not None:
                await asyncio.to_thread(seed_registry, self.settings.mlflow_uri, s.registry)
            if "mlflow_down" in kinds:
                self.proxies["mlflow_down"] = await FaultProxy(self.settings.mlflow_uri).start()
                self.mlflow_uri = self.proxies["mlflow_down"].url
        if self.settings.kubeconfig:
            for key, replicas in (s.kubernetes.deployments if s.kubernetes else {}).items():
                namespace, name = key.split("/")
                await asyncio.to_thread(ensure_deployment, self.settings.kubeconfig, namespace, name, replicas)
            if "kube_api_errors" in kinds:
                server, verify = kube_upstream(self.settings.kubeconfig)
                proxy = self.proxies["kube_api_errors"] = await FaultProxy(server, verify=verify).start()
                self.kubeconfig = proxied_kubeconfig(self.settings.kubeconfig, proxy.url, self.workdir / "kubeconfig.proxied")

    async def _create_topics(self) -> None:
        names = dict.fromkeys([*self.topics.all(), self.audit_topic])
        await create_topics(self.bootstrap, list(names), partitions=self.s.agent.partitions)

    def _make_agent(self) -> InProcessAgent | SubprocessAgent:
        a = self.s.agent
        common: dict[str, Any] = dict(
            prices=_resolve([self.s.prices], self.base)[0] if self.s.prices else None,
            processed_log=self.workdir / "processed.log",
            alertmanager_urls=self.am_urls,
            partitions=a.partitions,
            resend_interval_s=a.resend_interval_s,
            report_dir=self.workdir / "drift-reports",
        )
        rules = _resolve(self.s.rules, self.base)
        env = dict(a.env)
        if self.kubeconfig or self.mlflow_uri:
            env.setdefault("WATCHKEEPER_ACTIONS_MODE", "enforce")  # real targets: act on them
        if a.process == "subprocess":
            if self.kubeconfig:
                env.setdefault("WATCHKEEPER_KUBECONFIG", self.kubeconfig)
            if self.mlflow_uri:
                env.setdefault("WATCHKEEPER_MLFLOW_TRACKING_URI", self.mlflow_uri)
            return SubprocessAgent(
                self.bootstrap, self.topics, self.audit_topic, self.group, rules,
                log_path=self.workdir / "agent.log", extra_env=env, **common,
            )
        return InProcessAgent(
            self.bootstrap, self.topics, self.audit_topic, self.group, rules,
            kubeconfig=self.kubeconfig, mlflow_uri=self.mlflow_uri, settings=env, **common,
        )

    async def _start_producer(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks=1)
        await self.producer.start()

    async def _stop_producer(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            self.producer = None

    # --- infrastructure faults ------------------------------------------------------------
    async def begin(self, fault: Any) -> None:
        kind = fault.kind
        if kind == "agent_kill":
            assert self.agent is not None
            await self.agent.kill()
        elif kind == "broker_restart":
            assert self.embedded is not None
            await self._stop_producer()
            await self.observer.stop()
            await asyncio.to_thread(self.embedded.stop)
            self.broker_restarted = True
        elif kind == "alertmanager_down":
            assert self.am is not None
            await asyncio.to_thread(self.am.stop)
        elif kind in self.proxies:
            self.proxies[kind].fail(fault.status, methods=fault.methods, requests=fault.requests)

    async def end(self, kind: str) -> None:
        if kind == "agent_kill":
            assert self.agent is not None
            await self.agent.start()
        elif kind == "broker_restart":
            assert self.embedded is not None
            await asyncio.to_thread(self.embedded.start)
            await self._create_topics()  # memory storage: the restarted broker has none
            await self.observer.start()
            await self._start_producer()
        elif kind == "alertmanager_down":
            assert self.am is not None
            await asyncio.to_thread(self.am.start)
        elif kind in self.proxies:
            self.proxies[kind].heal()

    # --- traffic --------------------------------------------------------------------------
    def _topic(self, event: dict[str, Any]) -> tuple[str, bytes]:
        kind = event["type"]
        topic = self._source_topics[kind]
        return topic, str(event["node"] if kind == "gpu" else event["service"]).encode()

    async def _flush(self, pending: list[Any]) -> None:
        if pending:
            for meta in await asyncio.gather(*pending):
                self.produced.add((meta.topic, meta.partition, meta.offset))
            pending.clear()

    async def produce(self, events: Iterator[tuple[float, dict[str, Any]]], signal: SignalSeries | None, wall_at: list[tuple[float, float]]) -> int:
        s = self.s
        marks = sorted(
            [(f.start_s, 0, "begin", f) for f in s.infra_faults] + [(f.end_s, 1, "end", f) for f in s.infra_faults],
            key=lambda m: (m[0], m[1]),
        )
        wall0 = time.monotonic()
        pending: list[Any] = []
        held: list[tuple[str, bytes, bytes]] = []
        count = 0
        last_progress = -1.0
        for offset, event in events:
            while marks and marks[0][0] <= offset:
                at, _, what, fault = marks.pop(0)
                await self._flush(pending)
                self.progress(at, f"{fault.kind} {what}s")
                await (self.begin(fault) if what == "begin" else self.end(fault.kind))
                down, back = self.infra_wall.get(fault.id, (0.0, 0.0))
                self.infra_wall[fault.id] = (time.time(), back) if what == "begin" else (down, time.time())
            if s.speed is not None:
                delay = wall0 + offset / s.speed - time.monotonic()
                if delay > 0.01:
                    await self._flush(pending)
                    await asyncio.sleep(delay)
            if signal is not None:
                signal.add(offset, event)
            topic, key = self._topic(event)
            if self.producer is None:  # the broker is down: the services buffer, as clients do
                held.append((topic, json.dumps(event).encode(), key))
                count += 1
                continue
            for record in held:
                pending.append(await self.producer.send(record[0], record[1], key=record[2]))
            held.clear()
            pending.append(await self.producer.send(topic, json.dumps(event).encode(), key=key))
            count += 1
            if len(pending) >= 5000:
                await self._flush(pending)
            if offset - last_progress >= s.duration_s / 200:
                last_progress = offset
                wall_at.append((time.time(), offset))
                self.progress(offset, "traffic")
        await self._flush(pending)
        wall_at.append((time.time(), s.duration_s))
        return count

    async def wait_processed(self, deadline: float) -> int | None:
        """Until the agent processed every produced record; returns how many it never did."""
        log = self.workdir / "processed.log"
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            done = read_positions(log)
            if not self.broker_restarted and self.produced <= done:
                return 0
            if len(done) != last:
                last, last_change = len(done), time.monotonic()
            elif self.broker_restarted and time.monotonic() - last_change > 5.0:
                return None  # Tansu lost the old offsets: positions repeat; stop when it is quiet
            if isinstance(self.agent, SubprocessAgent) and not self.agent.alive():
                raise WatchkeeperError(f"the agent exited; see {self.agent.log_path}")
            await asyncio.sleep(0.2)  # poll interval, bounded by the deadline
        return None if self.broker_restarted else len(self.produced - read_positions(log))

    async def settle(self, deadline: float) -> None:
        """Let the last transitions, pages and audit records arrive (each stream quiet for a while)."""
        quiet_s = 1.0
        if self.am is not None:
            quiet_s = 3.0  # group_wait + group_interval of the pager config
        if "actions" in self.s.requires:
            quiet_s = max(quiet_s, 3.0)
        last_pages = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            pages = len(self.slack.snapshot()) if self.slack else 0
            if pages != last_pages:
                last_pages, quiet_since = pages, time.monotonic()
            since = min(time.monotonic() - self.observer.last_record_wall, time.monotonic() - quiet_since)
            if since >= quiet_s:
                return
            await asyncio.sleep(0.1)  # poll interval, bounded by the deadline

    async def teardown(self) -> None:
        await self._stop_producer()
        if self.agent is not None:
            with contextlib.suppress(Exception):
                await self.agent.stop()
        if self.observer is not None:
            await self.observer.stop()
        if self.am is not None:
            await asyncio.to_thread(self.am.stop)
        if self.slack is not None:
            self.slack.stop()
        for proxy in self.proxies.values():
            await proxy.stop()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


async def run_scenario(
    s: Scenario, file: Path, base: Path, settings: RunSettings, progress: Callable[[float, str], None] = lambda t, what: None
) -> ScenarioRun:
    """Run ``s`` (read from ``file``, relative paths from ``base``) and check its expectations."""
    run = ScenarioRun(s, file)
    reason = skip_reason(s, base, settings)
    if reason is not None:
        run.skipped = reason
        return run
    s = with_trace(s, settings)
    workdir = settings.out / s.name / "run"
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("processed.log", "agent.log"):
        (workdir / stale).unlink(missing_ok=True)
    fault = s.app_faults[0] if s.app_faults else None
    if fault is not None:
        source, fld, agg = signal_of(fault)
        run.signal = SignalSeries(source, fld, agg, dict(fault.where), bucket_s=max(1.0, s.duration_s / 200))
    started = time.monotonic()
    deadline = started + s.wall_timeout_s
    start_ts = round(time.time() - s.duration_s - _EPOCH_MARGIN_S)
    parts = _Run(s, base, settings, workdir, progress)
    try:
        await parts.setup()
        events = fleet_events(s.fleet, s.faults, start_ts=start_ts, duration_s=s.duration_s, seed=s.seed, base=base)
        run.produced = await parts.produce(events, run.signal, run.wall_at)
        progress(s.duration_s, "waiting for the agent")
        missing = await parts.wait_processed(deadline)
        run.processed = len(read_positions(workdir / "processed.log"))
        progress(s.duration_s, "settling")
        await parts.settle(deadline)
        pages = parts.slack.snapshot() if parts.slack else (parts.agent.pages if parts.agent else None)
        run.observed = Observed(
            start_ts=start_ts,
            transitions=parts.observer.alert_transitions(),
            audit=list(parts.observer.audit),
            pages=pages,
            produced=run.produced,
            missing=missing,
            infra_wall=dict(parts.infra_wall),
            pages_via_alertmanager=parts.slack is not None,
            targets=frozenset(k for k, v in (("kubernetes", settings.kubeconfig), ("mlflow", settings.mlflow_uri)) if v),
        )
        run.results = check(s, run.observed)
        run.proxy_refused = {kind: proxy.refused for kind, proxy in parts.proxies.items()}
        run.infra_scenario_s = {f.id: (f.start_s, f.end_s) for f in s.infra_faults}
    except (WatchkeeperError, TraceMissing, OSError) as exc:
        run.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' results
        run.error = f"{type(exc).__name__}: {exc} (a bug in the runner or the agent; see {workdir})"
    finally:
        await parts.teardown()
        run.wall_s = time.monotonic() - started
    return run
