"""Fault onset -> page: Watchkeeper's shipped rules against Prometheus + Alertmanager, same fault.

    .venv/bin/python bench/page_delay.py [--trials 10] [--quick] [--clean-hours 6] [--json out/page_delay.json]

Two faults, each at 100 requests/s on one series per trial:

* ``latency``: per-request latency is log-normal, median 15.6 ms and sigma 0.5 (p99 50 ms);
  at onset every request becomes ten times slower (p99 500 ms).
* ``errors``: 0.5 % of requests fail; at onset 20 % do.

Three arms run at the same time, every piece a real process, one series per trial so the
trials of an arm run concurrently (onsets staggered over an evaluation interval):

* ``prometheus-common``: a small exporter in this process serves the simulated service's
  histogram (``inference_request_duration_seconds``, the client's default buckets) and
  counter (``inference_requests_total{status}``); Prometheus 2.42 scrapes and evaluates
  every 15 s, rules on ``rate(...[1m])`` with ``for: 1m`` (p99 > 250 ms; error ratio > 5 %),
  Alertmanager 0.25 with ``group_wait: 30s``.
* ``prometheus-tuned``: the same at 5 s / 5 s, ``rate(...[30s])``, ``for: 15s``, ``group_wait: 5s``.
* ``watchkeeper``: the service's requests as events (``ts`` = wall time at send) into a
  Tansu broker, ``watchkeeper run`` in its own process with the shipped ``rules/``, the same
  Alertmanager config as the tuned arm (``group_wait: 5s``). Its baseline needs five
  minutes of history: 310 s of clean events are published first with past timestamps
  (event time), then live traffic follows wall time.

Every Alertmanager groups by every label (one group per series, so each page waits its own
``group_wait``) and sends to a Slack receiver (a local HTTP recorder). Measured per trial:
fault onset (the wall time of the first bad request) -> the series' alert visible in
``GET /api/v2/alerts`` (polled every 50 ms) and -> the Slack message. Printed: p50/p95
side by side and the ratio tuned Prometheus / Watchkeeper.

Then false pages on clean traffic, replayed in event time through ``Pipeline`` (no Kafka)
with the shipped rules: Poisson arrivals at 100 and 1 requests/s, the same log-normal
latency with a daily swing of +-20 % in its median, 0.5 % errors; pages (FIRING transitions)
of the sequential rules per series-week, with a 95 % upper bound when few are seen, and the
pages of every other shipped rule beside them (ErrorBudgetBurn's 99.9 % placeholder SLO is
burnt 5x by 0.5 % errors, so it pages on short bursts of this traffic).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import yaml  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server  # noqa: E402

from agent.model import EVENT_ADAPTER, AlertState  # noqa: E402
from agent.rules import load_rules  # noqa: E402
from agent.runtime.embedded_broker import EmbeddedBroker, create_topics  # noqa: E402
from agent.runtime.pipeline import Pipeline  # noqa: E402
from agent.runtime.server_process import http_ok, start_server, stop_process  # noqa: E402
from bench.fleet import percentile  # noqa: E402
from tests.testbed import Alertmanager, SlackRecorder, alertmanager_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = Path("/usr/bin/prometheus")
RATE = 100.0  # requests/s of each trial's series
MEDIAN_MS, SIGMA = 15.6, 0.5  # log-normal latency: p99 = 15.6 * exp(2.326 * 0.5) = 50 ms
SLOW, BASE_ERRORS, BAD_ERRORS = 10.0, 0.005, 0.2
BACKFILL_S = 310.0  # event-time history published before live traffic (the baseline needs 300 s)
POLL_S = 0.05
FAULTS = ("latency", "errors")
SEQUENTIAL_RULES = ("InferenceLatencyJump", "InferenceErrorJump")  # the rules the false-page figure is about


@dataclass(frozen=True)
class Profile:
    name: str
    scrape_s: float
    range_s: int
    for_s: int
    group_wait_s: float


PROFILES = (Profile("prometheus-common", 15.0, 60, 60, 30.0), Profile("prometheus-tuned", 5.0, 30, 15, 5.0))
WATCHKEEPER_GROUP_WAIT_S = 5.0


@dataclass
class Trial:
    arm: str
    fault: str
    k: int
    onset: float | None = None  # wall time of the first bad request
    seen_am: float | None = None
    seen_slack: float | None = None
    scheduled: float = 0.0  # wall time the fault is due

    @property
    def service(self) -> str:
        return f"{self.arm.split('-')[-1]}-{self.fault}-{self.k:02d}"

    def bad(self, now: float) -> bool:
        if self.scheduled and now >= self.scheduled:
            if self.onset is None:
                self.onset = now
            return True
        return False


def latency_ms(rng: random.Random, slow: bool, swing: float = 1.0) -> float:
    return rng.lognormvariate(math.log(MEDIAN_MS * swing), SIGMA) * (SLOW if slow else 1.0)


def failed(rng: random.Random, bad: bool) -> bool:
    return rng.random() < (BAD_ERRORS if bad else BASE_ERRORS)


# --- the Alertmanager side, shared by every arm ----------------------------------------------
class _Stamped(list):  # type: ignore[type-arg]
    """SlackRecorder's message list, also noting when each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.time())
        super().append(item)


