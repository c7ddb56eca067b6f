"""Configuration: TOML or a dict → validated schema → a built Orchestrator.

Validation is pydantic's (this is where validation is the point, unlike the hot
path). Every error becomes a ``ConfigError`` whose ``field`` is the dotted path
(``models.opus.fallbacks[0]``), and unknown keys get a "did you mean" from the
known ones, because a typo in a rate limit must fail loudly rather than be
ignored.

Keys are never read from the file: ``[providers.NAME]`` names the environment
variable (``api_key_env``) that holds the key.

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

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError

if TYPE_CHECKING:
    from .orchestrator import Orchestrator
    from .providers.base import Provider
    from .strategies.base import Strategy

__all__ = ["TierwiseConfig", "build_orchestrator", "load_config"]

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Section):
    """``[providers.NAME]``: one API endpoint and where its key comes from."""

    type: Literal["openai", "anthropic", "gemini"]
    #: For ``type = "openai"``: which OpenAI-compatible server row to use
    #: (openai, deepseek, mistral, openrouter, vllm, ollama, gateway).
    compat: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: PositiveFloat | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class ModelConfig(_Section):
    """``[models.ALIAS]``: a deployment. Prices default to the built-in catalog."""

    provider: str
    model: str
    input_price: NonNegFloat | None = None
    output_price: NonNegFloat | None = None
    cached_input_price: NonNegFloat | None = None
    cache_write_price: NonNegFloat | None = None
    context_window: PositiveInt | None = None
    max_output_tokens: PositiveInt | None = None
    rpm: PositiveFloat | None = None
    tpm: PositiveFloat | None = None
    max_concurrency: PositiveInt | None = None
    fallbacks: list[str] = Field(default_factory=list)
    timeout_s: PositiveFloat | None = None
    first_token_timeout_s: PositiveFloat | None = None
    idle_timeout_s: PositiveFloat | None = None


class StrategyConfig(BaseModel):
    """``[strategies.NAME]``: ``type`` picks the strategy; the other keys are its
    parameters, validated by the strategy's own builder."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["single", "router", "cascade", "ensemble", "pipeline"]


class RetryConfig(_Section):
    max_attempts: PositiveInt = 3
    initial_backoff_s: NonNegFloat = 0.5
    max_backoff_s: NonNegFloat = 20.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    deadline_s: PositiveFloat | None = 60.0
    max_retry_after_s: NonNegFloat = 30.0


class HealthConfig(_Section):
    failure_threshold: PositiveInt = 5
    cooldown_s: NonNegFloat = 30.0
    window_s: PositiveFloat = 60.0


class BudgetLimitConfig(_Section):
    limit_usd: NonNegFloat
    period: Literal["day", "month", "total"] = "day"
    scope: str = "total"
    action: Literal["reject", "downgrade"] = "reject"
    downgrade_to: str | None = None

    @model_validator(mode="after")
    def _downgrade_needs_target(self) -> BudgetLimitConfig:
        if self.action == "downgrade" and not self.downgrade_to:
            raise ValueError("action 'downgrade' needs downgrade_to (a cheaper model alias)")
        return self


class BudgetConfig(_Section):
    limits: list[BudgetLimitConfig] = Field(default_factory=list)
    timezone: str = "UTC"


class CacheConfig(_Section):
    backend: Literal["memory", "sqlite", "none"] = "memory"
    path: str | None = None
    ttl_s: PositiveFloat = 3600.0
    max_entries: PositiveInt = 10_000
    #: Cache even when temperature > 0 (answers are then not fresh samples).
    force: bool = False

    @model_validator(mode="after")
    def _sqlite_needs_path(self) -> CacheConfig:
        if self.backend == "sqlite" and not self.path:
            raise ValueError("backend 'sqlite' needs path")
        return self


class AuditConfig(_Section):
    path: str
    include_text: bool = False


