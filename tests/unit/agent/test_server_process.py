"""Starting and stopping a server process: readiness, early exit, timeout, SIGKILL fallback.

The "servers" are tiny Python child processes, so these run in well under a second each;
the real servers (Alertmanager, Prometheus, MLflow, Tansu) use the same code in the
integration tests.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from agent.errors import WatchkeeperError
from agent.runtime.server_process import launch, log_tail, start_server, stop_process


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_ready_server_is_returned_running_and_stopped_by_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "up"
    code = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    proc = start_server(_python(code), tmp_path / "s.log", marker.exists, name="toy", url="toy://", timeout_s=30, poll_s=0.01)
    assert proc.poll() is None
    stop_process(proc, timeout_s=10)
    assert proc.returncode == -signal.SIGTERM


def test_early_exit_names_the_server_its_status_and_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('\\n'.join(f'line {i}' for i in range(50))); print('bad flag --x'); sys.exit(3)"
    with pytest.raises(WatchkeeperError) as caught:
        start_server(_python(code), tmp_path / "s.log", lambda: False, name="toy", url="http://127.0.0.1:1", timeout_s=30)
    message = str(caught.value)
    assert "toy exited with status 3 while starting on http://127.0.0.1:1" in message
    assert message.rstrip().endswith("bad flag --x")
    assert "line 0\n" not in message  # only the tail


def test_not_ready_in_time_is_stopped_and_reported(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(WatchkeeperError, match=r"toy was not healthy on toy:// within 0.3 s; last lines of .*s\.log:\n\(empty log\)"):
        start_server(_python("import time; time.sleep(60)"), tmp_path / "s.log", lambda: False,
                     name="toy", url="toy://", timeout_s=0.3, poll_s=0.01, what="healthy")
    assert time.monotonic() - started < 30  # stopped by SIGTERM, not waited out


def test_sigkill_after_the_timeout_when_sigterm_is_ignored(tmp_path: Path) -> None:
    marker = tmp_path / "up"
    code = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    )
    proc = start_server(_python(code), tmp_path / "s.log", marker.exists, name="toy", url="toy://", timeout_s=30, poll_s=0.01)
    stop_process(proc, timeout_s=0.3)
    assert proc.returncode == -signal.SIGKILL


def test_stop_process_is_a_no_op_for_none_and_exited(tmp_path: Path) -> None:
    stop_process(None)
    proc = launch(_python("pass"), tmp_path / "s.log")
    proc.wait(timeout=30)
    stop_process(proc)  # no signal to a PID that may have been reused
    assert proc.returncode == 0


def test_log_tail_of_a_missing_file_says_so(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "none.log") == "(no log)"
    (tmp_path / "a.log").write_text("a\nb\nc\n")
    assert log_tail(tmp_path / "a.log", lines=2) == "b\nc"
