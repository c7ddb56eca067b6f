"""Client CPU per request: what tierwise costs on top of the HTTP call it makes.

The question (issue 3): how much CPU does ``orch.run(...)`` burn in the *client*
process compared with the cheapest way to make the same call, a raw
``httpx.AsyncClient.post(url, json=body)`` + ``.json()``, or for a stream
``client.stream`` + a minimal SSE parse? Targets (issue 10): ``tierwise single``
≤ 1.05× and ``tierwise Router`` ≤ 1.10× the raw figure, plain and streamed;
with the aiohttp transport, ≤ 2× raw aiohttp. Issue 12: with both exporters on
(Prometheus and OpenTelemetry), ≤ 1.25× the same tierwise row with them off.

Method
------
* ``MockLLMServer`` runs in a separate process (``tierwise mock-server``), so none
  of its CPU lands in the client's account. Every variant talks to the same
  OpenAI-format endpoint (``/v1/chat/completions``) with the same body
  (``{"model", "messages": [one user message]}``) and gets the same reply.
* Client CPU = ``time.process_time()`` (user + system, all threads) of the client
  process across one batch of ``--requests`` requests (default 2000) driven by
  ``--concurrency`` workers (default 32), divided by the number of requests. The
  driver loop is identical for every variant.
* Every variant is built and warmed up (connections opened) first; then each of
  ``--runs`` rounds (default 5) measures *every* variant once, in an order rotated
  by one each round, so machine drift and position effects hit all variants alike.
  Before each measured batch the variant runs ≥ 6 s of unmeasured load, so its
  connection pool is back in steady state (see ``steady()``: without it, httpx
  rows swing by up to 1.7× depending on their position in the round).
  The table shows medians; ``×raw`` is the median of the per-round ratios to raw
  httpx measured in the same round (robust against a noisy, shared machine).
* Variants whose packages are missing are skipped with a note: ``openai`` and
  ``litellm`` come with the ``bench`` extra, the aiohttp transport with ``fast``.

Variants
--------
* ``raw httpx``: the baseline above; ``raw httpx+aiohttp``: the same through
  ``httpx_aiohttp.AiohttpTransport``.
* ``tierwise single``: ``orch.run(prompt)`` through the full stack: strategy →
  executor with a 3-model fallback chain, a rate limiter on every model (rpm/tpm
  far above what the run needs, so nothing ever waits), retry policy, health
  tracking, metrics, cost (prices configured), no cache, audit off.
* ``tierwise Router``: the same plus the classification step:
  ``tw.Router(tw.KeywordClassifier.default(), routes, default="standard")``, every
  label routed to the same chain (so every tierwise row makes the same provider
  call). Skipped on a tierwise without ``tw.Router``.
* ``… +aiohttp``: the tierwise variants with ``http="aiohttp"`` (``fast`` extra).
* ``openai SDK``: ``AsyncOpenAI(base_url=...).chat.completions.create``.
* ``litellm Router``: ``litellm.Router(model_list=[3 models], fallbacks=...)`` +
  ``acompletion``.

Usage::

    python benchmarks/overhead.py                   # table (medians of 5 rounds)
    python benchmarks/overhead.py --json out.json   # also write every measurement
    python benchmarks/overhead.py --only "raw httpx,tierwise single" --runs 3
    python benchmarks/overhead.py --check           # exit 1 if a tierwise row misses its target

To include the openai SDK and LiteLLM rows, run it from an environment that has
them (``pip install -e ".[bench,fast]"``); e.g. a separate venv with tierwise
installed editable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

PROMPT = "Summarise the plot of Hamlet in one sentence."
MODELS = ("mock-primary", "mock-second", "mock-third")
API_KEY = "sk-bench-0123456789abcdef"


def target(name: str) -> float | None:
    """The ratio a tierwise row must stay under (issue 10), ``None`` for baselines."""
    if not name.startswith("tierwise"):
        return None
    if "exporters" in name:
        return 1.25  # issue 12: against the same tierwise row with the exporters off
    if "aiohttp" in name:
        return 2.0
    return 1.10 if "Router" in name else 1.05


# Keep-alive pool big enough for the concurrency, for every httpx-based client.
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256)

Call = Callable[[], Awaitable[str]]
Close = Callable[[], Awaitable[None]]


class Skip(Exception):
    """A variant that cannot run here (package missing); the message says why."""


@dataclass
class Variant:
    name: str
    build: Callable[[str], Awaitable[tuple[Call, Close]]]
    note: str = ""
    #: The raw variant on the same transport, for the "+µs over raw" column.
    raw: str = "raw httpx"


@dataclass
class Result:
    name: str
    cpu_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    #: Against "raw httpx+pool" in the same round (plain httpx rows only): tierwise's own
    #: overhead, with the pool race that stock httpx pays taken out of the baseline.
    ratio_pooled: list[float] = field(default_factory=list)
    extra_us: list[float] = field(default_factory=list)
    raw: str = "raw httpx"
    skipped: str | None = None
    note: str = ""


# ----------------------------------------------------------------------------- variants


def _body(model: str = MODELS[0]) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}]}


async def _raw(base_url: str, client: httpx.AsyncClient) -> tuple[Call, Close]:
    url = base_url + "/v1/chat/completions"
    body = _body()

    async def call() -> str:
        r = await client.post(url, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}")
        data = r.json()
        return str(data["choices"][0]["message"]["content"])

    return call, client.aclose


async def _raw_stream(base_url: str, client: httpx.AsyncClient) -> tuple[Call, Close]:
    """``client.stream`` + a minimal SSE parse: each ``data:`` line's JSON, the
    content deltas joined. It reads to the end of the body, as tierwise does, so
    the connection goes back to the pool: breaking at ``[DONE]`` would close it and
    open a new one per request, which measures connection setup, not parsing."""
    url = base_url + "/v1/chat/completions"
    body = {**_body(), "stream": True, "stream_options": {"include_usage": True}}
    loads = json.loads

    async def call() -> str:
        parts: list[str] = []
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    continue
                for choice in loads(data).get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
        return "".join(parts)

    return call, client.aclose


async def raw_httpx_stream(base_url: str) -> tuple[Call, Close]:
    client = httpx.AsyncClient(limits=LIMITS, headers={"authorization": f"Bearer {API_KEY}"})
    return await _raw_stream(base_url, client)


async def raw_httpx(base_url: str) -> tuple[Call, Close]:
    client = httpx.AsyncClient(limits=LIMITS, headers={"authorization": f"Bearer {API_KEY}"})
    return await _raw(base_url, client)


async def raw_httpx_pooled(base_url: str) -> tuple[Call, Close]:
    """Raw httpx with the connection pool tierwise gives its own clients (``providers/_pool.py``):
    the baseline on an equal footing, so the ratio against it is tierwise's own overhead."""
    from tierwise.providers._pool import hand_out_once

    client = httpx.AsyncClient(limits=LIMITS, headers={"authorization": f"Bearer {API_KEY}"})
    hand_out_once(client._transport)
    return await _raw(base_url, client)


