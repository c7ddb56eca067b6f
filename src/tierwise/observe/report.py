"""Summaries of an audit log: what ``tierwise report audit.jsonl`` prints.

``summarize`` reads a JSONL audit log (or a ``SQLiteAudit`` database, or any
iterable of records or JSON lines) in one streaming pass with bounded memory:
latency percentiles come from ``QuantileSketch`` (1% relative accuracy), not from
sorting every request.

Units, so the numbers add up:

* totals, ``labels`` and ``days`` count *requests* and their cost as recorded
  (``cost_usd`` of the record: what the request cost end to end);
* ``models`` counts *attempts* (every provider try, failures included) and their
  cost: what each model's provider billed. A record without attempts is counted
  as one attempt of its answering model.

Unknown prices stay visible: ``cost_usd`` sums the known costs and
``unknown_cost_requests``/``unknown_cost_attempts`` count the rest.

A log whose writer crashed mid-line ends in a truncated record; unparsable lines
are skipped and counted in ``skipped_lines``, never fatal.

Several processes (workers, hosts) each write their own log: ``summarize(a, b,
...)`` reads them all in the same pass (``audit_paths`` expands globs), so the
fleet's percentiles come from one sketch fed every request — the same figure one
process seeing all the traffic would report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .sketch import QuantileSketch

__all__ = ["audit_paths", "format_report", "summarize"]

_NO_LABEL = "(none)"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x)


def _int(x: Any) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else 0


class _Group:
    """Running totals for one row of the report."""

    __slots__ = (
        "attempts",
        "baseline_cost",
        "cache_hits",
        "cost",
        "cost_known",
        "errors",
        "fallbacks",
        "input_tokens",
        "latency",
        "output_tokens",
        "requests",
        "savings",
        "savings_requests",
        "unknown_cost",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.attempts = 0
        self.errors = 0
        self.fallbacks = 0
        self.cache_hits = 0
        self.cost = 0.0
        self.cost_known = 0
        self.unknown_cost = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.latency = QuantileSketch()
        self.baseline_cost = 0.0
        self.savings = 0.0
        self.savings_requests = 0

    def add_cost(self, cost: float | None) -> None:
        if cost is None:
            self.unknown_cost += 1
        else:
            self.cost += cost
            self.cost_known += 1

    def add_latency(self, ms: float | None) -> None:
        if ms is not None and ms == ms and abs(ms) != float("inf"):
            self.latency.add(ms)

    @property
    def cost_usd(self) -> float | None:
        # No priced call at all but some unpriced: the total is unknown, not $0.
        if self.cost_known == 0 and self.unknown_cost:
            return None
        return round(self.cost, 10)


def _latency(s: QuantileSketch, full: bool = True) -> dict[str, float | None]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    out = {"p50": r(s.quantile(0.5)), "p95": r(s.quantile(0.95)), "p99": r(s.quantile(0.99))}
    if full:
        out["mean"] = r(s.mean)
        out["max"] = r(s.max) if s.count else None
    return out


def _rate(n: int, d: int) -> float | None:
    return n / d if d else None


class _Source:
    """Yields records from a path or iterable, counting lines it had to skip."""

    def __init__(self) -> None:
        self.skipped = 0

    def _parse(self, line: str) -> dict[str, Any] | None:
        line = line.strip()
        if not line:
            return None
        try:
            rec = json.loads(line)
        except ValueError:
            self.skipped += 1
            return None
        if not isinstance(rec, dict):
            self.skipped += 1
            return None
        return rec

    def records(self, source: str | os.PathLike[str] | Iterable[Any]) -> Iterator[dict[str, Any]]:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            with path.open("rb") as fb:
                is_sqlite = fb.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
            if is_sqlite:
                from .audit import read_sqlite_audit

                yield from read_sqlite_audit(path)
                return
            # errors="replace": a line cut inside a multi-byte character must not
            # abort the whole read; it fails JSON parsing and is skipped instead.
            with path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    rec = self._parse(line)
                    if rec is not None:
                        yield rec
            return
        for item in source:
            if isinstance(item, Mapping):
                yield dict(item)
            elif isinstance(item, str | bytes):
                rec = self._parse(item.decode("utf-8", "replace") if isinstance(item, bytes) else item)
                if rec is not None:
                    yield rec
            else:
                self.skipped += 1


def audit_paths(patterns: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Each pattern as a path, or the sorted files its glob matches (``logs/*.jsonl``);
    ``FileNotFoundError`` naming a pattern that matches nothing."""
    import glob

    out: list[Path] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        if glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"no audit log matches {text}")
            out += found
        else:
            out.append(Path(text))
    return list(dict.fromkeys(out))


