"""What the ASGI and WSGI middlewares share: one request seen, one ``inference`` event built.

:class:`InferenceRecorder` holds the event's identity (service, model, version: from
arguments or ``WATCHKEEPER_SERVICE``, ``WATCHKEEPER_MODEL``, ``WATCHKEEPER_MODEL_VERSION``),
which paths are predictions, what counts as an error, and the service's hook; the
framework adapters (:mod:`.asgi`, :mod:`.wsgi`) only time requests and capture bodies.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .events import inference_event

__all__ = ["Exchange", "Hook", "InferenceRecorder"]

_log = logging.getLogger("watchkeeper_emit")
Hook = Callable[["Exchange"], "Mapping[str, Any] | None"]
SKIP_PATHS = ("/healthz", "/readyz", "/livez", "/metrics", "/docs", "/redoc", "/openapi.json", "/favicon.ico")


@dataclass
class Exchange:
    """What the hook sees of one request: the ASGI scope (or WSGI environ), status and bodies."""

    scope: MutableMapping[str, Any]
    status: int = 0
    request_body: bytes = b""
    response_body: bytes = b""
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return str(self.scope.get("path", self.scope.get("PATH_INFO", "")))

    @property
    def state(self) -> Mapping[str, Any]:
        """``request.state`` of Starlette/FastAPI (``scope["state"]``); ``environ["watchkeeper.state"]`` in WSGI."""
        return self.scope.get("state") or self.scope.get("watchkeeper.state") or {}

    def json_request(self) -> Any:
        return _json_or_none(self.request_body)

    def json_response(self) -> Any:
        return _json_or_none(self.response_body)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class InferenceRecorder:
    """Builds and emits the ``inference`` event of each instrumented request.

    Parameters
    ----------
    emitter
        Anything with ``emit(event) -> bool`` (an :class:`~watchkeeper_emit.Emitter`).
    service, model, model_version
        The event's identity; default ``WATCHKEEPER_SERVICE``, ``WATCHKEEPER_MODEL``,
        ``WATCHKEEPER_MODEL_VERSION``.
    hook
        ``hook(exchange) -> {"features": ..., "prediction": ..., "labels": ...,
        "model_version": ..., "skip": bool}`` or None.
    paths
        Only these path prefixes are instrumented (default: every path but ``skip_paths``).
    skip_paths
        Health, metrics and docs endpoints are not predictions.
    is_error
        ``is_error(status_code) -> bool``; default: 5xx.
    labels
        Static labels on every event (region, cluster...).
    max_body_bytes
        Bodies kept for the hook, per direction; larger ones are cut (``exchange.truncated``).
    """

    def __init__(
        self,
        emitter: Any,
        *,
        service: str | None = None,
        model: str | None = None,
        model_version: str | int | None = None,
        hook: Hook | None = None,
        paths: Iterable[str] | None = None,
        skip_paths: Iterable[str] = SKIP_PATHS,
        is_error: Callable[[int], bool] = lambda status: status >= 500,
        labels: Mapping[str, str] | None = None,
        max_body_bytes: int = 64 * 1024,
    ) -> None:
        self.emitter = emitter
        self.service = service or os.environ.get("WATCHKEEPER_SERVICE", "")
        self.model = model or os.environ.get("WATCHKEEPER_MODEL", "")
        self.model_version = str(model_version or os.environ.get("WATCHKEEPER_MODEL_VERSION", ""))
        missing = [n for n in ("service", "model", "model_version") if not getattr(self, n)]
        if missing:
            raise ValueError(f"{type(self).__name__} needs {', '.join(missing)} (or WATCHKEEPER_{missing[0].upper()})")
        self.hook = hook
        self.paths = tuple(paths) if paths is not None else None
        self.skip_paths = tuple(skip_paths)
        self.is_error = is_error
        self.labels = dict(labels or {})
        self.max_body_bytes = max_body_bytes
        self.hook_errors = 0

    def instrumented(self, path: str) -> bool:
        if self.paths is not None:
            return path.startswith(self.paths)
        return not path.startswith(self.skip_paths)

    def keep_body(self, exchange: Exchange, attr: str, chunk: bytes) -> None:
        """Append ``chunk`` to ``exchange.<attr>`` up to ``max_body_bytes``."""
        held = getattr(exchange, attr)
        room = self.max_body_bytes - len(held)
        if len(chunk) > room:
            exchange.truncated = True
            chunk = chunk[: max(0, room)]
        if chunk:
            setattr(exchange, attr, held + chunk)

    def record(self, exchange: Exchange, started: float, wall: float, *, failed: bool) -> None:
        """Emit the event of a finished request (``started``: perf_counter at arrival; ``wall``: its epoch time)."""
        latency_ms = (time.perf_counter() - started) * 1000.0
        extra: Mapping[str, Any] = {}
        if self.hook is not None:
            try:
                extra = self.hook(exchange) or {}
            except Exception as exc:  # noqa: BLE001 - a hook bug must not fail the request
                self.hook_errors += 1
                _log.warning("watchkeeper-emit: inference hook failed on %s: %r", exchange.path, exc)
                extra = {}
        if extra.get("skip"):
            return
        try:
            event = inference_event(
                self.service,
                self.model,
                extra.get("model_version") or self.model_version,
                latency_ms=latency_ms,
                status="error" if failed or self.is_error(exchange.status) else "ok",
                features=_clean_features(extra.get("features")),
                prediction=_clean_prediction(extra.get("prediction")),
                labels={**self.labels, **{str(k): str(v) for k, v in (extra.get("labels") or {}).items()}},
                ts=wall,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            self.hook_errors += 1
            _log.warning("watchkeeper-emit: unusable hook result on %s: %r", exchange.path, exc)
            return
        self.emitter.emit(event)


def _clean_features(features: Any) -> dict[str, float | str] | None:
    """Keep the scalar features the contract allows (numbers and strings); drop the rest."""
    if not isinstance(features, Mapping):
        return None
    clean: dict[str, float | str] = {}
    for name, value in features.items():
        if len(clean) >= 512:  # the contract's bound; more would dead-letter the event
            break
        if isinstance(value, bool):
            clean[str(name)] = float(value)
        elif isinstance(value, (int, float)):
            if value == value and value not in (float("inf"), float("-inf")):
                clean[str(name)] = float(value)
        elif isinstance(value, str):
            clean[str(name)] = value
    return clean or None


def _clean_prediction(prediction: Any) -> float | str | None:
    if isinstance(prediction, bool):
        return float(prediction)
    if isinstance(prediction, (int, float)):
        return float(prediction) if prediction == prediction and abs(prediction) != float("inf") else None
    if isinstance(prediction, str):
        return prediction
    return None
