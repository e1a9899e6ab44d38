"""An example inference service instrumented with watchkeeper-emit (run by the compose stack).

    WATCHKEEPER_KAFKA_BOOTSTRAP=localhost:9092 uvicorn inference_service:create_app --factory --port 8000

A toy fraud model behind ``POST /predict``. The only Watchkeeper code is in
:func:`create_app`: an :class:`Emitter` started and flushed by the app's lifespan, and
:class:`InferenceMiddleware` with a hook that picks the features and the prediction out
of the request and response bodies. Identity comes from configuration:
``WATCHKEEPER_SERVICE``, ``WATCHKEEPER_MODEL``, ``WATCHKEEPER_MODEL_VERSION``.

Faults to try the rules with (read on every request, so they can be flipped live
through ``POST /fault``): ``EXAMPLE_EXTRA_LATENCY_MS`` (added to every prediction)
and ``EXAMPLE_ERROR_RATIO`` (share of requests answered 500).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, Field

from watchkeeper_emit import Emitter, Exchange, InferenceMiddleware


class Transaction(BaseModel):
    amount: float = Field(ge=0)
    country: str = "DE"
    account_age_days: float = Field(default=365, ge=0)


FAULTS: dict[str, float] = {
    "extra_latency_ms": float(os.environ.get("EXAMPLE_EXTRA_LATENCY_MS", "0")),
    "error_ratio": float(os.environ.get("EXAMPLE_ERROR_RATIO", "0")),
}


def score(tx: Transaction) -> float:
    """The "model": a fixed logistic score, so drift in the inputs shows in the outputs."""
    z = -4.0 + 0.004 * tx.amount - 0.002 * tx.account_age_days + (1.5 if tx.country not in ("DE", "FR", "NL") else 0.0)
    return 1.0 / (1.0 + math.exp(-z))


def features_and_prediction(exchange: Exchange) -> dict[str, Any]:
    """The hook: what the drift rules watch (request fields) and what the model said."""
    request = exchange.json_request() or {}
    response = exchange.json_response() or {}
    return {
        "features": {k: request[k] for k in ("amount", "country", "account_age_days") if k in request},
        "prediction": response.get("fraud_probability"),
    }


def create_app(emitter: Emitter | None = None) -> FastAPI:
    emitter = emitter or Emitter.from_env(client_id=os.environ.get("WATCHKEEPER_SERVICE", "example-inference"))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await emitter.start()  # returns at once, even while Kafka is unreachable
        try:
            yield
        finally:
            await emitter.close(timeout_s=10)  # deliver what is buffered before exiting

    app = FastAPI(title="example inference service", lifespan=lifespan)

    @app.post("/predict")
    async def predict(tx: Transaction) -> dict[str, Any]:
        if FAULTS["extra_latency_ms"]:
            await asyncio.sleep(FAULTS["extra_latency_ms"] / 1000.0)
        if random.random() < FAULTS["error_ratio"]:
            raise HTTPException(status_code=500, detail="injected fault")
        p = score(tx)
        return {"fraud_probability": round(p, 6), "decision": "review" if p > 0.5 else "accept"}

    @app.post("/fault")
    async def set_fault(extra_latency_ms: float = 0.0, error_ratio: float = 0.0) -> dict[str, float]:
        FAULTS.update(extra_latency_ms=max(0.0, extra_latency_ms), error_ratio=min(1.0, max(0.0, error_ratio)))
        return FAULTS

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)  # watchkeeper_emit_* included

    app.add_middleware(InferenceMiddleware, emitter=emitter, hook=features_and_prediction, paths=["/predict"],
                       labels={"env": os.environ.get("EXAMPLE_ENV", "local")})
    return app