def summarize(
    source: str | os.PathLike[str] | Iterable[Any], *more: str | os.PathLike[str] | Iterable[Any]
) -> dict[str, Any]:
    """Aggregate audit records into a JSON-serializable summary (see module doc);
    ``more`` sources (other processes' logs) are merged into the same summary."""
    src = _Source()
    total = _Group()
    models: dict[str, _Group] = {}
    labels: dict[str, _Group] = {}
    days: dict[str, _Group] = {}
    baselines: dict[str, int] = {}
    n = 0
    first_ts: str | None = None
    last_ts: str | None = None

    def every() -> Iterator[dict[str, Any]]:
        for s in (source, *more):
            yield from src.records(s)

    day_models: dict[str, dict[str, list[float]]] = {}
    for rec in every():
        n += 1
        ts = rec.get("ts")
        day = ts[:10] if isinstance(ts, str) and len(ts) >= 10 else "unknown"
        if isinstance(ts, str):
            first_ts = ts if first_ts is None or ts < first_ts else first_ts
            last_ts = ts if last_ts is None or ts > last_ts else last_ts
        route = rec.get("route")
        label = route.get("label") if isinstance(route, Mapping) else None
        label = label if isinstance(label, str) else _NO_LABEL
        cost = _num(rec.get("cost_usd"))
        latency = _num(rec.get("latency_ms"))
        failed = bool(rec.get("error"))
        fallback = bool(rec.get("fallback"))
        cached = bool(rec.get("cached"))
        usage = rec.get("usage")
        if not isinstance(usage, Mapping):
            usage = {}
        in_tok, out_tok = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        savings = _num(rec.get("savings_usd"))
        baseline_cost = _num(rec.get("baseline_cost_usd"))
        baseline = rec.get("baseline")
        if savings is not None and isinstance(baseline, str):
            baselines[baseline] = baselines.get(baseline, 0) + 1

        for g in (total, labels.setdefault(label, _Group()), days.setdefault(day, _Group())):
            g.requests += 1
            g.errors += failed
            g.fallbacks += fallback
            g.cache_hits += cached
            g.add_cost(cost)
            g.add_latency(latency)
            g.input_tokens += in_tok
            g.output_tokens += out_tok
            if savings is not None:
                g.savings += savings
                g.baseline_cost += baseline_cost or 0.0
                g.savings_requests += 1

        attempts = rec.get("attempts")
        model = rec.get("model")
        if isinstance(model, str) and model:
            models.setdefault(model, _Group()).requests += 1
        if isinstance(attempts, list) and attempts:
            for a in attempts:
                if not isinstance(a, Mapping):
                    continue
                m = a.get("model")
                g = models.setdefault(m if isinstance(m, str) and m else "unknown", _Group())
                g.attempts += 1
                a_cost = _num(a.get("cost_usd"))
                if a_cost is not None:
                    spent = day_models.setdefault(day, {}).setdefault(_model_name(m), [0.0])
                    spent[0] += a_cost
                outcome = a.get("outcome")
                g.errors += outcome == "error"
                g.cache_hits += outcome == "cached"
                g.add_cost(_num(a.get("cost_usd")))
                if outcome not in ("cached", "skipped"):
                    g.add_latency(_num(a.get("latency_ms")))
                u = a.get("usage")
                if isinstance(u, Mapping):
                    g.input_tokens += _int(u.get("input_tokens"))
                    g.output_tokens += _int(u.get("output_tokens"))
        elif isinstance(model, str) and model:
            g = models[model]
            if cost is not None:
                day_models.setdefault(day, {}).setdefault(model, [0.0])[0] += cost
            g.attempts += 1
            g.errors += failed
            g.cache_hits += cached
            g.add_cost(cost)
            if not cached:
                g.add_latency(latency)
            g.input_tokens += in_tok
            g.output_tokens += out_tok

    return {
        "records": n,
        "skipped_lines": src.skipped,
        "first_ts": first_ts,
        "last_ts": last_ts,
        "requests": total.requests,
        "errors": total.errors,
        "error_rate": _rate(total.errors, total.requests),
        "fallbacks": total.fallbacks,
        "fallback_rate": _rate(total.fallbacks, total.requests),
        "cache_hits": total.cache_hits,
        "cache_hit_rate": _rate(total.cache_hits, total.requests),
        "cost_usd": total.cost_usd,
        "unknown_cost_requests": total.unknown_cost,
        "tokens": {"input": total.input_tokens, "output": total.output_tokens},
        "latency_ms": _latency(total.latency),
        "savings": {
            **_savings(total),
            # The baseline most records name (one per config; several if it changed).
            "baseline": max(baselines, key=lambda b: baselines[b]) if baselines else None,
            "baselines": dict(sorted(baselines.items())),
        },
        "models": {
            k: {
                "requests": g.requests,
                "attempts": g.attempts,
                "errors": g.errors,
                "error_rate": _rate(g.errors, g.attempts),
                **_spend(g, "unknown_cost_attempts"),
            }
            for k, g in sorted(models.items())
        },
        "labels": {k: _request_row(g) for k, g in sorted(labels.items())},
        "days": {
            k: {
                **_request_row(g),
                "error_rate": _rate(g.errors, g.requests),
                "cost_by_model": {m: round(v[0], 10) for m, v in sorted(day_models.get(k, {}).items())},
            }
            for k, g in sorted(days.items())
        },
    }