def start_alertmanager(workdir: Path, recorder: SlackRecorder, group_wait_s: float) -> Alertmanager:
    config = yaml.safe_load(alertmanager_config(recorder.url))
    config["route"].update(group_wait=f"{group_wait_s:g}s", group_interval="5s")
    workdir.mkdir(parents=True, exist_ok=True)
    return Alertmanager(recorder.url, workdir=workdir, config=yaml.safe_dump(config, width=1000)).start()


async def watch(am: Alertmanager, recorder: SlackRecorder, trials: list[Trial], deadline: float) -> None:
    """Poll Alertmanager until every trial's alert is seen and its Slack message arrived."""
    by_service = {t.service: t for t in trials}
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.time() < deadline:
            try:
                alerts = (await client.get(f"{am.url}/api/v2/alerts")).json()
            except httpx.HTTPError:
                alerts = []
            now = time.time()
            for alert in alerts:
                trial = by_service.get(alert["labels"].get("service", ""))
                if trial is not None and trial.onset is not None and trial.seen_am is None:
                    trial.seen_am = now
            messages: _Stamped = recorder.messages  # type: ignore[assignment]
            for when, message in zip(list(messages.times), list(messages), strict=False):
                text = json.dumps(message)
                if "firing" not in text.lower():
                    continue
                for service in re.findall(r"service=([\w-]+)", text):
                    trial = by_service.get(service)
                    if trial is not None and trial.onset is not None and trial.seen_slack is None and when >= trial.onset:
                        trial.seen_slack = when
            if all(t.seen_slack is not None for t in trials):
                return
            await asyncio.sleep(POLL_S)