class TierwiseConfig(_Section):
    """The whole file."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig]
    strategies: dict[str, StrategyConfig] = Field(default_factory=dict)
    default_strategy: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    budget: BudgetConfig | None = None
    cache: CacheConfig | None = None
    audit: AuditConfig | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _references(self) -> TierwiseConfig:
        # Cross-references are checked here so the error names the exact field.
        builtin = {"openai", "anthropic", "gemini"}
        for alias, model in self.models.items():
            if model.provider not in self.providers and model.provider not in builtin:
                raise _FieldError(
                    f"models.{alias}.provider",
                    f"unknown provider {model.provider!r}{_suggest(model.provider, set(self.providers) | builtin)}",
                )
            for i, name in enumerate(model.fallbacks):
                if name not in self.models:
                    raise _FieldError(
                        f"models.{alias}.fallbacks[{i}]",
                        f"unknown model alias {name!r}{_suggest(name, self.models)}",
                    )
                if name == alias:
                    raise _FieldError(f"models.{alias}.fallbacks[{i}]", "a model cannot fall back to itself")
        for i, name in enumerate(self.fallbacks):
            if name not in self.models:
                raise _FieldError(f"fallbacks[{i}]", f"unknown model alias {name!r}{_suggest(name, self.models)}")
        if self.default_strategy is not None and self.default_strategy not in self.strategies:
            raise _FieldError(
                "default_strategy",
                f"unknown strategy {self.default_strategy!r}{_suggest(self.default_strategy, self.strategies)}",
            )
        if self.budget is not None:
            for i, limit in enumerate(self.budget.limits):
                if limit.downgrade_to is not None and limit.downgrade_to not in self.models:
                    raise _FieldError(
                        f"budget.limits[{i}].downgrade_to",
                        f"unknown model alias {limit.downgrade_to!r}{_suggest(limit.downgrade_to, self.models)}",
                    )
        return self


class _FieldError(ValueError):
    """Raised inside validators to carry an exact field path out of pydantic."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _suggest(name: str, known: Mapping[str, Any] | set[str] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _known_fields(loc: tuple[int | str, ...]) -> list[str]:
    """Field names valid at ``loc``'s parent, for "did you mean" on unknown keys."""
    model: type[BaseModel] | None = TierwiseConfig
    for part in loc[:-1]:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            # a dict key such as a model alias: descend into the dict's value type
            continue
        ann = field.annotation
        model = _model_in(ann)
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _config_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _FieldError):
        return ConfigError(inner.message, field=inner.field)
    field = _path(loc)
    if err["type"] == "extra_forbidden" and loc:
        unknown = str(loc[-1])
        message = f"unknown field {unknown!r}{_suggest(unknown, _known_fields(loc))}"
    elif err["type"] == "missing":
        message = "required field is missing"
    else:
        message = err["msg"]
        if "input" in err and err["type"] not in ("model_type", "dict_type"):
            message += f" (got {err['input']!r:.60})"
    more = len(exc.errors()) - 1
    if more:
        message += f" (+{more} more error{'s' if more > 1 else ''})"
    return ConfigError(message, field=field or None)


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> TierwiseConfig:
    """Parse and validate a TOML path or a dict; ``ConfigError`` on any problem."""
    if isinstance(source, Mapping):
        data: Mapping[str, Any] = source
    else:
        path = Path(source)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return TierwiseConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None


# ---------------------------------------------------------------------- building


def _make_provider(name: str, cfg: ProviderConfig | None) -> Provider:
    from .providers.anthropic import Anthropic
    from .providers.gemini import Gemini
    from .providers.openai import COMPATIBLE_SERVERS, OpenAI

    if cfg is None:  # a built-in provider name used without a [providers] section
        cfg = ProviderConfig(type=name)  # type: ignore[arg-type]
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    common: dict[str, Any] = {"api_key": api_key, "base_url": cfg.base_url, "timeout": cfg.timeout_s}
    if cfg.headers:
        common["headers"] = cfg.headers
    if cfg.type == "openai":
        compat = cfg.compat or ("openai" if name in ("openai",) else None)
        if compat is None:
            compat = name if name in COMPATIBLE_SERVERS else ("gateway" if cfg.base_url else "openai")
        if compat not in COMPATIBLE_SERVERS:
            raise ConfigError(
                f"unknown OpenAI-compatible server {compat!r}{_suggest(compat, list(COMPATIBLE_SERVERS))}",
                field=f"providers.{name}.compat",
            )
        provider: Provider = OpenAI(compat=compat, **common)
    elif cfg.type == "anthropic":
        provider = Anthropic(**common)
    else:
        provider = Gemini(**common)
    if cfg.api_key_env and api_key is None:
        # Keep the configured env var name in the "no key" error the provider raises.
        provider.api_key_env = cfg.api_key_env  # type: ignore[misc]
    return provider


