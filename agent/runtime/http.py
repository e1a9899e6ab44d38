"""The agent's own HTTP endpoint: /metrics, /healthz, /readyz, and room for more.

There is no web framework: a handful of routes do not need one, and a plain ASGI
callable keeps the dependencies and the start-up time small. uvicorn serves it
*inside* the agent's asyncio loop, not in a thread, so an answer from /healthz
proves that the loop which consumes events is not blocked.

Routes are a table from path to handler (``async (Request) -> Response``). Callers
add their own with ``routes=``, the way the approval API will; a path ending in
``/`` matches its whole subtree, as in Go's ``http.ServeMux``, so
``/api/v1/approvals/`` also receives ``/api/v1/approvals/<id>``. The built-in
routes answer GET and HEAD only; added handlers see every method and decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from agent.errors import ConfigError
from agent.logs import get_logger

__all__ = ["Handler", "HttpApp", "HttpServer", "Readiness", "Request", "Response"]

_MAX_BODY_BYTES = 1 << 20
_BUILTIN_METHODS = ("GET", "HEAD")

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, body read in full; header names are lower case."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler answers; ``str`` bodies are sent as UTF-8."""

    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]
# (ready, reason): the reason is shown with the 503 when not ready.
Readiness = Callable[[], tuple[bool, str]]
_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HttpApp:
    """The ASGI callable: finds the handler for a path and writes its response."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        routes: Mapping[str, Handler] | None = None,
    ) -> None:
        self._registry = registry
        self._readiness = readiness
        builtin: dict[str, Handler] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
        }
        for path in routes or {}:
            if not path.startswith("/"):
                raise ValueError(f"route {path!r} must start with '/'")
            if path in builtin:
                raise ValueError(f"route {path!r} is built in and cannot be replaced")
        self._builtin = frozenset(builtin)
        self._routes: dict[str, Handler] = {**builtin, **(routes or {})}

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and websockets are not served
        method, path = scope["method"], scope["path"]
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > _MAX_BODY_BYTES:
                await _write(send, Response(413, "request body too large\n"), head=False)
                return
            if not message.get("more_body", False):
                break
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        request = Request(
            method, path, scope["query_string"].decode("latin-1"), headers, bytes(body)
        )
        await _write(send, await self._answer(request), head=method == "HEAD")

    async def _answer(self, request: Request) -> Response:
        path = self._match(request.path)
        if path is None:
            return Response(404, f"no route for {request.path}\n")
        if path in self._builtin and request.method not in _BUILTIN_METHODS:
            allow = ", ".join(_BUILTIN_METHODS)
            return Response(405, "method not allowed\n", headers={"allow": allow})
        try:
            return await self._routes[path](request)
        except Exception:
            _log.exception("http handler failed", method=request.method, path=request.path)
            return Response(500, "internal error; see the agent's log\n")

    def _match(self, path: str) -> str | None:
        if path in self._routes:
            return path
        subtrees = [p for p in self._routes if p.endswith("/") and path.startswith(p)]
        return max(subtrees, key=len) if subtrees else None

    async def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(body=encoder(self._registry), content_type=content_type)

    async def _healthz(self, request: Request) -> Response:
        return Response(body="ok\n")

    async def _readyz(self, request: Request) -> Response:
        try:
            ready, reason = self._readiness()
        except Exception as exc:
            _log.exception("readiness check failed")
            ready, reason = False, f"readiness check failed: {exc}"
        if ready:
            return Response(body="ready\n")
        return Response(503, f"{reason or 'not ready'}\n")


async def _write(send: _Send, response: Response, *, head: bool) -> None:
    body = response.body.encode() if isinstance(response.body, str) else response.body
    headers = [
        (b"content-type", response.content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("latin-1")),
    ]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _parse_addr(addr: str) -> tuple[str, int]:
    """Split ``host:port``; an empty host means every interface, IPv6 needs brackets."""
    example = "e.g. '0.0.0.0:9108', ':9108' or '[::1]:9108'"
    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"HTTP address {addr!r} must be host:port with a port 0-65535, {example}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"HTTP address {addr!r}: put an IPv6 host in brackets, {example}")
    return host, int(port_text)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves signals to the agent and says when it is listening.

    uvicorn's own signal capture would take SIGTERM away from the agent, stop
    serving /healthz first and re-raise the signal only after it exited, which
    skips the agent's orderly shutdown (not ready, drain, flush, then stop).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


class HttpServer:
    """Serves :class:`HttpApp` with uvicorn as a task of the running loop.

    Parameters
    ----------
    addr
        ``host:port`` to listen on. An empty host (``:9108``) means every interface;
        port 0 picks a free port, which :attr:`port` reports after :meth:`start`.
    registry
        The registry /metrics exposes (``SelfMetrics.registry``).
    readiness
        Called on every /readyz: ``(True, "")`` answers 200, ``(False, reason)``
        answers 503 with the reason.
    routes
        Extra routes, path to ``async (Request) -> Response``.
    """

    def __init__(
        self,
        addr: str,
        registry: CollectorRegistry,
        readiness: Readiness,
        *,
        routes: Mapping[str, Handler] | None = None,
    ) -> None:
        self.host, self._requested_port = _parse_addr(addr)
        self.addr = addr
        self.app = HttpApp(registry, readiness, routes)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0); only after :meth:`start`."""
        if self._server is None:
            raise RuntimeError("HttpServer is not running; await start() first")
        port: int = self._server.servers[0].sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen, and return once the socket accepts connections.

        Raises :class:`ConfigError` when the address cannot be bound (in use,
        no permission, unknown host).
        """
        if self._task is not None:
            raise RuntimeError("HttpServer is already running")
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self._requested_port,
            log_level="warning",
            log_config=None,  # keep agent.logs' configuration, do not install uvicorn's
            access_log=False,
            lifespan="off",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(self._serve(server), name=f"http {self.addr}")
        listening = asyncio.create_task(server.listening.wait())
        try:
            await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            server.should_exit = True
            task.cancel()
            raise
        finally:
            listening.cancel()
        if task.done():
            task.result()  # raises the ConfigError from _serve
            raise ConfigError(f"the HTTP server on {self.addr!r} stopped before it listened")
        self._server, self._task = server, task

    async def stop(self) -> None:
        """Stop accepting, let open requests finish, and return; a no-op if stopped."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        task, self._server, self._task = self._task, None, None
        await task

    async def _serve(self, server: _EmbeddedServer) -> None:
        try:
            await server.serve()
        except SystemExit as exc:
            # uvicorn calls sys.exit() when it cannot bind; a SystemExit escaping a
            # task would end the agent's whole event loop, so turn it into an error.
            cause = exc.__context__
            raise ConfigError(
                f"cannot listen on {self.addr!r}: {cause or 'uvicorn failed to start'}; "
                "choose another address or stop whatever holds this one"
            ) from cause