# --- the Prometheus arms ---------------------------------------------------------------------
class Exporter:
    """The simulated services' metrics, 100 requests/s per series, served on one port."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials = trials
        self.registry = CollectorRegistry()
        self.latency = Histogram("inference_request_duration_seconds", "request latency", ["service"], registry=self.registry)
        self.requests = Counter("inference_requests_total", "requests", ["service", "status"], registry=self.registry)
        self.port = _free_port()
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Exporter:
        start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._thread.start()
        return self

    def _run(self) -> None:
        rng = random.Random(1)
        done = 0
        t0 = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - t0) * RATE)  # requests per series by now: the rate holds under load
            now = time.time()
            for _ in range(min(due - done, 50)):
                for t in self.trials:
                    bad = t.bad(now)
                    self.latency.labels(t.service).observe(latency_ms(rng, bad and t.fault == "latency") / 1000.0)
                    status = "error" if failed(rng, bad and t.fault == "errors") else "ok"
                    self.requests.labels(t.service, status).inc()
            done = due
            self.stop.wait(0.01)


def prometheus_files(workdir: Path, profile: Profile, exporter_port: int, am_url: str) -> Path:
    arm = profile.name.split("-")[-1]
    sel = f'service=~"{arm}-.*"'
    r = f"{profile.range_s}s"
    rules = {"groups": [{"name": "bench", "rules": [
        {"alert": "BenchP99Latency", "for": f"{profile.for_s}s",
         "expr": f"histogram_quantile(0.99, sum by (service, le) (rate(inference_request_duration_seconds_bucket{{{sel}}}[{r}]))) > 0.25"},
        {"alert": "BenchErrorRatio", "for": f"{profile.for_s}s",
         "expr": f'sum by (service) (rate(inference_requests_total{{status="error",{sel}}}[{r}])) '
                 f"/ sum by (service) (rate(inference_requests_total{{{sel}}}[{r}])) > 0.05"},
    ]}]}  # fmt: skip
    (workdir / "rules.yml").write_text(yaml.safe_dump(rules, width=1000))
    config = {
        "global": {"scrape_interval": f"{profile.scrape_s:g}s", "evaluation_interval": f"{profile.scrape_s:g}s"},
        "rule_files": [str(workdir / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_url.removeprefix("http://")]}]}]},
        "scrape_configs": [{"job_name": "service", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, width=1000))
    return path


async def prometheus_arm(profile: Profile, trials: list[Trial], exporter: Exporter, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    with SlackRecorder() as recorder:
        recorder.messages = _Stamped()
        am = start_alertmanager(workdir / "am", recorder, profile.group_wait_s)
        port = _free_port()
        config = prometheus_files(workdir, profile, exporter.port, am.url)
        argv = [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        prom = start_server(argv, workdir / "prometheus.log", lambda: http_ok(f"{url}/-/ready"), name="prometheus", url=url, timeout_s=30)
        try:
            # history for the range, then onsets spread over one evaluation interval
            await asyncio.sleep(profile.range_s + 2 * profile.scrape_s)
            start = time.time()
            for t in trials:
                t.scheduled = start + profile.scrape_s * (t.k + random.random()) / max(1, len(trials) // len(FAULTS))
            budget = profile.range_s + profile.for_s + profile.group_wait_s + 4 * profile.scrape_s + 30
            await watch(am, recorder, trials, start + profile.scrape_s + budget)
        finally:
            stop_process(prom)
            am.stop()
    return {"profile": profile.__dict__}


# --- the Watchkeeper arm ---------------------------------------------------------------------
def _event(t: Trial, ts: float, rng: random.Random, bad: bool) -> bytes:
    body = {"type": "inference", "ts": round(ts, 4), "service": t.service, "model": "ranker", "model_version": "1",
            "latency_ms": round(latency_ms(rng, bad and t.fault == "latency"), 3),
            "status": "error" if failed(rng, bad and t.fault == "errors") else "ok"}  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


async def watchkeeper_arm(trials: list[Trial], workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    tag = os.urandom(4).hex()
    topics = {name: f"bench.{tag}.{name}" for name in ("inference", "llm", "gpu", "dlq", "alerts")}
    rng = random.Random(2)
    figures: dict[str, Any] = {}
    with EmbeddedBroker(log_dir=workdir) as broker, SlackRecorder() as recorder:
        recorder.messages = _Stamped()
        am = start_alertmanager(workdir / "am", recorder, WATCHKEEPER_GROUP_WAIT_S)
        agent = None
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=2)
        try:
            await create_topics(broker.bootstrap, [topics["inference"]], 4)
            await create_topics(broker.bootstrap, [topics[n] for n in ("llm", "gpu", "dlq", "alerts")], 1)
            http_port = _free_port()
            cmd = [sys.executable, "-m", "agent.cli", "run", "--kafka-bootstrap", broker.bootstrap, "--rules", str(ROOT / "rules"),
                   "--alertmanager-url", am.url, "--http-addr", f"127.0.0.1:{http_port}", "--group-id", f"bench-{tag}",
                   "--session-timeout-ms", "2000", "--heartbeat-interval-ms", "200", "--log-level", "warning"]  # fmt: skip
            for name, topic in topics.items():
                cmd += [f"--topic-{name}", topic]
            agent = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=(workdir / "agent.log").open("wb"), stderr=asyncio.subprocess.STDOUT)
            await producer.start()
            # the baseline's history, in event time: 310 s at 100 requests/s per series, sent as fast as it goes
            t_backfill = time.time()
            start = t_backfill - BACKFILL_S
            sent = 0
            for i in range(int(BACKFILL_S * RATE)):
                for t in trials:
                    await producer.send(topics["inference"], _event(t, start + i / RATE, rng, False), key=t.service.encode())
                    sent += 1
            await producer.flush()
            figures["backfill_events"] = sent
            figures["backfill_send_s"] = round(time.time() - t_backfill, 1)
            metrics_url = f"http://127.0.0.1:{http_port}/metrics"
            async with httpx.AsyncClient(timeout=1.0) as client:
                while await _metric(client, metrics_url, 'watchkeeper_events_total{outcome="processed"') < sent:
                    if agent.returncode is not None or time.time() - t_backfill > 600:
                        raise RuntimeError(f"the agent did not consume the backfill; see {workdir / 'agent.log'}")
                    await asyncio.sleep(0.5)
            figures["backfill_consumed_s"] = round(time.time() - t_backfill, 1)
            stop = asyncio.Event()
            live = asyncio.create_task(_live(producer, topics["inference"], trials, rng, stop, time.time() - 1.0 / RATE))
            await asyncio.sleep(5.0)
            start = time.time()
            for t in trials:
                t.scheduled = start + 1.0 * (t.k + random.random())
            await watch(am, recorder, trials, start + 60.0)
            stop.set()
            await live
        finally:
            await producer.stop()
            if agent is not None and agent.returncode is None:
                agent.terminate()
                try:
                    await asyncio.wait_for(agent.wait(), 15)
                except TimeoutError:
                    agent.kill()
            am.stop()
    return figures


async def _live(producer: AIOKafkaProducer, topic: str, trials: list[Trial], rng: random.Random, stop: asyncio.Event, t0: float) -> None:
    """100 requests/s per series, each event's ts its wall time of sending."""
    sent = 0
    while not stop.is_set():
        due = int((time.time() - t0) * RATE)
        for _ in range(min(due - sent, 50)):
            now = time.time()
            for t in trials:
                await producer.send(topic, _event(t, now, rng, t.bad(now)), key=t.service.encode())
        sent = due
        await asyncio.sleep(0.005)


