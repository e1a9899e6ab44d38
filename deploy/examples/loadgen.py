"""Steady traffic for the example inference service (the compose stack's ``loadgen``).

    python loadgen.py --url http://example-inference:8000 --rps 20

Transactions are drawn around fixed distributions; ``--drift-after S`` shifts the
amounts upward after S seconds, so the shipped drift rules have something to find.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import httpx

COUNTRIES = ["DE", "FR", "NL", "US", "BR"]


def transaction(rng: random.Random, drifted: bool) -> dict:
    amount = rng.lognormvariate(4.5 if not drifted else 5.5, 0.6)
    return {"amount": round(amount, 2), "country": rng.choice(COUNTRIES), "account_age_days": rng.randint(1, 3000)}


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=args.url, timeout=10) as client:
        while args.duration <= 0 or time.monotonic() - started < args.duration:
            tick = time.monotonic()
            drifted = 0 < args.drift_after < tick - started
            batch = [client.post("/predict", json=transaction(rng, drifted)) for _ in range(args.rps)]
            results = await asyncio.gather(*batch, return_exceptions=True)
            failures = sum(1 for r in results if isinstance(r, Exception))
            if failures:
                print(f"loadgen: {failures}/{len(results)} requests failed (service starting?)", flush=True)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--rps", type=int, default=20)
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs forever")
    parser.add_argument("--drift-after", type=float, default=0, help="seconds; 0 never drifts")
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(main(parser.parse_args()))
