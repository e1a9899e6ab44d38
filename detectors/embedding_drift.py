"""Drift of query or response embeddings against a reference, budgeted in time like ``drift``."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from agent.errors import DetectorError
from agent.model import Score

from ._embedding import RankNormal, bernoulli_llr, gaussian_threshold, inflate, kmeans, lundberg, projection
from ._rank_cusum import finite
from ._reference import MIN_REFERENCE, parse_window, source_label
from .base import Detector

__all__ = ["EmbeddingDrift"]

_QUIET: Mapping[str, Any] = MappingProxyType({})
_DAY_S = 86_400.0
_RATE_STEP = 1.05  # thresholds follow the event rate when it moves by more than 5 %
_OUTSIDE_Q = 0.99  # a vector farther from every centre than 99 % of the reference is "outside"
_Z_BOUND = 2.0  # reference shares are tested at their 2-sigma bound, never at the point estimate
_CAP = 1.5  # a CUSUM stops at 1.5 thresholds, so a verdict ends soon after the vectors come back
_Z_CLIP = 6.0  # coordinate scores are clipped to +-6 reference sd: one wild value is bounded evidence
_CLUSTER_DIMS = 64  # neighbourhoods are found in a 64-d projection: topics stay apart (JL), centres stay small


class EmbeddingDrift(Detector):
    """Detect that embeddings (queries a RAG service receives, or the answers it writes)
    moved away from a reference population.

    Use it on ``embedding`` of ``retrieval`` events (the queries) or of ``llm`` events
    (the responses): a new user population, a product launch or a broken upstream
    encoder moves the vectors long before any single number does. Each vector is
    reduced by a seeded Gaussian random projection to 64 dimensions (Johnson-Lindenstrauss:
    distances and cluster structure survive; the matrix is rebuilt from the seed, never
    stored), of which the first ``projections`` are tested one by one. The reference is the first
    ``reference_size`` vectors of the series or the vectors of a ``reference_window``.
    From it the detector keeps, per projected dimension, 128 quantile knots that map a
    value to a standard normal score (so clusters look Gaussian while they match the
    reference), and ``neighbourhoods`` k-means centres with the share of the reference
    nearest to each, and the distance beyond which a vector is "outside" (the
    reference's 99th percentile).

    Four families of one-sided CUSUMs watch every later vector: the mean of each
    projected dimension moving up or down by ``mean_shifts_sd`` reference sd (normal
    scores); the mean of each embedding coordinate moving by ``coordinate_shift_sd``
    reference sd (scores standardised by the reference and clipped at 6 sd, thresholds
    divided by the Lundberg exponent of the reference's own scores, so sparse, heavy-tailed
    coordinates such as hashed features keep the budget: a new topic whose words own a
    few coordinates is invisible to a random projection but plain on those coordinates);
    each neighbourhood's share falling to ``1/mass_ratio`` of its reference
    share or rising ``mass_ratio`` times, and the share of vectors outside every
    neighbourhood rising. The verdict is active while a CUSUM is over its threshold
    (until all fall under half of theirs). The false-alarm budget is in time, as in
    ``drift``: at most one false alert per ``false_alarm_days`` at the series' event
    rate ``r`` (estimated online). With ``M`` CUSUMs each gets an in-control run length
    ``ARL0 = M * r * false_alarm_days * 86400`` events (union bound): Bernoulli CUSUMs
    threshold at ``ln ARL0`` (Lorden: their likelihood ratio is a martingale, so the bound
    holds whatever the vectors' law), tested against the 2-sigma bound of each reference
    share, so a share measured from a small reference does not eat the budget; Gaussian
    ones at Siegmund's threshold, raised for the reference's own sampling error as
    ``drift`` does (shifts too small to confirm from the reference are skipped); the
    coordinate ones at ``ln ARL0 / theta`` raised the same way. While it learns, the
    reference is held as float16 vectors (2 bytes a coordinate: 0.75 MB for 1000 vectors
    of 384), then summarised in about 150 KB (mostly the per-coordinate tests and the
    evidence window).

    The verdict's value is how far the last ``window_size`` vectors moved (``moved_sd``:
    the root mean square of their mean normal score over the tested dimensions; about
    ``1/sqrt(window)`` when nothing moved). The evidence says which test fired and, over
    that test's current run (the vectors since its CUSUM last left zero, 20 to
    ``window_size`` of them), how far they moved and which reference neighbourhoods lost
    and gained mass (``n3 31% -> 4%``). A CUSUM stops at 1.5 times
    its threshold, so the verdict ends once the vectors are back long enough to undo half
    a threshold's evidence. Vectors of another length
    than the first are ignored (counted in ``skipped``).

    Parameters
    ----------
    reference_size
        Vectors learned as the reference: the first of the series, or, with a
        ``reference_window`` that passed before the series began, the first after it.
        They are held as 64 floats each until the reference is complete, then
        summarised in a few tens of KB.
    reference_window
        ``[start, end]`` (RFC 3339 times or epoch seconds): the vectors of this period
        of event time are the reference, earlier ones are not learned, and the first
        vector at or after ``end`` completes it.
    false_alarm_days
        The false-alarm budget: at most one false drift alert per this many days at
        the series' event rate.
    projections
        Random projections the vectors are reduced to (each adds two mean CUSUMs per
        shift); more see smaller moves, each costs a few microseconds.
    neighbourhoods
        k-means centres of the reference whose shares are watched (two CUSUMs each).
    mean_shifts_sd
        Mean shifts per projected dimension to watch for, in reference sd.
    mass_ratio
        A neighbourhood's share falling to ``1/mass_ratio`` or rising ``mass_ratio``
        times its reference share is the change its CUSUMs are tuned for.
    coordinate_shift_sd
        Mean shift per embedding coordinate to watch for, in reference sd (two CUSUMs
        per coordinate); ``None`` tests projections and neighbourhoods only.
    window_size
        Most recent vectors summarised in the evidence.
    seed
        Seed of the projection and of k-means: the same seed gives the same verdicts.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.embedding_drift import EmbeddingDrift
    >>> rng = np.random.default_rng(7)
    >>> centres = rng.standard_normal((4, 64))
    >>> def batch(n, weights):
    ...     picks = rng.choice(4, size=n, p=weights)
    ...     return [tuple(centres[c] + 0.5 * rng.standard_normal(64)) for c in picks]
    >>> stream = batch(3000, [0.25] * 4) + batch(1000, [0.05, 0.05, 0.1, 0.8])
    >>> det = EmbeddingDrift(reference_size=1000)
    >>> first = next(i for i, x in enumerate(stream) if det.update(x, ts=float(i)).active)
    >>> 3000 < first < 3100
    True

    References
    ----------
    Johnson, W. B., Lindenstrauss, J. (1984). Extensions of Lipschitz mappings into a
    Hilbert space. Contemporary Mathematics 26, 189-206.
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    Lorden, G. (1971). Procedures for reacting to a change in distribution. The Annals
    of Mathematical Statistics 42(6), 1897-1908.
    Rabanser, S., Guennemann, S., Lipton, Z. (2019). Failing loudly: an empirical study
    of methods for detecting dataset shift. NeurIPS (random projections for shift).

    """

    kind = "embedding_drift"
    observes = "vector"

    def __init__(
        self,
        *,
        reference_size: int = 1000,
        reference_window: tuple | None = None,
        false_alarm_days: float = 30.0,
        projections: int = 16,
        neighbourhoods: int = 8,
        mean_shifts_sd: tuple[float, ...] = (0.5, 1.0),
        mass_ratio: float = 2.0,
        coordinate_shift_sd: float | None = 1.0,
        window_size: int = 200,
        seed: int = 0,
    ) -> None:
        self.reference_size = _int_at_least("reference_size", reference_size, MIN_REFERENCE)
        window = parse_window(reference_window)
        self.reference_window = None if window is None else tuple(window)
        if not finite(false_alarm_days) or false_alarm_days <= 0:
            raise DetectorError(f"false_alarm_days must be a positive number of days, got {false_alarm_days!r}")
        self.false_alarm_days = float(false_alarm_days)
        self.projections = _int_at_least("projections", projections, 1, most=256)
        self.neighbourhoods = _int_at_least("neighbourhoods", neighbourhoods, 2, most=64)
        if not isinstance(mean_shifts_sd, (tuple, list)) or not all(finite(d) and d > 0 for d in mean_shifts_sd):
            raise DetectorError(f"mean_shifts_sd must be a list of positive numbers, got {mean_shifts_sd!r}")
        self.mean_shifts_sd = tuple(float(d) for d in mean_shifts_sd)
        if not finite(mass_ratio) or mass_ratio <= 1.0:
            raise DetectorError(f"mass_ratio must be a number > 1, got {mass_ratio!r}")
        self.mass_ratio = float(mass_ratio)
        if coordinate_shift_sd is not None and (not finite(coordinate_shift_sd) or coordinate_shift_sd <= 0):
            raise DetectorError(f"coordinate_shift_sd must be a positive number or null, got {coordinate_shift_sd!r}")
        self.coordinate_shift_sd = None if coordinate_shift_sd is None else float(coordinate_shift_sd)
        self.window_size = _int_at_least("window_size", window_size, 1, most=10_000)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise DetectorError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self._clear()

    def _clear(self) -> None:
        self._dim: int | None = None
        self._proj: np.ndarray | None = None
        self._learning: list[np.ndarray] = []  # raw reference vectors, float16 until the fit
        self._coord_mean = np.zeros(0)
        self._coord_sd = np.zeros(0)
        self._coord_theta = np.zeros(0)  # Lundberg exponent per coordinate test (1 when Gaussian)
        self._from_window = False
        self._ref_n = 0
        self._rank: RankNormal | None = None
        self._centres = np.zeros((0, 0))
        self._shares = np.zeros(0)
        self._radius = math.inf
        self._outside_p = 0.0
        self._llr_hit = np.zeros(0)
        self._llr_miss = np.zeros(0)
        self._cusum = np.zeros(0)
        self._run = np.zeros(0, dtype=np.int64)  # events since each CUSUM was last zero
        self._threshold = np.zeros(0)
        self._rate_used = 0.0
        self._first_ts: float | None = None
        self._seen = 0
        self._skipped = 0
        self._active = False
        self._win_z = np.zeros((0, 0))
        self._win_c = np.zeros(0, dtype=np.int64)
        self._win_n = 0
        self._win_at = 0
        self._win_sum = np.zeros(self.projections)
        self._slope, self._drag = self._mean_llr_terms()

    # --- the hot path -----------------------------------------------------------------
    def update(self, x: Any, ts: float) -> Score:
        vector = self._vector(x)
        if vector is None:
            return Score(1.0 if self._active else 0.0, self._active, math.nan, _QUIET)
        if self._rank is None:
            self._learn(vector, ts)
            return Score(0.0, False, math.nan, _QUIET)
        return self._test(vector, ts)

    def _vector(self, x: Any) -> np.ndarray | None:
        try:
            vector = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            vector = None
        if vector is None or vector.ndim != 1 or vector.size == 0 or not np.all(np.isfinite(vector)):
            self._skipped += 1
            return None
        if self._dim is None:
            self._dim = int(vector.size)
        elif vector.size != self._dim:
            self._skipped += 1
            return None
        return vector

    def _projection(self) -> np.ndarray:
        if self._proj is None:
            assert self._dim is not None
            self._proj = projection(self._dim, max(self.projections, _CLUSTER_DIMS), self.seed)
        return self._proj

    def _learn(self, vector: np.ndarray, ts: float) -> None:
        window = self.reference_window
        if window is not None and not self._from_window and ts < window[0]:
            return  # before the named period: not learned
        if window is not None and window[0] <= ts < window[1]:
            self._from_window = True
            self._learning.append(vector.astype(np.float16))
            return
        if self._from_window and len(self._learning) >= MIN_REFERENCE:
            self._fit(ts)  # the first vector at or after the window's end completes it
            return
        self._from_window = False
        self._learning.append(vector.astype(np.float16))
        if len(self._learning) >= self.reference_size:
            self._fit(ts)

    def _fit(self, ts: float) -> None:
        raw = np.array(self._learning, dtype=np.float64)
        self._learning = []
        ref = raw @ self._projection()  # the first `projections` columns are the tested ones
        self._ref_n = len(ref)
        self._fit_coordinates(raw)
        self._rank = RankNormal.fit(ref[:, : self.projections])
        self._centres = kmeans(ref, self.neighbourhoods, self.seed)
        dist = np.sqrt(((ref[:, None, :] - self._centres[None]) ** 2).sum(-1))
        nearest = dist.argmin(1)
        self._shares = np.bincount(nearest, minlength=len(self._centres)) / self._ref_n
        self._radius = float(np.quantile(dist.min(1), _OUTSIDE_Q))
        self._outside_p = float(np.mean(dist.min(1) > self._radius))
        self._llr_hit, self._llr_miss = self._mass_llrs()
        self._cusum = np.zeros(self._mean_tests() + len(self._coord_theta) + len(self._llr_hit))
        self._run = np.zeros(len(self._cusum), dtype=np.int64)
        self._win_z = np.zeros((self.window_size, self.projections))
        self._win_c = np.zeros(self.window_size, dtype=np.int64)
        self._first_ts, self._seen = ts, 0
        self._thresholds(1.0)

    def _fit_coordinates(self, raw: np.ndarray) -> None:
        """Per coordinate a mean-up and a mean-down CUSUM on scores standardised by the
        reference, thresholds divided by the Lundberg exponent of the reference's own
        scores: a sparse coordinate (mostly 0, now and then large, as in hashed features)
        gets the higher threshold its tails need, a Gaussian one the plain threshold."""
        if self.coordinate_shift_sd is None:
            return
        d = self.coordinate_shift_sd
        self._coord_mean = raw.mean(0)
        self._coord_sd = raw.std(0)
        z = self._coord_z(raw)
        llr = np.concatenate((d * z - d * d / 2.0, -d * z - d * d / 2.0), axis=1)
        self._coord_theta = np.where(np.concatenate((self._coord_sd, self._coord_sd)) > 0, lundberg(llr), 0.0)

    def _coord_z(self, raw: np.ndarray) -> np.ndarray:
        sd = np.where(self._coord_sd > 0, self._coord_sd, 1.0)
        return np.clip((raw - self._coord_mean) / sd, -_Z_CLIP, _Z_CLIP)

    def _mean_tests(self) -> int:
        return 2 * len(self.mean_shifts_sd) * self.projections

    def _mean_llr_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean CUSUMs' log-likelihood ratio ``slope * z - drag`` (``+-d z - d^2/2``),
        one entry per (shift, direction, dimension), in ``_statistic``'s order."""
        m = self.projections
        slope = np.concatenate([np.full(m, sign * d) for d in self.mean_shifts_sd for sign in (1.0, -1.0)])
        return slope, slope * slope / 2.0

    def _mass_llrs(self) -> tuple[np.ndarray, np.ndarray]:
        """Per neighbourhood a loss and a gain test, then one "outside" test, each against
        the 2-sigma bound of its reference share on the side that makes it harder."""
        n, ratio = self._ref_n, self.mass_ratio
        p = np.clip(self._shares, 0.5 / n, 1.0 - 0.5 / n)
        sd = np.sqrt(p * (1.0 - p) / n)
        lo = np.clip(p - _Z_BOUND * sd, 0.5 / n, None)
        hi = np.clip(p + _Z_BOUND * sd, None, 1.0 - 0.5 / n)
        out = min(max(self._outside_p, 0.5 / n) + _Z_BOUND * math.sqrt(max(self._outside_p, 0.5 / n) / n), 0.5)
        p0 = np.concatenate([lo, hi, [out]])
        p1 = np.concatenate([lo / ratio, np.minimum(hi * ratio, (1.0 + hi) / 2.0), [min(max(out * ratio, 0.1), 0.9)]])
        p1 = np.where(p1 == p0, p0 * 0.5, p1)
        return bernoulli_llr(p0, p1)

    def _thresholds(self, rate: float) -> None:
        self._rate_used = rate
        arl0 = len(self._cusum) * rate * self.false_alarm_days * _DAY_S
        mean = [gaussian_threshold(d, arl0, self._ref_n) for d in self.mean_shifts_sd for _ in range(2 * self.projections)]
        mass = [max(math.log(arl0), 1.0)] * len(self._llr_hit)
        coord = np.zeros(0)
        if len(self._coord_theta):
            d = self.coordinate_shift_sd or 1.0
            base = max(math.log(arl0), 1.0)
            with np.errstate(divide="ignore"):
                coord = np.array([inflate(base / t, 2.0 / (self._ref_n * d * d)) if t > 0 else math.inf for t in self._coord_theta])
        self._threshold = np.concatenate((np.array(mean), coord, np.array(mass)))

    def _test(self, vector: np.ndarray, ts: float) -> Score:
        assert self._rank is not None and self._first_ts is not None
        y = vector @ self._projection()
        self._seen += 1
        rate = self._seen / max(ts - self._first_ts, 1.0)
        if not self._rate_used / _RATE_STEP <= rate <= self._rate_used * _RATE_STEP:
            self._thresholds(rate)
        z = self._rank.scores(y[: self.projections])
        dist = np.sqrt(((self._centres - y) ** 2).sum(1))
        nearest = int(dist.argmin())
        outside = bool(dist[nearest] > self._radius)
        mass = self._llr_miss.copy()
        if outside:
            mass[-1] = self._llr_hit[-1]
        else:
            k = len(self._centres)
            mass[[nearest, k + nearest]] = self._llr_hit[[nearest, k + nearest]]
        copies = 2 * len(self.mean_shifts_sd)
        parts = [self._slope * np.tile(z, copies) - self._drag]
        if len(self._coord_theta):
            d = self.coordinate_shift_sd or 1.0
            zc = self._coord_z(vector)
            parts += [d * zc - d * d / 2.0, -d * zc - d * d / 2.0]
        llr = np.concatenate((*parts, mass))
        self._cusum = np.minimum(np.maximum(self._cusum + llr, 0.0), _CAP * self._threshold)
        self._run = np.where(self._cusum > 0.0, self._run + 1, 0)
        self._remember(z, nearest if not outside else -1)
        ratios = self._cusum / self._threshold
        top = int(ratios.argmax())
        worst = float(ratios[top])
        if self._active:
            self._active = worst >= 0.5
        else:
            self._active = worst >= 1.0
        moved = self._moved()
        if not self._active:
            return Score(min(worst, 1.0), False, moved, _QUIET)
        return Score(min(worst, 1.0), True, moved, self._evidence(top, moved))

    def _remember(self, z: np.ndarray, cell: int) -> None:
        self._win_sum += z - self._win_z[self._win_at]
        self._win_z[self._win_at] = z
        self._win_c[self._win_at] = cell
        self._win_at = (self._win_at + 1) % self.window_size
        self._win_n = min(self._win_n + 1, self.window_size)

    def _moved(self) -> float:
        if self._win_n == 0:
            return 0.0
        mean = self._win_sum / self._win_n
        return float(np.sqrt(mean @ mean / len(mean)))

    # --- evidence ---------------------------------------------------------------------
    def _recent(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Normal scores and neighbourhoods of the last ``n`` vectors (n <= window)."""
        rows = (self._win_at - 1 - np.arange(n)) % self.window_size
        return self._win_z[rows], self._win_c[rows]

    def _shares_of(self, cells: np.ndarray) -> tuple[np.ndarray, float]:
        counts = np.bincount(cells[cells >= 0], minlength=len(self._centres))
        return counts / max(len(cells), 1), float(np.mean(cells < 0)) if len(cells) else 0.0

    def _statistic(self, top: int) -> str:
        means = self._mean_tests()
        if top < means:
            block, dim = divmod(top, self.projections)
            shift, sign = self.mean_shifts_sd[block // 2], ("up" if block % 2 == 0 else "down")
            return f"projection {dim} mean {sign} {shift:g} sd"
        coords = len(self._coord_theta)
        if top < means + coords:
            coord, sign = (top - means) % (coords // 2), ("up" if top - means < coords // 2 else "down")
            return f"coordinate {coord} mean {sign} {self.coordinate_shift_sd:g} sd"
        k = len(self._centres)
        cell = top - means - coords
        if cell < k:
            return f"neighbourhood n{cell} lost mass"
        if cell < 2 * k:
            return f"neighbourhood n{cell - k} gained mass"
        return "vectors outside every reference neighbourhood"

    def _evidence(self, top: int, moved: float) -> dict[str, Any]:
        # "now" is the run of the test that fired (the events since its CUSUM last left
        # zero, at least 20 and at most the window): what moved, not diluted by before
        n = int(min(max(self._run[top], 20), self._win_n))
        z, cells = self._recent(n)
        now, outside = self._shares_of(cells)
        mean = z.mean(0)
        moved = float(np.sqrt(mean @ mean / len(mean)))
        delta = now - self._shares
        lost = [int(j) for j in np.argsort(delta) if delta[j] < 0][:3]
        gained = [int(j) for j in np.argsort(-delta) if delta[j] > 0][:3]
        return {
            "statistic": self._statistic(top),
            "moved_sd": round(moved, 4),
            "lost_mass": ", ".join(f"n{j} {self._shares[j]:.0%} -> {now[j]:.0%}" for j in lost) or "none",
            "gained_mass": ", ".join(f"n{j} {self._shares[j]:.0%} -> {now[j]:.0%}" for j in gained) or "none",
            "outside_share": round(outside, 4),
            "reference_outside_share": round(self._outside_p, 4),
            "cusum": round(float(self._cusum[top]), 3),
            "threshold": round(float(self._threshold[top]), 3),
            "window_events": n,
            "reference_events": self._ref_n,
            "reference_source": source_label(False, self.reference_window, self._from_window, self._ref_n),
            "skipped": self._skipped,
            "false_alarm_days": self.false_alarm_days,
        }

    # --- checkpoints ------------------------------------------------------------------
    def _dump(self) -> Any:
        fitted = self._rank is not None
        return {
            "dim": self._dim,
            "learning": base64.b64encode(np.array(self._learning, dtype=np.float16).tobytes()).decode() if self._learning else "",
            "coord_mean": self._coord_mean.tolist(),
            "coord_sd": self._coord_sd.tolist(),
            "coord_theta": self._coord_theta.tolist(),
            "from_window": self._from_window,
            "ref_n": self._ref_n,
            "knots": self._rank.knots.tolist() if fitted else None,
            "centres": self._centres.tolist(),
            "shares": self._shares.tolist(),
            "radius": self._radius if fitted else None,
            "outside_p": self._outside_p,
            "cusum": self._cusum.tolist(),
            "run": self._run.tolist(),
            "rate_used": self._rate_used,
            "first_ts": self._first_ts,
            "seen": self._seen,
            "skipped": self._skipped,
            "active": self._active,
            "win_z": self._win_z.tolist() if fitted else None,
            "win_c": self._win_c.tolist(),
            "win_n": self._win_n,
            "win_at": self._win_at,
        }

    def _load(self, state: Any) -> None:
        self._clear()
        self._dim = state["dim"]
        if state["learning"]:
            flat = np.frombuffer(base64.b64decode(state["learning"]), dtype=np.float16)
            self._learning = list(flat.reshape(-1, self._dim).copy())
        self._coord_mean = np.array(state["coord_mean"], dtype=np.float64)
        self._coord_sd = np.array(state["coord_sd"], dtype=np.float64)
        self._coord_theta = np.array(state["coord_theta"], dtype=np.float64)
        self._from_window = bool(state["from_window"])
        self._ref_n = int(state["ref_n"])
        self._first_ts, self._seen, self._skipped = state["first_ts"], int(state["seen"]), int(state["skipped"])
        self._active = bool(state["active"])
        if state["knots"] is None:
            return
        self._rank = RankNormal(np.array(state["knots"], dtype=np.float64))
        self._centres = np.array(state["centres"], dtype=np.float64)
        self._shares = np.array(state["shares"], dtype=np.float64)
        self._radius = float(state["radius"])
        self._outside_p = float(state["outside_p"])
        self._llr_hit, self._llr_miss = self._mass_llrs()
        self._cusum = np.array(state["cusum"], dtype=np.float64)
        self._run = np.array(state["run"], dtype=np.int64)
        self._thresholds(float(state["rate_used"]))
        self._win_z = np.array(state["win_z"], dtype=np.float64).reshape(self.window_size, self.projections)
        self._win_c = np.array(state["win_c"], dtype=np.int64)
        self._win_n, self._win_at = int(state["win_n"]), int(state["win_at"])
        self._win_sum = self._win_z.sum(0)

    # --- contract tests ---------------------------------------------------------------
    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"reference_size": 120, "window_size": 50}

    @classmethod
    def _unit_test_stream(cls, seed: int, n: int = 400) -> list[tuple[float, Any]]:
        """Vectors of 32 dimensions from four clusters; the second half comes from a fifth."""
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((5, 32))
        out = []
        for i in range(n):
            c = int(rng.integers(4)) if i < n // 2 else 4
            out.append((float(i), tuple(float(v) for v in centres[c] + 0.3 * rng.standard_normal(32))))
        return out


def _int_at_least(name: str, value: Any, least: int, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least or (most is not None and value > most):
        bound = f"between {least} and {most}" if most is not None else f">= {least}"
        raise DetectorError(f"{name} must be an integer {bound}, got {value!r}")
    return value
