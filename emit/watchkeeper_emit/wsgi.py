"""WSGI middleware (Flask, Django, any WSGI app): the same ``inference`` events as the ASGI one.

Pair it with a :class:`~watchkeeper_emit.BackgroundEmitter` (a WSGI server has no event
loop for the emitter to drain on)::

    emitter = BackgroundEmitter(Emitter.from_env()).start()
    app.wsgi_app = WsgiInferenceMiddleware(app.wsgi_app, emitter, hook=hook)   # Flask

The hook sees the same :class:`~watchkeeper_emit.Exchange`; the app can leave values
for it in ``environ["watchkeeper.state"]`` (a dict), read back as ``exchange.state``.
The request body is captured for the hook only when it fits ``max_body_bytes`` (it is
read once and handed to the app unchanged); the response body is captured as the
server iterates it, and the event is emitted when the response is closed, so latency
includes streaming the body out.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .recorder import Exchange, InferenceRecorder

__all__ = ["WsgiInferenceMiddleware"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WsgiInferenceMiddleware(InferenceRecorder):
    """Emit an ``inference`` event for every HTTP request to the wrapped WSGI app.

    ``app`` is the WSGI application; every other argument is :class:`InferenceRecorder`'s.
    """

    def __init__(self, app: WsgiApp, emitter: Any, **settings: Any) -> None:
        super().__init__(emitter, **settings)
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.instrumented(str(environ.get("PATH_INFO", ""))):
            return self.app(environ, start_response)
        started = time.perf_counter()
        wall = time.time()
        exchange = Exchange(environ)
        if self.hook is not None:
            self._capture_request(environ, exchange)

        def start_response_wrapper(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            try:
                exchange.status = int(status.split(" ", 1)[0])
            except ValueError:
                exchange.status = 0
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, start_response_wrapper)
        except BaseException:
            exchange.status = exchange.status or 500
            self.record(exchange, started, wall, failed=True)
            raise
        return _Recorded(self, body, exchange, started, wall)

    def _capture_request(self, environ: dict[str, Any], exchange: Exchange) -> None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length <= 0:
            return
        if length > self.max_body_bytes:
            exchange.truncated = True  # too large to hold: the app reads it from the server as usual
            return
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        exchange.request_body = body


class _Recorded:
    """The app's response iterable, recording the event when the server closes it."""

    def __init__(self, recorder: WsgiInferenceMiddleware, body: Iterable[bytes], exchange: Exchange,
                 started: float, wall: float) -> None:
        self._recorder = recorder
        self._body = body
        self._exchange = exchange
        self._started = started
        self._wall = wall
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        keep = self._recorder.hook is not None
        try:
            for chunk in self._body:
                if keep:
                    self._recorder.keep_body(self._exchange, "response_body", chunk)
                yield chunk
        except BaseException:
            self._finish(failed=True)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(failed=False)  # a failure while iterating was recorded there

    def _finish(self, *, failed: bool) -> None:
        if not self._done:
            self._done = True
            self._recorder.record(self._exchange, self._started, self._wall, failed=failed)
