"""The ASGI middleware (a real FastAPI app), the LLM wrapper (real openai objects) and the
wire contract: every event the emitter's helpers build validates with the agent's model."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion

from agent.model import EVENT_ADAPTER, GpuEvent, InferenceEvent, LlmEvent
from watchkeeper_emit import InferenceMiddleware, LlmTracker, gpu_event, inference_event, llm_event


class Recorder:
    """Stands in for the Emitter: the Kafka side is covered by test_emitter_kafka."""

    def __init__(self):
        self.events: list[dict] = []

    def emit(self, event):
        self.events.append(event)
        return True


def _app(recorder: Recorder, hook=None) -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request, body: dict):
        if body.get("explode"):
            raise RuntimeError("model crashed")
        if body.get("reject"):
            raise HTTPException(status_code=503, detail="overloaded")
        request.state.segment = "gold"
        return {"score": 0.25 * len(body.get("features", {}))}

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    app.add_middleware(InferenceMiddleware, emitter=recorder, service="checkout", model="fraud-detector",
                       model_version=7, hook=hook, labels={"region": "eu-west-1"})
    return app


def features_and_score(exchange):
    request = exchange.json_request() or {}
    return {
        "features": request.get("features"),
        "prediction": (exchange.json_response() or {}).get("score"),
        "labels": {"segment": exchange.state.get("segment", "none")},
    }


async def test_middleware_emits_one_valid_event_per_prediction():
    recorder = Recorder()
    transport = httpx.ASGITransport(app=_app(recorder, hook=features_and_score), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        ok = await client.post("/predict", json={"features": {"amount": 129.5, "country": "DE", "vip": True, "tags": [1]}})
        rejected = await client.post("/predict", json={"reject": True})
        crashed = await client.post("/predict", json={"explode": True})
        await client.get("/healthz")
    assert (ok.status_code, rejected.status_code, crashed.status_code) == (200, 503, 500)
    assert len(recorder.events) == 3  # /healthz is not a prediction
    first, second, third = (EVENT_ADAPTER.validate_python(e) for e in recorder.events)
    assert isinstance(first, InferenceEvent) and first.status == "ok"
    assert (first.service, first.model, first.model_version) == ("checkout", "fraud-detector", "7")
    assert first.features == {"amount": 129.5, "country": "DE", "vip": 1.0}  # the list is not a contract value
    assert first.prediction == 1.0 and first.labels == {"region": "eu-west-1", "segment": "gold"}
    assert 0 < first.latency_ms < 10_000
    assert second.status == "error" and third.status == "error"


async def test_a_failing_hook_never_fails_the_request():
    recorder = Recorder()

    def broken(exchange):
        raise KeyError("oops")

    app = _app(recorder, hook=broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.post("/predict", json={"features": {"a": 1}})
    assert response.status_code == 200 and response.json() == {"score": 0.25}
    event = EVENT_ADAPTER.validate_python(recorder.events[0])
    assert event.features == {} and event.prediction is None


def test_middleware_needs_its_identity(monkeypatch):
    for name in ("WATCHKEEPER_SERVICE", "WATCHKEEPER_MODEL", "WATCHKEEPER_MODEL_VERSION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="service, model, model_version"):
        InferenceMiddleware(FastAPI(), Recorder())
    monkeypatch.setenv("WATCHKEEPER_SERVICE", "s")
    monkeypatch.setenv("WATCHKEEPER_MODEL", "m")
    monkeypatch.setenv("WATCHKEEPER_MODEL_VERSION", "3")
    assert InferenceMiddleware(FastAPI(), Recorder()).model_version == "3"


def _completion(prompt: int, completion: int) -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-1", object="chat.completion", created=1_764_000_000, model="gpt-4o-2024-08-06",
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        usage=CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
    )


async def test_llm_wrapper_reads_usage_from_openai_objects_and_dicts():
    recorder = Recorder()
    llm = LlmTracker(recorder, service="assistant", cost=lambda model, p, c: (p * 2.5 + c * 10) / 1e6)

    async def create(**kwargs):
        return _completion(812, 260)

    reply = await llm.acall(create, tenant="acme", prompt_version=12, model="gpt-4o", messages=[])
    assert reply.usage.prompt_tokens == 812
    llm.call(lambda **kw: {"model": "llama-3-8b", "usage": {"input_tokens": 10, "output_tokens": 5}},
             tenant="beta", prompt_version="v2")
    with pytest.raises(TimeoutError):
        llm.call(_raise_timeout, tenant="acme", prompt_version="12", model="gpt-4o")
    events = [EVENT_ADAPTER.validate_python(e) for e in recorder.events]
    assert all(isinstance(e, LlmEvent) for e in events)
    first, second, failed = events
    assert (first.model, first.tenant, first.prompt_version, first.prompt_tokens, first.completion_tokens) == (
        "gpt-4o-2024-08-06", "acme", "12", 812, 260)
    assert first.cost_usd == pytest.approx((812 * 2.5 + 260 * 10) / 1e6)
    assert (second.model, second.prompt_tokens, second.completion_tokens, second.tenant) == ("llama-3-8b", 10, 5, "beta")
    assert (failed.status, failed.model, failed.total_tokens, failed.cost_usd) == ("error", "gpt-4o", 0, None)


def _raise_timeout(**kwargs):
    raise TimeoutError("upstream timed out")


def test_builders_produce_contract_events():
    events = [
        inference_event("s", "m", 3, latency_ms=1, features={"x": 1.0}, prediction="fraud", labels={"a": "b"}),
        llm_event("s", "m", prompt_version=1, tenant="t", prompt_tokens=1, completion_tokens=2, latency_ms=3, cost_usd=0.1),
        gpu_event("n", 0, util_pct=150, mem_used_bytes=1, mem_total_bytes=2, temp_c=50, power_w=300, xid_errors=0, pod="p"),
    ]
    parsed = [EVENT_ADAPTER.validate_python(e) for e in events]
    assert [type(p) for p in parsed] == [InferenceEvent, LlmEvent, GpuEvent]
    assert parsed[2].util_pct == 100.0
    with pytest.raises(ValueError, match="status"):
        inference_event("s", "m", 1, latency_ms=1, status="fine")
    with pytest.raises(ValueError, match="latency_ms"):
        inference_event("s", "m", 1, latency_ms=float("inf"))


def test_the_emitter_imports_nothing_heavy():
    code = (
        "import sys, watchkeeper_emit\n"
        "heavy = [m for m in ('agent', 'pydantic', 'faststream', 'fastapi', 'starlette', 'openai', 'aiokafka', 'pynvml')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def _wsgi_app(environ, start_response):
    """A tiny synchronous model server (what a Flask view boils down to)."""
    if environ["PATH_INFO"] == "/healthz":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"ok": true}']
    body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
    if body.get("explode"):
        raise RuntimeError("model crashed")
    environ["watchkeeper.state"] = {"segment": "gold"}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"score": ', str(0.5 * len(body.get("features", {}))).encode(), b"}"]


def test_wsgi_middleware_emits_the_same_events():
    from watchkeeper_emit import WsgiInferenceMiddleware

    recorder = Recorder()
    app = WsgiInferenceMiddleware(_wsgi_app, recorder, service="checkout", model="fraud-detector", model_version="7",
                                  hook=features_and_score)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://svc") as client:
        ok = client.post("/predict", json={"features": {"amount": 10.0, "country": "DE"}})
        with pytest.raises(RuntimeError, match="model crashed"):  # re-raised for the server to answer 500
            client.post("/predict", json={"explode": True})
        client.get("/healthz")
    assert ok.json() == {"score": 1.0}
    first, second = (EVENT_ADAPTER.validate_python(e) for e in recorder.events)
    assert (first.status, first.features, first.prediction, first.labels) == (
        "ok", {"amount": 10.0, "country": "DE"}, 1.0, {"segment": "gold"})
    assert second.status == "error" and first.model_version == "7"
