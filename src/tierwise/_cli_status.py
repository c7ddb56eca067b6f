"""``tierwise status``: the shared picture every process of a deployment sees.

With ``[state] backend = "redis"`` each process holds only a local view of the
shared limits, circuits and budgets; the question an operator asks ("why is
this deployment refusing?", "how much of today's budget is reserved by calls in
flight?") is about the shared state. This command reads it from Redis, per
deployment: limiter levels (requests in the window, tokens in the minute, calls
in flight, a provider's hold), circuit state, and budget spent and reserved,
then the budget buckets and the shared cache. It sends no request to any model.

With the memory backend there is no shared state to read: it says so and prints
this (new) process's own view, which is empty by construction, so a script can
parse the same shape either way. Exit 1 when Redis does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .execution.budget import BudgetLedger, Period
    from .orchestrator import Orchestrator

__all__ = ["cmd_status", "collect_status"]

_PERIODS: tuple[Period, ...] = ("day", "month", "total")
_MEMORY_NOTE = (
    "the memory backend has no shared state: each process keeps its own; "
    "this is this process's own view (empty: nothing has run in it)"
)


async def _budget_figures(
    ledger: BudgetLedger | None, scopes: Sequence[str]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """``scope -> period -> {spent_usd, reserved_usd, limit_usd}``, read from the
    shared store when there is one (one round trip for all of them)."""
    if ledger is None:
        return {}
    keys = {(scope, period): ledger.bucket(scope, period) for scope in scopes for period in _PERIODS}
    refresh = getattr(ledger.store, "refresh", None)
    if refresh is not None:
        await refresh(list(keys.values()))
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for (scope, period), key in keys.items():
        limits = [lim.limit_usd for lim in ledger.limits if lim.scope == scope and lim.period == period]
        out.setdefault(scope, {})[period] = {
            "spent_usd": ledger.store.get(key),
            "reserved_usd": ledger.store.reserved(key),
            "limit_usd": min(limits) if limits else None,
        }
    return out


async def collect_status(orch: Orchestrator) -> dict[str, Any]:
    """The shared picture as plain data (what ``--json`` prints). Raises
    ``RedisDown`` when Redis stops answering half-way."""
    from .execution.budget import _parse_scope

    state = orch.state
    deployments = orch.executor.deployments
    ledger = orch.executor.budget
    scopes = ["total", *(f"model:{alias}" for alias in deployments)]
    if ledger is not None:
        for bl in ledger.limits:
            # A per-value scope (``tag:user``) has one bucket per value: not listed.
            if bl.scope not in scopes and _parse_scope(bl.scope)[0] != "tag_each":
                scopes.append(bl.scope)
    budget = await _budget_figures(ledger, scopes)
    health = orch.health()
    out_deps: dict[str, Any] = {}
    for alias, dep in deployments.items():
        lim = dep.limiter
        limits: dict[str, Any] | None = None
        if lim is not None:
            # A shared limiter reads Redis (asnapshot); the in-memory one is its own view.
            found: Any = lim
            snap: dict[str, Any] = (
                await found.asnapshot() if hasattr(found, "asnapshot") else found.snapshot()
            )
            limits = {
                k: snap.get(k)
                for k in (
                    "rpm",
                    "tpm",
                    "max_concurrency",
                    "in_flight",
                    "requests_in_window",
                    "tokens_in_window",
                    "hold_remaining_s",
                )
            }
        h = health[alias]
        out_deps[alias] = {
            "model": dep.model,
            "limits": limits,
            "circuit": {
                "state": h["state"],
                "consecutive_failures": h["consecutive_failures"],
                "cooldown_remaining_s": h["cooldown_remaining_s"],
            },
            "budget": budget.get(f"model:{alias}"),
        }
    cache: dict[str, Any] | None = None
    shared_cache = orch.executor.cache
    asize = getattr(shared_cache, "asnapshot", None)
    if asize is not None:
        cache = await asize()
    result: dict[str, Any] = {
        "backend": "memory" if state is None else "redis",
        "shared": state is not None,
        "deployments": out_deps,
        "budget": None if ledger is None else {s: budget[s] for s in scopes if not s.startswith("model:")},
        "cache": cache,
    }
    if state is None:
        result["note"] = _MEMORY_NOTE
    else:
        result["key_prefix"] = state.key_prefix
    return result


def _ttl(ttl_s: float | None) -> str:
    return "none" if ttl_s is None else f"{ttl_s:g} s"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:,.4f}"


def _of(used: Any, cap: Any) -> str:
    if used is None and cap is None:
        return "unlimited"
    used_s = "-" if used is None else f"{used:g}" if isinstance(used, float) else str(used)
    return f"{used_s}/{'-' if cap is None else f'{cap:g}'}"


_PERIOD_WORDS = {"day": "today", "month": "this month", "total": "all time"}


def _budget_line(periods: dict[str, dict[str, float | None]]) -> str:
    parts = []
    for period in _PERIODS:
        b = periods[period]
        text = f"{_PERIOD_WORDS[period]} {_usd(b['spent_usd'])} spent + {_usd(b['reserved_usd'])} reserved"
        if b["limit_usd"] is not None:
            text += f" of {_usd(b['limit_usd'])}"
        parts.append(text)
    return "; ".join(parts)


def format_status(status: dict[str, Any]) -> str:
    """The human-readable form of ``collect_status``'s result."""
    lines = []
    if status["backend"] == "memory":
        lines.append(f"backend: memory. Note: {status['note']}.")
    else:
        lines.append(f"backend: redis (key prefix {status['key_prefix']!r}), shared state read from Redis")
    lines.append("deployments:")
    for alias, d in status["deployments"].items():
        lines.append(f"  {alias} ({d['model']})")
        lim = d["limits"]
        if lim is None:
            lines.append("    limits:  none configured")
        else:
            lines.append(
                f"    limits:  requests {_of(lim['requests_in_window'], lim['rpm'])} per minute, "
                f"tokens {_of(lim['tokens_in_window'], lim['tpm'])} per minute, "
                f"in flight {_of(lim['in_flight'], lim['max_concurrency'])}, "
                f"hold {lim['hold_remaining_s']:.1f} s"
            )
        c = d["circuit"]
        lines.append(
            f"    circuit: {c['state']} (recent failures {c['consecutive_failures']}, "
            f"cooldown {c['cooldown_remaining_s']:.1f} s)"
        )
        if d["budget"] is not None:
            lines.append(f"    budget:  {_budget_line(d['budget'])}")
    if status["budget"] is None:
        lines.append("budget: none configured")
    else:
        lines.append("budget:")
        for scope, periods in status["budget"].items():
            lines.append(f"  {scope}: {_budget_line(periods)}")
    cache = status["cache"]
    if cache is not None:
        n = cache["entries"]
        lines.append(
            f"cache: {n} {'entry' if n == 1 else 'entries'} shared "
            f"(max {cache['max_entries']}, ttl {_ttl(cache['ttl_s'])})"
        )
    return "\n".join(lines)


async def _run(path: str) -> tuple[dict[str, Any] | None, str | None]:
    from .orchestrator import Orchestrator
    from .state._redis_conn import RedisDown

    async with Orchestrator.from_config(path) as orch:
        state = orch.state
        if state is not None and not await state.ping():
            return None, "redis unavailable (did not answer within [state] timeout_s)"
        try:
            return await collect_status(orch), None
        except RedisDown as exc:
            return None, str(exc)


def cmd_status(args: argparse.Namespace) -> int:
    from .cli import EXIT_FAILED, EXIT_OK, _config_path, _print_json

    status, error = asyncio.run(_run(_config_path(args.config)))
    if status is None:
        if args.json:
            _print_json({"backend": "redis", "shared": False, "error": error})
        sys.stderr.write(f"tierwise: {error}\n")
        return EXIT_FAILED
    if args.json:
        _print_json(status)
    else:
        sys.stdout.write(format_status(status) + "\n")
    return EXIT_OK
