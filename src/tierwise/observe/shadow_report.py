"""``tierwise report --shadow shadow.jsonl``: what shadow evaluation found.

Reads the shadow logs ``strategies.Shadow`` writes (one JSONL record per
comparison) and answers the question shadowing exists for: how often does the
current routing agree with the reference, per route, and what would always
using the reference cost against what the routing costs now?

Quality is relative to the reference (its answers count as 100%), so
"current routing keeps 93% of the reference's answers at 18% of its cost" is
the reading; a comparison whose verdict was undecided or whose reference call
failed is counted apart, never as agreement. Costs are means over the
comparisons with both prices known. Unparsable lines (a writer killed
mid-line) are skipped and counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["format_shadow", "summarize_shadow"]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _projection(compared: int, agreed: int, cost: float, ref: float, priced: int) -> dict[str, Any]:
    current = cost / priced if priced else None
    reference = ref / priced if priced else None
    return {
        "current": {
            "quality_vs_reference": agreed / compared if compared else None,
            "cost_per_request_usd": current,
        },
        "reference": {"quality_vs_reference": 1.0 if compared else None, "cost_per_request_usd": reference},
        "cost_ratio": current / reference if current is not None and reference else None,
    }


def summarize_shadow(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Per shadow strategy: agreement per route, errors, the shadow's spend, the projection."""
    shadows: dict[str, dict[str, Any]] = {}
    skipped = 0
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if not isinstance(rec, Mapping):
                skipped += 1
                continue
            raw_name = rec.get("shadow")
            name = raw_name if isinstance(raw_name, str) else "shadow"
            s = shadows.setdefault(
                name, {"routes": {}, "errors": 0, "undecided": 0, "shadow_cost_usd": 0.0, "unknown_cost": 0}
            )
            spent = _num(rec.get("shadow_cost_usd"))
            if spent is None:
                s["unknown_cost"] += 1
            else:
                s["shadow_cost_usd"] += spent
            if rec.get("error"):
                s["errors"] += 1
                continue
            agreed = rec.get("agreed")
            if not isinstance(agreed, bool):
                s["undecided"] += 1
                continue
            route = str(rec.get("route") or rec.get("model") or "(none)")
            r = s["routes"].setdefault(
                route,
                {"compared": 0, "agreed": 0, "cost_usd": 0.0, "reference_cost_usd": 0.0, "priced": 0},
            )
            r["compared"] += 1
            r["agreed"] += int(agreed)
            cost, ref = _num(rec.get("cost_usd")), _num(rec.get("reference_cost_usd"))
            if cost is not None and ref is not None:
                r["cost_usd"] += cost
                r["reference_cost_usd"] += ref
                r["priced"] += 1
    for s in shadows.values():
        tot = [0, 0, 0.0, 0.0, 0]
        for r in s["routes"].values():
            r["agreement_rate"] = r["agreed"] / r["compared"] if r["compared"] else None
            for i, k in enumerate(("compared", "agreed", "cost_usd", "reference_cost_usd", "priced")):
                tot[i] += r[k]
        s["compared"], s["agreed"] = int(tot[0]), int(tot[1])
        s["agreement_rate"] = tot[1] / tot[0] if tot[0] else None
        s["projection"] = _projection(int(tot[0]), int(tot[1]), float(tot[2]), float(tot[3]), int(tot[4]))
    return {"shadows": dict(sorted(shadows.items())), "skipped_lines": skipped}


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _usd(x: Any) -> str:
    return "—" if x is None else f"${x:.6f}"


def format_shadow(summary: Mapping[str, Any]) -> str:
    """The text section ``tierwise report --shadow`` prints."""
    lines: list[str] = []
    for name, s in summary["shadows"].items():
        lines.append(
            f"shadow {name}: {s['compared']} compared, agreement {_pct(s['agreement_rate'])}, "
            f"{s['errors']} failed, {s['undecided']} undecided, shadow spend {_usd(s['shadow_cost_usd'])}"
        )
        lines.append(
            f"  {'route':<24} {'compared':>8} {'agreement':>10} {'cost/req':>12} {'reference/req':>14}"
        )
        for route, r in s["routes"].items():
            per = r["cost_usd"] / r["priced"] if r["priced"] else None
            ref = r["reference_cost_usd"] / r["priced"] if r["priced"] else None
            rate = _pct(r["agreement_rate"])
            lines.append(f"  {route:<24} {r['compared']:>8} {rate:>10} {_usd(per):>12} {_usd(ref):>14}")
        p = s["projection"]
        ratio = p["cost_ratio"]
        lines.append(
            f"  projected: current routing keeps {_pct(p['current']['quality_vs_reference'])} "
            "of the reference's answers"
            f" at {_usd(p['current']['cost_per_request_usd'])}/request; always the reference: "
            f"{_usd(p['reference']['cost_per_request_usd'])}/request"
            + ("" if ratio is None else f" (current costs {_pct(ratio)} of it)")
        )
    if summary.get("skipped_lines"):
        lines.append(f"  skipped {summary['skipped_lines']} unparsable shadow-log line(s)")
    return "\n".join(lines) if lines else "shadow: no comparisons recorded"
