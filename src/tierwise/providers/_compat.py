"""The OpenAI-compatible servers, as data rows.

Each server that speaks Chat Completions bends it slightly (the output cap's
name, fields it rejects, extra finish reasons, where usage arrives); each bend is
a field of its ``OpenAICompat`` row here, read once by ``OpenAI.__init__``, so
adding a server is one entry and the adapter stays a single code path.
``tierwise.providers.openai`` re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..types import FinishReason

__all__ = ["COMPATIBLE_SERVERS", "FINISH", "OpenAICompat"]


@dataclass(frozen=True, slots=True)
class OpenAICompat:
    """One OpenAI-compatible server, described as data.

    ``api_key_env`` is ``None`` for servers that need no key (local vLLM/Ollama);
    then a missing key is not an error. ``drop_fields`` are request fields the
    server rejects (Mistral answers 422 to fields it does not know), removed after
    the body is built; ``rename_fields`` maps an OpenAI field name to the server's
    (Mistral's ``random_seed``). ``extra_body`` from the caller is merged after
    both, so an explicit caller choice is never dropped. ``reasoning_field`` is
    ``"reasoning_effort"`` (top level) or ``"reasoning.effort"`` (OpenRouter's
    nested object). ``tool_ids`` is the rule the server holds tool-call ids to
    (``_tool_ids``: ids issued elsewhere in the conversation are mapped to fit).
    """

    name: str
    default_base_url: str = ""
    api_key_env: str | None = None
    base_url_env: str | None = None
    max_tokens_field: str = "max_tokens"
    stream_usage: bool = True
    drop_fields: frozenset[str] = frozenset()
    rename_fields: tuple[tuple[str, str], ...] = ()
    finish_reasons: tuple[tuple[str, FinishReason], ...] = ()
    reasoning_field: str = "reasoning_effort"
    #: Whether the server speaks OpenAI's Batch API (``/v1/files`` + ``/v1/batches``).
    batch_api: bool = False
    tool_ids: str = ""


COMPATIBLE_SERVERS: dict[str, OpenAICompat] = {
    row.name: row
    for row in (
        # OpenAI deprecated max_tokens for max_completion_tokens (o-series reject the old name);
        # usage on streams only arrives with stream_options.include_usage.
        OpenAICompat(
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            max_tokens_field="max_completion_tokens",
            batch_api=True,
            tool_ids="max40",
        ),
        # DeepSeek: usage rides on the finish chunk; cache hits in prompt_cache_hit_tokens;
        # finish "insufficient_system_resource" means the server cut the answer off.
        OpenAICompat(
            "deepseek",
            "https://api.deepseek.com",
            "DEEPSEEK_API_KEY",
            finish_reasons=(("insufficient_system_resource", "error"),),
        ),
        # Mistral rejects unknown fields (422 extra_forbidden), names the seed random_seed,
        # always puts usage on the finish chunk, says model_length when the context is full,
        # and takes only 9-character alphanumeric tool-call ids.
        OpenAICompat(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            stream_usage=False,
            drop_fields=frozenset(("user", "reasoning_effort", "stream_options")),
            rename_fields=(("seed", "random_seed"),),
            finish_reasons=(("model_length", "length"),),
            tool_ids="alnum9",
        ),
        # OpenRouter always reports usage (include_usage is deprecated there) plus usage.cost,
        # and takes reasoning effort as {"reasoning": {"effort": ...}}. It forwards tool-call
        # ids to the model's provider, Mistral's 9-character rule included: the strictest
        # format, which every provider accepts.
        OpenAICompat(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            stream_usage=False,
            reasoning_field="reasoning.effort",
            tool_ids="alnum9",
        ),
        OpenAICompat("vllm", "http://localhost:8000/v1", None, finish_reasons=(("abort", "error"),)),
        OpenAICompat("ollama", "http://localhost:11434/v1", None),
        # Any other OpenAI-compatible endpoint (LiteLLM, Azure-style proxies, in-house gateways):
        # OpenAI's (and Azure's) 40-character cap on tool-call ids, which most sit in front of.
        OpenAICompat(
            "gateway",
            "",
            "TIERWISE_GATEWAY_API_KEY",
            base_url_env="TIERWISE_GATEWAY_BASE_URL",
            tool_ids="max40",
        ),
    )
}

# Shared finish-reason table. Besides OpenAI's own values it accepts the words
# gateways leak from other wire formats, so a proxied Anthropic/Gemini model still
# maps correctly.
FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "safety": "content_filter",
}
