"""Session-wide real servers for the integration tests (see tests/testbed.py).

A server fixture skips, with the reason, when its binary is not installed; ``.ci/setup``
installs them. A test that stops or kills a session server must start it again
(in a ``finally``), because the next tests share it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from agent.errors import WatchkeeperError
from agent.runtime.embedded_broker import EmbeddedBroker, find_tansu
from tests.testbed import ALERTMANAGER, AMTOOL, Alertmanager, SlackRecorder


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """Undo ``configure_logging`` by commands run in-process (a CLI test at level error
    would otherwise filter the warnings later tests capture with ``capture_logs``)."""
    import logging

    import structlog

    saved = structlog.get_config()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    structlog.configure(**saved)
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A Tansu broker (memory storage) on a free port; ``broker.bootstrap`` for clients."""
    try:
        find_tansu()
    except WatchkeeperError as error:
        pytest.skip(f"no Kafka broker for integration tests: {error}")
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu")) as started:
        yield started


@pytest.fixture(scope="session")
def slack_recorder() -> Iterator[SlackRecorder]:
    """Records what Alertmanager posts to Slack; match on a unique alertname, or clear()."""
    with SlackRecorder() as recorder:
        yield recorder


@pytest.fixture(scope="session")
def alertmanager(
    slack_recorder: SlackRecorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Alertmanager]:
    """A real Alertmanager whose only receiver is Slack at ``slack_recorder``."""
    for binary in (ALERTMANAGER, AMTOOL):
        if not binary.is_file():
            pytest.skip(
                f"{binary} is not installed (Debian package prometheus-alertmanager; run .ci/setup)"
            )
    with Alertmanager(slack_recorder.url, workdir=tmp_path_factory.mktemp("alertmanager")) as am:
        yield am


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_topic("events")`` -> ``"events.test_name.1a2b3c4d"``: no test reads another's."""
    test = re.sub(r"[^a-zA-Z0-9_-]+", "_", request.node.name)[:60]

    def make(prefix: str = "topic") -> str:
        return f"{prefix}.{test}.{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Kubernetes 1.20 control plane (etcd, kube-apiserver, kube-controller-manager).

    ``kube.api_client()`` is an admin client; see tests/k8s_testbed.py for identities.
    Skips with the reason when the binaries are not built (``.ci/k8s-testbed``).
    """
    from tests.k8s_testbed import KubeCluster, missing_binaries

    reason = missing_binaries()
    if reason:
        pytest.skip(f"no Kubernetes control plane for integration tests: {reason}")
    with KubeCluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real MLflow tracking server (sqlite backend); ``mlflow_server.url`` is the tracking URI.

    ``stop()``/``start()`` keep the port and the database (see tests/mlflow_testbed.py).
    Skips with the reason when full mlflow (a test dependency) is not installed.
    """
    from tests.mlflow_testbed import MlflowServer, mlflow_available

    reason = mlflow_available()
    if reason:
        pytest.skip(f"no MLflow server for integration tests: {reason}")
    with MlflowServer(workdir=tmp_path_factory.mktemp("mlflow")) as server:
        yield server
