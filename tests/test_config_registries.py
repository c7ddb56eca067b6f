"""Open config registries: ``type = "pkg.module:Class"`` strategies and classifiers,
``register_strategy``, the ``[state]`` section, and validation that builds nothing."""

from __future__ import annotations

from typing import Any

import pytest

import tierwise as tw
from tierwise.config import STRATEGIES, load_config, register_strategy
from tierwise.errors import ConfigError
from tierwise.routing.base import Classification
from tierwise.strategies.single import Single
from tierwise.types import Request, RouteInfo

MODELS = {"a": {"provider": "openai", "model": "gpt-4o"}, "b": {"provider": "openai", "model": "gpt-4o-mini"}}
BUILT: list[str] = []


class Echo(tw.Strategy):
    """A user's strategy taking its table's keys as keyword arguments."""

    kind = "echo"

    def __init__(self, greeting: str, *, name: str | None = None) -> None:
        super().__init__(name=name)
        BUILT.append(greeting)
        self.greeting = greeting

    async def run(self, request: Request, ctx: Any) -> tw.Response:
        raise NotImplementedError

    def explain(self, request: Request, ctx: Any = None) -> RouteInfo:
        return RouteInfo(self.name, None, self.greeting)


class First(Single):
    """A subclass of a built-in: inherits ``from_config``, so it reads a single table."""


class AlwaysBulk:
    labels = ("bulk",)

    def __init__(self, label: str = "bulk") -> None:
        self.label = label

    def classify(self, request: Request) -> Classification:
        return Classification(self.label, 1.0, "always")


def _cfg(**strategies: Any) -> dict[str, Any]:
    return {"models": MODELS, "strategies": strategies}


def test_a_custom_strategy_gets_its_keys_as_kwargs() -> None:
    BUILT.clear()
    cfg = _cfg(hello={"type": f"{__name__}:Echo", "greeting": "hi"})
    load_config(cfg)
    assert BUILT == []  # validation builds nothing
    orch = tw.Orchestrator.from_config(cfg)
    assert BUILT == ["hi"]  # built once
    strat = orch.strategies["hello"]
    assert isinstance(strat, Echo) and strat.name == "hello" and strat.greeting == "hi"


def test_a_subclass_of_a_builtin_reads_the_builtin_table() -> None:
    orch = tw.Orchestrator.from_config(_cfg(main={"type": f"{__name__}:First", "target": "b"}))
    assert type(orch.strategies["main"]) is First and orch.strategies["main"].target == "b"


@pytest.mark.parametrize(
    ("table", "field", "fragment"),
    [
        ({"type": f"{__name__}:Nope"}, "strategies.s.type", "cannot import"),
        ({"type": f"{__name__}:AlwaysBulk"}, "strategies.s.type", "not a Strategy subclass"),
        ({"type": f"{__name__}:Echo", "greting": "x"}, "strategies.s", "greting"),
        ({"type": "singel", "target": "a"}, "strategies.s.type", "did you mean 'single'"),
    ],
)
def test_custom_type_errors_name_the_field(table: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_cfg(s=table))
    assert info.value.field == field and fragment in str(info.value)


def test_a_custom_classifier_in_a_router() -> None:
    cfg = _cfg(
        r={
            "type": "router",
            "classifier": f"{__name__}:AlwaysBulk",
            "routes": {"bulk": "b"},
            "default": "bulk",
        }
    )
    orch = tw.Orchestrator.from_config(cfg)
    assert orch.explain("anything").label == "bulk"


def test_register_strategy_adds_a_type_name() -> None:
    from tierwise._config._tables import SingleTable

    register_strategy("one", SingleTable)
    try:
        orch = tw.Orchestrator.from_config(_cfg(x={"type": "one", "target": "a"}))
        assert isinstance(orch.strategies["x"], Single)
    finally:
        del STRATEGIES["one"]
    with pytest.raises(ValueError):
        register_strategy("a:b", SingleTable)


def test_validation_reports_every_strategy_reference() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_cfg(x={"type": "single", "target": "zz"}, y={"type": "single", "target": "qq"}))
    assert [f for f, _ in info.value.problems] == ["strategies.x.target", "strategies.y.target"]


def test_state_backends() -> None:
    assert load_config({"models": MODELS}).state.backend == "memory"
    redis = load_config({"models": MODELS, "state": {"backend": "redis"}}).state
    assert (redis.backend, redis.url_env, redis.key_prefix) == ("redis", "REDIS_URL", "tierwise:")  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as info:
        load_config({"models": MODELS, "state": {"backend": "redis", "url_envv": "X"}})
    assert info.value.field == "state.url_envv" and "did you mean 'url_env'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config({"models": MODELS, "state": {"backend": "redis", "url_env": "redis://h:6379"}})
    assert info.value.field == "state.url_env"
    with pytest.raises(ConfigError) as info:
        load_config({"models": MODELS, "state": {"backend": "etcd"}})
    assert info.value.field.startswith("state")  # type: ignore[union-attr]


def test_one_suggestion_helper() -> None:
    from tierwise.errors import close_matches, did_you_mean

    assert did_you_mean("rmp", ["rpm", "tpm"]) == "did you mean 'rpm'?"
    assert did_you_mean("zzz", ["rpm"]) == ""
    assert close_matches("gpt-4o-mni", ["gpt-4o-mini", "gpt-4o"], n=2)[0] == "gpt-4o-mini"


class CountingObserver:
    """An observer named in config (``observers = ["pkg.module:CountingObserver"]``)."""

    def __init__(self) -> None:
        self.attempts = 0
        self.requests = 0

    def on_attempt(self, event: object) -> None:
        self.attempts += 1

    def on_request(self, event: object) -> None:
        self.requests += 1


class NotAnObserver:
    pass


async def test_config_names_observers_by_import_path() -> None:
    from tierwise.testing import FakeProvider

    orch = tw.Orchestrator.from_config(
        {
            "models": {"m": {"provider": "openai", "model": "gpt-5-mini"}},
            "observers": [f"{__name__}:CountingObserver"],
            "logging": {"level": "off"},
        }
    )
    (observer,) = [o for o in orch.observers if isinstance(o, CountingObserver)]
    orch.executor.deployments["m"].provider = FakeProvider(["hi"])
    async with orch:
        await orch.run("hello")
    assert (observer.attempts, observer.requests) == (1, 1)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (f"{__name__}:NotAnObserver", "has no on_attempt"),
        (f"{__name__}:Nowhere", "cannot import"),
        ("no-colon", "package.module:Observer"),
    ],
)
def test_a_bad_observer_path_names_its_field(path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        tw.Orchestrator.from_config(
            {"models": {"m": {"provider": "openai", "model": "gpt-5-mini"}}, "observers": [path]}
        )
    assert info.value.field == "observers[0]" and message in str(info.value)
