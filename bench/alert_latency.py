"""Time from the first bad event to the alert in Alertmanager, beyond the rule's ``for``.

    .venv/bin/python bench/alert_latency.py [--trials 20] [--gap 1.5] [--rate 200] [--json out.json]

The real path, every piece a real process:

    producer (this process, ``rate`` events/s, ``ts`` = wall time at send)
      -> Tansu broker -> agent (``watchkeeper run`` in its own process, rules_20.yaml plus
         the trial rule below, AlertmanagerClient sink)
      -> alerts topic (the agent's outbox) -> the agent's notifier consumer
      -> Alertmanager 0.25 (API v2) -> Slack receiver (a local HTTP recorder)

The trial rule fires on ``max(latency_ms) over 10s > 1000`` with ``for: 5s`` and
``min_count: 1``, so the detector turns active on the first bad event itself and the
measured delay beyond ``for`` is the system's, not the rule's statistics. ``for`` runs
on EVENT time; events carry the wall time at which they were produced, so event time
follows wall time.

Trials: each has its own series (service ``trial-NN``) inside a steady stream of healthy
fleet traffic. Trial k switches its series to bad events (latency 3,000 ms) at
``warm-up + k * gap`` seconds; this process polls ``GET /api/v2/alerts`` every 20 ms and
records when the trial's alert first shows up, and when Alertmanager's Slack
notification for it reaches the recorder (``group_wait: 1s``, so that figure includes
a deliberate 1 s wait). Printed: p50 / p95 / max of (latency - for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from agent.runtime.embedded_broker import EmbeddedBroker, create_topics  # noqa: E402
from bench.fleet import SERIES, model_version, percentile  # noqa: E402
from tests.testbed import Alertmanager, SlackRecorder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALERT = "BenchTrialLatency"
FOR_S = 5.0
BAD_MS = 3000.0
TARGET_S = 2.0
POLL_S = 0.02
TRIAL_RULE = f"""\
groups:
  - name: bench-latency
    rules:
      - alert: {ALERT}
        source: inference
        match: '{{service=~"trial-.*"}}'
        detector: {{kind: threshold, field: latency_ms, agg: max, window_s: 10s, op: ">", threshold: 1000, min_count: 1}}
        for: {FOR_S:g}s
        keep_firing_for: 1m
        labels: {{severity: page}}
        annotations:
          summary: "slowest request of {{{{ $labels.service }}}} is {{{{ $value }}}} ms"
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Stamped(list):  # type: ignore[type-arg]
    """SlackRecorder's message list, also noting when each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        self.times.append(time.time())
        super().append(item)


def _event(service: str, model: str, version: str, latency: float, i: int) -> bytes:
    body = {
        "type": "inference",
        "ts": round(time.time(), 4),
        "service": service,
        "model": model,
        "model_version": version,
        "latency_ms": latency,
        "status": "ok",
        "features": {"amount": float(100 + i % 900), "age": float(18 + i % 70)},
        "prediction": round((i % 997) / 997, 4),
    }
    return json.dumps(body, separators=(",", ":")).encode()


class Trial:
    def __init__(self, k: int, start_s: float) -> None:
        self.k = k
        self.service = f"trial-{k:02d}"
        self.start_s = start_s  # offset from the first trial phase
        self.bad_at: float | None = None  # wall time of the first bad event (its ts too)
        self.seen_am: float | None = None
        self.seen_slack: float | None = None
        self.published: float | None = None  # Kafka timestamp of the FIRING record on the alerts topic


async def produce(
    bootstrap: str, topic: str, rate: float, trials: list[Trial], t0: list[float], stop: asyncio.Event, counts: dict[str, int]
) -> None:
    """A steady stream: fleet series and trial series round robin; trials go bad on schedule.

    ``t0[0]`` is 0 during the warm-up, then the wall time the trial schedule counts from.
    A trial's series stays bad until its alert is seen in Alertmanager.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    background = [(s, m, model_version(int(s[4:]), int(m[6:]))) for s, m in SERIES[::20]]  # 50 fleet series
    streams: list[tuple[str, str, str, Trial | None]] = [(s, m, v, None) for s, m, v in background]
    streams += [(t.service, "model-00", "v1", t) for t in trials]
    interval = 1.0 / rate
    next_at = time.monotonic()
    i = 0
    try:
        while not stop.is_set():
            service, model, version, trial = streams[i % len(streams)]
            latency = 40.0 + (i % 37)
            if trial is not None and t0[0] and time.time() >= t0[0] + trial.start_s and trial.seen_am is None:
                latency = BAD_MS
                if trial.bad_at is None:
                    trial.bad_at = time.time()  # the event's ts is read right after, from the same clock
            value = _event(service, model, version, latency, i)
            await producer.send(topic, value=value, key=service.encode())
            counts["sent"] = counts.get("sent", 0) + 1
            i += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        await producer.stop()


