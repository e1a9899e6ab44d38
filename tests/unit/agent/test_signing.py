"""Record signatures (agent/runtime/signing.py) and the key file (agent/runtime/topic_keys.py).

Fast and offline; the records go through the real broker in
tests/integration/test_topic_signing.py. Hypothesis changes any part of a signed
record (key, value, header, role, key id) and every change must be rejected.
"""

from __future__ import annotations

import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.runtime.selfmetrics import SelfMetrics
from agent.runtime.signing import SIGNATURE_HEADER, RecordAuth, Rejection, TopicRole, sign, verify
from agent.runtime.topic_keys import TopicKey, TopicKeys, default_keys_path, load_keys, open_keys

KEYS = TopicKeys((TopicKey.of(b"k" * 32),))
OTHER = TopicKeys((TopicKey.of(b"o" * 32),))
maybe_bytes = st.none() | st.binary(max_size=64)


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int = 0
    offset: int = 0


def _signed(role: TopicRole, key: bytes | None, value: bytes | None, keys: TopicKeys = KEYS) -> list[tuple[str, bytes]]:
    return [(SIGNATURE_HEADER, sign(keys, role, key, value).encode())]


@given(key=maybe_bytes, value=maybe_bytes, role=st.sampled_from(TopicRole))
def test_a_signed_record_verifies_for_its_role_only(key: bytes | None, value: bytes | None, role: TopicRole) -> None:
    headers = [("content-type", b"application/json"), *_signed(role, key, value)]
    assert verify(KEYS, role, key, value, headers) is None
    for other in set(TopicRole) - {role}:
        assert verify(KEYS, other, key, value, headers) is Rejection.BAD_SIGNATURE


@given(key=maybe_bytes, value=maybe_bytes, new_key=maybe_bytes, new_value=maybe_bytes)
def test_any_change_of_key_or_value_is_rejected(key: bytes | None, value: bytes | None, new_key: bytes | None, new_value: bytes | None) -> None:
    headers = _signed(TopicRole.ALERTS, key, value)
    expected = None if (new_key, new_value) == (key, value) else Rejection.BAD_SIGNATURE
    assert verify(KEYS, TopicRole.ALERTS, new_key, new_value, headers) is expected


@settings(max_examples=300)
@given(value=st.binary(max_size=32), position=st.integers(min_value=0), replacement=st.integers(min_value=0, max_value=255))
def test_any_change_of_the_header_is_rejected(value: bytes, position: int, replacement: int) -> None:
    header = bytearray(sign(KEYS, TopicRole.AUDIT, b"k", value).encode())
    i = position % len(header)
    if header[i] == replacement:
        return
    header[i] = replacement
    assert verify(KEYS, TopicRole.AUDIT, b"k", value, [(SIGNATURE_HEADER, bytes(header))]) is not None


@given(header=st.binary(max_size=100))
def test_arbitrary_header_bytes_never_verify_and_never_raise(header: bytes) -> None:
    assert verify(KEYS, TopicRole.STATE, b"k", b"v", [(SIGNATURE_HEADER, header)]) is not None


def test_the_reasons_a_record_is_rejected() -> None:
    good = _signed(TopicRole.ALERTS, b"k", b"v")
    assert verify(KEYS, TopicRole.ALERTS, b"k", b"v", []) is Rejection.UNSIGNED
    assert verify(KEYS, TopicRole.ALERTS, b"k", b"v", None) is Rejection.UNSIGNED
    assert verify(KEYS, TopicRole.ALERTS, b"k", b"v", good + good) is Rejection.MALFORMED
    assert verify(KEYS, TopicRole.ALERTS, b"k", b"v", [(SIGNATURE_HEADER, b"\xff" * 81)]) is Rejection.MALFORMED
    assert verify(KEYS, TopicRole.ALERTS, b"k", b"v", _signed(TopicRole.ALERTS, b"k", b"v", OTHER)) is Rejection.UNKNOWN_KEY
    # the key id is bound: a MAC made with one key under another key's id does not verify
    both = TopicKeys((KEYS.signing, OTHER.signing))
    mac = sign(OTHER, TopicRole.ALERTS, b"k", b"v").split(":")[1]
    relabelled = [(SIGNATURE_HEADER, f"{KEYS.signing.key_id}:{mac}".encode())]
    assert verify(both, TopicRole.ALERTS, b"k", b"v", relabelled) is Rejection.BAD_SIGNATURE
    # null and empty are different values
    assert verify(KEYS, TopicRole.STATE, b"k", b"", _signed(TopicRole.STATE, b"k", None)) is Rejection.BAD_SIGNATURE


