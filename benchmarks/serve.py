"""What ``tierwise serve`` adds over calling the model server directly, beside the LiteLLM proxy.

Three paths to the same ``MockLLMServer`` (its own process): the mock directly,
through ``tierwise serve`` (one worker), and through the LiteLLM proxy when its
``litellm`` command is found (``--litellm PATH``, else ``$LITELLM_BIN``, else
``PATH``; the proxy needs ``litellm[proxy]``; skipped cleanly when absent). For
concurrency 1 and 64 it reports the added p50/p99 latency (gateway path minus
direct path, each the median of ``--runs`` rounds) and the gateway process's CPU
seconds per request (user + system from /proc, children included), so the CPU
figure is the gateway's own work, not the client's or the mock's.

    python benchmarks/serve.py                       # 300 requests at c=1, 2000 at c=64, 3 rounds
    python benchmarks/serve.py --stream --runs 5
    python benchmarks/serve.py --litellm /path/to/venv/bin/litellm

Linux only (reads /proc). Every number printed is from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

PROMPT = "Summarise the plot of Hamlet in one sentence."
#: Transport errors per URL (reported; a run with many is not comparable).
ERRORS: dict[str, int] = {}
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children (uvicorn, litellm workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")": state is field 3; utime, stime, cutime, cstime are 14..17.
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK


def tree_cpu(pid: int) -> float:
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            with contextlib.suppress(OSError):
                total += tree_cpu(int(c))
    return total


def wait_http(url: str, proc: subprocess.Popen[bytes], limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {limit_s:.0f} s")


@contextlib.contextmanager
def process(cmd: list[str], health: str, env: dict[str, str] | None = None) -> Iterator[int]:
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        wait_http(health, proc)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def load(url: str, model: str, n: int, conc: int, stream: bool) -> list[float]:
    """Send ``n`` chat requests, ``conc`` at a time; the latency of each, in ms."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    lat: list[float] = []
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                try:
                    if stream:
                        async with client.stream("POST", url, content=data, headers=headers) as r:
                            async for _chunk in r.aiter_raw():
                                pass
                    else:
                        r = await client.post(url, content=data, headers=headers)
                        await r.aread()
                except httpx.TransportError:
                    # A keep-alive connection closed under us (a loaded machine): counted, not timed.
                    ERRORS[url] = ERRORS.get(url, 0) + 1
                    continue
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status_code}")
                lat.append((time.perf_counter() - t0) * 1000.0)

        await asyncio.gather(*(worker() for _ in range(conc)))
    return lat


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def measure(
    url: str, model: str, pid: int | None, n: int, conc: int, stream: bool, runs: int
) -> dict[str, float]:
    asyncio.run(load(url, model, min(100, n), conc, stream))  # warm-up: connections, caches
    p50s, p99s, cpus = [], [], []
    for _ in range(runs):
        before = tree_cpu(pid) if pid else 0.0
        lat = asyncio.run(load(url, model, n, conc, stream))
        cpus.append(((tree_cpu(pid) - before) / n * 1000.0) if pid else 0.0)
        p50s.append(pct(lat, 0.50))
        p99s.append(pct(lat, 0.99))
    return {
        "p50_ms": statistics.median(p50s),
        "p99_ms": statistics.median(p99s),
        "cpu_ms": statistics.median(cpus),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n1", type=int, default=300, help="requests per round at concurrency 1")
    ap.add_argument("--n64", type=int, default=2000, help="requests per round at concurrency 64")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument(
        "--http",
        choices=("httpx", "aiohttp"),
        default="aiohttp" if importlib.util.find_spec("httpx_aiohttp") else "httpx",
        help="tierwise's upstream transport (default aiohttp when the fast extra is installed)",
    )
    ap.add_argument("--litellm", default=os.environ.get("LITELLM_BIN") or shutil.which("litellm"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tw-bench-serve-"))
    # Both gateways check the caller's key (tierwise: a hashed key table; LiteLLM: its master key).
    keys = '[keys.bench]\nkey = "sk-bench"\n'
    env = {**os.environ, "BENCH_MOCK_KEY": "sk-mock", "LITELLM_LOG": "ERROR", "TIERWISE_API_KEYS": keys}
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    mock_port, tw_port, ll_port = free_port(), free_port(), free_port()
    mock = f"http://127.0.0.1:{mock_port}"
    (tmp / "tw.toml").write_text(
        f'[providers.mock]\ntype = "openai"\nbase_url = "{mock}/v1"\napi_key_env = "BENCH_MOCK_KEY"\n'
        f'http = "{args.http}"\n\n'
        '[models.m]\nprovider = "mock"\nmodel = "bench-mock"\ninput_price = 1.0\noutput_price = 2.0\n\n'
        '[retry]\nmax_attempts = 1\n\n[logging]\nlevel = "off"\n'
    )
    (tmp / "litellm.yaml").write_text(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/bench-mock\n"
        f"      api_base: {mock}/v1\n      api_key: sk-mock\n"
        "litellm_settings:\n  telemetry: false\n  turn_off_message_logging: true\n"
        "general_settings:\n  master_key: sk-bench\n"
    )
    py = sys.executable
    results: dict[str, dict[int, dict[str, float]]] = {}
    with process([py, "-m", "tierwise", "mock-server", "--port", str(mock_port)], mock + "/health", env):
        paths: list[tuple[str, str, str, list[str] | None, str]] = [
            ("direct", f"{mock}/v1/chat/completions", "bench-mock", None, ""),
            (
                "tierwise serve",
                f"http://127.0.0.1:{tw_port}/v1/chat/completions",
                "m",
                [py, "-m", "tierwise", "serve", "--config", str(tmp / "tw.toml"), "--port", str(tw_port)],
                f"http://127.0.0.1:{tw_port}/health",
            ),
        ]
        if args.litellm:
            cmd = [
                args.litellm,
                "--config",
                str(tmp / "litellm.yaml"),
                "--port",
                str(ll_port),
                "--num_workers",
                "1",
            ]
            paths.append(
                (
                    "litellm proxy",
                    f"http://127.0.0.1:{ll_port}/v1/chat/completions",
                    "m",
                    cmd,
                    f"http://127.0.0.1:{ll_port}/health/liveliness",
                )
            )
        else:
            print("litellm proxy: not installed (pip install 'litellm[proxy]' or --litellm PATH); skipped")
        for name, url, model, cmd, health in paths:
            ctx = process(cmd, health, env) if cmd else contextlib.nullcontext(None)
            with ctx as pid:
                results[name] = {
                    c: measure(url, model, pid, args.n1 if c == 1 else args.n64, c, args.stream, args.runs)
                    for c in (1, 64)
                }
    base = results["direct"]
    kind = "stream" if args.stream else "json"
    print(f"\n{kind} replies; medians of {args.runs} rounds; gateway CPU; tierwise upstream http={args.http}")
    print(
        f"{'path':16} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'CPU ms/req':>10}"
    )
    for name, by_c in results.items():
        for c, r in by_c.items():
            add50, add99 = r["p50_ms"] - base[c]["p50_ms"], r["p99_ms"] - base[c]["p99_ms"]
            print(
                f"{name:16} {c:>4} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {add50:8.2f} {add99:8.2f} {r['cpu_ms']:10.3f}"
            )
    if "litellm proxy" in results:
        for c in (1, 64):
            ratio = results["tierwise serve"][c]["cpu_ms"] / results["litellm proxy"][c]["cpu_ms"]
            print(f"CPU per request, tierwise / litellm at c={c}: {ratio:.3f} (target <= 0.2)")
    if ERRORS:
        print(f"transport errors (not timed): {ERRORS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
