"""The config file's sections as pydantic models (``[providers.NAME]``, ``[models.ALIAS]``, …).

Validation is pydantic's (this is where validation is the point, unlike the hot
path). Numbers are strict: TOML already types its values, so ``rpm = true`` or
``rpm = "5"`` is a mistake to report, not a value to coerce. ``[strategies.NAME]``
tables are validated by the model their ``type`` names (``strategies.py``).
Validation constructs nothing: the cross-reference checks (``_refs.py``) read
the validated data.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError, looks_like_key
from ._alerts import AlertsConfig
from ._errors import SECRET_HINT, FieldError, FieldErrors, bare_message, unknown
from .strategies import StrategyTable

if TYPE_CHECKING:
    from ..execution.budget import BudgetLimit

# Infinity and NaN are refused: no price, limit or timeout means "unbounded" here.
PositiveFloat = Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonEmptyStr = Annotated[str, Field(min_length=1)]

#: Headers the providers fill from the key; setting them in ``headers`` would put a
#: literal key in the file (and silently override ``api_key_env``).
_AUTH_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ProviderConfig(_Section):
    """``[providers.NAME]``: one API endpoint and where its key comes from."""

    #: Wire format: openai (also every OpenAI-compatible server), anthropic or gemini.
    #: Optional for a built-in name (``[providers.deepseek]``): it comes from the name.
    type: Literal["openai", "anthropic", "gemini"]
    #: For ``type = "openai"``: which OpenAI-compatible server row to use
    #: (openai, deepseek, mistral, openrouter, vllm, ollama, gateway).
    compat: str | None = None
    #: Absolute http:// or https:// URL with a host (default: the built-in row's URL).
    base_url: NonEmptyStr | None = None
    #: The NAME of the environment variable holding the key, never the key itself.
    api_key_env: str | None = None
    #: HTTP timeout of the client the provider creates, in seconds.
    timeout_s: PositiveFloat | None = None
    #: Extra HTTP headers on every request (not the auth headers: the key comes from api_key_env).
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
                raise FieldError(name, f"{name!r} carries the API key; {SECRET_HINT}", relative=True)
        return value

    @model_validator(mode="after")
    def _known_compat(self) -> ProviderConfig:
        # Checked here (not only when building) so ``check-config`` catches it.
        if self.compat is None:
            return self
        if self.type != "openai":
            raise FieldError(
                "compat", f'only applies to type = "openai" (this is {self.type!r})', relative=True
            )
        from ..providers.openai import COMPATIBLE_SERVERS

        if self.compat not in COMPATIBLE_SERVERS:
            known = ", ".join(COMPATIBLE_SERVERS)
            raise FieldError(
                "compat",
                f"{unknown('OpenAI-compatible server', self.compat, COMPATIBLE_SERVERS)}; known: {known}",
                relative=True,
            )
        return self


class ModelConfig(_Section):
    """``[models.ALIAS]``: a deployment. Prices default to the built-in catalog."""

    #: A ``[providers.NAME]`` section or a built-in provider name (openai, anthropic, deepseek, …).
    provider: NonEmptyStr
    #: The wire model name; prices and context window default to the built-in catalog's row.
    model: NonEmptyStr
    #: USD per 1M input tokens (overrides the catalog).
    input_price: NonNegFloat | None = None
    #: USD per 1M output tokens (overrides the catalog).
    output_price: NonNegFloat | None = None
    #: USD per 1M cached input tokens (overrides the catalog).
    cached_input_price: NonNegFloat | None = None
    #: USD per 1M tokens written to the provider's prompt cache (overrides the catalog).
    cache_write_price: NonNegFloat | None = None
    #: Prompt + answer tokens the model accepts; longer requests fall back to a bigger window.
    context_window: PositiveInt | None = None
    #: Longest answer the model can give, in tokens.
    max_output_tokens: PositiveInt | None = None
    #: Requests per minute (the rate limiter queues FIFO beyond it).
    rpm: PositiveFloat | None = None
    #: Tokens per minute (estimated before the call, corrected after).
    tpm: PositiveFloat | None = None
    #: Calls in flight at once to this deployment.
    max_concurrency: PositiveInt | None = None
    #: Aliases tried in order when this one fails, followed transitively, each model once.
    fallbacks: list[str] = Field(default_factory=list)
    #: The whole call, in seconds.
    timeout_s: PositiveFloat | None = None
    #: Streams: seconds until the first event.
    first_token_timeout_s: PositiveFloat | None = None
    #: Streams: seconds between events (a stall is a timeout).
    idle_timeout_s: PositiveFloat | None = None
    #: Longest wait for a rate-limit slot before falling back to the next model.
    max_queue_wait_s: NonNegFloat | None = None
    #: OpenAI-type providers only: "responses" sends this deployment over the Responses
    #: API; the default, "chat", is Chat Completions (which every compatible server speaks).
    api: Literal["chat", "responses"] = "chat"
    #: Ask the provider's token-counting endpoint (Anthropic count_tokens, Gemini
    #: countTokens) for the exact prompt size before each call, for the rate limiter's
    #: and the budget's estimates. Off by default: it is one more request per call.
    exact_token_counts: bool = False


class RetryConfig(_Section):
    #: Tries per model before falling back.
    max_attempts: PositiveInt = 3
    #: First backoff, in seconds (with jitter).
    initial_backoff_s: NonNegFloat = 0.5
    #: Longest backoff, in seconds.
    max_backoff_s: NonNegFloat = 20.0
    #: Backoff growth per retry.
    multiplier: Annotated[float, Field(ge=1, strict=True, allow_inf_nan=False)] = 2.0
    #: The whole request: every call, queueing for slots, calls in flight (none: no deadline).
    deadline_s: PositiveFloat | None = 60.0
    #: A longer Retry-After falls back instead of waiting (and cools the model).
    max_retry_after_s: NonNegFloat = 30.0


class FallbackConfig(_Section):
    """``[fallback]``: which 400s stop a chain (``tierwise.execution.fallback``)."""

    #: Which HTTP 400s move on to the next model: by_cause (a 400 about the deployment
    #: falls back, one about the request stops), stop, or fall_back.
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
    #: Consecutive unhealthy failures before the model cools down.
    failure_threshold: PositiveInt = 5
    #: How long a model that tripped the breaker is skipped.
    cooldown_s: PositiveFloat = 30.0
    #: Counted failures must fall within this many seconds of each other, with no success between.
    window_s: PositiveFloat = 60.0


class BudgetLimitConfig(_Section):
    #: The most this scope may spend per period, in USD.
    limit_usd: NonNegFloat
    #: day, month (calendar, in the budget's timezone) or total.
    period: Literal["day", "month", "total"] = "day"
    #: total, model:ALIAS, tag:KEY=VALUE or tag:KEY (each value separately).
    scope: str = "total"
    #: reject (raise BudgetExceeded) or downgrade (route to downgrade_to).
    action: Literal["reject", "downgrade"] = "reject"
    #: With action = downgrade: the model alias used instead once the limit is reached.
    downgrade_to: str | None = None

    @model_validator(mode="after")
    def _valid_limit(self) -> BudgetLimitConfig:
        # BudgetLimit owns the rules (scope syntax, downgrade_to only with
        # action="downgrade", ...); running them here reports them at load time
        # with the full path instead of a bare "scope" at build time.
        try:
            self.limit()
        except ConfigError as exc:
            raise FieldError(exc.field or "", bare_message(exc), relative=True) from None
        return self

    def limit(self) -> BudgetLimit:
        """The ``BudgetLimit`` this table describes (``ConfigError`` if it is invalid)."""
        from ..execution.budget import BudgetLimit

        return BudgetLimit(
            limit_usd=self.limit_usd,
            period=self.period,
            scope=self.scope,
            action=self.action,
            downgrade_to=self.downgrade_to,
        )


class BudgetConfig(_Section):
    #: The spending limits; a request is admitted only when every limit it falls under allows it.
    limits: list[BudgetLimitConfig] = Field(default_factory=list)
    #: IANA timezone where days and months start.
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
    #: memory (LRU + TTL), sqlite (survives restarts) or none.
    backend: Literal["memory", "sqlite", "none"] = "memory"
    #: The SQLite database file (backend = sqlite).
    path: str | None = None
    #: Seconds a cached answer is served.
    ttl_s: PositiveFloat = 3600.0
    #: Most answers kept (memory backend).
    max_entries: PositiveInt = 10_000
    #: Shared cache ([state] backend = "redis"): answers larger than this (JSON) are not shared.
    max_entry_bytes: PositiveInt = 1_000_000
    #: Shared cache: how long identical requests in other processes wait for the one
    #: calling before they call themselves (also the lock's expiry if it crashes).
    lock_s: PositiveFloat = 30.0
    #: Cache even when temperature > 0 (answers are then not fresh samples).
    force: bool = False

    @model_validator(mode="after")
    def _sqlite_needs_path(self) -> CacheConfig:
        if self.backend == "sqlite" and not self.path:
            raise FieldError("path", "backend 'sqlite' needs path (the database file)", relative=True)
        return self


class AuditConfig(_Section):
    #: The JSONL (or .sqlite3) audit log: one record per request.
    path: NonEmptyStr
    #: Write prompts and answers too (off: only figures, hashes and routes).
    include_text: bool = False


class LoggingConfig(_Section):
    """``[logging]``: the orchestrator's structlog events (one per attempt)."""

    #: Lowest structlog level emitted; off silences the orchestrator's events.
    level: Literal["debug", "info", "warning", "error", "off"] = "info"
    #: logfmt for people, json for log pipelines.
    format: Literal["logfmt", "json"] = "logfmt"


