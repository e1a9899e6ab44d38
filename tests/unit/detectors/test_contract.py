"""Contract tests every registered detector must pass (river's check_estimator, in small)."""

from __future__ import annotations

import copy
import inspect
import math

import pytest

from agent.model import Score
from detectors.registry import DETECTORS

KINDS = sorted(DETECTORS)


def _stream(cls, seed: int) -> list[tuple[float, object]]:
    return cls._unit_test_stream(seed)


def _run(detector, stream):
    return [(s.score, s.active, s.value) for s in (detector.update(x, ts) for ts, x in stream)]


def _params(cls):
    """Parameters under which the detector must find the fault in its contract stream."""
    return cls._unit_test_params()


@pytest.mark.parametrize("kind", KINDS)
def test_registry_key_is_module_and_kind(kind):
    cls = DETECTORS[kind]
    assert cls.kind == kind
    assert cls.__module__ == f"detectors.{kind}"


@pytest.mark.parametrize("kind", KINDS)
def test_has_docstring_with_parameters_and_example(kind):
    doc = inspect.getdoc(DETECTORS[kind]) or ""
    assert "Parameters" in doc and "Examples" in doc and ">>>" in doc
    for name in DETECTORS[kind].param_names():
        assert name in doc, f"parameter {name} is not documented"


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_are_keyword_only_with_immutable_defaults(kind):
    sig = inspect.signature(DETECTORS[kind].__init__)
    for name, p in sig.parameters.items():
        if name == "self":
            continue
        assert p.kind is p.KEYWORD_ONLY, name
        assert isinstance(p.default, (int, float, str, tuple, type(None), bool)), name


@pytest.mark.parametrize("kind", KINDS)
def test_builds_with_defaults_and_stores_params(kind):
    cls = DETECTORS[kind]
    det = cls()
    for name in cls.param_names():
        assert hasattr(det, name)
    assert repr(det).startswith(cls.__name__ + "(")


@pytest.mark.parametrize("kind", KINDS)
def test_scores_are_in_unit_interval_and_deterministic(kind):
    cls = DETECTORS[kind]
    stream = _stream(cls, 1)
    a = _run(cls(**_params(cls)), stream)
    b = _run(cls(**_params(cls)), stream)
    assert a == b
    assert all(0.0 <= s <= 1.0 for s, _, _ in a)
    assert any(active for _, active, _ in a), "the synthetic level shift must be detected"
    half = len(stream) // 2
    assert not any(active for _, active, _ in a[: half * 3 // 4]), "no verdict on the clean half"


@pytest.mark.parametrize("kind", KINDS)
def test_update_returns_score_and_does_not_touch_input(kind):
    cls = DETECTORS[kind]
    det = cls(**_params(cls))
    ts, x = _stream(cls, 4)[0]
    before = copy.deepcopy((x, ts))
    assert isinstance(det.update(x, ts), Score)
    assert (x, ts) == before


@pytest.mark.parametrize("kind", KINDS)
def test_observes_a_known_kind(kind):
    assert DETECTORS[kind].observes in ("number", "category", "vector")


@pytest.mark.parametrize("kind", KINDS)
def test_reset_behaves_like_new(kind):
    cls = DETECTORS[kind]
    stream = _stream(cls, 2)
    used = cls(**_params(cls))
    _run(used, stream)
    used.reset()
    assert _run(used, stream) == _run(cls(**_params(cls)), stream)


@pytest.mark.parametrize("kind", KINDS)
def test_state_round_trip_continues_identically(kind):
    cls = DETECTORS[kind]
    stream = _stream(cls, 3)
    whole = cls(**_params(cls))
    expected = _run(whole, stream)
    first = cls(**_params(cls))
    head = _run(first, stream[:250])
    restored = cls.restore(first.state())
    tail = _run(restored, stream[250:])
    got = head + tail
    assert len(got) == len(expected)
    for (s1, a1, v1), (s2, a2, v2) in zip(got, expected, strict=True):
        assert (s1, a1) == (s2, a2)
        assert math.isclose(s1, s2, rel_tol=1e-9, abs_tol=1e-12)
        assert (math.isnan(v1) and math.isnan(v2)) or math.isclose(v1, v2, rel_tol=1e-9, abs_tol=1e-12)
