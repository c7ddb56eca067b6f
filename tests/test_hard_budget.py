"""A hard budget is hard (issue #18.2): 500 concurrent input-heavy requests whose real
tokenization is denser than tierwise's estimate never spend past a $1.00 limit.

The executor's admission is simulated with the pieces it wires together: the
deployment's ``InputBound`` turns the heuristic prompt estimate into the input side
of the reservation, ``BudgetLedger.reserve`` books ``input x input price + max_tokens
x output price``, the "provider" answers after a latency on a ``FakeClock``, and the
real cost is settled and the real input count observed. The end-to-end version runs
through the executor and the mock server.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import pytest

from tierwise.errors import BudgetExceeded
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.tokens import InputBound, estimate_tokens
from tierwise.testing.clock import FakeClock
from tierwise.types import Request

N = 500
LIMIT = 1.00
PRICE_IN, PRICE_OUT = 3.0, 15.0  # USD per 1M tokens
MAX_OUT = 100
PROMPT_CHARS = 3_000
DENSITY = 1.6  # real input tokens / the heuristic estimate (the figure)

_TEXT = (
    "the budget ledger reserves worst case cost before each call and settles the real "
    "figure after reply arrives tokenizer counts bytes differently from heuristic estimate "
    "concurrency admission limit refund def return json schema {key: [value, 42]} 0x1f3a"
)
WORDS = _TEXT.split(" ")

Reserve = Callable[[Request, int], int]


def cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE_IN + output_tokens * PRICE_OUT) / 1_000_000


def prompts(rng: random.Random) -> list[Request]:
    out = []
    for _ in range(N):
        words: list[str] = []
        size = 0
        while size < PROMPT_CHARS:
            words.append(rng.choice(WORDS))
            size += len(words[-1]) + 1
        out.append(Request.from_prompt(" ".join(words)[:PROMPT_CHARS], max_tokens=MAX_OUT))
    return out


@dataclass
class Outcome:
    spent: float
    admitted: int
    refused: int
    reserved_left: float
    max_overrun: float  # the largest real cost above its reservation (0: never)


async def simulate(
    reserve_input: Reserve,
    observe: Callable[[int, int], None],
    *,
    density: float = DENSITY,
    arrivals: Callable[[random.Random], float] = lambda rng: 0.0,
    seed: int = 18,
) -> Outcome:
    rng = random.Random(seed)
    clock = FakeClock()
    ledger = BudgetLedger([BudgetLimit(LIMIT, "day")], clock=clock)
    requests = prompts(rng)
    admitted = refused = 0
    max_overrun = 0.0

    async def call(request: Request, arrive_at: float, latency: float, output: int) -> None:
        nonlocal admitted, refused, max_overrun
        await clock.sleep(arrive_at)
        prompt_estimate = estimate_tokens(request) - MAX_OUT  # the executor's _Call.prompt
        real_input = math.ceil(prompt_estimate * density)
        text = request.messages[-1].content
        assert isinstance(text, str)
        # The scenario stays within the stated assumption: no token is under one byte.
        assert real_input <= len(text.encode())
        amount = cost(reserve_input(request, prompt_estimate), MAX_OUT)
        try:
            reservation = ledger.reserve(model="m", tags={}, amount_usd=amount)
        except BudgetExceeded:
            refused += 1
            return
        admitted += 1
        try:
            await clock.sleep(latency)  # the provider call
            real = cost(real_input, output)
            max_overrun = max(max_overrun, real - amount)
            reservation.settle(real)
            observe(prompt_estimate, real_input)
        finally:
            reservation.release()  # a no-op once settled

    async with anyio.create_task_group() as tg:
        for request in requests:
            tg.start_soon(
                call, request, arrivals(rng), rng.uniform(0.5, 3.0), rng.randint(MAX_OUT // 2, MAX_OUT)
            )
    return Outcome(ledger.spent(), admitted, refused, ledger.reserved(), max_overrun)


def heuristic(request: Request, estimate: int) -> int:
    return estimate  # what the reservation counted before issue #18


def ignore(estimate: int, actual: int) -> None:
    pass


async def test_the_heuristic_reservation_overspends_the_hard_limit() -> None:
    """The control: with the estimate as the input side, the burst of 500 blows the limit."""
    outcome = await simulate(heuristic, ignore)
    assert outcome.max_overrun > 0
    assert outcome.spent > 1.2 * LIMIT


@pytest.mark.parametrize("density", [DENSITY, 3.9], ids=["1.6x", "one-token-a-byte"])
async def test_a_burst_of_500_with_no_observations_stays_under_the_hard_limit(density: float) -> None:
    """All 500 reserve before any reply: the first burst is safe with nothing learned,
    even if the provider counted one token per byte (the worst a byte-level
    tokenizer can do)."""
    bound = InputBound()
    outcome = await simulate(bound.reserve_tokens, bound.observe, density=density)
    assert outcome.max_overrun <= 0
    assert outcome.spent <= LIMIT
    assert outcome.refused > 0 and outcome.admitted + outcome.refused == N
    assert outcome.reserved_left == 0.0
    # Every admitted call reserved the ceiling (~$0.0121), so the burst fits ~82 calls
    # and spends their real cost: the ceiling's headroom is what a burst cannot use.
    assert outcome.spent > (0.30 if density == DENSITY else 0.70) * LIMIT


@pytest.mark.parametrize("mode", ["strict", "learned"])
async def test_500_staggered_requests_use_most_of_the_budget_and_never_cross_it(mode: str) -> None:
    """Arrivals spread over a minute, so refunds from settled calls let later ones in:
    the limit is reached (to within one reservation) and never crossed."""
    bound = InputBound(mode, warmup=20)
    outcome = await simulate(bound.reserve_tokens, bound.observe, arrivals=lambda rng: rng.uniform(0, 60))
    assert outcome.max_overrun <= 0
    assert outcome.spent <= LIMIT
    assert outcome.spent >= 0.97 * LIMIT
    assert outcome.refused > 0 and outcome.reserved_left == 0.0


async def test_after_warm_up_the_learned_bound_admits_more_of_a_burst_and_stays_under() -> None:
    """Learned mode: a burst arriving after 20 replies were observed reserves the
    learned ratio x 1.25 instead of the ceiling, so more of it fits, still under."""

    strict, learned = InputBound(), InputBound("learned", warmup=20)
    for bound in (strict, learned):
        for _ in range(20):  # the warm-up traffic: 20 replies of the same density
            bound.observe(760, math.ceil(760 * DENSITY))
    burst_strict = await simulate(strict.reserve_tokens, strict.observe)
    burst_learned = await simulate(learned.reserve_tokens, learned.observe)
    for outcome in (burst_strict, burst_learned):
        assert outcome.max_overrun <= 0 and outcome.spent <= LIMIT
    assert burst_learned.admitted > 1.5 * burst_strict.admitted
    assert burst_learned.spent > 0.75 * LIMIT
