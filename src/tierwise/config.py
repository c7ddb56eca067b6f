"""Configuration: TOML or a dict → validated schema → a built Orchestrator.

Validation is pydantic's. Every error becomes a ``ConfigError`` whose ``field`` is
the dotted path (``models.opus.fallbacks[0]``), and unknown keys get a "did you
mean" from the known ones, because a typo in a rate limit must fail loudly
rather than be ignored.

Keys are never read from the file: ``[providers.NAME]`` names the environment
variable (``api_key_env``) that holds the key, and when it does, that variable is
the only source (no fallback to ``OPENAI_API_KEY`` & co., which may belong to
another account). A literal ``api_key`` (or an ``Authorization`` header, or a key
pasted into ``api_key_env``) is rejected with a message that never repeats it.

Everything that can be checked without side effects is checked by
``load_config`` (cross-references, strategy parameters, budget scopes, time
zones, OpenAI-compatible rows) without constructing anything, so ``tierwise
check-config`` catches what ``from_config`` would; ``build_orchestrator`` then
only constructs. ``[strategies.NAME]`` tables are validated by the model their
``type`` names: a built-in one, one added with ``register_strategy``, or
``"pkg.module:Class"`` (see docs/config.md).

Example::

    [providers.gateway]
    type = "openai"
    base_url = "https://gateway.example/v1"
    api_key_env = "GATEWAY_API_KEY"

    [models.opus]
    provider = "gateway"
    model = "claude-opus-4-7"
    fallbacks = ["sonnet"]
    rpm = 50

    [strategies.default]
    type = "single"
    target = "opus"
"""

from __future__ import annotations

from ._config._alerts import AlertRuleConfig, AlertsConfig, WebhookConfig
from ._config._classifiers import CLASSIFIERS, ClassifierTable, register_classifier
from ._config.build import (
    build_orchestrator,
    check_config,
    config_warnings,
    construct_strategies,
    load_config,
)
from ._config.schema import (
    AuditConfig,
    BudgetConfig,
    BudgetLimitConfig,
    CacheConfig,
    FallbackConfig,
    HealthConfig,
    LoggingConfig,
    MemoryStateConfig,
    ModelConfig,
    ProviderConfig,
    RedisStateConfig,
    RetryConfig,
    StateConfig,
    TelemetryConfig,
    TierwiseConfig,
)
from ._config.strategies import STRATEGIES, StrategyModel, register_strategy

#: The model every ``[strategies.NAME]`` table validates to (one subclass per type).
StrategyConfig = StrategyModel

__all__ = [
    "CLASSIFIERS",
    "STRATEGIES",
    "AlertRuleConfig",
    "AlertsConfig",
    "AuditConfig",
    "BudgetConfig",
    "BudgetLimitConfig",
    "CacheConfig",
    "ClassifierTable",
    "FallbackConfig",
    "HealthConfig",
    "LoggingConfig",
    "MemoryStateConfig",
    "ModelConfig",
    "ProviderConfig",
    "RedisStateConfig",
    "RetryConfig",
    "StateConfig",
    "StrategyConfig",
    "StrategyModel",
    "TelemetryConfig",
    "TierwiseConfig",
    "WebhookConfig",
    "build_orchestrator",
    "check_config",
    "config_warnings",
    "construct_strategies",
    "load_config",
    "register_classifier",
    "register_strategy",
]
