"""``watchkeeper-emit``: the emitter's command line (GPU sampling from NVML).

    watchkeeper-emit gpu --bootstrap kafka:9092 --interval 10s [--node $NODE_NAME] [--pod NAME]
    watchkeeper-emit gpu --stdout --once          # print one sample as JSON lines, no Kafka

Every flag also reads an environment variable (``WATCHKEEPER_KAFKA_BOOTSTRAP``,
``WATCHKEEPER_GPU_INTERVAL``, ``WATCHKEEPER_NODE`` or ``NODE_NAME``, ``WATCHKEEPER_POD``
or ``POD_NAME``). Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 when no GPU is
usable here (one line on stderr says why, no traceback), 1 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
from typing import Any

from .gpu import GpuUnavailable, NvmlSampler, open_nvml

__all__ = ["main", "parse_interval"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_interval(text: str) -> float:
    """``10s``, ``1m``, ``500ms`` or plain seconds to seconds.

    >>> parse_interval("10s"), parse_interval("1m"), parse_interval("0.5")
    (10.0, 60.0, 0.5)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration (e.g. 10s, 1m, 500ms)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="watchkeeper-emit", description="Emit Watchkeeper events.")
    sub = parser.add_subparsers(dest="command", required=True)
    gpu = sub.add_parser("gpu", help="Sample this node's GPUs through NVML and publish gpu events.")
    gpu.add_argument("--bootstrap", default=env("WATCHKEEPER_KAFKA_BOOTSTRAP", ""), help="Kafka bootstrap servers.")
    gpu.add_argument("--interval", type=parse_interval, default=parse_interval(env("WATCHKEEPER_GPU_INTERVAL", "10s")))
    gpu.add_argument("--node", default=env("WATCHKEEPER_NODE") or env("NODE_NAME"), help="Node name (Kafka key).")
    gpu.add_argument("--pod", default=env("WATCHKEEPER_POD") or env("POD_NAME"), help="Pod using the GPUs (sidecar).")
    gpu.add_argument("--once", action="store_true", help="Take one sample and exit.")
    gpu.add_argument("--stdout", action="store_true", help="Print events as JSON lines instead of sending them.")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if not args.stdout and not args.bootstrap:
        print("watchkeeper-emit: no Kafka bootstrap (--bootstrap or WATCHKEEPER_KAFKA_BOOTSTRAP), or use --stdout",
              file=sys.stderr)
        return 1
    try:
        nvml = open_nvml()
    except GpuUnavailable as exc:
        print(f"watchkeeper-emit: {exc}", file=sys.stderr)
        return 2
    sampler = NvmlSampler(nvml, node=args.node, pod=args.pod)
    try:
        return asyncio.run(_run_gpu(sampler, args))
    except ValueError as exc:
        print(f"watchkeeper-emit: {exc}", file=sys.stderr)
        return 1
    finally:
        sampler.close()


async def _run_gpu(sampler: NvmlSampler, args: Any) -> int:
    emitter = None
    if not args.stdout:
        from .emitter import Emitter

        env = {**os.environ, "WATCHKEEPER_KAFKA_BOOTSTRAP": args.bootstrap}
        emitter = await Emitter.from_env(env, client_id="watchkeeper-emit-gpu").start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log = logging.getLogger("watchkeeper_emit")
    try:
        while not stop.is_set():
            events = await asyncio.to_thread(sampler.sample)
            for reason in sampler.skipped:
                log.warning("gpu skipped: %s", reason)
            for event in events:
                if emitter is None:
                    print(json.dumps(event, separators=(",", ":")), flush=True)
                else:
                    emitter.emit(event)
            if args.once:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=args.interval)
            except TimeoutError:
                pass
    finally:
        if emitter is not None:
            await emitter.close()
            log.info("stopped: %d sent, %d dropped, %d errors", emitter.sent, emitter.dropped, emitter.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
