"""Shared state on a real ``redis-server``: limits, budgets, leases and circuits hold
across OS processes, and a Redis outage follows the configured fail mode.

Each multi-process test runs 4 worker processes (tests/_redis_helpers.py), each
with its own Orchestrator built from the same config, against one loopback
MockLLMServer in this process, and checks at the server what reached it. The
``memory`` parametrization runs the same scenario in one process on the default
backend. Skipped without ``redis-server`` or the ``redis`` package.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

import tierwise as tw
from _redis_helpers import REDIS_SERVER, RedisServer, run_workers, state_toml, worker_env
from tierwise.errors import ConfigError
from tierwise.testing import FakeClock, MockLLMServer, MockModel

redis = pytest.importorskip("redis")
pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    # Generous for a loaded 2-core machine (each test takes seconds), but bounded:
    # nothing here may hang CI.
    pytest.mark.timeout(180),
]

# A worst case of exactly 1/64 dollar: 16 output tokens at $976.5625/M, input free.
_OUT_PRICE = 976.5625


class Arrivals:
    """Arrival times at the mock server (the reply callable runs on arrival)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, _req: Any) -> str:
        with self.lock:
            self.times.append(time.monotonic())
        return "ok"


def _config(
    tmp: Path,
    base_url: str,
    backend: str,
    *,
    model: str = "",
    extra: str = "",
    state: str = "",
) -> Path:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    state_block = state_toml(backend, prefix, state)
    text = f"""
[providers.mock]
type = "openai"
base_url = "{base_url}/v1"
api_key_env = "MOCK_KEY"

{model}

[retry]
max_attempts = 1

[logging]
level = "off"

{extra}

{state_block}
"""
    path = tmp / f"tierwise-{prefix[:-1]}.toml"
    path.write_text(text)
    return path


def _env(redis_server: RedisServer) -> dict[str, str]:
    return worker_env(redis_server.url, "sk-test-redis")


