"""Fault soak on real sockets: 2,000 requests through a 3-model chain that keeps failing.

The primary fails ~30% of the time (429 with retry-after, 503, 529, connection
resets, truncated bodies and streams), the secondary ~10%, the tertiary never.
Half the requests are ``orch.run``, half ``orch.stream``, 64 at a time. What must
hold (issue 3): every request succeeds; each response's ``attempts`` lists each
failure, and the client's failures match the faults the server injected one for
one; the metrics' fallback count equals the requests not served by the primary;
after ``aclose()`` no socket, task or unclosed resource is left.

The primary speaks the Anthropic wire format and the others OpenAI's, so both
adapters' error mapping is under fire. Retries are on (2 attempts, millisecond
backoffs, 10 ms retry-after) so the retry path is soaked too without making the
test slow.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import anyio
import pytest

from tierwise.catalog import ModelSpec
from tierwise.execution.executor import Deployment
from tierwise.execution.health import HealthTracker
from tierwise.execution.retry import RetryPolicy
from tierwise.orchestrator import Orchestrator
from tierwise.providers.anthropic import Anthropic
from tierwise.providers.openai import OpenAI
from tierwise.testing import MockLLMServer, MockModel
from tierwise.types import Done, Response, TextDelta

pytestmark = pytest.mark.slow

N_REQUESTS = 2_000
CONCURRENCY = 64
PRIMARY_FAULTS = {"429": 0.06, "503": 0.06, "529": 0.06, "reset": 0.06, "truncate": 0.06}
SECONDARY_FAULTS = {"503": 0.05, "reset": 0.05}
REPLIES = {
    "primary": "Primary answer, long enough to be streamed in several chunks.",
    "secondary": "Secondary answer, also streamed in a few chunks.",
    "tertiary": "Tertiary answer.",
}


def established(port: int) -> int:
    """ESTABLISHED TCP connections with ``port`` at either end, from the kernel's table."""
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            f = line.split()
            ports = (int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16))
            if f[3] == "01" and port in ports:
                count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="counts sockets from /proc/net/tcp")
async def test_two_thousand_requests_through_a_failing_chain_all_succeed() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        await _soak()
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks[:5]]
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not others, others


async def _soak() -> None:
    models = {
        "primary": MockModel(
            reply=REPLIES["primary"], fault_rates=PRIMARY_FAULTS, fault_after_chunks=0, retry_after_s=0.01
        ),
        "secondary": MockModel(
            reply=REPLIES["secondary"], fault_rates=SECONDARY_FAULTS, fault_after_chunks=0
        ),
        "tertiary": MockModel(reply=REPLIES["tertiary"]),
    }
    async with MockLLMServer(models, seed=1234, record_limit=0) as server:
        anthropic = Anthropic(api_key="test-key-not-secret", base_url=server.base_url)
        openai = OpenAI(base_url=server.base_url + "/v1", compat="vllm")
        orch = Orchestrator(
            [
                Deployment(
                    "primary",
                    anthropic,
                    "primary",
                    spec=ModelSpec("primary", "anthropic", input=1.0, output=4.0),
                    fallbacks=("secondary",),
                ),
                Deployment(
                    "secondary",
                    openai,
                    "secondary",
                    spec=ModelSpec("secondary", "vllm", input=1.0, output=4.0),
                    fallbacks=("tertiary",),
                ),
                Deployment(
                    "tertiary", openai, "tertiary", spec=ModelSpec("tertiary", "vllm", input=1.0, output=4.0)
                ),
            ],
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.005, max_retry_after=0.05),
            health=HealthTracker(failure_threshold=5, cooldown_s=0.05, window_s=1.0),
            seed=42,
        )
        responses: list[tuple[str, Response, str | None]] = []  # (kind, response, streamed text)
        failures: list[BaseException] = []
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < N_REQUESTS:
                i = next_index
                next_index += 1
                prompt = f"request {i}"
                try:
                    if i % 2:
                        text = ""
                        final: Response | None = None
                        async for event in orch.stream(prompt):
                            if isinstance(event, TextDelta):
                                text += event.text
                            elif isinstance(event, Done):
                                final = event.response
                        assert final is not None
                        responses.append(("stream", final, text))
                    else:
                        responses.append(("run", await orch.run(prompt), None))
                except Exception as exc:
                    failures.append(exc)

        start = time.monotonic()
        async with orch:
            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(worker)
            snapshot = orch.metrics.snapshot()
        elapsed = time.monotonic() - start
        print(f"\n{N_REQUESTS} requests in {elapsed:.1f} s ({N_REQUESTS / elapsed:.0f}/s)", file=sys.stderr)

        # Every request succeeded, half of each kind.
        assert not failures, failures[:3]
        assert len(responses) == N_REQUESTS
        assert Counter(kind for kind, _, _ in responses) == {"run": 1000, "stream": 1000}

        client_errors: Counter[tuple[str, str]] = Counter()
        client_calls: Counter[str] = Counter()
        for kind, resp, streamed in responses:
            attempts = resp.attempts
            assert attempts[-1].outcome == "ok" and attempts[-1].model == resp.deployment
            assert all(a.outcome == "error" and a.error_type for a in attempts[:-1])
            assert resp.fallback == (resp.deployment != "primary")
            assert resp.text == REPLIES[resp.deployment]
            if kind == "stream":
                assert streamed == resp.text, "streamed text must match the final answer, with no duplicates"
            assert resp.cost_usd is not None and resp.cost_usd > 0
            for a in attempts:
                client_calls[a.model] += 1
                if a.outcome == "error":
                    client_errors[(a.model, a.error_type or "")] += 1

        # The client saw exactly the calls and faults the server made.
        stats = server.stats
        for name in ("primary", "secondary", "tertiary"):
            if name in stats:
                assert client_calls[name] == stats[name].requests, name
        server_faults = {name: sum(stats[name].faults.values()) for name in ("primary", "secondary")}
        assert sum(n for (m, _), n in client_errors.items() if m == "primary") == server_faults["primary"]
        assert sum(n for (m, _), n in client_errors.items() if m == "secondary") == server_faults["secondary"]
        assert "tertiary" not in {m for m, _ in client_errors}
        # The mix really was a mix: every fault kind happened, on runs and streams.
        assert set(stats["primary"].faults) == set(PRIMARY_FAULTS)
        assert 0.2 < server_faults["primary"] / stats["primary"].requests < 0.4
        assert {t for (m, t), _ in client_errors.items() if m == "primary"} >= {
            "RateLimitError",
            "ServerError",
            "ProtocolError",
        }

        # Metrics agree with the responses.
        not_primary = sum(1 for _, r, _ in responses if r.deployment != "primary")
        assert not_primary > 0
        req = snapshot["requests"]
        assert req["total"] == N_REQUESTS
        assert req["errors"]["total"] == 0
        assert req["fallbacks"] == not_primary
        assert req["attempts"] == sum(client_calls.values())
        assert req["attempt_errors"] == sum(client_errors.values())
        for name in ("primary", "secondary"):
            by_type = snapshot["models"][name]["errors"]["by_type"]
            assert by_type == {t: n for (m, t), n in client_errors.items() if m == name}

        # Closed: no connection left, on either side.
        for _ in range(200):
            if established(server.port) == 0:
                break
            await anyio.sleep(0.01)
        assert established(server.port) == 0
