"""The ``tierwise`` command.

Exit codes follow shell conventions: 0 success, 1 the request failed (provider
errors, budget exceeded) or ``train`` could not train, 2 usage, configuration or
input-file error, 130 interrupted.
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
DEFAULT_EMBED_BATCH = 64
DEFAULT_MOCK_PORT = 8765
"""Where ``tierwise mock-server`` listens and ``tierwise init --offline`` points."""
"""Prompts per embeddings request in ``tierwise train --embedder`` (OpenAI accepts up to 2,048)."""


def _config_path(arg: str | None) -> str:
    path = arg or os.environ.get("TIERWISE_CONFIG") or "tierwise.toml"
    if not Path(path).exists():
        raise _UsageError(f"config file not found: {path} (pass --config FILE or set TIERWISE_CONFIG)")
    return path


class _UsageError(Exception):
    """A mistake on the command line or in its inputs: exit 2, no traceback."""


_TRUE = frozenset(("true", "yes", "on"))
_FALSE = frozenset(("false", "no", "off"))


def meta_value(text: str) -> str | bool | int | float:
    """A ``--meta`` value as what it means: ``true/false/yes/no/on/off`` are booleans
    and numbers are numbers (``json_output=false`` must not route to the structured
    tier because the string "false" is truthy); anything else stays a string."""
    folded = text.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    try:
        return int(folded)
    except ValueError:
        pass
    try:
        number = float(folded)
    except ValueError:
        return text
    return number if number == number and abs(number) != float("inf") else text


def _metadata(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise _UsageError(f"--meta expects KEY=VALUE, got {kv!r}")
        out[key] = meta_value(value)
    return out


def _prompt(arg: str) -> str:
    """The prompt argument; ``-`` reads it from stdin (``git diff | tierwise run -``)."""
    if arg != "-":
        return arg
    text = sys.stdin.read()
    if not text.strip():
        raise _UsageError("no prompt on stdin (the prompt '-' means: read it from stdin)")
    return text.rstrip("\n")


def _request_params(args: argparse.Namespace) -> dict[str, Any]:
    """``--system``, ``--max-tokens`` and ``--temperature`` as ``run`` keywords."""
    if args.max_tokens is not None and args.max_tokens < 1:
        raise _UsageError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    if args.temperature is not None and not 0.0 <= args.temperature <= 2.0:
        raise _UsageError(f"--temperature must be within 0..2, got {args.temperature}")
    return {"system": args.system, "max_tokens": args.max_tokens, "temperature": args.temperature}


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# ---------------------------------------------------------------------- commands


def _cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from . import Orchestrator
    from .errors import TierwiseError
    from .types import Done, TextDelta

    metadata = _metadata(args.meta or [])
    prompt = _prompt(args.prompt)
    params = _request_params(args)
    orch = Orchestrator.from_config(_config_path(args.config))

    async def go() -> dict[str, Any]:
        async with orch:
            if args.stream:
                # --stream --json still streams (so the JSON reflects a streamed call,
                # ttft included); only the live text is left out of stdout.
                response = None
                async for event in orch.stream(prompt, args.strategy, metadata, **params):
                    if isinstance(event, TextDelta):
                        if not args.json:
                            sys.stdout.write(event.text)
                            sys.stdout.flush()
                    elif isinstance(event, Done):
                        response = event.response
                if not args.json:
                    sys.stdout.write("\n")
                if response is None:
                    raise TierwiseError("the stream ended without a final response")
            else:
                response = await orch.run(prompt, args.strategy, metadata, **params)
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
                "ttft_ms": None if response.ttft_ms is None else round(response.ttft_ms, 1),
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
    import anyio

    from . import Orchestrator

    metadata = _metadata(args.meta or [])
    prompt = _prompt(args.prompt)
    orch = Orchestrator.from_config(_config_path(args.config))
    try:
        route = orch.explain(prompt, args.strategy, metadata, system=args.system)
    finally:
        # Building opened the audit log (and may hold a cache); release them even
        # though explain calls no model.
        anyio.run(orch.aclose)
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
    from .observe.report import audit_paths, format_report, summarize

    try:
        paths = audit_paths(args.audit)
    except FileNotFoundError as exc:
        raise _UsageError(str(exc)) from None
    for path in paths:
        if not path.exists():
            raise _UsageError(f"audit log not found: {path}")
    try:
        summary = summarize(*paths)
    except OSError as exc:  # a directory, no permission, ...
        raise _UsageError(f"cannot read audit log {exc.filename or ''}: {exc.strerror or exc}") from None
    if args.html:
        from .observe.report_html import write_html_report

        try:
            write_html_report(summary, args.html)
        except ImportError as exc:
            raise _UsageError(str(exc)) from None
        except OSError as exc:
            raise _UsageError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    shadow = None
    if getattr(args, "shadow", None):
        from .observe.shadow_report import format_shadow, summarize_shadow

        try:
            shadow = summarize_shadow(args.shadow)
        except OSError as exc:
            raise _UsageError(f"cannot read shadow log {exc.filename or ''}: {exc.strerror or exc}") from None
    if args.json:
        _print_json(summary if shadow is None else {**summary, "shadow": shadow})
    else:
        sys.stdout.write(format_report(summary) + "\n")
        if shadow is not None:
            sys.stdout.write(format_shadow(shadow) + "\n")
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .config import check_config, config_warnings

    args.file = _config_path(args.file or args.config)
    cfg = check_config(args.file)
    warnings = config_warnings(cfg)
    from ._config._builtins import default_key_env

    envs = {p.api_key_env for p in cfg.providers.values() if p.api_key_env}
    # A provider used by name (no section) reads its row's variable (DEEPSEEK_API_KEY...).
    for m in cfg.models.values():
        env = None if m.provider in cfg.providers else default_key_env(m.provider)
        if env:
            envs.add(env)
    missing = sorted(e for e in envs if not os.environ.get(e))
    data = {
        "ok": True,
        "models": sorted(cfg.models),
        "strategies": sorted(cfg.strategies),
        "providers": sorted(cfg.providers),
        "missing_api_key_env": missing,
        "warnings": warnings,
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
        for warning in warnings:
            sys.stdout.write(f"  warning: {warning}\n")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import anyio

    from .demo import format_demo, run_demo

    if args.requests < 1:
        raise _UsageError("--requests must be at least 1")
    sys.stderr.write(f"running {args.requests} requests against the offline mock server…\n")
    result = anyio.run(lambda: run_demo(args.requests, concurrency=args.concurrency, seed=args.seed))
    if args.json:
        from dataclasses import asdict

        data = asdict(result)
        data["saving_vs_opus"] = result.saving_vs_opus
        data["saving_vs_sonnet"] = result.saving_vs_sonnet
        _print_json(data)
    else:
        sys.stdout.write(format_demo(result) + "\n")
    return EXIT_OK if result.failed == 0 else EXIT_FAILED


def _read_items(path: str) -> list[Any]:
    """JSONL: each line a JSON string, an object (with ``prompt`` or template
    fields), or plain text (a line that does not start like JSON is the prompt).
    A line that starts like JSON (``{``, ``[``, ``"``) but does not parse is an
    error naming its line number: it is not sent, as a literal prompt, and paid for."""
    from .strategies.batch import InvalidItem

    items: list[Any] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    items.append(json.loads(line))
                except (ValueError, RecursionError) as exc:
                    if line[0] in '{["':
                        items.append(InvalidItem(f"line {number}: malformed JSON ({exc})"))
                    else:
                        items.append(line)
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return items


class _ProgressBar:
    """A one-line progress bar on stderr (rich's when the ``rich`` extra is installed)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet or not sys.stderr.isatty()
        self._rich: Any = None
        self._task: Any = None
        if not self.quiet:
            try:
                from rich.progress import Progress
            except ImportError:
                pass
            else:
                self._rich = Progress(transient=False)
                self._rich.start()
                self._task = self._rich.add_task("batch", total=total)

    def __call__(self, p: Any) -> None:
        if self._rich is not None:
            waiting = f" ({p.submitted} in provider batches)" if p.submitted else ""
            self._rich.update(self._task, completed=p.done, description=f"batch ${p.cost_usd:.4f}{waiting}")
            return
        if self.quiet:
            return
        width = 30
        filled = int(width * p.done / max(1, p.total))
        waiting = f"in batches {p.submitted} · " if p.submitted else ""
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {p.done}/{p.total} "
            f"{waiting}failed {p.failed} · ${p.cost_usd:.4f} · {p.elapsed_s:.0f}s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif not self.quiet:
            sys.stderr.write("\n")


def _cmd_batch(args: argparse.Namespace) -> int:
    import anyio

    from . import Orchestrator
    from ._cli_batch import cmd_provider_batch, wants_provider_batch
    from .strategies.batch import run_batch

    metadata = _metadata(args.meta or [])
    items = [] if args.status or args.cancel else _read_items(args.file)
    bar = _ProgressBar(len(items), quiet=args.quiet or args.json or args.status or args.cancel)
    if wants_provider_batch(args):
        return cmd_provider_batch(args, items, bar, metadata)
    orch = Orchestrator.from_config(_config_path(args.config))

    async def go() -> list[Any]:
        async with orch:
            return await run_batch(
                orch,
                items,
                args.template,
                concurrency=args.concurrency,
                strategy=args.strategy,
                metadata=metadata or None,
                progress=bar,
                output=args.out,
            )

    try:
        results = anyio.run(go)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    finally:
        bar.close()
    ok = sum(1 for r in results if r.ok)
    cost = sum(r.response.cost_usd or 0.0 for r in results if r.response is not None)
    summary = {
        "items": len(results),
        "ok": ok,
        "failed": len(results) - ok,
        "resumed": sum(1 for r in results if r.resumed),
        "cost_usd": cost,
        "output": args.out,
    }
    if args.json:
        _print_json(summary)
    else:
        sys.stdout.write(
            f"{ok}/{len(results)} succeeded ({summary['resumed']} resumed from {args.out}), "
            f"{summary['failed']} failed, cost ${cost:.6f}; results in {args.out}\n"
        )
    return EXIT_OK if ok == len(results) else EXIT_FAILED


def _cmd_train(args: argparse.Namespace) -> int:
    # In its own module: the command is long, and most runs of ``tierwise`` never need it.
    from ._cli_train import cmd_train

    return cmd_train(args)


def _cmd_init(args: argparse.Namespace) -> int:
    from ._cli_init import cmd_init

    return cmd_init(args)


def _cmd_rules(args: argparse.Namespace) -> int:
    from ._cli_rules import cmd_rules

    return cmd_rules(args)


def _cmd_status(args: argparse.Namespace) -> int:
    from ._cli_status import cmd_status

    return cmd_status(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(
        _config_path(args.config),
        host=args.host,
        port=args.port,
        workers=args.workers,
        keys_env=args.keys_env,
        drain_s=args.drain_s,
    )
    return EXIT_OK


def _cmd_mock_server(args: argparse.Namespace) -> int:
    from .testing.mock_server import main_mock_server  # kept by the mock_server split (CLI entry)

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.config:
        argv += ["--config", args.config]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    return main_mock_server(argv)


# ---------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .routing.feedback import DEFAULT_MIN_FEEDBACK

    parser = argparse.ArgumentParser(
        prog="tierwise",
        description="Send each LLM request to the cheapest model that can do it well.",
    )
    parser.add_argument("--version", action="version", version=f"tierwise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def prompt(p: argparse.ArgumentParser) -> None:
        p.add_argument("prompt", help="the prompt; '-' reads it from stdin")
        p.add_argument(
            "--strategy", "-s", help="strategy name from the config (default: its default_strategy)"
        )
        p.add_argument("--system", help="system prompt sent before the prompt")

    def strategy(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--strategy", "-s", help="strategy name from the config (default: its default_strategy)"
        )

    def common(p: argparse.ArgumentParser, config: bool = True) -> None:
        if config:
            p.add_argument(
                "--config", "-c", help="config file (default: $TIERWISE_CONFIG or ./tierwise.toml)"
            )
        p.add_argument("--json", action="store_true", help="machine-readable output")

    def meta(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--meta",
            action="append",
            metavar="KEY=VALUE",
            help="request metadata (repeatable); true/false/yes/no/on/off and numbers are typed, "
            "so json_output=false means false",
        )

    p = sub.add_parser("run", help="answer a prompt, then print model, cost and latency")
    prompt(p)
    p.add_argument("--max-tokens", type=int, metavar="N", help="cap on the answer's length, in tokens")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling temperature (0..2)")
    p.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    meta(p)
    common(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("explain", help="show which route a prompt would take and why (calls no model)")
    prompt(p)
    meta(p)
    common(p)
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("report", help="summarize audit logs: cost, calls, fallbacks, latency")
    p.add_argument(
        "audit", nargs="+", help="audit logs (JSONL or SQLite), or globs: several processes' logs merge"
    )
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    p.add_argument(
        "--shadow",
        action="append",
        metavar="FILE",
        help="shadow logs (strategies.Shadow): agreement per route, projected cost vs the reference",
    )
    common(p, config=False)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("check-config", help="validate a config file: every error, then warnings")
    p.add_argument(
        "file",
        nargs="?",
        help="config file (default: --config, $TIERWISE_CONFIG or ./tierwise.toml, as for run)",
    )
    common(p)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser(
        "demo", help="the four-tier router on the offline mock server: cost, latency, fallbacks"
    )
    p.add_argument("--requests", "-n", type=int, default=200, help="requests to send (default 200)")
    p.add_argument("--concurrency", type=int, default=24, help="requests in flight at once (default 24)")
    p.add_argument("--seed", type=int, default=7, help="seed of the workload and injected faults (default 7)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("batch", help="run every line of a JSONL file; resumable, results in order")
    p.add_argument("file", help="JSONL input: one prompt (string or object) per line")
    p.add_argument("--out", "-o", required=True, help="JSONL results; re-run with the same file to resume")
    p.add_argument("--template", "-t", help="prompt template using {item} or the item's keys")
    p.add_argument("--concurrency", type=int, default=8, help="items in flight at once (default 8)")
    strategy(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument(
        "--provider-batch",
        action="store_true",
        help="route each item, then send it through the provider's half-price batch API (resumable)",
    )
    p.add_argument("--status", action="store_true", help="show the provider batch job writing --out")
    p.add_argument("--cancel", action="store_true", help="cancel the job's submitted batches")
    p.add_argument(
        "--retry-failed",
        choices=("resubmit", "realtime", "none"),
        default="resubmit",
        help="provider batch: failed items go to a new batch (default), the real-time path, or the report",
    )
    p.add_argument("--poll-interval", type=float, default=2.0, help="provider batch: first poll delay, s")
    meta(p)
    common(p)
    p.set_defaults(func=_cmd_batch)

    p = sub.add_parser(
        "train", help="fit a learned router (router.json) from your audit log and good/bad feedback"
    )
    p.add_argument(
        "--audit",
        action="append",
        required=True,
        metavar="FILE",
        help="audit log written with include_text = true (JSONL or SQLite; repeatable)",
    )
    p.add_argument(
        "--feedback",
        action="append",
        metavar="FILE",
        help='feedback JSONL: {"request_hash": ..., "good": true|false} per line (repeatable)',
    )
    p.add_argument("--out", "-o", required=True, help="where to write the model (router.json)")
    p.add_argument(
        "--from-verifier",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also learn from cascade verifier accepts/rejects in the audit (default: on)",
    )
    p.add_argument(
        "--cost",
        action="append",
        metavar="MODEL=USD",
        help="cost per request of MODEL, instead of (or when missing from) the audit (repeatable)",
    )
    p.add_argument(
        "--min-feedback",
        type=int,
        default=DEFAULT_MIN_FEEDBACK,
        metavar="N",
        help=f"labeled prompts each model needs (default {DEFAULT_MIN_FEEDBACK})",
    )
    p.add_argument(
        "--embedder",
        metavar="ALIAS",
        help="also fit the embedding half: embed every training prompt with this model alias "
        "of --config (its provider must serve embeddings); the router then needs embedder = ALIAS",
    )
    p.add_argument(
        "--config", "-c", metavar="FILE", help="tierwise config (TOML) defining --embedder's alias"
    )
    p.add_argument(
        "--embed-batch",
        type=int,
        default=DEFAULT_EMBED_BATCH,
        metavar="N",
        help=f"prompts per embeddings request (default {DEFAULT_EMBED_BATCH})",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="share of prompts held out to measure the router before the final fit on all of them "
        "(default 0.2; 0 skips the measurement)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("serve", help="OpenAI- and Anthropic-compatible HTTP gateway (needs the server extra)")
    p.add_argument("--config", "-c", help="config file (default: $TIERWISE_CONFIG or ./tierwise.toml)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (share state via [state] redis)")
    p.add_argument(
        "--keys-env",
        default="TIERWISE_API_KEYS",
        help="variable holding the caller key table (or NAME_FILE: its path); unset: no auth",
    )
    p.add_argument(
        "--drain-s", type=float, default=30.0, help="shutdown waits this long for in-flight streams"
    )
    p.set_defaults(func=_cmd_serve)

    from ._cli_verifier import add_parser as add_train_verifier

    add_train_verifier(sub)

    p = sub.add_parser("mock-server", help="run the offline mock LLM server (OpenAI, Anthropic, Gemini)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_MOCK_PORT,
        help=f"port to listen on (default {DEFAULT_MOCK_PORT}, where `tierwise init --offline` points)",
    )
    p.add_argument("--config", help="TOML/JSON file describing the simulated models")
    p.add_argument("--seed", type=int, help="seed for probabilistic faults")
    p.set_defaults(func=_cmd_mock_server)

    p = sub.add_parser("init", help="write a commented tierwise.toml: the four-tier router to start from")
    p.add_argument(
        "--offline",
        action="store_true",
        help="point every model at `tierwise mock-server` (no keys, no network)",
    )
    p.add_argument(
        "--path", default="tierwise.toml", help="file (or directory) to write (default ./tierwise.toml)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_MOCK_PORT,
        help=f"--offline: the mock server's port (default {DEFAULT_MOCK_PORT})",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser(
        "status",
        help="the shared state of every process ([state] redis): limits, circuits, budget per deployment",
    )
    common(p)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("rules", help="print the keyword rules a config's routers apply, in order")
    strategy(p)
    common(p)
    p.set_defaults(func=_cmd_rules)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from .errors import BudgetExceeded, ConfigError, TierwiseError

    try:
        code = int(args.func(args))
        # Flush here, not at interpreter exit: with buffered stdout (any shell pipe
        # without PYTHONUNBUFFERED) a reader that went away is only noticed by the
        # final flush, which prints "Exception ignored ... BrokenPipeError" and exits 120.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (``tierwise report --json | head -1``): stop quietly,
        # as shell tools do. Point stdout at devnull so the interpreter's final flush
        # does not raise again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
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
