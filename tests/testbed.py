"""Real servers for the integration tests: Alertmanager and a Slack webhook recorder.

Every server binds 127.0.0.1 on a free port, is started once per session by
``tests/conftest.py`` and is stopped by its PID. Nothing here sleeps for a fixed
time: readiness is polled against a deadline and the recorder wakes waiters on a
``threading.Condition``. See ``../shared/TESTBED.md`` for how these servers behave.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from agent.runtime.server_process import http_ok, start_server, stop_process
from agent.simulate.pager import alertmanager_argv

__all__ = ["ALERTMANAGER", "AMTOOL", "Alertmanager", "SlackRecorder", "alertmanager_config"]

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
AMTOOL = Path("/usr/bin/amtool")
_HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


class SlackRecorder:
    """An HTTP server that records every POSTed JSON body (a fake Slack webhook).

    ``url`` goes into a receiver's ``api_url``; ``messages`` holds the parsed bodies
    in arrival order (a body that is not JSON is stored as ``{"_raw": text}``).
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    message = json.loads(body)
                except ValueError:
                    message = {"_raw": body.decode(errors="replace")}
                with recorder._cond:
                    recorder.messages.append(message)
                    recorder._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")  # what Slack answers

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((_HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self._server.server_address[1]}/slack"

    def start(self) -> SlackRecorder:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # how fast shutdown() returns
                name="slack-recorder",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Return the first message (already received or still to come) that matches.

        Raises AssertionError listing everything received when none arrives in time.
        """
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._cond:
            while True:
                for message in self.messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self.messages)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    received = json.dumps(self.messages, indent=1)[:4000]
                    raise AssertionError(
                        f"no matching Slack message within {timeout_s:g} s; "
                        f"received {len(self.messages)}:\n{received}"
                    )
                self._cond.wait(remaining)

    def __enter__(self) -> SlackRecorder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_SLACK_TITLE = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}"
_SLACK_TEXT = (
    "{{ range .Alerts }}status: {{ .Status }}\n"
    "alertname: {{ .Labels.alertname }}\n"
    "labels:{{ range .Labels.SortedPairs }} {{ .Name }}={{ .Value }}{{ end }}\n"
    "annotations:{{ range .Annotations.SortedPairs }} {{ .Name }}={{ .Value }}{{ end }}\n"
    "{{ end }}"
)


def alertmanager_config(slack_url: str) -> str:
    """The test config: every label set its own group, sent quickly to one Slack receiver."""
    config = {
        "route": {
            "receiver": "slack",
            "group_by": ["..."],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "slack",
                "slack_configs": [
                    {
                        "api_url": slack_url,
                        "channel": "#pages",
                        "send_resolved": True,
                        "title": _SLACK_TITLE,
                        "text": _SLACK_TEXT,
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False, width=1000)


class Alertmanager:
    """A real Alertmanager on 127.0.0.1 whose one receiver posts to ``slack_url``.

    :meth:`stop` and :meth:`start` reuse the same port and storage folder, so a test
    can take it down for a while and bring it back (alerts are lost, as in production;
    silences and the notification log are kept).
    """

    def __init__(
        self,
        slack_url: str,
        *,
        workdir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        binary: Path = ALERTMANAGER,
        amtool: Path = AMTOOL,
        config: str | None = None,
        start_timeout_s: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="wk-am-"))
        self.port = port or _free_port()
        self.binary = binary
        self.amtool = amtool
        self.config_path = self.workdir / "am.yml"
        self.config_path.write_text(
            config if config is not None else alertmanager_config(slack_url)
        )
        self.log_path = self.workdir / "alertmanager.log"
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def check_config(self) -> None:
        """Run ``amtool check-config``: with a bad config Alertmanager never becomes ready."""
        result = subprocess.run(
            [str(self.amtool), "check-config", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"amtool check-config {self.config_path} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )

    def start(self) -> Alertmanager:
        if self.pid is not None:
            return self
        self.check_config()
        if self._ready():
            raise RuntimeError(f"cannot start alertmanager on {self.url}: another server is there")
        (self.workdir / "data").mkdir(exist_ok=True)
        self._proc = start_server(
            alertmanager_argv(self.binary, self.config_path, self.workdir / "data", self.port),
            self.log_path,
            self._ready,
            name="alertmanager",
            url=self.url,
            timeout_s=self.start_timeout_s,
            poll_s=0.02,
        )
        return self

    def _ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL if still running after ``timeout_s``."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s)

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Alertmanager {self.url} pid={self.pid}>"
