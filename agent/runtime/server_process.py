"""Start a server binary, wait until it answers, stop it by its PID.

The simulation's Alertmanager and the test bed's servers (Alertmanager, Prometheus,
MLflow, etcd and the Kubernetes control plane) are all run the same way: output to a
log file, a new session so a terminal's Ctrl-C is not theirs, readiness polled against
a deadline (never a fixed sleep), and when a server exits early or never answers, an
error that names it, its URL and the last lines of its log, which is where the reason is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agent.errors import WatchkeeperError

__all__ = ["http_ok", "launch", "log_tail", "start_server", "stop_process", "wait_ready"]

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, or a note saying why there are none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a GET of ``url`` answers 200, bypassing any proxy (readiness probes are local)."""
    try:
        with _DIRECT.open(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def launch(argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own process group: a kill can reach its workers too
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    name: str,
    url: str,
    log_path: Path,
    timeout_s: float,
    poll_s: float = 0.05,
    what: str = "ready",
) -> None:
    """Poll ``ready()`` until it is true; raise if ``proc`` exits or the deadline passes.

    The process is left as it is on error: the caller decides whether to stop it.

    Parameters
    ----------
    name, url:
        How the error names the server and where it was expected to answer.
    what:
        The state waited for, as in "<name> was not <what> on <url>".
    """
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise WatchkeeperError(
                f"{name} exited with status {proc.returncode} while starting on {url}; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise WatchkeeperError(
                f"{name} was not {what} on {url} within {timeout_s:g} s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(poll_s)  # poll interval, bounded by the deadline


def start_server(
    argv: Sequence[str],
    log_path: Path,
    ready: Callable[[], bool],
    *,
    name: str,
    url: str,
    timeout_s: float,
    poll_s: float = 0.05,
    what: str = "ready",
    env: Mapping[str, str] | None = None,
    kill_group: bool = False,
) -> subprocess.Popen[bytes]:
    """:func:`launch` then :func:`wait_ready`; a server that does not come up is stopped first.

    ``kill_group`` is passed to :func:`stop_process` for that stop.
    """
    proc = launch(argv, log_path, env=env)
    try:
        wait_ready(proc, ready, name=name, url=url, log_path=log_path, timeout_s=timeout_s, poll_s=poll_s, what=what)
    except BaseException:
        stop_process(proc, kill_group=kill_group)
        raise
    return proc


def stop_process(
    proc: subprocess.Popen[bytes] | None,
    timeout_s: float = 10.0,
    *,
    sig: signal.Signals = signal.SIGTERM,
    kill_group: bool = False,
) -> None:
    """Send ``sig`` to the PID, SIGKILL it after ``timeout_s``, and reap it.

    ``kill_group`` sends the SIGKILL to the whole process group (a server that forked
    workers); the first signal goes to the PID only, so the server shuts its workers down.
    """
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            if kill_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=max(timeout_s, 5.0))