async def raw_httpx_aiohttp(base_url: str) -> tuple[Call, Close]:
    if importlib.util.find_spec("httpx_aiohttp") is None:
        raise Skip('needs httpx-aiohttp (pip install "tierwise[fast]")')
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=LIMITS.max_connections or 0))

    client = httpx.AsyncClient(
        transport=AiohttpTransport(client=session),  # type: ignore[arg-type]
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    return await _raw(base_url, client)


# Label → target for classifying strategies: every label answers on the same chain,
# so all tierwise rows make the same provider call.
ROUTES = {label: "primary" for label in ("complex", "standard", "structured", "bulk")}
StrategyFactory = Callable[[Any], Any]  # the tierwise module → a Strategy


def single(tw: Any) -> Any:
    return tw.Single("primary", name="single")


def router(tw: Any) -> Any:
    if not hasattr(tw, "Router"):
        raise Skip("this tierwise has no tw.Router yet")
    return tw.Router(tw.KeywordClassifier.default(), ROUTES, "standard", name="router")


def _orchestrator(
    base_url: str, http: str, strategy: StrategyFactory, observers: tuple[Any, ...] = ()
) -> Any:
    """Built in code (the same objects ``from_config`` builds) so the transport can be
    chosen: 3 models chained primary → second → third, a limiter on each, prices
    for cost, default retry/health policies, metrics on, no cache, no audit."""
    import tierwise as tw
    from tierwise.execution.limits import RateLimiter
    from tierwise.providers.openai import OpenAI

    provider = OpenAI(api_key=API_KEY, base_url=base_url + "/v1", compat="openai", http=http)
    aliases = ("primary", "second", "third")
    deployments = [
        tw.Deployment(
            alias=alias,
            provider=provider,
            model=model,
            spec=tw.ModelSpec(model, "openai", model=model, input=1.0, output=4.0, context_window=128_000),
            limiter=RateLimiter(rpm=1e9, tpm=1e12, name=alias),
            fallbacks=aliases[i + 1 : i + 2],
        )
        for i, (alias, model) in enumerate(zip(aliases, MODELS, strict=True))
    ]
    return tw.Orchestrator(
        deployments, strategies={"bench": strategy(tw)}, default_strategy="bench", observers=observers
    )


def exporters() -> tuple[Any, ...]:
    """Both exporters on (``_overhead_exporters.py``)."""
    try:
        from _overhead_exporters import exporters as make
    except ImportError as exc:
        raise Skip(f"needs prometheus-client and opentelemetry-sdk (the dev extra): {exc}") from None
    return make()


def tierwise_variant(
    http: str, strategy: StrategyFactory, *, streamed: bool = False, observe: bool = False
) -> Callable[[str], Awaitable[tuple[Call, Close]]]:
    async def build(base_url: str) -> tuple[Call, Close]:
        if http == "aiohttp" and importlib.util.find_spec("httpx_aiohttp") is None:
            raise Skip('needs httpx-aiohttp (pip install "tierwise[fast]")')
        import tierwise as tw

        orch = _orchestrator(base_url, http, strategy, exporters() if observe else ())
        run = orch.run
        stream = orch.stream
        done_type = tw.Done

        async def call() -> str:
            return str((await run(PROMPT)).text)

        async def call_streamed() -> str:
            text = ""
            async for event in stream(PROMPT):
                if isinstance(event, done_type):
                    text = event.response.text
            return str(text)

        return (call_streamed if streamed else call), orch.aclose

    return build


async def openai_sdk(base_url: str) -> tuple[Call, Close]:
    if importlib.util.find_spec("openai") is None:
        raise Skip('needs openai (pip install "tierwise[bench]")')
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url + "/v1", api_key=API_KEY)
    create = client.chat.completions.create
    messages: Any = [{"role": "user", "content": PROMPT}]

    async def call() -> str:
        r = await create(model=MODELS[0], messages=messages)
        return str(r.choices[0].message.content)

    return call, client.close


