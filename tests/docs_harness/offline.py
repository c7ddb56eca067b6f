"""What a docs page's hidden setup imports: offline stand-ins for the names a fragment uses.

A block such as ``results = await orch.batch(items, ...)`` is a fragment of a page a
reader follows in order; the page's ``<!-- setup: ... -->`` comment (invisible on the
site and on GitHub) builds ``orch`` and ``items`` with these helpers, against a
``MockLLMServer`` on loopback, so the fragment runs exactly as printed.
"""

from __future__ import annotations

import os
from typing import Any

import tierwise as tw
from tierwise.testing import MockLLMServer

_SERVER: list[Any] = []


def mock_url() -> str:
    """The base URL of one ``MockLLMServer`` for the whole page (started on first use)."""
    if not _SERVER:
        ctx = MockLLMServer.run_in_thread()
        _SERVER.append((ctx, ctx.__enter__()))  # lives until the page's process exits
    return str(_SERVER[0][1].base_url)


def offline_config(*aliases: str, **sections: Any) -> dict[str, Any]:
    """A config whose every alias is a priced model on the mock server (OpenAI wire format)."""
    os.environ.setdefault("MOCK_KEY", "not-a-secret")
    # The built-in "openai" row (batch API included), pointed at the mock.
    provider = {"base_url": f"{mock_url()}/v1", "api_key_env": "MOCK_KEY"}
    models = {a: {"provider": "openai", "model": a, "input_price": 1.0, "output_price": 2.0} for a in aliases}
    return {"providers": {"openai": provider}, "models": models, **sections}


def offline_orchestrator(*aliases: str, **sections: Any) -> tw.Orchestrator:
    """An ``Orchestrator`` over ``offline_config(*aliases)``."""
    return tw.Orchestrator.from_config(offline_config(*aliases, **sections))


def write_offline_toml(path: str, *aliases: str) -> None:
    """A ``tierwise.toml`` for the mock server, for blocks that load one from disk."""
    os.environ.setdefault("MOCK_KEY", "not-a-secret")
    lines = [
        "[providers.openai]",
        f'base_url = "{mock_url()}/v1"',
        'api_key_env = "MOCK_KEY"',
        "",
    ]
    for alias in aliases:
        lines += [f"[models.{alias}]", 'provider = "openai"', f'model = "{alias}"']
        lines += ["input_price = 1.0", "output_price = 2.0", ""]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


def routing_data(n: int = 120) -> tuple[list[str], list[float], list[float]]:
    """Prompts and per-model outcomes with a learnable pattern: the small model fails math."""
    topics = ["integral", "theorem", "poem", "recipe", "weather", "capital"]
    prompts = [f"question {i} about the {topics[i % 6]} and the {topics[(i * 5) % 6]}" for i in range(n)]
    big_ok = [1.0] * n
    small_ok = [0.0 if ("integral" in p or "theorem" in p) else 1.0 for p in prompts]
    return prompts, big_ok, small_ok
