"""The agent under test: a real ``AgentApp`` in this process, or ``watchkeeper run`` as a child.

Both log every processed (topic, partition, offset) to a processed log, which is how
"no event lost" is measured, and both read the same topics and group. The child can be
SIGKILLed (no shutdown, no final commit) and started again, as a crashed pod would be.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, KafkaConfig, Topics
from agent.errors import WatchkeeperError
from agent.model import Alert, AlertState
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.app import AgentApp
from agent.runtime.selfmetrics import SelfMetrics
from simulations.expectations import Page

__all__ = ["InProcessAgent", "RecordingSink", "SubprocessAgent", "read_positions"]

_REPO = Path(__file__).resolve().parents[2]


def read_positions(path: Path) -> set[tuple[str, int, int]]:
    """Positions in a processed log; a line torn by SIGKILL keeps its complete tail."""
    out: set[tuple[str, int, int]] = set()
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.rsplit("\t", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.add((parts[0], int(parts[1]), int(parts[2])))
    return out


class RecordingSink:
    """The pager when no Alertmanager is used: keeps each delivery as a page."""

    def __init__(self) -> None:
        self.pages: list[Page] = []

    async def deliver(self, alerts: Sequence[Alert], *, stop: Any = None) -> bool:
        now = time.time()
        for a in alerts:
            status = "firing" if a.state is AlertState.FIRING else "resolved"
            self.pages.append(Page(now, status, a.name, dict(a.labels)))
        return True


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


_CONFIG_ENV = {  # scenario ``agent.env`` settings an in-process agent understands
    "WATCHKEEPER_ACTIONS_MODE": ("actions_mode", str),
    "WATCHKEEPER_ACTIONS_MAX_PER_HOUR": ("actions_max_per_hour", int),
    "WATCHKEEPER_RESEND_INTERVAL_S": ("resend_interval_s", float),
    "WATCHKEEPER_CHECKPOINTS": ("checkpoints", _flag),
    "WATCHKEEPER_CHECKPOINT_INTERVAL": ("checkpoint_interval_s", float),
}


def _config_overrides(config: AgentConfig, **values: Any) -> AgentConfig:
    """Set the fields this version's AgentConfig has (remediation settings are recent)."""
    known = {f.name for f in dataclasses.fields(AgentConfig)}
    return dataclasses.replace(config, **{k: v for k, v in values.items() if k in known and v is not None})


class InProcessAgent:
    """A real AgentApp on this event loop (fast to start; cannot be SIGKILLed)."""

    def __init__(
        self, bootstrap: str, topics: Topics, audit_topic: str, group: str, rules: Sequence[str], *,
        prices: str | None, processed_log: Path, alertmanager_urls: Sequence[str], partitions: int,
        resend_interval_s: float, report_dir: Path, kubeconfig: str | None = None, mlflow_uri: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.metrics = SelfMetrics()
        self.sink: Any
        if alertmanager_urls:
            self.sink = AlertmanagerClient(list(alertmanager_urls), metrics=self.metrics, resend_interval_s=resend_interval_s)
        else:
            self.sink = RecordingSink()
        self.config = AgentConfig(
            kafka=KafkaConfig(bootstrap, group_id=group, batch_timeout_ms=50, session_timeout_ms=2000, heartbeat_interval_ms=200),
            rules=tuple(rules),
            topics=topics,
            http_addr="127.0.0.1:0",
            create_topics=partitions,
            idle_advance_s=600.0,  # event time moves with the simulated events only: exact
            # scenarios replay minutes of traffic in seconds, live: event time is trusted as sent
            max_event_skew_s=0.0,
            resend_interval_s=resend_interval_s,
            processed_log=str(processed_log),
            prices_file=prices,
            report_dir=str(report_dir),
        )
        extra = {field: cast(v) for k, v in (settings or {}).items() if k in _CONFIG_ENV for field, cast in [_CONFIG_ENV[k]]}
        unknown = sorted(set(settings or {}) - set(_CONFIG_ENV))
        if unknown:
            raise WatchkeeperError(f"agent.env {unknown} needs agent.process: subprocess (in-process knows {sorted(_CONFIG_ENV)})")
        self.config = _config_overrides(
            self.config, kubeconfig=kubeconfig, mlflow_tracking_uri=mlflow_uri, state_topic=f"{topics.alerts}.state", **extra
        )
        self.app: AgentApp | None = None

    @property
    def pages(self) -> list[Page] | None:
        return self.sink.pages if isinstance(self.sink, RecordingSink) else None

    async def start(self) -> None:
        self.app = AgentApp(self.config, self.sink, metrics=self.metrics, serve_http=False)
        await self.app.start()

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None
        if isinstance(self.sink, AlertmanagerClient):
            await self.sink.aclose()

    async def kill(self) -> None:
        raise RuntimeError("an in-process agent cannot be SIGKILLed; use agent.process: subprocess")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SubprocessAgent:
    """``python -m agent.cli run`` with the scenario's settings in its environment; stopped by PID."""

    def __init__(
        self, bootstrap: str, topics: Topics, audit_topic: str, group: str, rules: Sequence[str], *,
        prices: str | None, processed_log: Path, alertmanager_urls: Sequence[str], partitions: int,
        resend_interval_s: float, report_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        env.update(
            WATCHKEEPER_KAFKA_BOOTSTRAP=bootstrap,
            WATCHKEEPER_RULES=",".join(rules),
            WATCHKEEPER_GROUP_ID=group,
            WATCHKEEPER_TOPIC_INFERENCE=topics.inference,
            WATCHKEEPER_TOPIC_LLM=topics.llm,
            WATCHKEEPER_TOPIC_GPU=topics.gpu,
            WATCHKEEPER_TOPIC_RETRIEVAL=topics.retrieval,
            WATCHKEEPER_TOPIC_FEEDBACK=topics.feedback,
            WATCHKEEPER_TOPIC_DLQ=topics.dlq,
            WATCHKEEPER_TOPIC_ALERTS=topics.alerts,
            WATCHKEEPER_TOPIC_AUDIT=audit_topic,
            WATCHKEEPER_STATE_TOPIC=f"{topics.alerts}.state",
            WATCHKEEPER_CREATE_TOPICS=str(partitions),
            WATCHKEEPER_KAFKA_SESSION_TIMEOUT_MS="1000",  # a restarted agent's join waits on the dead one's session
            WATCHKEEPER_KAFKA_HEARTBEAT_INTERVAL_MS="200",
            WATCHKEEPER_PROCESSED_LOG=str(processed_log),
            WATCHKEEPER_ALERTMANAGER_URL=",".join(alertmanager_urls),
            WATCHKEEPER_RESEND_INTERVAL_S=str(resend_interval_s),
            WATCHKEEPER_REPORT_DIR=str(report_dir),
            WATCHKEEPER_LOG_LEVEL="warning",
            WATCHKEEPER_MAX_EVENT_SKEW_S="0",  # scenarios replay minutes of traffic in seconds, live
            NO_PROXY="127.0.0.1,localhost",
        )
        if prices:
            env["WATCHKEEPER_PRICES"] = prices
        if getattr(topics, "retrain", None):
            env["WATCHKEEPER_TOPIC_RETRAIN"] = str(topics.retrain)
        env.update(extra_env or {})
        self.env = env
        self.log_path = log_path
        self.pages: list[Page] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self) -> None:
        self.env["WATCHKEEPER_HTTP_ADDR"] = f"127.0.0.1:{_free_port()}"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run"], env=self.env, cwd=_REPO,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit, as the OOM killer does it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 5)
