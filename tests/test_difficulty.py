"""The pretrained cold-start difficulty router (tierwise.routing.DifficultyClassifier).

What must hold: the shipped weights load from the package with core dependencies only,
scoring is the documented formula (so a fitted model and its JSON agree), thresholds map
difficulty to labels as configured, and ``classifier = "difficulty"`` works in a config and
in ``tierwise explain``. Speed is measured in ``benchmarks/classify.py``, not here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tierwise.errors import ConfigError
from tierwise.routing import DifficultyClassifier
from tierwise.routing.difficulty import DEFAULT_THRESHOLDS, FORMAT, ngrams
from tierwise.types import Request


def tiny(**extra: Any) -> dict[str, Any]:
    """A hand-made model: 'proof' makes a prompt hard, 'hello' easy."""
    return {
        "format": FORMAT,
        "ngrams": ["proof", "hello", "the proof"],
        "idf": [2.0, 1.5, 3.0],
        "coef": [4.0, -4.0, 1.0],
        "length_coef": 0.5,
        "intercept": -0.25,
        **extra,
    }


def test_difficulty_is_the_documented_formula() -> None:
    clf = DifficultyClassifier.from_dict(tiny())
    text = "Prove it: the proof, the PROOF and hello"
    # sublinear tf x idf over known n-grams, L2-normalized; + length term + intercept
    tf = {"proof": 2, "hello": 1, "the proof": 2}
    idf = {"proof": 2.0, "hello": 1.5, "the proof": 3.0}
    coef = {"proof": 4.0, "hello": -4.0, "the proof": 1.0}
    v = {g: (1 + math.log(tf[g])) * idf[g] for g in tf}
    norm = math.sqrt(sum(x * x for x in v.values()))
    z = sum(v[g] * coef[g] for g in v) / norm + 0.5 * math.log1p(len(text.split())) / 8 - 0.25
    assert clf.difficulty(text) == pytest.approx(1 / (1 + math.exp(-z)), abs=1e-12)
    # no known n-gram: the length term and intercept alone
    assert clf.difficulty("") == pytest.approx(1 / (1 + math.exp(0.25)))
    assert clf.difficulty("proof") > 0.5 > clf.difficulty("hello")


def test_ngrams_are_lowercased_words_of_two_chars_and_their_bigrams() -> None:
    assert ngrams("A cat, THE Dog_s 42") == ["cat", "the", "dog_s", "42", "cat the", "the dog_s", "dog_s 42"]


def test_thresholds_map_difficulty_to_labels() -> None:
    clf = DifficultyClassifier.from_dict(tiny())
    assert clf.labels == ("complex", "standard", "bulk")
    assert dict(clf.thresholds) == DEFAULT_THRESHOLDS
    assert [clf.label_for(d) for d in (0.9, 0.5, 0.49, 0.3, 0.1)] == [
        "complex",
        "complex",
        "standard",
        "standard",
        "bulk",
    ]
    two = clf.with_thresholds({"strong": 0.4}, below="weak")
    assert two.labels == ("strong", "weak") and two.default_label == "weak"
    assert [two.label_for(d) for d in (0.4, 0.39)] == ["strong", "weak"]
    assert clf.labels == ("complex", "standard", "bulk")  # the original is unchanged
    for bad in ({}, {"x": 1.5}, {"x": True}, {"a": 0.3, "b": 0.3}):
        with pytest.raises(ValueError, match="threshold"):
            clf.with_thresholds(bad)
    with pytest.raises(ValueError, match="both a threshold label and the below label"):
        clf.with_thresholds({"bulk": 0.5})


def test_classify_reports_the_difficulty_and_honours_a_tier_hint() -> None:
    clf = DifficultyClassifier.from_dict(tiny())
    hard = clf.classify(Request.from_prompt("the proof of the proof"))
    assert hard.label == "complex"
    assert hard.score == pytest.approx(clf.difficulty("the proof of the proof"))
    assert hard.reason.startswith(f"difficulty {hard.score:.3f} ≥ 0.5")
    easy = clf.classify(Request.from_prompt("hello hello"))
    assert easy.label == "bulk" and "< 0.3" in easy.reason
    hinted = clf.classify(Request.from_prompt("hello", metadata={"tier": "complex"}))
    assert (hinted.label, hinted.score) == ("complex", 1.0)
    # the system prompt says nothing about this request's difficulty
    req = Request.from_prompt("hello", system="proof proof proof")
    assert clf.classify(req).score == pytest.approx(clf.difficulty("hello"))


def test_damaged_models_are_rejected() -> None:
    with pytest.raises(ValueError, match="not a tierwise difficulty model"):
        DifficultyClassifier.from_dict({"format": "other"})
    with pytest.raises(ValueError, match="lacks"):
        DifficultyClassifier.from_dict({k: v for k, v in tiny().items() if k != "intercept"})
    with pytest.raises(ValueError, match="differ in length"):
        DifficultyClassifier.from_dict(tiny(coef=[1.0]))


def test_the_pretrained_weights_ship_in_the_package_with_attribution() -> None:
    path = resources.files("tierwise").joinpath("data", "difficulty.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == FORMAT
    for source in ("RouteLLM", "LLMRouter", "MMLU", "GSM8K", "Apache-2.0", "MIT"):
        assert source in data["attribution"]
    # weights, not data: no field holds prompts or outcomes
    assert set(data) <= {
        "format",
        "attribution",
        "target",
        "label",
        "C",
        "ngrams",
        "idf",
        "coef",
        "length_coef",
        "intercept",
        "thresholds",
        "below",
    }
    assert 1_000 <= len(data["ngrams"]) <= 50_000
    clf = DifficultyClassifier.pretrained()
    assert clf.attribution == data["attribution"]
    # parsed once, copied per call: relabelling one copy leaves the others alone
    other = DifficultyClassifier.pretrained(thresholds={"hard": 0.2}, below="easy")
    assert other is not clf and other._vocab is clf._vocab
    assert other.labels == ("hard", "easy") and clf.labels == ("complex", "standard", "bulk")
    assert DifficultyClassifier.pretrained().labels == ("complex", "standard", "bulk")
    assert dict(clf.thresholds) == data["thresholds"] and clf.below == data["below"] == "bulk"


def test_pretrained_scores_long_and_math_prompts_as_harder() -> None:
    clf = DifficultyClassifier.pretrained()
    long_prompt = " ".join(["Janet has 3 apples and buys 7 more at $2 each; how much did she spend?"] * 140)
    assert len(long_prompt.split()) >= 2_000
    for text in ("", "hi", long_prompt, "é" * 50_000):
        d = clf.difficulty(text)
        assert 0.0 <= d <= 1.0 and math.isfinite(d)
    assert clf.difficulty(long_prompt) > clf.difficulty("What is the capital of France?")


def test_scoring_needs_no_numpy() -> None:
    code = (
        "import sys; from tierwise.routing import DifficultyClassifier as D; "
        "d = D.pretrained().difficulty('prove that there are infinitely many primes'); "
        "assert 0 <= d <= 1; assert 'numpy' not in sys.modules, 'numpy imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_fitted_weights_score_exactly_like_scikit_learn() -> None:
    pytest.importorskip("sklearn")
    import numpy as np
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tierwise.routing.difficulty import fit_difficulty

    hard = [f"prove the theorem about primes and integrals case {i % 7}" for i in range(30)]
    easy = [f"say hello to my good friend number {i % 5}" for i in range(30)]
    prompts = hard + easy
    fail = [1.0] * 20 + [0.7] * 10 + [0.0] * 25 + [0.2] * 5
    w = fit_difficulty(prompts, fail, groups=[0, 1] * 30, min_df=2)
    clf = DifficultyClassifier.from_dict(w)
    vec = TfidfVectorizer(analyzer=ngrams, vocabulary=w["ngrams"], sublinear_tf=True)
    vec.fit(prompts)
    vec.idf_ = np.array(w["idf"])
    x = sp.hstack([vec.transform(prompts), np.log1p([[len(p.split())] for p in prompts]) / 8]).tocsr()
    z = x @ np.array([*w["coef"], w["length_coef"]]) + w["intercept"]
    expect = 1 / (1 + np.exp(-z))
    got = np.array([clf.difficulty(p) for p in prompts])
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-12)
    assert got[:30].mean() > 0.5 > got[30:].mean()


def _config(router: dict[str, Any]) -> dict[str, Any]:
    provider = {"type": "openai", "compat": "vllm", "base_url": "http://127.0.0.1:9/v1"}
    models = {
        name: {"provider": "mock", "model": f"{name}-model", "input_price": p, "output_price": p}
        for name, p in (("opus", 15.0), ("sonnet", 3.0), ("haiku", 1.0), ("mini", 0.1))
    }
    routes = {"complex": "opus", "standard": "sonnet", "structured": "haiku", "bulk": "mini"}
    return {
        "providers": {"mock": provider},
        "models": models,
        "strategies": {"smart": {"type": "router", "classifier": "difficulty", "routes": routes, **router}},
        "default_strategy": "smart",
    }


def test_difficulty_router_from_config_explains_the_score(tmp_path: Path) -> None:
    from tierwise import Orchestrator

    orch = Orchestrator.from_config(_config({}))
    route = orch.explain("hello there")
    assert route.label in ("complex", "standard", "bulk")
    assert route.reason.startswith("difficulty ")
    assert route.score == pytest.approx(DifficultyClassifier.pretrained().difficulty("hello there"))
    # thresholds from the config: everything at or above 0 is complex
    orch = Orchestrator.from_config(_config({"thresholds": {"complex": 0.0}, "below": "bulk"}))
    assert orch.explain("hello there").label == "complex"
    # a model file of one's own
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(tiny()), encoding="utf-8")
    orch = Orchestrator.from_config(_config({"model": str(path)}))
    assert orch.explain("the proof").label == "complex"
    assert orch.explain("hello").label == "bulk"


def test_difficulty_config_errors_name_the_field(tmp_path: Path) -> None:
    from tierwise import Orchestrator

    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    cases = [
        ({"thresholds": {"complex": 2}}, "thresholds.complex", "within 0..1"),
        ({"thresholds": "high"}, "thresholds", "table"),
        ({"thresholds": {"a": 0.5, "b": 0.5}}, "thresholds", "same threshold"),
        ({"below": "complex"}, "below", "below label"),
        ({"below": ""}, "below", "non-empty"),
        ({"model": str(tmp_path / "missing.json")}, "model", "no such file"),
        ({"model": str(broken)}, "model", "cannot load"),
        ({"strong_share": 0.3}, "strong_share", "unknown key"),
    ]
    for router, field, text in cases:
        with pytest.raises(ConfigError) as info:
            Orchestrator.from_config(_config(router))
        assert info.value.field == f"strategies.smart.{field}", (router, info.value)
        assert text in str(info.value), (router, info.value)


def test_tierwise_explain_prints_the_difficulty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tierwise.cli import main

    cfg = _config({})
    lines = ['[providers.mock]\ntype = "openai"\ncompat = "vllm"\nbase_url = "http://127.0.0.1:9/v1"\n']
    for name, spec in cfg["models"].items():
        lines.append(
            f'[models.{name}]\nprovider = "mock"\nmodel = "{spec["model"]}"\n'
            f"input_price = {spec['input_price']}\noutput_price = {spec['output_price']}\n"
        )
    routes = ", ".join(f'{k} = "{v}"' for k, v in cfg["strategies"]["smart"]["routes"].items())
    lines.append(f'[strategies.smart]\ntype = "router"\nclassifier = "difficulty"\nroutes = {{ {routes} }}\n')
    lines.append('default_strategy = "smart"\n')
    path = tmp_path / "tierwise.toml"
    # default_strategy is a top-level key: it must come before any table
    path.write_text(lines[-1] + "".join(lines[:-1]), encoding="utf-8")
    assert main(["explain", "--config", str(path), "Prove that the square root of 2 is irrational"]) == 0
    out = capsys.readouterr().out
    assert "why: difficulty 0." in out


def test_calibrated_places_the_cuts_on_your_own_prompts() -> None:
    clf = DifficultyClassifier.from_dict(tiny())
    prompts = [("proof " * k + "hello " * (8 - k)).strip() for k in range(8)]  # difficulty rises with k
    cal = clf.calibrated(prompts)
    labels = [cal.classify(Request.from_prompt(p)).label for p in prompts]
    assert labels == ["bulk", "bulk", "standard", "standard", "standard", "standard", "complex", "complex"]
    two = clf.calibrated(prompts, {"strong": 0.5}, below="weak")
    assert [two.label_for(two.difficulty(p)) for p in prompts] == ["weak"] * 4 + ["strong"] * 4
    # identical prompts: the cuts still differ, and every prompt gets the top label
    same = clf.calibrated(["proof"] * 4)
    assert len({c for _, c in same.thresholds}) == 2
    assert same.classify(Request.from_prompt("proof")).label == "complex"
    with pytest.raises(ValueError, match="at least one prompt"):
        clf.calibrated([])
    with pytest.raises(ValueError, match="share"):
        clf.calibrated(prompts, {"complex": 0.0})
