"""Streaming, and a stream that falls back before its first token.

Mirrors the tutorials' "Advanced: Streaming Support" (``stream_pipeline`` yielding
``chunk.choices[0].delta.content``), through the orchestrator: ``orch.stream(...)``
yields ``TextDelta`` events as the model produces them and ends with ``Done``,
whose ``response`` is the same normalized ``Response`` a non-streamed call returns
(model, usage, cost, time to first token, attempts).

The primary (Claude Sonnet over the Anthropic wire format) falls back to GPT-5.5
(OpenAI wire format) when it fails. A stream can only fall back *before* its first
content event — after that the caller has already shown text — so:

1. a normal stream: deltas, then the Done response's model and cost;
2. the primary answers 503 before any token: the stream silently continues from
   GPT-5.5, and ``Done.response`` says ``fallback=True`` with the failed attempt;
3. the primary's connection resets after a few tokens: no fallback; the error is
   raised to the caller, who knows how much was already shown.

    python examples/streaming.py
"""

from __future__ import annotations

import os
from contextlib import aclosing
from typing import Any

import anyio

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

ANSWER = "Streaming sends tokens as they are generated, so users see the answer start at once."


def streaming_model(reply: str, faults: list[str] | None = None) -> MockModel:
    """A model that streams 3 tokens per chunk, 8 ms apart, after 20 ms."""
    return MockModel(
        reply=reply,
        latency_ms=20,
        stream_chunk_delay_ms=8,
        tokens_per_chunk=3,
        faults=faults or [],
        fault_after_chunks=3,
    )


def stream_config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": base_url, "api_key_env": KEY_ENV},
            "openai": {"type": "openai", "base_url": base_url + "/v1", "api_key_env": KEY_ENV},
        },
        "models": {
            "sonnet": {"provider": "anthropic", "model": "claude-sonnet-4-6", "fallbacks": ["gpt55"]},
            "gpt55": {"provider": "openai", "model": "gpt-5.5"},
        },
        "retry": {"max_attempts": 1},  # no retries: a failure goes straight to the fallback
    }


async def show_stream(orch: tw.Orchestrator, prompt: str) -> tw.Response | None:
    """Print the deltas as they arrive; return the final response."""
    final: tw.Response | None = None
    print("   > ", end="", flush=True)
    try:
        async with aclosing(orch.stream(prompt)) as events:
            async for event in events:
                if isinstance(event, tw.TextDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, tw.Done):
                    final = event.response
    finally:
        print()
    return final


def describe(resp: tw.Response) -> str:
    cost = "unknown" if resp.cost_usd is None else f"${resp.cost_usd:.6f}"
    ttft = "-" if resp.ttft_ms is None else f"{resp.ttft_ms:.0f} ms"
    tries = ", ".join(
        f"{a.model}:{a.outcome}" + (f"({a.error_type})" if a.error_type else "") for a in resp.attempts
    )
    return (
        f"   Done: model={resp.model} provider={resp.provider} fallback={resp.fallback} cost={cost} "
        f"ttft={ttft} tokens={resp.usage.input_tokens}+{resp.usage.output_tokens} attempts=[{tries}]"
    )


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {
        # Request 1 answers, request 2 fails before the stream starts, request 3
        # resets the connection after 3 content chunks.
        "claude-sonnet-4-6": streaming_model(ANSWER, faults=["ok", "503", "reset"]),
        "gpt-5.5": streaming_model("[from GPT-5.5] " + ANSWER),
    }
    async with (
        MockLLMServer(mocks) as server,
        tw.Orchestrator.from_config(stream_config(server.base_url)) as orch,
    ):
        print("1) A normal stream from the primary (Claude Sonnet, Anthropic wire format)")
        resp = await show_stream(orch, "Why stream LLM answers?")
        assert resp is not None
        print(describe(resp))

        print("\n2) The primary answers 503 before any token: the stream falls back to GPT-5.5")
        resp = await show_stream(orch, "Why stream LLM answers, again?")
        assert resp is not None
        print(describe(resp))

        print("\n3) The primary's connection resets after a few tokens: no fallback, the error is raised")
        try:
            await show_stream(orch, "And once more?")
        except tw.errors.TierwiseError as exc:
            print(f"   raised {type(exc).__name__} after the text above was shown; no fallback was tried")
        streamed = sum(1 for r in server.requests if r.stream)
        fallback_calls = sum(1 for r in server.requests if r.model == "gpt-5.5")
        print(
            f"\nserver received {len(server.requests)} requests, {streamed} of them streamed; "
            f"the fallback (gpt-5.5) was called {fallback_calls} time(s)"
        )


if __name__ == "__main__":
    anyio.run(main)
