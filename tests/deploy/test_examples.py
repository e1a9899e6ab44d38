"""The example services in deploy/examples emit valid events through the real broker."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

from agent.model import EVENT_ADAPTER, InferenceEvent, LlmEvent
from tests.kafka_tools import consume
from watchkeeper_emit import Emitter

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _topics(unique_topic) -> dict[str, str]:
    return {kind: unique_topic(kind) for kind in ("inference", "llm", "gpu")}


async def test_example_inference_service_emits_inference_events(broker, unique_topic, monkeypatch):
    monkeypatch.setenv("WATCHKEEPER_SERVICE", "checkout")
    monkeypatch.setenv("WATCHKEEPER_MODEL", "fraud-detector")
    monkeypatch.setenv("WATCHKEEPER_MODEL_VERSION", "7")
    service = _load("inference_service")
    topics = _topics(unique_topic)
    emitter = Emitter(broker.bootstrap, topics=topics, register_metrics=False)
    app = service.create_app(emitter)
    async with app.router.lifespan_context(app):  # what uvicorn runs: start, then flush on shutdown
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            for amount in (10, 500, 2000):
                assert (await client.post("/predict", json={"amount": amount, "country": "US"})).status_code == 200
            await client.post("/fault", params={"error_ratio": 1.0})
            assert (await client.post("/predict", json={"amount": 1})).status_code == 500
            await client.post("/fault", params={"error_ratio": 0.0})
            assert (await client.get("/healthz")).status_code == 200
    assert emitter.sent == 4 and emitter.dropped == 0
    records = await consume(broker.bootstrap, topics["inference"], n=4, timeout_s=15)
    events = [EVENT_ADAPTER.validate_json(r.value) for r in records]
    assert all(isinstance(e, InferenceEvent) and r.key == b"checkout" for e, r in zip(events, records, strict=True))
    ok = sorted((e for e in events if e.status == "ok"), key=lambda e: e.features["amount"])
    assert [e.features["amount"] for e in ok] == [10.0, 500.0, 2000.0]
    assert ok[-1].prediction > ok[0].prediction and ok[0].features["country"] == "US"
    assert [e.status for e in events].count("error") == 1 and ok[0].model_version == "7"


async def test_example_llm_service_emits_token_usage(broker, unique_topic, monkeypatch):
    from openai import AsyncOpenAI

    monkeypatch.setenv("EXAMPLE_PROMPT_VERSION", "12")
    service = _load("llm_service")

    def openai_compatible_server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.url.path == "/v1/chat/completions" and body["model"] == "gpt-4o-mini"
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello!"}}],
            "usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40},
        })

    client = AsyncOpenAI(base_url="http://llm.test/v1", api_key="test",
                         http_client=httpx.AsyncClient(transport=httpx.MockTransport(openai_compatible_server)))
    topics = _topics(unique_topic)
    emitter = Emitter(broker.bootstrap, topics=topics, register_metrics=False)
    app = service.create_app(emitter, client)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
            response = await http.post("/chat", json={"message": "hi"}, headers={"X-Tenant": "acme"})
    assert response.json() == {"reply": "Hello!"}
    records = await consume(broker.bootstrap, topics["llm"], n=1, timeout_s=15)
    event = EVENT_ADAPTER.validate_json(records[0].value)
    assert isinstance(event, LlmEvent) and records[0].key == b"assistant"
    assert (event.tenant, event.prompt_version, event.prompt_tokens, event.completion_tokens, event.model) == (
        "acme", "12", 31, 9, "gpt-4o-mini-2024-07-18")


def test_loadgen_drifts_when_told():
    import random

    loadgen = _load("loadgen")
    rng = random.Random(1)
    normal = [loadgen.transaction(rng, False)["amount"] for _ in range(500)]
    drifted = [loadgen.transaction(rng, True)["amount"] for _ in range(500)]
    assert sorted(drifted)[250] > 2 * sorted(normal)[250]


async def test_a_fault_in_the_example_service_fires_the_agents_rule(broker, unique_topic, tmp_path, monkeypatch):
    """The whole instrumentation path: middleware -> emitter -> Kafka -> the agent's rule fires."""
    import io

    from agent.model import AlertState
    from agent.runtime.notifier import TerminalSink
    from tests.integration.harness import agent_config, eventually, running_agent, unique_name

    service_name = unique_name("checkout")
    alertname = unique_name("WkExampleErrors")
    monkeypatch.setenv("WATCHKEEPER_SERVICE", service_name)
    monkeypatch.setenv("WATCHKEEPER_MODEL", "fraud-detector")
    monkeypatch.setenv("WATCHKEEPER_MODEL_VERSION", "7")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""\
