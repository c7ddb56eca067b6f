"""Choose ``OutcomeModel``'s default features and regularization across all shared datasets.

Why this exists: the first defaults were chosen on Track A and then Track B, one track at a
time, and an independent held-out evaluation found they did not generalize (the plain TF-IDF +
logistic-regression baseline beat them). Here one setting is chosen for all three datasets at
once, by a rule fixed before the run, and only on data no reported figure is measured on.

Datasets: RouteLLM MMLU (14,037 prompts) and GSM8K (1,307), LLMRouter (5,608 train prompts).

Nested cross-validation:

* **Outer** (what is reported): Track A's folds for MMLU and GSM8K (``KFold(5, shuffle, seed 0)``,
  exactly ``routing_quality.py``'s), and LLMRouter's given train/test split.
* **Inner** (what chooses): on each outer training part, 3 *grouped* folds: MMLU by subject,
  LLMRouter by ``cluster_id`` (topic clusters of the source data), GSM8K by plain shuffled
  folds (no groups). Grouping makes the choice favour what transfers to prompts of a topic the
  fit never saw, which is the failure the held-out evaluation found.
* The setting chosen on a whole dataset (the inner folds over all of MMLU / GSM8K and over
  LLMRouter's train split) is the one that becomes the default; the outer folds report whether
  the choice procedure itself is stable and what it scores on folds it did not see.

Scores per dataset: APGR (routing score p(strong) − p(weak)) on MMLU and GSM8K; on LLMRouter
the mean, over 50 budgets evenly spaced from the cheapest model's cost to the best single
model's cost, of the highest accuracy the ``cost_weight`` sweep reaches within that budget
("budget-area", a smooth stand-in for "cost to match", which is a step function of a few
prompts).

Choice rule (fixed before the run): for each setting and dataset, its gain over the TF-IDF + LR
baseline on the same inner folds, divided by the baseline's standard deviation across those
folds; the setting with the largest *smallest* standardized gain over the three datasets wins
(it must beat the baseline everywhere, not on average).

Usage::

    python benchmarks/routing_cv.py --data ../shared/data/routing --jobs 2   # ≈ 25 min on 2 cores
    python benchmarks/routing_cv.py --data ../shared/data/routing --jobs 2 --only mmlu:all,mmlu:0  # in parts
    python benchmarks/routing_cv.py --data ../shared/data/routing --quick      # 3 settings, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from routing_baseline import baseline_predict
from routing_metrics import apgr
from routing_quality import gains, line_costs, load_llmrouter, load_routellm, sweep

from tierwise.routing._features import word_count
from tierwise.routing._ngrams import NgramHasher
from tierwise.routing.learned import _fit_per_model, design_matrix, hash_documents, vocabulary

FEATURES: dict[str, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {
    "word 1-2 + char 3-5": ((1, 2), (3, 5)),
    "word 1-2": ((1, 2), None),
    "char 3-5": (None, (3, 5)),
}
CS = (0.5, 1.0, 2.0)
#: Two views fitted apart and their probabilities averaged (``OutcomeModel.fit(views=...)``):
#: each part is a setting of the grid, so an ensemble costs no extra fit here. Added in
#: session 8, before any outer fold was looked at for them: every combination of a word-only
#: part with a character (or combined) part whose inner scores had been looked at is listed,
#: not only the best.
ENSEMBLES: dict[str, tuple[tuple[str, float], ...]] = {
    "word 1-2 (C = 0.5) | char 3-5 (C = 1)": (("word 1-2", 0.5), ("char 3-5", 1.0)),
    "word 1-2 (C = 1) | char 3-5 (C = 1)": (("word 1-2", 1.0), ("char 3-5", 1.0)),
    "word 1-2 (C = 0.5) | char 3-5 (C = 2)": (("word 1-2", 0.5), ("char 3-5", 2.0)),
    "word 1-2 (C = 0.5) | word 1-2 + char 3-5 (C = 2)": (("word 1-2", 0.5), ("word 1-2 + char 3-5", 2.0)),
}
MIN_DF = 2
INNER = 3
OUTER = 5
BUDGETS = 50
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")


def settings(quick: bool) -> list[tuple[str, float]]:
    if quick:
        return [("word 1-2 + char 3-5", 1.0), ("word 1-2", 2.0), ("word 1-2", 4.0)]
    return [(f, c) for f in FEATURES for c in CS]


def label(feat: str, c: float) -> str:
    return f"{feat}, C = {c:g}"


# ---------------------------------------------------------------- data


def load(data: str, name: str) -> dict[str, Any]:
    """Prompts, outcomes (n × models), per-prompt cost (LLMRouter) and groups of one dataset."""
    if name in ("mmlu", "gsm8k"):
        prompts, weak, strong = load_routellm(data, name)
        groups: np.ndarray
        groups = np.array(_mmlu_subjects(data, prompts)) if name == "mmlu" else np.arange(len(prompts))
        return {"q": prompts, "s": np.column_stack([weak, strong]), "groups": groups}
    models, train, test = load_llmrouter(data)
    with open(os.path.join(data, "llmrouter", "dcrouter_train.json"), encoding="utf-8") as fh:
        clusters = np.array([int(it["cluster_id"]) for it in json.load(fh)])
    return {"models": models, "train": train, "test": test, "groups": clusters}


def _mmlu_subjects(data: str, prompts: Sequence[str]) -> list[str]:
    """The subject (file name) of each MMLU prompt, in ``load_routellm``'s order."""
    import csv
    import glob

    base = os.path.join(data, "routellm", "mmlu")
    with open(os.path.join(base, "contaminated_prompts.jsonl"), encoding="utf-8") as fh:
        bad = {json.loads(line)["eval_prompt"] for line in fh if line.strip()}
    out: list[str] = []
    csv.field_size_limit(1 << 30)
    for f in sorted(glob.glob(os.path.join(base, "responses", "*.csv"))):
        subject = os.path.basename(f)[len("mmlu_") : -len(".csv")]
        with open(f, encoding="utf-8", newline="") as fh:
            out += [subject for row in csv.DictReader(fh) if row["prompt"] not in bad]
    assert len(out) == len(prompts)
    return out


