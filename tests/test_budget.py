"""Budget limits and the cost ledger: scopes, periods, reservations under concurrency."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import anyio
import anyio.lowlevel
import pytest

from tierwise.errors import BudgetExceeded, ConfigError
from tierwise.execution.budget import (
    BudgetDowngrade,
    BudgetLedger,
    BudgetLimit,
    LedgerStore,
    MemoryLedgerStore,
)


class ManualClock:
    """Wall time set by the test; sleep is a bare checkpoint."""

    def __init__(self, wall: float) -> None:
        self._wall = wall
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._wall += seconds

    def set(self, when: datetime) -> None:
        self._wall = when.timestamp()


def at(
    tz: tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz)


def ledger_with(*limits: BudgetLimit, clock: ManualClock | None = None, tz: tzinfo = UTC) -> BudgetLedger:
    clock = clock or ManualClock(at(UTC, 2026, 1, 15, 12).timestamp())
    return BudgetLedger(limits, clock=clock, timezone=tz)


# -- BudgetLimit validation ---------------------------------------------------------


def test_downgrade_requires_target() -> None:
    with pytest.raises(ConfigError, match="downgrade_to") as info:
        BudgetLimit(5.0, "day", action="downgrade")
    assert info.value.field == "downgrade_to"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit_usd": -1.0, "period": "day"}, "limit_usd"),
        ({"limit_usd": float("nan"), "period": "day"}, "limit_usd"),
        ({"limit_usd": float("inf"), "period": "day"}, "limit_usd"),
        ({"limit_usd": 1.0, "period": "week"}, "period"),
        ({"limit_usd": 1.0, "period": "day", "action": "warn"}, "action"),
        ({"limit_usd": 1.0, "period": "day", "scope": "team:x"}, "scope"),
        ({"limit_usd": 1.0, "period": "day", "scope": "model:"}, "scope"),
        ({"limit_usd": 1.0, "period": "day", "scope": "tag:"}, "scope"),
        ({"limit_usd": 1.0, "period": "day", "scope": "tag:=x"}, "scope"),
        ({"limit_usd": 1.0, "period": "day", "downgrade_to": "cheap"}, "downgrade_to"),
        (
            {
                "limit_usd": 1.0,
                "period": "day",
                "scope": "model:a",
                "action": "downgrade",
                "downgrade_to": "a",
            },
            "downgrade_to",
        ),
    ],
)
def test_invalid_limits(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        BudgetLimit(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_valid_scopes_accepted() -> None:
    for scope in ("total", "model:opus", "tag:team=search", "tag:user", "tag:k=a=b", "tag:k="):
        BudgetLimit(1.0, "month", scope)
    BudgetLimit(1.0, "total", "total", "downgrade", "haiku")


# -- scopes -------------------------------------------------------------------------


def test_total_scope_reserve_settle() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day"))
    r1 = ledger.reserve(model="a", tags={}, amount_usd=0.5)
    ledger.reserve(model="b", tags={}, amount_usd=0.25)
    assert ledger.reserved() == 0.75
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(model="c", tags={}, amount_usd=0.5)
    err = info.value
    assert not isinstance(err, BudgetDowngrade)
    assert (err.scope, err.limit_usd, err.spent_usd, err.requested_usd) == ("total", 1.0, 0.75, 0.5)
    r1.settle(0.125)
    assert ledger.spent() == 0.125
    assert ledger.reserved() == 0.25
    # Exactly filling the limit is allowed.
    ledger.reserve(model="c", tags={}, amount_usd=0.625)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="c", tags={}, amount_usd=0.001)


def test_model_scope_only_limits_that_model() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day", "model:opus"))
    ledger.reserve(model="opus", tags={}, amount_usd=1.0).settle(1.0)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(model="opus", tags={}, amount_usd=0.01)
    assert info.value.scope == "model:opus"
    ledger.reserve(model="haiku", tags={}, amount_usd=50.0).settle(50.0)
    assert ledger.spent("model:opus") == 1.0
    assert ledger.spent("model:haiku") == 50.0
    assert ledger.spent("total") == 51.0


def test_tag_value_scope() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day", "tag:team=search"))
    ledger.reserve(model="m", tags={"team": "search"}, amount_usd=1.0).settle(1.0)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(model="m", tags={"team": "search", "user": "x"}, amount_usd=0.5)
    assert info.value.scope == "tag:team=search"
    # Other teams and untagged requests are not subject to it.
    ledger.reserve(model="m", tags={"team": "ads"}, amount_usd=5.0).settle(5.0)
    ledger.reserve(model="m", tags={}, amount_usd=5.0).settle(5.0)
    assert ledger.spent("tag:team=search") == 1.0
    assert ledger.spent("total") == 11.0


def test_tag_per_value_scope_gives_each_value_its_own_limit() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day", "tag:user"))
    ledger.reserve(model="m", tags={"user": "alice"}, amount_usd=0.75).settle(0.75)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(model="m", tags={"user": "alice"}, amount_usd=0.5)
    assert info.value.scope == "tag:user=alice"
    assert info.value.spent_usd == 0.75
    # Bob has his own full budget; no user tag means no per-user limit.
    ledger.reserve(model="m", tags={"user": "bob"}, amount_usd=1.0).settle(1.0)
    ledger.reserve(model="m", tags={}, amount_usd=10.0).settle(10.0)
    assert ledger.spent("tag:user=alice") == 0.75
    assert ledger.spent("tag:user=bob") == 1.0
    # Non-string tag values are compared by their string form.
    ledger.reserve(model="m", tags={"user": 7}, amount_usd=1.0).settle(1.0)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="m", tags={"user": "7"}, amount_usd=0.5)


def test_every_applicable_limit_is_checked() -> None:
    ledger = ledger_with(
        BudgetLimit(10.0, "day"),
        BudgetLimit(2.0, "day", "model:opus"),
        BudgetLimit(1.0, "month", "tag:user"),
    )
    ledger.reserve(model="opus", tags={"user": "a"}, amount_usd=1.0).settle(1.0)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(model="opus", tags={"user": "a"}, amount_usd=0.5)
    assert info.value.scope == "tag:user=a"
    ledger.reserve(model="opus", tags={"user": "b"}, amount_usd=1.0).settle(1.0)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(model="opus", tags={"user": "c"}, amount_usd=0.5)
    assert info.value.scope == "model:opus"


# -- periods ------------------------------------------------------------------------


def test_day_rolls_over_at_local_midnight_not_utc() -> None:
    tz = ZoneInfo("America/New_York")
    clock = ManualClock(at(tz, 2026, 3, 10, 19, 30).timestamp())
    ledger = ledger_with(BudgetLimit(1.0, "day"), BudgetLimit(5.0, "month"), clock=clock, tz=tz)
    ledger.reserve(model="m", tags={}, amount_usd=1.0).settle(1.0)
    clock.set(at(tz, 2026, 3, 10, 20, 30))  # past UTC midnight, same local day
    assert ledger.spent() == 1.0
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="m", tags={}, amount_usd=0.5)
    clock.set(at(tz, 2026, 3, 10, 23, 59, 59))
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="m", tags={}, amount_usd=0.5)
    clock.set(at(tz, 2026, 3, 11, 0, 0))
    assert ledger.spent() == 0.0
    assert ledger.spent(period="month") == 1.0
    ledger.reserve(model="m", tags={}, amount_usd=1.0).settle(1.0)
    snap = ledger.snapshot()["total@day"]
    assert snap["period_start"] == "2026-03-11T00:00:00-04:00"  # DST started on 2026-03-08


def test_month_rolls_over_in_timezone() -> None:
    tz = timezone(timedelta(hours=9))
    clock = ManualClock(at(tz, 2026, 1, 31, 23, 0).timestamp())
    ledger = ledger_with(BudgetLimit(2.0, "month"), BudgetLimit(3.0, "total"), clock=clock, tz=tz)
    ledger.reserve(model="m", tags={}, amount_usd=2.0).settle(2.0)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="m", tags={}, amount_usd=0.5)
    clock.set(at(tz, 2026, 2, 1, 0, 0))
    assert ledger.spent(period="month") == 0.0
    assert ledger.spent(period="total") == 2.0
    ledger.reserve(model="m", tags={}, amount_usd=1.0).settle(1.0)
    # The "total" period never rolls over.
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(model="m", tags={}, amount_usd=0.5)
    assert info.value.limit_usd == 3.0
    clock.set(at(tz, 2026, 12, 1, 0, 0))
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="m", tags={}, amount_usd=0.5)
    # December → January crosses the year.
    ledger2 = ledger_with(BudgetLimit(1.0, "month"), clock=clock, tz=tz)
    clock.set(at(tz, 2026, 12, 31, 23, 59))
    ledger2.reserve(model="m", tags={}, amount_usd=1.0).settle(1.0)
    clock.set(at(tz, 2027, 1, 1, 0, 0))
    ledger2.reserve(model="m", tags={}, amount_usd=1.0)


def test_call_in_flight_across_midnight_is_charged_to_its_admission_day() -> None:
    clock = ManualClock(at(UTC, 2026, 5, 1, 23, 59).timestamp())
    ledger = ledger_with(BudgetLimit(1.0, "day"), clock=clock)
    r = ledger.reserve(model="m", tags={}, amount_usd=1.0)
    clock.set(at(UTC, 2026, 5, 2, 0, 1))
    # The new day's budget is untouched by yesterday's reservation...
    ledger.reserve(model="m", tags={}, amount_usd=1.0).release()
    r.settle(0.75)
    # ...and yesterday's cost does not land in today.
    assert ledger.spent() == 0.0
    assert ledger.spent(period="month") == 0.75
    assert ledger.reserved() == 0.0
    ledger.reserve(model="m", tags={}, amount_usd=1.0)


def test_old_periods_are_pruned_from_the_store() -> None:
    clock = ManualClock(at(UTC, 2026, 5, 1, 12).timestamp())
    store = MemoryLedgerStore()
    ledger = BudgetLedger([BudgetLimit(1.0, "day", "tag:user")], clock=clock, store=store)
    for i in range(50):
        ledger.record(model="m", tags={"user": f"u{i}"}, cost_usd=0.25)
    size_day1 = len(store)
    for day in (2, 3, 4, 5):
        clock.set(at(UTC, 2026, 5, day, 12))
        ledger.record(model="m", tags={"user": "only"}, cost_usd=0.25)
    # Day 1's per-user day keys are gone; month/total keys stay.
    assert len(store) < size_day1
    assert ledger.spent("tag:user=u1", "day") == 0.0
    assert ledger.spent("tag:user=u1", "month") == 0.25
    assert not any(k.startswith("day:2026-05-01|") for k in store._data)


# -- reservations -------------------------------------------------------------------


def test_settle_and_release_are_idempotent() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day"))
    r = ledger.reserve(model="m", tags={}, amount_usd=0.5)
    other = ledger.reserve(model="m", tags={}, amount_usd=0.25)
    r.settle(0.25)
    r.settle(0.25)
    r.release()
    r.settle(0.5)
    assert r.state == "settled"
    assert ledger.spent() == 0.25
    assert ledger.reserved() == 0.25
    other.release()
    other.release()
    other.settle(1.0)
    assert other.state == "released"
    assert ledger.spent() == 0.25
    assert ledger.reserved() == 0.0


def test_settle_none_books_the_reserved_amount() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day"))
    ledger.reserve(model="m", tags={}, amount_usd=0.75).settle(None)
    assert ledger.spent() == 0.75
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="m", tags={}, amount_usd=0.5)


def test_context_manager_releases_unless_settled() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day"))
    with pytest.raises(RuntimeError), ledger.reserve(model="m", tags={}, amount_usd=1.0):
        raise RuntimeError("provider blew up")
    assert ledger.reserved() == 0.0
    with ledger.reserve(model="m", tags={}, amount_usd=1.0) as r:
        r.settle(0.5)
    assert ledger.spent() == 0.5
    assert ledger.reserved() == 0.0


async def test_release_on_cancellation() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day"))
    started = anyio.Event()

    async def call() -> None:
        with ledger.reserve(model="m", tags={}, amount_usd=1.0) as r:
            started.set()
            await anyio.sleep_forever()
            r.settle(1.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await started.wait()
        assert ledger.reserved() == 1.0
        with pytest.raises(BudgetExceeded):
            ledger.reserve(model="m", tags={}, amount_usd=0.5)
        tg.cancel_scope.cancel()
    assert ledger.reserved() == 0.0
    assert ledger.spent() == 0.0
    ledger.reserve(model="m", tags={}, amount_usd=1.0)


def test_invalid_amounts_rejected() -> None:
    # A caller's bad reservation amount is a bug and raises; a bad *cost* from a reply
    # must never raise (see test_a_nonsense_cost_still_settles_the_reservation).
    ledger = ledger_with(BudgetLimit(1.0, "day"))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="amount_usd"):
            ledger.reserve(model="m", tags={}, amount_usd=bad)
        ledger.record(model="m", tags={}, cost_usd=bad)  # ignored, never booked
    assert ledger.reserved() == 0.0 and ledger.spent() == 0.0


async def test_500_concurrent_all_reserve_before_any_settle() -> None:
    """Every call reserves before any reply arrives: exactly limit/amount get in."""
    ledger = ledger_with(BudgetLimit(10.0, "day"))
    amount = 0.0625  # binary-exact, so the count is exact: 10 / 0.0625 = 160
    go = anyio.Event()
    admitted = 0
    rejected = 0

    async def call() -> None:
        nonlocal admitted, rejected
        try:
            r = ledger.reserve(model="m", tags={"user": "u"}, amount_usd=amount)
        except BudgetExceeded:
            rejected += 1
            return
        admitted += 1
        with r:
            await go.wait()
            r.settle(amount)

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(call)
        while admitted + rejected < 500:
            await anyio.lowlevel.checkpoint()
        go.set()
    assert admitted == 160
    assert rejected == 340
    assert ledger.spent() == 10.0
    assert ledger.reserved() == 0.0


async def test_500_concurrent_never_overshoot_with_random_costs() -> None:
    """Interleaved reserve/settle with real costs <= reservation: the hard limit
    holds, and every rejection was necessary at the moment it happened."""
    rng = random.Random(20260101)
    limit, amount = 10.0, 0.06
    ledger = ledger_with(BudgetLimit(limit, "day"), BudgetLimit(5.0, "day", "model:opus"))
    admitted = 0
    unjustified: list[float] = []

    async def call(i: int) -> None:
        nonlocal admitted
        for _ in range(rng.randint(0, 400)):  # arrive at different times
            await anyio.lowlevel.checkpoint()
        model = "opus" if i % 2 else "haiku"
        try:
            r = ledger.reserve(model=model, tags={}, amount_usd=amount)
        except BudgetExceeded as exc:
            used = ledger.spent(exc.scope) + ledger.reserved(exc.scope)
            if used + amount <= (limit if exc.scope == "total" else 5.0):
                unjustified.append(used)
            return
        admitted += 1
        try:
            for _ in range(rng.randint(1, 30)):  # the provider call
                await anyio.lowlevel.checkpoint()
            if rng.random() < 0.1:
                return  # failed before spending: released in finally
            r.settle(rng.uniform(0.0, amount))
        finally:
            r.release()

    async with anyio.create_task_group() as tg:
        for i in range(500):
            tg.start_soon(call, i)

    assert ledger.spent() <= limit
    assert ledger.spent("model:opus") <= 5.0
    assert unjustified == []
    # Settled costs average half the reservation and some calls release, so more
    # than limit/amount calls fit; without reservations all 500 would be admitted
    # and spend about 500 * 0.9 * 0.03 = 13.5 > 10.
    assert admitted > limit / amount
    # Demand exceeds both limits, so both were actually used up (not over-refused).
    assert ledger.spent() > limit - 2 * amount
    assert ledger.spent("model:opus") > 5.0 - 2 * amount
    assert ledger.reserved() == 0.0
    assert ledger.reserved("model:opus") == 0.0


# -- downgrade ----------------------------------------------------------------------


def test_downgrade_signal_and_hard_limit_behind_it() -> None:
    ledger = ledger_with(
        BudgetLimit(1.0, "day", action="downgrade", downgrade_to="haiku"),
        BudgetLimit(2.0, "day"),
    )
    ledger.reserve(model="opus", tags={}, amount_usd=0.75).settle(0.75)
    with pytest.raises(BudgetDowngrade) as info:
        ledger.reserve(model="opus", tags={"team": "t"}, amount_usd=0.5)
    err = info.value
    assert isinstance(err, BudgetExceeded)
    assert (err.downgrade_to, err.model, err.scope, err.limit_usd) == ("haiku", "opus", "total", 1.0)
    assert (err.spent_usd, err.requested_usd) == (0.75, 0.5)
    assert ledger.reserved() == 0.0  # nothing booked when it raises
    # The executor retries on the downgrade target: the soft limit does not block it.
    ledger.reserve(model="haiku", tags={}, amount_usd=0.5).settle(0.5)
    ledger.reserve(model="haiku", tags={}, amount_usd=0.75).settle(0.75)
    # The hard limit still applies to the cheaper model, with a plain BudgetExceeded.
    with pytest.raises(BudgetExceeded) as info2:
        ledger.reserve(model="haiku", tags={}, amount_usd=0.5)
    assert type(info2.value) is BudgetExceeded
    assert info2.value.limit_usd == 2.0


def test_downgrade_on_model_scope() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "month", "model:opus", "downgrade", "sonnet"))
    ledger.record(model="opus", tags={}, cost_usd=1.0)
    with pytest.raises(BudgetDowngrade) as info:
        ledger.reserve(model="opus", tags={}, amount_usd=0.01)
    assert info.value.downgrade_to == "sonnet"
    ledger.reserve(model="sonnet", tags={}, amount_usd=100.0)


def test_budget_downgrade_pickles() -> None:
    err = BudgetDowngrade("over", downgrade_to="haiku", model="opus", scope="total", limit_usd=1.0)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, BudgetDowngrade)
    assert (back.downgrade_to, back.model, back.scope, back.limit_usd, str(back)) == (
        "haiku",
        "opus",
        "total",
        1.0,
        "over",
    )


# -- record, snapshot, store --------------------------------------------------------


def test_record_counts_unreserved_costs() -> None:
    ledger = ledger_with(BudgetLimit(1.0, "day", "tag:team=x"))
    ledger.record(model="judge", tags={"team": "x"}, cost_usd=0.75)
    ledger.record(model="judge", tags={"team": "x"}, cost_usd=None)  # unknown price: nothing to book
    assert ledger.spent("tag:team=x") == 0.75
    assert ledger.spent("model:judge") == 0.75
    assert ledger.spent("total", "month") == 0.75
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="opus", tags={"team": "x"}, amount_usd=0.5)


def test_snapshot() -> None:
    clock = ManualClock(at(UTC, 2026, 7, 4, 15).timestamp())
    ledger = ledger_with(
        BudgetLimit(10.0, "day"),
        BudgetLimit(8.0, "day", action="downgrade", downgrade_to="cheap"),
        BudgetLimit(1.0, "month", "tag:user"),
        clock=clock,
    )
    ledger.reserve(model="opus", tags={"user": "ann"}, amount_usd=0.5).settle(0.25)
    ledger.reserve(model="opus", tags={"user": "ann"}, amount_usd=0.5)
    snap = ledger.snapshot()
    day = snap["total@day"]
    assert day["period_start"] == "2026-07-04T00:00:00+00:00"
    assert (day["spent_usd"], day["reserved_usd"]) == (0.25, 0.5)
    assert (day["limit_usd"], day["action"], day["remaining_usd"]) == (8.0, "downgrade", 7.25)
    assert [lim["limit_usd"] for lim in day["limits"]] == [8.0, 10.0]
    ann = snap["tag:user=ann@month"]
    assert ann["period_start"] == "2026-07-01T00:00:00+00:00"
    assert (ann["spent_usd"], ann["reserved_usd"], ann["remaining_usd"]) == (0.25, 0.5, 0.25)
    assert snap["tag:user=ann@day"]["limit_usd"] is None
    assert snap["model:opus@total"]["spent_usd"] == 0.25
    assert snap["total@total"]["period_start"] is None


def test_ledger_without_limits_still_tracks_spend() -> None:
    ledger = BudgetLedger()
    r = ledger.reserve(model="m", tags={"user": "x"}, amount_usd=1e9)
    r.settle(0.5)
    assert ledger.spent() == 0.5
    assert ledger.spent("model:m", "total") == 0.5


def test_shared_store_shares_spend_between_ledgers() -> None:
    store = MemoryLedgerStore()
    assert isinstance(store, LedgerStore)
    clock = ManualClock(at(UTC, 2026, 1, 2).timestamp())
    a = BudgetLedger([BudgetLimit(1.0, "day")], clock=clock, store=store)
    b = BudgetLedger([BudgetLimit(1.0, "day")], clock=clock, store=store)
    a.reserve(model="m", tags={}, amount_usd=1.0).settle(0.75)
    assert b.spent() == 0.75
    with pytest.raises(BudgetExceeded):
        b.reserve(model="m", tags={}, amount_usd=0.5)


# -- a hard limit is hard (issue #18, items 2 and 4) -------------------------------------


def test_nothing_more_is_admitted_once_spent_plus_reserved_reaches_the_limit() -> None:
    ledger = BudgetLedger([BudgetLimit(limit_usd=1.0, period="total")])
    ledger.reserve(model="m", tags={}, amount_usd=1.0).settle(1.0)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(model="m", tags={}, amount_usd=0.0)  # an unknown price reserves $0


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, True, "0.5"])
def test_a_nonsense_cost_still_settles_the_reservation(bad: object) -> None:
    ledger = BudgetLedger([BudgetLimit(limit_usd=1.0, period="total")])
    r = ledger.reserve(model="m", tags={}, amount_usd=0.25)
    r.settle(bad)  # type: ignore[arg-type]
    assert r.state == "settled"
    assert ledger.reserved("total", "total") == 0.0
    assert ledger.spent("total", "total") == 0.25  # booked as the unknown it is
    ledger.record(model="m", tags={}, cost_usd=bad)  # type: ignore[arg-type]
    assert ledger.spent("total", "total") == 0.25
    ledger.reserve(model="m", tags={}, amount_usd=0.5).settle(0.5)  # still usable


def test_the_input_bound_is_above_any_tokenizer_and_fast_to_compute() -> None:
    from tierwise.execution.tokens import InputBound, estimate_tokens, prompt_upper_bound
    from tierwise.types import Request

    for text in ("plain English prose. " * 100, "密集的中文文本" * 200, "x=[{'a':1}];" * 150):
        request = Request.from_prompt(text, max_tokens=10)
        estimate = estimate_tokens(request) - 10
        upper = prompt_upper_bound(request)
        assert upper >= len(text.encode()) and upper >= estimate
        assert InputBound().reserve_tokens(request, estimate) == upper
    learned = InputBound("learned", margin=0.25, warmup=2)
    request = Request.from_prompt("plain English prose. " * 100)
    estimate = estimate_tokens(request) - 1024
    assert learned.reserve_tokens(request, estimate) == prompt_upper_bound(request)  # strict until warm
    learned.observe(estimate, int(estimate * 1.6))
    learned.observe(estimate, int(estimate * 1.2))
    assert learned.reserve_tokens(request, estimate) == pytest.approx(estimate * 1.6 * 1.25, abs=2)