async def watch_alertmanager(url: str, trials: list[Trial], stop: asyncio.Event, polls: list[int]) -> None:
    by_service = {t.service: t for t in trials}
    query = urllib.parse.urlencode({"filter": f'alertname="{ALERT}"'})
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set():
            response = await client.get(f"{url}/api/v2/alerts?{query}")
            now = time.time()
            polls[0] += 1
            for alert in response.json():
                trial = by_service.get(alert["labels"].get("service", ""))
                if trial is not None and trial.seen_am is None and trial.bad_at is not None:
                    trial.seen_am = now
            await asyncio.sleep(POLL_S)


async def read_outbox(bootstrap: str, topic: str, trials: list[Trial]) -> int:
    """When did the agent publish each trial's FIRING transition (record timestamps of the alerts topic)?"""
    by_service = {t.service: t for t in trials}
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records = 0
    try:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            if not batches and records:
                break
            for batch in batches.values():
                for r in batch:
                    records += 1
                    alert = json.loads(r.value)
                    trial = by_service.get(alert.get("labels", {}).get("service", ""))
                    if trial is not None and alert.get("state") == "firing" and trial.published is None:
                        trial.published = r.timestamp / 1000.0
    finally:
        await consumer.stop()
    return records


def watch_slack(recorder: SlackRecorder, trials: list[Trial]) -> None:
    by_service = {t.service: t for t in trials}
    messages: _Stamped = recorder.messages  # type: ignore[assignment]
    for when, message in zip(list(messages.times), list(messages), strict=False):
        text = json.dumps(message)
        if "FIRING" not in text.upper():
            continue
        for service in set(re.findall(r"service=(trial-\d+)", text)):
            trial = by_service.get(service)
            if trial is not None and trial.seen_slack is None:
                trial.seen_slack = when