# ---------------------------------------------------------------- scoring


def score_routellm(pred: np.ndarray, s: np.ndarray, seed: int) -> float:
    return apgr(pred[:, 1] - pred[:, 0], s[:, 0], s[:, 1], seed=seed)


def budget_area(pred: np.ndarray, mcost: np.ndarray, s: np.ndarray, c: np.ndarray) -> float:
    """Mean over budgets (cheapest model → best single's cost) of the best accuracy within budget."""
    curve = sweep(pred, mcost, s, c)
    single_cost = c.mean(axis=0)
    best = int(np.argmax(s.mean(axis=0)))
    costs = np.array([cc for cc, _, _ in curve])
    accs = np.maximum.accumulate(np.array([a for _, a, _ in curve]))
    grid = np.linspace(single_cost.min(), single_cost[best], BUDGETS)
    idx = np.searchsorted(costs, grid, side="right") - 1
    return float(np.mean(np.where(idx >= 0, accs[np.maximum(idx, 0)], 0.0)))


# ---------------------------------------------------------------- one task


def _cache(prompts: Sequence[str], feats: set[str]) -> dict[str, Any]:
    """Each prompt hashed once per feature set (hashing is the costly step; folds reuse it)."""
    words = [word_count(p) for p in prompts]
    hashed = {}
    for feat in sorted(feats):
        w, ch = FEATURES[feat]
        hashed[feat] = hash_documents(NgramHasher(w, ch), prompts)
    return {"hashed": hashed, "words": words}


