"""Test doubles that exercise tierwise for real.

``MockLLMServer`` is a real HTTP server on 127.0.0.1 speaking the OpenAI, Anthropic
and Gemini wire formats with fault injection; ``FakeProvider`` and
``FunctionProvider`` stand in for a provider without HTTP; ``FakeClock`` drives
time-dependent logic (rate limits, backoff, cooldowns) without sleeping.
"""

from .clock import FakeClock
from .fakes import FakeProvider, FakeStreamFailure, FunctionProvider, ScriptExhausted
from .mock_server import MockLLMServer, MockModel

__all__ = [
    "FakeClock",
    "FakeProvider",
    "FakeStreamFailure",
    "FunctionProvider",
    "MockLLMServer",
    "MockModel",
    "ScriptExhausted",
]