async def litellm_router(base_url: str) -> tuple[Call, Close]:
    if importlib.util.find_spec("litellm") is None:
        raise Skip('needs litellm (pip install "tierwise[bench]")')
    # No network at import (bundled price map), no telemetry, no debug banner.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    names = ("primary", "second", "third")
    router = litellm.Router(
        model_list=[
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": base_url + "/v1",
                    "api_key": API_KEY,
                },
            }
            for name, model in zip(names, MODELS, strict=True)
        ],
        fallbacks=[{"primary": ["second"]}, {"second": ["third"]}],
    )
    messages = [{"role": "user", "content": PROMPT}]

    async def call() -> str:
        r = await router.acompletion(model="primary", messages=messages)
        return str(r.choices[0].message.content)

    async def close() -> None:
        # LiteLLM caches its clients module-wide; nothing to close per router.
        return None

    return call, close


VARIANTS: list[Variant] = [
    Variant("raw httpx", raw_httpx, "baseline: post(json=) + .json()"),
    Variant(
        "raw httpx+pool",
        raw_httpx_pooled,
        "the same with tierwise's hand-out-once pool; tierwise rows against it: + 'vs raw httpx+pool' below",
    ),
    Variant("raw httpx+aiohttp", raw_httpx_aiohttp, "fast: httpx_aiohttp transport", "raw httpx+aiohttp"),
    Variant("tierwise single", tierwise_variant("httpx", single), "orch.run, single strategy"),
    Variant(
        "tierwise Router",
        tierwise_variant("httpx", router),
        "orch.run, tw.Router + KeywordClassifier.default()",
    ),
    Variant(
        "tierwise single+aiohttp",
        tierwise_variant("aiohttp", single),
        'http="aiohttp"',
        "raw httpx+aiohttp",
    ),
    Variant(
        "tierwise Router+aiohttp",
        tierwise_variant("aiohttp", router),
        'http="aiohttp"',
        "raw httpx+aiohttp",
    ),
    Variant("raw httpx stream", raw_httpx_stream, "baseline: client.stream + SSE parse", "raw httpx stream"),
    Variant(
        "tierwise single stream",
        tierwise_variant("httpx", single, streamed=True),
        "orch.stream, single strategy",
        "raw httpx stream",
    ),
    Variant(
        "tierwise Router stream",
        tierwise_variant("httpx", router, streamed=True),
        "orch.stream, tw.Router",
        "raw httpx stream",
    ),
    Variant(
        "tierwise single+exporters",
        tierwise_variant("httpx", single, observe=True),
        "Prometheus + OTel (SDK, batch span processor) on; ×raw is against tierwise single",
        "tierwise single",
    ),
    Variant(
        "tierwise single stream+exporters",
        tierwise_variant("httpx", single, streamed=True, observe=True),
        "as above, streamed; against tierwise single stream",
        "tierwise single stream",
    ),
    Variant("openai SDK", openai_sdk, "AsyncOpenAI.chat.completions.create"),
    Variant("litellm Router", litellm_router, "Router.acompletion, 3 models + fallbacks"),
]