def test_rotation_the_first_key_signs_and_every_key_verifies() -> None:
    rotating = TopicKeys((OTHER.signing, KEYS.signing))
    assert verify(rotating, TopicRole.AUDIT, b"k", b"v", _signed(TopicRole.AUDIT, b"k", b"v", KEYS)) is None
    new = sign(rotating, TopicRole.AUDIT, b"k", b"v")
    assert new.startswith(OTHER.signing.key_id + ":")
    assert verify(KEYS, TopicRole.AUDIT, b"k", b"v", [(SIGNATURE_HEADER, new.encode())]) is Rejection.UNKNOWN_KEY


def test_record_auth_admits_authentic_records_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    metrics = SelfMetrics()
    auth = RecordAuth(KEYS, TopicRole.ALERTS, topic="watchkeeper.alerts", metrics=metrics)
    good = Record(b"k", b"v", auth.header_list(b"k", b"v"))
    assert auth.headers(b"k", b"v") == {SIGNATURE_HEADER: good.headers[0][1].decode()}
    batch = [Record(b"k", b"v"), good, Record(b"k", b"w", good.headers), Record(b"k", b"v", _signed(TopicRole.ALERTS, b"k", b"v", OTHER))]
    assert auth.admitted(batch) == [good]
    counts = {r: metrics.registry.get_sample_value("watchkeeper_records_rejected_total", {"topic": "watchkeeper.alerts", "reason": r}) for r in ("unsigned", "bad_signature", "unknown_key")}
    assert counts == {"unsigned": 1.0, "bad_signature": 1.0, "unknown_key": 1.0}
    assert auth.rejected == 3


def test_record_auth_logs_a_sample_of_a_flood() -> None:
    auth = RecordAuth(KEYS, TopicRole.AUDIT, topic="t")
    assert auth.admitted(Record(b"k", b"v", [], offset=i) for i in range(5000)) == []
    assert auth.rejected == 5000  # logged: the first 10, then every 1000th (not asserted on the log format)


# --- the key file ---------------------------------------------------------------------------
def test_the_agent_creates_a_private_key_file_once_and_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "state" / "topic-keys"
    first = open_keys(path)
    assert first.generated and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    second = open_keys(path)  # a restart: same key, so earlier records still verify
    assert not second.generated and second.keys == first.keys
    assert first.signing.secret.decode() not in repr(first)
    assert [p.name for p in path.parent.iterdir()] == ["topic-keys"]  # no temporary file left


def test_agents_starting_together_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / "topic-keys"
    results: list[TopicKeys] = []
    threads = [threading.Thread(target=lambda: results.append(open_keys(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({k.signing.key_id for k in results}) == 1
    assert sum(k.generated for k in results) == 1


def test_the_default_key_file_lives_in_the_state_directory(tmp_path: Path) -> None:
    assert default_keys_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "watchkeeper" / "topic-keys"
    assert default_keys_path({}).parts[-3:] == ("state", "watchkeeper", "topic-keys")


def test_key_file_rules(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# rotated 2026-12\n" + "n" * 40 + "\n\n" + "o" * 40 + "\n")
    keys = load_keys(path)
    assert [k.key_id for k in keys.keys] == [TopicKey.of(b"n" * 40).key_id, TopicKey.of(b"o" * 40).key_id]
    assert len(keys.signing.key_id) == 16 and keys.signing.key_id not in ("n" * 16,)
    bad = {
        "short": ("x" * 31 + "\n", "shorter than 32"),
        "empty": ("# nothing\n\n", "holds no key"),
        "three": ("".join(c * 32 + "\n" for c in "abc"), "1 or 2 keys"),
        "repeated": ("a" * 32 + "\n" + "a" * 32 + "\n", "repeats"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=message) as err:
            load_keys(tmp_path / name)
        assert "x" * 31 not in str(err.value) and "a" * 32 not in str(err.value)  # never the key itself
    with pytest.raises(ConfigError, match="no topic key file"):
        load_keys(tmp_path / "missing")


def test_a_key_file_that_cannot_be_created_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="WATCHKEEPER_TOPIC_KEYS_FILE"):
        open_keys(blocker / "sub" / "topic-keys")


def test_the_approver_cli_refuses_to_run_without_the_agents_key_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    missing = tmp_path / "nowhere" / "topic-keys"
    for command in (["list"], ["approve", "0123456789ab"], ["reject", "0123456789ab"]):
        result = CliRunner().invoke(app, ["actions", *command, "--kafka-bootstrap", "127.0.0.1:1", "--topic-keys-file", str(missing)])
        assert result.exit_code == 1, result.output
        assert str(missing) in result.output and "no topic key file" in result.output
    assert not missing.exists()  # never a new key: it would sign answers no agent obeys


def test_a_world_readable_key_file_is_used_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.logs import configure_logging

    configure_logging("warning", json=True)
    path = tmp_path / "topic-keys"
    path.write_text("k" * 40 + "\n")
    path.chmod(0o644)
    assert open_keys(path).signing == TopicKey.of(b"k" * 40)
    err = capsys.readouterr().err
    assert "readable by every user" in err and str(path) in err and "k" * 40 not in err
