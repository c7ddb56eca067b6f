"""``tierwise init``: write a commented ``tierwise.toml`` to start from.

The file is the tutorials' four-tier router (Opus for complex work, Sonnet for
standard, GPT-5.5 for structured output, DeepSeek for bulk), with their fallback
chains, a daily budget, a response cache and an audit log: every section a
first hour reaches for, each with a comment saying what it does.

``--offline`` points every model at ``tierwise mock-server`` (default port 8765,
the port ``tierwise mock-server`` listens on by default), so ``tierwise run``,
``explain``, ``batch`` and ``report`` work with no key and no network; without
it the models go to the real providers by name, each reading its key from its
usual variable. An existing file is never overwritten unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["DEFAULT_MOCK_PORT", "cmd_init", "init_config_text"]

from .cli import DEFAULT_MOCK_PORT  # tierwise mock-server's default port: one constant for both

# alias -> (wire model, input price, output price, fallbacks, real provider)
# Prices: USD per 1M tokens, the tutorials' list prices (the built-in catalog's too).
_TIERS: tuple[tuple[str, str, float, float, tuple[str, ...], str], ...] = (
    ("opus", "claude-opus-4-7", 5.0, 25.0, ("sonnet",), "anthropic"),
    ("sonnet", "claude-sonnet-4-6", 3.0, 15.0, ("gpt55",), "anthropic"),
    ("gpt55", "gpt-5.5", 3.0, 12.0, ("sonnet",), "openai"),
    ("deepseek", "deepseek-chat", 0.27, 1.10, ("gpt55",), "deepseek"),
)
_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY"}
_TIER_NOTE = {
    "opus": "complex: architecture, debugging, trade-offs",
    "sonnet": "standard: everything no rule claims",
    "gpt55": "structured: JSON, extraction, parsing",
    "deepseek": "bulk: tests, docstrings, translation, boilerplate",
}


def init_config_text(*, offline: bool, port: int = DEFAULT_MOCK_PORT) -> str:
    """The text ``tierwise init`` writes (valid TOML; ``check-config`` passes it)."""
    out: list[str] = []
    w = out.append
    w("# tierwise.toml, written by `tierwise init" + (" --offline`." if offline else "`."))
    w("# The tutorials' four-tier router: each request goes to the cheapest tier that can do it,")
    w("# falls back when a provider fails, and every call is priced, budgeted, cached and audited.")
    if offline:
        w("#")
        w("# Offline: every model is served by the mock LLM server (no key, no network). Start it with")
        w(f"#     tierwise mock-server --port {port} &")
        w("# then try")
        w('#     tierwise run "Extract the names as JSON"')
        w('#     tierwise explain "Design a caching strategy for a multi-tenant SaaS app"')
        w("#     tierwise report audit.jsonl")
        w("# For the real providers, run `tierwise init --force` (without --offline).")
    else:
        w("#")
        w("# Keys come from the environment, never from this file:")
        for env in dict.fromkeys(_KEY_ENV[t[5]] for t in _TIERS):
            w(f"#     export {env}=...")
        w('# then `tierwise check-config` and `tierwise run "..."`.')
        w("# To try it without keys first: `tierwise init --offline --force`.")
    w("")
    w('default_strategy = "router"   # what `tierwise run` and orch.run() use unless told otherwise')
    w("")
    if offline:
        w("# One OpenAI-compatible endpoint for all four models: the mock server answers any model name.")
        w('# (compat = "vllm" is the row for a local server that needs no API key.)')
        w("[providers.mock]")
        w('type = "openai"')
        w('compat = "vllm"')
        w(f'base_url = "http://127.0.0.1:{port}/v1"')
    else:
        w("# Providers by name need no section: anthropic, openai and deepseek below use their public")
        w("# URLs and key variables. Add [providers.NAME] only to override (base_url, api_key_env, ...).")
        w("# [providers.deepseek]")
        w('# base_url = "https://api.deepseek.com"')
        w('# api_key_env = "MY_DEEPSEEK_KEY"')
    for alias, wire, inp, outp, fallbacks, real in _TIERS:
        w("")
        w(f"[models.{alias}]   # {_TIER_NOTE[alias]}")
        w(f'provider = "{"mock" if offline else real}"')
        w(f'model = "{wire}"')
        if offline:
            w(f"input_price = {inp}        # USD per 1M tokens (the mock has no price list of its own)")
            w(f"output_price = {outp}")
        else:
            w(f"# prices come from the built-in catalog (${inp} / ${outp} per 1M tokens in and out)")
        if alias == "gpt55":
            w("# gpt55 and sonnet back each other up, as in the tutorials: a chain tries each model once,")
            w("# so the 'fallback cycle' note of `tierwise check-config` is expected here.")
        chain = ", ".join(f'"{f}"' for f in fallbacks)
        w(f"fallbacks = [{chain}]   # tried in order when this model fails (after retries)")
        if alias == "opus":
            w("rpm = 50                # requests per minute: queued beyond that, never a 429 storm")
        w("max_output_tokens = 8192  # also what a budget reserves per request (the worst case)")
        w("timeout_s = 120")
    w("")
    w("# The keyword router: rules pick a label, the label picks a model.")
    w('# `tierwise rules` prints the effective rules; `tierwise explain "..."` shows one decision.')
    w("[strategies.router]")
    w('type = "router"')
    w('classifier = "keyword"')
    w('default = "standard"')
    w('routes = { complex = "opus", standard = "sonnet", structured = "gpt55", bulk = "deepseek" }')
    w("# Tune the rules without replacing them (see docs/keyword-rules.md):")
    w('# extra_keywords = { complex = ["threat model*"], bulk = ["changelog"] }')
    w("# long_prompt_words = 800   # longer prompts go to complex (false disables)")
    w("")
    w("[retry]")
    w("max_attempts = 2          # tries per model before falling back")
    w("deadline_s = 60           # the whole request, fallbacks included")
    w("")
    w("# Budgets cannot be overshot: each request reserves its worst case (max_output_tokens) before")
    w("# it is sent, and is refused (or downgraded) when that does not fit.")
    w("[[budget.limits]]")
    w("limit_usd = 25.0")
    w('period = "day"')
    w('scope = "total"')
    w("")
    w("[[budget.limits]]         # past $10 a day, opus work is downgraded to sonnet")
    w("limit_usd = 10.0")
    w('period = "day"')
    w('scope = "model:opus"')
    w('action = "downgrade"')
    w('downgrade_to = "sonnet"')
    w("")
    w("# Identical requests (temperature 0 or unset) are answered from the cache, at no cost.")
    w("[cache]")
    w('backend = "sqlite"')
    w('path = "tierwise-cache.sqlite3"')
    w("ttl_s = 3600")
    w("")
    w("# One JSON line per request: cost, latency, route, attempts. `tierwise report audit.jsonl`.")
    w("[audit]")
    w('path = "audit.jsonl"')
    w("include_text = false     # prompts and answers are written only when true")
    return "\n".join(out) + "\n"


def cmd_init(args: argparse.Namespace) -> int:
    """Write the file (refusing to overwrite without ``--force``), then say what to run next."""
    from .cli import EXIT_OK, _UsageError

    if not 0 < args.port < 65536:
        raise _UsageError(f"--port must be within 1..65535, got {args.port}")
    path = Path(args.path)
    if path.is_dir():
        path = path / "tierwise.toml"
    if path.exists() and not args.force:
        raise _UsageError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise _UsageError(f"directory {str(path.parent)!r} does not exist")
    try:
        path.write_text(init_config_text(offline=args.offline, port=args.port), encoding="utf-8")
    except OSError as exc:
        raise _UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    flag = "" if str(path) == "tierwise.toml" else f" --config {path}"
    out = sys.stdout.write
    out(f"wrote {path}: the four-tier router with fallbacks, budget, cache and audit\n")
    if args.offline:
        out("start the offline mock server (no key, no network), then ask:\n")
        out(f"  tierwise mock-server --port {args.port} &\n")
    else:
        out("set the keys it reads (never written in the file), then ask:\n")
        out("  export " + " ".join(f"{e}=..." for e in dict.fromkeys(_KEY_ENV.values())) + "\n")
    out(f'  tierwise run "Extract the names as JSON"{flag}\n')
    return EXIT_OK
