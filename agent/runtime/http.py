"""The agent's own HTTP endpoint: /metrics, /healthz, /readyz, and room for more.

There is no web framework: a handful of routes do not need one, and a plain ASGI
callable keeps the dependencies and the start-up time small. uvicorn serves it
*inside* the agent's asyncio loop, not in a thread, so an answer from /healthz
proves that the loop which consumes events is not blocked.

Routes are a table from path to :class:`Route` (a handler, ``async (Request) ->
Response``, and who may call it). Callers add their own with ``routes=``, the way the
approval API does; a path ending in ``/`` matches its whole subtree, as in Go's
``http.ServeMux``, so ``/api/v1/approvals/`` also receives ``/api/v1/approvals/<id>``.
The built-in routes answer GET and HEAD only; added handlers see every method and decide.

Every route needs a bearer token unless the table marks it public, and only the
built-in probes are: /metrics, /healthz and /readyz. Authentication happens here,
before any handler runs, so a route added later is protected without doing anything.
The token is checked as raw bytes (a header in any encoding is a 401, never a 500),
the handler receives the caller's :class:`~agent.runtime.approvers.Principal` in
``request.principal`` and never the ``Authorization`` header itself. Without an
authenticator (no token configured) the protected routes answer 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from agent.errors import ConfigError
from agent.logs import get_logger

from .approvers import Principal, Role

__all__ = ["Authenticator", "Handler", "HttpApp", "HttpServer", "Readiness", "Request", "Response", "Route"]

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
    principal: Principal | None = None  # set by HttpApp on authenticated routes


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler answers; ``str`` bodies are sent as UTF-8."""

    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """A handler and who may call it: any token holder by default, ``role`` to ask more.

    ``public=True`` skips authentication; only the built-in probes use it, and a new
    public route should be as harmless as they are (nothing a producer or an
    operator wrote, nothing that acts).
    """

    handler: Handler
    role: Role = Role.READ
    public: bool = False


class Authenticator(Protocol):
    """Turns the raw ``Authorization`` header into a caller (``approvers.Approvers``)."""

    @property
    def enabled(self) -> bool: ...

    def authenticate(self, authorization: bytes) -> Principal | None: ...


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
        routes: Mapping[str, Handler | Route] | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self._registry = registry
        self._readiness = readiness
        self._authenticator = authenticator
        builtin: dict[str, Route] = {
            "/metrics": Route(self._metrics, public=True),
            "/healthz": Route(self._healthz, public=True),
            "/readyz": Route(self._readyz, public=True),
        }
        for path in routes or {}:
            if not path.startswith("/"):
                raise ValueError(f"route {path!r} must start with '/'")
            if path in builtin:
                raise ValueError(f"route {path!r} is built in and cannot be replaced")
        self._builtin = frozenset(builtin)
        added = {p: r if isinstance(r, Route) else Route(r) for p, r in (routes or {}).items()}
        self._routes: dict[str, Route] = {**builtin, **added}

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
        route = self._routes[path]
        if not route.public:
            principal = self._authenticate(request)
            if isinstance(principal, Response):
                return principal
            if not principal.may(route.role):
                return Response(403, f"{principal.name!r} may not {route.role.value} here\n")
            headers = {k: v for k, v in request.headers.items() if k != "authorization"}
            request = replace(request, headers=headers, principal=principal)
        try:
            return await route.handler(request)
        except Exception:
            _log.exception("http handler failed", method=request.method, path=request.path)
            return Response(500, "internal error; see the agent's log\n")

    def _authenticate(self, request: Request) -> Principal | Response:
        """The caller, or the 401/403 to send; never raises whatever the header holds."""
        if self._authenticator is None or not self._authenticator.enabled:
            return Response(
                403,
                "this route needs a token and none is configured: set WATCHKEEPER_APPROVERS_FILE "
                "(or answer approvals with `watchkeeper actions approve|reject ID`)\n",
            )
        # Request headers were decoded as latin-1, which maps every byte to one
        # character: encoding back gives the exact bytes that were sent.
        raw = request.headers.get("authorization", "").encode("latin-1")
        try:
            principal = self._authenticator.authenticate(raw)
        except Exception:  # noqa: BLE001 - an authenticator's bug fails closed, logged
            _log.exception("authenticator failed; the request is refused")
            principal = None
        if principal is None:
            _log.info("http request refused: no valid bearer token", method=request.method, path=request.path[:200])
            return Response(
                401,
                "a valid bearer token is required (Authorization: Bearer <token>)\n",
                headers={"www-authenticate": 'Bearer realm="watchkeeper"'},
            )
        return principal

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
    extra = {k.lower(): v for k, v in response.headers.items()}
    # no answer of the agent is meant to be sniffed into HTML (a label in /actions' JSON)
    extra.setdefault("x-content-type-options", "nosniff")
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
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
        Extra routes, path to a :class:`Route` or a bare handler ``async (Request) ->
        Response`` (which then needs any valid token).
    authenticator
        Checks the bearer token of every non-public route (``approvers.Approvers``);
        ``None`` answers 403 on all of them.
    """

    def __init__(
        self,
        addr: str,
        registry: CollectorRegistry,
        readiness: Readiness,
        *,
        routes: Mapping[str, Handler | Route] | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.host, self._requested_port = _parse_addr(addr)
        self.addr = addr
        self.app = HttpApp(registry, readiness, routes, authenticator)
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