def _fit_predict(
    cache: dict[str, Any], feat: str, c: float, tr: np.ndarray, te: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Exactly ``OutcomeModel.fit``'s features and regressions, on cached hashes."""
    per_doc = cache["hashed"][feat]
    words = cache["words"]
    dtr = [per_doc[i] for i in tr]
    keys, idf = vocabulary(dtr, min_df=MIN_DF, max_features=200_000)
    x_tr = design_matrix(dtr, keys, idf, [words[i] for i in tr])
    x_te = design_matrix([per_doc[i] for i in te], keys, idf, [words[i] for i in te])
    coef, intercept = _fit_per_model(x_tr, y[tr], c)
    out: np.ndarray = 1.0 / (1.0 + np.exp(-(x_te @ coef + intercept)))
    return out


def _with_ensembles(
    preds: dict[tuple[str, float], np.ndarray], grid: list[tuple[str, float]]
) -> dict[str, np.ndarray]:
    """Every grid setting's predictions by label, plus each ensemble whose parts are in the grid."""
    out = {label(f, c): preds[(f, c)] for f, c in grid}
    for key, parts in ENSEMBLES.items():
        if all(p in preds for p in parts):
            out[key] = np.mean([preds[p] for p in parts], axis=0)
    return out


def _inner_folds(groups: np.ndarray, idx: np.ndarray, grouped: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold, KFold

    if grouped:
        split = GroupKFold(INNER).split(idx, groups=groups[idx])
    else:
        split = KFold(INNER, shuffle=True, random_state=1).split(idx)
    return [(idx[a], idx[b]) for a, b in split]


def run_task(data: str, name: str, outer: int | None, grid: list[tuple[str, float]]) -> dict[str, Any]:
    """Inner-CV scores of every setting (and the baseline) on one outer training part.

    ``outer`` is a Track A fold (its test fold is scored too), or ``None``: the inner folds
    run over the whole development data (all of MMLU / GSM8K, LLMRouter's train split),
    which is what chooses the shipped default.
    """
    from sklearn.model_selection import KFold

    t0 = time.perf_counter()
    d = load(data, name)
    if name == "llmrouter":
        tr_d, te_d = d["train"], d["test"]
        prompts = tr_d["q"] + te_d["q"]
        s = np.vstack([tr_d["s"], te_d["s"]])
        c = np.vstack([tr_d["c"], te_d["c"]])
        dev = np.arange(len(tr_d["q"]))
        test = np.arange(len(tr_d["q"]), len(prompts)) if outer is not None else None
        groups = np.concatenate([d["groups"], -np.ones(len(te_d["q"]), dtype=int)])
        grouped = True
    else:
        prompts, s, c = d["q"], d["s"], None
        groups = d["groups"]
        grouped = name == "mmlu"
        if outer is None:
            dev, test = np.arange(len(prompts)), None
        else:
            dev, test = list(KFold(OUTER, shuffle=True, random_state=0).split(prompts))[outer]
    cache = _cache(prompts, {f for f, _ in grid})

    def score(pred: np.ndarray, tr: np.ndarray, te: np.ndarray, seed: int) -> float:
        if name == "llmrouter":
            assert c is not None  # route()'s per-prompt cost: a line fitted on the fitting part
            return budget_area(pred, _costs(tr, te), s[te], c[te])
        return score_routellm(pred, s[te], seed)

    def _costs(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        assert c is not None
        return line_costs([prompts[i] for i in tr], c[tr], [prompts[i] for i in te])

    folds = _inner_folds(groups, dev, grouped)
    inner: dict[str, list[float]] = {"baseline": []}
    for k, (a, b) in enumerate(folds):
        base = baseline_predict([prompts[i] for i in a], s[a], [prompts[i] for i in b])
        inner["baseline"].append(score(base, a, b, k))
        preds = {(feat, cc): _fit_predict(cache, feat, cc, a, b, s) for feat, cc in grid}
        for key, pred in _with_ensembles(preds, grid).items():
            inner.setdefault(key, []).append(score(pred, a, b, k))
    result: dict[str, Any] = {"name": name, "outer": outer, "inner": inner}
    if test is not None:
        seed = outer or 0
        base = baseline_predict([prompts[i] for i in dev], s[dev], [prompts[i] for i in test])
        outer_scores = {"baseline": score(base, dev, test, seed)}
        extra: dict[str, Any] = {}
        preds = {(feat, cc): _fit_predict(cache, feat, cc, dev, test, s) for feat, cc in grid}
        for key, pred in _with_ensembles(preds, grid).items():
            outer_scores[key] = score(pred, dev, test, seed)
            if name == "llmrouter":
                assert c is not None
                _, _, pts, share = gains(sweep(pred, _costs(dev, test), s[test], c[test]), s[test], c[test])
                extra[key] = (pts, share)
        if name == "llmrouter":
            assert c is not None
            _, _, pts, share = gains(sweep(base, _costs(dev, test), s[test], c[test]), s[test], c[test])
            extra["baseline"] = (pts, share)
        result["outer_scores"] = outer_scores
        result["outer_extra"] = extra
    result["seconds"] = time.perf_counter() - t0
    print(f"  done {name} outer={outer} in {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    return result


# ---------------------------------------------------------------- choosing


def choose(tasks: list[dict[str, Any]], names: Sequence[str]) -> tuple[str, dict[str, dict[str, float]]]:
    """The setting with the largest smallest standardized gain over the baseline (see module doc).

    A gain is the mean over inner folds of (setting − baseline) on the same fold, divided by
    the fold-to-fold standard deviation of such paired differences pooled over all settings
    of that dataset: a noise unit per dataset, so APGR and budget-area gains are comparable.
    """
    z: dict[str, dict[str, float]] = {}
    for t in tasks:
        base = np.array(t["inner"]["baseline"])
        diffs = {k: np.array(v) - base for k, v in t["inner"].items() if k != "baseline"}
        sd = max(float(np.sqrt(np.mean([d.var(ddof=1) for d in diffs.values()]))), 1e-6)
        for key, d in diffs.items():
            z.setdefault(key, {})[t["name"]] = float(d.mean()) / sd
    best = max(z, key=lambda k: (min(z[k][n] for n in names), float(np.mean(list(z[k].values())))))
    return best, z


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="3 settings only: a smoke run")
    ap.add_argument(
        "--only",
        default=None,
        help="run only these tasks now, e.g. 'mmlu:all,mmlu:0,llmrouter' (each task's result is cached "
        "in benchmarks/.cache, so a long run can be split into short ones; the tables need all 13)",
    )
    args = ap.parse_args(argv)
    grid = settings(args.quick)
    names = ["mmlu", "gsm8k", "llmrouter"]
    jobs: list[tuple[str, int | None]] = [("mmlu", k) for k in [None, *range(OUTER)]]
    jobs += [("llmrouter", 0)]  # the inner folds on the train split; outer = the test split
    jobs += [("gsm8k", k) for k in [None, *range(OUTER)]]
    tag = "quick" if args.quick else "full-v3"  # v2: with ENSEMBLES; v3: per-prompt costs on LLMRouter
    os.makedirs(CACHE_DIR, exist_ok=True)

    def path(n: str, k: int | None) -> str:
        return os.path.join(CACHE_DIR, f"routing_cv-{tag}-{n}-{'all' if k is None else k}.json")

    todo = [(n, k) for n, k in jobs if not os.path.exists(path(n, k))]
    if args.only:
        wanted = set(args.only.split(","))
        todo = [(n, k) for n, k in todo if n in wanted or f"{n}:{'all' if k is None else k}" in wanted]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_task, args.data, n, k, grid): (n, k) for n, k in todo}
        for fut, (n, k) in futures.items():
            result = fut.result()  # before opening: a run killed mid-task must leave no empty file behind
            with open(path(n, k) + ".tmp", "w", encoding="utf-8") as fh:
                json.dump(result, fh)
            os.replace(path(n, k) + ".tmp", path(n, k))
    print(f"{len(grid)} settings, {len(todo)} tasks run now in {time.perf_counter() - t0:.0f} s\n")
    missing = [(n, k) for n, k in jobs if not os.path.exists(path(n, k))]
    if missing:
        print(f"{len(missing)} tasks still to run: " + ", ".join(f"{n}:{k}" for n, k in missing))
        return 0
    results = []
    for n, k in jobs:
        with open(path(n, k), encoding="utf-8") as fh:
            results.append(json.load(fh))

    llm = next(r for r in results if r["name"] == "llmrouter")
    # the shipped default: inner folds over the whole development data of each dataset
    full = [r for r in results if r["outer"] is None] + [llm]
    chosen, z = choose(full, names)
    print(f"## Chosen on the development data (inner grouped {INNER}-fold CV): **{chosen}**\n")
    print("| setting | z MMLU | z GSM8K | z LLMRouter | min z |\n|---|---|---|---|---|")
    for key in sorted(z, key=lambda k: -min(z[k].values())):
        print(
            f"| {key} | "
            + " | ".join(f"{z[key][n]:+.2f}" for n in names)
            + f" | {min(z[key].values()):+.2f} |"
        )

    # nested: what the same rule picks when it sees only each outer training part
    print("\n## Nested: the rule applied to each outer training part, scored on the outer test fold\n")
    print(
        "| outer fold | picked | MMLU APGR picked / default / baseline | GSM8K APGR picked / default / baseline |"
    )
    print("|---|---|---|---|")
    for k in range(OUTER):
        part = [r for r in results if r["outer"] == k] + [llm]
        pick, _ = choose(part, names)
        cells = []
        for n in ("mmlu", "gsm8k"):
            o = next(r for r in part if r["name"] == n)["outer_scores"]
            cells.append(f"{o[pick]:.3f} / {o[chosen]:.3f} / {o['baseline']:.3f}")
        print(f"| {k} | {pick} | " + " | ".join(cells) + " |")

    print("\n## Outer figures of every setting (reported, never used to choose)\n")
    print(
        "| setting | MMLU APGR (5 folds) | GSM8K APGR (5 folds) | LLMRouter test: budget-area | points at equal cost | cost to match |"
    )
    print("|---|---|---|---|---|---|")
    for key in ["baseline", *[k for k in llm["outer_scores"] if k != "baseline"]]:
        row = []
        for n in ("mmlu", "gsm8k"):
            v = np.array(
                [r["outer_scores"][key] for r in results if r["name"] == n and r["outer"] is not None]
            )
            row.append(f"{v.mean():.3f} ± {v.std():.3f}")
        pts, share = llm["outer_extra"][key]
        row.append(f"{100 * llm['outer_scores'][key]:.2f}")
        row.append(f"{pts:+.1f}")
        row.append(f"{share:.0f}%" if np.isfinite(share) else "never")
        star = " **(chosen)**" if key == chosen else ""
        print(f"| {key}{star} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
