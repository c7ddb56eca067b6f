"""From a validated config to objects: providers, deployments, strategies, the Orchestrator.

``load_config`` does every check that has no side effect; ``build_orchestrator``
then only constructs, so the only file it touches (the audit log) is opened
last, after everything that can fail.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigError
from ._errors import bare_message, config_error, unknown
from .schema import ProviderConfig, TierwiseConfig, load_observer
from .strategies import StrategyModel, strategy_model

if TYPE_CHECKING:
    from ..orchestrator import Orchestrator
    from ..providers.base import Provider
    from ..strategies.base import Strategy

__all__ = ["build_orchestrator", "check_config", "config_warnings", "construct_strategies", "load_config"]


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
        raise config_error(TierwiseConfig, exc.errors()) from None


def check_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> TierwiseConfig:
    """Everything ``build_orchestrator`` would check, without its side effects
    (no audit file created, no cache opened): what ``tierwise check-config`` runs."""
    cfg = load_config(source)
    from ._alerts import alert_problems

    for problem in alert_problems(cfg):
        raise problem
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
    from ..catalog import Catalog
    from ..strategies.router import Router

    warnings: list[str] = []
    catalog = Catalog.default()
    for alias, m in cfg.models.items():
        if m.input_price is not None and m.output_price is not None:
            continue
        section = cfg.providers.get(m.provider)
        # The catalog files prices under the row's name (deepseek), not the wire type (openai).
        kind = m.provider if section is None else (section.compat or section.type)
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


def _make_provider(
    name: str,
    cfg: ProviderConfig | None,
    max_out: dict[str, int] | None = None,
    responses_models: frozenset[str] = frozenset(),
) -> Provider:
    """One provider instance for ``[providers.NAME]`` (or a built-in name).

    ``max_out`` (model name → largest output) is filled as the deployments are
    built: the Anthropic API requires ``max_tokens``, and a request that sets none
    gets its deployment's largest output (not the provider's flat default).

    When ``api_key_env`` is set, that variable is the only source of the key: a
    provider's own default variable (``OPENAI_API_KEY``, ``GOOGLE_API_KEY``...) is
    not consulted, so a deployment never silently bills another account's key.
    """
    if cfg is None:  # a built-in provider name used without a [providers] section
        from ._builtins import builtin_section

        cfg = ProviderConfig.model_validate(builtin_section(name) or {"type": name})
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
            from ..providers.openai import COMPATIBLE_SERVERS, OpenAI

            compat = cfg.compat or (
                name if name in COMPATIBLE_SERVERS else ("gateway" if cfg.base_url else "openai")
            )
            if compat not in COMPATIBLE_SERVERS:
                raise ConfigError(unknown("OpenAI-compatible server", compat, COMPATIBLE_SERVERS))
            row = COMPATIBLE_SERVERS[compat]
            if env:
                # The row names the variable in the provider's "no API key" error.
                row = dataclasses.replace(row, api_key_env=env)
            provider: Provider = OpenAI(compat=row, responses_models=responses_models, **common)
        elif cfg.type == "anthropic":
            from ..providers.anthropic import Anthropic

            provider = Anthropic(default_max_tokens=max_out if max_out is not None else {}, **common)
        else:
            from ..providers.gemini import Gemini

            provider = Gemini(**common)
    except ConfigError as exc:
        sub = "compat" if exc.field is None else exc.field
        raise ConfigError(bare_message(exc), field=f"providers.{name}.{sub}") from None
    except ImportError as exc:
        raise ConfigError(str(exc), field=f"providers.{name}.http") from None
    if env and not api_key:
        # Keep the configured env var name in the "no key" error the provider raises.
        provider.api_key_env = env  # type: ignore[misc]
    return provider


def _responses_models(cfg: TierwiseConfig) -> dict[str, frozenset[str]]:
    """Per provider, the model names whose deployments say ``api = "responses"``.

    The wire format is chosen per model name inside one provider, so two
    deployments of the same model cannot disagree, and only OpenAI-type providers
    speak the Responses API: both are configuration errors, named by field."""
    chosen: dict[tuple[str, str], tuple[str, str]] = {}
    out: dict[str, set[str]] = {}
    for alias, m in cfg.models.items():
        key = (m.provider, m.model)
        seen = chosen.setdefault(key, (alias, m.api))
        if seen[1] != m.api:
            raise ConfigError(
                f"deployments {seen[0]!r} and {alias!r} use model {m.model!r} of provider "
                f"{m.provider!r} with different api values; use one",
                field=f"models.{alias}.api",
            )
        if m.api == "responses":
            pcfg = cfg.providers.get(m.provider)
            ptype = pcfg.type if pcfg is not None else m.provider
            if ptype != "openai" and (pcfg is not None or m.provider in ("anthropic", "gemini")):
                raise ConfigError(
                    f'api = "responses" needs an OpenAI-type provider ({m.provider!r} is {ptype!r})',
                    field=f"models.{alias}.api",
                )
            out.setdefault(m.provider, set()).add(m.model)
    return {name: frozenset(models) for name, models in out.items()}


def build_orchestrator(
    source: str | os.PathLike[str] | Mapping[str, Any] | TierwiseConfig, *, clock: Clock = SYSTEM_CLOCK
) -> Orchestrator:
    """Build an ``Orchestrator`` from config (a path, a dict or a validated config).

    All validation happens in ``load_config``; this only constructs, so the
    only files touched (audit log) are opened last, after everything that can fail.
    """
    from ..catalog import Catalog
    from ..execution.budget import BudgetLedger
    from ..execution.cache import MemoryCache, ResponseCache, SQLiteCache
    from ..execution.executor import Deployment
    from ..execution.health import HealthTracker
    from ..execution.limits import RateLimiter
    from ..execution.retry import RetryPolicy
    from ..orchestrator import Orchestrator

    cfg = source if isinstance(source, TierwiseConfig) else load_config(source)
    catalog = Catalog.default()

    providers: dict[str, Provider] = {}
    max_outs: dict[str, dict[str, int]] = {}
    responses = _responses_models(cfg)
    for m in cfg.models.values():
        if m.provider not in providers:
            max_outs[m.provider] = {}
            providers[m.provider] = _make_provider(
                m.provider,
                cfg.providers.get(m.provider),
                max_outs[m.provider],
                responses.get(m.provider, frozenset()),
            )

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
            raise ConfigError(bare_message(exc), field=f"models.{alias}") from None
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
            exact_token_counts=m.exact_token_counts,
        )
        if m.exact_token_counts and not providers[m.provider].supports_token_counting(m.model):
            raise ConfigError(
                f"provider {m.provider!r} has no token-counting endpoint for {m.model!r} "
                '(Anthropic, Gemini and OpenAI deployments with api = "responses" have one)',
                field=f"models.{alias}.exact_token_counts",
            )
        max_output = deployments[alias].max_output_tokens
        if max_output:
            max_outs[m.provider].setdefault(m.model, max_output)

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
            [b.limit() for b in cfg.budget.limits],
            clock=clock,
            timezone=ZoneInfo(cfg.budget.timezone),  # validated by BudgetConfig
        )
    strategies = _build_strategies(cfg)
    state = None
    if cfg.state.backend == "redis":
        from ..state.redis import RedisState

        sc = cfg.state
        e = sc.on_error
        state = RedisState(
            url_env=sc.url_env,
            key_prefix=sc.key_prefix,
            timeout_s=sc.timeout_s,
            retry_s=sc.retry_s,
            lease_s=sc.lease_s,
            refresh_s=sc.refresh_s,
            sticky_ttl_s=sc.sticky_ttl_s,
            on_error={"limits": e.limits, "budget": e.budget, "cache": e.cache, "sticky": e.sticky},
            clock=clock,
        )
    cache: ResponseCache | None = None
    cache_force = False
    if cfg.cache is not None and cfg.cache.backend != "none":
        cc = cfg.cache
        cache_force = cc.force
        if cc.backend == "sqlite":
            assert cc.path is not None
            # SQLiteCache connects lazily: a bad directory would otherwise surface on
            # the first request instead of at start-up.
            _check_parent_dir(cc.path, "cache.path")
            cache = SQLiteCache(cc.path, ttl_s=cc.ttl_s, clock=clock)
        elif state is not None:
            # The memory cache of a shared-state config is the shared one.
            cache = state.cache(
                ttl_s=cc.ttl_s,
                max_entries=cc.max_entries,
                max_entry_bytes=cc.max_entry_bytes,
                lock_s=cc.lock_s,
            )
        else:
            cache = MemoryCache(max_entries=cc.max_entries, ttl_s=cc.ttl_s, clock=clock)
    audit = None
    if cfg.audit is not None:
        from ..observe.audit import AuditLog

        secrets = [p._api_key for p in providers.values() if p._api_key]
        try:
            audit = AuditLog(cfg.audit.path, include_text=cfg.audit.include_text, secrets=secrets)
        except OSError as exc:
            raise ConfigError(f"cannot open audit log: {exc.strerror or exc}", field="audit.path") from None

    from ..execution.fallback import BadRequestRule
    from ._alerts import build_alerts

    alerts = build_alerts(cfg, deployments, clock)
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
        alerts=alerts,
        baseline=cfg.baseline,
        observers=[*_observers(cfg.observers), *_telemetry(cfg)],
        clock=clock,
        seed=cfg.seed,
        owned_providers=list(providers.values()),
        log_level=None if cfg.logging.level == "off" else cfg.logging.level,
        log_json=cfg.logging.format == "json",
        state=state,
    )


def _build_strategies(cfg: TierwiseConfig) -> dict[str, Strategy]:
    """Construct the strategies of a validated config."""
    return construct_strategies(cfg.strategies, cfg.models)


def construct_strategies(
    tables: Mapping[str, StrategyModel | Mapping[str, Any]], models: Mapping[str, Any]
) -> dict[str, Strategy]:
    """Build every ``[strategies.NAME]`` table, in dependency order.

    A target anywhere in a strategy (a route, a cascade rung, an ensemble member, a
    pipeline step, a judge) is resolved the same way: a model alias, the name of
    another strategy (built first, once), or an inline table with its own ``type``
    (a nested strategy named after its field). The tables were validated and
    cross-checked by ``load_config``; the cycle and unknown-name errors here are
    for what only a user's own ``from_config`` reads.
    """
    built: dict[str, Strategy] = {}
    building: list[str] = []
    validated = {
        name: t if isinstance(t, StrategyModel) else strategy_model(t.get("type")).model_validate(t)
        for name, t in tables.items()
    }

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
            strategy = validated[name].build(name, where=f"strategies.{name}", target=resolve)
        finally:
            building.pop()
        built[name] = strategy
        return strategy

    def resolve(value: Any, field: str) -> Any:
        if isinstance(value, str):
            if value in models:
                return value
            if value in validated:
                return named(value)
            raise ConfigError(
                unknown("target", value, [*models, *validated]) + " (a model alias or a strategy name)",
                field=field,
            )
        if isinstance(value, Mapping) and "type" in value:
            try:
                value = StrategyModel.parse_inline(value, where=field)
            except ConfigError:
                raise
        if isinstance(value, StrategyModel):
            return value.build(field.rpartition(".")[2] or field, where=field, target=resolve)
        raise ConfigError(
            "must be a string (a model alias or a strategy name) or an inline strategy table, "
            f"got {type(value).__name__}",
            field=field,
        )

    for name in validated:
        named(name)
    # Config order, not build order: the first table is the default strategy.
    return {name: built[name] for name in validated}


def _telemetry(cfg: TierwiseConfig) -> list[Any]:
    """The exporters ``[telemetry]`` switches on (their extras were checked at load)."""
    t = cfg.telemetry
    made: list[Any] = []
    if t.prometheus:
        from ..observe.prometheus import PrometheusObserver

        made.append(PrometheusObserver())
    if t.otel:
        from ..observe.otel import OTelObserver

        made.append(OTelObserver(capture_content=t.capture_content, propagate_context=t.propagate_context))
    return made


def _observers(paths: list[str]) -> list[Any]:
    """The configured observers, made (their imports were checked at load)."""
    from ._errors import FieldError

    made = []
    for i, path in enumerate(paths):
        try:
            made.append(load_observer(path, f"observers[{i}]"))
        except FieldError as exc:
            raise ConfigError(exc.message, field=exc.field) from None
    return made
