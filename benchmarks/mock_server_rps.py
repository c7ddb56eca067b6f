"""Requests per second of MockLLMServer on one core.

The server runs in a separate process (default) or in a thread with its own event
loop, so it does not share a loop with the client. The default client is a lean
raw-asyncio keep-alive client (it measures the server, not the client); ``--client
httpx`` measures what an httpx-based test suite will actually see.

    python benchmarks/mock_server_rps.py                       # JSON, raw client, 32 connections
    python benchmarks/mock_server_rps.py --client httpx
    python benchmarks/mock_server_rps.py --stream --provider anthropic

Prints each run's requests/s and the median of ``--runs`` runs, and (server in a
process, on Linux) the requests per CPU-second of the server process: what "on one
core" means, and unlike wall-clock requests/s it does not fall when other work
shares the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

PATHS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/{model}:generateContent",
}


def make_body(provider: str, model: str, stream: bool) -> bytes:
    prompt = "Summarise the plot of Hamlet in one sentence."
    if provider == "gemini":
        body: dict[str, object] = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 256}
        if stream:
            body["stream"] = True
            if provider == "openai":
                body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def make_path(provider: str, model: str, stream: bool) -> str:
    if provider == "gemini" and stream:
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
    return PATHS[provider].format(model=model)


_SERVER_PID: list[int] = []


def server_cpu_s() -> float | None:
    """CPU seconds (user + system) the server process has used so far, from
    /proc (Linux); None where that is not available (thread mode, other OSes)."""
    if not _SERVER_PID:
        return None
    try:
        with open(f"/proc/{_SERVER_PID[0]}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat(5) (utime, stime), counted after the "(comm)" field.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process() -> Iterator[str]:
    code = "from tierwise.testing.mock_server import main_mock_server; raise SystemExit(main_mock_server(['--port', '0']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    _SERVER_PID[:] = [proc.pid]
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


@contextlib.contextmanager
def server_thread() -> Iterator[str]:
    from tierwise.testing.mock_server import MockLLMServer

    with MockLLMServer.run_in_thread(record_limit=1000) as server:
        yield server.base_url


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    idx = lower.find(b"content-length:")
    if idx >= 0:
        end = lower.index(b"\r\n", idx)
        await reader.readexactly(int(lower[idx + 15 : end]))
    else:  # chunked
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def run_raw(base_url: str, path: str, body: bytes, total: int, concurrency: int) -> float:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while remaining > 0:
                remaining -= 1
                writer.write(request)
                status = await read_response(reader)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def run_httpx(
    base_url: str, path: str, body: bytes, total: int, concurrency: int, stream: bool
) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    remaining = total
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                if stream:
                    async with client.stream("POST", path, content=body, headers=headers) as resp:
                        async for _ in resp.aiter_bytes():
                            pass
                else:
                    resp = await client.post(path, content=body, headers=headers)
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--mode", choices=("process", "thread"), default="process")
    parser.add_argument("--provider", choices=sorted(PATHS), default="openai")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()

    model = "gemini-2.0-flash" if args.provider == "gemini" else "mock-model"
    body = make_body(args.provider, model, args.stream)
    path = make_path(args.provider, model, args.stream)
    server = server_process() if args.mode == "process" else server_thread()

    async def one(base_url: str, n: int) -> float:
        if args.client == "raw":
            return await run_raw(base_url, path, body, n, args.concurrency)
        return await run_httpx(base_url, path, body, n, args.concurrency, args.stream)

    with server as base_url:
        asyncio.run(one(base_url, min(2000, args.requests)))  # warm-up
        results = []
        per_cpu: list[float] = []
        for i in range(args.runs):
            cpu0 = server_cpu_s()
            rps = asyncio.run(one(base_url, args.requests))
            cpu1 = server_cpu_s()
            results.append(rps)
            line = f"run {i + 1}: {rps:,.0f} req/s"
            if cpu0 is not None and cpu1 is not None and cpu1 > cpu0:
                per_cpu.append(args.requests / (cpu1 - cpu0))
                line += f", {per_cpu[-1]:,.0f} req per server CPU-second"
            print(line)
    kind = "SSE" if args.stream else "JSON"
    print(
        f"median: {statistics.median(results):,.0f} req/s "
        f"({args.provider} {kind}, {args.client} client, {args.mode}, "
        f"concurrency {args.concurrency}, {args.requests} requests/run)"
    )
    if per_cpu:
        print(f"median: {statistics.median(per_cpu):,.0f} requests per server CPU-second (one core)")


if __name__ == "__main__":
    main()
