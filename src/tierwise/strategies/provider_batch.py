"""Provider batch mode: each item routed to its tier, then sent through the provider's
half-price batch API, resumable after a crash without paying twice.

``orch.batch(items, output=..., mode="provider")`` (``tierwise batch FILE
--provider-batch``):

1. **Route.** The strategy decides each item's deployment offline: a ``Single``'s
   target, or the route a ``Router``'s classifier picks. Strategies that need several
   calls per item (cascades, ensembles, pipelines) cannot be batched this way and
   are refused with a clear error; run them in real-time mode.
2. **Group and submit.** Items are grouped per deployment into provider batches
   within the provider's documented limits (``BatchWire.max_items``/``max_bytes``),
   each item's worst case is reserved on the budget at batch price, and the batch is
   submitted.
3. **Persist.** The job (groups, their items and ``custom_id`` s, batch ids, what is
   collected) lives in ``<output>.job.json``, written atomically before and after
   every submission and after every collection. Results go to ``output`` exactly
   as in real-time mode. Rerunning the same command resumes: collected items are
   loaded back, submitted batches are polled again, nothing submitted is submitted
   again. A crash *inside* the submit call (the provider accepted the batch, its id
   never reached the job) is recovered by the group's label where the provider lists
   batches by one (OpenAI ``metadata``, Gemini ``displayName``); on Anthropic, whose
   batches carry no label, that group is submitted again (one HTTP round trip wide).
4. **Collect.** Batches are polled with backoff (a 5xx while polling is retried);
   each item's ``Response`` is parsed by the adapter's real-time parser, priced at
   the catalog's batch discount (``tierwise.catalog.batch_discount``) and settled on
   the budget. Errored, expired and canceled items are resubmitted in a new round
   (``retry_failed="resubmit"``, at most ``max_rounds``), sent through the normal
   real-time path with its fallbacks (``"realtime"``), or reported (``"none"``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._clock import Clock
from .._serde import response_to_dict
from ..catalog import batch_cost, batch_discount
from ..errors import ConfigError, ProviderError, TierwiseError, redact
from ..execution._attempt import worst_request_cost
from ..providers._batch import BatchItemResult
from ..types import Attempt, Request, Response, RouteInfo
from ._batch_job import _Group, _Job, job_path, job_status
from .batch import (
    BatchProgress,
    BatchResult,
    InvalidItem,
    _fingerprint,
    _in_input_order,
    _load_done,
    render_items,
)

if TYPE_CHECKING:
    from ..execution.budget import Reservation
    from ..execution.deployment import Deployment
    from ..orchestrator import Orchestrator
    from ..providers._batch import BatchWire

__all__ = ["RetryFailed", "cancel_job", "job_path", "job_status", "run_provider_batch"]

_log = logging.getLogger("tierwise.batch")

RetryFailed = Literal["resubmit", "realtime", "none"]


def _plan_route(orch: Orchestrator, strategy: str | None, request: Request) -> tuple[str, RouteInfo]:
    """The deployment alias ``strategy`` sends ``request`` to, decided without a call."""
    from .router import Router
    from .single import Single

    strat = orch._strategy(strategy)
    target: Any = strat
    label: str | None = None
    path, reason, score = strat.name, "single", None
    if isinstance(strat, Router):
        label, target, c = strat.select(request, orch._context(strat, request))
        path, reason, score = f"{strat.name}.routes[{label}]", c.reason, c.score
    while isinstance(target, Single):
        target = target.target
    if isinstance(target, str):
        return target, RouteInfo(path, label, f"{reason} → {target}", score)
    where = f"route {label!r} of strategy {strat.name!r}" if label is not None else f"strategy {strat.name!r}"
    raise ConfigError(
        f"{where} runs {type(target).__name__}, which needs several calls per item; provider batch "
        "mode sends one call per item (single or router routes) — run it in real-time mode"
    )


class _Runner:
    def __init__(
        self,
        orch: Orchestrator,
        requests: list[Request | InvalidItem],
        out_path: Path,
        *,
        strategy: str | None,
        metadata: Mapping[str, Any] | None,
        progress: Callable[[BatchProgress], None] | None,
        poll_interval_s: float,
        max_poll_interval_s: float,
        retry_failed: RetryFailed,
        max_rounds: int,
        clock: Clock,
    ) -> None:
        self.orch, self.requests, self.out_path = orch, requests, out_path
        self.strategy, self.metadata, self.progress = strategy, metadata, progress
        self.poll_interval_s, self.max_poll_interval_s = poll_interval_s, max_poll_interval_s
        self.retry_failed, self.max_rounds, self.clock = retry_failed, max_rounds, clock
        self.path = job_path(out_path)
        self.results: dict[int, BatchResult] = {}
        self.reservations: dict[int, Reservation] = {}
        self.secrets = [getattr(p, "_api_key", None) for p in orch.providers]
        self.start = clock.now()
        self.job: _Job

    # -- plumbing ------------------------------------------------------------------

    def deployment(self, alias: str) -> Deployment:
        dep = self.orch.executor.deployments.get(alias)
        if dep is None:
            raise ConfigError(
                f"unknown model {alias!r} in batch job; configured: {sorted(self.orch.executor.deployments)}"
            )
        return dep

    def wire(self, dep: Deployment) -> BatchWire:
        wire = dep.provider.batch_api()
        if wire is None:
            raise ConfigError(
                f"model {dep.alias!r} is served by {dep.provider.name!r}, which has no batch API; "
                "route it elsewhere or run in real-time mode"
            )
        return wire

    def record(self, result: BatchResult) -> None:
        self.results[result.index] = result
        request = self.requests[result.index]
        rec: dict[str, Any] = {
            "index": result.index,
            "prompt_sha": None if isinstance(request, InvalidItem) else _fingerprint(request),
            "ok": result.ok,
            "mode": "provider",
        }
        if result.response is not None:
            rec["response"] = response_to_dict(result.response)
        else:
            rec["error"], rec["error_type"] = result.error, result.error_type
        with self.out_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def report(self) -> None:
        if self.progress is None:
            return
        done = len(self.results)
        failed = sum(1 for r in self.results.values() if not r.ok)
        submitted = sum(len(g.items) for g in self.job.groups if g.status == "submitted")
        self.progress(
            BatchProgress(
                done,
                len(self.requests),
                failed,
                sum(1 for r in self.results.values() if r.resumed),
                self.job.batch_cost_usd,
                0,
                self.clock.now() - self.start,
                submitted=submitted,
                realtime_cost_usd=self.job.realtime_cost_usd,
            )
        )

    # -- the job -------------------------------------------------------------------

    def open(self) -> None:
        for index, result in _load_done(self.out_path, self.requests).items():
            self.results[index] = result
        fingerprints = [None if isinstance(r, InvalidItem) else _fingerprint(r) for r in self.requests]
        if self.path.exists():
            self.job = _Job.load(self.path)
            if self.job.fingerprints != fingerprints:
                raise ValueError(
                    f"{self.path}: the job was started for different items; "
                    "use a new output file for a changed input"
                )
        else:
            self.job = _Job(secrets.token_hex(6), fingerprints)
        for index, request in enumerate(self.requests):
            if isinstance(request, InvalidItem) and index not in self.results:
                self.record(BatchResult(index, "", error=request.message, error_type="InvalidItem"))
        open_items = {
            i for g in self.job.groups if g.status in ("planned", "submitting", "submitted") for i in g.items
        }
        todo = [i for i in range(len(self.requests)) if i not in self.results and i not in open_items]
        self.plan(todo, 0)
        self.job.save(self.path)

    def plan(self, indexes: Sequence[int], round_: int) -> None:
        """Route ``indexes`` and add their groups, split within each provider's limits."""
        by_alias: dict[str, list[tuple[int, RouteInfo]]] = {}
        for index in indexes:
            request = self.requests[index]
            assert isinstance(request, Request)
            alias, route = _plan_route(self.orch, self.strategy, request)
            by_alias.setdefault(alias, []).append((index, route))
        for alias, members in by_alias.items():
            dep = self.deployment(alias)
            wire = self.wire(dep)
            chunk: list[tuple[int, RouteInfo]] = []
            size = 0
            for index, route in members:
                request = self.requests[index]
                assert isinstance(request, Request)
                item_bytes = len(json.dumps(wire.body(dep.model, request))) + 100
                if chunk and (len(chunk) >= wire.max_items or size + item_bytes > wire.max_bytes):
                    self.add_group(alias, chunk, round_)
                    chunk, size = [], 0
                chunk.append((index, route))
                size += item_bytes
            if chunk:
                self.add_group(alias, chunk, round_)

    def add_group(self, alias: str, members: list[tuple[int, RouteInfo]], round_: int) -> None:
        key = f"g{len(self.job.groups)}"
        group = _Group(
            key,
            alias,
            [i for i, _ in members],
            [f"i{i}-r{round_}" for i, _ in members],
            f"tierwise-{self.job.id}-{key}",
            round_,
            route={i: [r.strategy_path, r.label, r.reason, r.score] for i, r in members},
        )
        self.job.groups.append(group)

    def tags(self, request: Request) -> dict[str, str]:
        """Budget tags as a real-time call books them: the string metadata values."""
        metadata = {**request.metadata, **(self.metadata or {})}
        return {k: v for k, v in metadata.items() if isinstance(v, str)}

    async def reserve(self, group: _Group, dep: Deployment, discount: float) -> None:
        budget = self.orch.executor.budget
        if budget is None:
            return
        for index in group.items:
            request = self.requests[index]
            assert isinstance(request, Request)
            worst = worst_request_cost(dep, request) * (1.0 - discount)
            self.reservations[index] = await budget.areserve(
                model=dep.alias, tags=self.tags(request), amount_usd=worst
            )

    async def submit(self, group: _Group) -> None:
        dep = self.deployment(group.alias)
        wire = self.wire(dep)
        if group.status == "submitting":
            # A run died inside the submit call: the provider may hold the batch.
            found = await wire.find(group.label)
            if found is not None:
                group.batch_id, group.status = found.id, "submitted"
                self.job.save(self.path)
                return
        discount = batch_discount(dep.provider.name) or 0.0
        await self.reserve(group, dep, discount)
        group.status = "submitting"
        self.job.save(self.path)
        items = []
        for index, cid in zip(group.items, group.custom_ids, strict=True):
            request = self.requests[index]
            assert isinstance(request, Request)
            items.append((cid, request))
        info = await wire.submit(dep.model, items, label=group.label)
        group.batch_id, group.status = info.id, "submitted"
        self.job.save(self.path)
        self.report()

    async def wait(self, group: _Group) -> str:
        """Poll ``group``'s batch until it ends; its final state."""
        dep = self.deployment(group.alias)
        wire = self.wire(dep)
        assert group.batch_id is not None
        delay = self.poll_interval_s
        errors = 0
        while True:
            try:
                info = await wire.status(group.batch_id)
            except ProviderError as exc:
                errors += 1
                if not exc.retryable or errors > 8:
                    raise
                await self.clock.sleep(delay)
                delay = min(delay * 2, self.max_poll_interval_s)
                continue
            errors = 0
            self.report()
            if info.state != "in_progress":
                if info.state == "failed":
                    _log.warning("batch %s failed: %s", group.batch_id, info.message or info.status)
                return info.state
            await self.clock.sleep(delay)
            delay = min(delay * 1.5, self.max_poll_interval_s)

    async def collect(self, group: _Group, state: str) -> list[int]:
        """Record ``group``'s results; the indexes that failed and may be retried."""
        dep = self.deployment(group.alias)
        wire = self.wire(dep)
        assert group.batch_id is not None
        results: list[BatchItemResult] = []
        if state == "ended":
            results = await wire.results(group.batch_id, dep.model, group.custom_ids)
        by_id = {r.custom_id: r for r in results}
        discount = batch_discount(dep.provider.name) or 0.0
        retry: list[int] = []
        for index, cid in zip(group.items, group.custom_ids, strict=True):
            item = by_id.get(cid)
            reservation = self.reservations.pop(index, None)
            if index in self.results:  # recorded before a crash cut this collection short
                if reservation is not None:
                    await reservation.arelease()
                continue
            if item is not None and item.response is not None:
                response = self.priced(item.response, dep, discount, group.route.get(index))
                if reservation is not None:
                    await reservation.asettle(response.cost_usd)
                elif self.orch.executor.budget is not None:
                    # Submitted by an earlier run of this job: its reservation died with
                    # that process, the spend is booked now.
                    request = self.requests[index]
                    assert isinstance(request, Request)
                    budget = self.orch.executor.budget
                    budget.record(model=dep.alias, tags=self.tags(request), cost_usd=response.cost_usd)
                self.record(BatchResult(index, self.prompt(index), response))
                continue
            if reservation is not None:
                await reservation.arelease()
            error: TierwiseError = (
                item.error
                if item is not None and item.error is not None
                else ProviderError(
                    "the provider returned no readable result for this item"
                    if state == "ended"
                    else f"the batch {state} before answering",
                    provider=dep.provider.name,
                    model=dep.model,
                    retryable=True,
                )
            )
            retryable = getattr(error, "retryable", False) and group.round + 1 < self.max_rounds
            if self.retry_failed == "realtime" or (self.retry_failed == "resubmit" and retryable):
                retry.append(index)
            else:
                self.record(self.failure(index, error))
        group.status = "collected"
        self.job.save(self.path)
        self.report()
        return retry

    def priced(
        self, response: Response, dep: Deployment, discount: float, route: list[Any] | None
    ) -> Response:
        response.provider = dep.provider.name
        response.deployment = dep.alias
        if dep.spec is not None:
            cost = batch_cost(dep.spec, response.usage, discount)
            realtime = dep.cost(response.usage)
        else:
            cost = realtime = dep.cost(response.usage)  # unknown price: None, warned once
        response.cost_usd = cost
        if cost is not None:
            self.job.batch_cost_usd += cost
        if realtime is not None:
            self.job.realtime_cost_usd += realtime
        if route is not None:
            response.route = RouteInfo(str(route[0]), route[1], f"{route[2]} (provider batch)", route[3])
        response.attempts = [
            Attempt(
                dep.model,
                dep.provider.name,
                "ok",
                0.0,
                cost,
                usage=response.usage,
                path=response.route.strategy_path,
            )
        ]
        return response

    def prompt(self, index: int) -> str:
        request = self.requests[index]
        return "" if isinstance(request, InvalidItem) else request.prompt_text

    def failure(self, index: int, error: BaseException) -> BatchResult:
        return BatchResult(
            index, self.prompt(index), error=redact(str(error), self.secrets), error_type=type(error).__name__
        )

    async def realtime(self, indexes: Sequence[int]) -> None:
        for index in indexes:
            request = self.requests[index]
            assert isinstance(request, Request)
            try:
                response = await self.orch.run(request, strategy=self.strategy, metadata=self.metadata)
            except TierwiseError as exc:
                self.record(self.failure(index, exc))
            else:
                if response.cost_usd is not None:
                    self.job.realtime_cost_usd += response.cost_usd
                    self.job.batch_cost_usd += response.cost_usd
                self.record(BatchResult(index, request.prompt_text, response))
        self.job.save(self.path)

    async def run(self) -> list[BatchResult]:
        self.open()
        self.report()
        while True:
            live = [g for g in self.job.groups if g.status in ("planned", "submitting", "submitted")]
            if not live:
                break
            for group in live:
                if group.status in ("planned", "submitting"):
                    await self.submit(group)
            for group in live:
                state = await self.wait(group)
                retry = await self.collect(group, state)
                if not retry:
                    continue
                if self.retry_failed == "realtime":
                    await self.realtime(retry)
                else:
                    self.plan(retry, group.round + 1)
                    self.job.save(self.path)
        _in_input_order(self.out_path)
        self.report()
        return [self.results[i] for i in sorted(self.results)]


