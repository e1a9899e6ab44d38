"""An HTTP reverse proxy that breaks on cue: the agent talks to it instead of a real server.

While healthy it forwards every request to ``upstream`` unchanged; from :meth:`FaultProxy.fail`
to :meth:`FaultProxy.heal` it answers ``status`` itself (503: the server is down; 409 or
500: a Kubernetes API in trouble) without reaching the upstream, and counts what it
refused. So a scenario can take MLflow "down" in the middle of a rollback with the real
server and its state untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import httpx

__all__ = ["FaultProxy"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class FaultProxy:
    """127.0.0.1 proxy to ``upstream`` (an http(s) base URL); ``url`` is where clients go.

    ``verify``: a CA bundle path (or True/False) for an https upstream.
    """

    def __init__(self, upstream: str, *, verify: str | bool = True) -> None:
        self.upstream = upstream.rstrip("/")
        self.status: int | None = None  # None: healthy
        self.script: list[int] = []  # statuses still to answer, one per request, before passing again
        self.methods: frozenset[str] | None = None  # None: every method fails
        self.budget: int | None = None  # None: every matching request fails until heal()
        self.forwarded = 0
        self.refused = 0
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30.0, trust_env=False, verify=tls)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, status: int | list[int] = 503, *, methods: list[str] | None = None, requests: int | None = None) -> None:
        """Answer ``status`` from now on: to ``methods`` only, and to the next ``requests`` only, when given.

        A list of statuses is answered in order, one per matching request (``[409, 500]``:
        a conflict, then a server error), and then requests pass again.
        """
        self.script = list(status) if isinstance(status, list) else []
        self.status = self.script[0] if self.script else status  # type: ignore[assignment]
        self.methods = frozenset(m.upper() for m in methods) if methods else None
        self.budget = len(self.script) if self.script else requests

    def heal(self) -> None:
        self.status = None

    def _refuses(self, method: str) -> bool:
        if self.status is None or (self.methods is not None and method.upper() not in self.methods):
            return False
        if self.budget is not None:
            if self.budget <= 0:
                return False
            self.budget -= 1
        return True

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self._refuses(scope["method"]):
            self.refused += 1
            status = self.script.pop(0) if self.script else (self.status or 503)
            payload = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected by the simulation"}'
            await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": payload})
            return
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode().lower() not in _HOP]
        path = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
        try:
            response = await self._client.request(scope["method"], path, headers=headers, content=body)
        except httpx.HTTPError:
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b"upstream unreachable"})
            return
        self.forwarded += 1
        out = [(k.encode(), v.encode()) for k, v in response.headers.items() if k.lower() not in _HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": response.content})

    async def start(self) -> FaultProxy:
        import uvicorn

        config = uvicorn.Config(self._app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", interface="asgi3")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task  # raises why it could not start
            await asyncio.sleep(0.01)  # until uvicorn has bound the port
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self._client.aclose()