def _request_row(g: _Group) -> dict[str, Any]:
    return {
        "requests": g.requests,
        "errors": g.errors,
        "fallbacks": g.fallbacks,
        "fallback_rate": _rate(g.fallbacks, g.requests),
        **_spend(g, "unknown_cost_requests"),
        "savings": _savings(g),
    }


def _savings(g: _Group) -> dict[str, Any]:
    """Against the baseline, over the requests priced both ways."""
    return {
        "requests": g.savings_requests,
        "baseline_cost_usd": round(g.baseline_cost, 10),
        "savings_usd": round(g.savings, 10),
        "savings_rate": g.savings / g.baseline_cost if g.baseline_cost > 0 else None,
    }


def _model_name(m: Any) -> str:
    return m if isinstance(m, str) and m else "unknown"


def _spend(g: _Group, unknown_key: str) -> dict[str, Any]:
    """Cache hits, cost, tokens and latency of a group (``unknown_key`` names what
    its unknown-cost count counts: attempts or requests)."""
    return {
        "cache_hits": g.cache_hits,
        "cost_usd": g.cost_usd,
        unknown_key: g.unknown_cost,
        "tokens": {"input": g.input_tokens, "output": g.output_tokens},
        "latency_ms": _latency(g.latency, full=False),
    }


# -- text -------------------------------------------------------------------------


def _usd(x: Any) -> str:
    return "unknown" if x is None else f"${x:,.4f}"


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ms(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if abs(x) < 10 else f"{x:,.0f}"  # sub-10 ms (cache, local) keeps a decimal


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, two spaces between columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_report(summary: Mapping[str, Any]) -> str:
    """A plain-text rendering of ``summarize``'s result (no colour, fixed-width tables)."""
    out: list[str] = []
    n = summary.get("requests", 0)
    span = ""
    if summary.get("first_ts"):
        span = f", {summary['first_ts']} → {summary['last_ts']}"
    out.append(f"tierwise audit report: {n:,} request{'s' if n != 1 else ''}{span}")
    if summary.get("skipped_lines"):
        out.append(f"  ({summary['skipped_lines']} unreadable line(s) skipped)")
    out.append("")
    unknown = summary.get("unknown_cost_requests", 0)
    cost = _usd(summary.get("cost_usd"))
    if unknown:
        cost += f"  (+{unknown:,} request(s) of unknown cost, not included)"
    lat = summary.get("latency_ms") or {}
    tokens = summary.get("tokens") or {}
    out += [
        f"Total cost   {cost}",
        f"Errors       {summary.get('errors', 0):,} ({_pct(summary.get('error_rate'))})",
        f"Fallbacks    {summary.get('fallbacks', 0):,} ({_pct(summary.get('fallback_rate'))})",
        f"Cache hits   {summary.get('cache_hits', 0):,} ({_pct(summary.get('cache_hit_rate'))})",
        f"Latency ms   p50 {_ms(lat.get('p50'))}  p95 {_ms(lat.get('p95'))}  p99 {_ms(lat.get('p99'))}"
        f"  mean {_ms(lat.get('mean'))}  max {_ms(lat.get('max'))}",
        f"Tokens       in {tokens.get('input', 0):,}  out {tokens.get('output', 0):,}",
    ]
    sav = summary.get("savings") or {}
    if sav.get("requests"):
        out.append(
            f"Savings      {_usd(sav['savings_usd'])} ({_pct(sav['savings_rate'])}) against "
            f"{sav.get('baseline') or 'the baseline'} for everything ({_usd(sav['baseline_cost_usd'])}), "
            f"over {sav['requests']:,} priced request(s)"
        )

    models = summary.get("models") or {}
    if models:
        rows = [
            [
                name,
                f"{m['requests']:,}",
                f"{m['attempts']:,}",
                f"{m['errors']:,}",
                _usd(m["cost_usd"]),
                f"{m['unknown_cost_attempts']:,}",
                _ms(m["latency_ms"]["p50"]),
                _ms(m["latency_ms"]["p95"]),
            ]
            for name, m in models.items()
        ]
        out += ["", "By model (attempts, cost as billed per try)"]
        out += _table(
            ["model", "answered", "attempts", "errors", "cost", "unpriced", "p50 ms", "p95 ms"], rows
        )

    for title, key, head in (("By label", "labels", "label"), ("By day (UTC)", "days", "day")):
        groups = summary.get(key) or {}
        if not groups:
            continue
        rows = [
            [
                name,
                f"{g['requests']:,}",
                f"{g['errors']:,}",
                _pct(g["fallback_rate"]),
                _usd(g["cost_usd"]),
                f"{g['unknown_cost_requests']:,}",
                _ms(g["latency_ms"]["p50"]),
                _ms(g["latency_ms"]["p95"]),
            ]
            for name, g in groups.items()
        ]
        out += ["", title]
        out += _table([head, "requests", "errors", "fallback", "cost", "unpriced", "p50 ms", "p95 ms"], rows)
    return "\n".join(out)
