"""Spending limits and the cost ledger.

The executor *reserves* a call's worst-case cost before sending it and settles
the real cost when the reply arrives, so a hard limit holds whatever the
concurrency (checking only what was spent lets 500 concurrent calls through
before the first bill arrives). Scopes: ``total``, ``model:<alias>``,
``tag:<key>=<value>`` and ``tag:<key>`` (one budget per value); actions
``reject`` (hard, ``BudgetExceeded``) and ``downgrade`` (soft,
``BudgetDowngrade`` naming a cheaper model). Periods roll over on calendar
boundaries in the ledger's timezone; a call is charged to the period it was
admitted in. State lives behind ``tierwise.state.BudgetStore``. The whole
reasoning, and what a hard limit guarantees, is in docs/execution.md and
docs/costs.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, TypeAlias

from .._clock import SYSTEM_CLOCK, Clock
from ..errors import BudgetExceeded, ConfigError
from ..state import BudgetStore
from ..state.memory import MemoryBudgetStore

__all__ = [
    "BudgetDowngrade",
    "BudgetLedger",
    "BudgetLimit",
    "LedgerStore",
    "MemoryLedgerStore",
    "Reservation",
]

Period: TypeAlias = Literal["day", "month", "total"]
Action: TypeAlias = Literal["reject", "downgrade"]

_PERIODS: tuple[Period, ...] = ("day", "month", "total")
_ACTIONS = frozenset(("reject", "downgrade"))
_PLAN_MEMO_MAX = 4096


def _parse_scope(scope: str) -> tuple[str, str, str | None]:
    """``(kind, name, value)``: kind is total/model/tag/tag_each. Raises ``ConfigError``."""
    if scope == "total":
        return ("total", "", None)
    kind, sep, rest = scope.partition(":")
    if sep and kind == "model" and rest:
        return ("model", rest, None)
    if sep and kind == "tag" and rest:
        key, eq, value = rest.partition("=")
        if key:
            return ("tag", key, value) if eq else ("tag_each", key, None)
    raise ConfigError(
        f"invalid budget scope {scope!r}; expected 'total', 'model:<alias>', "
        "'tag:<key>=<value>' or 'tag:<key>'",
        field="scope",
    )


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """A spending cap of ``limit_usd`` per ``period`` on ``scope``.

    ``downgrade_to`` (a cheaper configured model alias) is required with
    ``action="downgrade"`` and refused otherwise, so a half-configured limit fails at
    start-up rather than silently rejecting or never downgrading. Whether the alias
    exists is checked by the config layer, which knows the catalog.
    """

    limit_usd: float
    period: Period
    scope: str = "total"
    action: Action = "reject"
    downgrade_to: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit_usd, bool) or not isinstance(self.limit_usd, int | float):
            raise ConfigError(f"must be a number, got {self.limit_usd!r}", field="limit_usd")
        if not (0.0 <= self.limit_usd < math.inf):
            raise ConfigError(f"must be a finite amount >= 0, got {self.limit_usd!r}", field="limit_usd")
        if self.period not in _PERIODS:
            raise ConfigError(f"must be one of {list(_PERIODS)}, got {self.period!r}", field="period")
        if self.action not in _ACTIONS:
            raise ConfigError(f"must be 'reject' or 'downgrade', got {self.action!r}", field="action")
        kind, name, _ = _parse_scope(self.scope)
        if self.action == "downgrade":
            if not self.downgrade_to:
                raise ConfigError(
                    "action='downgrade' needs downgrade_to: the cheaper model alias to use past the limit",
                    field="downgrade_to",
                )
            if kind == "model" and name == self.downgrade_to:
                raise ConfigError(
                    f"a limit on {self.scope!r} cannot downgrade to the same model", field="downgrade_to"
                )
        elif self.downgrade_to is not None:
            raise ConfigError(
                "downgrade_to is only used with action='downgrade' (this limit rejects)", field="downgrade_to"
            )


class BudgetDowngrade(BudgetExceeded):
    """A soft (``action="downgrade"``) limit would be crossed: use ``downgrade_to`` instead.

    A subclass of ``BudgetExceeded`` so code that does not know about downgrades
    still treats it as a refusal. The executor catches it, re-routes the call to
    ``downgrade_to`` and calls ``reserve`` again with that model (which may still
    raise a plain ``BudgetExceeded`` from a hard limit).
    """

    def __init__(
        self,
        message: str,
        *,
        downgrade_to: str,
        model: str = "",
        scope: str = "total",
        limit_usd: float | None = None,
        spent_usd: float | None = None,
        requested_usd: float | None = None,
    ) -> None:
        super().__init__(
            message, scope=scope, limit_usd=limit_usd, spent_usd=spent_usd, requested_usd=requested_usd
        )
        self.downgrade_to = downgrade_to
        self.model = model

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only fields would be lost by the default Exception pickling.
        return (_rebuild_downgrade, (str(self), self.__dict__.copy()))


def _rebuild_downgrade(message: str, state: dict[str, Any]) -> BudgetDowngrade:
    err = BudgetDowngrade.__new__(BudgetDowngrade)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


#: The names this module had before the stores moved to ``tierwise.state``.
LedgerStore = BudgetStore
MemoryLedgerStore = MemoryBudgetStore


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one (model, relevant tags) pair touches in one period generation.

    checks: every limit that applies, with its bucket key;
    reserve_keys: the distinct bucket keys holding a limit (reservations go there);
    record_keys: every bucket the cost is added to (limit buckets in all three
    periods, plus ``total`` and ``model:<m>`` for reporting).
    """

    checks: tuple[tuple[BudgetLimit, str, str], ...]  # (limit, bucket key, concrete scope)
    reserve_keys: tuple[str, ...]
    record_keys: tuple[str, ...]
    limit_checks: tuple[tuple[str, float], ...]  # what the store checks: (bucket key, limit)
    check_index: tuple[int, ...]  # limit_checks[i] is checks[check_index[i]]