# ----------------------------------------------------------------------------- measuring


@contextlib.contextmanager
def server_process(python: str) -> Iterator[str]:
    """``tierwise mock-server`` in its own process, recording no requests."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"record_limit": 0}, f)
        config = f.name
    code = (
        "from tierwise.testing.mock_server import main_mock_server; "
        f"raise SystemExit(main_mock_server(['--port', '0', '--config', {config!r}]))"
    )
    proc = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE, text=True)
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


async def drive(call: Call, total: int, concurrency: int) -> tuple[float, float]:
    """Run ``total`` calls on ``concurrency`` workers: (CPU seconds, wall seconds)."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    gc.collect()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - t0


async def steady(call: Call, args: argparse.Namespace) -> None:
    """Bring a client back to steady state before it is measured.

    While the other variants ran, this client's keep-alive connections expired
    (httpx's default keep-alive is 5 s). Its first requests then open a burst of
    ``--concurrency`` new connections, and the pool only shrinks back to what the
    load really needs once the surplus idles out again, another 5 s later. httpcore's
    pool bookkeeping costs O(connections²) per request, so a batch measured during
    that phase costs up to 1.7× more CPU than the same batch in steady state, and
    which variant pays it would depend on its position in the round. So: at least
    ``--round-warmup`` requests and ``--round-warmup-s`` seconds of load first.
    """
    deadline = time.perf_counter() + args.round_warmup_s
    await drive(call, args.round_warmup, args.concurrency)
    while time.perf_counter() < deadline:
        await drive(call, max(1, args.round_warmup), args.concurrency)


async def measure(base_url: str, variants: list[Variant], args: argparse.Namespace) -> list[Result]:
    results = [Result(v.name, note=v.note, raw=v.raw) for v in variants]
    live: list[tuple[Variant, Result, Call, Close]] = []
    for v, res in zip(variants, results, strict=True):
        try:
            call, close = await v.build(base_url)
        except Skip as exc:
            res.skipped = str(exc)
            continue
        text = await call()
        if not text:
            raise RuntimeError(f"{v.name}: empty reply")
        live.append((v, res, call, close))
    try:
        for _, _, call, _ in live:  # open every keep-alive connection, fill caches
            await drive(call, args.warmup, args.concurrency)
        for rnd in range(args.runs):
            k = rnd % len(live) if live else 0
            order = live[k:] + live[:k]
            base_cpu: float | None = None
            measured: dict[str, float] = {}
            for v, res, call, _ in order:
                await steady(call, args)
                cpu, wall = await drive(call, args.requests, args.concurrency)
                us = cpu / args.requests * 1e6
                res.cpu_us.append(us)
                res.rps.append(args.requests / wall)
                measured[v.name] = us
            # Each row against the raw row of its own kind (plain, streamed, aiohttp)
            # measured in the same round; rows without one against raw httpx.
            for _, res, _, _ in live:
                base_cpu = measured.get(res.raw) or measured.get("raw httpx")
                if base_cpu:
                    res.ratio.append(measured[res.name] / base_cpu)
                if res.raw in measured:
                    res.extra_us.append(measured[res.name] - measured[res.raw])
                pooled = measured.get("raw httpx+pool")
                if pooled and res.raw == "raw httpx" and res.name != "raw httpx+pool":
                    res.ratio_pooled.append(measured[res.name] / pooled)
            if not args.quiet:
                line = "  ".join(f"{n}={us:.0f}" for n, us in measured.items())
                print(f"round {rnd + 1}/{args.runs} (µs/req): {line}", file=sys.stderr, flush=True)
    finally:
        for _, _, _, close in live:
            with contextlib.suppress(Exception):
                await close()
    return results


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tierwise": _version("tierwise"),
        "httpx": _version("httpx"),
        "httpcore": _version("httpcore"),
        "anyio": _version("anyio"),
        "sniffio": _version("sniffio") if importlib.util.find_spec("sniffio") else "not installed",
        "httpx-aiohttp": _version("httpx-aiohttp"),
        "aiohttp": _version("aiohttp"),
        "openai": _version("openai"),
        "litellm": _version("litellm"),
    }


