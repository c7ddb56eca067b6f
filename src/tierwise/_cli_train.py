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
    w(f"wrote {out}\nuse it (strong model: {strong}; tune strong_share to your budget):\n")
    w("  import tierwise as tw\n  from tierwise.routing import OutcomeModel\n")
    w("".join(f"  {line}\n" for line in snippet.splitlines()))
    w("or in tierwise.toml:\n")
    w("".join(f"  {line}\n" for line in config_snippet.splitlines()))
    return EXIT_OK
