"""The Orchestrator: the object an application holds for its lifetime.

It owns everything stateful — deployments and their connection pools, the
executor's limiters, health, budget ledger and cache, the metrics collector,
the audit log — and nothing is process-global, so two orchestrators in one
process share nothing unless handed the same backend object.

``run`` is the whole flow of DESIGN.md: pick the strategy, let it decide, let the
executor enforce, then record one metrics event and one audit record.

The bill of a request is settled here, from the run context's ``CallLedger``
(every attempt the executor made on the request's behalf), not from what the
strategy chose to return: a custom strategy that calls two models and answers
with one still reports both in ``cost_usd``, in the metrics and in the audit log.
A request whose caller goes away (a stream consumer that disconnects, a
cancelled task) is recorded too, as cancelled, with what was already billed.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

from ._clock import SYSTEM_CLOCK, Clock
from ._closing import AsyncClosing
from .errors import AllTargetsFailed, ConfigError, TierwiseError
from .execution.executor import Deployment, Executor
from .observe.events import Observer, Observers, RequestCancelled, RequestEvent
from .observe.metrics import MetricsCollector
from .observe.savings import apply_savings, priciest_deployment
from .strategies.base import CallLedger, RunContext, Strategy
from .strategies.single import Single
from .types import Done, Embeddings, Message, Request, Response, RouteInfo, StreamEvent, Usage

if TYPE_CHECKING:
    from .execution.budget import BudgetLedger
    from .execution.cache import ResponseCache
    from .execution.fallback import BadRequestRule
    from .execution.health import HealthTracker
    from .execution.retry import RetryPolicy
    from .observe.alerts import AlertMonitor
    from .observe.audit import AuditLog
    from .providers.base import Provider
    from .state.redis import RedisState
    from .strategies.batch import BatchProgress, BatchResult
    from .strategies.provider_batch import RetryFailed

__all__ = ["Orchestrator"]


class Orchestrator(AsyncClosing):
    """Routes, calls and accounts for LLM requests. Build it in code or with
    ``Orchestrator.from_config("tierwise.toml")``; use it as an async context
    manager (or call ``aclose()``) so connections are released."""

    def __init__(
        self,
        models: Mapping[str, Deployment] | Sequence[Deployment],
        *,
        strategies: Mapping[str, Strategy] | None = None,
        default_strategy: str | None = None,
        fallbacks: Sequence[str] = (),
        bad_request: BadRequestRule | None = None,
        retry: RetryPolicy | None = None,
        health: HealthTracker | None = None,
        budget: BudgetLedger | None = None,
        cache: ResponseCache | None = None,
        cache_force: bool = False,
        audit: AuditLog | None = None,
        alerts: AlertMonitor | None = None,
        clock: Clock = SYSTEM_CLOCK,
        seed: int | None = None,
        owned_providers: Sequence[Provider] | None = None,
        log_level: str | None = "info",
        log_json: bool = False,
        observers: Sequence[Observer] = (),
        baseline: str | None = None,
        state: RedisState | None = None,
    ) -> None:
        deployments = dict(models) if isinstance(models, Mapping) else {d.alias: d for d in models}
        if not deployments:
            raise ConfigError("at least one model is required", field="models")
        # A shared backend takes over the limiters, circuits, budget store, response
        # cache and sticky routes (None: everything stays in this process's memory).
        self.state = state
        sticky = None
        if state is not None:
            health, budget = state.bind(deployments, health, budget)
            cache = state.bind_cache(cache)
            sticky = state.sticky_store()
        self.clock = clock
        self.metrics = MetricsCollector()
        # Providers the orchestrator created (from config) and must close; when
        # built in code, every distinct provider of the deployments is closed too,
        # since each closes only a pool it created itself.
        providers = (
            owned_providers if owned_providers is not None else [d.provider for d in deployments.values()]
        )
        self._providers = list({id(p): p for p in providers}.values())
        # Everything that reports what happened is an observer of the same events:
        # metrics first (alerts read figures it has already counted), then the
        # logger, alerts, the audit log and the application's own.
        self.observers = Observers([self.metrics])
        self._log_observer: Any = None
        if log_level is not None:
            self._attach_logger(log_level, log_json)
        if alerts is not None:
            self.observers.add(alerts)
        if audit is not None:
            self.observers.add(audit)
        self._own_observers = list(observers)
        for observer in self._own_observers:
            self.observers.add(observer)
        self.executor = Executor(
            deployments,
            retry=retry,
            health=health,
            budget=budget,
            cache=cache,
            cache_force=cache_force,
            metrics=self.metrics,
            observers=self.observers,
            default_fallbacks=fallbacks,
            bad_request=bad_request,
            clock=clock,
            seed=seed,
            sticky=sticky,
        )
        self.strategies: dict[str, Strategy] = dict(strategies or {})
        if not self.strategies:
            first = next(iter(deployments))
            self.strategies["default"] = Single(first, name="default")
        if default_strategy is None:
            default_strategy = "default" if "default" in self.strategies else next(iter(self.strategies))
        if default_strategy not in self.strategies:
            raise ConfigError(
                f"unknown strategy {default_strategy!r}; defined: {', '.join(sorted(self.strategies))}",
                field="default_strategy",
            )
        self.default_strategy = default_strategy
        # Savings are reported against this deployment (docs/costs.md).
        if baseline is not None and baseline not in deployments:
            raise ConfigError(
                f"unknown baseline model {baseline!r}; defined: {', '.join(deployments)}", field="baseline"
            )
        self.baseline = baseline if baseline is not None else priciest_deployment(deployments)
        self._baseline = None if self.baseline is None else deployments[self.baseline]
        self.audit = audit
        self.alerts = alerts
        self._rng = random.Random(seed)
        self._closed = False
        # Exporters that read state at scrape time (circuits, budgets) need the
        # orchestrator itself, which only exists now.
        for observer in self._own_observers:
            bind = getattr(observer, "bind_orchestrator", None)
            if bind is not None:
                bind(self)

    async def __aenter__(self) -> Orchestrator:
        if self.state is not None:
            # The shared circuits, before the first chain is ordered from them.
            await self.state.refresh()
        return self

    def _attach_logger(self, level: str, json: bool) -> None:
        """This orchestrator's own structlog logger, as an observer. Secrets (the
        providers' keys) are scrubbed from every value; nothing is configured
        process-wide."""
        from .observe.logging import LogObserver

        secrets = [k for k in (getattr(p, "_api_key", None) for p in self._providers) if k]
        self._log_observer = LogObserver(level=level, json=json, secrets=secrets)
        self.observers.add(self._log_observer)

    @property
    def prometheus_registry(self) -> Any:
        """The ``CollectorRegistry`` of this orchestrator's ``PrometheusObserver``
        (``[telemetry] prometheus = true``), ``None`` when it has none."""
        from .observe.prometheus import PrometheusObserver

        for observer in self.observers:
            if isinstance(observer, PrometheusObserver):
                return observer.registry
        return None

    @property
    def log(self) -> Any:
        """This orchestrator's structlog logger (``None`` with ``log_level=None``),
        made on first use."""
        return None if self._log_observer is None else self._log_observer.log

    # ------------------------------------------------------------------ building

    @classmethod
    def from_config(
        cls, source: str | os.PathLike[str] | Mapping[str, Any], *, clock: Clock = SYSTEM_CLOCK
    ) -> Orchestrator:
        """Build from a TOML file path or a dict; ``ConfigError`` names the bad field."""
        from .config import build_orchestrator

        return build_orchestrator(source, clock=clock)

    @property
    def deployments(self) -> dict[str, Deployment]:
        return self.executor.deployments

    # ------------------------------------------------------------------ running

    def _strategy(self, name: str | None) -> Strategy:
        key = name or self.default_strategy
        try:
            return self.strategies[key]
        except KeyError:
            raise ConfigError(
                f"unknown strategy {key!r}; defined: {', '.join(sorted(self.strategies))}"
            ) from None

    def _request(
        self,
        prompt: str | Request,
        metadata: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None = None,
    ) -> Request:
        # ``params`` are run()'s request keywords; None means "not given", so a
        # wrapper can pass max_tokens=None through without changing the request.
        given = {k: v for k, v in params.items() if v is not None} if params else {}
        if isinstance(prompt, str):
            if given:
                system = given.pop("system", None)
                # from_prompt raises TypeError naming a misspelt parameter (max_token=).
                request = Request.from_prompt(prompt, system=system, **given)
            else:
                # What Request.from_prompt(prompt) builds, without its parameter checks.
                request = Request([Message("user", prompt)])
        elif isinstance(prompt, Request):
            if given:
                raise TypeError(
                    f"request parameters ({', '.join(sorted(given))}) are for a str prompt; "
                    "a tierwise.Request carries its own (set them on the Request)"
                )
            request = prompt
        else:
            raise TypeError(f"prompt must be a str or a tierwise.Request, got {type(prompt).__name__}")
        if metadata:
            merged = dict(request.metadata)
            merged.update(metadata)
            request = _with_metadata(request, merged)
        return request

    def _context(self, strategy: Strategy, request: Request, start: float | None = None) -> RunContext:
        # The retry deadline bounds the whole request: every call the strategy makes,
        # queueing for rate-limit slots included.
        limit = self.executor.retry.deadline
        return RunContext(
            self.executor,
            path=strategy.name,
            metadata=request.metadata,
            deadline=None if limit is None or start is None else start + limit,
            # The seed is drawn now (so seeded runs stay reproducible); the Random
            # itself is only built if the strategy uses it.
            seed=self._rng.getrandbits(64),
        )

    async def run(
        self,
        prompt: str | Request,
        strategy: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **params: Any,
    ) -> Response:
        """Answer ``prompt`` with ``strategy`` (default: the configured default).

        The keywords are ``Request.from_prompt``'s (``system``, ``max_tokens``,
        ``temperature``, ``top_p``, ``stop``, ``tools``, ``response_format``,
        ``reasoning_effort``, ``seed``, …), so ``orch.run("…", max_tokens=200)`` needs
        no ``Request``; a misspelt one raises ``TypeError`` naming it. A ``Request``
        prompt carries its own parameters: passing any here with it is a ``TypeError``.
        """
        self._check_open()
        params.update(system=system, max_tokens=max_tokens, temperature=temperature)
        request = self._request(prompt, metadata, params)
        strat = self._strategy(strategy)
        start = self.clock.now()
        ctx = self._context(strat, request, start)
        try:
            response = ctx.ledger.settle(await strat.run(request, ctx))
        except TierwiseError as exc:
            self._record_failure(strat, request, exc, start, ctx.ledger)
            if isinstance(exc, AllTargetsFailed):
                # Raised at one fixed place in the executor: the strategy and executor
                # frames below this one only lengthen the printed traceback.
                raise exc.with_traceback(None) from exc.__cause__
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled: the caller went away
                self._record_failure(strat, request, None, start, ctx.ledger)
            raise
        self._record(strat, request, response, start)
        return response

    async def stream(
        self,
        prompt: str | Request,
        strategy: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        **params: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream the answer: ``TextDelta``/``ToolCallDelta`` events, then ``Done``.
        Takes ``run``'s request keywords.

        Typed as an async generator (not just an iterator) so callers that may stop
        early can write ``async with contextlib.aclosing(orch.stream(...))``: closing
        it releases the request's limiter slot, budget reservation and connection
        at once."""
        self._check_open()
        params.update(system=system, max_tokens=max_tokens, temperature=temperature)
        request = self._request(prompt, metadata, params)
        strat = self._strategy(strategy)
        start = self.clock.now()
        ctx = self._context(strat, request, start)
        events = strat.stream(request, ctx)
        done = False
        try:
            async for event in events:
                if isinstance(event, Done):
                    done = True
                    event = Done(ctx.ledger.settle(event.response))
                    self._record(strat, request, event.response, start)
                yield event
        except TierwiseError as exc:
            done = True
            self._record_failure(strat, request, exc, start, ctx.ledger)
            raise
        except BaseException:
            if not done:
                # The consumer stopped reading (GeneratorExit) or was cancelled. Close
                # the strategy's stream first: the executor books the tokens already
                # streamed as a cancelled attempt, which the record must include.
                done = True
                import anyio  # lazily: keeps it out of cold start

                with anyio.CancelScope(shield=True):
                    await _aclose(events)
                self._record_failure(strat, request, None, start, ctx.ledger)
            raise
        finally:
            # When the caller stops early (``aclose()``, ``break`` + aclosing), close
            # the strategy's stream now, so its limiter slot, budget reservation and
            # connection are back when our aclose() returns, not whenever the event
            # loop's async-generator finalizer gets round to it.
            await _aclose(events)
            if not done:
                # Iteration ended without a Done and without an error: a strategy bug,
                # but what it spent is still recorded.
                self._record_failure(strat, request, None, start, ctx.ledger)

    async def embed(self, texts: Sequence[str], *, model: str) -> Embeddings:
        """Embedding vectors for ``texts`` (in input order) from the deployment ``model``.

        ``model`` is a configured alias (``[models.embedder]`` with e.g.
        ``provider = "openai"``, ``model = "text-embedding-3-small"``); its provider is
        called with its provider-side model name, under its ``timeout_s`` and rate
        limiter, with this orchestrator's retry policy and budget. There is no
        fallback: vectors from another model are not comparable. ``cost_usd`` comes
        from the catalog's input price, ``None`` when the price (or the provider's
        token count) is unknown. Raises ``ConfigError`` for an unknown alias,
        ``NotFoundError`` when the deployment's provider has no embeddings endpoint
        (Anthropic), else the last attempt's ``ProviderError``.
        """
        self._check_open()
        # An unknown alias raises the same ConfigError as run() does.
        return await self.executor.embed(model, texts)

    def explain(
        self,
        prompt: str | Request,
        strategy: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> RouteInfo:
        """Which route ``strategy`` would take for ``prompt`` and why; calls no model.

        ``metadata`` carries routing hints (``tier``, ``json_output``) and ``params``
        are ``run``'s request keywords (a ``response_format`` is a hint too), as in ``run``.
        """
        request = self._request(prompt, metadata, params)
        strat = self._strategy(strategy)
        return strat.explain(request, self._context(strat, request))

    def add_strategy(self, name: str, strategy: Strategy, *, default: bool = False) -> None:
        """Register a strategy built in code (a subclass, a cascade of verifier
        objects) under ``name``, optionally as the default."""
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be a tierwise Strategy, got {type(strategy).__name__}")
        if not name:
            raise ValueError("strategy name must not be empty")
        self.strategies[name] = strategy
        if default:
            self.default_strategy = name

    @property
    def providers(self) -> tuple[Provider, ...]:
        """The distinct providers this orchestrator closes on ``aclose()``."""
        return tuple(self._providers)

    async def batch(
        self,
        items: Sequence[Any],
        template: str | None = None,
        *,
        concurrency: int = 8,
        strategy: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: Callable[[BatchProgress], None] | None = None,
        output: str | os.PathLike[str] | None = None,
        mode: Literal["realtime", "provider"] = "realtime",
        retry_failed: RetryFailed = "resubmit",
        poll_interval_s: float = 2.0,
    ) -> list[BatchResult]:
        """Run many items (strings, dicts, or Requests) with bounded concurrency:
        results in input order, each item's error captured, resumable through
        ``output`` (see ``tierwise.strategies.batch``).

        ``mode="provider"`` routes each item first and sends it through the
        provider's half-price batch API instead (``output`` required: the job is
        kept beside it so a rerun resumes; see ``tierwise.strategies.provider_batch``).
        ``retry_failed`` and ``poll_interval_s`` apply to that mode only."""
        from .strategies.batch import run_batch

        if mode == "provider":
            from .strategies.provider_batch import run_provider_batch

            if output is None:
                raise ValueError("mode='provider' needs output=: the job is persisted beside it")
            return await run_provider_batch(
                self,
                items,
                template,
                output=output,
                strategy=strategy,
                metadata=metadata,
                progress=progress,
                retry_failed=retry_failed,
                poll_interval_s=poll_interval_s,
            )
        if mode != "realtime":
            raise ValueError(f"mode must be 'realtime' or 'provider', got {mode!r}")

        return await run_batch(
            self,
            items,
            template,
            concurrency=concurrency,
            strategy=strategy,
            metadata=metadata,
            progress=progress,
            output=output,
        )

    def health(self) -> dict[str, Any]:
        """Per-deployment health: state, failures, cooldown remaining.

        Every configured deployment gets the same keys (``HealthState``'s fields),
        whether or not it has been called yet, so dashboards need no special case.
        With a shared state backend (Redis) the circuits are the shared ones and
        each entry has ``shared``: whether that view is current (``orch.state.stats()``
        has the counters).
        """
        state = self.executor.health.state
        out = {alias: asdict(state(alias)) for alias in self.executor.deployments}
        if self.state is not None:
            # With a shared backend each entry also says whether it is the shared
            # view (False while Redis is unreachable and this process is on its own).
            shared = self.state.shared
            for entry in out.values():
                entry["shared"] = shared
        return out

    # ------------------------------------------------------------------ recording

    def _record(self, strat: Strategy, request: Request, response: Response, start: float) -> None:
        latency = (self.clock.now() - start) * 1000.0
        if not response.latency_ms:
            response.latency_ms = latency
        apply_savings(response, self._baseline)
        usage = response.usage
        self.observers.request(
            RequestEvent(
                strat.name,
                response.route.label,
                response.deployment or response.model,
                latency,
                response.cost_usd,
                response.fallback,
                response.cached,
                None,
                response.ttft_ms,
                usage.input_tokens,
                usage.output_tokens,
                usage.estimated,
                False,
                request,
                response,
                None,
                tuple(response.attempts),
            )
        )

    def _record_failure(
        self,
        strat: Strategy,
        request: Request,
        exc: BaseException | None,
        start: float,
        ledger: CallLedger,
    ) -> None:
        """A failed request (``exc``) or one its caller abandoned (``exc is None``):
        either way, what its attempts cost (known prices only) is on the record."""
        latency = (self.clock.now() - start) * 1000.0
        attempts = ledger.attempts
        costs = [a.cost_usd for a in attempts if a.cost_usd is not None]
        usage = Usage()
        for a in attempts:
            if a.usage is not None:
                usage = usage + a.usage
        self.observers.request(
            RequestEvent(
                strat.name,
                None,
                None,
                latency,
                sum(costs) if costs else None,
                False,
                False,
                None if exc is None else type(exc).__name__,
                None,
                usage.input_tokens,
                usage.output_tokens,
                usage.estimated,
                exc is None,
                request,
                None,
                RequestCancelled() if exc is None else exc,
                tuple(attempts),
            )
        )

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Orchestrator is closed")

    async def aclose(self) -> None:
        """Release connections, flush the audit log and close the cache."""
        if self._closed:
            return
        self._closed = True
        # Background work that still needs the connections (a Shadow's comparisons) finishes first.
        for strategy in self.strategies.values():
            drain = getattr(strategy, "drain", None)
            if drain is not None:
                await drain()
        # Requests queued for a rate-limit slot fail now rather than after their
        # window: a SIGTERM drains in the time in-flight calls take, not minutes.
        self.executor.close()
        for provider in self._providers:
            await provider.aclose()
        if self.executor.cache is not None:
            await self.executor.cache.aclose()
        if self.audit is not None:
            await self.audit.aclose()
        if self.alerts is not None:
            await self.alerts.aclose()
        for observer in self._own_observers:
            aclose = getattr(observer, "aclose", None)
            if aclose is not None:
                await aclose()
        if self.state is not None:
            await self.state.detach()  # last: the writes of everything above are flushed

    def __repr__(self) -> str:
        return (
            f"Orchestrator(models={sorted(self.executor.deployments)}, "
            f"strategies={sorted(self.strategies)}, default={self.default_strategy!r})"
        )


async def _aclose(events: Any) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def _with_metadata(request: Request, metadata: dict[str, Any]) -> Request:
    from dataclasses import replace

    return replace(request, metadata=metadata)
