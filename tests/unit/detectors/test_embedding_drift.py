"""embedding_drift: finds a population shift within a bounded number of events, stays quiet
on clean data within its false-alarm budget, and says which neighbourhoods lost mass."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import DetectorError
from agent.model import EVENT_ADAPTER
from agent.rules.loader import load_rule_file
from agent.rules.rule import RuleSet
from agent.runtime.pipeline import Pipeline
from detectors.embedding_drift import EmbeddingDrift

DIM = 128


def population(seed: int, k: int = 6):
    """Unit-norm sentence-embedding-like vectors: k topic clusters on the sphere."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k + 1, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(n: int, weights) -> list[tuple[float, ...]]:
        picks = rng.choice(len(weights), size=n, p=np.asarray(weights) / np.sum(weights))
        v = centres[picks] + 0.08 * rng.standard_normal((n, DIM))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return [tuple(row) for row in v]

    return draw


def first_active(det: EmbeddingDrift, stream, t0: float = 0.0, step: float = 1.0) -> int | None:
    for i, x in enumerate(stream):
        if det.update(x, t0 + i * step).active:
            return i
    return None


def test_quiet_on_a_week_of_clean_queries():
    draw = population(1)
    weights = [0.3, 0.25, 0.2, 0.1, 0.1, 0.05, 0.0]
    det = EmbeddingDrift(reference_size=1000, false_alarm_days=30)
    stream = draw(12_000, weights)  # one query a minute: 8 days
    alarms = sum(det.update(x, i * 60.0).active for i, x in enumerate(stream))
    assert alarms == 0


def test_a_new_population_is_found_within_a_hundred_queries_and_named():
    draw = population(2)
    weights = [0.3, 0.25, 0.2, 0.1, 0.1, 0.05, 0.0]
    det = EmbeddingDrift(reference_size=1000)
    for i, x in enumerate(draw(2000, weights)):
        assert not det.update(x, float(i)).active
    shifted = [0.15, 0.12, 0.1, 0.05, 0.05, 0.03, 0.5]  # half the queries on a topic the reference never saw
    got = None
    for j, x in enumerate(draw(500, shifted)):
        score = det.update(x, 2000.0 + j)
        if score.active:
            got = (j, score)
            break
    assert got is not None and got[0] < 100, got
    evidence = got[1].evidence
    assert evidence["statistic"] in ("vectors outside every reference neighbourhood",) or "mean" in evidence["statistic"]
    assert evidence["lost_mass"] != "none" and "->" in evidence["lost_mass"]
    assert evidence["outside_share"] > evidence["reference_outside_share"]
    # the run that fired moved far more than the 200-query window it ends (mostly from before)
    assert evidence["moved_sd"] > 0.3 and 0 < got[1].value < evidence["moved_sd"]


def test_a_mixture_shift_between_known_topics_is_found_and_the_losing_neighbourhood_named():
    draw = population(3)
    det = EmbeddingDrift(reference_size=1000, neighbourhoods=6)
    for i, x in enumerate(draw(2000, [0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.0])):
        assert not det.update(x, float(i)).active
    delay = None
    for j, x in enumerate(draw(2000, [0.02, 0.3, 0.1, 0.1, 0.1, 0.38, 0.0])):  # topic 0 all but gone
        score = det.update(x, 2000.0 + j)
        if score.active:
            delay = j
            break
    assert delay is not None and delay < 400
    lost = score.evidence["lost_mass"].split(", ")[0]  # e.g. "n2 30% -> 3%"
    before, after = (int(p.rstrip("%")) for p in lost.split(" ", 1)[1].split(" -> "))
    assert before >= 20 and after <= before / 2


def test_vectors_of_another_length_or_not_finite_are_skipped_and_counted():
    draw = population(4)
    det = EmbeddingDrift(reference_size=50)
    clean = draw(60, [1, 1, 1, 1, 1, 1, 0])
    for i, x in enumerate(clean):
        det.update(x, float(i))
    assert not det.update((1.0, 2.0), 61.0).active
    assert not det.update(tuple([float("nan")] * DIM), 62.0).active
    assert not det.update("not a vector", 63.0).active
    assert det._skipped == 3  # noqa: SLF001


def test_reference_window_learns_only_its_period():
    draw = population(5)
    det = EmbeddingDrift(reference_size=5000, reference_window=(300.0, 600.0))
    stream = draw(300, [0, 0, 0, 0, 0, 0, 1]) + draw(300, [1, 1, 1, 1, 1, 1, 0]) + draw(300, [1, 1, 1, 1, 1, 1, 0])
    verdicts = [det.update(x, float(i)) for i, x in enumerate(stream)]
    # before the window: an unrelated population, not learned; in it: the reference
    assert not any(v.active for v in verdicts)
    assert det._ref_n == 300  # noqa: SLF001


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"reference_size": 5}, "reference_size"),
        ({"projections": 0}, "projections"),
        ({"projections": 1000}, "projections"),
        ({"neighbourhoods": 1}, "neighbourhoods"),
        ({"mass_ratio": 1.0}, "mass_ratio"),
        ({"mean_shifts_sd": (0.0,)}, "mean_shifts_sd"),
        ({"false_alarm_days": 0}, "false_alarm_days"),
        ({"seed": -1}, "seed"),
        ({"reference_window": (5, 1)}, "reference_window"),
    ],
)
def test_bad_parameters_fail_at_load_time(params, fragment):
    with pytest.raises(DetectorError, match=fragment):
        EmbeddingDrift(**params)


def test_a_rule_feeds_event_embeddings_to_the_detector():
    rules = load_rule_file("q.yaml", """
groups:
  - name: g
    rules:
      - alert: QueryDrift
        source: retrieval
        by: [service, index]
        detector: {kind: embedding_drift, field: embedding, reference_size: 200, window_size: 20}
""")
    pipeline = Pipeline(RuleSet(tuple(rules)))
    draw = population(6)
    stream = draw(400, [1, 1, 1, 1, 1, 1, 0]) + draw(200, [0, 0, 0, 0, 0, 0, 1])
    fired = []
    for i, x in enumerate(stream):
        event = {"type": "retrieval", "ts": 1_700_000_000.0 + i, "service": "rag", "index": "docs", "index_version": "1",
                 "latency_ms": 5.0, "k": 5, "hits": 5, "status": "ok", "embedding": list(x)}  # fmt: skip
        fired += [a for a in pipeline.process(EVENT_ADAPTER.validate_python(event)) if a.state.value == "firing"]
    assert fired and fired[0].labels["index"] == "docs" and fired[0].evidence["reference_events"] == 200
