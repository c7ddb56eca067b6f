"""The stable public surface from DESIGN.md: names that docs, examples and outside
tests rely on must exist, resolve, and stay sorted in ``__all__``."""

from __future__ import annotations

import inspect

import tierwise as tw


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert tw.__all__ == sorted(tw.__all__)
    for name in tw.__all__:
        assert getattr(tw, name) is not None, name


def test_stable_names_from_design() -> None:
    for name in (
        "Request",
        "Message",
        "Response",
        "Usage",
        "ToolCall",
        "RouteInfo",
        "Attempt",
        "Orchestrator",
        "Router",
        "Cascade",
        "Ensemble",
        "Pipeline",
        "KeywordClassifier",
    ):
        assert name in tw.__all__, name
    for name in ("OpenAI", "Anthropic", "Gemini"):
        cls = getattr(tw.providers, name)
        params = inspect.signature(cls).parameters
        assert list(params)[:3] == ["api_key", "base_url", "http_client"], name
    for name in (
        "TierwiseError",
        "ProviderError",
        "RateLimitError",
        "ProviderTimeout",
        "ServerError",
        "AuthenticationError",
        "BadRequestError",
        "ContextWindowExceeded",
        "ContentFiltered",
        "ProtocolError",
        "BudgetExceeded",
        "AllTargetsFailed",
        "ConfigError",
    ):
        assert hasattr(tw.errors, name), name
    assert list(inspect.signature(tw.Request.from_prompt).parameters)[:2] == ["prompt", "system"]
    run = inspect.signature(tw.Orchestrator.run).parameters
    assert list(run)[1:4] == ["prompt", "strategy", "metadata"]
    # DESIGN.md's second round: orch.run(prompt, *, system=None, max_tokens=None, temperature=None, ...)
    for name in ("system", "max_tokens", "temperature"):
        assert run[name].kind is inspect.Parameter.KEYWORD_ONLY and run[name].default is None
    assert list(inspect.signature(tw.Router).parameters)[:3] == ["classifier", "routes", "default"]
    assert list(inspect.signature(tw.Cascade).parameters)[:2] == ["targets", "accept"]
    assert list(inspect.signature(tw.Ensemble).parameters)[:2] == ["targets", "aggregate"]
    assert list(inspect.signature(tw.Pipeline).parameters)[:1] == ["steps"]


def test_submodules_are_lazy_but_reachable() -> None:
    assert tw.providers.OpenAI.__module__ == "tierwise.providers.openai"
    assert tw.testing.MockLLMServer is not None
    assert tw.verify.Judge is not None
