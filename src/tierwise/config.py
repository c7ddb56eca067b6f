"""Configuration: TOML or a dict → validated schema → a built Orchestrator.

Validation is pydantic's (this is where validation is the point, unlike the hot
path). Every error becomes a ``ConfigError`` whose ``field`` is the dotted path
(``models.opus.fallbacks[0]``), and unknown keys get a "did you mean" from the
known ones, because a typo in a rate limit must fail loudly rather than be
ignored.

Keys are never read from the file: ``[providers.NAME]`` names the environment
variable (``api_key_env``) that holds the key, and when it does, that variable is
the only source (no fallback to ``OPENAI_API_KEY`` & co., which may belong to
another account). A literal ``api_key`` (or an ``Authorization`` header, or a key
pasted into ``api_key_env``) is rejected with a message that never repeats it.

Everything that can be checked without side effects is checked by
``load_config`` (cross-references, strategy parameters, budget scopes, time
zones, OpenAI-compatible rows), so ``tierwise check-config`` catches what
``from_config`` would; ``build_orchestrator`` then only constructs.

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

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError, looks_like_key, redact

if TYPE_CHECKING:
    from .orchestrator import Orchestrator
    from .providers.base import Provider
    from .strategies.base import Strategy

__all__ = ["TierwiseConfig", "build_orchestrator", "check_config", "load_config"]

# Strict numbers: TOML already types its values, so ``rpm = true`` or ``rpm = "5"``
# is a mistake to report, not a value to coerce (pydantic's lax mode reads True as 1).
# Infinity and NaN are refused: no price, limit or timeout means "unbounded" here.
PositiveFloat = Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonEmptyStr = Annotated[str, Field(min_length=1)]

#: Keys under which people paste a literal secret. They get a message pointing at
#: ``api_key_env`` instead of a bare "unknown field", wherever they appear.
_SECRET_KEYS = frozenset({"api_key", "apikey", "api-key", "key", "token", "api_token", "secret"})
_SECRET_HINT = (
    "API keys are never read from the config file: remove it and set "
    'api_key_env = "NAME_OF_ENV_VAR" on the provider; tierwise reads the key from that environment variable'
)
#: Headers the providers fill from the key; setting them in ``headers`` would put a
#: literal key in the file (and silently override ``api_key_env``).
_AUTH_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Provider names a model may use without a ``[providers.NAME]`` section.
_BUILTIN_PROVIDERS = frozenset({"openai", "anthropic", "gemini"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Section):
    """``[providers.NAME]``: one API endpoint and where its key comes from."""

    type: Literal["openai", "anthropic", "gemini"]
    #: For ``type = "openai"``: which OpenAI-compatible server row to use
    #: (openai, deepseek, mistral, openrouter, vllm, ollama, gateway).
    compat: str | None = None
    base_url: NonEmptyStr | None = None
    api_key_env: str | None = None
    timeout_s: PositiveFloat | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    #: Transport of the client the provider creates: "aiohttp" (the ``fast`` extra)
    #: costs about a quarter of httpx's client CPU per request.
    http: Literal["httpx", "aiohttp"] = "httpx"

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        # A pasted key here would otherwise be echoed back in the error message;
        # this message never repeats the value.
        if value is not None and (not _ENV_NAME.fullmatch(value) or looks_like_key(value)):
            raise ValueError(
                "must be the NAME of an environment variable, not the key itself (like OPENAI_API_KEY)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        # "127.0.0.1:8765/v1" would pass and then fail every call, three tries each,
        # falling back in silence: say so now.
        if value is None:
            return value
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an absolute http:// or https:// URL with a host (like http://127.0.0.1:8765/v1)"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _no_auth_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.casefold() in _AUTH_HEADERS:
                raise _FieldError(name, f"{name!r} carries the API key; {_SECRET_HINT}", relative=True)
        return value

    @model_validator(mode="after")
    def _known_compat(self) -> ProviderConfig:
        # Checked here (not only when building) so ``check-config`` catches it.
        if self.compat is None:
            return self
        if self.type != "openai":
            raise _FieldError(
                "compat", f'only applies to type = "openai" (this is {self.type!r})', relative=True
            )
        from .providers.openai import COMPATIBLE_SERVERS

        if self.compat not in COMPATIBLE_SERVERS:
            known = ", ".join(COMPATIBLE_SERVERS)
            raise _FieldError(
                "compat",
                f"{_unknown('OpenAI-compatible server', self.compat, list(COMPATIBLE_SERVERS))}; "
                f"known: {known}",
                relative=True,
            )
        return self


class ModelConfig(_Section):
    """``[models.ALIAS]``: a deployment. Prices default to the built-in catalog."""

    provider: NonEmptyStr
    model: NonEmptyStr
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
    #: Longest wait for a rate-limit slot before falling back to the next model.
    max_queue_wait_s: NonNegFloat | None = None


class StrategyConfig(BaseModel):
    """``[strategies.NAME]``: ``type`` picks the strategy; the other keys are its
    parameters, which differ per type and are checked by each strategy's
    ``from_config`` (see ``construct_strategies``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["single", "router", "cascade", "ensemble", "pipeline"]


class RetryConfig(_Section):
    max_attempts: PositiveInt = 3
    initial_backoff_s: NonNegFloat = 0.5
    max_backoff_s: NonNegFloat = 20.0
    multiplier: Annotated[float, Field(ge=1, strict=True, allow_inf_nan=False)] = 2.0
    deadline_s: PositiveFloat | None = 60.0
    max_retry_after_s: NonNegFloat = 30.0


class FallbackConfig(_Section):
    """``[fallback]``: which 400s stop a chain (``tierwise.execution.fallback``)."""

    on_bad_request: Literal["by_cause", "stop", "fall_back"] = "by_cause"
    #: Extra regexes (case-insensitive) marking a 400 as about the deployment: fall back.
    deployment_errors: list[str] = Field(default_factory=list)
    #: Extra regexes marking a 400 as about the request: stop (checked first).
    request_errors: list[str] = Field(default_factory=list)

    @field_validator("deployment_errors", "request_errors")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        import re

        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"item {i} is not a valid regex: {exc}") from None
        return value