class PendingReservation:
    """A reservation sent to a shared store whose reply is still to come
    (``BudgetLedger.begin_reserve``)."""

    __slots__ = ("amount", "handle", "model", "plan")

    def __init__(self, model: str, plan: _Plan, amount: float, handle: Any) -> None:
        self.model = model
        self.plan = plan
        self.amount = amount
        self.handle = handle


class Reservation:
    """A booked worst-case cost. Exactly one of ``settle`` or ``release`` takes
    effect; later calls of either are no-ops, so both are safe in ``finally`` and
    ``except`` blocks and on retry paths. As a context manager it releases on exit
    unless settled, which covers cancellation.
    """

    __slots__ = ("_ledger", "_plan", "_state", "amount_usd", "model")

    def __init__(self, ledger: BudgetLedger, model: str, plan: _Plan, amount_usd: float) -> None:
        self._ledger = ledger
        self._plan = plan
        self._state: Literal["open", "settled", "released"] = "open"
        self.model = model
        self.amount_usd = amount_usd

    @property
    def state(self) -> Literal["open", "settled", "released"]:
        return self._state

    def settle(self, actual_usd: float | None) -> None:
        """Replace the reservation by the real cost.

        ``None`` (the price is unknown) books the *reserved* amount as spent: an
        unknown cost must not be treated as free, or a model missing from the price
        table could spend without limit. A cost above the reserved amount is booked
        in full (the money is gone), which is why the executor reserves the
        worst case (``max_tokens`` of output).
        """
        cost = self._cost(actual_usd)
        if cost is None:
            return
        plan = self._plan
        # Charged to the period the call was admitted in (the plan's keys).
        self._ledger._sync_store().settle_now(plan.reserve_keys, self.amount_usd, plan.record_keys, cost)

    async def asettle(self, actual_usd: float | None) -> None:
        """``settle`` through any store (a shared one writes through)."""
        cost = self._cost(actual_usd)
        if cost is None:
            return
        plan = self._plan
        await self._ledger._store.settle(plan.reserve_keys, self.amount_usd, plan.record_keys, cost)

    def _cost(self, actual_usd: float | None) -> float | None:
        """What settling books (``None``: already settled or released)."""
        if self._state != "open":
            return None
        self._state = "settled"
        # Never raise: a settlement that fails leaves the money reserved forever.
        # A cost that is not a finite amount >= 0 is as unknown as None.
        return self.amount_usd if actual_usd is None or not _valid_amount(actual_usd) else float(actual_usd)

    def release(self) -> None:
        """Free the reservation: the call was cancelled or failed before spending.

        A failed attempt that did consume tokens should ``settle`` with their cost
        instead (or ``release`` and ``BudgetLedger.record`` them).
        """
        if self._state != "open":
            return
        self._state = "released"
        self._ledger._sync_store().release_now(self._plan.reserve_keys, self.amount_usd)

    async def arelease(self) -> None:
        """``release`` through any store."""
        if self._state != "open":
            return
        self._state = "released"
        await self._ledger._store.release(self._plan.reserve_keys, self.amount_usd)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Reservation(model={self.model!r}, amount_usd={self.amount_usd!r}, state={self._state!r})"


