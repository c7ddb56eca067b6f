"""Track C of ``routing_quality.py``: an answer-aware cascade, Mixtral → GPT-4, on GSM8K.

A router decides from the prompt alone; the cascade calls the weak model first,
scores its answer with ``tierwise.verify.LearnedVerifier`` and escalates the
answers it doubts. The RouteLLM GSM8K data records both models' answers and
whether each was right, so the cascade is replayed offline, 5-fold CV
(KFold, shuffle, seed 0, the same folds as Track A).

Cost per prompt (tokens ≈ characters / 4, the RouteLLM paper's prices):
weak = $0.24/M × (prompt + Mixtral's answer); strong = $24.7/M × (prompt + GPT-4's
answer). An escalated prompt pays both: the weak answer was bought before it was
rejected. The verifier is a local model: 0 model calls, $0, its CPU time is
measured. A prompt-only router pays one of the two.

Reported:

* the verifier's AUROC (good vs bad weak answers) per fold;
* the curve accuracy vs share escalated, and at each method's cheapest point
  reaching 95% of GPT-4's accuracy: its cost as a share of always-GPT-4. For the
  prompt-only routers (prompt length, the TF-IDF + LR baseline, OutcomeModel) the
  same point on their own curve (share sent to GPT-4), on the same folds;
* an **honest operating point**: the threshold is chosen inside each training
  fold (an inner 5-fold CV over the training prompts gives held-out scores;
  the smallest escalation share that reaches 95% of GPT-4's accuracy on them,
  plus ``MARGIN``, becomes the threshold), then applied to the test fold.
  Nothing is chosen on a test fold;
* the same, cost-aware (``LearnedVerifier.cost_exponent``: the doubt divided by
  the exchange's size to a power): the power is chosen per outer fold from
  ``COST_EXPONENTS`` by the same inner CV (the cheapest to reach the target
  there), then the threshold as above. Both operating points are printed.
"""

from __future__ import annotations

import csv
import json
import os
import time
from typing import Any

import numpy as np

from tierwise.verify import LearnedVerifier

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
PRICE = {"weak": 0.24e-6, "strong": 24.7e-6}  # $ per token
TARGET = 0.95  # of GPT-4's accuracy
MARGIN = 0.02  # extra escalation share on top of what the training folds needed
# Cost-aware acceptance (LearnedVerifier.cost_exponent): the exponent is chosen per
# outer fold on that fold's inner CV, from this grid fixed before the first run.
COST_EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)
COST_AWARE = "cascade (LearnedVerifier, cost-aware)"


def load_gsm8k(data: str) -> dict[str, Any]:
    base = os.path.join(data, "routellm", "gsm8k")
    with open(os.path.join(base, "contaminated_prompts.jsonl"), encoding="utf-8") as fh:
        bad = {json.loads(line)["eval_prompt"] for line in fh if line.strip()}
    with open(os.path.join(base, "gsm8k_responses.csv"), encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["prompt"] not in bad]

    def ok(v: str) -> float:
        return 1.0 if v.strip().lower() in ("true", "1", "1.0") else 0.0

    prompts = [r["prompt"] for r in rows]
    weak_answers = [r[f"{WEAK}_response"] for r in rows]
    strong_answers = [r[f"{STRONG}_response"] for r in rows]
    tok = np.array([len(p) / 4 for p in prompts])
    return {
        "prompts": prompts,
        "answers": weak_answers,
        "weak": np.array([ok(r[WEAK]) for r in rows]),
        "strong": np.array([ok(r[STRONG]) for r in rows]),
        "cost_weak": PRICE["weak"] * (tok + np.array([len(a) / 4 for a in weak_answers])),
        "cost_strong": PRICE["strong"] * (tok + np.array([len(a) / 4 for a in strong_answers])),
    }


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a good answer > score of a bad one), ties counted half (Mann–Whitney)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _fit(d: dict[str, Any], idx: np.ndarray) -> LearnedVerifier:
    return LearnedVerifier.fit(
        [d["prompts"][i] for i in idx], [d["answers"][i] for i in idx], d["weak"][idx].tolist()
    )


def _score(v: LearnedVerifier, d: dict[str, Any], idx: np.ndarray) -> np.ndarray:
    return np.array(v.scores([d["prompts"][i] for i in idx], [d["answers"][i] for i in idx]))


def _accept(v: LearnedVerifier, d: dict[str, Any], idx: np.ndarray) -> np.ndarray:
    return np.array(v.acceptances([d["prompts"][i] for i in idx], [d["answers"][i] for i in idx]))


