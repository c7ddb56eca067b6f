"""Wire-format adapters: one per API shape, over httpx only (no vendor SDKs).

``OpenAI`` also serves every OpenAI-compatible server (DeepSeek, Mistral,
OpenRouter, vLLM, Ollama, any gateway) through data rows, not subclasses.

Adapters are imported on first access, so ``import tierwise.providers`` costs
nothing for the ones a deployment does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tierwise.providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
