"""The embedding-drift detector's pieces: seeded random projections, a rank-normal map
per projected dimension, k-means neighbourhoods of the reference, and CUSUM thresholds.

Kept apart from the detector so each piece reads (and is tested) on its own, and so the
detector module is about when to learn, test and speak.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["QUANTILES", "RankNormal", "bernoulli_llr", "gaussian_threshold", "inflate", "kmeans", "lundberg", "projection"]

QUANTILES = 128  # knots per projected dimension: rank-normal scores to about 1/128 resolution
_SIEGMUND = 1.166  # overshoot correction of a Gaussian CUSUM, in sd units


def projection(dim: int, count: int, seed: int) -> np.ndarray:
    """A ``dim x count`` Gaussian projection (Johnson-Lindenstrauss), rebuilt from the seed.

    Never stored: a checkpoint holds the seed and the dimension, and the same matrix
    comes back. Columns are scaled by ``1/sqrt(dim)`` so projected values keep the
    scale of the embedding's coordinates.
    """
    rng = np.random.default_rng([seed, dim, count])
    return rng.standard_normal((dim, count)) / math.sqrt(dim)


class RankNormal:
    """Each projected dimension mapped through the reference's empirical distribution to a
    standard normal score, so a multimodal projection (clusters) looks Gaussian while it
    matches the reference; ``QUANTILES`` knots per dimension, a few KB in all."""

    def __init__(self, knots: np.ndarray) -> None:
        self.knots = knots  # shape (dims, QUANTILES), each row sorted
        probs = (np.arange(knots.shape[1]) + 0.5) / knots.shape[1]
        self.z = np.array([NormalDist().inv_cdf(float(p)) for p in probs])

    @classmethod
    def fit(cls, reference: np.ndarray) -> "RankNormal":
        probs = (np.arange(QUANTILES) + 0.5) / QUANTILES
        return cls(np.quantile(reference, probs, axis=0).T.copy())

    def scores(self, y: np.ndarray) -> np.ndarray:
        """Normal scores of one projected vector (clipped to the outermost knots): a linear
        interpolation between knots, done for all dimensions at once."""
        last = self.knots.shape[1] - 1
        above = np.count_nonzero(self.knots < y[:, None], axis=1)
        lo = np.clip(above - 1, 0, last)
        hi = np.minimum(above, last)
        rows = np.arange(len(y))
        k_lo, k_hi = self.knots[rows, lo], self.knots[rows, hi]
        gap = k_hi - k_lo
        frac = np.divide(y - k_lo, gap, out=np.zeros_like(y), where=gap > 0)
        return self.z[lo] + frac * (self.z[hi] - self.z[lo])


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 25, restarts: int = 4) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding, best of ``restarts``: the reference's
    neighbourhoods (a single run may merge two topics and split a third)."""
    rng = np.random.default_rng(seed)
    k = min(k, len(points))
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = _lloyd(points, _plus_plus(points, k, rng), iterations)
        inertia = float(((points[:, None, :] - centres[None]) ** 2).sum(-1).min(1).sum())
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    assert best is not None
    return best


def _plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [points[int(rng.integers(len(points)))]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        total = float(d2.sum())
        pick = int(rng.integers(len(points))) if total <= 0 else int(rng.choice(len(points), p=d2 / total))
        centres.append(points[pick])
    return np.array(centres)


def _lloyd(points: np.ndarray, c: np.ndarray, iterations: int) -> np.ndarray:
    for _ in range(iterations):
        nearest = ((points[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        moved = np.array([points[nearest == j].mean(0) if np.any(nearest == j) else c[j] for j in range(len(c))])
        if np.allclose(moved, c):
            break
        c = moved
    return c


def bernoulli_llr(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood ratios of a hit (x = 1) and a miss (x = 0) for p0 -> p1."""
    return np.log(p1 / p0), np.log((1.0 - p1) / (1.0 - p0))


def gaussian_threshold(shift: float, arl0: float, reference_n: int) -> float:
    """Decision level of a one-sided Gaussian CUSUM for a ``shift`` sd mean change with
    in-control run length ``arl0`` (Siegmund), raised for a reference of ``reference_n``
    values whose mean is itself off by about ``1/sqrt(n)`` sd (as ``drift`` does: solve
    ``u - a u^2 = ln(arl0 d^2/2) - 1.166 d`` with ``a = 2/(n d^2)``); inf when a shift this
    small cannot be confirmed from so small a reference."""
    u0 = max(math.log(arl0 * shift * shift / 2.0) - _SIEGMUND * shift, 1.0)
    return inflate(u0, 2.0 / (reference_n * shift * shift))


def inflate(u0: float, a: float) -> float:
    """Smallest ``u`` with ``u - a u^2 = u0`` (inf when there is none): a threshold raised
    for a reference mean known only to about ``1/sqrt(n)`` sd (``a = 2/(n d^2)``)."""
    disc = 1.0 - 4.0 * a * u0
    if disc <= 0.0:
        return math.inf
    return (1.0 - math.sqrt(disc)) / (2.0 * a)


def lundberg(llr: np.ndarray, top: float = 4.0) -> np.ndarray:
    """Per column, the ``theta > 0`` with ``mean(exp(theta * llr)) = 1`` over the rows (the
    reference): a CUSUM of these increments crosses ``h`` with probability about
    ``exp(-theta h)`` (Cramer-Lundberg), so its threshold is ``ln(ARL0) / theta``. Gaussian
    increments give 1; heavy tails less. Columns that never go up get ``top``."""
    lo = np.full(llr.shape[1], 1e-4)
    hi = np.full(llr.shape[1], top)
    for _ in range(40):
        mid = (lo + hi) / 2.0
        above = np.log(np.mean(np.exp(np.minimum(mid * llr, 700.0)), axis=0)) > 0.0
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return lo
