"""``[alerts]``: alert rules and their sinks, validated, then an ``AlertMonitor``.

Example (the tutorials' alerts)::

    [alerts]
    log = true                                    # firing/resolved on logger "tierwise.alerts"
    callback = "myapp.oncall:page"                # any function taking an Alert
    webhook = { url_env = "ALERT_WEBHOOK_URL" }   # the URL is read from the environment

    [[alerts.rules]]
    kind = "fallback_rate"
    threshold = 0.05
    window_s = 300

    [[alerts.rules]]
    kind = "expensive_share"                      # target: default the priciest model
    threshold = 0.5

Rules validate by building the ``AlertRule`` they describe (its own checks, with
the field named); aliases and strategy names are checked against the rest of
the file by ``alert_problems``. Rules from config default to ``episodes = true``:
one alert when a condition starts to hold, one "resolved" when it stops.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError, looks_like_key
from ._errors import FieldError

if TYPE_CHECKING:
    from .._clock import Clock
    from ..execution.executor import Deployment
    from ..observe.alerts import AlertMonitor, AlertRule
    from .schema import TierwiseConfig

__all__ = ["AlertRuleConfig", "AlertsConfig", "WebhookConfig", "alert_problems", "build_alerts"]

_PosFloat = Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)]
_NonNegFloat = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
_PosInt = Annotated[int, Field(gt=0, strict=True)]
_Bool = Annotated[bool, Field(strict=True)]
_Kind = Literal[
    "fallback_rate", "error_rate", "latency", "cost", "cost_anomaly", "expensive_share", "quality"
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class AlertRuleConfig(_Section):
    """``[[alerts.rules]]``: one ``AlertRule``; ``threshold`` is the rule's number
    (a fraction for rates, ms for latency, USD for cost, a factor for cost_anomaly)."""

    #: What is watched: error_rate, fallback_rate, latency, cost, cost_anomaly, expensive_share, …
    kind: _Kind
    #: The rule's number: a fraction for rates, ms for latency, USD for cost, a factor for cost_anomaly.
    threshold: _NonNegFloat
    #: The sliding window the figure is computed over, in seconds.
    window_s: _PosFloat = 300.0
    #: Fewer events in the window than this: no alert (too few to judge).
    min_samples: _PosInt = 20
    #: After an alert, the same rule stays quiet this long.
    cooldown_s: _NonNegFloat = 900.0
    #: The alert's name in messages (default: derived from kind and filters).
    name: str = ""
    #: requests (one per orch.run) or attempts (every model call).
    source: Literal["requests", "attempts"] = "requests"
    #: latency: the percentile compared with threshold.
    quantile: Annotated[float, Field(gt=0, lt=1, strict=True)] = 0.95
    #: cost_anomaly: the longer window the current spend is compared with.
    baseline_s: _PosFloat = 3600.0
    #: cost_anomaly: ignore windows that spent less than this.
    min_usd: _NonNegFloat = 0.0
    #: Only events of this model alias.
    model: str | None = None
    #: Only events of this route label.
    label: str | None = None
    #: Only events of this strategy.
    strategy: str | None = None
    #: expensive_share: the deployment watched (default: the most expensive one).
    target: str | None = None
    #: Alert once when the condition starts to hold and once when it resolves
    #: (off: again every cooldown_s while it holds).
    episodes: _Bool = True

    @model_validator(mode="after")
    def _valid_rule(self) -> AlertRuleConfig:
        if self.target is not None and self.kind != "expensive_share":
            raise FieldError("target", "only applies to kind = 'expensive_share'", relative=True)
        try:
            self.rule(self.target or "placeholder")
        except ValueError as exc:
            raise FieldError("", str(exc), relative=True) from None
        return self

    def rule(self, target: str | None) -> AlertRule:
        from ..observe.alerts import AlertRule

        return AlertRule(
            kind=self.kind,
            threshold=self.threshold,
            window_s=self.window_s,
            min_samples=self.min_samples,
            cooldown_s=self.cooldown_s,
            name=self.name,
            source=self.source,
            quantile=self.quantile,
            baseline_s=self.baseline_s,
            min_usd=self.min_usd,
            model=self.model,
            label=self.label,
            strategy=self.strategy,
            target=target if self.kind == "expensive_share" else None,
            episodes=self.episodes,
        )


class WebhookConfig(_Section):
    """``[alerts.webhook]``: POST alerts as JSON; the URL comes from ``url_env``."""

    #: The NAME of the environment variable holding the webhook URL.
    url_env: Annotated[str, Field(min_length=1)]
    #: Per POST, in seconds.
    timeout_s: _PosFloat = 5.0
    #: POST tries per alert.
    max_attempts: _PosInt = 3
    #: Seconds before the second POST try, doubling for each one after.
    backoff_s: _NonNegFloat = 0.5

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not value.replace("_", "a").isalnum() or value[0].isdigit() or looks_like_key(value):
            raise ValueError(
                "must be the NAME of an environment variable holding the URL (like ALERT_WEBHOOK_URL)"
            )
        return value


class AlertsConfig(_Section):
    """``[alerts]``: rules, and where their alerts go."""

    #: The rules ([[alerts.rules]]).
    rules: list[AlertRuleConfig] = Field(default_factory=list)
    #: Log every alert as a warning.
    log: _Bool = True
    #: POST alerts as JSON.
    webhook: WebhookConfig | None = None
    #: ``"package.module:function"`` called with each alert.
    callback: str | None = None

    @field_validator("callback")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None:
            from .strategies import import_object

            found = import_object(value, "function")
            if not callable(found):
                raise ValueError(f"{value!r} is not callable (a function taking an Alert)")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> AlertsConfig:
        seen: dict[str, int] = {}
        for i, rc in enumerate(self.rules):
            name = rc.rule(rc.target or "placeholder").name
            if name in seen:
                raise FieldError(
                    f"rules[{i}].name", f"repeats the name of rules[{seen[name]}] ({name!r})", relative=True
                )
            seen[name] = i
        return self


def alert_problems(cfg: TierwiseConfig) -> list[ConfigError]:
    """Aliases and strategy names in ``[alerts]`` that the file does not define."""
    alerts: AlertsConfig | None = cfg.alerts
    if alerts is None:
        return []
    problems: list[ConfigError] = []
    from ._errors import unknown

    for i, rc in enumerate(alerts.rules):
        for field, value, known in (
            ("model", rc.model, cfg.models),
            ("target", rc.target, cfg.models),
            ("strategy", rc.strategy, cfg.strategies or {"default": None}),
        ):
            if value is not None and value not in known:
                problems.append(
                    ConfigError(unknown("name", value, list(known)), field=f"alerts.rules[{i}].{field}")
                )
    return problems


def _priciest(deployments: Mapping[str, Deployment]) -> str:
    """The deployment whose prices (input + output per token) are highest."""

    def price(alias: str) -> float:
        spec = deployments[alias].spec
        if spec is None:
            return -1.0
        return (spec.input or 0.0) + (spec.output or 0.0)

    return max(deployments, key=price)


def build_alerts(
    cfg: TierwiseConfig, deployments: Mapping[str, Deployment], clock: Clock
) -> AlertMonitor | None:
    """The ``AlertMonitor`` of ``[alerts]`` (``None`` without rules)."""
    alerts: AlertsConfig | None = cfg.alerts
    if alerts is None or not alerts.rules:
        return None
    problems = alert_problems(cfg)
    if problems:
        raise problems[0]
    from ..observe.alert_sinks import LogSink, WebhookSink
    from ..observe.alerts import AlertHandler, AlertMonitor

    handlers: list[AlertHandler] = []
    if alerts.log:
        handlers.append(LogSink())
    if alerts.webhook is not None:
        w = alerts.webhook
        url = os.environ.get(w.url_env)
        if not url:
            raise ConfigError(f"environment variable {w.url_env} is not set", field="alerts.webhook.url_env")
        handlers.append(
            WebhookSink(url, timeout_s=w.timeout_s, max_attempts=w.max_attempts, backoff_s=w.backoff_s)
        )
    if alerts.callback is not None:
        from .strategies import import_object

        handlers.append(import_object(alerts.callback, "function"))
    priciest = _priciest(deployments)
    rules = [rc.rule(rc.target or priciest) for rc in alerts.rules]
    return AlertMonitor(rules, handlers, clock=clock)
