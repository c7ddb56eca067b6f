"""Wire-format adapters: one per API shape, over httpx only (no vendor SDKs).

``OpenAI`` also serves every OpenAI-compatible server (DeepSeek, Mistral,
OpenRouter, vLLM, Ollama, any gateway) through data rows, not subclasses.

Adapters are imported on first access, so ``import tierwise.providers`` costs
nothing for the ones a deployment does not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .anthropic import Anthropic
    from .base import Provider
    from .gemini import Gemini
    from .openai import COMPATIBLE_SERVERS, OpenAI, OpenAICompat

__all__ = ["COMPATIBLE_SERVERS", "Anthropic", "Gemini", "OpenAI", "OpenAICompat", "Provider"]

_LAZY = {
    "Anthropic": "anthropic",
    "COMPATIBLE_SERVERS": "openai",
    "Gemini": "gemini",
    "OpenAI": "openai",
    "OpenAICompat": "openai",
    "Provider": "base",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
