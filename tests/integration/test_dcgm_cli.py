"""``watchkeeper dcgm-poll`` as a process: the real Prometheus in, the real broker out.

Prometheus scrapes the dcgm-exporter-shaped endpoint of tests/integration/test_dcgm.py
(one whole GPU, one MIG instance). The command runs as a subprocess, as cron or a
Deployment would run it, with its settings in WATCHKEEPER_* variables; what it
published is read back from the topic. An unreachable Prometheus must never crash the
poller (``--once`` reports it with exit status 1), and SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.model import EVENT_ADAPTER
from agent.runtime.dcgm import DcgmPoller
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.topics import create_topics
from tests.integration.harness import free_port
from tests.integration.test_dcgm import MIB, Prometheus, prometheus  # noqa: F401 (the fixture)
from tests.kafka_tools import consume

pytestmark = pytest.mark.integration

_COMMAND = [sys.executable, "-m", "agent.cli", "dcgm-poll"]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def scraped_prometheus(prometheus: Prometheus) -> Prometheus:  # noqa: F811 (the imported fixture)
    """test_dcgm.py's Prometheus, once it holds the exporter's first scrape (5-6 s after start)."""
    poller = DcgmPoller(prometheus.url, match='job="dcgm-exporter"', timeout_s=5.0)
    deadline = time.monotonic() + 30.0
    while len(asyncio.run(poller.poll_once())) < 2:
        assert time.monotonic() < deadline, "Prometheus did not scrape the exporter within 30 s"
        time.sleep(0.2)  # poll interval, bounded by the deadline
    return prometheus


def _env(bootstrap: str, prometheus_url: str, topic: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        {
            "WATCHKEEPER_KAFKA_BOOTSTRAP": bootstrap,
            "WATCHKEEPER_PROMETHEUS_URL": prometheus_url,
            "WATCHKEEPER_TOPIC_GPU": topic,
            "WATCHKEEPER_DCGM_MATCH": 'job="dcgm-exporter"',
            "WATCHKEEPER_DCGM_TIMEOUT_S": "5",
            "WATCHKEEPER_DCGM_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update(more)
    return env


def _logs(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines, f"no JSON log lines on stderr:\n{stderr}"
    return lines


async def _topic(bootstrap: str, unique_topic: Any) -> str:
    topic = unique_topic("gpu")
    await create_topics(bootstrap, [topic], partitions=2)
    return topic


async def test_once_publishes_one_gpu_event_per_gpu_keyed_by_node(
    broker: EmbeddedBroker, scraped_prometheus: Prometheus, unique_topic: Any
) -> None:
    topic = await _topic(broker.bootstrap, unique_topic)
    started = time.time()
    done = await asyncio.to_thread(
        subprocess.run, [*_COMMAND, "--once"], env=_env(broker.bootstrap, scraped_prometheus.url, topic),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = [line for line in _logs(done.stderr) if line["event"] == "dcgm poll published"]
    assert len(summary) == 1 and summary[0]["events"] == 2 and summary[0]["skipped"] == 0, done.stderr

    records = await consume(broker.bootstrap, topic, n=2, timeout_s=15)
    assert len(records) == 2, records
    assert {r.key for r in records} == {b"gpu-node-7"}
    assert len({r.partition for r in records}) == 1  # one node, one partition: its events stay in order
    events = {e["gpu"]: e for e in (json.loads(r.value) for r in records)}
    assert sorted(events) == ["0", "1/3"]
    for event in events.values():
        EVENT_ADAPTER.validate_python(event)
        assert event["type"] == "gpu" and event["node"] == "gpu-node-7"
        assert started - 60 < event["ts"] <= time.time() + 1
    whole, mig = events["0"], events["1/3"]
    assert (whole["util_pct"], whole["temp_c"], whole["power_w"], whole["xid_errors"]) == (93.0, 67.0, 612.5, 0)
    assert (whole["mem_used_bytes"], whole["mem_total_bytes"]) == (61_440 * MIB, 81_920 * MIB)
    assert whole["pod"] == "llama-ft-0" and whole["labels"]["source"] == "dcgm"
    assert mig["util_pct"] == 37.5 and mig["xid_errors"] == 48 and mig["labels"]["mig_profile"] == "3g.20gb"


async def test_once_with_prometheus_unreachable_exits_1_with_a_log_line(broker: EmbeddedBroker, unique_topic: Any) -> None:
    topic = unique_topic("gpu")
    down = f"http://127.0.0.1:{free_port()}"
    done = await asyncio.to_thread(
        subprocess.run, [*_COMMAND, "--once"], env=_env(broker.bootstrap, down, topic),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    failed = [line for line in _logs(done.stderr) if line["event"] == "dcgm poll failed"]
    assert failed and failed[0]["level"] == "error" and failed[0]["prometheus"] == down
    assert "Traceback" not in done.stderr


def _run_until(command: list[str], env: dict[str, str], condition: Any, timeout_s: float) -> tuple[int, str]:
    """Start the poller, wait for ``condition(stderr so far)``, SIGTERM it; (exit status, stderr)."""
    log = Path(env["_WK_LOG"])
    with log.open("w") as err:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not condition(log.read_text()):
            assert proc.poll() is None, f"the poller exited ({proc.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, f"timed out after {timeout_s} s:\n{log.read_text()}"
            time.sleep(0.1)  # poll interval, bounded by the deadline
        os.kill(proc.pid, signal.SIGTERM)
        return proc.wait(timeout=30), log.read_text()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _get(url: str) -> tuple[int, str]:
    try:
        with _DIRECT.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _scrape_after(n: int, event: str, env: dict[str, str], into: dict[str, tuple[int, str]]) -> Any:
    """A ``_run_until`` condition: true once the log holds ``n`` lines of ``event``, after
    reading the poller's /metrics and /readyz into ``into`` (while it still runs)."""
    base = f"http://{env['WATCHKEEPER_DCGM_HTTP_ADDR']}"

    def condition(stderr: str) -> bool:
        if stderr.count(f'"{event}"') < n:
            return False
        into.update(metrics=_get(base + "/metrics"), ready=_get(base + "/readyz"))
        return True

    return condition