class HealthConfig(_Section):
    failure_threshold: PositiveInt = 5
    cooldown_s: PositiveFloat = 30.0
    window_s: PositiveFloat = 60.0


class BudgetLimitConfig(_Section):
    limit_usd: NonNegFloat
    period: Literal["day", "month", "total"] = "day"
    scope: str = "total"
    action: Literal["reject", "downgrade"] = "reject"
    downgrade_to: str | None = None

    @model_validator(mode="after")
    def _valid_limit(self) -> BudgetLimitConfig:
        # BudgetLimit owns the rules (scope syntax, downgrade_to only with
        # action="downgrade", ...); running them here reports them at load time
        # with the full path instead of a bare "scope" at build time.
        from .execution.budget import BudgetLimit

        try:
            BudgetLimit(
                limit_usd=self.limit_usd,
                period=self.period,
                scope=self.scope,
                action=self.action,
                downgrade_to=self.downgrade_to,
            )
        except ConfigError as exc:
            raise _FieldError(exc.field or "", _bare_message(exc), relative=True) from None
        return self


class BudgetConfig(_Section):
    limits: list[BudgetLimitConfig] = Field(default_factory=list)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
            ) from None
        return value


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
            raise _FieldError("path", "backend 'sqlite' needs path (the database file)", relative=True)
        return self


class AuditConfig(_Section):
    path: NonEmptyStr
    include_text: bool = False