async def metric(client: httpx.AsyncClient, url: str, name: str) -> float:
    try:
        text = (await client.get(url)).text
    except httpx.HTTPError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="wk-bench-latency-"))
    rules = workdir / "trial.yaml"
    rules.write_text(TRIAL_RULE)
    trials = [Trial(k, k * args.gap) for k in range(args.trials)]
    tag = os.urandom(4).hex()
    topics = {name: f"bench.{tag}.{name}" for name in ("inference", "llm", "gpu", "dlq", "alerts")}
    with EmbeddedBroker(log_dir=workdir) as broker, SlackRecorder() as recorder:
        recorder.messages = _Stamped()
        (workdir / "am").mkdir()
        am = Alertmanager(recorder.url, workdir=workdir / "am").start()
        agent: subprocess.Popen[bytes] | None = None
        try:
            await create_topics(broker.bootstrap, [topics["inference"]], 4)
            await create_topics(broker.bootstrap, [topics[n] for n in ("llm", "gpu", "dlq", "alerts")], 1)
            http_port = _free_port()
            log = (workdir / "agent.log").open("wb")
            cmd = [sys.executable, "-m", "agent.cli", "run"]
            cmd += ["--kafka-bootstrap", broker.bootstrap, "--rules", f"{ROOT / 'bench' / 'rules_20.yaml'},{rules}"]
            cmd += ["--alertmanager-url", am.url, "--http-addr", f"127.0.0.1:{http_port}", "--group-id", f"bench-{tag}"]
            for name, topic in topics.items():
                cmd += [f"--topic-{name}", topic]
            cmd += ["--session-timeout-ms", "2000", "--heartbeat-interval-ms", "200", "--log-level", "warning"]
            agent = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

            stop = asyncio.Event()
            counts: dict[str, int] = {}
            t0_box = [0.0]
            producer_task = asyncio.create_task(
                produce(broker.bootstrap, topics["inference"], args.rate, trials, t0_box, stop, counts)
            )
            metrics_url = f"http://127.0.0.1:{http_port}/metrics"
            t_start = time.time()
            async with httpx.AsyncClient(timeout=1.0) as client:
                while await metric(client, metrics_url, 'watchkeeper_events_total{outcome="processed"') < args.rate:
                    if agent.poll() is not None or time.time() - t_start > 30:
                        raise RuntimeError(f"the agent is not consuming; see {workdir / 'agent.log'}")
                    await asyncio.sleep(0.1)
            ready_s = time.time() - t_start
            await asyncio.sleep(args.warmup)  # healthy traffic, consumer settled
            t0_box[0] = time.time()
            polls = [0]
            watcher = asyncio.create_task(watch_alertmanager(am.url, trials, stop, polls))
            deadline = t0_box[0] + trials[-1].start_s + FOR_S + args.timeout
            while time.time() < deadline and any(t.seen_am is None for t in trials):
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # let the last Slack notifications (group_wait 1s) arrive
            stop.set()
            await asyncio.gather(producer_task, watcher)
            watch_slack(recorder, trials)
            outbox_records = await read_outbox(broker.bootstrap, topics["alerts"], trials)
            async with httpx.AsyncClient(timeout=1.0) as client:
                processed = await metric(client, metrics_url, 'watchkeeper_events_total{outcome="processed"')
                dead = await metric(client, metrics_url, 'watchkeeper_events_total{outcome="dead_letter"')
        finally:
            if agent is not None and agent.poll() is None:
                os.kill(agent.pid, signal.SIGTERM)
                try:
                    agent.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait()
            am.stop()
    over_am = [t.seen_am - t.bad_at - FOR_S for t in trials if t.seen_am and t.bad_at]
    over_slack = [t.seen_slack - t.bad_at - FOR_S for t in trials if t.seen_slack and t.bad_at]
    to_outbox = [t.published - t.bad_at - FOR_S for t in trials if t.published and t.bad_at]
    outbox_to_am = [t.seen_am - t.published for t in trials if t.seen_am and t.published]
    return {
        "trials": args.trials,
        "rate_events_per_s": args.rate,
        "for_s": FOR_S,
        "alertmanager_group_wait_s": 1.0,
        "agent_consuming_after_s": round(ready_s, 2),
        "events_sent": counts.get("sent", 0),
        "events_processed": processed,
        "events_dead_lettered": dead,
        "alertmanager_polls": polls[0],
        "missed": [t.service for t in trials if t.seen_am is None],
        "beyond_for_s_alertmanager": _stats(over_am),
        "beyond_for_s_slack": _stats(over_slack),
        "breakdown_s": {
            "first_bad_event_to_outbox_minus_for": _stats(to_outbox),
            "outbox_to_alertmanager": _stats(outbox_to_am),
        },
        "outbox_records": outbox_records,
        "per_trial": [
            {
                "service": t.service,
                "beyond_for_am_s": None if not (t.seen_am and t.bad_at) else round(t.seen_am - t.bad_at - FOR_S, 3),
                "beyond_for_slack_s": None if not (t.seen_slack and t.bad_at) else round(t.seen_slack - t.bad_at - FOR_S, 3),
                "outbox_beyond_for_s": None if not (t.published and t.bad_at) else round(t.published - t.bad_at - FOR_S, 3),
            }
            for t in trials
        ],
        "workdir": str(workdir),
    }


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials, one series each (default 20)")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between trial starts (default 1.5)")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s produced, all series together (default 200)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of healthy traffic before the first trial")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds beyond for+schedule to wait for alerts")
    parser.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    args = parser.parse_args()
    t = time.time()
    result = asyncio.run(run(args))
    result["wall_s"] = round(time.time() - t, 1)
    am, slack = result["beyond_for_s_alertmanager"], result["beyond_for_s_slack"]
    print(
        f"=== alert latency: {args.trials} trials, for={FOR_S:g}s (event time), {args.rate:g} events/s, {os.cpu_count()} CPUs ==="
    )
    print(
        f"agent consuming {result['agent_consuming_after_s']:.1f} s after launch; {result['events_sent']:,} events sent, "
        f"{result['events_processed']:,.0f} processed, {result['events_dead_lettered']:.0f} dead-lettered; "
        f"{result['alertmanager_polls']} polls of Alertmanager"
    )
    if am.get("n"):
        print(
            f"first bad event -> alert in Alertmanager, minus for : p50 {am['p50']:.3f} s  p95 {am['p95']:.3f} s  "
            f"max {am['max']:.3f} s  (n={am['n']}; target p95 < {TARGET_S:g} s: {'met' if am['p95'] < TARGET_S else 'NOT met'})"
        )
    if slack.get("n"):
        print(
            f"first bad event -> Slack message, minus for        : p50 {slack['p50']:.3f} s  p95 {slack['p95']:.3f} s  "
            f"max {slack['max']:.3f} s  (n={slack['n']}; includes Alertmanager group_wait 1 s)"
        )
    b = result["breakdown_s"]
    for label, key in (
        ("  of which: first bad event -> FIRING on the alerts topic, minus for", "first_bad_event_to_outbox_minus_for"),
        ("            alerts topic -> visible in Alertmanager (notifier hop) ", "outbox_to_alertmanager"),
    ):
        st = b[key]
        if st.get("n"):
            print(f"{label}: p50 {st['p50']:.3f} s  p95 {st['p95']:.3f} s  max {st['max']:.3f} s")
    if result["missed"]:
        print(f"MISSED (no alert within the timeout): {', '.join(result['missed'])}")
    print(
        "per trial (s beyond for, AM/Slack): "
        + ", ".join(f"{p['beyond_for_am_s']}/{p['beyond_for_slack_s']}" for p in result["per_trial"])
    )
    print(f"total wall time {result['wall_s']:.0f} s; logs in {result['workdir']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json_out}")
    return 1 if result["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
