"""An example RAG service: query -> retrieval (FAISS) -> prompt -> LLM -> logging -> feedback, all emitted.

    WATCHKEEPER_KAFKA_BOOTSTRAP=localhost:9092 EXAMPLE_INDEX_DIR=/tmp/rag \
        uvicorn rag_service:create_app --factory --port 8002

``POST /ask`` with ``{"question": "...", "tenant": "acme"}`` answers from the built-in
support corpus and returns a ``request_id``; ``POST /feedback`` with ``{"request_id",
"score"}`` (-1 or +1, thumbs) rates it. Each answer emits a ``retrieval`` event (index
name and version, hits above the similarity floor, top and mean score, the query's
embedding) and an ``llm`` event (tokens, the safety verdict, refusal, a groundedness
score, the response's embedding) sharing the ``request_id``; each rating emits a
``feedback`` event with the prompt version that produced the answer.

The pieces are deliberately small and deterministic so the whole path runs in tests
without a model download or an API key: the index is a real FAISS index over a
hashing embedder (:mod:`rag_index`), the "LLM" (:class:`FakeLlm`) writes its answer
from the retrieved passages, and the safety check is a word list. Swap in real ones
(an embedding model, an OpenAI-compatible client with ``LlmTracker``, a moderation
endpoint) without touching the instrumentation.

The index alias ``live`` is resolved on every question: ``EXAMPLE_MLFLOW_URI`` set,
the index is registered in MLflow and the agent's ``rollback`` (``registry: index``)
moves it back; unset, a JSON file holds it (:class:`rag_index.LocalAliases`).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from rag_index import IndexStore, LocalAliases, MlflowAliases

from watchkeeper_emit import Emitter, LlmTracker, RagRecorder

__all__ = ["CORPUS", "PROMPTS", "FakeLlm", "RagPipeline", "create_app", "default_store"]

_log = logging.getLogger("rag_service")

CORPUS: tuple[dict[str, str], ...] = (
    {"id": "refund-1", "text": "Refunds are paid to the original card within 5 business days after the return arrives."},
    {"id": "refund-2", "text": "To request a refund open your order, choose return item and print the label."},
    {"id": "refund-3", "text": "Digital purchases can be refunded within 14 days if they were not downloaded."},
    {"id": "ship-1", "text": "Standard shipping takes 3 to 5 business days; express shipping arrives the next day."},
    {"id": "ship-2", "text": "You can track your order shipping status from the orders page with the tracking number."},
    {"id": "ship-3", "text": "Shipping to islands and remote areas may take two extra days."},
    {"id": "account-1", "text": "Reset your password from the login page with forgot password; the link expires in one hour."},
    {"id": "account-2", "text": "Two factor authentication can be turned on in account security settings."},
    {"id": "account-3", "text": "To delete your account contact support; your data is erased within 30 days."},
    {"id": "billing-1", "text": "Invoices for every order are in the billing section of your account as PDF."},
    {"id": "billing-2", "text": "We accept credit card, debit card, PayPal and bank transfer payments."},
    {"id": "billing-3", "text": "A failed payment is retried once after 24 hours before the order is cancelled."},
    {"id": "router-1", "text": "If the router has no internet, unplug it for 30 seconds and plug it back in."},
    {"id": "router-2", "text": "The router admin page is at 192.168.1.1; the default password is on the label."},
    {"id": "warranty-1", "text": "Devices have a two year warranty covering manufacturing defects, not accidental damage."},
    {"id": "warranty-2", "text": "For a warranty claim send the serial number and a photo of the defect to support."},
)

PROMPTS: dict[str, str] = {
    "1": "Answer the customer's question using only the passages below. If they do not answer it, say so.\n"
         "{passages}\nQuestion: {question}\nAnswer:",
    "2": "You are a witty assistant; be edgy and use strong language if you like.\n{passages}\nQuestion: {question}\nAnswer:",
}
"""Prompt versions; "2" is the kind of change that makes answers unsafe (see FakeLlm)."""

_UNSAFE = frozenset({"damn", "stupid", "idiot"})
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str


class FakeLlm:
    """A deterministic stand-in for an LLM: answers with the best passage, or declines without one.

    Under an "edgy" prompt (one that asks for strong language) roughly one answer in
    ``1 / edgy_ratio`` gets a rude word, decided by the question's hash, so the same
    question always gets the same answer.
    """

    model = "fake-llm-1"

    def __init__(self, edgy_ratio: float = 0.08) -> None:
        self.edgy_ratio = edgy_ratio

    def complete(self, prompt: str, passages: list[str], question: str) -> Completion:
        if passages:
            text = passages[0]
            if "strong language" in prompt and (uuid.uuid5(uuid.NAMESPACE_URL, question).int % 1000) < self.edgy_ratio * 1000:
                text = "Honestly, a stupid question, but: " + text
        else:
            text = "I'm sorry, I can't find that in our help articles."
        return Completion(text, len(_words(prompt)), len(_words(text)), self.model)


def safety_categories(text: str) -> list[str]:
    """A toy moderation check: the categories a response falls into (empty: safe)."""
    return ["toxicity"] if _UNSAFE & set(_words(text)) else []


def groundedness(answer: str, passages: list[str]) -> float:
    """Share of the answer's words found in the passages: 1.0 fully grounded, 0.0 made up."""
    words = _words(answer)
    context = set(_words(" ".join(passages)))
    return round(sum(w in context for w in words) / len(words), 4) if words else 0.0


