"""The DCGM poller against a real Prometheus scraping a DCGM-exporter-shaped endpoint.

A tiny HTTP server on 127.0.0.1 serves what dcgm-exporter serves (text format, its
labels) for one whole GPU and one MIG instance; the real ``/usr/bin/prometheus``
scrapes it every second; ``DcgmPoller.poll_once`` must turn what Prometheus returns
into ``gpu`` events with the right values, units and labels. Prometheus' first scrape
comes 5-6 s after it starts (../shared/TESTBED.md), so the test polls with a deadline.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.model import EVENT_ADAPTER
from agent.runtime.dcgm import DcgmPoller
from agent.runtime.server_process import http_ok, start_server, stop_process

pytestmark = pytest.mark.integration

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
_HOST = "127.0.0.1"
MIB = 1 << 20

_WHOLE = (
    'gpu="0",UUID="GPU-5c1e9f2a-0000-4000-8000-000000000000",device="nvidia0",'
    'modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-7",DCGM_FI_DRIVER_VERSION="550.54.15",'
    'container="trainer",namespace="ml",pod="llama-ft-0"'
)
_PARENT = 'gpu="1",UUID="GPU-77aa0000-0000-4000-8000-000000000001",device="nvidia1",modelName="NVIDIA A100-SXM4-40GB",Hostname="gpu-node-7"'
_MIG = _PARENT + ',GPU_I_PROFILE="3g.20gb",GPU_I_ID="3",container="server",namespace="serving",pod="bert-infer-1"'
EXPOSITION = f"""# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{{{_WHOLE}}} 93
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{{{_WHOLE}}} 61440
DCGM_FI_DEV_FB_USED{{{_MIG}}} 5120
# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{{{_WHOLE}}} 20480
DCGM_FI_DEV_FB_FREE{{{_MIG}}} 14848
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{{{_WHOLE}}} 67
DCGM_FI_DEV_GPU_TEMP{{{_PARENT}}} 58
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{{{_WHOLE}}} 612.5
DCGM_FI_DEV_POWER_USAGE{{{_PARENT}}} 188.25
# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.
# TYPE DCGM_FI_DEV_XID_ERRORS gauge
DCGM_FI_DEV_XID_ERRORS{{{_WHOLE}}} 0
DCGM_FI_DEV_XID_ERRORS{{{_PARENT}}} 48
# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{_MIG}}} 0.375
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


class FakeDcgmExporter:
    """Serves ``EXPOSITION`` at /metrics, as dcgm-exporter does on :9400."""

    def __init__(self, body: str) -> None:
        payload = body.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((_HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def target(self) -> str:
        return f"{_HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> FakeDcgmExporter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


class Prometheus:
    """The real Prometheus on a free loopback port, scraping one target every second."""

    def __init__(self, target: str, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: dcgm-exporter\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> Prometheus:
        if PROMTOOL.is_file():
            check = subprocess.run([str(PROMTOOL), "check", "config", str(self.config)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
        self._proc = start_server(
            [
                str(PROMETHEUS),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={_HOST}:{self.port}",
            ],
            self.log,
            lambda: http_ok(f"{self.url}/-/ready"),
            name="prometheus",
            url=self.url,
            timeout_s=timeout_s,
            poll_s=0.02,
        )
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping a fake dcgm-exporter; stopped by its PID."""
    if not PROMETHEUS.is_file():
        pytest.skip(f"{PROMETHEUS} is not installed (Debian package prometheus; run .ci/setup)")
    with FakeDcgmExporter(EXPOSITION) as exporter:
        server = Prometheus(exporter.target, tmp_path_factory.mktemp("prometheus")).start()
        try:
            yield server
        finally:
            server.stop()


async def _events_when_scraped(poller: DcgmPoller, expected: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Poll until Prometheus holds the first scrape (5-6 s after start), within a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = await poller.poll_once()
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.2)  # poll interval, bounded by the deadline


async def test_poll_once_turns_dcgm_series_into_gpu_events(prometheus: Prometheus) -> None:
    poller = DcgmPoller(prometheus.url, match='job="dcgm-exporter"', timeout_s=5.0)
    started = time.time()
    events = await _events_when_scraped(poller, expected=2)
    assert poller.last_skipped == []
    by_gpu = {e["gpu"]: e for e in events}
    assert sorted(by_gpu) == ["0", "1/3"], events
    for event in events:
        EVENT_ADAPTER.validate_python(event)
        assert event["node"] == "gpu-node-7"
        assert started - 60 < event["ts"] <= time.time() + 1

    whole = by_gpu["0"]
    assert whole["pod"] == "llama-ft-0"
    assert (whole["util_pct"], whole["temp_c"], whole["power_w"], whole["xid_errors"]) == (93.0, 67.0, 612.5, 0)
    assert whole["mem_used_bytes"] == 61_440 * MIB
    assert whole["mem_total_bytes"] == 81_920 * MIB
    assert whole["labels"] == {
        "source": "dcgm",
        "uuid": "GPU-5c1e9f2a-0000-4000-8000-000000000000",
        "model_name": "NVIDIA H100 80GB HBM3",
        "device": "nvidia0",
        "namespace": "ml",
        "container": "trainer",
    }

    mig = by_gpu["1/3"]
    assert mig["util_pct"] == 37.5  # DCGM_FI_PROF_GR_ENGINE_ACTIVE 0.375, GPU_UTIL absent under MIG
    assert mig["mem_used_bytes"] == 5_120 * MIB and mig["mem_total_bytes"] == 19_968 * MIB
    assert (mig["temp_c"], mig["power_w"], mig["xid_errors"]) == (58.0, 188.25, 48)  # from the parent GPU
    assert mig["pod"] == "bert-infer-1"
    assert mig["labels"]["mig_profile"] == "3g.20gb" and mig["labels"]["mig_instance"] == "3"


async def test_a_matcher_that_selects_nothing_gives_no_events(prometheus: Prometheus) -> None:
    poller = DcgmPoller(prometheus.url, match='job="no-such-job"', timeout_s=5.0)
    assert await poller.poll_once() == []
    assert poller.last_skipped == []
