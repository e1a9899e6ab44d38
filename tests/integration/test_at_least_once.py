"""At-least-once across a crash: SIGKILL ``watchkeeper run`` mid-stream, start another.

The agent appends every processed (topic, partition, offset) to its processed log and
fsyncs it before the batch's offsets are committed. Killing it with SIGKILL (no
shutdown, no final commit) and starting a second agent in the same consumer group must
leave every produced record in the log: nothing is lost. Records processed after the
last commit are processed again, so duplicates are expected; the test reports them.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.runtime.embedded_broker import EmbeddedBroker, create_topics
from tests.integration.harness import (
    AGENT_COMMAND,
    REPO_ROOT,
    agent_env,
    eventually,
    inference,
    rule_file,
    topics_for,
    unique_name,
)
from tests.kafka_tools import produce

pytestmark = pytest.mark.integration

EVENTS = 20_000
PARTITIONS = 4
SERVICES = 16  # keys: spread over every partition


class ProcessedLog:
    """Reads the agent's processed log, ``topic<TAB>partition<TAB>offset`` per line.

    A SIGKILL in the middle of a write can leave a torn last line, and the next agent
    appends right after it (``PositionLog`` opens the file with "a" and does not start a
    new line). Such a glued line ends with the next agent's complete line: that one is
    counted and the glued line is kept in ``torn`` for the report. A line that parses
    in no way lands in ``malformed``.
    """

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.topic = topic
        self.positions: collections.Counter[tuple[int, int]] = collections.Counter()
        self.torn: list[str] = []
        self.malformed: list[str] = []
        self._read_upto = 0
        self._line = re.compile(rf"{re.escape(topic)}\t(\d+)\t(\d+)")

    def refresh(self) -> int:
        """Read complete lines appended since the last call; return how many positions are known."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._read_upto)
                chunk = fh.read()
        except FileNotFoundError:
            return 0
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a torn tail waits for its newline
        self._read_upto += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            start = line.rfind(self.topic)
            match = self._line.fullmatch(line, max(start, 0))
            if match is None:
                self.malformed.append(line)
                continue
            if start > 0:
                self.torn.append(line)
            self.positions[(int(match[1]), int(match[2]))] += 1
        return len(self.positions)


@contextmanager
def agent_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``watchkeeper run`` as a child process; SIGKILLed (by its PID) if still running at the end."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            AGENT_COMMAND, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def test_sigkill_mid_stream_loses_no_record(
    broker: EmbeddedBroker,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    topics = topics_for(unique_topic)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(unique_name("WkNeverFires"), threshold=1e9))
    processed = ProcessedLog(tmp_path / "processed.log", topics.inference)
    env = agent_env(
        broker.bootstrap,
        topics,
        rules,
        WATCHKEEPER_PROCESSED_LOG=str(processed.path),
        WATCHKEEPER_BATCH_MAX_RECORDS="200",  # many batches, many commits: a kill lands mid-stream
        WATCHKEEPER_LOG_LEVEL="warning",
        # The second agent's join waits for the killed member's session to expire.
        WATCHKEEPER_KAFKA_SESSION_TIMEOUT_MS="1000",
    )
    await create_topics(broker.bootstrap, [topics.inference], partitions=PARTITIONS)
    t0 = time.time() - 240
    events = [(f"svc-{i % SERVICES}", inference(f"svc-{i % SERVICES}", 20.0 + i % 7, t0 + i * 0.01)) for i in range(EVENTS)]
    meta = await produce(broker.bootstrap, topics.inference, events)
    produced = {(m.partition, m.offset) for m in meta}
    assert len(produced) == EVENTS and len({p for p, _ in produced}) == PARTITIONS

    first_log, second_log = tmp_path / "agent-1.log", tmp_path / "agent-2.log"
    with agent_process(env, first_log) as first:
        await eventually(
            lambda: processed.refresh() > 0 or first.poll() is not None,
            timeout_s=30,
            what="the first agent to log processed records",
        )
        assert first.poll() is None, f"the first agent exited ({first.returncode}):\n{_tail(first_log)}"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    before_kill = processed.refresh()
    assert before_kill < EVENTS, "the first agent finished before the kill: nothing was tested"

    with agent_process(env, second_log) as second:
        await eventually(
            lambda: processed.refresh() >= EVENTS and produced <= processed.positions.keys() or second.poll() is not None,
            timeout_s=60,
            what="the second agent to process every produced record",
            detail=lambda: f"{len(produced - processed.positions.keys())} missing; agent log:\n{_tail(second_log)}",
        )
        assert second.poll() is None, f"the second agent exited ({second.returncode}):\n{_tail(second_log)}"

    missing = sorted(produced - processed.positions.keys())
    extra = sorted(processed.positions.keys() - produced)
    duplicates = sum(processed.positions.values()) - len(processed.positions)
    record_property("processed_before_kill", before_kill)
    record_property("duplicates", duplicates)
    record_property("torn_lines", len(processed.torn))
    print(
        f"\nat-least-once: {before_kill} of {EVENTS} processed before SIGKILL, "
        f"{duplicates} processed twice, {len(processed.torn)} torn log line(s) {processed.torn[:2]}"
    )
    assert missing == [], f"{len(missing)} records never processed, e.g. {missing[:10]}"
    assert extra == [], f"positions that were never produced: {extra[:10]}"
    assert processed.malformed == [], processed.malformed[:5]