async def _metric(client: httpx.AsyncClient, url: str, name: str) -> float:
    try:
        text = (await client.get(url)).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- false pages on clean traffic, in event time -------------------------------------------------
def clean_events(rate: float, seconds: float, seed: int) -> Iterator[dict[str, Any]]:
    """Poisson arrivals at ``rate``; latency log-normal with a +-20 % daily swing; 0.5 % errors."""
    rng = random.Random(seed)
    ts, t0 = 0.0, 1_700_000_000.0
    while ts < seconds:
        ts += rng.expovariate(rate)
        swing = 1.0 + 0.2 * math.sin(2 * math.pi * ts / 86400.0)
        yield {"type": "inference", "ts": t0 + ts, "service": f"clean-{rate:g}", "model": "ranker", "model_version": "1",
               "latency_ms": latency_ms(rng, False, swing), "status": "error" if failed(rng, False) else "ok"}  # fmt: skip


def false_pages(rate: float, hours: float, seed: int = 3) -> dict[str, Any]:
    pipeline = Pipeline(load_rules([ROOT / "rules"]))
    pages: dict[str, int] = {}
    n = 0
    started = time.process_time()
    next_tick = 0.0
    for body in clean_events(rate, hours * 3600.0, seed):
        event = EVENT_ADAPTER.validate_python(body)
        alerts = pipeline.process(event)
        if body["ts"] >= next_tick:
            alerts = [*alerts, *pipeline.tick(body["ts"])]
            next_tick = body["ts"] + 10.0
        for alert in alerts:
            if alert.state is AlertState.FIRING:
                pages[alert.labels["alertname"]] = pages.get(alert.labels["alertname"], 0) + 1
        n += 1
    weeks = hours / 168.0
    total = sum(pages.get(name, 0) for name in SEQUENTIAL_RULES)
    return {
        "rate_per_s": rate, "hours": hours, "events": n, "series_weeks": round(weeks, 4), "pages": pages,
        "sequential_pages": total, "pages_per_series_week": round(total / weeks, 3),
        "upper95_per_series_week": round(_poisson_upper95(total) / weeks, 3),
        "cpu_s": round(time.process_time() - started, 1),
    }  # fmt: skip