def build_orchestrator(
    source: str | os.PathLike[str] | Mapping[str, Any] | TierwiseConfig, *, clock: Clock = SYSTEM_CLOCK
) -> Orchestrator:
    """Build an ``Orchestrator`` from config (a path, a dict or a validated config)."""
    from .catalog import Catalog
    from .execution.budget import BudgetLedger, BudgetLimit
    from .execution.cache import MemoryCache, ResponseCache, SQLiteCache
    from .execution.executor import Deployment
    from .execution.health import HealthTracker
    from .execution.limits import RateLimiter
    from .execution.retry import RetryPolicy
    from .orchestrator import Orchestrator

    cfg = source if isinstance(source, TierwiseConfig) else load_config(source)
    catalog = Catalog.default()

    providers: dict[str, Provider] = {}
    for alias, m in cfg.models.items():
        if m.provider not in providers:
            providers[m.provider] = _make_provider(m.provider, cfg.providers.get(m.provider))

    deployments: dict[str, Deployment] = {}
    for alias, m in cfg.models.items():
        spec = catalog.get(m.model)
        overrides = {
            k: v
            for k, v in (
                ("input", m.input_price),
                ("output", m.output_price),
                ("cached_input", m.cached_input_price),
                ("cache_write", m.cache_write_price),
                ("context_window", m.context_window),
                ("max_output_tokens", m.max_output_tokens),
            )
            if v is not None
        }
        spec = catalog.spec_for(m.model, provider=providers[m.provider].name, **overrides)
        limiter = (
            RateLimiter(rpm=m.rpm, tpm=m.tpm, max_concurrency=m.max_concurrency, clock=clock, name=alias)
            if (m.rpm or m.tpm or m.max_concurrency)
            else None
        )
        deployments[alias] = Deployment(
            alias=alias,
            provider=providers[m.provider],
            model=m.model,
            spec=spec,
            limiter=limiter,
            fallbacks=tuple(m.fallbacks),
            timeout_s=m.timeout_s,
            first_token_timeout_s=m.first_token_timeout_s,
            idle_timeout_s=m.idle_timeout_s,
            max_output_tokens=m.max_output_tokens or (spec.max_output_tokens if spec else None),
        )

    r = cfg.retry
    retry = RetryPolicy(
        max_attempts=r.max_attempts,
        initial_backoff=r.initial_backoff_s,
        max_backoff=r.max_backoff_s,
        multiplier=r.multiplier,
        deadline=r.deadline_s,
        max_retry_after=r.max_retry_after_s,
    )
    h = cfg.health
    health = HealthTracker(
        failure_threshold=h.failure_threshold, cooldown_s=h.cooldown_s, window_s=h.window_s, clock=clock
    )
    budget = None
    if cfg.budget is not None and cfg.budget.limits:
        from zoneinfo import ZoneInfo

        try:
            tz = ZoneInfo(cfg.budget.timezone)
        except Exception:
            raise ConfigError(f"unknown timezone {cfg.budget.timezone!r}", field="budget.timezone") from None
        budget = BudgetLedger(
            [
                BudgetLimit(
                    limit_usd=b.limit_usd, period=b.period, scope=b.scope, action=b.action,
                    downgrade_to=b.downgrade_to,
                )
                for b in cfg.budget.limits
            ],
            clock=clock,
            timezone=tz,
        )
    cache: ResponseCache | None = None
    cache_force = False
    if cfg.cache is not None and cfg.cache.backend != "none":
        cache_force = cfg.cache.force
        if cfg.cache.backend == "sqlite":
            assert cfg.cache.path is not None
            cache = SQLiteCache(cfg.cache.path, ttl_s=cfg.cache.ttl_s, clock=clock)
        else:
            cache = MemoryCache(max_entries=cfg.cache.max_entries, ttl_s=cfg.cache.ttl_s, clock=clock)
    audit = None
    if cfg.audit is not None:
        from .observe.audit import AuditLog

        secrets = [p._api_key for p in providers.values() if p._api_key]
        audit = AuditLog(cfg.audit.path, include_text=cfg.audit.include_text, secrets=secrets)

    strategies = _build_strategies(cfg, deployments)
    return Orchestrator(
        deployments,
        strategies=strategies,
        default_strategy=cfg.default_strategy,
        fallbacks=cfg.fallbacks,
        retry=retry,
        health=health,
        budget=budget,
        cache=cache,
        cache_force=cache_force,
        audit=audit,
        clock=clock,
        seed=cfg.seed,
        owned_providers=list(providers.values()),
    )


def _build_strategies(cfg: TierwiseConfig, deployments: Mapping[str, Any]) -> dict[str, Strategy]:
    from .strategies.single import Single

    out: dict[str, Strategy] = {}
    for name, s in cfg.strategies.items():
        params = dict(s.model_extra or {})
        where = f"strategies.{name}"
        if s.type == "single":
            target = params.pop("target", None)
            if not isinstance(target, str):
                raise ConfigError("single strategy needs target = \"<model alias>\"", field=f"{where}.target")
            if target not in deployments:
                raise ConfigError(
                    f"unknown model alias {target!r}{_suggest(target, deployments)}", field=f"{where}.target"
                )
            if params:
                raise ConfigError(f"unknown field {next(iter(params))!r}", field=f"{where}.{next(iter(params))}")
            out[name] = Single(target, name=name)
        else:
            raise ConfigError(
                f"strategy type {s.type!r} is not available in this version", field=f"{where}.type"
            )
    return out