_EXTRA_MODULES = {"prometheus": ("prometheus_client", "prometheus"), "otel": ("opentelemetry", "otel")}


class TelemetryConfig(_Section):
    """``[telemetry]``: exporters, each an observer of the orchestrator's events
    (docs/prometheus.md, docs/otel.md). Each needs its optional extra, checked at
    load so ``check-config`` reports a missing one."""

    #: A per-orchestrator prometheus_client registry (orch.prometheus_registry); the prometheus extra.
    prometheus: Annotated[bool, Field(strict=True)] = False
    #: OpenTelemetry GenAI spans and metrics on the application's providers; the otel extra.
    otel: Annotated[bool, Field(strict=True)] = False
    #: OTel: put prompts and completions on spans (off by default: figures only).
    capture_content: Annotated[bool, Field(strict=True)] = False
    #: OTel: send W3C trace context (``traceparent``) in provider HTTP requests.
    propagate_context: Annotated[bool, Field(strict=True)] = False

    @model_validator(mode="after")
    def _extras_installed(self) -> TelemetryConfig:
        import importlib.util

        for name, (module, extra) in _EXTRA_MODULES.items():
            if getattr(self, name) and importlib.util.find_spec(module) is None:
                raise FieldError(
                    name, f'needs the {extra!r} extra: pip install "tierwise[{extra}]"', relative=True
                )
        for name in ("capture_content", "propagate_context"):
            if getattr(self, name) and not self.otel:
                raise FieldError(name, "only applies with otel = true", relative=True)
        return self


