"""Wrap LLM calls: token usage from OpenAI-compatible responses becomes ``llm`` events.

Works with the ``openai`` SDK's objects (chat completions, completions, the Responses
API) and with plain dicts from any OpenAI-compatible server (vLLM, TGI, LiteLLM,
Ollama), sync or async, without importing ``openai``::

    llm = LlmTracker(emitter, service="assistant")
    reply = await llm.acall(client.chat.completions.create, tenant="acme", prompt_version="12",
                            model="gpt-4o", messages=[...])

The tenant and prompt version come from the caller (they are the dimensions budgets
and rollbacks act on). A call that raises is emitted with ``status: error`` and the
exception propagates unchanged.

>>> usage_from_response({"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
(3, 4, 'm')
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from .events import llm_event

__all__ = ["LlmTracker", "usage_from_response"]

T = TypeVar("T")
CostFn = Callable[[str, int, int], "float | None"]


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def usage_from_response(response: Any) -> tuple[int, int, str | None]:
    """``(prompt_tokens, completion_tokens, model)`` of an OpenAI-compatible response.

    Chat/completions report ``prompt_tokens``/``completion_tokens``; the Responses API
    ``input_tokens``/``output_tokens``. Missing usage reads as zero tokens (a streamed
    response without ``stream_options={"include_usage": True}`` has none).
    """
    usage = _get(response, "usage")
    prompt = _get(usage, "prompt_tokens") if usage is not None else None
    completion = _get(usage, "completion_tokens") if usage is not None else None
    if prompt is None and usage is not None:
        prompt = _get(usage, "input_tokens")
    if completion is None and usage is not None:
        completion = _get(usage, "output_tokens")
    model = _get(response, "model")
    return int(prompt or 0), int(completion or 0), (str(model) if model else None)


class LlmTracker:
    """Times LLM calls and emits one ``llm`` event per call.

    Parameters
    ----------
    emitter
        Anything with ``emit(event) -> bool``.
    service
        The calling service (the Kafka key); default ``WATCHKEEPER_SERVICE``.
    model
        Used when the response names none (or the call failed before one existed).
    cost
        ``cost(model, prompt_tokens, completion_tokens) -> usd | None``; the agent can
        also price tokens itself from its price table, so this is optional.
    labels
        Static labels on every event.
    """

    def __init__(
        self,
        emitter: Any,
        *,
        service: str | None = None,
        model: str | None = None,
        cost: CostFn | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.emitter = emitter
        self.service = service or os.environ.get("WATCHKEEPER_SERVICE", "")
        if not self.service:
            raise ValueError("LlmTracker needs service (or WATCHKEEPER_SERVICE)")
        self.model = model
        self.cost = cost
        self.labels = dict(labels or {})

    def record(
        self,
        response: Any,
        *,
        tenant: str,
        prompt_version: str | int,
        latency_ms: float,
        status: str = "ok",
        model: str | None = None,
        labels: Mapping[str, str] | None = None,
        request_id: str | None = None,
        flagged: bool | None = None,
        safety_categories: Sequence[str] = (),
        refusal: bool | None = None,
        eval_score: float | None = None,
        embedding: Sequence[float] | None = None,
    ) -> bool:
        """Emit the event of one finished call (for callers that time calls themselves).

        The optional response fields (``request_id``, the safety verdict, ``refusal``,
        ``eval_score``, ``embedding``) are those of :func:`~watchkeeper_emit.events.llm_event`.
        """
        prompt, completion, response_model = usage_from_response(response) if response is not None else (0, 0, None)
        name = response_model or model or self.model or "unknown"
        cost = self.cost(name, prompt, completion) if self.cost is not None and status == "ok" else None
        event = llm_event(
            self.service,
            name,
            prompt_version=prompt_version,
            tenant=tenant,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=latency_ms,
            status=status,
            cost_usd=cost,
            request_id=request_id,
            flagged=flagged,
            safety_categories=safety_categories,
            refusal=refusal,
            eval_score=eval_score,
            embedding=embedding,
            labels={**self.labels, **(labels or {})},
        )
        return self.emitter.emit(event)

    def call(self, fn: Callable[..., T], *args: Any, tenant: str, prompt_version: str | int, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` timed and recorded; ``model=`` in kwargs names the model."""
        started = time.perf_counter()
        try:
            response = fn(*args, **kwargs)
        except BaseException:
            self._finish(None, started, tenant, prompt_version, kwargs, failed=True)
            raise
        return self._finish(response, started, tenant, prompt_version, kwargs)

    async def acall(
        self, fn: Callable[..., Awaitable[T]], *args: Any, tenant: str, prompt_version: str | int, **kwargs: Any
    ) -> T:
        """The async form of :meth:`call` (``AsyncOpenAI``, httpx clients...)."""
        started = time.perf_counter()
        try:
            response = await fn(*args, **kwargs)
        except BaseException:
            self._finish(None, started, tenant, prompt_version, kwargs, failed=True)
            raise
        return self._finish(response, started, tenant, prompt_version, kwargs)

    def _finish(self, response: T | None, started: float, tenant: str, prompt_version: str | int,
                kwargs: Mapping[str, Any], failed: bool = False) -> T:
        """Record one call (``failed``: it raised, so ``status: error`` and no usage)."""
        self.record(response, tenant=tenant, prompt_version=prompt_version,
                    latency_ms=(time.perf_counter() - started) * 1000.0,
                    status="error" if failed else "ok", model=kwargs.get("model"))
        return response  # type: ignore[return-value]