groups:
  - name: example
    rules:
      - alert: {alertname}
        source: inference
        by: [service, model]
        detector: {{kind: threshold, field: status, equals: error, agg: mean, window_s: 1m, op: ">", threshold: 0.5, min_count: 5}}
        for: 0s
        labels: {{severity: page}}
""")
    config = agent_config(broker.bootstrap, unique_topic, rules)
    topics = {"inference": config.topics.inference, "llm": config.topics.llm, "gpu": config.topics.gpu}
    pages = TerminalSink(out=io.StringIO())  # what the notifier delivers, via the alerts topic

    def fired():
        return [a for a in pages.delivered if a.state is AlertState.FIRING and a.labels.get("service") == service_name]

    service = _load("inference_service")
    emitter = Emitter(broker.bootstrap, topics=topics, register_metrics=False, linger_ms=10)
    app = service.create_app(emitter)
    async with running_agent(config, pages) as agent:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
                for amount in range(5):  # healthy traffic first: no page
                    assert (await client.post("/predict", json={"amount": amount})).status_code == 200
                await client.post("/fault", params={"error_ratio": 1.0})
                try:
                    for amount in range(10):
                        assert (await client.post("/predict", json={"amount": amount})).status_code == 500
                finally:
                    await client.post("/fault", params={"error_ratio": 0.0})
                await emitter.flush(15)
        await eventually(lambda: bool(fired()), timeout_s=30,
                         what=f"{alertname} firing for {service_name}", detail=lambda: repr(pages.delivered))
        processed = agent.metrics.registry.get_sample_value(
            "watchkeeper_events_total", {"source": "inference", "outcome": "processed"})
    (page,) = fired()
    assert page.labels["alertname"] == alertname and page.labels["model"] == "fraud-detector"
    assert emitter.sent == 15 and processed >= 15  # at-least-once: a rebalance may process a batch twice


# --- the RAG example: retrieval (FAISS), prompt, LLM, feedback; index rollback through MLflow --------------------
RAG_KINDS = ("inference", "llm", "gpu", "retrieval", "feedback")
QUESTIONS = (
    "how long until my refund is paid", "where is my order shipping status", "I forgot my password",
    "which payments do you accept", "my router has no internet", "how do I make a warranty claim",
)


def _rag_modules(monkeypatch):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (the examples extra: pip install -e '.[examples]')")
    monkeypatch.syspath_prepend(str(EXAMPLES))  # rag_service imports rag_index, as when run from deploy/examples
    return _load("rag_index"), _load("rag_service")


async def _ask_all(app, questions, rate=None):
    answers = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as http:
        for q in questions:
            response = await http.post("/ask", json={"question": q, "tenant": "acme"})
            assert response.status_code == 200, response.text
            answers.append(response.json())
            if rate is not None:
                rated = await http.post("/feedback", json={"request_id": answers[-1]["request_id"], "score": rate})
                assert rated.status_code == 200 and rated.json() == {"accepted": True}
        assert (await http.post("/feedback", json={"request_id": "never-asked", "score": 1})).status_code == 404
    return answers


async def test_example_rag_service_emits_retrieval_llm_and_feedback(broker, unique_topic, tmp_path, monkeypatch):
    from agent.model import EVENT_ADAPTER

    rag_index, rag_service = _rag_modules(monkeypatch)
    store = rag_index.IndexStore(tmp_path, "support-docs", rag_index.LocalAliases(tmp_path / "aliases.json"))
    assert store.build(rag_service.CORPUS) == "1"
    topics = {kind: unique_topic(kind) for kind in RAG_KINDS}
    emitter = Emitter(broker.bootstrap, topics=topics, register_metrics=False)
    pipeline = rag_service.RagPipeline(store, emitter, service="support-bot", prompt_version="1")
    app = rag_service.create_app(emitter, pipeline)
    async with app.router.lifespan_context(app):
        answers = await _ask_all(app, QUESTIONS + ("what is the airspeed velocity of an unladen swallow",), rate=1)
    n = len(answers)
    assert emitter.sent == 3 * n and emitter.dropped == 0
    assert answers[0]["sources"][0].startswith("refund") and answers[4]["sources"][0].startswith("router")
    assert answers[-1]["sources"] == []  # nothing in the corpus: no hit above the similarity floor

    retrieval = [EVENT_ADAPTER.validate_json(r.value) for r in await consume(broker.bootstrap, topics["retrieval"], n=n, timeout_s=15)]
    llm = [EVENT_ADAPTER.validate_json(r.value) for r in await consume(broker.bootstrap, topics["llm"], n=n, timeout_s=15)]
    feedback = [EVENT_ADAPTER.validate_json(r.value) for r in await consume(broker.bootstrap, topics["feedback"], n=n, timeout_s=15)]
    by_request = {e.request_id: e for e in retrieval}
    assert set(by_request) == {a["request_id"] for a in answers} == {e.request_id for e in llm} == {e.request_id for e in feedback}
    for answer in answers:
        r = by_request[answer["request_id"]]
        assert (r.service, r.index, r.index_version, r.k, r.hits) == ("support-bot", "support-docs", "1", 4, len(answer["sources"]))
        assert len(r.embedding) == 384
    grounded = [e for e in llm if e.request_id != answers[-1]["request_id"]]
    assert all(e.top_score > 0.2 for e in retrieval if e.hits) and all(not e.refusal for e in grounded)
    assert all(e.eval_score > 0.9 and not e.safety.flagged for e in grounded)
    refused = next(e for e in llm if e.request_id == answers[-1]["request_id"])
    assert refused.refusal and refused.eval_score < 0.5
    assert {(e.prompt_version, e.score) for e in feedback} == {("1", 1.0)}


async def test_a_wrong_index_build_is_rolled_back_through_mlflow(broker, unique_topic, tmp_path, monkeypatch, mlflow_server):
    """v2 is built from the wrong documents: empty hits; the agent's index rollback brings v1 back to the next query."""
    import uuid

    from actions.audit import decision_key
    from actions.base import ActionContext
    from actions.rollback import Rollback
    from agent.model import EVENT_ADAPTER, Alert, AlertState

    rag_index, rag_service = _rag_modules(monkeypatch)
    name = f"docs-{uuid.uuid4().hex[:8]}"
    store = rag_index.IndexStore(tmp_path, name, rag_index.MlflowAliases(mlflow_server.url))
    assert store.build(rag_service.CORPUS) == "1"
    wrong = [{"id": f"lorem-{i}", "text": f"lorem ipsum dolor sit amet {i}"} for i in range(20)]
    assert store.build(wrong) == "2"  # the rebuild picked up the wrong source folder
    topics = {kind: unique_topic(kind) for kind in RAG_KINDS}
    emitter = Emitter(broker.bootstrap, topics=topics, register_metrics=False)
    app = rag_service.create_app(emitter, rag_service.RagPipeline(store, emitter, service="support-bot"))
    async with app.router.lifespan_context(app):
        before = await _ask_all(app, QUESTIONS)
        assert {a["index_version"] for a in before} == {"2"}
        assert sum(len(a["sources"]) for a in before) <= 2  # a stray hash collision at most: nearly all empty

        alert = Alert(fingerprint="fp-rag", rule_id="retrieval/RetrievalEmptyHits", state=AlertState.FIRING,
                      labels={"alertname": "RetrievalEmptyHits", "service": "support-bot", "index": name, "index_version": "2"},
                      annotations={}, active_at=1000.0, value=1.0, fired_at=1030.0)
        action = Rollback(
            Rollback.Params.model_validate({"type": "rollback", "registry": "index", "alias": "live",
                                            "allowed": {"patterns": ["docs-[0-9a-f]{8}"]}}),
            ActionContext(mlflow_tracking_uri=mlflow_server.url, agent_id="wk-test"),
        )
        target = action.target(alert)
        action.decision_key = decision_key(alert.rule_id, alert.fingerprint, alert.active_at, 0, target.key)
        after = await action.apply(await action.plan(alert, target), alert)
        assert (after["from"], after["version"]) == ("2", "1")

        healed = await _ask_all(app, QUESTIONS)
    assert {a["index_version"] for a in healed} == {"1"} and all(a["sources"] for a in healed)
    records = await consume(broker.bootstrap, topics["retrieval"], n=2 * len(QUESTIONS), timeout_s=15)
    versions = [(e.index_version, e.hits) for e in map(EVENT_ADAPTER.validate_json, (r.value for r in records))]
    assert {v for v, _ in versions} == {"1", "2"} and sum(h for v, h in versions if v == "2") <= 2
    assert all(h > 0 for v, h in versions if v == "1")


