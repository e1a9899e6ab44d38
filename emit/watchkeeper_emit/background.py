"""An emitter for synchronous services (Flask, Django, gunicorn sync workers, batch jobs).

The :class:`~watchkeeper_emit.Emitter` drains on an asyncio loop; a service without one
gets a private loop on a daemon thread. ``emit()`` stays what it is (non-blocking,
thread-safe), so request threads only append to the buffer::

    emitter = BackgroundEmitter(Emitter.from_env()).start()
    emitter.emit(inference_event(...))            # from any thread
    ...
    emitter.close()                               # at shutdown (also registered with atexit)
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from typing import Any

from .emitter import Emitter

__all__ = ["BackgroundEmitter"]


class BackgroundEmitter:
    """Runs ``emitter`` on its own event loop in a daemon thread.

    Parameters
    ----------
    emitter
        The emitter to run (not started yet).
    close_at_exit
        Flush and close at interpreter exit if :meth:`close` was not called.
    """

    def __init__(self, emitter: Emitter, *, close_at_exit: bool = True) -> None:
        self.emitter = emitter
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"watchkeeper-emit:{emitter.client_id}", daemon=True)
        self._started = threading.Event()
        self._closed = False
        self._close_at_exit = close_at_exit

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.emitter.start())
        self._started.set()
        self._loop.run_forever()

    def start(self, timeout_s: float = 10.0) -> "BackgroundEmitter":
        """Start the thread; returns once the drain task runs (not once Kafka answers)."""
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError("the watchkeeper-emit thread did not start")
        if self._close_at_exit:
            atexit.register(self.close)
        return self

    def emit(self, event: Any) -> bool:
        """See :meth:`Emitter.emit`: never blocks, False when dropped."""
        return self.emitter.emit(event)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything emitted so far is acknowledged or failed; False on timeout."""
        future = asyncio.run_coroutine_threadsafe(self.emitter.flush(timeout_s), self._loop)
        return bool(future.result(timeout_s + 5))

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush within ``timeout_s``, stop the producer, the loop and the thread (idempotent)."""
        if self._closed or not self._thread.is_alive():
            self._closed = True
            return
        self._closed = True
        future = asyncio.run_coroutine_threadsafe(self.emitter.close(timeout_s), self._loop)
        try:
            future.result(timeout_s + 5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._loop.close()
        if self._close_at_exit:
            atexit.unregister(self.close)

    def __enter__(self) -> "BackgroundEmitter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:  # counters: sent, errors, dropped, dropped_by_reason, buffered
        if name == "emitter":
            raise AttributeError(name)
        return getattr(self.emitter, name)