class MemoryStateConfig(_Section):
    """``[state] backend = "memory"``: per-process state (the default)."""

    #: memory: limits, budget and circuits live in this process.
    backend: Literal["memory"] = "memory"


class StateOnErrorConfig(_Section):
    """``[state.on_error]``: what each concern does when Redis is unavailable.
    ``open``: carry on with this process's own state (a warning is logged);
    ``closed``: the request fails with ``StateUnavailable``."""

    #: Rate and concurrency limits when Redis is unavailable (open: this process's own).
    limits: Literal["open", "closed"] = "open"
    #: Budgets when Redis is unavailable (closed: requests fail rather than overspend).
    budget: Literal["open", "closed"] = "closed"
    #: Circuit state only steers traffic, never admits it: always per-process on failure.
    health: Literal["open"] = "open"
    #: The cache only saves money: open uses this process's own cache.
    cache: Literal["open", "closed"] = "open"
    #: A moved conversation loses its prompt cache for a turn: open uses each router's memory.
    sticky: Literal["open", "closed"] = "open"


class RedisStateConfig(_Section):
    """``[state] backend = "redis"``: state shared by many processes. The URL is
    read from the environment variable ``url_env`` names, never from the file."""

    #: redis: state shared by every process using the same Redis and key_prefix.
    backend: Literal["redis"]
    #: The NAME of the environment variable holding the Redis URL.
    url_env: NonEmptyStr = "REDIS_URL"
    #: Prefix of every Redis key: processes with the same prefix share state.
    key_prefix: str = "tierwise:"
    #: The longest any request waits on Redis before its ``on_error`` mode applies.
    timeout_s: PositiveFloat = 0.25
    #: After a failure Redis is left alone this long, then tried again.
    retry_s: PositiveFloat = 1.0
    #: A killed process's concurrency slots and budget reservations count this long.
    lease_s: PositiveFloat = 30.0
    #: How often each process refreshes its view of the shared circuits and spend.
    refresh_s: PositiveFloat = 0.5
    #: How long a sticky conversation nobody continues keeps its route.
    sticky_ttl_s: PositiveFloat = 86400.0
    #: Per concern: open or closed when Redis is unavailable.
    on_error: StateOnErrorConfig = Field(default_factory=lambda: StateOnErrorConfig())

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value) or looks_like_key(value):
            raise ValueError("must be the NAME of an environment variable holding the URL (like REDIS_URL)")
        return value