def _valid_amount(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value < math.inf


def _check_amount(value: float, name: str) -> float:
    if not (0.0 <= value < math.inf):  # also rejects NaN
        raise ValueError(f"{name} must be a finite amount >= 0, got {value!r}")
    return float(value)


class BudgetLedger:
    """Tracks spend per scope and period and enforces ``limits`` with reservations.

    Hot path: ``reserve``/``settle`` are a clock read, one memoized plan lookup and
    a few dict operations per applicable limit. Plans (which limits apply to a
    model and tag values, and their bucket keys) are memoized until the next period
    rollover.

    Spend of ``total`` and of every ``model:<m>`` is tracked even without a limit,
    so ``spent()`` answers for them; tag scopes are tracked only when some limit
    uses that tag key (metadata can hold unbounded values).
    """

    def __init__(
        self,
        limits: Sequence[BudgetLimit] = (),
        *,
        clock: Clock = SYSTEM_CLOCK,
        timezone: tzinfo = UTC,
        store: BudgetStore | None = None,
    ) -> None:
        self._limits = tuple(limits)
        for lim in self._limits:
            if not isinstance(lim, BudgetLimit):
                raise TypeError(f"limits must be BudgetLimit objects, got {type(lim).__name__}")
        self._clock = clock
        self._tz = timezone
        self._store: BudgetStore = MemoryBudgetStore() if store is None else store

        # Index: which limits apply, by scope kind.
        self._total_limits: list[BudgetLimit] = []
        self._model_limits: dict[str, list[BudgetLimit]] = {}
        self._tag_limits: dict[tuple[str, str], list[BudgetLimit]] = {}
        self._tag_each_limits: dict[str, list[BudgetLimit]] = {}
        for lim in self._limits:
            kind, name, value = _parse_scope(lim.scope)
            if kind == "total":
                self._total_limits.append(lim)
            elif kind == "model":
                self._model_limits.setdefault(name, []).append(lim)
            elif kind == "tag":
                assert value is not None
                self._tag_limits.setdefault((name, value), []).append(lim)
            else:
                self._tag_each_limits.setdefault(name, []).append(lim)
        self._tag_keys: tuple[str, ...] = tuple(
            dict.fromkeys([k for k, _ in self._tag_limits] + list(self._tag_each_limits))
        )

        # Concrete scopes seen, with the limits that apply to each (for snapshot/pruning).
        self._scopes: dict[str, tuple[BudgetLimit, ...]] = {"total": tuple(self._total_limits)}
        self._plans: dict[tuple[str, tuple[str | None, ...]], _Plan] = {}

        # Current period window; recomputed only when wall time leaves it.
        self._win_start = math.inf
        self._win_end = -math.inf
        self._day_id = ""
        self._month_id = ""
        self._day_start: datetime | None = None
        self._month_start: datetime | None = None
        self._prev_day_id: str | None = None
        self._prev_month_id: str | None = None

    # -- periods -----------------------------------------------------------------

    def _refresh(self) -> None:
        w = self._clock.wall()
        if self._win_start <= w < self._win_end:
            return
        tz = self._tz
        day = datetime.fromtimestamp(w, tz).date()
        day_start = datetime(day.year, day.month, day.day, tzinfo=tz)
        nxt = day + timedelta(days=1)
        day_end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
        day_id = f"day:{day.isoformat()}"
        month_id = f"month:{day.year:04d}-{day.month:02d}"
        self._win_start = day_start.timestamp()
        self._win_end = day_end.timestamp()
        if day_id == self._day_id:
            return  # clock jitter around a boundary; nothing changed
        old_day, old_month = self._day_id, self._month_id
        self._day_id, self._month_id = day_id, month_id
        self._day_start = day_start
        self._month_start = datetime(day.year, day.month, 1, tzinfo=tz)
        self._plans.clear()
        # Keep the period just ended (calls admitted in it may still settle there);
        # drop the one before it.
        stale: list[str] = []
        if old_day:
            if self._prev_day_id and self._prev_day_id != day_id:
                stale.append(self._prev_day_id)
            self._prev_day_id = old_day
        if old_month and old_month != month_id:
            if self._prev_month_id and self._prev_month_id != month_id:
                stale.append(self._prev_month_id)
            self._prev_month_id = old_month
        if stale:
            self._store.discard(f"{pid}|{scope}" for pid in stale for scope in self._scopes)
            self._prune_scopes()

    def _prune_scopes(self) -> None:
        """Forget per-value tag scopes with no spend left in any live period, so a
        ``tag:user`` limit does not keep every user ever seen."""
        live = [p for p in (self._day_id, self._month_id, self._prev_day_id, self._prev_month_id) if p]
        get = self._store.get
        for scope in [s for s in self._scopes if s.startswith("tag:")]:
            idle = get(f"total|{scope}") == 0.0 and all(get(f"{p}|{scope}") == 0.0 for p in live)
            held = self._store.reserved
            if idle and all(held(f"{p}|{scope}") == 0.0 for p in (*live, "total")):
                del self._scopes[scope]

    def _period_id(self, period: Period) -> str:
        if period == "day":
            return self._day_id
        if period == "month":
            return self._month_id
        return "total"

    # -- plans -------------------------------------------------------------------

    def _tag_values(self, tags: Mapping[str, Any]) -> tuple[str | None, ...]:
        if not self._tag_keys:
            return ()
        out: list[str | None] = []
        for key in self._tag_keys:
            v = tags.get(key)
            out.append(None if v is None else str(v))
        return tuple(out)

    def _plan(self, model: str, values: tuple[str | None, ...]) -> _Plan:
        memo_key = (model, values)
        plan = self._plans.get(memo_key)
        if plan is not None:
            return plan
        scoped: list[tuple[str, list[BudgetLimit]]] = [
            ("total", self._total_limits),
            (f"model:{model}", self._model_limits.get(model, [])),
        ]
        for key, value in zip(self._tag_keys, values, strict=True):
            if value is None:
                continue  # requests without the tag are not subject to its limits
            lims = self._tag_limits.get((key, value), []) + self._tag_each_limits.get(key, [])
            if lims:
                scoped.append((f"tag:{key}={value}", lims))
        checks: list[tuple[BudgetLimit, str, str]] = []
        record: dict[str, None] = {}
        for scope, lims in scoped:
            self._scopes.setdefault(scope, tuple(lims))
            for period in _PERIODS:
                record[f"{self._period_id(period)}|{scope}"] = None
            for lim in lims:
                checks.append((lim, f"{self._period_id(lim.period)}|{scope}", scope))
        # A downgrade limit never blocks the model it downgrades to (no loop), but
        # that model's reservations still count in the limit's bucket.
        index = tuple(i for i, (lim, _, _) in enumerate(checks) if lim.downgrade_to != model)
        plan = _Plan(
            checks=tuple(checks),
            reserve_keys=tuple(dict.fromkeys(key for _, key, _ in checks)),
            record_keys=tuple(record),
            limit_checks=tuple((checks[i][1], checks[i][0].limit_usd) for i in index),
            check_index=index,
        )
        if len(self._plans) >= _PLAN_MEMO_MAX:
            self._plans.clear()
        self._plans[memo_key] = plan
        return plan

    # -- public API --------------------------------------------------------------

    def with_store(self, store: BudgetStore) -> BudgetLedger:
        """The same limits, clock and timezone on another store (a shared backend
        taking over an orchestrator's ledger before its first request)."""
        return BudgetLedger(self._limits, clock=self._clock, timezone=self._tz, store=store)

    @property
    def limits(self) -> tuple[BudgetLimit, ...]:
        return self._limits

    @property
    def store(self) -> BudgetStore:
        """Where the figures live (a shared store answers ``spent``/``reserved`` from
        its local view; ``tierwise status`` refreshes it first)."""
        return self._store

    def bucket(self, scope: str, period: Period = "day") -> str:
        """The store key of ``scope``'s current ``period`` bucket (``"day:2026-12-06|total"``)."""
        if period not in _PERIODS:
            raise ValueError(f"period must be one of {list(_PERIODS)}, got {period!r}")
        self._refresh()
        return f"{self._period_id(period)}|{scope}"

    def reserve(self, *, model: str, tags: Mapping[str, Any], amount_usd: float) -> Reservation:
        """Book ``amount_usd`` (the call's worst-case cost) against every applicable limit.

        Raises ``BudgetDowngrade`` if a soft limit would be crossed (checked first:
        the cheaper model may still fit under the hard limits), else
        ``BudgetExceeded`` if a hard limit would be crossed. Nothing is booked when
        it raises. Synchronous, hence atomic with respect to other tasks.
        """
        amount, plan = self._prepare(model, tags, amount_usd)
        failed = self._sync_store().reserve_now(plan.limit_checks, plan.reserve_keys, amount)
        if failed:
            self._refuse(plan, model, amount, failed)
        return Reservation(self, model, plan, amount)

    async def areserve(self, *, model: str, tags: Mapping[str, Any], amount_usd: float) -> Reservation:
        """``reserve`` through any store: one atomic step in a shared backend."""
        amount, plan = self._prepare(model, tags, amount_usd)
        failed = await self._store.reserve(plan.limit_checks, plan.reserve_keys, amount)
        if failed:
            self._refuse(plan, model, amount, failed)
        return Reservation(self, model, plan, amount)

    def begin_reserve(
        self, *, model: str, tags: Mapping[str, Any], amount_usd: float
    ) -> PendingReservation | None:
        """Send a reservation to a shared store without waiting for its reply, so
        it shares a round trip with the rate limiter's first attempt (``None``:
        this store books in place; use ``areserve``). ``finish_reserve`` takes
        the reply, ``abandon_reserve`` gives a reservation nobody will use back."""
        submit = getattr(self._store, "submit_reserve", None)
        if submit is None:
            return None
        amount, plan = self._prepare(model, tags, amount_usd)
        return PendingReservation(model, plan, amount, submit(plan.limit_checks, plan.reserve_keys, amount))

    async def finish_reserve(self, pending: PendingReservation) -> Reservation:
        """The reservation ``begin_reserve`` sent: booked, or refused as ``areserve`` would."""
        failed = await self._store.finish_reserve(pending.handle)  # type: ignore[attr-defined]
        if failed:
            self._refuse(pending.plan, pending.model, pending.amount, failed)
        return Reservation(self, pending.model, pending.plan, pending.amount)

    async def abandon_reserve(self, pending: PendingReservation) -> None:
        """Give back what a sent reservation booked (the request will not use it)."""
        await self._store.abandon_reserve(pending.handle)  # type: ignore[attr-defined]

    def _prepare(self, model: str, tags: Mapping[str, Any], amount_usd: float) -> tuple[float, _Plan]:
        amount = _check_amount(amount_usd, "amount_usd")
        self._refresh()
        return amount, self._plan(model, self._tag_values(tags))

    def _refuse(self, plan: _Plan, model: str, amount: float, failed: list[tuple[int, float]]) -> None:
        """Raise for the limits a reservation would cross: a soft one first (the
        cheaper model may still fit under the hard ones), else the first hard one."""
        hard: tuple[BudgetLimit, str, float] | None = None
        soft: tuple[BudgetLimit, str, float] | None = None
        for i, used in failed:
            lim, _, scope = plan.checks[plan.check_index[i]]
            if lim.action == "downgrade":
                if lim.downgrade_to != model and soft is None:
                    soft = (lim, scope, used)
            elif hard is None:
                hard = (lim, scope, used)
        if soft is not None:
            lim, scope, used = soft
            assert lim.downgrade_to is not None
            raise BudgetDowngrade(
                f"budget {scope} ({lim.period}) would exceed ${lim.limit_usd:.4f} "
                f"(used ${used:.4f} + ${amount:.4f}); downgrade {model} -> {lim.downgrade_to}",
                downgrade_to=lim.downgrade_to,
                model=model,
                scope=scope,
                limit_usd=lim.limit_usd,
                spent_usd=used,
                requested_usd=amount,
            )
        if hard is not None:
            lim, scope, used = hard
            raise BudgetExceeded(
                f"budget {scope} ({lim.period}) would exceed ${lim.limit_usd:.4f} "
                f"(used ${used:.4f} + ${amount:.4f} for {model})",
                scope=scope,
                limit_usd=lim.limit_usd,
                spent_usd=used,
                requested_usd=amount,
            )
        raise AssertionError("a failed budget check with no limit to report")  # pragma: no cover

    def _sync_store(self) -> MemoryBudgetStore:
        store = self._store
        if not isinstance(store, MemoryBudgetStore):
            raise TypeError(
                f"{type(store).__name__} is a shared budget store: use the async API "
                "(await ledger.areserve(...), reservation.asettle(...) / arelease())"
            )
        return store

    def record(self, *, model: str, tags: Mapping[str, Any], cost_usd: float | None) -> None:
        """Book a cost that was not reserved (a failed attempt that consumed tokens,
        a verifier or judge call). ``None`` (unknown price) books nothing: there is
        no amount to book, and the executor reports the unknown cost instead."""
        if cost_usd is None or not _valid_amount(cost_usd):
            return  # nothing sane to book (a None or a nonsense figure); never corrupt the ledger
        cost = float(cost_usd)
        self._refresh()
        self._sync_store().add_now(self._plan(model, self._tag_values(tags)).record_keys, cost)

    def spent(self, scope: str = "total", period: Period = "day") -> float:
        """Spent in the current ``period`` on a concrete ``scope`` (``"tag:user=alice"``)."""
        if period not in _PERIODS:
            raise ValueError(f"period must be one of {list(_PERIODS)}, got {period!r}")
        self._refresh()
        return self._store.get(f"{self._period_id(period)}|{scope}")

    def reserved(self, scope: str = "total", period: Period = "day") -> float:
        """Outstanding reservations on a scope with a limit in ``period`` (0.0 otherwise)."""
        if period not in _PERIODS:
            raise ValueError(f"period must be one of {list(_PERIODS)}, got {period!r}")
        self._refresh()
        return self._store.reserved(f"{self._period_id(period)}|{scope}")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Current state per ``"<scope>@<period>"``, for dashboards and ``/budget`` endpoints.

        Each entry: ``scope``, ``period``, ``period_start`` (ISO, ``None`` for total),
        ``spent_usd``, ``reserved_usd``, and for limited buckets ``limit_usd`` /
        ``remaining_usd`` / ``action`` of the tightest limit plus all ``limits``.
        """
        self._refresh()
        out: dict[str, dict[str, Any]] = {}
        starts = {
            "day": self._day_start.isoformat() if self._day_start else None,
            "month": self._month_start.isoformat() if self._month_start else None,
            "total": None,
        }
        for scope, lims in self._scopes.items():
            for period in _PERIODS:
                key = f"{self._period_id(period)}|{scope}"
                spent = self._store.get(key)
                reserved = self._store.reserved(key)
                mine = sorted((lim for lim in lims if lim.period == period), key=lambda x: x.limit_usd)
                entry: dict[str, Any] = {
                    "scope": scope,
                    "period": period,
                    "period_start": starts[period],
                    "spent_usd": spent,
                    "reserved_usd": reserved,
                    "limit_usd": None,
                    "remaining_usd": None,
                    "action": None,
                    "limits": [
                        {"limit_usd": lim.limit_usd, "action": lim.action, "downgrade_to": lim.downgrade_to}
                        for lim in mine
                    ],
                }
                if mine:
                    entry["limit_usd"] = mine[0].limit_usd
                    entry["remaining_usd"] = max(0.0, mine[0].limit_usd - spent - reserved)
                    entry["action"] = mine[0].action
                out[f"{scope}@{period}"] = entry
        return out

    def __repr__(self) -> str:
        return f"BudgetLedger(limits={len(self._limits)}, timezone={self._tz!r})"
