"""``tierwise batch --provider-batch / --status / --cancel``: the provider batch side
of the ``batch`` command (see ``tierwise.strategies.provider_batch``).

Split from ``cli.py`` so that module stays a table of commands; real-time batches
stay there.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli import EXIT_FAILED, EXIT_OK, _config_path, _print_json, _UsageError

__all__ = ["cmd_provider_batch", "wants_provider_batch"]


def wants_provider_batch(args: argparse.Namespace) -> bool:
    return bool(args.provider_batch or args.status or args.cancel)


def _status(args: argparse.Namespace) -> int:
    from .strategies.provider_batch import job_status

    try:
        status = job_status(args.out)
    except (FileNotFoundError, ValueError) as exc:
        raise _UsageError(str(exc)) from None
    if args.json:
        _print_json(status)
        return EXIT_OK
    out = sys.stdout
    out.write(f"job {status['job']}: {status['items']} items\n")
    for g in status["groups"]:
        out.write(
            f"  {g['alias']:<12} {g['status']:<10} {g['items']:>6} items  round {g['round']}  "
            f"{g['batch_id'] or '(not submitted)'}\n"
        )
    out.write(
        f"cost so far ${status['batch_cost_usd']:.6f} at batch price "
        f"(${status['realtime_cost_usd']:.6f} in real-time mode)\n"
    )
    return EXIT_OK


def cmd_provider_batch(args: argparse.Namespace, items: list[Any], bar: Any, metadata: dict[str, Any]) -> int:
    """Run, inspect or cancel a provider batch job writing ``args.out``."""
    import anyio

    from . import Orchestrator
    from .strategies.provider_batch import cancel_job, run_provider_batch

    if args.status:
        return _status(args)
    orch = Orchestrator.from_config(_config_path(args.config))

    async def cancel() -> list[str]:
        async with orch:
            return await cancel_job(orch, args.out)

    async def go() -> list[Any]:
        async with orch:
            return await run_provider_batch(
                orch,
                items,
                args.template,
                output=args.out,
                strategy=args.strategy,
                metadata=metadata or None,
                progress=bar,
                retry_failed=args.retry_failed,
                poll_interval_s=args.poll_interval,
            )

    try:
        if args.cancel:
            canceled = anyio.run(cancel)
            if args.json:
                _print_json({"canceled": canceled})
            else:
                sys.stdout.write(f"canceled {len(canceled)} batch(es): {', '.join(canceled) or '-'}\n")
            return EXIT_OK
        results = anyio.run(go)
    except (ValueError, FileNotFoundError) as exc:
        raise _UsageError(str(exc)) from None
    finally:
        bar.close()
    from .strategies.provider_batch import job_status

    status = job_status(args.out)
    ok = sum(1 for r in results if r.ok)
    summary = {
        "items": len(results),
        "ok": ok,
        "failed": len(results) - ok,
        "resumed": sum(1 for r in results if r.resumed),
        "cost_usd": status["batch_cost_usd"],
        "realtime_cost_usd": status["realtime_cost_usd"],
        "output": args.out,
    }
    if args.json:
        _print_json(summary)
    else:
        sys.stdout.write(
            f"{ok}/{len(results)} succeeded ({summary['resumed']} resumed), {summary['failed']} failed; "
            f"cost ${summary['cost_usd']:.6f} at batch price, "
            f"${summary['realtime_cost_usd']:.6f} in real-time mode; results in {args.out}\n"
        )
    return EXIT_OK if ok == len(results) else EXIT_FAILED
