"""``tierwise report --html report.html``: the audit summary as one page people look at.

One self-contained file: the charts are inline SVG drawn by matplotlib (the
optional ``report`` extra), the styles are inline, nothing is fetched — it works
offline, as an e-mail attachment or a CI artifact. Charts: cost per day per
model, savings against the baseline per day (and cumulative), route
distribution, latency percentiles per model, fallback and error rate per day;
then the tables of the text report.

matplotlib is driven through ``Figure`` objects only (no ``pyplot``): no global
figure state, nothing left behind in the calling process.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CHARTS", "html_report", "write_html_report"]

_HINT = 'tierwise report --html needs matplotlib: pip install "tierwise[report]"'
#: The charts of the page, in order: (id, title).
CHARTS = (
    ("cost_per_day", "Cost per day, by model (USD)"),
    ("savings", "Savings against the baseline, per day and cumulative (USD)"),
    ("routes", "Route distribution (requests per label)"),
    ("latency", "Latency percentiles per model (ms)"),
    ("rates", "Fallback and error rate per day"),
)
_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


def _figure(width: float = 7.5, height: float = 3.2) -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(_HINT, name="matplotlib") from exc
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG needs neither


def _empty(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in these logs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _cost_per_day(days: Mapping[str, Any]) -> str:
    fig, ax = _figure()
    models = sorted({m for d in days.values() for m in d.get("cost_by_model", {})})
    names = list(days)
    if not models:
        _empty(ax, "priced calls")
    bottom = [0.0] * len(names)
    for i, model in enumerate(models):
        values = [float(days[d].get("cost_by_model", {}).get(model, 0.0)) for d in names]
        ax.bar(names, values, bottom=bottom, label=model, color=_COLORS[i % len(_COLORS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if models:
        ax.legend(fontsize=8, frameon=False)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _svg(fig)


def _savings(days: Mapping[str, Any]) -> str:
    fig, ax = _figure()
    names = [d for d in days if days[d].get("savings", {}).get("requests")]
    if not names:
        _empty(ax, "requests priced against a baseline")
        return _svg(fig)
    per_day = [float(days[d]["savings"]["savings_usd"]) for d in names]
    running, total = [], 0.0
    for v in per_day:
        total += v
        running.append(total)
    ax.bar(names, per_day, color=_COLORS[4], label="saved that day")
    ax.plot(names, running, color=_COLORS[0], marker="o", label="cumulative")
    ax.axhline(0, color="#888", linewidth=0.8)
    ax.legend(fontsize=8, frameon=False)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _svg(fig)


def _routes(labels: Mapping[str, Any]) -> str:
    fig, ax = _figure()
    if not labels:
        _empty(ax, "requests")
        return _svg(fig)
    names = list(labels)
    ax.barh(names, [int(labels[n]["requests"]) for n in names], color=_COLORS[0])
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.grid(axis="y", visible=False)
    return _svg(fig)


def _latency(models: Mapping[str, Any]) -> str:
    fig, ax = _figure()
    names = [m for m in models if models[m]["latency_ms"].get("p50") is not None]
    if not names:
        _empty(ax, "provider round trips")
        return _svg(fig)
    width = 0.27
    for j, q in enumerate(("p50", "p95", "p99")):
        xs = [i + (j - 1) * width for i in range(len(names))]
        ax.bar(
            xs, [float(models[m]["latency_ms"][q] or 0.0) for m in names], width, label=q, color=_COLORS[j]
        )
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def _rates(days: Mapping[str, Any]) -> str:
    fig, ax = _figure()
    names = list(days)
    if not names:
        _empty(ax, "requests")
        return _svg(fig)
    for key, label, color in (
        ("fallback_rate", "fallback rate", _COLORS[1]),
        ("error_rate", "error rate", _COLORS[2]),
    ):
        ax.plot(
            names,
            [100.0 * float(days[d].get(key) or 0.0) for d in names],
            marker="o",
            label=label,
            color=color,
        )
    ax.set_ylabel("% of requests")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, frameon=False)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _svg(fig)


def _usd(x: Any) -> str:
    return "unknown" if x is None else f"${x:,.4f}"


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ms(x: Any) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = "".join(
    (
        "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;",
        "margin:2rem auto;max-width:1100px;color:#222}",
        "h1{font-size:1.5rem}",
        "h2{font-size:1.1rem;margin-top:2rem}",
        ".kpis{display:flex;flex-wrap:wrap;gap:1rem}",
        ".kpi{background:#f4f6f8;border-radius:6px;padding:.6rem 1rem}",
        ".kpi b{display:block;font-size:1.25rem}",
        ".charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1rem}",
        "figure{margin:0;border:1px solid #e3e6ea;border-radius:6px;padding:.5rem}",
        "figcaption{font-weight:600;margin:.2rem .4rem}",
        "figure svg{width:100%;height:auto}",
        "table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}",
        "th,td{padding:.25rem .7rem;border-bottom:1px solid #e3e6ea;text-align:right}",
        "th:first-child,td:first-child{text-align:left}",
    )
)


def html_report(summary: Mapping[str, Any]) -> str:
    """The page for ``summarize``'s result, as one HTML string."""
    days: Mapping[str, Any] = summary.get("days") or {}
    models: Mapping[str, Any] = summary.get("models") or {}
    labels: Mapping[str, Any] = summary.get("labels") or {}
    drawn = {
        "cost_per_day": _cost_per_day(days),
        "savings": _savings(days),
        "routes": _routes(labels),
        "latency": _latency(models),
        "rates": _rates(days),
    }
    sav = summary.get("savings") or {}
    lat = summary.get("latency_ms") or {}
    kpis = [
        ("requests", f"{summary.get('requests', 0):,}"),
        ("total cost", _usd(summary.get("cost_usd"))),
        ("saved vs " + str(sav.get("baseline") or "baseline"), _usd(sav.get("savings_usd"))),
        ("savings rate", _pct(sav.get("savings_rate"))),
        ("fallback rate", _pct(summary.get("fallback_rate"))),
        ("error rate", _pct(summary.get("error_rate"))),
        ("p95 latency", f"{_ms(lat.get('p95'))} ms"),
    ]
    span = f"{summary.get('first_ts') or '?'} → {summary.get('last_ts') or '?'}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>tierwise report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>tierwise report</h1><p>{html.escape(span)}</p>",
        "<div class='kpis'>"
        + "".join(f"<div class='kpi'>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in kpis)
        + "</div>",
        "<div class='charts'>",
        *(
            f"<figure class='chart' id='chart-{cid}'><figcaption>{html.escape(title)}</figcaption>"
            f"{drawn[cid]}</figure>"
            for cid, title in CHARTS
        ),
        "</div>",
        "<h2>By model (attempts, cost as billed per try)</h2>",
        _table(
            ["model", "answered", "attempts", "errors", "cost", "p50 ms", "p95 ms", "p99 ms"],
            [
                [
                    name,
                    f"{m['requests']:,}",
                    f"{m['attempts']:,}",
                    f"{m['errors']:,}",
                    _usd(m["cost_usd"]),
                    *(_ms(m["latency_ms"][q]) for q in ("p50", "p95", "p99")),
                ]
                for name, m in models.items()
            ],
        ),
    ]
    for title, groups, head in (("By label", labels, "label"), ("By day (UTC)", days, "day")):
        parts.append(f"<h2>{title}</h2>")
        parts.append(
            _table(
                [head, "requests", "errors", "fallback", "cost", "saved", "p50 ms", "p95 ms"],
                [
                    [
                        name,
                        f"{g['requests']:,}",
                        f"{g['errors']:,}",
                        _pct(g["fallback_rate"]),
                        _usd(g["cost_usd"]),
                        _usd(g.get("savings", {}).get("savings_usd")),
                        _ms(g["latency_ms"]["p50"]),
                        _ms(g["latency_ms"]["p95"]),
                    ]
                    for name, g in groups.items()
                ],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``html_report(summary)`` to ``path`` (UTF-8)."""
    page = html_report(summary)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
