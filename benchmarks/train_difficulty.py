"""Derive the pretrained difficulty router's weights, and measure it leave-one-dataset-out.

The weights shipped as ``src/tierwise/data/difficulty.json`` come from this script, run on the
shared routing data (see its README; nothing here is copied into the package but n-grams, their
IDF and coefficients). Two labels are candidates, both about a *cheap* model on each prompt:

* ``fail``: how badly the cheap model did. RouteLLM MMLU and GSM8K (contaminated prompts
  dropped): 1 − Mixtral-8x7B's correctness; LLMRouter (train split only, the test split stays a
  test): 1 − the mean score of its 7-9B models (qwen2.5-7b, llama-3.1-8b, gemma-2-9b,
  mistral-7b, codegemma-7b, llama3-chatqa-1.5-8b).
* ``gap``: the cheap model fails *where a strong one succeeds* (escalating pays): RouteLLM
  (1 − Mixtral) × GPT-4; LLMRouter max(0, best of its 49-70B models − mean of the 7-9B ones).
  Why a candidate: a prompt every model fails is "hard" but sending it to the strong model
  recovers nothing, and APGR (like a bill) counts only what escalation recovers.

Each dataset gets equal total weight (MMLU would otherwise be 3/4 of the signal) and its own
intercept while fitting (dropped afterwards, see ``fit_difficulty``). Fixed: word 1-2-grams,
min_df 3, the 20,000 most frequent n-grams, log length. Chosen (``choose``): the label and the
logistic regression's C, by leave-one-dataset-out.

Evaluation (``--evaluate``), nested leave-one-dataset-out: to score a track, the label and C are
chosen on the *other two* datasets only (fit on one, score the other, both ways), and the model
is fitted on those two, so no prompt of that track, nor its distribution, was seen. Each track
is a strong/weak splitter measured by APGR (``routing_metrics.py``) with difficulty as the
routing score: MMLU and GSM8K GPT-4 vs Mixtral on Track A's 5 folds (the folds' test parts;
mean ± std), LLMRouter llama-3.1-nemotron-51b (the best single model) vs llama-3.1-8b (the best
cheap one) on the test split, against random, the keyword classifier and prompt length.

Usage::

    python benchmarks/train_difficulty.py --data ../shared/data/routing --evaluate   # the table
    python benchmarks/train_difficulty.py --data ../shared/data/routing --write      # the weights file
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from routing_metrics import apgr
from routing_quality import keyword_scores, load_llmrouter, load_routellm

from tierwise.routing.difficulty import DifficultyClassifier, fit_difficulty

BIG = ("llama-3.1-nemotron-51b-instruct", "llama-3.3-nemotron-super-49b-v1", "llama3-chatqa-1.5-70b")
CHEAP = (
    "codegemma-7b",
    "gemma-2-9b-it",
    "llama-3.1-8b-instruct",
    "llama3-chatqa-1.5-8b",
    "mistral-7b-instruct-v0.3",
    "qwen2.5-7b-instruct",
)
LLMR_STRONG = "llama-3.1-nemotron-51b-instruct"
LLMR_WEAK = "llama-3.1-8b-instruct"
LABELS = {
    "fail": "probability that a cheap model (Mixtral-8x7B; 7-9B open models) answers badly",
    "gap": "probability that a cheap model (Mixtral-8x7B; 7-9B open models) fails where a strong one "
    "(GPT-4; 49-70B open models) succeeds",
}
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "src", "tierwise", "data", "difficulty.json"
)

ATTRIBUTION = (
    "Weights derived (n-grams, IDF, logistic-regression coefficients; no prompts or outcomes) from: "
    "lm-sys/RouteLLM @ 0b64fdafe049 evaluation responses (Apache-2.0) on MMLU (MIT, Hendrycks et al.) "
    "and GSM8K (MIT, Cobbe et al.); ulab-uiuc/LLMRouter @ 4e7a796942ce dcrouter_train.json (MIT). "
    "Fitted by benchmarks/train_difficulty.py."
)


def datasets(data: str) -> dict[str, dict[str, Any]]:
    """Per dataset: prompts, cheap-model failure (the label), and the strong/weak outcomes."""
    out: dict[str, dict[str, Any]] = {}
    for bench in ("mmlu", "gsm8k"):
        q, weak, strong = load_routellm(data, bench)
        out[bench] = {
            "q": q,
            "fail": 1.0 - weak,
            "gap": (1.0 - weak) * strong,
            "weak": weak,
            "strong": strong,
        }
    models, train, test = load_llmrouter(data)
    cheap = [models.index(m) for m in CHEAP]
    big = [models.index(m) for m in BIG]
    w, s = models.index(LLMR_WEAK), models.index(LLMR_STRONG)
    out["llmrouter"] = {
        "q": train["q"],
        "fail": 1.0 - train["s"][:, cheap].mean(axis=1),
        "gap": np.clip(train["s"][:, big].max(axis=1) - train["s"][:, cheap].mean(axis=1), 0.0, 1.0),
        "test_q": test["q"],
        # scores >= 0.5 count as a good answer, as in the TF-IDF + LR baseline
        "weak": (test["s"][:, w] >= 0.5).astype(float),
        "strong": (test["s"][:, s] >= 0.5).astype(float),
    }
    return out


CANDIDATES: list[tuple[str, float]] = [
    ("fail", 1.0),
    ("fail", 0.1),
    ("gap", 1.0),
    ("gap", 0.1),
    ("gap", 0.03),
]
"""(label, C) settings the choice rule picks among (see ``choose``); the shipped weights used these."""
EXTENDED = [("gap", 0.01), ("gap", 0.003)]
"""``--extended-grid`` adds these: the first runs chose C = 0.03, the edge of the grid, so does
less still help? (Reported in docs/routing.md; not what the shipped weights used.)"""


def fit(parts: list[dict[str, Any]], label: str = "gap", c: float = 0.1) -> DifficultyClassifier:
    """Fit on the given datasets, each with equal total weight and its own intercept."""
    q: list[str] = []
    fail: list[float] = []
    weight: list[float] = []
    groups: list[int] = []
    for k, d in enumerate(parts):
        groups += [k] * len(d["q"])
        q += d["q"]
        fail += list(d[label])
        weight += [1.0 / len(d["q"])] * len(d["q"])
    scale = len(q) / sum(weight)
    weights = fit_difficulty(q, fail, weights=[x * scale for x in weight], groups=groups, c=c)
    weights["attribution"] = ATTRIBUTION
    return DifficultyClassifier.from_dict(weights)


def test_part(d: dict[str, Any]) -> tuple[list[str], Any, Any]:
    """(prompts, weak, strong) a dataset is scored on (LLMRouter: its test split)."""
    return d.get("test_q", d["q"]), d["weak"], d["strong"]


def score(model: DifficultyClassifier, d: dict[str, Any]) -> float:
    q, w, s = test_part(d)
    return apgr(np.array([model.difficulty(p) for p in q]), w, s)


def choose(ds: dict[str, dict[str, Any]], log: bool = False) -> tuple[str, float]:
    """The (label, C) with the best mean APGR, each dataset scored by a model fitted on the others.

    With the three datasets this is leave-one-dataset-out; ``evaluate`` calls it on two
    (train on one, score the other, both ways), so a track's reported figure never
    took part in choosing its own setting.
    """
    best: tuple[float, tuple[str, float]] | None = None
    for label, c in CANDIDATES:
        vals = [score(fit([v for k, v in ds.items() if k != name], label, c), ds[name]) for name in ds]
        if log:
            print(
                f"  {label}, C = {c:g}: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(ds, vals, strict=True)),
                flush=True,
            )
        if best is None or float(np.mean(vals)) > best[0]:
            best = (float(np.mean(vals)), (label, c))
    assert best is not None
    return best[1]


def lodo_model(data: str, held_out: str) -> DifficultyClassifier:
    """The shipped setting (label and C read from the weights file), fitted without ``held_out``.

    ``routing_quality.py``'s difficulty rows use it. The nested procedure of ``evaluate``
    (choosing the setting without the held-out track as well) picked this same setting for
    each of the three tracks, so these rows equal its figures.
    """
    with open(OUT, encoding="utf-8") as fh:
        shipped = json.load(fh)
    ds = datasets(data)
    return fit([d for k, d in ds.items() if k != held_out], shipped["target"], float(shipped["C"]))


def evaluate(data: str, folds: int = 5) -> None:
    from sklearn.model_selection import KFold

    ds = datasets(data)
    rows_out: list[str] = []
    for name, d in ds.items():
        rest = {k: v for k, v in ds.items() if k != name}
        label, c = choose(rest)
        print(f"{name}: chosen without it: label {label!r}, C = {c:g}", flush=True)
        model = fit(list(rest.values()), label, c)
        q = d.get("test_q", d["q"])
        diff = np.array([model.difficulty(p) for p in q])
        length = np.array([len(p.split()) for p in q], dtype=float)
        kw = keyword_scores(q)
        w, s = d["weak"], d["strong"]
        rows: dict[str, list[float]] = {
            "random": [],
            "keyword": [],
            "prompt length": [],
            "difficulty (LODO)": [],
        }
        splits = (
            [te for _, te in KFold(folds, shuffle=True, random_state=0).split(q)]
            if name != "llmrouter"
            else [np.arange(len(q))]
        )
        for f, te in enumerate(splits):
            rows["random"].append(apgr(np.random.default_rng(100 + f).random(te.size), w[te], s[te], seed=f))
            rows["keyword"].append(apgr(kw[te], w[te], s[te], seed=f))
            rows["prompt length"].append(apgr(length[te], w[te], s[te], seed=f))
            rows["difficulty (LODO)"].append(apgr(diff[te], w[te], s[te], seed=f))
        for router, vals in rows.items():
            a = np.array(vals)
            sd = f" ± {a.std():.3f}" if a.size > 1 else ""
            rows_out.append(f"| {name} | {router} | {a.mean():.3f}{sd} |")
    print("\n| track | router | APGR |\n|---|---|---|")
    print("\n".join(rows_out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--evaluate", action="store_true", help="leave-one-dataset-out APGR table")
    ap.add_argument("--write", action="store_true", help=f"fit on all three and write {OUT}")
    ap.add_argument("--extended-grid", action="store_true", help="also try C = 0.01 and 0.003")
    args = ap.parse_args(argv)
    if args.extended_grid:
        CANDIDATES.extend(EXTENDED)
    if args.evaluate:
        evaluate(args.data)
    if args.write:
        ds = datasets(args.data)
        label, c = choose(ds, log=True)
        print(f"chosen by leave-one-dataset-out over all three: label {label!r}, C = {c:g}")
        model = fit(list(ds.values()), label, c)
        model = model.with_thresholds(default_thresholds(model, ds))
        print(f"default thresholds: {dict(model.thresholds)}")
        weights = {
            "format": "tierwise.difficulty/1",
            "attribution": ATTRIBUTION,
            "target": label,
            "label": LABELS[label],
            "C": c,
            **_weights_of(model),
        }
        with open(OUT, "w", encoding="utf-8") as fh:
            json.dump(weights, fh, ensure_ascii=False, separators=(",", ":"))
            fh.write("\n")
        print(f"wrote {os.path.normpath(OUT)}: {len(weights['ngrams'])} n-grams")
    return 0


SHARES = {"complex": 0.25, "standard": 0.75}
"""Default labels by share of the training prompts above each cut (each dataset weighted equally):
the hardest quarter ``complex``, the easiest quarter ``bulk``, the rest ``standard``."""


def default_thresholds(model: DifficultyClassifier, ds: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Cuts at the shares in ``SHARES`` of the training prompts' difficulty.

    Why quantiles and not 0.5: the model's probabilities are calibrated to how often
    escalation pays in the training data (one prompt in five or so), so a fixed 0.5 would
    label almost nothing ``complex``.
    """
    values: list[float] = []
    weights: list[float] = []
    for d in ds.values():
        values += [model.difficulty(p) for p in d["q"]]
        weights += [1.0 / len(d["q"])] * len(d["q"])
    order = np.argsort(values)
    v = np.asarray(values)[order]
    cum = np.cumsum(np.asarray(weights)[order])
    cum /= cum[-1]
    return {label: round(float(v[np.searchsorted(cum, 1.0 - share)]), 4) for label, share in SHARES.items()}


def _weights_of(model: DifficultyClassifier) -> dict[str, Any]:
    """The JSON fields of a fitted model, n-grams sorted for a stable, diffable file."""
    items = sorted(model._vocab.items())
    return {
        "ngrams": [g for g, _ in items],
        "idf": [v[0] for _, v in items],
        "coef": [v[1] for _, v in items],
        "length_coef": model._length_coef,
        "intercept": model._intercept,
        "thresholds": dict(model.thresholds),
        "below": model.below,
    }


if __name__ == "__main__":
    raise SystemExit(main())