def calibration(rate: float, hours: float, budget_h: float, seed: int = 4) -> dict[str, Any]:
    """The detector alone on the same clean traffic with a budget of ``budget_h`` hours: alarm
    onsets against the at most ``hours / budget_h`` the ARL bound allows. Six hours replayed
    cannot show one page per 30 days at 100 requests/s; a short budget shows the calibration."""
    from detectors.sequential import Sequential

    out: dict[str, Any] = {"rate_per_s": rate, "hours": hours, "budget_h": budget_h, "allowed": hours / budget_h}
    for model in ("tail", "indicator"):
        det = Sequential(model=model, false_alarm_days=budget_h / 24.0)
        onsets, was = 0, False
        for body in clean_events(rate, hours * 3600.0, seed):
            x = body["latency_ms"] if model == "tail" else float(body["status"] == "error")
            now = det.update(x, body["ts"]).active
            onsets += now and not was
            was = now
        out[model] = onsets
    return out


def _poisson_upper95(k: int) -> float:
    """One-sided 95 % upper bound of a Poisson mean after ``k`` events (3.0 for none)."""
    lo, hi = float(k), float(k) + 10.0 + 5.0 * math.sqrt(k + 1)
    for _ in range(60):
        mid = (lo + hi) / 2
        cdf = sum(math.exp(-mid) * mid**i / math.factorial(i) for i in range(k + 1))
        lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
    return hi


# --- the run and the report ---------------------------------------------------------------------
def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="wk-bench-page-delay-"))
    arms = [p.name for p in PROFILES if not (args.quick and p.name == "prometheus-common" and args.skip_common)] + ["watchkeeper"]
    trials = {arm: [Trial(arm, fault, k) for fault in FAULTS for k in range(args.trials)] for arm in arms}
    exporter = Exporter([t for arm in arms if arm != "watchkeeper" for t in trials[arm]]).start()
    try:
        jobs = [prometheus_arm(p, trials[p.name], exporter, workdir / p.name) for p in PROFILES if p.name in arms]
        jobs.append(watchkeeper_arm(trials["watchkeeper"], workdir / "watchkeeper"))
        extras = await asyncio.gather(*jobs)
    finally:
        exporter.stop.set()
    result: dict[str, Any] = {"trials": args.trials, "rate_per_s": RATE, "cpus": os.cpu_count(), "workdir": str(workdir), "arms": {}}
    for arm, extra in zip(arms, extras, strict=True):
        per_fault = {}
        for fault in FAULTS:
            ts = [t for t in trials[arm] if t.fault == fault]
            per_fault[fault] = {
                "to_alertmanager_s": _stats([t.seen_am - t.onset for t in ts if t.seen_am and t.onset]),
                "to_slack_s": _stats([t.seen_slack - t.onset for t in ts if t.seen_slack and t.onset]),
                "missed": [t.service for t in ts if t.seen_slack is None],
            }
        result["arms"][arm] = {"setup": extra, **per_fault}
    return result


