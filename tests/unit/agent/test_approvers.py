"""The approvers file: tokens bound to names, checked, compared as bytes, reloaded on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.runtime.approvers import SHORTHAND_NAME, Approvers, Principal, Role, parse_approvers

ALICE = "alice-0123456789abcdef"
BOB = "bob-0123456789abcdef01"


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "approvers"
    path.write_text(text)
    path.chmod(mode)
    return path


def bearer(token: str) -> bytes:
    return f"Bearer {token}".encode()


@pytest.mark.parametrize(
    "text",
    [
        f"# on call\nalice:{ALICE}\n\nbob:{BOB}\n",
        f"alice: {ALICE}\nbob: {{token: {BOB}}}\n",
        f'{{"alice": "{ALICE}", "bob": {{"token": "{BOB}", "role": "approve"}}}}',
    ],
    ids=["lines", "yaml", "json"],
)
def test_each_format_binds_tokens_to_names(tmp_path: Path, text: str) -> None:
    approvers = Approvers(write(tmp_path, text))
    assert approvers.authenticate(bearer(ALICE)) == Principal("alice", Role.APPROVE)
    assert approvers.authenticate(bearer(BOB)) == Principal("bob", Role.APPROVE)
    assert approvers.authenticate(bearer(ALICE + "x")) is None
    assert approvers.authenticate(bearer(ALICE[:-1])) is None


def test_the_table_holds_digests_not_tokens() -> None:
    table = parse_approvers(f"alice:{ALICE}")
    assert all(len(key) == 32 for key in table) and ALICE.encode() not in table


def test_roles(tmp_path: Path) -> None:
    approvers = Approvers(write(tmp_path, f"dash: {{token: {BOB}, role: read}}\nalice: {ALICE}\n"))
    reader, approver = approvers.authenticate(bearer(BOB)), approvers.authenticate(bearer(ALICE))
    assert reader is not None and reader.may(Role.READ) and not reader.may(Role.APPROVE)
    assert approver is not None and approver.may(Role.READ) and approver.may(Role.APPROVE)


@pytest.mark.parametrize(
    "header",
    [b"", b"Bearer", b"Basic " + ALICE.encode(), ALICE.encode(), b"Bearer \xff" + ALICE.encode(), b"\xc3\xa9\x00\xff", b"Bearer " + b"\x80" * 5000],
)
def test_any_header_bytes_are_an_answer_not_an_error(header: bytes) -> None:
    assert Approvers(shorthand=ALICE).authenticate(header) is None


def test_the_scheme_is_case_insensitive_and_spaces_tolerated() -> None:
    approvers = Approvers(shorthand=ALICE)
    expected = Principal(SHORTHAND_NAME, Role.APPROVE)
    assert approvers.authenticate(f"bearer {ALICE}".encode()) == expected
    assert approvers.authenticate(f"  BEARER   {ALICE} ".encode()) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("alice:short", "at least 16"),
        (f"alice: '{ALICE} with spaces'", "visible ASCII"),
        (f"alice: 'tøken-{ALICE}'", "visible ASCII"),
        (f"alice:{ALICE}\nbob:{ALICE}", "same token as 'alice'"),
        (f"alice:{ALICE}\nalice:{BOB}", "listed twice"),
        (f"alice: {{token: {ALICE}, role: admin}}", "not read or approve"),
        (f"alice: {{token: {ALICE}, roles: read}}", "unknown keys"),
        (f"'../etc': {ALICE}", "approver name"),
        (f"'<b>alice</b>': {ALICE}", "approver name"),
        (f"alice: [{ALICE}]", "must be strings"),
        ("- alice\n- bob", "mapping"),
        ("alice: {token: [", "YAML error at line"),
        ("a: " + "[" * 20_000 + "]" * 20_000, "nested too deeply"),
    ],
)
def test_a_malformed_file_is_a_config_error_that_never_shows_a_token(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="WATCHKEEPER_APPROVERS_FILE") as caught:
        Approvers(write(tmp_path, text))
    assert message in str(caught.value)
    assert ALICE not in str(caught.value) and BOB not in str(caught.value)


def test_a_file_others_may_write_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="others may write"):
        Approvers(write(tmp_path, f"alice:{ALICE}", mode=0o606))


def test_a_missing_file_refuses_every_token_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "approvers"
    approvers = Approvers(path, shorthand=BOB)
    assert approvers.enabled and approvers.authenticate(bearer(ALICE)) is None
    assert approvers.authenticate(bearer(BOB)) is not None  # the shorthand token stays valid
    write(tmp_path, f"alice:{ALICE}")
    assert approvers.authenticate(bearer(ALICE)) == Principal("alice", Role.APPROVE)
    path.unlink()
    assert approvers.authenticate(bearer(ALICE)) is None  # a deleted file takes its tokens with it


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Approvers(tmp_path)  # a directory


def test_the_shorthand_token_approves_as_approve_token(tmp_path: Path) -> None:
    approvers = Approvers(write(tmp_path, f"alice:{ALICE}"), shorthand=BOB)
    assert approvers.authenticate(bearer(BOB)) == Principal("approve-token", Role.APPROVE)
    assert approvers.authenticate(bearer(ALICE)) == Principal("alice", Role.APPROVE)
    with pytest.raises(ConfigError, match="at least 16"):
        Approvers(shorthand="s3cret")
    with pytest.raises(ConfigError, match="same token"):
        Approvers(write(tmp_path, f"alice:{BOB}"), shorthand=BOB)


def test_no_token_means_disabled(tmp_path: Path) -> None:
    assert not Approvers().enabled
    assert Approvers(shorthand=ALICE).enabled
    assert Approvers(write(tmp_path, "# nobody yet\n")).enabled  # configured, empty: every token is refused


def test_a_changed_file_is_reloaded_and_a_bad_change_keeps_the_old_table(tmp_path: Path) -> None:
    path = write(tmp_path, f"alice:{ALICE}")
    approvers = Approvers(path)
    assert approvers.authenticate(bearer(ALICE)) is not None
    # a Kubernetes Secret update: a new file swapped in
    replacement = tmp_path / "new"
    replacement.write_text(f"bob:{BOB}")
    replacement.chmod(0o600)
    os.replace(replacement, path)
    assert approvers.authenticate(bearer(ALICE)) is None
    assert approvers.authenticate(bearer(BOB)) == Principal("bob", Role.APPROVE)
    path.write_text("bob:short-and-bad\n")
    assert approvers.authenticate(bearer(BOB)) == Principal("bob", Role.APPROVE)  # the last good table
    path.write_text(f"carol:{ALICE}\n" + " " * 7)  # a different size, so a different stat
    assert approvers.authenticate(bearer(ALICE)) == Principal("carol", Role.APPROVE)
