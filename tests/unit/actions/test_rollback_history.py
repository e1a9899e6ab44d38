"""Alias history (parsing, bounds), previous-version choice, params and error mapping of ``rollback``.

The registry behaviour itself is tested against a real MLflow server in
tests/integration/test_mlflow_rollback.py.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from actions.alias_history import (
    BAD_TAG,
    HISTORY_LIMIT,
    Move,
    VersionInfo,
    append_move,
    encode_history,
    normalise_version,
    parse_history,
    previous_version,
)
from actions.base import ActionContext, ActionFailed, TransientActionError
from actions.mlflow_registry import registry_errors
from actions.registry import ACTIONS
from actions.rollback import Rollback, RollbackParams
from agent.model import Alert, AlertState

ALLOWED = {"names": ["fraud", "chat-sys"]}
"""Every rollback entry names what it may touch (actions/allowed_names.py)."""


def _versions(*spec: str | tuple[str, bool, bool]) -> dict[str, VersionInfo]:
    """``"3"`` is a READY good version; ``("3", ready, bad)`` says otherwise."""
    out = {}
    for item in spec:
        version, ready, bad = (item, True, False) if isinstance(item, str) else item
        out[version] = VersionInfo(version, ready=ready, tags={BAD_TAG: "{}"} if bad else {})
    return out


@pytest.mark.parametrize(("raw", "expected"), [(3, "3"), ("3", "3"), (" 07 ", "7"), (2.0, "2")])
def test_versions_are_normalised_to_decimal_strings(raw: object, expected: str) -> None:
    assert normalise_version(raw) == expected


@pytest.mark.parametrize("raw", ["", "v3", "0", "-1", "1.5", 1.5, True, None, float("nan")])
def test_non_versions_are_refused(raw: object) -> None:
    with pytest.raises(ValueError):
        normalise_version(raw)


def test_history_round_trips_and_keeps_the_decision_key() -> None:
    moves = [Move("3", 10.0, by="observed"), Move("2", 20.5, by="wk-1", reason="ErrorRate fired", key="k" * 64, previous="3")]
    assert parse_history(encode_history(moves)) == moves


@pytest.mark.parametrize("text", [None, "", "not json", "{}", '"a string"', "42", "[1, 2]"])
def test_unreadable_history_reads_as_empty(text: str | None) -> None:
    assert parse_history(text) == []


def test_bad_entries_are_dropped_and_the_rest_kept() -> None:
    text = json.dumps([{"v": "1", "ts": 1}, {"v": "x"}, {"ts": 3}, "junk", {"v": 2, "ts": "nan"}, {"v": 3, "ts": 4, "from": 2}])
    assert [(m.version, m.previous) for m in parse_history(text)] == [("1", None), ("3", "2")]


def test_history_is_bounded_in_entries_and_characters() -> None:
    moves = [Move(str(i), float(i), by="wk", reason="r" * 500, key="k" * 64) for i in range(1, 60)]
    text = encode_history(moves)
    kept = parse_history(text)
    assert len(kept) == HISTORY_LIMIT and kept[-1].version == "59", "the newest moves are kept"
    assert all(len(m.reason) <= 200 for m in kept)
    small = encode_history(moves, max_chars=1000)
    assert len(small) <= 1000 and parse_history(small)[-1].version == "59"
    assert len(parse_history(json.dumps([m.to_dict() for m in moves]))) == HISTORY_LIMIT


def test_append_records_an_alias_moved_behind_our_back() -> None:
    history = [Move("1", 1.0), Move("2", 2.0)]
    out = append_move(history, Move("3", 5.0, key="k", previous="4"), holder="4")
    assert [(m.version, m.by) for m in out] == [("1", ""), ("2", ""), ("4", "observed"), ("3", "")]
    assert [m.version for m in append_move(history, Move("1", 5.0), holder="2")] == ["1", "2", "1"]
    assert len(append_move([Move(str(i), 1.0) for i in range(1, 30)], Move("30", 2.0))) == HISTORY_LIMIT


def test_previous_prefers_the_last_other_holder_in_history() -> None:
    history = [Move("1", 1.0), Move("3", 2.0)]
    assert previous_version("3", history, _versions("1", "2", "3")) == ("1", "history")


def test_previous_skips_bad_missing_and_unready_versions() -> None:
    history = [Move("1", 1.0), Move("2", 2.0), Move("5", 3.0), Move("3", 4.0), Move("4", 5.0)]
    versions = _versions("1", ("2", False, False), ("3", True, True), "4")  # 5 was deleted
    assert previous_version("4", history, versions) == ("1", "history")


def test_previous_falls_back_to_the_highest_lower_good_version() -> None:
    versions = _versions("1", "2", ("3", True, True), "4", "5")
    assert previous_version("4", [], versions) == ("2", "fallback")
    assert previous_version("4", [Move("4", 1.0)], versions) == ("2", "fallback")


def test_no_previous_version_is_none_not_a_guess() -> None:
    assert previous_version("1", [], _versions("1", "2")) == (None, "none")
    assert previous_version("3", [Move("2", 1.0)], _versions(("2", True, True), "3")) == (None, "none")


def test_params_defaults_per_registry_and_validation() -> None:
    model = RollbackParams.model_validate({"type": "rollback", "allowed": ALLOWED})
    assert (model.alias, model.name_template, model.serving_label) == ("champion", "{{ $labels.model }}", "model_version")
    prompt = RollbackParams.model_validate({"type": "rollback", "allowed": ALLOWED, "registry": "prompt"})
    assert (prompt.name_template, prompt.serving_label) == ("{{ $labels.prompt }}", "prompt_version")
    assert RollbackParams.model_validate({"type": "rollback", "allowed": ALLOWED, "version_label": ""}).serving_label == ""
    assert ACTIONS["rollback"] is Rollback
    for bad in (
        {"alias": "latest"},
        {"alias": "has space"},
        {"name": "{{ $value }}"},
        {"registry": "dataset"},
        {"restart": {"namespace": "ml", "deploy": "x"}},
        {"aliass": "champion"},
    ):
        with pytest.raises(ValidationError):
            RollbackParams.model_validate({"type": "rollback", "allowed": ALLOWED, **bad})


def _alert(**labels: str) -> Alert:
    return Alert("fp", "r", AlertState.FIRING, labels, {}, 1.0, 0.0)


def test_target_comes_from_the_alert_labels() -> None:
    context = ActionContext(mlflow_tracking_uri="http://127.0.0.1:1")
    model = Rollback(RollbackParams.model_validate({"type": "rollback", "allowed": ALLOWED}), context)
    assert model.target(_alert(model="fraud")).key == "model/fraud"
    prompt = Rollback(
        RollbackParams.model_validate({"type": "rollback", "allowed": ALLOWED, "registry": "prompt", "name": "{{ $labels.service }}-sys"}), context
    )
    assert prompt.target(_alert(service="chat")).key == "prompt/chat-sys"
    with pytest.raises(ActionFailed, match="no label 'model'"):
        model.target(_alert(service="chat"))
    with pytest.raises(ActionFailed, match="not a registry name"):
        model.target(_alert(model="x' OR name = 'y"))


def _mlflow_error(code: str, message: str = "boom") -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    return MlflowException(message, error_code=getattr(databricks_pb2, code))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (lambda: _mlflow_error("RESOURCE_DOES_NOT_EXIST"), ActionFailed),
        (lambda: _mlflow_error("INVALID_PARAMETER_VALUE"), ActionFailed),
        (lambda: _mlflow_error("PERMISSION_DENIED"), ActionFailed),
        (lambda: _mlflow_error("UNAUTHENTICATED"), ActionFailed),
        (lambda: _mlflow_error("TEMPORARILY_UNAVAILABLE"), TransientActionError),
        (lambda: _mlflow_error("REQUEST_LIMIT_EXCEEDED"), TransientActionError),
        (lambda: _mlflow_error("INTERNAL_ERROR"), TransientActionError),
        (
            lambda: _mlflow_error("INVALID_PARAMETER_VALUE", "API request to http://x failed with exception refused"),
            TransientActionError,
        ),
        (lambda: ConnectionRefusedError("refused"), TransientActionError),
        (lambda: TimeoutError("slow"), TransientActionError),
    ],
)
def test_registry_errors_map_to_the_action_contract(error: object, expected: type[Exception]) -> None:
    with pytest.raises(expected, match="read alias"):
        with registry_errors("read alias m@champion"):
            raise error()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "db locked"}, TransientActionError),
        (403, {"error_code": "PERMISSION_DENIED", "message": "no access to model"}, ActionFailed),
        (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"}, ActionFailed),
    ],
)
def test_http_errors_of_a_registry_map_through_the_real_client(status: int, body: dict[str, str], expected: type) -> None:
    """A loopback HTTP server answering every call with ``status`` (the MLflow client itself is real)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from actions.mlflow_registry import RegistryClient

    payload = json.dumps(body).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        registry = RegistryClient(f"http://127.0.0.1:{server.server_address[1]}", "model")
        with pytest.raises(expected, match="read alias fraud@champion"):
            registry.alias_holder("fraud", "champion")
    finally:
        server.shutdown()
        server.server_close()