async def test_a_wrong_build_of_the_example_index_fires_the_agents_rule(broker, unique_topic, tmp_path, monkeypatch):
    """The whole RAG instrumentation path: FAISS lookups -> RagRecorder -> Kafka -> the agent pages on the build."""
    import io

    from agent.model import AlertState
    from agent.runtime.notifier import TerminalSink
    from tests.integration.harness import agent_config, eventually, running_agent, unique_name

    rag_index, rag_service = _rag_modules(monkeypatch)
    service_name, alertname = unique_name("support-bot"), unique_name("WkExampleEmptyHits")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""\
groups:
  - name: example-rag
    rules:
      - alert: {alertname}
        source: retrieval
        by: [service, index, index_version]
        detector: {{kind: threshold, field: empty, agg: mean, window_s: 5m, op: ">", threshold: 0.5, min_count: 5}}
        for: 0s
        labels: {{severity: page}}
""")
    config = agent_config(broker.bootstrap, unique_topic, rules)
    topics = {kind: getattr(config.topics, kind) for kind in RAG_KINDS}
    pages = TerminalSink(out=io.StringIO())
    store = rag_index.IndexStore(tmp_path / "index", "support-docs", rag_index.LocalAliases(tmp_path / "aliases.json"))
    store.build(rag_service.CORPUS)
    emitter = Emitter(broker.bootstrap, topics=topics, register_metrics=False, linger_ms=10)
    app = rag_service.create_app(emitter, rag_service.RagPipeline(store, emitter, service=service_name))

    def fired(version):
        return [a for a in pages.delivered if a.state is AlertState.FIRING
                and a.labels.get("service") == service_name and a.labels.get("index_version") == version]

    async with running_agent(config, pages):
        async with app.router.lifespan_context(app):
            await _ask_all(app, QUESTIONS)  # build 1 answers: no page
            store.build([{"id": f"lorem-{i}", "text": f"lorem ipsum dolor sit amet {i}"} for i in range(20)])
            await _ask_all(app, QUESTIONS)  # build 2, from the wrong documents
            await emitter.flush(15)
        await eventually(lambda: bool(fired("2")), timeout_s=30, what=f"{alertname} for build 2",
                         detail=lambda: repr(pages.delivered))
    assert not fired("1") and emitter.dropped == 0


def test_rag_index_docstring_examples(monkeypatch):
    import doctest

    rag_index, _ = _rag_modules(monkeypatch)
    result = doctest.testmod(rag_index)
    assert result.attempted > 0 and result.failed == 0