def cascade_point(doubt: np.ndarray, k: int, d: dict[str, Any], idx: np.ndarray) -> tuple[float, float]:
    """(accuracy, cost) over ``idx`` when the ``k`` most doubted weak answers escalate."""
    esc = np.zeros(idx.size, dtype=bool)
    esc[np.argsort(-doubt, kind="mergesort")[:k]] = True
    acc = np.where(esc, d["strong"][idx], d["weak"][idx]).mean()
    cost = d["cost_weak"][idx].sum() + d["cost_strong"][idx][esc].sum()
    return float(acc), float(cost)


def router_point(hard: np.ndarray, k: int, d: dict[str, Any], idx: np.ndarray) -> tuple[float, float]:
    """(accuracy, cost) over ``idx`` when the ``k`` prompts rated hardest go to GPT-4 only."""
    up = np.zeros(idx.size, dtype=bool)
    up[np.argsort(-hard, kind="mergesort")[:k]] = True
    acc = np.where(up, d["strong"][idx], d["weak"][idx]).mean()
    cost = d["cost_weak"][idx][~up].sum() + d["cost_strong"][idx][up].sum()
    return float(acc), float(cost)


def _curve(kind: str, pooled: list[tuple[np.ndarray, np.ndarray]], d: dict[str, Any]) -> np.ndarray:
    """Rows (share, accuracy, cost share) over 101 shares, each fold ranked on its own scores."""
    point = cascade_point if kind == "cascade" else router_point
    n = sum(idx.size for _, idx in pooled)
    full = d["cost_strong"].sum()
    rows = []
    for share in np.linspace(0, 1, 101):
        correct = cost = 0.0
        for sc, idx in pooled:
            acc, c = point(sc, round(share * idx.size), d, idx)
            correct += acc * idx.size
            cost += c
        rows.append((share, correct / n, cost / full))
    return np.array(rows)


def _cheapest(curve: np.ndarray, goal: float) -> tuple[float, float, float] | None:
    hit = [r for r in curve if r[1] >= goal]
    return None if not hit else min(((r[0], r[1], r[2]) for r in hit), key=lambda r: r[2])


