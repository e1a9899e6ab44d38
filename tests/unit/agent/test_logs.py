"""Tracebacks in the log never show local variables, in either renderer.

A frame's locals hold what the code was handling (a bearer token, a password, a
record's bytes); structlog's console renderer prints them through rich by default.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import redirect_stderr

import pytest

from agent.logs import configure_logging, get_logger

SECRET = "tok-3f9c1e7a5b2d4c6e8f0a"


def check_token(header: str) -> None:
    expected = SECRET  # noqa: F841 - the local a traceback must not print
    raise TypeError("comparing strings with non-ASCII characters is not supported")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    configure_logging("info", json=True)


def _log_failure(json_logs: bool, *, stdlib: bool) -> str:
    err = io.StringIO()
    with redirect_stderr(err):
        configure_logging("info", json=json_logs)
        try:
            check_token("Bearer " + SECRET[::-1])
        except TypeError:
            if stdlib:
                logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
            else:
                get_logger("agent.test").exception("http handler failed", path="/actions")
    return err.getvalue()


@pytest.mark.parametrize("stdlib", [False, True], ids=["structlog", "stdlib"])
@pytest.mark.parametrize("json_logs", [False, True], ids=["console", "json"])
def test_a_traceback_shows_no_locals(json_logs: bool, stdlib: bool) -> None:
    out = _log_failure(json_logs, stdlib=stdlib)
    assert "check_token" in out and "TypeError" in out, out  # the traceback is there...
    assert SECRET not in out and SECRET[::-1] not in out, out  # ...its locals are not
    assert "expected =" not in out and "header =" not in out


def test_uvicorns_own_logging_config_cannot_bypass_the_renderer() -> None:
    """Anything in the process that ran uvicorn with its defaults (an example app, a test
    server) gives uvicorn's loggers handlers of their own; the agent's configuration must
    still be the one that renders their tracebacks."""
    import logging.config

    import uvicorn.config

    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    try:
        out = _log_failure(json_logs=True, stdlib=True)
        assert "check_token" in out and SECRET not in out, out
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
