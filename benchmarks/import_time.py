"""How long does ``import tierwise`` take, and how much memory does it pull in?

Why it matters: tierwise is embedded in web backends and workers, where import time
is paid on every cold start (serverless, autoscaled pods, CLI invocations) and the
resident set is paid per worker process. The DESIGN promises a light import: heavy
pieces load on first use.

Method: every measurement runs in a fresh interpreter (``sys.executable``) so that
nothing is already imported. The child times the import itself with
``time.perf_counter`` and reads its peak RSS with ``resource.getrusage`` right
after; the parent repeats that ``--runs`` times (default 5) and prints medians. A
``baseline`` row (an interpreter that imports nothing) shows what any Python
process costs, so the delta is what the library adds. ``litellm`` and ``openai``
are measured the same way when installed, for comparison, and skipped otherwise.

Bytecode: installed packages have compiled ``.pyc`` files (pip compiles at install
time), but a source checkout run with ``PYTHONDONTWRITEBYTECODE=1`` and no
``__pycache__`` recompiles every module on every import, which inflates the figure.
By default the children therefore run with bytecode writing enabled and one
discarded warm-up run per module, so all rows are compared in the state users
actually have. Use ``--cold`` to skip both and measure the environment as given.

Usage::

    python benchmarks/import_time.py            # table, exit 0
    python benchmarks/import_time.py --check    # exit 1 if tierwise is over target
    python benchmarks/import_time.py --json     # machine-readable

Targets (tierwise only): import under 0.25 s and peak RSS under 40 MB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

TARGET_SECONDS = 0.25
TARGET_RSS_MB = 40.0

# Runs in the child. Prints one JSON line: import seconds, peak RSS in MB, and how
# many modules the import added. Peak RSS comes from VmHWM in /proc/self/status on
# Linux: getrusage's ru_maxrss survives execve there, so a child forked from this
# (larger) parent would report the parent's size. Elsewhere ru_maxrss is used
# (KiB on Linux/BSD, bytes on macOS).
_CHILD = r"""
import json, resource, sys, time
name = sys.argv[1]
before = len(sys.modules)
t0 = time.perf_counter()
if name:
    __import__(name)
elapsed = time.perf_counter() - t0
rss_mb = None
try:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                rss_mb = int(line.split()[1]) / 1024
except OSError:
    pass
if rss_mb is None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
print(json.dumps({"seconds": elapsed, "rss_mb": rss_mb, "modules": len(sys.modules) - before}))
"""


@dataclass
class Row:
    name: str
    import_s: float
    process_s: float
    rss_mb: float
    modules: int
    runs: int


def _child_env(cold: bool) -> dict[str, str]:
    env = dict(os.environ)
    if not cold:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run_once(module: str, env: dict[str, str]) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, module],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"importing {module or '(nothing)'} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def measure(module: str, runs: int, cold: bool) -> Row:
    env = _child_env(cold)
    if not cold:
        _run_once(module, env)  # warm-up: writes .pyc files, fills the OS file cache
    samples = [_run_once(module, env) for _ in range(runs)]
    return Row(
        name=module or "baseline (no import)",
        import_s=statistics.median(s["seconds"] for s, _ in samples),
        process_s=statistics.median(wall for _, wall in samples),
        rss_mb=statistics.median(s["rss_mb"] for s, _ in samples),
        modules=int(statistics.median(s["modules"] for s, _ in samples)),
        runs=runs,
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per module (median)")
    parser.add_argument("--check", action="store_true", help="exit 1 when tierwise is over target")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--cold", action="store_true", help="keep PYTHONDONTWRITEBYTECODE; no warm-up")
    parser.add_argument(
        "--compare",
        nargs="*",
        default=["litellm", "openai"],
        help="other modules to measure when installed (default: litellm openai)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    rows = [measure("", args.runs, args.cold), measure("tierwise", args.runs, args.cold)]
    skipped: list[str] = []
    for name in args.compare:
        if _installed(name):
            rows.append(measure(name, args.runs, args.cold))
        else:
            skipped.append(name)

    tierwise = rows[1]
    over = []
    if tierwise.import_s > TARGET_SECONDS:
        over.append(f"import {tierwise.import_s:.3f} s > {TARGET_SECONDS} s")
    if tierwise.rss_mb > TARGET_RSS_MB:
        over.append(f"peak RSS {tierwise.rss_mb:.1f} MB > {TARGET_RSS_MB} MB")

    if args.json:
        print(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "mode": "cold" if args.cold else "warm",
                    "targets": {"import_s": TARGET_SECONDS, "rss_mb": TARGET_RSS_MB},
                    "rows": [asdict(r) for r in rows],
                    "skipped": skipped,
                    "over_target": over,
                },
                indent=2,
            )
        )
    else:
        base = rows[0]
        mode = "cold: no .pyc" if args.cold else "warm: .pyc present"
        print(
            f"import cost, median of {args.runs} fresh interpreters (Python {sys.version.split()[0]}, {mode})"
        )
        header = f"{'module':<22} {'import ms':>10} {'process ms':>11} {'peak RSS MB':>12} {'+RSS MB':>8} {'+modules':>9}"
        print(header)
        print("-" * len(header))
        for r in rows:
            extra_rss = r.rss_mb - base.rss_mb if r is not base else 0.0
            print(
                f"{r.name:<22} {r.import_s * 1e3:>10.1f} {r.process_s * 1e3:>11.1f} "
                f"{r.rss_mb:>12.1f} {extra_rss:>8.1f} {r.modules:>9d}"
            )
        for name in skipped:
            print(f"{name:<22} {'(not installed, skipped)':>10}")
        verdict = "; ".join(over) if over else "within target"
        print(
            f"\ntierwise target: import < {TARGET_SECONDS * 1e3:.0f} ms, peak RSS < {TARGET_RSS_MB:.0f} MB: {verdict}"
        )

    return 1 if (args.check and over) else 0


if __name__ == "__main__":
    sys.exit(main())
