"""The benchmark's TF-IDF + logistic-regression baseline: it must learn, and handle one-class models."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")


def _baseline() -> Any:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "routing_baseline.py"
    spec = importlib.util.spec_from_file_location("routing_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_baseline_learns_which_model_is_good_and_handles_a_constant_model() -> None:
    b = _baseline()
    hard = [f"prove the theorem about primes case {i}" for i in range(40)]
    easy = [f"say hello to my friend number {i}" for i in range(40)]
    prompts = hard + easy
    weak = np.array([0.0] * 40 + [1.0] * 40)  # weak fails exactly the hard prompts
    always = np.ones(80)  # one class only: no regression can be fitted, the constant is returned
    pred = b.baseline_predict(
        prompts, np.column_stack([weak, always]), ["prove the theorem about primes", "say hello"]
    )
    assert pred.shape == (2, 2)
    assert pred[0, 0] < 0.5 < pred[1, 0]
    assert list(pred[:, 1]) == [1.0, 1.0]
