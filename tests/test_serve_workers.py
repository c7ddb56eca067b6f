"""``tierwise serve`` as real processes: ``--workers 4`` sharing a per-key rpm limit
through a real redis-server (counted at the mock), and a graceful shutdown that
finishes a stream in flight, within the ``--drain-s`` bound."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from _redis_helpers import REDIS_SERVER, RedisServer, state_toml
from _serve_helpers import serve_process, write_config
from tierwise.serve import hash_key
from tierwise.testing import MockLLMServer, MockModel

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

KEY = "sk-worker-test-key-42"
SLOW = "abcd" * 30


def _text(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockLLMServer]:
    models = {
        "gpt-mock": MockModel(input_tokens=5, output_tokens=5),
        # 30 chunks, 100 ms apart: a stream that is still running when shutdown starts.
        "slow-mock": MockModel(reply=SLOW, tokens_per_chunk=1, stream_chunk_delay_ms=100),
    }
    with MockLLMServer.run_in_thread(models) as srv:
        yield srv


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TW_SERVE_MOCK_KEY": "sk-upstream", **extra}


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_per_key_rpm_holds_across_four_workers(mock: MockLLMServer, tmp_path: Path) -> None:
    pytest.importorskip("redis")
    redis = RedisServer()
    redis.start()
    try:
        prefix = f"s{uuid.uuid4().hex[:8]}:"
        state = state_toml("redis", prefix)
        cfg = write_config(tmp_path, mock.base_url, state)
        keys = f'[keys.team]\nsha256 = "{hash_key(KEY)}"\ntags = {{ team = "t" }}\nrpm = 5\n'
        env = _env(REDIS_URL=redis.url, TIERWISE_API_KEYS=keys)
        with serve_process(cfg, env, workers=4) as (base, _proc):
            before = mock.stats["gpt-mock"].requests if "gpt-mock" in mock.stats else 0

            def one(i: int) -> int:
                # A new connection each time, so the kernel spreads them over the workers.
                r = httpx.post(
                    base + "/v1/chat/completions",
                    json={"model": "gpt", "messages": [{"role": "user", "content": f"n{i}"}]},
                    headers={"authorization": f"Bearer {KEY}"},
                    timeout=30,
                )
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
                return r.status_code

            with ThreadPoolExecutor(16) as pool:
                codes = list(pool.map(one, range(40)))
            sent = mock.stats["gpt-mock"].requests - before
    finally:
        redis.stop()
    assert codes.count(200) == 5 and codes.count(429) == 35, codes
    assert sent == 5  # what reached the provider: the limit held across the four workers


def test_shutdown_finishes_the_stream_in_flight(mock: MockLLMServer, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, mock.base_url, '[models.slow]\nprovider = "oai"\nmodel = "slow-mock"\n')
    with serve_process(cfg, _env(), extra_args=("--drain-s", "20")) as (base, proc):
        received: list[str] = []
        first = threading.Event()

        def read() -> None:
            body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]}
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=30) as r:
                for line in r.iter_lines():
                    received.append(line)
                    first.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert first.wait(10)
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        reader.join(30)
        proc.wait(30)
    assert "data: [DONE]" in received  # the stream ran to its end after SIGTERM
    assert _text(received) == SLOW
    assert time.monotonic() - start < 20


def test_shutdown_is_bounded_by_drain_s(mock: MockLLMServer, tmp_path: Path) -> None:
    slow = '[models.slow]\nprovider = "oai"\nmodel = "slow-mock"\n'
    cfg = write_config(tmp_path, mock.base_url, slow)
    with serve_process(cfg, _env(), extra_args=("--drain-s", "1")) as (base, proc):
        first = threading.Event()
        received: list[str] = []

        def read() -> None:
            body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]}
            try:
                with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=30) as r:
                    for line in r.iter_lines():
                        received.append(line)
                        first.set()
            except httpx.HTTPError:
                pass

        reader = threading.Thread(target=read)
        reader.start()
        assert first.wait(10)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        stopped = time.monotonic() - start
        reader.join(10)
    # The 3 s stream was cut at the 1 s bound, not waited for.
    assert stopped < 2.8, stopped
    assert "data: [DONE]" not in received and 0 < len(_text(received)) < len(SLOW)
