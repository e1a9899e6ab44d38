"""The pager end of a simulation: a real Alertmanager whose Slack receiver posts to a recorder.

The recorder turns each Slack message back into :class:`~simulations.expectations.Page`
records (one per alert in the notification), stamped with the wall time it arrived, so
"the page arrives late, not never" and "no duplicate page" are checked where a person
would see them. Alertmanager is the Debian package's binary; it binds 127.0.0.1 on a
free port and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from agent.errors import WatchkeeperError
from agent.runtime.server_process import http_ok, start_server, stop_process
from simulations.expectations import Page

__all__ = ["ALERTMANAGER_BINARY", "AlertmanagerProcess", "SlackRecorder", "alertmanager_argv"]

ALERTMANAGER_BINARY = Path(os.environ.get("WATCHKEEPER_ALERTMANAGER_BINARY", "/usr/bin/prometheus-alertmanager"))
_HOST = "127.0.0.1"
# one line per alert: status|alertname|k=v,k=v,
_TEXT = "{{ range .Alerts }}{{ .Status }}|{{ .Labels.alertname }}|{{ range .Labels.SortedPairs }}{{ .Name }}={{ .Value }},{{ end }}\n{{ end }}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


def alertmanager_argv(binary: Path, config_path: Path, storage: Path, port: int) -> list[str]:
    """One Alertmanager on 127.0.0.1:``port``, clustering off (a single test or simulation instance)."""
    return [
        str(binary), f"--config.file={config_path}", f"--storage.path={storage}",
        f"--web.listen-address={_HOST}:{port}", "--cluster.listen-address=", f"--web.external-url=http://{_HOST}:{port}",
    ]


def parse_slack(message: dict[str, Any], wall: float) -> list[Page]:
    """The pages in one Slack message posted with this module's template."""
    pages = []
    for attachment in message.get("attachments", []):
        for line in str(attachment.get("text", "")).splitlines():
            status, _, rest = line.partition("|")
            name, _, pairs = rest.partition("|")
            if not name:
                continue
            labels = dict(p.split("=", 1) for p in pairs.split(",") if "=" in p)
            pages.append(Page(wall, status.strip(), name, labels))
    return pages


class SlackRecorder:
    """A loopback HTTP server standing in for Slack's webhook; ``pages`` in arrival order."""

    def __init__(self) -> None:
        self.pages: list[Page] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    pages = parse_slack(json.loads(body), time.time())
                except ValueError:
                    pages = []
                with recorder._lock:
                    recorder.pages.extend(pages)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((_HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self._server.server_address[1]}/slack"

    def start(self) -> SlackRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Page]:
        with self._lock:
            return list(self.pages)


class AlertmanagerProcess:
    """One Alertmanager on a free port; ``stop``/``start`` keep the port and the storage folder."""

    def __init__(self, slack_url: str, workdir: Path | None = None, binary: Path = ALERTMANAGER_BINARY) -> None:
        if not binary.is_file():
            raise WatchkeeperError(f"{binary} is not installed (Debian package prometheus-alertmanager)")
        self.binary = binary
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="wk-sim-am-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        config = {
            "route": {"receiver": "slack", "group_by": ["..."], "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "slack", "slack_configs": [
                {"api_url": slack_url, "channel": "#pages", "send_resolved": True, "title": "{{ .Status }}", "text": _TEXT}
            ]}],
        }
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, width=1000))
        self.log_path = self.workdir / "alertmanager.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def _ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def start(self, timeout_s: float = 15.0) -> AlertmanagerProcess:
        if self._proc is not None and self._proc.poll() is None:
            return self
        (self.workdir / "data").mkdir(exist_ok=True)
        self._proc = start_server(
            alertmanager_argv(self.binary, self.config_path, self.workdir / "data", self.port),
            self.log_path, self._ready, name="alertmanager", url=self.url, timeout_s=timeout_s, poll_s=0.02,
        )
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s)