def track_c(data: str, folds: int = 5, plots: str | None = None) -> dict[str, Any]:
    from routing_baseline import BASELINE, baseline_predict
    from sklearn.model_selection import KFold

    from tierwise.routing.learned import OutcomeModel

    d = load_gsm8k(data)
    n = len(d["prompts"])
    goal = TARGET * d["strong"].mean()
    print(
        f"\n## Track C — GSM8K cascade Mixtral → GPT-4: {n} prompts, weak {d['weak'].mean():.3f}, "
        f"strong {d['strong'].mean():.3f}; target {TARGET:.0%} of GPT-4 = {goal:.3f}"
    )
    print(
        f"cost of always-Mixtral = {d['cost_weak'].sum() / d['cost_strong'].sum():.2%} of always-GPT-4 "
        "(tokens ≈ chars / 4, output included)"
    )
    kfold = KFold(folds, shuffle=True, random_state=0)
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "cascade (LearnedVerifier)": [],
        COST_AWARE: [],
        "prompt length": [],
        BASELINE: [],
        "OutcomeModel": [],
        "oracle router": [],
    }
    aucs: list[float] = []
    honest = {key: {"correct": 0.0, "cost": 0.0, "escalated": 0} for key in ("cost-aware", "plain")}
    chosen_a: list[float] = []
    fit_s: list[float] = []
    score_ms: list[float] = []
    for f, (tr, te) in enumerate(kfold.split(d["prompts"])):
        t0 = time.perf_counter()
        verifier = _fit(d, tr)
        fit_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        p_good = _score(verifier, d, te)
        score_ms.append(1000 * (time.perf_counter() - t0) / te.size)
        aucs.append(auroc(p_good, d["weak"][te]))
        pooled["cascade (LearnedVerifier)"].append((1.0 - p_good, te))
        # The operating point, from the training fold only: inner CV scores → the
        # cost exponent that reached the target cheapest there (COST_EXPONENTS) →
        # the share escalated that reached it (+ MARGIN) → a threshold.
        inner = {a: np.empty(tr.size) for a in COST_EXPONENTS}
        for itr, ite in KFold(5, shuffle=True, random_state=1).split(tr):
            iv = _fit(d, tr[itr])
            for a in COST_EXPONENTS:
                inner[a][ite] = _accept(iv.with_cost_exponent(a), d, tr[ite])
        inner_goal = TARGET * d["strong"][tr].mean()
        need: dict[float, int] = {}
        inner_cost: dict[float, float] = {}
        for a in COST_EXPONENTS:
            need[a] = next(
                k
                for k in range(tr.size + 1)
                if cascade_point(1.0 - inner[a], k, d, tr)[0] >= inner_goal or k == tr.size
            )
            inner_cost[a] = cascade_point(1.0 - inner[a], need[a], d, tr)[1]
        a_star = min(COST_EXPONENTS, key=lambda a: (inner_cost[a], a))
        chosen_a.append(a_star)
        accept = _accept(verifier.with_cost_exponent(a_star), d, te)
        pooled[COST_AWARE].append((1.0 - accept, te))
        threshold = 0.0
        for key, a, test_accept in (("cost-aware", a_star, accept), ("plain", 0.0, p_good)):
            share = min(1.0, need[a] / tr.size + MARGIN)
            k = min(tr.size - 1, max(0, round(share * tr.size)))
            cut = float(np.sort(inner[a])[k])
            threshold = cut if key == "cost-aware" else threshold
            esc = test_accept < cut
            h = honest[key]
            h["correct"] += float(np.where(esc, d["strong"][te], d["weak"][te]).sum())
            h["cost"] += float(d["cost_weak"][te].sum() + d["cost_strong"][te][esc].sum())
            h["escalated"] += int(esc.sum())
        # Prompt-only routers on the same folds.
        pooled["prompt length"].append((np.array([len(d["prompts"][i].split()) for i in te], float), te))
        outcomes = np.column_stack([d["weak"][tr], d["strong"][tr]])
        base = baseline_predict([d["prompts"][i] for i in tr], outcomes, [d["prompts"][i] for i in te])
        pooled[BASELINE].append((base[:, 1] - base[:, 0], te))
        om = OutcomeModel.fit(
            [d["prompts"][i] for i in tr],
            {"weak": d["weak"][tr], "strong": d["strong"][tr]},
            {"weak": 0.24, "strong": 24.7},
        )
        pred = om.predict([d["prompts"][i] for i in te])
        pooled["OutcomeModel"].append((pred["strong"] - pred["weak"], te))
        pooled["oracle router"].append((d["strong"][te] - d["weak"][te], te))
        full_tr = d["cost_strong"][tr].sum()
        costs = ", ".join(f"{a:g} → {inner_cost[a] / full_tr:.1%}" for a in COST_EXPONENTS)
        print(
            f"  fold {f}: verifier AUROC {aucs[-1]:.3f}; training folds: cost exponent {a_star:g} "
            f"(cost at the target: {costs}), "
            f"needed {need[a_star] / tr.size:.1%} escalated; threshold {threshold:.3f}",
            flush=True,
        )
    full = d["cost_strong"].sum()
    print(f"\nverifier AUROC: {np.mean(aucs):.3f} ± {np.std(aucs):.3f} over {folds} folds")
    print(
        f"verifier fit {np.median(fit_s):.1f} s per fold (median), scoring {np.median(score_ms):.2f} ms "
        "per answer (median of fold means); 0 model calls, $0"
    )
    print(f"\n| GSM8K, 95% of GPT-4 = {goal:.3f} | kind | share to GPT-4 | accuracy | cost vs GPT-4 |")
    print("|---|---|---|---|---|")
    curves: dict[str, np.ndarray] = {}
    for name, parts in pooled.items():
        kind = "cascade" if name.startswith("cascade") else "router"
        curves[name] = _curve(kind, parts, d)
        best = _cheapest(curves[name], goal)
        if best is None:
            print(f"| {name} | {kind} | never reaches it | — | — |")
        else:
            print(f"| {name} | {kind} | {best[0]:.0%} | {best[1]:.3f} | {best[2]:.1%} |")
    for key, h in honest.items():
        acc = h["correct"] / n
        how = (
            f"exponent per fold {', '.join(f'{a:g}' for a in chosen_a)}" if key == "cost-aware" else "p(good)"
        )
        print(
            f"\noperating point chosen on training folds only ({key}: {how}): {h['escalated'] / n:.1%} "
            f"escalated, accuracy {acc:.3f} ({acc / d['strong'].mean():.1%} of GPT-4), cost "
            f"{h['cost'] / full:.1%} of always-GPT-4 (verifier calls included: 0, $0)"
        )
    print("\ncost-aware cascade curve (share escalated → accuracy, cost vs GPT-4):")
    cc = curves[COST_AWARE]
    for share in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
        r = cc[round(share * 100)]
        print(f"  {r[0]:.0%}: {r[1]:.3f}, {r[2]:.1%}")
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.5))
        for name, c in curves.items():
            ax.plot(100 * c[:, 2], c[:, 1], label=name)
        ax.axhline(goal, color="grey", ls="--", lw=0.8, label="95% of GPT-4")
        ax.set_xlabel("cost (% of always-GPT-4)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"GSM8K: cascade vs prompt-only routers ({folds}-fold CV)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = os.path.join(plots, "routing_cascade_gsm8k.png")
        fig.savefig(out, dpi=110)
        print(f"plot: {out}")
    return {"auroc": aucs, "curves": curves, "honest": honest, "cost_exponents": chosen_a}