async def run_provider_batch(
    orch: Orchestrator,
    items: Sequence[Any],
    template: str | None = None,
    *,
    output: str | os.PathLike[str],
    strategy: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    poll_interval_s: float = 2.0,
    max_poll_interval_s: float = 60.0,
    retry_failed: RetryFailed = "resubmit",
    max_rounds: int = 3,
    clock: Clock | None = None,
) -> list[BatchResult]:
    """Run every item through the providers' batch APIs (see the module docstring)."""
    if retry_failed not in ("resubmit", "realtime", "none"):
        raise ValueError(f"retry_failed must be 'resubmit', 'realtime' or 'none', got {retry_failed!r}")
    if max_rounds < 1:
        raise ValueError("max_rounds must be at least 1")
    if poll_interval_s <= 0 or max_poll_interval_s < poll_interval_s:
        raise ValueError("poll intervals must be positive, max_poll_interval_s >= poll_interval_s")
    runner = _Runner(
        orch,
        render_items(items, template),
        Path(output),
        strategy=strategy,
        metadata=metadata,
        progress=progress,
        poll_interval_s=poll_interval_s,
        max_poll_interval_s=max_poll_interval_s,
        retry_failed=retry_failed,
        max_rounds=max_rounds,
        clock=clock if clock is not None else orch.clock,
    )
    return await runner.run()


async def cancel_job(orch: Orchestrator, output: str | os.PathLike[str]) -> list[str]:
    """Cancel every submitted, uncollected batch of the job writing ``output``; the
    batch ids canceled. Rerunning the job afterwards collects what had finished."""
    path = job_path(output)
    job = _Job.load(path)
    canceled: list[str] = []
    for group in job.groups:
        if group.status == "submitted" and group.batch_id is not None:
            dep = orch.executor.deployments[group.alias]
            wire = dep.provider.batch_api()
            if wire is not None:
                await wire.cancel(group.batch_id)
                canceled.append(group.batch_id)
    return canceled
