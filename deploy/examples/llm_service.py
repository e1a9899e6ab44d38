"""An example LLM service: every completion becomes an ``llm`` event with its token usage.

    WATCHKEEPER_KAFKA_BOOTSTRAP=localhost:9092 OPENAI_BASE_URL=http://vllm:8000/v1 OPENAI_API_KEY=... \
        uvicorn llm_service:create_app --factory --port 8001

``POST /chat`` with ``{"message": "..."}`` and an ``X-Tenant`` header. Any
OpenAI-compatible server works (OpenAI, vLLM, Ollama, LiteLLM): the client is the
``openai`` SDK and :class:`LlmTracker` reads ``usage`` from its response. The tenant
comes from the request and the prompt version from configuration
(``EXAMPLE_PROMPT_VERSION``): the two dimensions token budgets and prompt rollbacks act on.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header
from openai import AsyncOpenAI
from pydantic import BaseModel

from watchkeeper_emit import Emitter, LlmTracker

SYSTEM_PROMPT = "You are a concise support assistant."


class Chat(BaseModel):
    message: str


def create_app(emitter: Emitter | None = None, client: AsyncOpenAI | None = None) -> FastAPI:
    emitter = emitter or Emitter.from_env(client_id="example-llm")
    client = client or AsyncOpenAI()  # OPENAI_BASE_URL / OPENAI_API_KEY from the environment
    model = os.environ.get("EXAMPLE_LLM_MODEL", "gpt-4o-mini")
    prompt_version = os.environ.get("EXAMPLE_PROMPT_VERSION", "1")
    tracker = LlmTracker(emitter, service=os.environ.get("WATCHKEEPER_SERVICE", "assistant"), model=model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await emitter.start()
        try:
            yield
        finally:
            await emitter.close(timeout_s=10)

    app = FastAPI(title="example LLM service", lifespan=lifespan)

    @app.post("/chat")
    async def chat(body: Chat, x_tenant: str = Header(default="default")) -> dict[str, Any]:
        reply = await tracker.acall(
            client.chat.completions.create,
            tenant=x_tenant,
            prompt_version=prompt_version,
            model=model,
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": body.message}],
        )
        return {"reply": reply.choices[0].message.content}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
