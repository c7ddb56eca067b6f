"""The rule ``benchmarks/routing_cv.py`` chooses OutcomeModel's defaults by: it must prefer the
setting that beats the baseline on *every* dataset over one that wins big on some and loses on one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")


def _cv() -> Any:
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("routing_cv", bench / "routing_cv.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(bench))


def task(name: str, base: list[float], **settings: list[float]) -> dict[str, Any]:
    return {"name": name, "inner": {"baseline": base, **settings}}


def test_the_rule_maximizes_the_smallest_standardized_gain() -> None:
    cv = _cv()
    tasks = [
        # "spiky" wins big on a and b but loses on c; "steady" is a little ahead everywhere
        task("a", [0.60, 0.62, 0.61], spiky=[0.70, 0.72, 0.71], steady=[0.61, 0.63, 0.62]),
        task("b", [0.50, 0.55, 0.52], spiky=[0.60, 0.66, 0.61], steady=[0.51, 0.56, 0.535]),
        task("c", [0.40, 0.41, 0.42], spiky=[0.38, 0.40, 0.40], steady=[0.405, 0.415, 0.43]),
    ]
    best, z = cv.choose(tasks, ["a", "b", "c"])
    assert best == "steady"
    assert min(z["steady"].values()) > 0 > z["spiky"]["c"]
    assert z["spiky"]["a"] > z["steady"]["a"]


def test_budget_area_rewards_a_router_that_knows_the_answers() -> None:
    cv = _cv()
    rng = np.random.default_rng(0)
    n = 200
    s = (rng.random((n, 2)) < [0.5, 0.7]).astype(float)  # model 1 is better and dearer
    c = np.tile([1.0, 10.0], (n, 1))
    mcost = c.mean(axis=0)
    oracle = cv.budget_area(s + 0.01 * rng.random((n, 2)), mcost, s, c)
    blind = cv.budget_area(np.full((n, 2), 0.5), mcost, s, c)
    assert 0.0 <= blind < oracle <= 1.0
