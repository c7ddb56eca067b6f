"""The persisted job of a provider batch (``<output>.job.json``): its groups, their
items and ``custom_id`` s, the provider batch ids, what has been collected, and the
cost so far. Written atomically so a crash leaves the old or the new job, never half.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["job_path", "job_status"]

_VERSION = 1


def job_path(output: str | os.PathLike[str]) -> Path:
    """Where the job of a provider batch writing ``output`` is kept."""
    out = Path(output)
    return out.with_name(out.name + ".job.json")


@dataclass(slots=True)
class _Group:
    key: str
    alias: str
    items: list[int]
    custom_ids: list[str]
    label: str
    round: int = 0
    batch_id: str | None = None
    status: str = "planned"  # planned | submitting | submitted | collected | failed
    route: dict[int, list[Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "alias": self.alias,
            "items": self.items,
            "custom_ids": self.custom_ids,
            "label": self.label,
            "round": self.round,
            "batch_id": self.batch_id,
            "status": self.status,
            "route": {str(k): v for k, v in self.route.items()},
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> _Group:
        route = {int(k): list(v) for k, v in dict(row.get("route") or {}).items()}
        return cls(
            str(row["key"]),
            str(row["alias"]),
            [int(i) for i in row["items"]],
            [str(c) for c in row["custom_ids"]],
            str(row["label"]),
            int(row.get("round", 0)),
            row.get("batch_id"),
            str(row.get("status", "planned")),
            route,
        )


@dataclass(slots=True)
class _Job:
    id: str
    fingerprints: list[str | None]
    groups: list[_Group] = field(default_factory=list)
    batch_cost_usd: float = 0.0
    realtime_cost_usd: float = 0.0

    def save(self, path: Path) -> None:
        """Atomic and durable: a crash leaves the old or the new job, never half of one."""
        data = {
            "version": _VERSION,
            "job": self.id,
            "fingerprints": self.fingerprints,
            "groups": [g.to_json() for g in self.groups],
            "batch_cost_usd": self.batch_cost_usd,
            "realtime_cost_usd": self.realtime_cost_usd,
        }
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> _Job:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != _VERSION:
                raise ValueError(f"unsupported job version {data.get('version')!r}")
            return cls(
                str(data["job"]),
                list(data["fingerprints"]),
                [_Group.from_json(g) for g in data["groups"]],
                float(data.get("batch_cost_usd", 0.0)),
                float(data.get("realtime_cost_usd", 0.0)),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable tierwise batch job ({exc})") from None


def job_status(output: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary of the job writing ``output``: groups by status, items, batch ids,
    cost so far at batch price and its real-time equivalent."""
    path = job_path(output)
    if not path.exists():
        raise FileNotFoundError(f"no provider batch job for {output} (expected {path})")
    job = _Job.load(path)
    groups = [
        {
            "alias": g.alias,
            "batch_id": g.batch_id,
            "status": g.status,
            "items": len(g.items),
            "round": g.round,
        }
        for g in job.groups
    ]
    return {
        "job": job.id,
        "items": len(job.fingerprints),
        "groups": groups,
        "batch_cost_usd": job.batch_cost_usd,
        "realtime_cost_usd": job.realtime_cost_usd,
    }
