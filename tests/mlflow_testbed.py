"""A real MLflow tracking server (sqlite backend) for the rollback integration tests.

Started once per session by the ``mlflow_server`` fixture in ``tests/conftest.py``.
It binds 127.0.0.1 on a free port, keeps its sqlite database and artifacts under one
work folder, and is stopped by its PID (SIGTERM, which also stops its uvicorn worker;
SIGKILL to the process group after a timeout). :meth:`MlflowServer.stop` and
:meth:`MlflowServer.start` reuse the port and the database, so a test can take the
registry down in the middle of a rollback and bring it back with its state intact.

``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` and ``--workers 1`` matter: without them
the server spawns ~39 processes and ~1.2 GB (see ``../shared/TESTBED.md``).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.runtime.server_process import http_ok, start_server, stop_process
from tests.testbed import _free_port

__all__ = ["MLFLOW", "MlflowServer", "mlflow_available", "model_with_versions"]

MLFLOW = Path(sys.prefix) / "bin" / "mlflow"
"""The full ``mlflow`` (a test dependency); the agent itself needs only mlflow-skinny."""

_HOST = "127.0.0.1"


def mlflow_available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    if not MLFLOW.is_file():
        return f"{MLFLOW} is not installed (full mlflow is a test dependency)"
    try:
        importlib.metadata.version("mlflow")  # the full distribution, not only mlflow-skinny
    except importlib.metadata.PackageNotFoundError:
        return "full mlflow is not installed (mlflow-skinny alone has no tracking server)"
    return None


class MlflowServer:
    """``mlflow server`` with a sqlite backend under ``workdir``; ``url`` is its tracking URI.

    Parameters
    ----------
    workdir:
        Holds ``mlflow.db``, ``artifacts/`` and ``mlflow.log``; a temporary folder if unset.
    port:
        Fixed port; a free one if unset. Kept across :meth:`stop` / :meth:`start`.
    start_timeout_s:
        How long to wait for ``/health`` (4-6 s on an idle machine; generous for a busy one).
    """

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        binary: Path = MLFLOW,
        start_timeout_s: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="wk-mlflow-"))
        self.port = port or _free_port()
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.db_path = self.workdir / "mlflow.db"
        self.artifacts = self.workdir / "artifacts"
        self.log_path = self.workdir / "mlflow.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> MlflowServer:
        """Start (or keep) the server and wait until ``/health`` answers."""
        if self.pid is not None:
            return self
        if self.healthy():
            raise RuntimeError(f"cannot start mlflow on {self.url}: another server is there")
        self.artifacts.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self._proc = start_server(
            [
                str(self.binary),
                "server",
                "--host",
                _HOST,
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.db_path.resolve()}",
                "--artifacts-destination",
                str(self.artifacts.resolve()),
            ],
            self.log_path,
            self.healthy,
            name="mlflow server",
            url=self.url,
            timeout_s=self.start_timeout_s,
            poll_s=0.1,
            what="healthy",
            env=env,
            kill_group=True,
        )
        return self

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/health", timeout_s=2)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM by PID (it stops its uvicorn worker), SIGKILL to its group after ``timeout_s``.

        Returns once the port refuses connections, so a caller can count on "down".
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_process(proc, timeout_s, kill_group=True)
        deadline = time.monotonic() + timeout_s
        while self.healthy() and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> MlflowServer:
        """Stop and start on the same port and database."""
        self.stop()
        return self.start()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def model_with_versions(url: str, versions: int = 3, alias_on: int = 3, alias: str = "champion") -> str:
    """A new registered model (unique name) with ``versions`` versions and ``alias`` on ``alias_on``.

    No real model is logged: a version only needs a ``source``, which is all the registry
    keeps (and ~10 ms instead of seconds). The alias is set the way CI does, without any
    Watchkeeper history.
    """
    import uuid

    from mlflow import MlflowClient

    name = f"fraud-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    client.create_registered_model(name)
    for i in range(1, versions + 1):
        client.create_model_version(name, source=f"s3://models/{name}/{i}")
    client.set_registered_model_alias(name, alias, str(alias_on))
    return name
