"""``tierwise train``: fit an ``OutcomeModel`` from audit logs and feedback (see docs/training.md).

Split from ``cli.py`` to keep that module a table of commands; the shared
helpers (exit codes, ``_UsageError``, JSON printing) stay there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli import (
    EXIT_FAILED,
    EXIT_OK,
    _config_path,
    _print_json,
    _UsageError,
)

__all__ = ["cmd_train"]


def _costs(pairs: Sequence[str]) -> dict[str, float]:
    import math

    out: dict[str, float] = {}
    for kv in pairs:
        model, sep, value = kv.partition("=")
        try:
            usd = float(value)
        except ValueError:
            usd = math.nan
        if not sep or not model or not math.isfinite(usd) or usd < 0:
            raise _UsageError(f"--cost expects MODEL=USD (USD per request, >= 0), got {kv!r}")
        out[model] = usd
    return out


@dataclass(slots=True)
class _Embedded:
    """What ``tierwise train --embedder`` fetched: one vector per training prompt."""

    alias: str
    vectors: list[list[float]]
    cost_usd: float | None  # None: unknown for at least one batch (never a silent 0)
    batches: int


def _embed_prompts(config: str, alias: str, prompts: Sequence[str], batch: int, quiet: bool) -> _Embedded:
    """Embed ``prompts`` (in order, ``batch`` per call) with the deployment ``alias``
    of ``config``. Unknown alias or a provider without embeddings: ``_UsageError``
    naming the alias; provider failures (after the config's retries) propagate."""
    import anyio

    from . import Orchestrator
    from .errors import ConfigError, NotFoundError, ProtocolError

    orch = Orchestrator.from_config(config)
    progress = not quiet and sys.stderr.isatty()

    async def go() -> _Embedded:
        async with orch:
            try:
                # An empty batch checks the alias and the provider's support without a call.
                await orch.embed([], model=alias)
            except (ConfigError, NotFoundError) as exc:
                raise _UsageError(f"--embedder {alias!r}: {exc}") from None
            if not quiet:
                calls = -(-len(prompts) // batch)
                sys.stderr.write(
                    f"embedding {len(prompts)} training prompts with {alias} "
                    f"({calls} request{'' if calls == 1 else 's'})…\n"
                )
            vectors: list[list[float]] = []
            cost: float | None = 0.0
            batches = 0
            for start in range(0, len(prompts), batch):
                chunk = list(prompts[start : start + batch])
                try:
                    result = await orch.embed(chunk, model=alias)
                except NotFoundError as exc:  # the server does not know the model: a config mistake
                    raise _UsageError(f"--embedder {alias!r}: {exc}") from None
                batches += 1
                if vectors and result.vectors and len(result.vectors[0]) != len(vectors[0]):
                    raise ProtocolError(
                        f"embedding dimension changed from {len(vectors[0])} to "
                        f"{len(result.vectors[0])} between batches",
                        provider=result.provider,
                        model=result.model,
                    )
                vectors.extend(result.vectors)
                cost = None if cost is None or result.cost_usd is None else cost + result.cost_usd
                if progress:
                    sys.stderr.write(f"\rembedded {len(vectors)}/{len(prompts)} prompts with {alias}")
                    sys.stderr.flush()
            if progress:
                sys.stderr.write("\n")
            return _Embedded(alias, vectors, cost, batches)

    return anyio.run(go)


_MIN_HELD_OUT = 10  # labeled held-out prompts of a model below which it gets no figure


def _auroc(pred: Sequence[float], good: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``pred`` for ``good`` (ties count half); ``None`` for one class."""
    pos = [p for p, g in zip(pred, good, strict=True) if g]
    neg = [p for p, g in zip(pred, good, strict=True) if not g]
    if not pos or not neg:
        return None
    from bisect import bisect_left, bisect_right

    neg.sort()
    wins = sum(bisect_left(neg, p) + 0.5 * (bisect_right(neg, p) - bisect_left(neg, p)) for p in pos)
    return wins / (len(pos) * len(neg))


def _held_out(data: Any, fraction: float, embeddings: Sequence[Sequence[float]] | None) -> dict[str, Any]:
    """Fit on a seeded share of the user's prompts and measure on the rest.

    Why: a router trained on a few hundred verdicts can be worse than no training
    at all, and the only honest check is on prompts the fit did not see. Per
    model: AUROC of its predicted p(good) against the held-out verdicts (good =
    score ≥ 0.5). For the cheapest model, the same AUROC of the pretrained
    difficulty router (1 − difficulty) on the same prompts: the decision a router
    makes is "is the cheap model good enough here?", and that is the bar a trained
    router has to clear to be worth its file.
    """
    import math
    import random

    from .routing.difficulty import DifficultyClassifier
    from .routing.learned import OutcomeModel

    n = len(data.prompts)
    order = list(range(n))
    random.Random(0).shuffle(order)
    k = max(1, round(n * fraction))
    test, train = sorted(order[:k]), sorted(order[k:])
    out: dict[str, Any] = {"fraction": fraction, "train_prompts": len(train), "held_out_prompts": len(test)}
    scores = {m: [data.scores[m][i] for i in train] for m in data.models}
    if any(all(math.isnan(v) for v in col) for col in scores.values()):
        out["skipped"] = "a model has no verdict among the training part"
        return out
    model = OutcomeModel.fit(
        [data.prompts[i] for i in train],
        scores,
        data.costs,
        embeddings=None if embeddings is None else [embeddings[i] for i in train],
    )
    prompts = [data.prompts[i] for i in test]
    pred = model.predict(prompts, embeddings=None if embeddings is None else [embeddings[i] for i in test])
    per_model: dict[str, Any] = {}
    for m in data.models:
        seen = [
            (float(pred[m][j]), data.scores[m][i] >= 0.5)
            for j, i in enumerate(test)
            if not math.isnan(data.scores[m][i])
        ]
        auc = _auroc([p for p, _ in seen], [g for _, g in seen]) if len(seen) >= _MIN_HELD_OUT else None
        per_model[m] = {"labeled": len(seen), "auroc": auc}
    out["models"] = per_model
    cheapest = min(model.models, key=lambda m: (model.expected_cost[m], m))
    pretrained = DifficultyClassifier.pretrained()
    seen_idx = [j for j, i in enumerate(test) if not math.isnan(data.scores[cheapest][i])]
    base = None
    if len(seen_idx) >= _MIN_HELD_OUT:
        base = _auroc(
            [1.0 - pretrained.difficulty(prompts[j]) for j in seen_idx],
            [data.scores[cheapest][test[j]] >= 0.5 for j in seen_idx],
        )
    trained = per_model[cheapest]["auroc"]
    out["cheapest"] = cheapest
    out["pretrained_auroc"] = base
    out["better_than_pretrained"] = None if trained is None or base is None else trained > base
    return out


def _holdout_warning(held: dict[str, Any] | None) -> str | None:
    """The warning when the held-out figures say the trained router does not beat the pretrained one."""
    if held is None or held.get("better_than_pretrained") is not False:
        return None
    m = held["cheapest"]
    return (
        f"on {held['held_out_prompts']} held-out prompts the trained router is no better than the pretrained "
        f"difficulty router at telling when {m} is good enough (AUROC {held['models'][m]['auroc']:.3f} vs "
        f'{held["pretrained_auroc"]:.3f}); collect more feedback, or use classifier = "difficulty"'
    )


def _holdout_text(held: dict[str, Any]) -> str:
    """The human summary of ``_held_out``'s figures."""
    head = (
        f"held-out check: fitted on {held['train_prompts']} prompts, measured on the other "
        f"{held['held_out_prompts']} ({held['fraction']:.0%})"
    )
    if "skipped" in held:
        return f"{head}: not measured ({held['skipped']})\n"
    lines = [head + "; AUROC of predicted p(good) against the held-out verdicts:\n"]
    for m, row in held["models"].items():
        auc = "too few verdicts" if row["auroc"] is None else f"{row['auroc']:.3f}"
        lines.append(f"  {m}: {auc} ({row['labeled']} labeled)\n")
    base = held["pretrained_auroc"]
    if base is not None:
        lines.append(f"  pretrained difficulty router, {held['cheapest']}: {base:.3f}\n")
    return "".join(lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def cmd_train(args: argparse.Namespace) -> int:
    from .routing.feedback import FeedbackError, read_audit, read_feedback, training_set
    from .routing.learned import require_learn

    costs = _costs(args.cost or [])
    if args.min_feedback < 1:
        raise _UsageError("--min-feedback must be at least 1")
    if args.embedder is not None and args.config is None:
        raise _UsageError(
            f"--embedder {args.embedder!r} needs --config FILE: the tierwise config that defines "
            "that model alias and its provider"
        )
    if args.config is not None and args.embedder is None:
        raise _UsageError("--config is only used with --embedder ALIAS (the model that embeds the prompts)")
    if args.embed_batch < 1:
        raise _UsageError("--embed-batch must be at least 1")
    if not 0.0 <= args.holdout < 1.0:
        raise _UsageError("--holdout must be a fraction within 0 (skip) and 1, e.g. 0.2")
    config = None if args.config is None else _config_path(args.config)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise _UsageError(f"--out: directory not found: {out.parent}")
    try:
        require_learn()
    except ImportError as exc:
        sys.stderr.write(f"tierwise: error: {exc}\n")
        return EXIT_FAILED
    try:
        records = [r for path in args.audit for r in read_audit(path)]
        rows = [r for path in args.feedback or [] for r in read_feedback(path)]
        data = training_set(
            records, rows, from_verifier=args.from_verifier, costs=costs, min_feedback=args.min_feedback
        )
    except FeedbackError as exc:
        raise _UsageError(str(exc)) from None
    if len(data.models) < 2:
        raise _UsageError(
            f"feedback covers only {data.models[0]!r}: a router needs verdicts on at least two models"
        )
    embedded = None
    if args.embedder is not None and config is not None:
        from .errors import ProviderError

        try:
            embedded = _embed_prompts(config, args.embedder, data.prompts, args.embed_batch, quiet=args.json)
        except ProviderError as exc:  # already redacted: no key reaches the message
            sys.stderr.write(
                f"tierwise: embedding with {args.embedder!r} failed: {type(exc).__name__}: {exc}\n"
            )
            return EXIT_FAILED
    try:
        held = (
            None
            if args.holdout == 0
            else _held_out(data, args.holdout, None if embedded is None else embedded.vectors)
        )
        model = data.fit() if embedded is None else data.fit(embeddings=embedded.vectors)
        model.save(out)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"tierwise: training failed: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILED

    cheapest = min(model.models, key=lambda m: (model.expected_cost[m], m))
    strong = model.strongest()
    # A starting point: send the strong model about as often as the cheap one was judged bad.
    share = min(max(round(1.0 - data.good_rate(cheapest), 2), 0.05), 0.95)
    routes = ", ".join(f"{json.dumps(m)}: {json.dumps(m)}" for m in model.models)
    embed_arg = "" if embedded is None else f", embed_model={json.dumps(embedded.alias)}"
    snippet = (
        f"clf = OutcomeModel.load({json.dumps(str(out))}).as_classifier(strong_share={share}{embed_arg})\n"
        f"router = tw.Router(clf, routes={{{routes}}}, default={json.dumps(cheapest)})"
    )
    toml_routes = ", ".join(f"{_toml_key(m)} = {json.dumps(m)}" for m in model.models)
    config_snippet = (
        "[strategies.learned]\n"
        'type = "router"\n'
        'classifier = "outcome"\n'
        f"model = {json.dumps(str(out))}\n"
        f"strong_share = {share}\n"
        f"routes = {{ {toml_routes} }}"
        + ("" if embedded is None else f"\nembedder = {json.dumps(embedded.alias)}")
    )
    warning = _holdout_warning(held)
    summary = {
        "prompts": len(data.prompts),
        "audit_records": data.audit_records,
        "feedback_rows": sum(data.rows.values()),
        "sources": data.sources,
        "skipped": data.skipped,
        "models": {
            m: {
                "labeled_prompts": data.labeled[m],
                "feedback_rows": data.rows[m],
                "good_rate": data.good_rate(m),
                "expected_cost_usd": model.expected_cost[m],
                "cost_from": data.cost_source[m],
            }
            for m in model.models
        },
        "out": str(out),
        "held_out": held,
        "warning": warning,
        "strong": strong,
        "suggested_strong_share": share,
        "snippet": snippet,
        "config_snippet": config_snippet,
        "embedding": None
        if embedded is None
        else {
            "model": embedded.alias,
            "dimension": model.embedding_dim,
            "prompts": len(embedded.vectors),
            "batches": embedded.batches,
            "cost_usd": embedded.cost_usd,
        },
    }
    if warning:
        sys.stderr.write(f"tierwise: warning: {warning}\n")
    if args.json:
        _print_json(summary)
        return EXIT_OK
    w = sys.stdout.write
    w(
        f"trained on {len(data.prompts)} distinct prompts from {data.audit_records} audit records, "
        f"{summary['feedback_rows']} feedback rows ("
        + ", ".join(f"{n} {src}" for src, n in sorted(data.sources.items()))
        + ")\n"
    )
    if data.skipped:
        w("skipped feedback rows: " + ", ".join(f"{n} {why}" for why, n in sorted(data.skipped.items())))
        w("\n")
    width = max(len(m) for m in model.models)
    w(f"  {'model':<{width}}  prompts   rows  good rate  expected cost/request\n")
    for m in model.models:
        cost = model.expected_cost[m]
        note = " (--cost)" if data.cost_source[m] == "given" else ""
        w(
            f"  {m:<{width}}  {data.labeled[m]:>7}  {data.rows[m]:>5}  {data.good_rate(m):>9.1%}  "
            f"${cost:.8f}{note}\n"
        )
    if embedded is not None:
        emb_cost = "unknown" if embedded.cost_usd is None else f"${embedded.cost_usd:.8f}"
        requests = f"{embedded.batches} request{'' if embedded.batches == 1 else 's'}"
        w(
            f"embedding half: dimension {model.embedding_dim}, embedder {embedded.alias} "
            f"({len(embedded.vectors)} prompts in {requests}, embedding cost {emb_cost}); "
            f'the router needs embedder = "{embedded.alias}"\n'
        )
    if held is not None:
        w(_holdout_text(held))
    w(f"wrote {out}\nuse it (strong model: {strong}; tune strong_share to your budget):\n")
    w("  import tierwise as tw\n  from tierwise.routing import OutcomeModel\n")
    w("".join(f"  {line}\n" for line in snippet.splitlines()))
    w("or in tierwise.toml:\n")
    w("".join(f"  {line}\n" for line in config_snippet.splitlines()))
    return EXIT_OK
