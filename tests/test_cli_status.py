"""``tierwise status``: the shared picture, read from a real ``redis-server`` after
another process has worked on it (text and ``--json``); the memory backend's
honest "no shared state"; and an unreachable Redis (exit 1, bounded)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from _redis_helpers import REDIS_SERVER, RedisServer, free_port, run_workers, state_toml, worker_env
from tierwise.cli import main
from tierwise.testing import MockLLMServer, MockModel

redis = pytest.importorskip("redis")
pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    pytest.mark.timeout(120),
]

# 16 output tokens at $976.5625/M: exactly 1/64 dollar per call, input free.
_OUT_PRICE = 976.5625


def _config(tmp: Path, base_url: str, backend: str) -> Path:
    state = state_toml(backend, f"ts{uuid.uuid4().hex[:8]}:")
    text = f"""
[providers.mock]
type = "openai"
base_url = "{base_url}/v1"
api_key_env = "MOCK_KEY"

[models.flaky]
provider = "mock"
model = "flaky"
rpm = 100
tpm = 100000
max_concurrency = 4
input_price = 0.0
output_price = {_OUT_PRICE}
fallbacks = ["steady"]

[models.steady]
provider = "mock"
model = "steady"
input_price = 0.0
output_price = {_OUT_PRICE}

[retry]
max_attempts = 1

[health]
failure_threshold = 1
cooldown_s = 600

[budget]
limits = [
  {{ limit_usd = 1.0, period = "day", scope = "total" }},
  {{ limit_usd = 0.5, period = "month", scope = "model:steady" }},
  {{ limit_usd = 0.1, period = "day", scope = "tag:user" }},
]

[cache]
ttl_s = 600

[logging]
level = "off"

{state}
"""
    path = tmp / "tierwise.toml"
    path.write_text(text)
    return path


def _env(redis_server: RedisServer) -> dict[str, str]:
    return worker_env(redis_server.url, "sk-test-status")


@pytest.fixture
def worked(tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config whose shared state another process has used: ``flaky`` failed once
    (its circuit is open), ``steady`` answered 3 distinct prompts (3 × $1/64)."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOCK_KEY", "sk-test-status")
    models = {"flaky": MockModel(faults=["500"], cycle_faults=True), "steady": MockModel(output_tokens=16)}
    with MockLLMServer.run_in_thread(models) as server:
        cfg = _config(tmp_path, server.base_url, "redis")
        env = _env(redis_server)
        for prompt in ("one", "two", "three"):
            (result,) = run_workers(cfg, 1, {"n": 1, "prompt": prompt}, env)
            assert result["ok"] == 1
        assert server.stats["flaky"].requests == 1  # the circuit kept the later ones away
        assert server.stats["steady"].requests == 3
        yield cfg


def test_status_json_shows_the_shared_picture(worked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(worked), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["backend"] == "redis" and status["shared"] is True
    flaky, steady = status["deployments"]["flaky"], status["deployments"]["steady"]
    # The limiter counted the one request that reached flaky, in every process's window.
    assert flaky["limits"]["requests_in_window"] == 1
    assert flaky["limits"]["in_flight"] == 0
    assert (flaky["limits"]["rpm"], flaky["limits"]["max_concurrency"]) == (100, 4)
    assert flaky["circuit"]["state"] == "cooling"
    assert flaky["circuit"]["cooldown_remaining_s"] > 500
    assert steady["limits"] is None and steady["circuit"]["state"] == "healthy"
    # Budget: 3 answers at $1/64 on steady, nothing left reserved.
    assert steady["budget"]["day"] == {"spent_usd": 3 / 64, "reserved_usd": 0.0, "limit_usd": None}
    assert steady["budget"]["month"]["limit_usd"] == 0.5
    assert flaky["budget"]["day"]["spent_usd"] == 0.0
    assert status["budget"]["total"]["day"] == {"spent_usd": 3 / 64, "reserved_usd": 0.0, "limit_usd": 1.0}
    assert "tag:user" not in status["budget"]  # per-user buckets are not listed
    assert status["cache"]["entries"] == 3


def test_status_text_shows_the_same(worked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(worked)]) == 0
    out = capsys.readouterr().out
    assert "backend: redis" in out
    assert "requests 1/100 per minute" in out and "in flight 0/4" in out
    assert "circuit: cooling" in out and "circuit: healthy" in out
    assert "today $0.0469 spent + $0.0000 reserved of $1.0000" in out
    assert "cache: 3 entries shared" in out


def test_status_on_the_memory_backend_says_there_is_no_shared_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOCK_KEY", "sk-test-status")
    cfg = _config(tmp_path, "http://127.0.0.1:9", "memory")
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "no shared state" in out and "circuit: healthy" in out
    assert main(["status", "--config", str(cfg), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["backend"] == "memory" and status["shared"] is False
    assert status["deployments"]["flaky"]["limits"]["requests_in_window"] == 0
    assert status["budget"]["total"]["day"]["spent_usd"] == 0.0
    assert status["cache"] is None


def test_status_with_redis_unreachable_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("MOCK_KEY", "sk-test-status")
    cfg = _config(tmp_path, "http://127.0.0.1:9", "redis")
    t0 = time.monotonic()
    assert main(["status", "--config", str(cfg), "--json"]) == 1
    assert time.monotonic() - t0 < 10
    captured = capsys.readouterr()
    assert json.loads(captured.out)["shared"] is False
    assert "redis unavailable" in captured.err
