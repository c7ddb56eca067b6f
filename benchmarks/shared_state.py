"""What the Redis shared state costs a routed request (issue 11's figures).

Targets: Redis round trips per routed request (rate limit + budget + health)
<= 2 on the success path, counted; client CPU per request with the Redis
backend <= 1.3x the memory backend, in the same run; added p50 latency <= 1 ms
against a local Redis; 4 processes together sustain >= 3x one process's rate
with the Redis backend on (the shared state must not serialize them).

Method
------
* A ``redis-server`` of this machine on a free loopback port (no persistence),
  and ``tierwise mock-server`` in its own process, so none of the server's CPU
  lands in the client's account.
* One deployment with every shared concern on: ``rpm``, ``tpm`` and
  ``max_concurrency`` (far above the load: nothing waits), a hard daily budget
  (far above the spend: nothing is refused), the health tracker, prices.
  ``memory`` and ``redis`` rows use the same config but for ``[state]``.
* Round trips: ``RedisState.round_trips`` counts every exchange on the link (one
  pipeline sent, every reply read), background ones (lease, refresh) included,
  over ``--requests`` sequential requests after a warm-up; cross-checked against
  the server's own ``INFO commandstats`` (EVALSHA and ZADD calls in the same span).
  Also at ``--concurrency``, where concurrent requests share trips.
* CPU: ``time.process_time()`` of this process over ``--requests`` requests at
  ``--concurrency``; ``--runs`` rounds, each measuring memory and redis (order
  alternating); medians, and the median of the per-round ratios.
* Latency: per-request wall time of sequential requests, both backends
  interleaved in the same rounds; p50 of each and the difference of the p50s.
* Scaling: 1 process, then 4 processes at once (this script with ``--worker``),
  each with its own Orchestrator on the Redis backend, each driving
  ``--scale-concurrency`` requests in flight for ``--scale-seconds`` against the
  mock with ``--mock-latency-ms`` latency; aggregate rate = requests / seconds.
  The per-process load is bounded on purpose: on a 2-core machine a CPU-bound
  process cannot be multiplied by 4, so what is measured is whether the shared
  state serializes processes, not how many cores the machine has.

Usage::

    python benchmarks/shared_state.py                 # all figures (about a minute)
    python benchmarks/shared_state.py --runs 3 --requests 500
    python benchmarks/shared_state.py --check         # exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(unix: bool = False) -> Iterator[str]:
    """A throwaway redis-server; with ``unix`` the URL is its Unix socket (a
    same-host deployment's cheaper link: no TCP stack per round trip)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    sock = os.path.join(tempfile.mkdtemp(), "redis.sock")
    extra = ["--unixsocket", sock, "--unixsocketperm", "700"] if unix else []
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.01)
        else:
            raise RuntimeError("redis-server did not start")
        yield f"unix://{sock}?db=0" if unix else f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def mock_server(latency_ms: float) -> Iterator[str]:
    """``tierwise mock-server`` in its own process, recording no requests."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"record_limit": 0, "models": {"m": {"latency_ms": latency_ms, "output_tokens": 8}}}, f)
        config = f.name
    code = (
        "from tierwise.testing.mock_server import main_mock_server; "
        f"raise SystemExit(main_mock_server(['--port', '0', '--config', {config!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"mock server did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        os.unlink(config)


def config(base_url: str, backend: str, prefix: str) -> dict[str, Any]:
    state: dict[str, Any] = {"backend": "memory"}
    if backend == "redis":
        state = {"backend": "redis", "key_prefix": prefix, "timeout_s": 2.0}
    return {
        "providers": {"mock": {"type": "openai", "base_url": f"{base_url}/v1", "api_key_env": "MOCK_KEY"}},
        "models": {
            "m": {
                "provider": "mock",
                "model": "m",
                "rpm": 10_000_000,
                "tpm": 10_000_000_000,
                "max_concurrency": 10_000,
                "input_price": 0.1,
                "output_price": 0.4,
            }
        },
        "retry": {"max_attempts": 1},
        "logging": {"level": "off"},
        "budget": {"limits": [{"scope": "total", "period": "day", "limit_usd": 1e9}]},
        "state": state,
    }


async def drive(orch: Any, total: int, concurrency: int) -> tuple[float, list[float]]:
    """``total`` requests on ``concurrency`` workers: (CPU seconds, per-request wall seconds)."""
    import tierwise as tw

    req = tw.Request.from_prompt("hello there", max_tokens=8)
    remaining = total
    lat: list[float] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await orch.run(req)
            lat.append(time.perf_counter() - t0)

    gc.collect()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, lat


async def commandstats(url: str) -> dict[str, int]:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url)
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def single_process(args: argparse.Namespace, url: str, base_url: str) -> dict[str, Any]:
    import tierwise as tw

    os.environ["REDIS_URL"] = url
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    out: dict[str, Any] = {}
    async with (
        tw.Orchestrator.from_config(config(base_url, "memory", prefix)) as mem,
        tw.Orchestrator.from_config(config(base_url, "redis", prefix)) as red,
    ):
        orchs = {"memory": mem, "redis": red}
        for orch in orchs.values():
            await drive(orch, 300, args.concurrency)  # warm-up: connections, scripts
        state = red.state
        assert state is not None

        # Background trips (lease, refresh of circuits and spend): counted while idle.
        await state.flush()
        idle0, t_idle = state.round_trips, time.perf_counter()
        await asyncio.sleep(args.idle_seconds)
        bg_per_s = (state.round_trips - idle0) / (time.perf_counter() - t_idle)
        out["background_trips_per_s"] = bg_per_s

        # Round trips on the success path, sequential, then concurrent.
        for label, conc in (("sequential", 1), ("concurrent", args.concurrency)):
            await state.flush()
            before_stats = await commandstats(url)
            trips0, cmds0, t0 = state.round_trips, state.commands, time.perf_counter()
            await drive(red, args.requests, conc)
            await state.flush()
            elapsed = time.perf_counter() - t0
            trips, cmds = state.round_trips - trips0, state.commands - cmds0
            after_stats = await commandstats(url)
            out[f"trips {label}"] = {
                "round_trips_per_request": trips / args.requests,
                "request_path_trips_per_request": (trips - bg_per_s * elapsed) / args.requests,
                "commands_per_request": cmds / args.requests,
                # EVALSHA as the server counted it (commands run inside scripts are
                # counted there too, so only the scripts themselves are compared).
                "server_scripts_per_request": (after_stats.get("evalsha", 0) - before_stats.get("evalsha", 0))
                / args.requests,
            }

        # One script's round trip, for scale (the machine is shared and loaded).
        pings = []
        for _ in range(200):
            t0 = time.perf_counter()
            await state.ping()
            pings.append(time.perf_counter() - t0)
        out["script_rtt_p50_ms"] = statistics.median(pings) * 1e3

        # CPU and latency, both backends in every round (order alternating).
        cpu: dict[str, list[float]] = {"memory": [], "redis": []}
        cpu_seq: dict[str, list[float]] = {"memory": [], "redis": []}
        p50: dict[str, list[float]] = {"memory": [], "redis": []}
        ratios: list[float] = []
        ratios_seq: list[float] = []
        deltas: list[float] = []
        for r in range(args.runs):
            order = ["memory", "redis"] if r % 2 == 0 else ["redis", "memory"]
            got: dict[str, tuple[float, float, float]] = {}
            for name in order:
                secs, _ = await drive(orchs[name], args.requests, args.concurrency)
                secs_seq, lat = await drive(orchs[name], args.latency_requests, 1)
                got[name] = (secs / args.requests, secs_seq / args.latency_requests, statistics.median(lat))
                cpu[name].append(got[name][0])
                cpu_seq[name].append(got[name][1])
                p50[name].append(got[name][2])
            ratios.append(got["redis"][0] / got["memory"][0])
            ratios_seq.append(got["redis"][1] / got["memory"][1])
            deltas.append(got["redis"][2] - got["memory"][2])
        out["cpu_us_per_request"] = {k: statistics.median(v) * 1e6 for k, v in cpu.items()}
        out["cpu_ratio_redis_over_memory"] = statistics.median(ratios)
        out["cpu_us_per_request_sequential"] = {k: statistics.median(v) * 1e6 for k, v in cpu_seq.items()}
        out["cpu_ratio_sequential"] = statistics.median(ratios_seq)
        out["p50_ms"] = {k: statistics.median(v) * 1e3 for k, v in p50.items()}
        out["p50_added_ms"] = statistics.median(deltas) * 1e3
        out["state_stats"] = state.stats()
    return out


async def worker_main(spec: dict[str, Any]) -> dict[str, Any]:
    """One application process of the scaling run: requests until ``stop_at``."""
    import tierwise as tw

    os.environ["REDIS_URL"] = spec["url"]
    req = tw.Request.from_prompt("hello there", max_tokens=8)
    done = 0
    async with tw.Orchestrator.from_config(config(spec["base_url"], "redis", spec["prefix"])) as orch:
        await drive(orch, 50, 4)  # warm-up
        # Ready; the parent says go once every process is (startup is not measured).
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        t0 = time.perf_counter()
        stop_at = t0 + spec["seconds"]

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await orch.run(req)
                done += 1

        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        elapsed = time.perf_counter() - t0
        trips = orch.state.round_trips if orch.state is not None else 0
    return {"requests": done, "round_trips": trips, "seconds": elapsed}


def scaling(args: argparse.Namespace, url: str, base_url: str) -> dict[str, Any]:
    prefix = f"scale{uuid.uuid4().hex[:6]}:"
    rates: dict[int, float] = {}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1] / "src"), env.get("PYTHONPATH", "")])
    for n in (1, 4):
        spec = {
            "url": url,
            "base_url": base_url,
            "prefix": prefix,
            "concurrency": args.scale_concurrency,
            "seconds": args.scale_seconds,
        }
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE), "--worker", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            for _ in range(n)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != b"ready":
                    raise RuntimeError("a scaling worker did not start")
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
            rate = 0.0
            for proc in procs:
                stdout, _ = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    raise RuntimeError("a scaling worker failed")
                got = json.loads(stdout.decode().strip().splitlines()[-1])
                rate += got["requests"] / got["seconds"]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        rates[n] = rate
    return {"rate_1_process": rates[1], "rate_4_processes": rates[4], "ratio_4_over_1": rates[4] / rates[1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--latency-requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--idle-seconds", type=float, default=2.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--scale-seconds", type=float, default=4.0)
    p.add_argument("--scale-concurrency", type=int, default=4)
    p.add_argument("--mock-latency-ms", type=float, default=20.0)
    p.add_argument("--json", type=Path, help="also write every figure here")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("--unix-socket", action="store_true", help="reach Redis over its Unix socket, not TCP")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(worker_main(json.loads(args.worker)))))
        return 0
    os.environ.setdefault("MOCK_KEY", "sk-bench-shared-state")
    with redis_server(args.unix_socket) as url:
        with mock_server(0.0) as base_url:
            single = asyncio.run(single_process(args, url, base_url))
        with mock_server(args.mock_latency_ms) as base_url:
            scale = scaling(args, url, base_url)
    figures = {**single, "scaling": scale}
    seq, conc = single["trips sequential"], single["trips concurrent"]
    print(f"shared state on Redis: {args.runs} rounds, medians ({args.requests} requests a batch)")
    for label, t in (("sequential", seq), (f"{args.concurrency} in flight", conc)):
        print(
            f"  round trips per request, {label:<13}{t['round_trips_per_request']:.3f}"
            f" (request path {t['request_path_trips_per_request']:.3f}; scripts {t['commands_per_request']:.2f},"
            f" server counted {t['server_scripts_per_request']:.2f})"
        )
    print(
        f"  background trips (lease, refresh)       {single['background_trips_per_s']:.1f}/s per process;"
        f" one script round trip p50 {single['script_rtt_p50_ms']:.3f} ms"
    )
    for label, key, ratio in (
        (f"{args.concurrency} in flight", "cpu_us_per_request", "cpu_ratio_redis_over_memory"),
        ("sequential", "cpu_us_per_request_sequential", "cpu_ratio_sequential"),
    ):
        print(
            f"  client CPU per request, {label:<15} memory {single[key]['memory']:.0f} us,"
            f" redis {single[key]['redis']:.0f} us, ratio {single[ratio]:.2f}x"
        )
    print(
        f"  p50 latency, sequential                 memory {single['p50_ms']['memory']:.3f} ms,"
        f" redis {single['p50_ms']['redis']:.3f} ms, added {single['p50_added_ms']:.3f} ms"
    )
    print(
        f"  requests/s, {args.scale_concurrency} in flight per process,"
        f" mock {args.mock_latency_ms:g} ms: 1 process {scale['rate_1_process']:.0f},"
        f" 4 processes {scale['rate_4_processes']:.0f}, ratio {scale['ratio_4_over_1']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    misses = []
    if seq["request_path_trips_per_request"] > 2.0:
        misses.append("round trips")
    if single["cpu_ratio_redis_over_memory"] > 1.3:
        misses.append("cpu")
    if single["p50_added_ms"] > 1.0:
        misses.append("latency")
    if scale["ratio_4_over_1"] < 3.0:
        misses.append("scaling")
    if misses:
        print("  targets missed: " + ", ".join(misses))
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
