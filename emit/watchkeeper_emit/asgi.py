"""Pure ASGI middleware: one ``inference`` event per HTTP request an inference service serves.

It wraps any ASGI app (FastAPI, Starlette, Quart...) without importing a framework.
Latency runs from the request's arrival to the last byte of the response; ``status``
is ``error`` for a 5xx response or an exception (configurable). Model and version
come from configuration; features and prediction from a small hook the service
supplies, which sees the request and response bodies (kept only when a hook is set,
up to ``max_body_bytes``) and the request's ``state`` (``request.state`` in Starlette)::

    def hook(exchange):
        body = exchange.json_request() or {}
        return {"features": body.get("features"), "prediction": (exchange.json_response() or {}).get("score")}

    app.add_middleware(InferenceMiddleware, emitter=emitter, service="checkout",
                       model="fraud-detector", model_version="7", hook=hook)

A hook that raises, or returns something unusable, is counted (``hook_errors``) and the
event is still emitted without features: instrumentation never fails a request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .recorder import Exchange, InferenceRecorder

__all__ = ["Exchange", "InferenceMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class InferenceMiddleware(InferenceRecorder):
    """Emit an ``inference`` event for every HTTP request to the wrapped ASGI app.

    ``app`` is the ASGI application; every other argument is :class:`InferenceRecorder`'s.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], emitter: Any, **settings: Any) -> None:
        super().__init__(emitter, **settings)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not self.instrumented(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        wall = time.time()
        exchange = Exchange(scope)
        keep = self.hook is not None
        done = False

        async def receive_wrapper() -> Message:
            message = await receive()
            if message.get("type") == "http.request":
                self.keep_body(exchange, "request_body", message.get("body", b""))
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal done
            kind = message.get("type")
            if kind == "http.response.start":
                exchange.status = int(message.get("status", 0))
            elif kind == "http.response.body" and keep:
                self.keep_body(exchange, "response_body", message.get("body", b""))
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False) and not done:
                done = True
                self.record(exchange, started, wall, failed=False)

        try:
            await self.app(scope, receive_wrapper if keep else receive, send_wrapper)
        except BaseException:
            if not done:
                done = True
                exchange.status = exchange.status or 500
                self.record(exchange, started, wall, failed=True)
            raise
