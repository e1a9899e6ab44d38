"""What emitting costs the service: caller-side time per ``emit()`` and per instrumented request.

    .venv/bin/python bench/emit_overhead.py [--events 100000] [--requests 3000] [--json out.json]

One run, one embedded Tansu broker; every figure is printed next to its same-run baseline:

1. baseline: calling a no-op function with the event (the floor of any call);
2. ``emit()`` accepted, the broker live and the drain task running (the loop yields
   every 100 emits, as a busy service would), then ``close()`` and the delivered rate;
3. ``emit()`` on a full buffer (the drop path);
4. ``emit()`` with the broker unreachable (buffer fills, then drops);
5. an ASGI request through ``httpx.ASGITransport`` to a tiny FastAPI endpoint, without
   and with ``InferenceMiddleware`` (with a features/prediction hook) feeding the real emitter.

Per-call figures are p50/p99 of ``perf_counter_ns`` around each call, less the
timer's own cost measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.runtime.embedded_broker import EmbeddedBroker  # noqa: E402
from watchkeeper_emit import Emitter, InferenceMiddleware, inference_event  # noqa: E402


def _pct(samples: list[int], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))] / 1000.0  # us


def _timer_floor(n: int = 20000) -> int:
    t = time.perf_counter_ns
    costs = []
    for _ in range(n):
        a = t()
        costs.append(t() - a)
    return int(statistics.median(costs))


def _events(n: int) -> list[dict[str, Any]]:
    return [inference_event(f"svc-{i % 50}", "m", "1", latency_ms=40.0 + i % 7, features={"amount": float(i)}, ts=1e9 + i)
            for i in range(n)]


async def _timed(fn, events, floor: int, yield_every: int = 100) -> list[int]:
    t = time.perf_counter_ns
    out = []
    for i, event in enumerate(events):
        a = t()
        fn(event)
        out.append(max(0, t() - a - floor))
        if i % yield_every == 0:
            await asyncio.sleep(0)
    return out


def _line(name: str, samples: list[int], extra: str = "") -> dict[str, float]:
    p50, p99 = _pct(samples, 0.5), _pct(samples, 0.99)
    print(f"  {name:<44} p50 {p50:7.2f} us   p99 {p99:7.2f} us   {extra}")
    return {"p50_us": p50, "p99_us": p99}


async def _asgi_requests(app, n: int) -> list[int]:
    import httpx

    samples = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        for i in range(200):  # warm-up: imports, caches and the first allocations are not the steady state
            await client.post("/predict", json={"features": {"amount": i, "country": "DE"}})
        for i in range(n):
            a = time.perf_counter_ns()
            response = await client.post("/predict", json={"features": {"amount": i, "country": "DE"}})
            samples.append(time.perf_counter_ns() - a)
            assert response.status_code == 200
    return samples


def _app(emitter=None):
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict")
    async def predict(body: dict):
        return {"score": 0.1}

    if emitter is not None:
        def hook(exchange):
            return {"features": (exchange.json_request() or {}).get("features"),
                    "prediction": (exchange.json_response() or {}).get("score")}

        app.add_middleware(InferenceMiddleware, emitter=emitter, service="bench", model="m", model_version="1", hook=hook)
    return app


async def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("watchkeeper_emit").setLevel(logging.ERROR)
    floor = _timer_floor()
    events = _events(args.events)
    results: dict[str, Any] = {"events": args.events, "timer_floor_ns": floor}
    print(f"emit overhead, {args.events} events (timer floor {floor} ns subtracted)")
    results["noop_call"] = _line("baseline: no-op function call", await _timed(lambda e: None, events, floor))

    with EmbeddedBroker() as broker:
        topics = {k: f"bench.{k}.{int(time.time())}" for k in ("inference", "llm", "gpu")}
        emitter = await Emitter(broker.bootstrap, topics=topics, max_buffer=args.events + 1, register_metrics=False).start()
        emitter.emit(events[0])
        await emitter.flush(30)  # topic created, metadata known: measure the steady state
        started = time.perf_counter()
        samples = await _timed(emitter.emit, events, floor)
        await emitter.close(timeout_s=120)
        elapsed = time.perf_counter() - started
        rate = emitter.sent / elapsed
        results["emit_live"] = _line("emit() accepted, broker live", samples, f"delivered {emitter.sent} ({rate:,.0f}/s)")
        results["emit_live"].update(sent=emitter.sent, delivered_per_s=rate, dropped=emitter.dropped, errors=emitter.errors)

        full = Emitter(broker.bootstrap, topics=topics, max_buffer=1, register_metrics=False)
        full.emit(events[0])
        results["emit_drop"] = _line("emit() on a full buffer (drop)", await _timed(full.emit, events, floor))
        await full.close(timeout_s=1)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        unreachable = await Emitter(f"127.0.0.1:{dead}", topics=topics, max_buffer=10_000, register_metrics=False).start()
        samples = await _timed(unreachable.emit, events, floor)
        results["emit_unreachable"] = _line(
            "emit() with the broker unreachable", samples, f"dropped {unreachable.dropped_by_reason['buffer_full']}")
        await unreachable.close(timeout_s=1)

        print(f"ASGI request, {args.requests} requests through httpx.ASGITransport (per request)")
        plain = await _asgi_requests(_app(), args.requests)
        emitter = await Emitter(broker.bootstrap, topics=topics, register_metrics=False).start()
        instrumented = await _asgi_requests(_app(emitter), args.requests)
        await emitter.close(timeout_s=30)
        results["request_plain"] = _line("baseline: FastAPI request, no middleware", plain)
        results["request_instrumented"] = _line("with InferenceMiddleware + hook + emitter", instrumented,
                                                f"sent {emitter.sent} (200 of them warm-up)")
        added = statistics.median(instrumented) / 1000 - statistics.median(plain) / 1000
        results["middleware_added_p50_us"] = added
        print(f"  middleware adds ~{added:.1f} us at p50 per request")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--json", default="")
    asyncio.run(main(parser.parse_args()))
