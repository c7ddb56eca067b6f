"""Routing-quality metrics (RouteLLM's definitions), shared by the benchmark and its tests.

A *routing score* ranks prompts: the higher, the more the strong model is wanted.
Sweeping the threshold from "nobody" to "everybody" sends the top-k prompts to the
strong model for k = 0..n, i.e. the strong-call share k/n goes 0 → 100%.

* perf(k): mean correctness when the top-k go to strong and the rest to weak.
* PGR(k) = (perf(k) − perf(weak)) / (perf(strong) − perf(weak)).
* APGR: area under PGR vs share on [0, 1] (trapezoid over the n + 1 points).
* CPT(x): the smallest share k/n with PGR(k) ≥ x (1.0 if never reached... which
  cannot happen for x ≤ 1, since PGR(n) = 1).

Ties in the score are broken by a seeded random permutation, so a constant score
behaves like random routing.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pgr_curve(score: Any, weak: Any, strong: Any, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(shares, PGR) for k = 0..n prompts sent to the strong model, highest score first."""
    score = np.asarray(score, dtype=float)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    n = score.size
    tie = np.random.default_rng(seed).random(n)
    order = np.lexsort((tie, -score))
    gain = (strong - weak)[order]
    perf = (weak.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n
    gap = strong.mean() - weak.mean()
    if gap == 0:
        raise ValueError("strong and weak perform equally: PGR is undefined")
    shares = np.arange(n + 1) / n
    return shares, (perf - weak.mean()) / gap


def apgr(score: Any, weak: Any, strong: Any, *, seed: int = 0) -> float:
    shares, pgr = pgr_curve(score, weak, strong, seed=seed)
    return float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(shares)))


def cpt(score: Any, weak: Any, strong: Any, x: float, *, seed: int = 0) -> float:
    shares, pgr = pgr_curve(score, weak, strong, seed=seed)
    hit = np.nonzero(pgr >= x - 1e-12)[0]
    return float(shares[hit[0]]) if hit.size else 1.0
