"""Streams use the response cache too (issue #9.8): a hit replays the cached answer
as events; identical concurrent streams share one provider call; a leader that is
abandoned hands over to a follower. Real sockets: OpenAI adapter → MockLLMServer."""

from __future__ import annotations

from contextlib import aclosing

import anyio

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.execution.cache import MemoryCache
from tierwise.execution.executor import Deployment
from tierwise.providers.openai import OpenAI
from tierwise.testing import MockLLMServer, MockModel
from tierwise.types import Done, Response, TextDelta, ToolCallDelta

ANSWER = "A cached answer, long enough to arrive in several stream chunks of text."


def _orch(server: MockLLMServer) -> tw.Orchestrator:
    provider = OpenAI(api_key="sk-test-cache", base_url=server.base_url + "/v1")
    dep = Deployment("m", provider, "m", spec=ModelSpec("m", "openai", input=1.0, output=2.0))
    return tw.Orchestrator([dep], cache=MemoryCache(), log_level=None, owned_providers=[provider])


async def _drain(orch: tw.Orchestrator, prompt: str) -> tuple[str, Response]:
    text = ""
    final: Response | None = None
    async for event in orch.stream(prompt):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Done):
            final = event.response
    assert final is not None
    return text, final


async def test_a_cache_hit_replays_the_answer_as_events() -> None:
    async with MockLLMServer({"m": MockModel(reply=ANSWER)}) as server, _orch(server) as orch:
        text1, first = await _drain(orch, "same prompt")
        text2, second = await _drain(orch, "same prompt")
        run = await orch.run("same prompt")
    assert text1 == text2 == ANSWER
    assert first.cached is False and second.cached is True and run.cached is True
    assert second.cost_usd == 0.0 and first.cost_usd and first.cost_usd > 0
    assert [a.outcome for a in second.attempts] == ["cached"]
    assert second == first  # same answer: text, usage, finish reason
    assert len(server.requests) == 1
    assert orch.metrics.snapshot()["requests"]["cache_hits"] == 2


async def test_a_cached_tool_call_replays_as_a_tool_call_delta() -> None:
    model = MockModel(tool_calls=[("lookup", {"q": "x"})])
    async with MockLLMServer({"m": model}) as server, _orch(server) as orch:
        await orch.run("call the tool")
        events = [e async for e in orch.stream("call the tool")]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) == 1 and deltas[0].name == "lookup"
    final = events[-1]
    assert isinstance(final, Done) and final.response.tool_calls[0].arguments == {"q": "x"}
    assert len(server.requests) == 1


async def test_concurrent_identical_streams_share_one_provider_call() -> None:
    model = MockModel(reply=ANSWER, latency_ms=100, stream_chunk_delay_ms=5)
    async with MockLLMServer({"m": model}) as server, _orch(server) as orch:
        results: list[tuple[str, Response]] = []

        async def one() -> None:
            results.append(await _drain(orch, "same prompt"))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
    assert len(server.requests) == 1
    assert all(text == ANSWER for text, _ in results)
    assert sorted(r.cached for _, r in results) == [False, True, True]
    # The one real call is billed once.
    assert sum(r.cost_usd or 0.0 for _, r in results) == next(r.cost_usd for _, r in results if not r.cached)


async def test_an_abandoned_streaming_leader_hands_over_to_a_follower() -> None:
    model = MockModel(reply=ANSWER, latency_ms=50, tokens_per_chunk=2, stream_chunk_delay_ms=10)
    async with MockLLMServer({"m": model}) as server, _orch(server) as orch:
        follower: list[tuple[str, Response]] = []

        async def leader() -> None:
            async with aclosing(orch.stream("same prompt")) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        break  # the leader's client disconnects after the first chunk

        async def follow() -> None:
            await anyio.sleep(0.02)  # arrive while the leader is in flight
            follower.append(await _drain(orch, "same prompt"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            tg.start_soon(follow)
    ((text, resp),) = follower
    assert text == ANSWER and resp.cached is False  # it made the call itself
    assert len(server.requests) == 2