def report(result: dict[str, Any]) -> None:
    arms = result["arms"]
    print(f"=== page delay: {result['trials']} trials per fault and arm, {result['rate_per_s']:g} requests/s per series, {result['cpus']} CPUs ===")
    print(f"{'fault':8} {'arm':18} {'-> Alertmanager p50 / p95':>28} {'-> Slack p50 / p95':>24}  missed")
    for fault in FAULTS:
        for arm, figures in arms.items():
            am, slack = figures[fault]["to_alertmanager_s"], figures[fault]["to_slack_s"]
            cell = lambda st: f"{st['p50']:8.2f} s / {st['p95']:7.2f} s" if st.get("n") else "       -"  # noqa: E731
            print(f"{fault:8} {arm:18} {cell(am):>28} {cell(slack):>24}  {len(figures[fault]['missed'])}")
        if "prometheus-tuned" in arms:
            tuned, wk = arms["prometheus-tuned"][fault], arms["watchkeeper"][fault]
            ratios = []
            for key in ("to_alertmanager_s", "to_slack_s"):
                a, b = tuned[key], wk[key]
                if a.get("n") and b.get("n"):
                    ratios.append(f"{key[3:-2]} p50 {a['p50'] / b['p50']:.1f}x, p95 {a['p95'] / b['p95']:.1f}x")
            print(f"{'':8} {'tuned / watchkeeper':18} {'; '.join(ratios)}")
    for row in result.get("clean", []):
        print(
            f"clean traffic at {row['rate_per_s']:g} requests/s for {row['hours']:g} h ({row['events']:,} events, {row['series_weeks']:g} "
            f"series-weeks): sequential rules {row['sequential_pages']} pages -> {row['pages_per_series_week']:g} per series-week "
            f"(95 % upper bound {row['upper95_per_series_week']:g}); every rule: {row['pages'] or 'no pages'}"
        )
    for row in result.get("calibration", []):
        print(
            f"calibration at {row['rate_per_s']:g} requests/s, budget one false alarm per {row['budget_h']:g} h, {row['hours']:g} h "
            f"replayed: {row['tail']} (tail) and {row['indicator']} (indicator) alarms, the bound allows {row['allowed']:g}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per fault and arm, run concurrently (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 trials, 1 h of clean traffic at 100/s, 1 week at 1/s")
    parser.add_argument("--skip-common", action="store_true", help="with --quick: leave out the slow common Prometheus profile")
    parser.add_argument("--clean-hours", type=float, default=6.0, help="hours of clean traffic replayed at 100 requests/s (default 6)")
    parser.add_argument("--clean-weeks-slow", type=float, default=4.0, help="weeks of clean traffic replayed at 1 request/s (default 4)")
    parser.add_argument("--no-clean", action="store_true", help="skip the clean-traffic replay")
    parser.add_argument("--no-live", action="store_true", help="skip the live page-delay trials")
    parser.add_argument("--json", dest="json_out", default=str(ROOT / ".bench" / "page_delay.json"), help="figures as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.trials = min(args.trials, 3)
        args.clean_hours = min(args.clean_hours, 1.0)
        args.clean_weeks_slow = min(args.clean_weeks_slow, 1.0)
    t = time.time()
    result = asyncio.run(run(args)) if not args.no_live else {"trials": 0, "rate_per_s": RATE, "cpus": os.cpu_count(), "arms": {}}
    if not args.no_clean:
        result["clean"] = [false_pages(RATE, args.clean_hours), false_pages(1.0, args.clean_weeks_slow * 168.0)]
        result["calibration"] = [calibration(RATE, args.clean_hours, 1.0), calibration(1.0, args.clean_weeks_slow * 168.0, 24.0)]
    result["wall_s"] = round(time.time() - t, 1)
    report(result)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total wall time {result['wall_s']:.0f} s; figures in {out}")
    missed = any(f[fault]["missed"] for f in result["arms"].values() for fault in FAULTS)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
