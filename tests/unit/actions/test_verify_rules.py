"""The rule keys of verify after act (``verify``, ``verify_within``, ``undo``, ``escalate``): loaded, or refused at their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import RuleFileErrors
from agent.rules import load_rules

_HEAD = (
    "groups:\n"
    "  - name: g\n"
    "    rules:\n"
    "      - alert: Hot\n"
    "        source: inference\n"
    "        by: [service]\n"
    "        detector: {kind: threshold, field: latency_ms, op: '>', threshold: 500}\n"
    "        actions:\n"
    "          - type: scale\n"  # line 9
    "            step: 2\n"
)


def _load(tmp_path: Path, more: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(_HEAD + more)
    return path


def test_the_keys_load_with_their_durations(tmp_path: Path) -> None:
    path = _load(tmp_path, "            verify_within: 2m30s\n            undo: true\n            escalate: false\n")
    entry = load_rules([path]).rules[0].actions[0]
    from actions.scale import Scale

    params = Scale.Params.model_validate(dict(entry))
    assert (params.verify_within, params.undo, params.escalate, params.verify) == (150.0, True, False, None)
    assert params.verifies("enforce") and params.verifies("approve") and not params.verifies("dry-run")


@pytest.mark.parametrize(
    ("more", "line", "fragment"),
    [
        ("            verify_within: soon\n", 11, "verify_within: 'soon' is not a duration"),
        ("            verify_within: 0s\n", 11, "verify_within must be between 1s and 24h"),
        ("            verify_within: 3d\n", 11, "verify_within must be between 1s and 24h"),
        ("            verify: maybe\n", 11, "verify: Input should be a valid boolean"),
        ("            verify_witin: 5m\n", 11, "unknown key 'verify_witin' (did you mean \"verify_within\"?)"),
        ("            undo: true\n            verify: false\n", 9, "undo: true needs verify"),
    ],
)
def test_bad_values_fail_at_their_line(tmp_path: Path, more: str, line: int, fragment: str) -> None:
    path = _load(tmp_path, more)
    with pytest.raises(RuleFileErrors) as caught:
        load_rules([path])
    text = str(caught.value)
    assert any(ln.startswith(f"{path}:{line}:") and fragment in ln for ln in text.splitlines()), text


def test_undo_on_a_kind_that_cannot_undo_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(_HEAD.replace("type: scale\n            step: 2\n", "type: notify\n            url: http://x\n") + "            undo: true\n")
    with pytest.raises(RuleFileErrors) as caught:
        load_rules([path])
    assert "undo: true is not supported by action type 'notify'" in str(caught.value)