def table(results: list[Result], args: argparse.Namespace) -> str:
    rows = [("variant", "CPU µs/req", "×raw", "×raw+pool", "req/s", "CPU spread", "+µs vs raw", "notes")]
    for r in results:
        if r.skipped:
            rows.append((r.name, "-", "-", "-", "-", "-", "-", f"skipped: {r.skipped}"))
            continue
        cpu = statistics.median(r.cpu_us)
        ratio = f"{statistics.median(r.ratio):.2f}×" if r.ratio else "-"
        pooled = f"{statistics.median(r.ratio_pooled):.2f}×" if r.ratio_pooled else "-"
        spread = f"{min(r.cpu_us):.0f}–{max(r.cpu_us):.0f}"
        extra = "-" if r.name == r.raw or not r.extra_us else f"{statistics.median(r.extra_us):+.0f}"
        rps = f"{statistics.median(r.rps):,.0f}"
        rows.append((r.name, f"{cpu:.0f}", ratio, pooled, rps, spread, extra, r.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:7], widths[1:7], strict=True)]
        cells.append(row[7])
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("-" * len(lines[0]))
    env = environment()
    head = (
        f"client CPU per request, median of {args.runs} interleaved rounds; {args.requests} requests/round, "
        f"concurrency {args.concurrency}; MockLLMServer in a separate process\n"
        + ", ".join(f"{k} {v}" for k, v in env.items())
    )
    foot = (
        "×raw: median of per-round ratios to the raw row of the same kind in the same round (raw httpx; "
        "raw httpx stream for streamed rows; raw httpx+aiohttp for +aiohttp rows).\n"
        "×raw+pool: the same against raw httpx with tierwise's hand-out-once pool (plain httpx rows): "
        "stock httpx retries requests that reach its pool together, tierwise's own clients do not, "
        "so this is the library's own overhead.\n"
        "Targets: tierwise single ≤ 1.05×, tierwise Router ≤ 1.10× (plain and streamed); "
        "+aiohttp rows ≤ 2×; +exporters rows ≤ 1.25× their tierwise row.\n+µs vs raw: median per-round difference to that raw row "
        "(what the library itself adds)."
    )
    return f"{head}\n\n" + "\n".join(lines) + f"\n\n{foot}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds (the table shows medians)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per variant")
    parser.add_argument(
        "--round-warmup", type=int, default=200, help="unmeasured requests before each measured batch"
    )
    parser.add_argument(
        "--round-warmup-s",
        type=float,
        default=6.0,
        help="and at least this many seconds of load (> httpx's 5 s keep-alive expiry; see steady())",
    )
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--server-url", help="use a running mock server instead of starting one")
    parser.add_argument("--server-python", default=sys.executable, help="interpreter for the mock server")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a tierwise row is over its target ratio"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")
    parser.add_argument("--list", action="store_true", help="list variant names and exit")
    args = parser.parse_args()

    if args.list:
        for v in VARIANTS:
            print(f"{v.name}: {v.note}")
        return 0
    variants = VARIANTS
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        by_name = {v.name: v for v in VARIANTS}
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; --list shows them")
        variants = [by_name[n] for n in wanted]

    # A plain SIGTERM would skip the finally blocks that stop the server process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.server_url:
        results = asyncio.run(measure(args.server_url, variants, args))
    else:
        with server_process(args.server_python) as base_url:
            results = asyncio.run(measure(base_url, variants, args))
    print(table(results, args))
    if args.json:
        data = {
            "environment": environment(),
            "requests": args.requests,
            "concurrency": args.concurrency,
            "runs": args.runs,
            "results": [r.__dict__ for r in results],
        }
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
    if args.check:
        over = []
        for r in results:
            limit = target(r.name)
            if limit is not None and r.ratio and statistics.median(r.ratio) > limit:
                over.append(f"{r.name} ({statistics.median(r.ratio):.2f}× > {limit}×)")
        if over:
            print(f"over target: {', '.join(over)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
