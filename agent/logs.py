"""One log format for the whole process: JSON lines on stderr.

Watchkeeper's own code logs through structlog; the libraries underneath (aiokafka,
faststream, uvicorn) log through the standard library. Both go through the same
processors and renderer, so a log shipper sees one shape of line, with ``timestamp``
(ISO 8601, UTC), ``level``, ``event`` and the bound fields. Library chatter stays at
WARNING unless the agent runs at ``debug``, because aiokafka's INFO lines (rebalances,
coordinator changes) would otherwise drown the agent's own.

Tracebacks never show local variables, in either renderer: a frame's locals hold
whatever the code was handling (a bearer token, a Kafka password, a record's bytes),
and logs travel further than secrets should. structlog's console renderer would
otherwise print them through rich (``show_locals``) or better-exceptions.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

__all__ = ["configure_logging", "get_logger"]

_LEVELS = ("debug", "info", "warning", "error", "critical")


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the root handler we install, so a second call replaces it, never doubles it."""


class _NamedLogger(structlog.PrintLogger):
    """Writes to the current ``sys.stderr`` and has a ``name``, as stdlib loggers do."""

    def __init__(self, name: str = "") -> None:
        super().__init__(sys.stderr)
        self.name = name


def configure_logging(level: str = "info", json: bool = True) -> None:
    """Configure structlog and stdlib logging; safe to call more than once.

    ``json=False`` renders coloured key=value lines for a developer's terminal.
    """
    name = level.lower()
    if name not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json:
        # format_exc_info renders with the traceback module: frames and source lines, no locals
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(name),
        logger_factory=_NamedLogger,
        # Not cached: loggers made at import time must pick up a later reconfiguration.
        cache_logger_on_first_use=False,
    )
    handler = _Handler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # uvicorn's own logging config (installed by anything else in the process that ran
    # uvicorn with its defaults) gives its loggers handlers of their own that bypass this
    # renderer; the agent's HTTP server never installs it, and here it is undone too
    for server_logger in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server_log = logging.getLogger(server_logger)
        server_log.handlers.clear()
        server_log.propagate = True
    root.setLevel(logging.DEBUG if name == "debug" else max(logging.WARNING, _stdlib(name)))


def _stdlib(name: str) -> int:
    return logging.getLevelNamesMapping()[name.upper()]


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger that carries ``logger=name`` in every line it writes."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
