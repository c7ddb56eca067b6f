"""Wire-format adapters: one per API shape, over httpx only (no vendor SDKs).

``OpenAI`` also serves every OpenAI-compatible server (DeepSeek, Mistral,
OpenRouter, vLLM, Ollama, any gateway) through data rows, not subclasses.
"""

from .anthropic import Anthropic
from .base import Provider
from .gemini import Gemini
from .openai import COMPATIBLE_SERVERS, OpenAI, OpenAICompat

__all__ = ["COMPATIBLE_SERVERS", "Anthropic", "Gemini", "OpenAI", "OpenAICompat", "Provider"]