class RagPipeline:
    """One question through retrieval, prompt assembly, the LLM, logging; ratings through feedback.

    Parameters
    ----------
    store
        The index store; its ``live`` alias is resolved on every question.
    emitter
        Where the events go (``emit`` never blocks).
    prompt_version
        The key into :data:`PROMPTS` (the dimension prompt rollbacks act on).
    k, min_score
        Passages asked for, and the similarity below which a result is not a hit.
    """

    def __init__(self, store: IndexStore, emitter: Any, *, service: str = "support-bot", prompt_version: str = "1",
                 llm: FakeLlm | None = None, k: int = 4, min_score: float = 0.15, remember: int = 10_000) -> None:
        if prompt_version not in PROMPTS:
            raise ValueError(f"prompt_version {prompt_version!r} is not one of {sorted(PROMPTS)}")
        self.store, self.prompt_version, self.k, self.min_score = store, prompt_version, k, min_score
        self.llm = llm or FakeLlm()
        self.rag = RagRecorder(emitter, service=service)
        self.tracker = LlmTracker(emitter, service=service, model=self.llm.model)
        self._answered: collections.OrderedDict[str, str] = collections.OrderedDict()  # request_id -> prompt version
        self._remember = remember

    def ask(self, question: str, tenant: str = "default") -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        query = self.store.embedder.embed(question)
        build = self.store.live()
        results = self.rag.search(
            build.search, query, k=self.k, index=self.store.name, index_version=build.version, request_id=request_id,
            scores=lambda found: [s for _, s in found if s >= self.min_score],
        )
        passages = [doc["text"] for doc, score in results if score >= self.min_score]
        prompt = PROMPTS[self.prompt_version].format(passages="\n".join(passages), question=question)
        started = time.perf_counter()
        completion = self.llm.complete(prompt, passages, question)
        categories = safety_categories(completion.text)
        self.tracker.record(
            {"model": completion.model,
             "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}},
            tenant=tenant, prompt_version=self.prompt_version, latency_ms=(time.perf_counter() - started) * 1000.0,
            request_id=request_id, flagged=bool(categories), safety_categories=categories, refusal=not passages,
            eval_score=groundedness(completion.text, passages),
            embedding=self.store.embedder.embed(completion.text),
        )
        _log.info("answered %s with index %s v%s, prompt v%s, %d passages", request_id, self.store.name,
                  build.version, self.prompt_version, len(passages))
        self._answered[request_id] = self.prompt_version
        while len(self._answered) > self._remember:
            self._answered.popitem(last=False)
        return {"request_id": request_id, "answer": completion.text, "index_version": build.version,
                "sources": [doc["id"] for doc, score in results if score >= self.min_score]}

    def feedback(self, request_id: str, score: float) -> bool:
        """Rate an answer this service gave (KeyError for one it does not remember)."""
        prompt_version = self._answered[request_id]
        return self.rag.feedback(request_id, prompt_version=prompt_version, score=score)


class Question(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    tenant: str = Field(default="default", min_length=1, max_length=128)


class Rating(BaseModel):
    request_id: str = Field(min_length=1, max_length=64)
    score: float = Field(ge=-1, le=1)


def default_store(root: Path, name: str = "support-docs") -> IndexStore:
    """The store from ``EXAMPLE_MLFLOW_URI`` (MLflow aliases) or a local JSON file; built once with :data:`CORPUS`."""
    uri = os.environ.get("EXAMPLE_MLFLOW_URI", "")
    aliases = MlflowAliases(uri) if uri else LocalAliases(root / "aliases.json")
    store = IndexStore(root, name, aliases)
    if aliases.get(name, store.alias) is None:
        store.build(CORPUS)
    return store


def create_app(emitter: Emitter | None = None, pipeline: RagPipeline | None = None) -> FastAPI:
    emitter = emitter or Emitter.from_env(client_id="example-rag")
    if pipeline is None:
        store = default_store(Path(os.environ.get("EXAMPLE_INDEX_DIR", "/tmp/watchkeeper-rag")))
        pipeline = RagPipeline(store, emitter, service=os.environ.get("WATCHKEEPER_SERVICE", "support-bot"),
                               prompt_version=os.environ.get("EXAMPLE_PROMPT_VERSION", "1"))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await emitter.start()
        try:
            yield
        finally:
            await emitter.close(timeout_s=10)

    app = FastAPI(title="example RAG service", lifespan=lifespan)

    @app.post("/ask")
    def ask(body: Question) -> dict[str, Any]:
        return pipeline.ask(body.question, body.tenant)

    @app.post("/feedback")
    def feedback(body: Rating) -> dict[str, bool]:
        try:
            return {"accepted": pipeline.feedback(body.request_id, body.score)}
        except KeyError:
            raise HTTPException(404, "unknown request_id") from None

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "index_version": pipeline.store.live().version}

    return app