#: ``[state]``: one model per backend, chosen by ``backend``.
StateConfig = Annotated[MemoryStateConfig | RedisStateConfig, Field(discriminator="backend")]


class TierwiseConfig(_Section):
    """The whole file."""

    #: API endpoints by name; built-in names need no section.
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    #: Deployments by alias (at least one).
    models: dict[str, ModelConfig]
    #: Named strategies; each table's type picks its keys.
    strategies: dict[str, StrategyTable] = Field(default_factory=dict)
    #: The strategy ``orch.run`` uses without ``strategy=``
    #: (default: the one named "default", else the first).
    default_strategy: str | None = None
    #: Appended to every model's own fallback chain.
    fallbacks: list[str] = Field(default_factory=list)
    #: The executor's retry policy.
    retry: RetryConfig = Field(default_factory=RetryConfig)
    #: Which 400s stop a fallback chain.
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    #: The circuit breaker.
    health: HealthConfig = Field(default_factory=HealthConfig)
    #: Spending limits.
    budget: BudgetConfig | None = None
    #: The response cache (none without this section).
    cache: CacheConfig | None = None
    #: The audit log (none without this section).
    audit: AuditConfig | None = None
    #: The orchestrator's log events.
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    #: Shared state for many processes.
    state: StateConfig = Field(default_factory=MemoryStateConfig)
    #: Prometheus and OpenTelemetry exporters.
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    #: Alert rules and where alerts go.
    alerts: AlertsConfig | None = None
    #: The model savings are measured against (default: the most expensive one).
    baseline: str | None = None
    #: Seeds retry jitter and sampling, for reproducible runs.
    seed: Annotated[int, Field(strict=True)] | None = None
    #: ``"package.module:Name"`` per observer: a class (made with no arguments) or
    #: an object with ``on_attempt(event)`` and ``on_request(event)``.
    observers: list[str] = Field(default_factory=list)

    @field_validator("providers", mode="before")
    @classmethod
    def _builtin_types(cls, value: Any) -> Any:
        # ``[providers.deepseek] base_url = "..."`` overrides the built-in row: its
        # type and compat come from the name, as when there is no section at all.
        from ._builtins import with_builtin_type

        return with_builtin_type(value)

    @field_validator("observers")
    @classmethod
    def _importable_observers(cls, value: list[str]) -> list[str]:
        for i, path in enumerate(value):
            load_observer(path, f"observers[{i}]", make=False)
        return value

    @model_validator(mode="after")
    def _references(self) -> TierwiseConfig:
        # On validated data, after every section has passed: cross-references
        # (aliases, providers, strategy targets and cycles) name the exact field,
        # and all of them are collected: check-config reports every one.
        if not self.models:
            raise FieldError(
                "models", "at least one model is required ([models.ALIAS] with provider and model)"
            )
        from ._refs import reference_problems

        problems = reference_problems(self)
        if self.baseline is not None and self.baseline not in self.models:
            problems.append(FieldError("baseline", unknown("model alias", self.baseline, self.models)))
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise FieldErrors(problems)
        return self


def load_observer(path: str, field: str, *, make: bool = True) -> Any:
    """The observer ``path`` names (made, for a class, when ``make``); a
    ``FieldError`` at ``field`` when it cannot be imported or is no observer."""
    from .strategies import import_object

    try:
        found = import_object(path, "Observer")
    except FieldError as exc:
        raise FieldError(field, exc.message) from None
    for method in ("on_attempt", "on_request"):
        if not callable(getattr(found, method, None)):
            raise FieldError(field, f"{path!r} has no {method}(event) method: it is not an observer")
    if make and isinstance(found, type):
        try:
            return found()
        except TypeError as exc:
            raise FieldError(field, f"{path}: {exc} (an observer class is made with no arguments)") from None
    return found
