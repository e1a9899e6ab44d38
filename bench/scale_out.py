"""Fleet mode on one machine: events/s with 1, 2 and 4 agent processes, and rebalance times.

    .venv/bin/python bench/scale_out.py [--events 300000] [--counts 1,2,4] [--rate 4000] [--json out.json]

Every agent is ``python -m agent.cli run`` in its own process (checkpoints on, every
10 s, to a compacted state topic), one consumer group, an 8-partition inference topic
on the embedded Tansu broker, the rules of ``bench/rules_20.yaml`` and the synthetic
fleet of ``bench/fleet.py`` (1,000 series keyed by 50 services).

1. **Throughput** for each process count: produce N events (the backlog), start the
   processes, and time the part after the group settled (every process owns inference
   partitions) until the last event is processed: (N - processed when settled) / time
   (sums of ``watchkeeper_events_total`` over the processes' ``/metrics``). The rate
   including the joins is printed next to it.
2. **Join and leave** under live traffic: two processes take ``--rate`` events/s with
   ``ts`` = wall time; a third one joins, then leaves with SIGTERM, then one of the two is
   SIGKILLed. For each, the time from the change until every partition is owned and
   processed within ``--normal-s`` of wall time again (``now -
   watchkeeper_partition_event_time_seconds`` over every partition, as its owner reports
   it), and the largest delay seen meanwhile. A joiner's time includes its own start
   (imports, and its three consumer groups joining one after another).

Then the per-process rate gives the estimate of the fleet size for 1 million events/s.
This machine has 2 vCPUs shared by the broker, the producer and every agent process:
with more than ~1.5 agent processes the CPU, not the fleet design, is the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from agent.runtime.embedded_broker import EmbeddedBroker, create_topics  # noqa: E402
from bench.fleet import SERIES, fleet_events, produce_all  # noqa: E402

RULES = ROOT / "bench" / "rules_20.yaml"
PARTITIONS = 8


class Agent:
    """One ``watchkeeper run`` process and its /metrics."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.env = {**env, "WATCHKEEPER_HTTP_ADDR": f"127.0.0.1:{self.port}"}
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run"], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far (Linux /proc)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    async def samples(self, client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        if self.proc is None or self.proc.poll() is not None:
            return {}
        try:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        except httpx.HTTPError:
            return {}
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _env(bootstrap: str, topics: dict[str, str], group: str, session_ms: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        {
            "WATCHKEEPER_KAFKA_BOOTSTRAP": bootstrap,
            "WATCHKEEPER_RULES": str(RULES),
            "WATCHKEEPER_GROUP_ID": group,
            "WATCHKEEPER_TOPIC_INFERENCE": topics["inference"],
            "WATCHKEEPER_TOPIC_LLM": topics["llm"],
            "WATCHKEEPER_TOPIC_GPU": topics["gpu"],
            "WATCHKEEPER_TOPIC_DLQ": topics["dlq"],
            "WATCHKEEPER_TOPIC_ALERTS": topics["alerts"],
            "WATCHKEEPER_TOPIC_AUDIT": topics["audit"],
            "WATCHKEEPER_TOPIC_RETRAIN": topics["retrain"],
            "WATCHKEEPER_STATE_TOPIC": topics["state"],
            "WATCHKEEPER_KAFKA_SESSION_TIMEOUT_MS": str(session_ms),
            "WATCHKEEPER_KAFKA_HEARTBEAT_INTERVAL_MS": str(max(100, session_ms // 10)),
            "WATCHKEEPER_ALERTMANAGER_URL": "",
            "WATCHKEEPER_LOG_LEVEL": "info",
            "WATCHKEEPER_LOG_JSON": "true",
        }
    )
    return env


async def _topics(bootstrap: str, run: str) -> dict[str, str]:
    topics = {k: f"bench.{k}.{run}" for k in ("inference", "llm", "gpu", "dlq", "alerts", "audit", "retrain", "state")}
    await create_topics(bootstrap, [topics["inference"]], partitions=PARTITIONS)
    await create_topics(bootstrap, [topics[k] for k in ("llm", "gpu", "dlq", "alerts", "audit", "retrain")], partitions=1)
    from agent.runtime.topics import create_topics as create_with_configs

    await create_with_configs(bootstrap, [topics["state"]], 4, configs={"cleanup.policy": "compact"})
    return topics


async def _settled(agents: list[Agent], client: httpx.AsyncClient, topic: str, timeout_s: float = 120.0) -> float:
    """Seconds until every agent owns inference partitions and together all of them."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        owned = [_get(await a.samples(client), "watchkeeper_partitions_owned", topic=topic) for a in agents]
        if all(o > 0 for o in owned) and sum(owned) == PARTITIONS:
            return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise RuntimeError(f"group did not settle in {timeout_s} s; see the logs in {agents[0].log.parent}")


async def throughput(bootstrap: str, n: int, count: int, session_ms: int, log_dir: Path, checkpoints: bool = True) -> dict[str, Any]:
    """Produce the backlog first, start ``count`` processes, time the part after the group settled."""
    run = uuid.uuid4().hex[:6]
    topics = await _topics(bootstrap, run)
    t_produce = time.monotonic()
    produced = await produce_all(bootstrap, topics["inference"], fleet_events(n))
    produce_s = time.monotonic() - t_produce
    env = {**_env(bootstrap, topics, f"bench-{run}", session_ms), "WATCHKEEPER_CHECKPOINTS": str(checkpoints).lower()}
    agents = [Agent(f"tp{count}-{i}", env, log_dir) for i in range(count)]
    t_start = time.monotonic()
    for a in agents:
        a.start()
    try:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            first = settled = last = None
            done = 0.0
            per: list[float] = []
            while time.monotonic() - t_start < 600:
                samples = [await a.samples(client) for a in agents]
                now = time.monotonic()
                per = [_get(x, "watchkeeper_events_total", source="inference", outcome="processed") for x in samples]
                owned = [_get(x, "watchkeeper_partitions_owned", topic=topics["inference"]) for x in samples]
                done = sum(per)
                if first is None and done > 0:
                    first = (now, done)
                if settled is None and all(o > 0 for o in owned) and sum(owned) == PARTITIONS:
                    settled = (now, done)
                    cpu_at_settled = sum(a.cpu_s() for a in agents)
                if done >= produced:
                    last = now
                    cpu_s = sum(a.cpu_s() for a in agents) - cpu_at_settled
                    break
                await asyncio.sleep(0.1)
            if first is None or settled is None or last is None:
                raise RuntimeError(f"processed {done} of {produced}; logs in {log_dir}")
            steady = (produced - settled[1]) / max(1e-9, last - settled[0])
            return {
                "processes": count,
                "checkpoints": checkpoints,
                "events": produced,
                "events_per_s": round(steady),
                "per_process": round(steady / count),
                "events_per_s_incl_joins": round(produced / max(1e-9, last - first[0])),
                # capacity per core, whatever else the machine runs: events per CPU-second of the agents
                "events_per_cpu_s": round((produced - settled[1]) / max(1e-9, cpu_s)),
                "agent_cpu_cores_used": round(cpu_s / max(1e-9, last - settled[0]), 2),
                "processed_before_settled": int(settled[1]),
                "per_process_events": per,
                "settle_s": round(settled[0] - t_start, 2),
                "produce_s": round(produce_s, 2),
            }
    finally:
        for a in agents:
            a.signal(signal.SIGTERM)
        for a in agents:
            a.wait()


async def _live_producer(bootstrap: str, topic: str, rate: float, stop: asyncio.Event) -> int:
    """``rate`` events/s round robin over the fleet's series, ts = wall time at send."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    sent = 0
    t0 = time.monotonic()
    try:
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate)
            batch = []
            while sent < due:
                service, model = SERIES[sent % len(SERIES)]
                value = json.dumps(
                    {"type": "inference", "ts": time.time(), "service": service, "model": model, "model_version": "v1",
                     "latency_ms": 40.0 + sent % 13, "status": "ok"}
                ).encode()
                batch.append(await producer.send(topic, value=value, key=service.encode()))
                sent += 1
            if batch:
                await asyncio.gather(*batch)
            await asyncio.sleep(0.01)
    finally:
        await producer.stop()
    return sent


async def _delays(agents: list[Agent], client: httpx.AsyncClient, topic: str) -> tuple[int, float]:
    """(partitions owned in all, largest wall-time delay of any partition's event time)."""
    newest: dict[str, float] = {}
    owned = 0.0
    for a in agents:
        samples = await a.samples(client)
        owned += _get(samples, "watchkeeper_partitions_owned", topic=topic)
        for (name, labels), v in samples.items():
            if name == "watchkeeper_partition_event_time_seconds" and dict(labels).get("topic") == topic:
                p = dict(labels)["partition"]
                newest[p] = max(newest.get(p, 0.0), v)
    if not newest:
        return int(owned), math.inf
    delay = time.time() - min(newest.values())
    # a partition no member reports yet (its new owner has not processed a batch) is not normal
    return int(owned), delay if len(newest) == PARTITIONS else -delay


async def _until_normal(agents: list[Agent], client: httpx.AsyncClient, topic: str, normal_s: float, since: float) -> dict[str, float]:
    """Watch until every partition is owned and within ``normal_s`` again; report the episode."""
    worst = 0.0
    owned_at = None
    saw_disturbance = False
    while time.monotonic() - since < 180:
        owned, delay = await _delays(agents, client, topic)
        complete = delay >= 0
        delay = abs(delay)
        worst = max(worst, delay if math.isfinite(delay) else worst)
        if owned != PARTITIONS or not complete or delay > normal_s:
            saw_disturbance = True
        if owned == PARTITIONS and owned_at is None and saw_disturbance:
            owned_at = time.monotonic() - since
        if owned == PARTITIONS and complete and delay <= normal_s and (saw_disturbance or time.monotonic() - since > 15):
            return {"normal_s": round(time.monotonic() - since, 2), "all_owned_s": round(owned_at or 0.0, 2), "max_delay_s": round(worst, 2)}
        await asyncio.sleep(0.1)
    return {"normal_s": math.inf, "all_owned_s": owned_at or math.inf, "max_delay_s": worst}


async def join_leave(bootstrap: str, rate: float, session_ms: int, normal_s: float, log_dir: Path) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    topics = await _topics(bootstrap, run)
    env = _env(bootstrap, topics, f"bench-jl-{run}", session_ms)
    topic = topics["inference"]
    agents = [Agent(f"jl-{i}", env, log_dir).start() for i in range(2)]
    stop = asyncio.Event()
    out: dict[str, Any] = {"rate": rate, "session_timeout_ms": session_ms, "normal_s": normal_s}
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        try:
            await _settled(agents, client, topic)
            producer = asyncio.create_task(_live_producer(bootstrap, topic, rate, stop))
            await asyncio.sleep(15)  # steady state, and a checkpoint or more of every partition
            _, steady = await _delays(agents, client, topic)
            out["steady_delay_s"] = round(steady, 2)

            joiner = Agent("jl-2", env, log_dir)
            t = time.monotonic()
            joiner.start()
            agents.append(joiner)
            out["join"] = await _until_normal(agents, client, topic, normal_s, t)
            print(json.dumps({"join": out["join"]}), flush=True)
            await asyncio.sleep(12)

            t = time.monotonic()
            joiner.signal(signal.SIGTERM)
            joiner.wait()
            agents.remove(joiner)
            out["leave_sigterm"] = await _until_normal(agents, client, topic, normal_s, t)
            print(json.dumps({"leave_sigterm": out["leave_sigterm"]}), flush=True)
            await asyncio.sleep(12)

            victim = agents[0]
            t = time.monotonic()
            victim.signal(signal.SIGKILL)
            victim.wait()
            agents.remove(victim)
            out["leave_sigkill"] = await _until_normal(agents, client, topic, normal_s, t)
            print(json.dumps({"leave_sigkill": out["leave_sigkill"]}), flush=True)
            for a in agents:
                samples = await a.samples(client)
                out["survivor_restores"] = {
                    how: _get(samples, "watchkeeper_checkpoint_restores_total", outcome=how) for how in ("restored", "kept", "fresh")
                }
        finally:
            stop.set()
            for a in agents:
                a.signal(signal.SIGTERM)
            for a in agents:
                a.wait()
    out["produced"] = await producer
    return out


def checkpoint_cost(n: int) -> dict[str, Any]:
    """In process, no Kafka: encode and restore every partition's state after ``n`` events."""
    import zlib

    from aiokafka.partitioner import murmur2

    from agent.rules import load_rules
    from agent.runtime.ingest import parse_event
    from agent.runtime.partition_state import restore_partition, snapshot_partition
    from agent.runtime.pipeline import Pipeline

    rules = load_rules((str(RULES),))
    pipeline = Pipeline(rules)
    for key, value in fleet_events(n):
        pipeline.process(parse_event(value, 1 << 20), ("inference", (murmur2(key) & 0x7FFFFFFF) % PARTITIONS))
    encode_s = restore_s = 0.0
    raw = packed = 0
    target = Pipeline(rules)
    for p in range(PARTITIONS):
        t0 = time.perf_counter()
        payload = snapshot_partition(pipeline, ("inference", p), 0)
        blob = zlib.compress(payload, 1)
        encode_s += time.perf_counter() - t0
        raw, packed = raw + len(payload), packed + len(blob)
        t0 = time.perf_counter()
        restore_partition(target, ("inference", p), zlib.decompress(blob))
        restore_s += time.perf_counter() - t0
    states = len(pipeline.engine)
    assert len(target.engine) == states
    return {
        "series_states": states,
        "json_mb": round(raw / 2**20, 1),
        "compressed_mb": round(packed / 2**20, 1),
        "bytes_per_state_compressed": round(packed / states),
        "encode_s_all_partitions": round(encode_s, 3),
        "restore_s_all_partitions": round(restore_s, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--rate", type=float, default=4_000.0, help="live events/s for the join/leave runs")
    parser.add_argument("--session-ms", type=int, default=3_000)
    parser.add_argument("--normal-s", type=float, default=3.0)
    parser.add_argument("--skip-join-leave", action="store_true")
    parser.add_argument("--baseline", action="store_true", help="also 1 process with checkpoints off (their cost)")
    parser.add_argument("--json")
    args = parser.parse_args()
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"wk-scale-out-{uuid.uuid4().hex[:6]}"
    log_dir.mkdir(parents=True)
    result: dict[str, Any] = {"events": args.events, "cpus": os.cpu_count(), "logs": str(log_dir)}
    result["checkpoint_cost"] = checkpoint_cost(args.events)
    print(json.dumps({"checkpoint_cost": result["checkpoint_cost"]}), flush=True)
    with EmbeddedBroker(log_dir=log_dir) as broker:
        result["throughput"] = []
        runs = [(int(c), True) for c in args.counts.split(",")]
        if args.baseline:
            runs.insert(1, (1, False))
        for count, checkpoints in runs:
            row = await throughput(broker.bootstrap, args.events, count, args.session_ms, log_dir, checkpoints)
            print(json.dumps(row), flush=True)
            result["throughput"].append(row)
        if not args.skip_join_leave:
            result["join_leave"] = await join_leave(broker.bootstrap, args.rate, args.session_ms, args.normal_s, log_dir)
            print(json.dumps(result["join_leave"]), flush=True)
    one = next((r for r in result["throughput"] if r["processes"] == 1 and r["checkpoints"]), None)
    if one is not None:
        per_core = min(one["per_process"], one["events_per_cpu_s"])
        result["fleet_for_1M"] = math.ceil(1_000_000 / per_core)
        print(f"fleet for 1M events/s at {per_core} events/s per process (one core each): {result['fleet_for_1M']} processes")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
