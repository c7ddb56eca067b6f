"""The ``tierwise`` command.

Exit codes follow shell conventions: 0 success, 1 the request failed (provider
errors, budget exceeded), 2 usage or configuration error, 130 interrupted.
Every command that prints a result takes ``--json`` for scripts; human output
goes to stdout, diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _config_path(arg: str | None) -> str:
    path = arg or os.environ.get("TIERWISE_CONFIG") or "tierwise.toml"
    if not Path(path).exists():
        raise _UsageError(
            f"config file not found: {path} (pass --config FILE or set TIERWISE_CONFIG)"
        )
    return path


class _UsageError(Exception):
    pass


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# ---------------------------------------------------------------------- commands


def _cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from . import Orchestrator
    from .types import Done, TextDelta

    orch = Orchestrator.from_config(_config_path(args.config))
    metadata = dict(kv.split("=", 1) for kv in args.meta or [])

    async def go() -> dict[str, Any]:
        async with orch:
            if args.stream and not args.json:
                response = None
                async for event in orch.stream(args.prompt, strategy=args.strategy, metadata=metadata):
                    if isinstance(event, TextDelta):
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
                    elif isinstance(event, Done):
                        response = event.response
                sys.stdout.write("\n")
                assert response is not None
            else:
                response = await orch.run(args.prompt, strategy=args.strategy, metadata=metadata)
                if not args.json:
                    sys.stdout.write(response.text + "\n")
            return {
                "text": response.text,
                "model": response.model,
                "deployment": response.deployment,
                "provider": response.provider,
                "finish_reason": response.finish_reason,
                "cost_usd": response.cost_usd,
                "latency_ms": round(response.latency_ms, 1),
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
                "route": response.route.strategy_path,
                "label": response.route.label,
                "reason": response.route.reason,
                "fallback": response.fallback,
                "cached": response.cached,
                "attempts": len(response.attempts),
            }

    info = anyio.run(go)
    if args.json:
        _print_json(info)
    else:
        cost = "unknown" if info["cost_usd"] is None else f"${info['cost_usd']:.6f}"
        extra = " (fallback)" if info["fallback"] else ""
        extra += " (cached)" if info["cached"] else ""
        sys.stderr.write(
            f"-- model {info['deployment'] or info['model']} ({info['provider']}){extra} · cost {cost} · "
            f"{info['latency_ms']:.0f} ms · {info['input_tokens']}+{info['output_tokens']} tokens\n"
        )
    return EXIT_OK


def _cmd_explain(args: argparse.Namespace) -> int:
    from . import Orchestrator

    orch = Orchestrator.from_config(_config_path(args.config))
    route = orch.explain(args.prompt, strategy=args.strategy)
    data = {
        "strategy": route.strategy_path,
        "label": route.label,
        "reason": route.reason,
        "score": route.score,
    }
    if args.json:
        _print_json(data)
    else:
        label = f" → {route.label}" if route.label else ""
        sys.stdout.write(f"{route.strategy_path}{label}\n  why: {route.reason}\n")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from .observe.report import format_report, summarize

    path = Path(args.audit)
    if not path.exists():
        raise _UsageError(f"audit log not found: {path}")
    summary = summarize(path)
    if args.json:
        _print_json(summary)
    else:
        sys.stdout.write(format_report(summary) + "\n")
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .config import load_config

    cfg = load_config(args.file)
    missing = sorted(
        {
            p.api_key_env
            for p in cfg.providers.values()
            if p.api_key_env and not os.environ.get(p.api_key_env)
        }
    )
    data = {
        "ok": True,
        "models": sorted(cfg.models),
        "strategies": sorted(cfg.strategies),
        "providers": sorted(cfg.providers),
        "missing_api_key_env": missing,
    }
    if args.json:
        _print_json(data)
    else:
        sys.stdout.write(
            f"{args.file}: OK — {len(cfg.models)} model(s), {len(cfg.strategies)} strategy(ies), "
            f"{len(cfg.providers)} provider(s)\n"
        )
        for env in missing:
            sys.stdout.write(f"  note: {env} is not set in this environment\n")
    return EXIT_OK


def _cmd_mock_server(args: argparse.Namespace) -> int:
    from .testing.mock_server import main_mock_server

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.config:
        argv += ["--config", args.config]
    return main_mock_server(argv)


# ---------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierwise",
        description="Send each LLM request to the cheapest model that can do it well.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser, config: bool = True) -> None:
        if config:
            p.add_argument("--config", "-c", help="config file (default: $TIERWISE_CONFIG or ./tierwise.toml)")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="answer a prompt, then print model, cost and latency")
    p.add_argument("prompt")
    p.add_argument("--strategy", "-s")
    p.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="request metadata (repeatable)")
    common(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("explain", help="show which route a prompt would take and why (calls no model)")
    p.add_argument("prompt")
    p.add_argument("--strategy", "-s")
    common(p)
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("report", help="summarize an audit log: cost, calls, fallbacks, latency")
    p.add_argument("audit", help="audit log (JSONL)")
    common(p, config=False)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file")
    common(p, config=False)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("mock-server", help="run the offline mock LLM server (OpenAI, Anthropic, Gemini)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--config", help="TOML/JSON file describing the simulated models")
    p.set_defaults(func=_cmd_mock_server)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from .errors import BudgetExceeded, ConfigError, TierwiseError

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except (_UsageError, ConfigError) as exc:
        sys.stderr.write(f"tierwise: error: {exc}\n")
        return EXIT_USAGE
    except BudgetExceeded as exc:
        sys.stderr.write(f"tierwise: budget exceeded: {exc}\n")
        return EXIT_FAILED
    except TierwiseError as exc:
        sys.stderr.write(f"tierwise: request failed: {type(exc).__name__}: {exc}\n")
        for sub_exc in getattr(exc, "exceptions", ()):
            sys.stderr.write(f"  - {type(sub_exc).__name__}: {sub_exc}\n")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