async def test_polls_every_interval_serves_metrics_and_stops_on_sigterm(
    broker: EmbeddedBroker, scraped_prometheus: Prometheus, unique_topic: Any, tmp_path: Path
) -> None:
    topic = await _topic(broker.bootstrap, unique_topic)
    env = _env(broker.bootstrap, scraped_prometheus.url, topic, WATCHKEEPER_DCGM_INTERVAL_S="0.5", _WK_LOG=str(tmp_path / "err.log"))
    scraped: dict[str, tuple[int, str]] = {}
    condition = _scrape_after(3, "dcgm poll published", env, scraped)
    status, stderr = await asyncio.to_thread(_run_until, _COMMAND, env, condition, 60.0)
    assert status == 0, stderr
    assert scraped["ready"][0] == 200, scraped
    code, metrics = scraped["metrics"]
    assert code == 200
    assert 'watchkeeper_dcgm_polls_total{outcome="query_failed"} 0.0' in metrics
    polls = float(next(ln for ln in metrics.splitlines() if ln.startswith('watchkeeper_dcgm_polls_total{outcome="ok"}')).split()[-1])
    events = float(next(ln for ln in metrics.splitlines() if ln.startswith("watchkeeper_dcgm_events_published_total")).split()[-1])
    assert polls >= 3 and events == 2 * polls, metrics
    assert "watchkeeper_dcgm_last_success_timestamp_seconds" in metrics
    stopped = [line for line in _logs(stderr) if line["event"] == "dcgm poller stopped"]
    assert len(stopped) == 1 and stopped[0]["polls"] >= 3 and stopped[0]["publish_failures"] == 0, stderr
    records = await consume(broker.bootstrap, topic, n=6, timeout_s=15)
    assert len(records) >= 6 and all(r.key == b"gpu-node-7" for r in records)