class LoggingConfig(_Section):
    """``[logging]``: the orchestrator's structlog events (one per attempt)."""

    level: Literal["debug", "info", "warning", "error", "off"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


class TierwiseConfig(_Section):
    """The whole file."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig]
    strategies: dict[str, StrategyConfig] = Field(default_factory=dict)
    default_strategy: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    budget: BudgetConfig | None = None
    cache: CacheConfig | None = None
    audit: AuditConfig | None = None
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    seed: Annotated[int, Field(strict=True)] | None = None

    @model_validator(mode="after")
    def _references(self) -> TierwiseConfig:
        # Cross-references are checked here so the error names the exact field. All
        # of them are collected (not the first only): check-config reports every one.
        if not self.models:
            raise _FieldError(
                "models", "at least one model is required ([models.ALIAS] with provider and model)"
            )
        problems: list[_FieldError] = []

        def problem(field: str, message: str) -> None:
            problems.append(_FieldError(field, message))

        known_providers = set(self.providers) | _BUILTIN_PROVIDERS
        for alias, model in self.models.items():
            if model.provider not in known_providers:
                problem(
                    f"models.{alias}.provider",
                    _unknown("provider", model.provider, known_providers)
                    + f"; define [providers.{model.provider}] or use one of: "
                    + ", ".join(sorted(known_providers)),
                )
            for i, name in enumerate(model.fallbacks):
                if name == alias:
                    problem(f"models.{alias}.fallbacks[{i}]", "a model cannot fall back to itself")
                elif name not in self.models:
                    problem(f"models.{alias}.fallbacks[{i}]", _unknown("model alias", name, self.models))
        for i, name in enumerate(self.fallbacks):
            if name not in self.models:
                problem(f"fallbacks[{i}]", _unknown("model alias", name, self.models))
        try:
            construct_strategies(self.strategies, self.models)
        except ConfigError as exc:
            problem(exc.field or "strategies", _bare_message(exc))
        # With no [strategies], the Orchestrator defines "default" (the first model).
        defined = set(self.strategies) or {"default"}
        if self.default_strategy is not None and self.default_strategy not in defined:
            problem(
                "default_strategy",
                _unknown("strategy", self.default_strategy, defined)
                + f"; defined: {', '.join(sorted(defined))}",
            )
        if self.budget is not None:
            for i, limit in enumerate(self.budget.limits):
                if limit.downgrade_to is not None and limit.downgrade_to not in self.models:
                    problem(
                        f"budget.limits[{i}].downgrade_to",
                        _unknown("model alias", limit.downgrade_to, self.models),
                    )
                kind, _, scoped = limit.scope.partition(":")
                if kind == "model" and scoped not in self.models:
                    problem(
                        f"budget.limits[{i}].scope",
                        _unknown("model alias", scoped, self.models) + " in 'model:<alias>'",
                    )
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise _FieldErrors(problems)
        return self


_STRATEGY_CLASSES = {
    "single": ("strategies.single", "Single"),
    "router": ("strategies.router", "Router"),
    "cascade": ("strategies.cascade", "Cascade"),
    "ensemble": ("strategies.ensemble", "Ensemble"),
    "pipeline": ("strategies.pipeline", "Pipeline"),
}


def construct_strategies(
    tables: Mapping[str, StrategyConfig], models: Mapping[str, Any]
) -> dict[str, Strategy]:
    """Build every ``[strategies.NAME]`` table, in dependency order.

    A target anywhere in a strategy (a route, a cascade rung, an ensemble member, a
    pipeline step, a judge) is resolved the same way: a model alias, the name of
    another strategy (built first; a cycle is an error naming the field), or an
    inline table with its own ``type`` (a nested strategy without a name of its
    own). Each strategy class validates its own parameters in ``from_config`` and
    raises ``ConfigError`` naming the field.
    """
    import importlib

    built: dict[str, Strategy] = {}
    building: list[str] = []

    def build(name: str, table: StrategyConfig, where: str) -> Strategy:
        module, cls_name = _STRATEGY_CLASSES[table.type]
        cls = getattr(importlib.import_module(f".{module}", __package__), cls_name)
        params = dict(table.model_extra or {})
        return cls.from_config(name, params, where=where, target=lambda v, f: resolve(v, f))  # type: ignore[no-any-return]

    def named(name: str) -> Strategy:
        if name in built:
            return built[name]
        if name in building:
            cycle = " → ".join([*building[building.index(name) :], name])
            raise ConfigError(
                f"strategies refer to each other in a cycle: {cycle}", field=f"strategies.{name}"
            )
        building.append(name)
        try:
            strategy = build(name, tables[name], f"strategies.{name}")
        finally:
            building.pop()
        built[name] = strategy
        return strategy

    def resolve(value: Any, field: str) -> Any:
        if isinstance(value, str):
            if value in models:
                return value
            if value in tables:
                return named(value)
            raise ConfigError(
                _unknown("target", value, [*models, *tables]) + " (a model alias or a strategy name)",
                field=field,
            )
        if isinstance(value, Mapping) and "type" in value:
            try:
                table = StrategyConfig.model_validate(value)
            except ValidationError:
                raise ConfigError(
                    f"inline strategy type must be one of {', '.join(_STRATEGY_CLASSES)}",
                    field=f"{field}.type",
                ) from None
            return build(field.rpartition(".")[2] or field, table, field)
        raise ConfigError(
            "must be a string (a model alias or a strategy name) or an inline strategy table, "
            f"got {type(value).__name__}",
            field=field,
        )

    for name in tables:
        named(name)
    # Config order, not build order: the first table is the default strategy.
    return {name: built[name] for name in tables}


class _FieldErrors(ValueError):
    """Several ``_FieldError`` s out of one validator (the cross-reference checks),
    each reported on its own line."""

    def __init__(self, errors: list[_FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


class _FieldError(ValueError):
    """Raised inside validators to carry an exact field path out of pydantic.

    ``relative`` paths are appended to where pydantic found the error, for
    validators of nested sections that do not know their own position
    (``budget.limits[2]`` + ``downgrade_to``).
    """

    def __init__(self, field: str, message: str, relative: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.relative = relative


def _bare_message(exc: ConfigError) -> str:
    """``exc``'s message without the ``field: `` prefix ConfigError adds."""
    text = str(exc)
    prefix = f"{exc.field}: " if exc.field else ""
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def _unknown(kind: str, name: str, known: Mapping[str, Any] | set[str] | list[str]) -> str:
    return f"unknown {kind} {name!r}{_suggest(name, known)}"


def _unknown_field(name: str, known: list[str]) -> str:
    if name.casefold() in _SECRET_KEYS:
        return _SECRET_HINT
    return f"unknown field {name!r}{_suggest(name, known)}"


def _suggest(name: str, known: Mapping[str, Any] | set[str] | list[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
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
    """Field names valid at ``loc``'s parent, for "did you mean" on unknown keys.

    Walks the schema alongside ``loc``: a section field descends into its model; a
    dict or list field consumes the next part as a key/index (a model alias such as
    ``model`` must not be mistaken for a field name).
    """
    model: type[BaseModel] | None = TierwiseConfig
    parts = list(loc[:-1])
    i = 0
    while i < len(parts):
        if model is None:
            return []
        field = model.model_fields.get(str(parts[i]))
        if field is None:
            return []
        ann = field.annotation
        model = _model_in(ann)
        if _is_container(ann):
            i += 1  # skip the dict key / list index
        i += 1
    return list(model.model_fields) if model is not None else []


def _is_container(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    if origin in (dict, list):
        return True
    return any(_is_container(a) for a in getattr(annotation, "__args__", ()) or ())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _priority(err: Any) -> int:
    # Report the cause, not its echo: a typo'd key (extra_forbidden) also makes the
    # real key "missing", and the typo is what the user must fix.
    loc = err.get("loc", ())
    if err["type"] == "extra_forbidden":
        return 0 if loc and str(loc[-1]).casefold() in _SECRET_KEYS else 1
    return 2


def _one_error(err: Any) -> tuple[str, str]:
    """(field path, message) for one pydantic error, in tierwise's wording."""
    loc = tuple(err.get("loc", ()))
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    field = _path(loc)
    if isinstance(inner, _FieldError):
        field = ".".join(p for p in (field, inner.field) if p) if inner.relative else inner.field
        message = inner.message
    elif err["type"] == "extra_forbidden" and loc:
        message = _unknown_field(str(loc[-1]), _known_fields(loc))
    elif err["type"] == "missing":
        message = "required field is missing"
    elif isinstance(inner, Exception):
        message = str(inner)  # our own validators' messages, without pydantic's "Value error, "
    else:
        message = err["msg"]
        if "input" in err and err["type"] not in ("model_type", "dict_type"):
            # Never echo something shaped like a key, even from a misplaced value.
            message += f" (got {redact(repr(err['input'])[:60])})"
    return field, message


def _config_error(exc: ValidationError) -> ConfigError:
    """One ``ConfigError`` for every problem pydantic found: ``.field`` is the most
    telling one's path, the message lists them all (a file with three mistakes gets
    three lines, not one and a count), ``.problems`` has each (field, message)."""
    errors = sorted(exc.errors(), key=_priority)
    found: list[tuple[str, str]] = []
    for err in errors:
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, _FieldErrors):  # the cross-reference checks: one line each
            found.extend(_one_error({**err, "ctx": {"error": one}}) for one in inner.errors)
        else:
            found.append(_one_error(err))
    problems = list(dict.fromkeys(found))
    field, message = problems[0]
    if len(problems) > 1:
        message += "".join(f"\n  also {f or '(top level)'}: {m}" for f, m in problems[1:])
    error = ConfigError(message, field=field or None)
    error.problems = [(ConfigError("", field=f).field or "", ConfigError(m).args[0]) for f, m in problems]
    return error


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
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except OSError as exc:  # a directory, no permission, ...
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return TierwiseConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None


def check_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> TierwiseConfig:
    """Everything ``build_orchestrator`` would check, without its side effects
    (no audit file created, no cache opened): what ``tierwise check-config`` runs."""
    cfg = load_config(source)
    for name in {m.provider for m in cfg.models.values()}:
        _make_provider(name, cfg.providers.get(name))  # constructing opens no connection
    if cfg.audit is not None:
        _check_parent_dir(cfg.audit.path, "audit.path")
    if cfg.cache is not None and cfg.cache.backend == "sqlite" and cfg.cache.path:
        _check_parent_dir(cfg.cache.path, "cache.path")
    return cfg


def config_warnings(cfg: TierwiseConfig) -> list[str]:
    """What is valid but probably wrong, for ``tierwise check-config`` (exit 0):
    models with no known price (their cost is ``None``, budgets reserve $0 for
    them), router routes the classifier can never choose, and fallback cycles."""
    from .catalog import Catalog
    from .strategies.router import Router

    warnings: list[str] = []
    catalog = Catalog.default()
    for alias, m in cfg.models.items():
        if m.input_price is not None and m.output_price is not None:
            continue
        kind = cfg.providers[m.provider].type if m.provider in cfg.providers else m.provider
        try:
            spec = catalog.spec_for(m.model, provider=kind)
        except ConfigError:
            spec = None
        if spec is None or spec.input is None or spec.output is None:
            warnings.append(
                f"models.{alias}: no known price for {m.model!r}: its cost will be None (never a silent 0); "
                "set input_price and output_price"
            )
    try:
        strategies = _build_strategies(cfg)
    except ConfigError:
        strategies = {}
    for name, strat in strategies.items():
        labels = getattr(getattr(strat, "classifier", None), "labels", None)
        if isinstance(strat, Router) and isinstance(labels, tuple | frozenset):
            for label in strat.routes:
                if label not in labels:
                    warnings.append(
                        f"strategies.{name}.routes.{label}: the classifier never emits {label!r} "
                        f"(it emits {', '.join(sorted(labels))}); only metadata tier={label!r} reaches it"
                    )
    for alias in cfg.models:
        seen: list[str] = []
        stack = [(alias, [alias])]
        while stack:
            node, trail = stack.pop()
            for nxt in cfg.models[node].fallbacks:
                if nxt == alias:
                    cycle = " -> ".join([*trail, nxt])
                    if min(trail) == alias:  # report each cycle once, from its smallest alias
                        warnings.append(
                            f"models.{alias}.fallbacks: fallback cycle {cycle} (each model is tried once)"
                        )
                elif nxt not in trail and nxt not in seen:
                    seen.append(nxt)
                    stack.append((nxt, [*trail, nxt]))
    return list(dict.fromkeys(warnings))


def _check_parent_dir(path: str, field: str) -> None:
    parent = Path(path).expanduser().parent
    if not parent.is_dir():
        raise ConfigError(f"directory {str(parent)!r} does not exist", field=field)


# ---------------------------------------------------------------------- building


def _make_provider(name: str, cfg: ProviderConfig | None) -> Provider:
    """One provider instance for ``[providers.NAME]`` (or a built-in name).

    When ``api_key_env`` is set, that variable is the only source of the key: a
    provider's own default variable (``OPENAI_API_KEY``, ``GOOGLE_API_KEY``...) is
    not consulted, so a deployment never silently bills another account's key.
    """
    from .providers.anthropic import Anthropic
    from .providers.gemini import Gemini
    from .providers.openai import COMPATIBLE_SERVERS, OpenAI

    if cfg is None:  # a built-in provider name used without a [providers] section
        cfg = ProviderConfig(type=name)  # type: ignore[arg-type]
    env = cfg.api_key_env
    # "" (not None) tells the provider "no key" without falling back to its default env var.
    api_key = (os.environ.get(env) or "") if env else None
    common: dict[str, Any] = {
        "api_key": api_key,
        "base_url": cfg.base_url,
        "timeout": cfg.timeout_s,
        "http": cfg.http,
    }
    if cfg.headers:
        common["headers"] = cfg.headers
    try:
        if cfg.type == "openai":
            compat = cfg.compat or (
                name if name in COMPATIBLE_SERVERS else ("gateway" if cfg.base_url else "openai")
            )
            if compat not in COMPATIBLE_SERVERS:
                raise ConfigError(_unknown("OpenAI-compatible server", compat, list(COMPATIBLE_SERVERS)))
            row = COMPATIBLE_SERVERS[compat]
            if env:
                # The row names the variable in the provider's "no API key" error.
                row = dataclasses.replace(row, api_key_env=env)
            provider: Provider = OpenAI(compat=row, **common)
        elif cfg.type == "anthropic":
            provider = Anthropic(**common)
        else:
            provider = Gemini(**common)
    except ConfigError as exc:
        sub = "compat" if exc.field is None else exc.field
        raise ConfigError(_bare_message(exc), field=f"providers.{name}.{sub}") from None
    except ImportError as exc:
        raise ConfigError(str(exc), field=f"providers.{name}.http") from None
    if env and not api_key:
        # Keep the configured env var name in the "no key" error the provider raises.
        provider.api_key_env = env  # type: ignore[misc]
    return provider


def build_orchestrator(
    source: str | os.PathLike[str] | Mapping[str, Any] | TierwiseConfig, *, clock: Clock = SYSTEM_CLOCK
) -> Orchestrator:
    """Build an ``Orchestrator`` from config (a path, a dict or a validated config).

    All validation happens in ``load_config``; this only constructs, so the
    only files touched (audit log) are opened last, after everything that can fail.
    """
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
    for m in cfg.models.values():
        if m.provider not in providers:
            providers[m.provider] = _make_provider(m.provider, cfg.providers.get(m.provider))

    deployments: dict[str, Deployment] = {}
    for alias, m in cfg.models.items():
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
        try:
            spec = catalog.spec_for(m.model, provider=providers[m.provider].name, **overrides)
        except ConfigError as exc:  # name the alias's field, not the catalog row
            raise ConfigError(_bare_message(exc), field=f"models.{alias}") from None
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
            max_queue_wait_s=m.max_queue_wait_s,
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

        budget = BudgetLedger(
            [
                BudgetLimit(
                    limit_usd=b.limit_usd,
                    period=b.period,
                    scope=b.scope,
                    action=b.action,
                    downgrade_to=b.downgrade_to,
                )
                for b in cfg.budget.limits
            ],
            clock=clock,
            timezone=ZoneInfo(cfg.budget.timezone),  # validated by BudgetConfig
        )
    cache: ResponseCache | None = None
    cache_force = False
    if cfg.cache is not None and cfg.cache.backend != "none":
        cache_force = cfg.cache.force
        if cfg.cache.backend == "sqlite":
            assert cfg.cache.path is not None
            # SQLiteCache connects lazily: a bad directory would otherwise surface on
            # the first request instead of at start-up.
            _check_parent_dir(cfg.cache.path, "cache.path")
            cache = SQLiteCache(cfg.cache.path, ttl_s=cfg.cache.ttl_s, clock=clock)
        else:
            cache = MemoryCache(max_entries=cfg.cache.max_entries, ttl_s=cfg.cache.ttl_s, clock=clock)
    strategies = _build_strategies(cfg)
    audit = None
    if cfg.audit is not None:
        from .observe.audit import AuditLog

        secrets = [p._api_key for p in providers.values() if p._api_key]
        try:
            audit = AuditLog(cfg.audit.path, include_text=cfg.audit.include_text, secrets=secrets)
        except OSError as exc:
            raise ConfigError(f"cannot open audit log: {exc.strerror or exc}", field="audit.path") from None

    from .execution.fallback import BadRequestRule

    f = cfg.fallback
    bad_request = BadRequestRule(
        mode=f.on_bad_request, deployment_patterns=f.deployment_errors, request_patterns=f.request_errors
    )
    return Orchestrator(
        deployments,
        strategies=strategies,
        default_strategy=cfg.default_strategy,
        fallbacks=cfg.fallbacks,
        bad_request=bad_request,
        retry=retry,
        health=health,
        budget=budget,
        cache=cache,
        cache_force=cache_force,
        audit=audit,
        clock=clock,
        seed=cfg.seed,
        owned_providers=list(providers.values()),
        log_level=None if cfg.logging.level == "off" else cfg.logging.level,
        log_json=cfg.logging.format == "json",
    )


def _build_strategies(cfg: TierwiseConfig) -> dict[str, Strategy]:
    """Construct the strategies (validated at load time by the same code)."""
    return construct_strategies(cfg.strategies, cfg.models)
