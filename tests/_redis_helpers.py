"""A real ``redis-server`` for the shared-state tests, and the worker process they run.

``RedisServer`` starts ``redis-server`` on a free loopback port (no persistence),
and can stop and restart it on the same port (the "Redis down mid-run" tests).
Run as a script, this module is one application process: it builds an
Orchestrator from a config file and sends requests, then prints a JSON summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(500):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class SlowProxy:
    """A loopback TCP proxy in front of Redis that can hold every reply back by
    ``delay`` seconds (the "Redis slow" tests): requests still reach Redis, the
    answers come late. Runs on the test's own event loop."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delayed: bool) -> None:
            try:
                while data := await src.read(65536):
                    if delayed and self.delay:
                        await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for t in (
            asyncio.ensure_future(pump(reader, up_w, False)),
            asyncio.ensure_future(pump(up_r, writer, True)),
        ):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def state_toml(backend: str, prefix: str, extra: str = "") -> str:
    """The ``[state]`` table of a test config: the memory backend, or Redis under
    ``prefix`` (unique per test, so tests sharing a server never see each other's keys)
    with the tests' 2 s timeout and any ``extra`` keys."""
    if backend == "memory":
        return '[state]\nbackend = "memory"\n'
    return f'[state]\nbackend = "redis"\nkey_prefix = "{prefix}"\ntimeout_s = 2.0\n{extra}\n'


def worker_env(redis_url: str, mock_key: str) -> dict[str, str]:
    """The environment of a worker process: the Redis URL, the mock's key, and
    this checkout's ``src`` (and ``tests``, for this module) on ``PYTHONPATH``."""
    import os

    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env["MOCK_KEY"] = mock_key
    src = str(Path(__file__).resolve().parents[1] / "src")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, root, env.get("PYTHONPATH", "")])
    return env


def run_workers(
    config: Path, n_procs: int, args: dict[str, Any], env: dict[str, str], *, timeout: float = 90.0
) -> list[dict[str, Any]]:
    """Start ``n_procs`` worker processes at once and collect their summaries.

    Bounded: a worker still running ``timeout`` seconds after the start is killed
    (all of them are, on any failure), so a stuck worker fails the test instead of
    hanging it or outliving it."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(config), json.dumps(args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(n_procs)
    ]
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                # The worker's watchdog printed its threads and tasks by now: show them.
                raise AssertionError(
                    f"worker stuck after {timeout} s:\n{(exc.stderr or b'').decode()[-6000:]}"
                ) from None
            assert p.returncode == 0, stderr.decode()[-2000:]
            out.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


async def _main(config: str, args: dict[str, Any]) -> dict[str, Any]:
    import tierwise as tw

    n = int(args.get("n", 10))
    conc = int(args.get("concurrency", n))
    max_tokens = int(args.get("max_tokens", 16))
    prompt = args.get("prompt", "hello")
    errors: Counter[str] = Counter()
    ok = 0
    cached = 0
    sem = asyncio.Semaphore(conc)
    tokens = 0
    # What answered each request, in order (``turns``: one request after another,
    # each ``{"prompt": ..., "metadata": ...}``; the sticky-conversation tests).
    models: list[str] = []
    turns = args.get("turns")
    async with tw.Orchestrator.from_config(config) as orch:
        if args.get("wait_cooling"):
            for _ in range(200):
                if orch.health()[args["wait_cooling"]]["state"] == "cooling":
                    break
                await asyncio.sleep(0.05)
        if args.get("barrier"):
            # Start together: each worker says it is ready, then waits (bounded) for
            # all ``barrier_n`` of them, so their requests overlap.
            barrier = str(args["barrier"])
            os.close(os.open(os.path.join(barrier, str(os.getpid())), os.O_CREAT | os.O_WRONLY))
            for _ in range(3000):
                if len(os.listdir(barrier)) >= int(args["barrier_n"]):
                    break
                await asyncio.sleep(0.01)

        async def one(turn: dict[str, Any] | None = None) -> None:
            nonlocal ok, tokens, cached
            async with sem:
                try:
                    text = prompt if turn is None else turn["prompt"]
                    metadata = None if turn is None else turn.get("metadata")
                    resp = await orch.run(
                        tw.Request.from_prompt(text, max_tokens=max_tokens), metadata=metadata
                    )
                    ok += 1
                    cached += resp.cached
                    models.append(resp.deployment or resp.model)
                    tokens += resp.usage.input_tokens + resp.usage.output_tokens
                except Exception as exc:
                    inner = getattr(exc, "exceptions", None)
                    errors[type(inner[-1] if inner else exc).__name__] += 1

        if turns is not None:
            for turn in turns:
                await one(turn)
        else:
            await asyncio.gather(*(one() for _ in range(n)))
        health = orch.health()
        trips = orch.state.round_trips if orch.state is not None else 0
        stats = orch.state.stats() if orch.state is not None else {}
    return {
        "ok": ok,
        "errors": dict(errors),
        "health": health,
        "round_trips": trips,
        "tokens": tokens,
        "cached": cached,
        "models": models,
        "stats": stats,
    }


def _watchdog(loop: asyncio.AbstractEventLoop, after_s: float) -> None:
    """A worker still running after ``after_s`` prints every thread's stack and
    every asyncio task's (so a stuck worker says where it is stuck)."""
    import faulthandler
    import threading

    def dump_tasks() -> None:
        for task in asyncio.all_tasks(loop):
            task.print_stack(limit=30, file=sys.stderr)
        sys.stderr.flush()

    def fire() -> None:
        print(f"watchdog: worker still running after {after_s} s", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr)
        loop.call_soon_threadsafe(dump_tasks)

    timer = threading.Timer(after_s, fire)
    timer.daemon = True
    timer.start()


async def _watched(config: str, args: dict[str, Any]) -> dict[str, Any]:
    _watchdog(asyncio.get_running_loop(), float(args.get("watchdog_s", 60.0)))
    return await _main(config, args)


if __name__ == "__main__":
    result = asyncio.run(_watched(sys.argv[1], json.loads(sys.argv[2])))
    print(json.dumps(result))