async def test_unreachable_prometheus_is_retried_every_interval_never_fatal(
    broker: EmbeddedBroker, unique_topic: Any, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    env = _env(broker.bootstrap, down, unique_topic("gpu"), WATCHKEEPER_DCGM_INTERVAL_S="0.2", _WK_LOG=str(tmp_path / "err.log"))
    scraped: dict[str, tuple[int, str]] = {}
    condition = _scrape_after(3, "dcgm poll failed", env, scraped)
    status, stderr = await asyncio.to_thread(_run_until, _COMMAND, env, condition, 60.0)
    assert scraped["ready"][0] == 503 and "no poll published yet" in scraped["ready"][1], scraped
    assert 'watchkeeper_dcgm_polls_total{outcome="ok"} 0.0' in scraped["metrics"][1]
    assert status == 0, stderr
    assert "Traceback" not in stderr
    stopped = [line for line in _logs(stderr) if line["event"] == "dcgm poller stopped"]
    assert len(stopped) == 1 and stopped[0]["query_failures"] >= 3 and stopped[0]["events"] == 0, stderr


# --- settings: a mistake is one line on stderr and exit status 1, before anything connects ---------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0"], "--interval must be > 0 seconds"),
        (["--prometheus-url", "prometheus:9090"], "'prometheus:9090' is not an http(s) URL"),
        (["--node-labels", " , "], "--node-labels names no label"),
        (["--prometheus-token-file", "/nonexistent/token"], "No such file or directory"),
        (["--log-level", "chatty"], "log level 'chatty' is not one of"),
    ],
)
def test_bad_settings_fail_with_one_line(args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    base = ["dcgm-poll", "--prometheus-url", "http://127.0.0.1:9", "--kafka-bootstrap", "127.0.0.1:9", "--once"]
    result = CliRunner().invoke(app, [*base, *args], env={"WATCHKEEPER_LOG_JSON": "true"})
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_the_token_file_becomes_a_bearer_header_and_tls_checks_can_be_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import agent.dcgm_cli
    from agent.cli import app

    seen: list[Any] = []

    async def capture(settings: Any) -> bool:
        seen.append(settings)
        return True

    monkeypatch.setattr(agent.dcgm_cli, "_poll_once", capture)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    args = ["dcgm-poll", "--prometheus-url", "https://prometheus.example:9090", "--kafka-bootstrap", "k:9092", "--once",
            "--prometheus-token-file", str(token), "--insecure-skip-verify", "--node-labels", "Hostname, node",
            "--match", 'cluster="eu-1"']  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    poller = agent.dcgm_cli._poller(seen[0])
    assert poller._client.headers == {"Authorization": "Bearer s3cret"}
    assert poller._client._session.verify is False
    assert poller.node_labels == ("Hostname", "node") and 'cluster="eu-1"' in poller.query


# --- the whole way: DCGM series in Prometheus -> dcgm-poll -> Kafka -> the agent -> a Slack page ----


async def test_a_saturated_gpu_in_prometheus_pages_slack(
    broker: EmbeddedBroker,
    scraped_prometheus: Prometheus,
    alertmanager: Any,
    slack_recorder: Any,
    unique_topic: Any,
    tmp_path: Path,
) -> None:
    from agent.runtime.alertmanager import AlertmanagerClient
    from agent.runtime.selfmetrics import SelfMetrics
    from tests.integration.harness import agent_config, running_agent, slack_about, unique_name

    alertname = unique_name("WkDcgmSaturated")
    rules = tmp_path / "gpu.yaml"
    rules.write_text(
        f"""\
groups:
  - name: dcgm-it
    rules:
      - alert: {alertname}
        source: gpu
        match: '{{labels.source="dcgm"}}'
        detector: {{kind: gpu_pressure, field: util_pct, signal: saturation, saturation_pct: 90, sustain_s: 1s}}
        labels: {{severity: page}}
        annotations:
          summary: 'GPU {{{{ $labels.gpu }}}} on {{{{ $labels.node }}}} at {{{{ $value | printf "%.0f" }}}}% for {{{{ $evidence.held_s | humanizeDuration }}}}'
""",
        encoding="utf-8",
    )
    config = agent_config(broker.bootstrap, unique_topic, rules)
    metrics = SelfMetrics()
    env = _env(broker.bootstrap, scraped_prometheus.url, config.topics.gpu, WATCHKEEPER_DCGM_INTERVAL_S="1",
               _WK_LOG=str(tmp_path / "err.log"))  # fmt: skip
    async with (
        AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
        running_agent(config, client, metrics=metrics),
    ):
        page: dict[str, Any] = {}

        def paged(stderr: str) -> bool:
            try:
                page.update(slack_recorder.wait_for(slack_about(alertname, "firing"), 0.2))
            except AssertionError:
                return False
            return True

        status, stderr = await asyncio.to_thread(_run_until, _COMMAND, env, paged, 60.0)
    assert status == 0, stderr
    text = page["attachments"][0]["text"]
    # GPU 0 runs at 93 % (DCGM_FI_DEV_GPU_UTIL); the MIG instance at 37.5 % stays quiet
    assert f"labels: alertname={alertname} gpu=0 node=gpu-node-7 severity=page\n" in text, text
    assert "summary=GPU 0 on gpu-node-7 at 93% for " in text, text
    assert not any(slack_about(alertname, "firing")(m) and "gpu=1/3" in m["attachments"][0]["text"] for m in slack_recorder.messages)