def _procs(backend: str) -> int:
    return 4 if backend == "redis" else 1


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_rpm_holds_across_processes(tmp_path: Path, redis_server: RedisServer, backend: str) -> None:
    arrivals = Arrivals()
    with MockLLMServer.run_in_thread({"m": MockModel(reply=arrivals, output_tokens=4)}) as server:
        model = (
            '[models.m]\nprovider = "mock"\nmodel = "m"\nrpm = 24\nmax_queue_wait_s = 0.3\n'
            "input_price = 0.0\noutput_price = 1.0\n"
        )
        cfg = _config(tmp_path, server.base_url, backend, model=model)
        procs = _procs(backend)
        results = run_workers(cfg, procs, {"n": 80 // procs, "concurrency": 8}, _env(redis_server))
    ok = sum(r["ok"] for r in results)
    # All within one 60 s window: the limit, exactly, reached the server.
    assert len(arrivals.times) == ok == 24
    assert max(arrivals.times) - min(arrivals.times) < 60
    assert sum(sum(r["errors"].values()) for r in results) == 80 - 24


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_tpm_holds_across_processes(tmp_path: Path, redis_server: RedisServer, backend: str) -> None:
    # Each call really uses 4 + 12 = 16 tokens; it reserves its estimate (the
    # prompt's bound + max_tokens = 16, so at least 16) and is corrected to 16 at
    # release. Estimates at or above the real use: the correction margin is 0.
    arrivals = Arrivals()
    mock = MockModel(reply=arrivals, input_tokens=4, output_tokens=12, latency_ms=5)
    with MockLLMServer.run_in_thread({"m": mock}) as server:
        model = (
            '[models.m]\nprovider = "mock"\nmodel = "m"\ntpm = 480\nmax_queue_wait_s = 0.5\n'
            "input_price = 0.0\noutput_price = 1.0\n"
        )
        cfg = _config(tmp_path, server.base_url, backend, model=model)
        procs = _procs(backend)
        results = run_workers(cfg, procs, {"n": 80 // procs, "concurrency": 8}, _env(redis_server))
    ok = sum(r["ok"] for r in results)
    assert ok == len(arrivals.times)
    assert sum(r["tokens"] for r in results) == 16 * ok
    assert max(arrivals.times) - min(arrivals.times) < 60
    # Every token that reached the server is inside one 60 s window: never over
    # the limit; and the refunds of over-estimates were used (not just 480 / estimate).
    assert 16 * ok <= 480
    assert ok >= 20
    assert set().union(*(r["errors"] for r in results)) == {"QueueWaitTimeout"}


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_provider_rate_limit_headers_tighten_the_shared_view(
    tmp_path: Path, redis_server: RedisServer, backend: str
) -> None:
    # The provider allows 2 requests a minute and says so in x-ratelimit-*; the
    # client's own rpm (100) would let everything through.
    mock = MockModel(rate_limit_requests=2)
    with MockLLMServer.run_in_thread({"m": mock}) as server:
        model = (
            '[models.m]\nprovider = "mock"\nmodel = "m"\nrpm = 100\nmax_queue_wait_s = 0.3\n'
            "input_price = 0.0\noutput_price = 1.0\n"
        )
        cfg = _config(tmp_path, server.base_url, backend, model=model)
        env = _env(redis_server)
        if backend == "redis":
            (first,) = run_workers(cfg, 1, {"n": 2, "concurrency": 1}, env)
            assert first["ok"] == 2
            # Another process, which never saw a header itself, holds back at once.
            rest = run_workers(cfg, 2, {"n": 3, "concurrency": 1}, env)
        else:
            rest = run_workers(cfg, 1, {"n": 8, "concurrency": 1}, env)
        assert server.stats["m"].requests == 2
    assert sum(r["ok"] for r in rest) == (0 if backend == "redis" else 2)
    assert set().union(*(r["errors"] for r in rest)) == {"QueueWaitTimeout"}


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_max_concurrency_holds_across_processes(
    tmp_path: Path, redis_server: RedisServer, backend: str
) -> None:
    arrivals = Arrivals()
    latency = 0.03
    with MockLLMServer.run_in_thread({"m": MockModel(reply=arrivals, latency_ms=latency * 1000)}) as server:
        model = (
            '[models.m]\nprovider = "mock"\nmodel = "m"\nmax_concurrency = 3\nmax_queue_wait_s = 60.0\n'
            "input_price = 0.0\noutput_price = 1.0\n"
        )
        cfg = _config(tmp_path, server.base_url, backend, model=model)
        procs = _procs(backend)
        results = run_workers(cfg, procs, {"n": 48 // procs, "concurrency": 12}, _env(redis_server))
    assert sum(r["ok"] for r in results) == 48
    times = sorted(arrivals.times)
    # Every request that arrived within `latency` before another is still in
    # flight when it arrives (its reply leaves the server `latency` after arrival).
    peak = max(sum(1 for s in times[: i + 1] if t - s < latency) for i, t in enumerate(times))
    assert peak <= 3


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_a_hard_budget_holds_across_processes(
    tmp_path: Path, redis_server: RedisServer, backend: str
) -> None:
    arrivals = Arrivals()
    with MockLLMServer.run_in_thread(
        {"m": MockModel(reply=arrivals, output_tokens=16, latency_ms=5)}
    ) as server:
        model = (
            f'[models.m]\nprovider = "mock"\nmodel = "m"\ninput_price = 0.0\noutput_price = {_OUT_PRICE}\n'
        )
        extra = '[budget]\n[[budget.limits]]\nscope = "total"\nperiod = "day"\nlimit_usd = 0.75\n'
        cfg = _config(tmp_path, server.base_url, backend, model=model, extra=extra)
        procs = _procs(backend)
        results = run_workers(cfg, procs, {"n": 200, "concurrency": 200}, _env(redis_server))
    # 0.75 / (1/64) = 48: exactly that many, whatever the number of processes.
    assert sum(r["ok"] for r in results) == len(arrivals.times) == 48
    assert all(set(r["errors"]) <= {"BudgetExceeded"} for r in results)
    if backend == "redis":
        from tierwise.state.redis import RedisState

        async def spent() -> tuple[float, float]:
            state = RedisState(redis_server.url, key_prefix=_prefix(cfg))
            try:
                store = state.budget_store()
                day = time.strftime("%Y-%m-%d", time.gmtime())
                got = await store.refresh([f"day:{day}|total", "total|total"])
                return got[f"day:{day}|total"][0], got["total|total"][1]
            finally:
                await state.aclose()

        day_spent, reserved = anyio.run(spent)
        assert day_spent == 0.75 and reserved == 0.0


def _prefix(cfg: Path) -> str:
    for line in cfg.read_text().splitlines():
        if line.startswith("key_prefix"):
            return str(json.loads(line.split("=", 1)[1].strip()))
    raise AssertionError("no key_prefix")


def test_a_killed_process_frees_its_slots_and_reservations_after_the_lease(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    from tierwise.state.redis import RedisState

    with MockLLMServer.run_in_thread({"m": MockModel(latency_ms=600_000)}) as server:
        model = (
            '[models.m]\nprovider = "mock"\nmodel = "m"\nmax_concurrency = 2\n'
            f"input_price = 0.0\noutput_price = {_OUT_PRICE}\n"
        )
        extra = '[budget]\n[[budget.limits]]\nscope = "total"\nperiod = "total"\nlimit_usd = 1.0\n'
        cfg = _config(tmp_path, server.base_url, "redis", model=model, extra=extra, state="lease_s = 2.0")
        prefix = _prefix(cfg)
        worker = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "_redis_helpers.py"), str(cfg), '{"n": 4}'],
            stdout=subprocess.DEVNULL,
            env=_env(redis_server),
        )

        async def levels(clock: Any) -> tuple[int, float]:
            state = RedisState(redis_server.url, key_prefix=prefix, clock=clock)
            try:
                snap = await state.limiter("m", max_concurrency=2).asnapshot()
                got = await state.budget_store().refresh(["total|total"])
                return snap["in_flight"], got["total|total"][1]
            finally:
                await state.aclose()

        try:
            for _ in range(400):
                held = anyio.run(levels, tw.testing.FakeClock(wall_start=time.time(), auto_advance=False))
                if held == (2, 2 / 64):
                    break
                time.sleep(0.025)
            assert held == (2, 2 / 64)  # two slots and their worst cases held; two requests queued
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    # Right after the kill the lease still stands...
    assert anyio.run(levels, FakeClock(wall_start=time.time(), auto_advance=False)) == (2, 2 / 64)
    # ...and once it has run out, nothing of the dead process counts.
    assert anyio.run(levels, FakeClock(wall_start=time.time() + 3.0, auto_advance=False)) == (0, 0.0)


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_a_circuit_opened_in_one_process_is_skipped_by_another(
    tmp_path: Path, redis_server: RedisServer, backend: str
) -> None:
    models = {"bad": MockModel(faults=["500"], cycle_faults=True), "good": MockModel()}
    with MockLLMServer.run_in_thread(models) as server:
        model = (
            '[models.bad]\nprovider = "mock"\nmodel = "bad"\nfallbacks = ["good"]\n'
            "input_price = 0.0\noutput_price = 1.0\n"
            '[models.good]\nprovider = "mock"\nmodel = "good"\ninput_price = 0.0\noutput_price = 1.0\n'
        )
        extra = "[health]\nfailure_threshold = 5\ncooldown_s = 60.0\n"
        cfg = _config(tmp_path, server.base_url, backend, model=model, extra=extra)
        env = _env(redis_server)
        if backend == "redis":
            (first,) = run_workers(cfg, 1, {"n": 5, "concurrency": 1}, env)
            assert first["health"]["bad"]["state"] == "cooling"
            assert server.stats["bad"].requests == 5
            (second,) = run_workers(cfg, 1, {"n": 3, "concurrency": 1}, env)
        else:
            (second,) = run_workers(cfg, 1, {"n": 8, "concurrency": 1}, env)
        assert second["ok"] == 3 if backend == "redis" else second["ok"] == 8
        # The other process never called the deployment the first one saw failing.
        assert server.stats["bad"].requests == 5
        assert second["health"]["bad"]["state"] == "cooling"


def test_state_config_names_its_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {
        "models": {"m": {"provider": "openai", "model": "gpt-4o-mini"}},
        "state": {"backend": "redis", "url_env": "TIERWISE_TEST_NO_SUCH_URL"},
    }
    monkeypatch.delenv("TIERWISE_TEST_NO_SUCH_URL", raising=False)
    with pytest.raises(ConfigError, match=r"state\.url_env"):
        tw.Orchestrator.from_config(cfg)
    bad = {**cfg, "state": {"backend": "redis", "on_error": {"budget": "maybe"}}}
    with pytest.raises(ConfigError, match=r"state\.on_error\.budget"):
        tw.Orchestrator.from_config(bad)
    with pytest.raises(ConfigError, match=r"state\.on_error\.health"):
        tw.Orchestrator.from_config({**cfg, "state": {"backend": "redis", "on_error": {"health": "closed"}}})


def _admission_config(tmp: Path, base_url: str, *, max_concurrency: int = 100) -> Path:
    model = (
        f'[models.m]\nprovider = "mock"\nmodel = "m"\nrpm = 100000\nmax_concurrency = {max_concurrency}\n'
        f"input_price = 0.0\noutput_price = {_OUT_PRICE}\n"
    )
    extra = '[budget]\n[[budget.limits]]\nscope = "total"\nperiod = "total"\nlimit_usd = 10.0\n'
    # Background trips (lease, refresh) far apart: only the requests' trips are counted.
    return _config(tmp, base_url, "redis", model=model, extra=extra, state="refresh_s = 600.0")


def test_a_routed_request_costs_one_round_trip(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rate limiter's first attempt and the budget reservation go in one
    # pipeline; the release and the settlement ride on the next request's.
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis")
    with MockLLMServer.run_in_thread({"m": MockModel(output_tokens=4)}) as server:
        cfg = _admission_config(tmp_path, server.base_url)

        async def main() -> tuple[int, float]:
            async with tw.Orchestrator.from_config(cfg) as orch:
                assert orch.state is not None
                await orch.run("warm up", max_tokens=16)
                before = orch.state.round_trips
                for _ in range(20):
                    await orch.run("hello", max_tokens=16)
                trips = orch.state.round_trips - before
                assert orch.executor.budget is not None
                return trips, orch.executor.budget.spent("total", "total")

        trips, spent = anyio.run(main)
    # 20 requests: 20 trips (a write flushed on its own timer now and then on a
    # loaded machine); with the limiter and the budget apart it was 40.
    assert 20 <= trips <= 25
    assert spent == pytest.approx(21 * 4 * _OUT_PRICE / 1e6)


def test_a_request_waiting_for_a_slot_holds_no_budget(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One slot: the second request's reservation went out with its first attempt,
    # which did not admit it; the reservation is given back while it waits and
    # booked again once the slot is free.
    from tierwise.state.redis import RedisState

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-redis")
    with MockLLMServer.run_in_thread({"m": MockModel(output_tokens=16, latency_ms=1500)}) as server:
        cfg = _admission_config(tmp_path, server.base_url, max_concurrency=1)
        prefix = _prefix(cfg)

        async def main() -> tuple[float, float]:
            async with tw.Orchestrator.from_config(cfg) as orch, anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(functools.partial(orch.run, "hello", max_tokens=16))
                # The first request holds the slot for 1.5 s; the second is waiting by now.
                await anyio.sleep(0.6)
                observer = RedisState(redis_server.url, key_prefix=prefix)
                try:
                    snap = await observer.limiter("m", max_concurrency=1).asnapshot()
                    got = await observer.budget_store().refresh(["total|total"])
                finally:
                    await observer.aclose()
                assert snap["in_flight"] == 1
            assert orch.executor.budget is not None
            return got["total|total"][1], orch.executor.budget.spent("total", "total")

        waiting_held, spent = anyio.run(main)
    # While the second waits: only the first request's worst case (16 tokens) is held.
    assert waiting_held == pytest.approx(16 * _OUT_PRICE / 1e6)
    assert spent == pytest.approx(2 * 16 * _OUT_PRICE / 1e6)
