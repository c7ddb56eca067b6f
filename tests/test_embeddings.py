"""Embeddings through tierwise's own providers: ``Provider.embed``, the mock server's
embedding endpoints and ``Orchestrator.embed``.

Adapter cases replay fixtures from tests/fixtures/{openai,gemini} through ``serve``
(httpx MockTransport and the real loopback server); the rest run against
``MockLLMServer`` over real sockets.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import Served, ServeFn, fixture_bytes, fixture_json
from tierwise import Embeddings, Orchestrator
from tierwise.catalog import Catalog, ModelSpec
from tierwise.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from tierwise.execution.budget import BudgetLedger, BudgetLimit
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.providers.anthropic import Anthropic
from tierwise.providers.gemini import Gemini
from tierwise.providers.openai import OpenAI
from tierwise.testing import MockLLMServer, MockModel
from tierwise.testing.mock_server import hashed_embedding
from tierwise.types import Usage

OAI_KEY = "sk-test-abcdefghijklmnop1234"
GEM_KEY = "AIza-test-0123456789abcdefghijklm"
TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "Embeddings map text to vectors."]
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=False)


_OWN_CLIENTS: list[OpenAI | Gemini] = []


@pytest.fixture(autouse=True)
async def _close_own_clients() -> AsyncIterator[None]:
    """A provider built against a ``MockLLMServer`` owns its httpx client: close it after the test,
    or its sockets outlive the test and warn inside whichever test collects them."""
    yield
    while _OWN_CLIENTS:
        await _OWN_CLIENTS.pop().aclose()


def oai(srv: Any, compat: str = "openai", key: str | None = OAI_KEY, **kw: Any) -> OpenAI:
    client = srv.client if isinstance(srv, Served) else None
    provider = OpenAI(api_key=key, base_url=srv.base_url + "/v1", http_client=client, compat=compat, **kw)
    if client is None:
        _OWN_CLIENTS.append(provider)
    return provider


def gem(srv: Any) -> Gemini:
    client = srv.client if isinstance(srv, Served) else None
    provider = Gemini(api_key=GEM_KEY, base_url=srv.base_url + "/v1beta", http_client=client)
    if client is None:
        _OWN_CLIENTS.append(provider)
    return provider


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def secret_free(err: BaseException, *keys: str) -> bool:
    text = f"{err!s} {err!r} {getattr(err, 'message', '')}"
    return not any(k in text for k in keys)


# --------------------------------------------------------------------------- OpenAI wire format


async def test_openai_request_and_reply(serve: ServeFn) -> None:
    srv = await serve(200, fixture_bytes("openai", "embeddings.json"), headers={"x-request-id": "req_emb_1"})
    result = await oai(srv).embed("text-embedding-3-small", TEXTS)

    assert srv.last_path == "/v1/embeddings"
    assert srv.last_json() == {"model": "text-embedding-3-small", "input": TEXTS, "encoding_format": "float"}
    assert srv.last_headers["authorization"] == f"Bearer {OAI_KEY}"
    expected = [item["embedding"] for item in fixture_json("openai", "embeddings.json")["data"]]
    assert isinstance(result, Embeddings)
    assert result.vectors == expected
    assert all(type(x) is float for v in result.vectors for x in v)
    assert result.dimensions == 8
    assert (result.model, result.provider) == ("text-embedding-3-small", "openai")
    assert result.usage == Usage(input_tokens=14)
    assert result.cost_usd is None  # a provider never prices; Orchestrator.embed does
    assert result.request_id == "req_emb_1"
    assert result.latency_ms > 0


async def test_openai_vectors_are_put_back_in_input_order(serve: ServeFn) -> None:
    data = fixture_json("openai", "embeddings.json")
    expected = [item["embedding"] for item in data["data"]]
    data["data"] = [data["data"][2], data["data"][0], data["data"][1]]
    srv = await serve(200, json.dumps(data).encode())
    result = await oai(srv).embed("text-embedding-3-small", TEXTS)
    assert result.vectors == expected


async def test_openai_compatible_rows_use_their_base_url_and_reported_cost(serve: ServeFn) -> None:
    data = fixture_json("openai", "embeddings.json")
    data["usage"]["cost"] = 0.00000028  # OpenRouter reports what it billed
    srv = await serve(200, json.dumps(data).encode())
    result = await oai(srv, compat="openrouter").embed("openai/text-embedding-3-small", TEXTS)
    assert srv.last_path == "/v1/embeddings"
    assert result.provider == "openrouter"
    assert result.usage.reported_cost_usd == pytest.approx(0.00000028)

    local = await serve(200, fixture_bytes("openai", "embeddings.json"))
    result = await oai(local, compat="vllm", key=None).embed("BAAI/bge-small-en", TEXTS)
    assert "authorization" not in local.last_headers
    assert result.provider == "vllm" and len(result.vectors) == 3


def _mangled(change: str) -> bytes:
    data = fixture_json("openai", "embeddings.json")
    items = data["data"]
    if change == "no_data":
        del data["data"]
    elif change == "short":
        del items[2]
    elif change == "extra":
        items.append({**items[0], "index": 3})
    elif change == "string_value":
        items[1]["embedding"][3] = "0.5"
    elif change == "bool_value":
        items[1]["embedding"][0] = True
    elif change == "null_vector":
        items[0]["embedding"] = None
    elif change == "base64":
        items[0]["embedding"] = base64.b64encode(struct.pack("<8f", *items[0]["embedding"])).decode()
    elif change == "duplicate_index":
        items[1]["index"] = 0
    elif change == "ragged":
        items[2]["embedding"] = items[2]["embedding"][:4]
    elif change == "empty_vector":
        items[0]["embedding"] = []
    elif change == "not_object":
        return b'[{"embedding": [0.1]}]'
    elif change == "not_json":
        return b'{"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1,'
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "change",
    [
        "no_data",
        "short",
        "extra",
        "string_value",
        "bool_value",
        "null_vector",
        "base64",
        "duplicate_index",
        "ragged",
        "empty_vector",
        "not_object",
        "not_json",
    ],
)
async def test_openai_malformed_reply_is_a_protocol_error(serve: ServeFn, change: str) -> None:
    srv = await serve(200, _mangled(change))
    with pytest.raises(ProtocolError) as info:
        await oai(srv).embed("text-embedding-3-small", TEXTS)
    err = info.value
    assert err.provider == "openai" and err.model == "text-embedding-3-small"
    assert err.retryable
    assert secret_free(err, OAI_KEY)


async def test_openai_401_is_authentication_error(serve: ServeFn) -> None:
    srv = await serve(401, fixture_bytes("openai", "errors", "openai_401_invalid_key.json"))
    with pytest.raises(AuthenticationError) as info:
        await oai(srv).embed("text-embedding-3-small", TEXTS)
    assert info.value.status_code == 401 and not info.value.retryable
    assert info.value.error_code == "invalid_api_key"


async def test_openai_429_carries_retry_after(serve: ServeFn) -> None:
    srv = await serve(
        429,
        fixture_bytes("openai", "errors", "openai_429_rate_limit.json"),
        headers={"retry-after": "7", "x-request-id": "req_429"},
    )
    with pytest.raises(RateLimitError) as info:
        await oai(srv).embed("text-embedding-3-small", TEXTS)
    err = info.value
    assert err.retryable and err.retry_after == 7.0
    assert err.status_code == 429 and err.request_id == "req_429"


async def test_openai_key_echoed_by_a_gateway_is_redacted(serve: ServeFn) -> None:
    body = fixture_bytes("openai", "errors", "gateway_401_key_echo.json")
    assert OAI_KEY.encode() in body  # the fixture really echoes the key
    srv = await serve(401, body)
    with pytest.raises(AuthenticationError) as info:
        await oai(srv, compat="gateway").embed("text-embedding-3-small", TEXTS)
    assert "Received API Key" in info.value.message
    assert secret_free(info.value, OAI_KEY)


async def test_openai_in_band_error_after_http_200(serve: ServeFn) -> None:
    body = fixture_bytes("openai", "errors", "openai_500.json")
    srv = await serve(200, body)
    with pytest.raises(ServerError):
        await oai(srv).embed("text-embedding-3-small", TEXTS)


async def test_empty_batch_makes_no_call(serve: ServeFn) -> None:
    srv = await serve(500, b"must not be called")
    for provider in (oai(srv), gem(srv)):
        result = await provider.embed("m", [])
        assert result.vectors == [] and result.dimensions == 0 and result.usage == Usage()
    assert srv.records() == []


async def test_texts_must_be_a_sequence_of_strings(serve: ServeFn) -> None:
    srv = await serve(200, fixture_bytes("openai", "embeddings.json"))
    with pytest.raises(TypeError, match="not a single string"):
        await oai(srv).embed("text-embedding-3-small", "one text")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        await oai(srv).embed("text-embedding-3-small", ["ok", 3])  # type: ignore[list-item]
    assert srv.records() == []


async def test_missing_key_fails_before_sending(serve: ServeFn) -> None:
    srv = await serve(200, fixture_bytes("openai", "embeddings.json"))
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        await oai(srv, key="").embed("text-embedding-3-small", TEXTS)
    assert srv.records() == []


# --------------------------------------------------------------------------- Gemini wire format


async def test_gemini_request_and_reply(serve: ServeFn) -> None:
    srv = await serve(200, fixture_bytes("gemini", "batch_embed.json"))
    result = await gem(srv).embed("gemini-embedding-001", TEXTS[:2])

    assert srv.last_path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert srv.last_headers["x-goog-api-key"] == GEM_KEY
    assert GEM_KEY not in srv.last_path
    assert srv.last_json() == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}} for t in TEXTS[:2]
        ]
    }
    expected = [e["values"] for e in fixture_json("gemini", "batch_embed.json")["embeddings"]]
    assert result.vectors == expected
    assert (result.model, result.provider) == ("gemini-embedding-001", "gemini")
    assert result.usage == Usage(input_tokens=11)


async def test_gemini_reply_without_usage_reports_zero_tokens(serve: ServeFn) -> None:
    srv = await serve(200, fixture_bytes("gemini", "batch_embed_no_usage.json"))
    result = await gem(srv).embed("models/gemini-embedding-001", TEXTS[:2])
    assert srv.last_path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"  # not prefixed twice
    assert result.usage.input_tokens == 0 and len(result.vectors) == 2


@pytest.mark.parametrize("change", ["count", "value", "missing", "values_not_list"])
async def test_gemini_malformed_reply_is_a_protocol_error(serve: ServeFn, change: str) -> None:
    data = fixture_json("gemini", "batch_embed.json")
    if change == "count":
        data["embeddings"].pop()
    elif change == "value":
        data["embeddings"][0]["values"][2] = None
    elif change == "missing":
        del data["embeddings"]
    else:
        data["embeddings"][1]["values"] = {"0": 0.1}
    srv = await serve(200, json.dumps(data).encode())
    with pytest.raises(ProtocolError) as info:
        await gem(srv).embed("gemini-embedding-001", TEXTS[:2])
    assert info.value.provider == "gemini"
    assert secret_free(info.value, GEM_KEY)


@pytest.mark.parametrize(
    ("status", "name", "cls", "retry_after"),
    [
        (429, "error_429.json", RateLimitError, 37.0),
        (400, "error_400_api_key.json", AuthenticationError, None),
        (403, "error_403.json", PermissionDeniedError, None),
        (503, "error_503.json", ServerError, None),
    ],
)
async def test_gemini_errors_are_typed_and_redacted(
    serve: ServeFn, status: int, name: str, cls: type[ProviderError], retry_after: float | None
) -> None:
    srv = await serve(status, fixture_bytes("gemini", name))
    with pytest.raises(cls) as info:
        await gem(srv).embed("gemini-embedding-001", TEXTS[:2])
    assert type(info.value) is cls
    assert info.value.retry_after == retry_after
    assert secret_free(info.value, GEM_KEY)


# --------------------------------------------------------------------------- Anthropic


async def test_anthropic_has_no_embeddings_endpoint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no HTTP request may be sent")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = Anthropic(api_key="sk-ant-test-0123456789", http_client=client)
        for texts in (TEXTS, []):
            with pytest.raises(NotFoundError, match="'anthropic' has no embeddings endpoint") as info:
                await provider.embed("claude-haiku-4-5", texts)
            assert info.value.provider == "anthropic" and not info.value.retryable


# --------------------------------------------------------------------------- mock server


async def test_mock_server_default_vectors_are_deterministic_unit_and_similar_texts_closer() -> None:
    texts = [
        "the quick brown fox jumps over the lazy dog",
        "the quick brown fox leaps over a lazy dog",
        "quarterly earnings beat analyst expectations",
    ]
    async with MockLLMServer(embedding_dim=32) as one, MockLLMServer(embedding_dim=32) as two:
        a = await oai(one).embed("text-embedding-3-small", texts)
        b = await gem(two).embed("gemini-embedding-001", texts)
        again = await oai(one).embed("text-embedding-3-small", texts[::-1])
    assert a.vectors == b.vectors == again.vectors[::-1]  # same text, same vector, any wire/order
    assert a.vectors == [hashed_embedding(t, 32) for t in texts]
    assert a.dimensions == 32
    for v in a.vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0)
    near, far = cosine(a.vectors[0], a.vectors[1]), cosine(a.vectors[0], a.vectors[2])
    assert near > 0.5 and near > far + 0.3
    assert a.usage.input_tokens > 0 and b.usage.input_tokens == a.usage.input_tokens


async def test_mock_server_honours_requested_dimensions() -> None:
    async with MockLLMServer() as server, httpx.AsyncClient() as client:
        reply = await client.post(
            server.base_url + "/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "hello world", "dimensions": 12},
        )
        gemini = await client.post(
            server.base_url + "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            json={
                "requests": [
                    {
                        "model": "models/gemini-embedding-001",
                        "content": {"parts": [{"text": "hello world"}]},
                        "outputDimensionality": 5,
                    }
                ]
            },
        )
        default = await client.post(
            server.base_url + "/embeddings", json={"model": "m", "input": ["hello world"]}
        )
    assert len(reply.json()["data"][0]["embedding"]) == 12
    assert len(gemini.json()["embeddings"][0]["values"]) == 5
    assert len(default.json()["data"][0]["embedding"]) == 64


async def test_mock_server_base64_encoding_format() -> None:
    async with MockLLMServer() as server, httpx.AsyncClient() as client:
        reply = await client.post(
            server.base_url + "/v1/embeddings",
            json={"model": "m", "input": ["a b c"], "encoding_format": "base64"},
        )
    packed = base64.b64decode(reply.json()["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert decoded == pytest.approx(hashed_embedding("a b c", 64), abs=1e-6)


async def test_mock_server_serves_a_custom_embed_function() -> None:
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> list[list[float]]:
        seen.append(texts)
        return [[float(len(t)), float(i), 0.5] for i, t in enumerate(texts)]

    async with MockLLMServer(embed=embed) as server:
        via_openai = await oai(server).embed("local-minilm", ["ab", "abcd"])
        via_gemini = await gem(server).embed("local-minilm", ["xyz"])
    assert seen == [["ab", "abcd"], ["xyz"]]
    assert via_openai.vectors == [[2.0, 0.0, 0.5], [4.0, 1.0, 0.5]]
    assert via_gemini.vectors == [[3.0, 0.0, 0.5]]


async def test_mock_server_reports_a_broken_embed_function_as_a_500() -> None:
    async with MockLLMServer(embed=lambda texts: [[1.0]]) as server:
        with pytest.raises(ServerError, match="returned 1 vectors for 2 texts"):
            await oai(server).embed("m", ["a", "b"])


async def test_mock_server_fault_injection_applies_to_embeddings() -> None:
    model = MockModel(faults=["429", "503", "malformed", "inband_error", "ok"], retry_after_s=2.0)
    async with MockLLMServer({"text-embedding-3-small": model}) as server:
        provider = oai(server)
        with pytest.raises(RateLimitError) as limited:
            await provider.embed("text-embedding-3-small", TEXTS)
        with pytest.raises(ServerError):
            await provider.embed("text-embedding-3-small", TEXTS)
        with pytest.raises(ProtocolError):
            await provider.embed("text-embedding-3-small", TEXTS)
        with pytest.raises(ServerError):
            await provider.embed("text-embedding-3-small", TEXTS)
        ok = await provider.embed("text-embedding-3-small", TEXTS)
        with pytest.raises(NotFoundError):
            await provider.embed("unknown-model", TEXTS)
        stats = server.stats["text-embedding-3-small"]
        recorded = server.requests[0]
    assert limited.value.retry_after == 2.0
    assert len(ok.vectors) == 3
    assert stats.requests == 5 and stats.ok == 1
    assert stats.faults == {"429": 1, "503": 1, "malformed": 1, "inband_error": 1}
    assert (recorded.provider, recorded.model, recorded.stream) == ("openai", "text-embedding-3-small", False)
    assert recorded.prompt == "\n".join(TEXTS)


async def test_mock_server_gemini_faults_use_gemini_errors() -> None:
    async with MockLLMServer(
        {"gemini-embedding-001": MockModel(faults=["429"], retry_after_s=3.0)}
    ) as server:
        with pytest.raises(RateLimitError) as info:
            await gem(server).embed("gemini-embedding-001", TEXTS)
    assert info.value.retry_after == 3.0 and info.value.error_type == "RESOURCE_EXHAUSTED"


async def test_mock_server_rejects_what_the_real_apis_reject() -> None:
    async with MockLLMServer() as server, httpx.AsyncClient() as client:
        with pytest.raises(BadRequestError):
            await oai(server).embed("text-embedding-3-small", ["fine", ""])
        mismatched = await client.post(
            server.base_url + "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            json={"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]},
        )
        tokens = await client.post(
            server.base_url + "/v1/embeddings", json={"model": "m", "input": [[1, 2, 3]]}
        )
    assert mismatched.status_code == 400 and mismatched.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert tokens.status_code == 400


def test_mock_server_checks_its_embedding_options() -> None:
    with pytest.raises(ValueError, match="embedding_dim"):
        MockLLMServer(embedding_dim=0)
    with pytest.raises(TypeError, match="embed"):
        MockLLMServer(embed="not callable")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Orchestrator.embed


def embed_config(server: MockLLMServer, **models: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": {
            "oai": {
                "type": "openai",
                "base_url": server.base_url + "/v1",
                "api_key_env": "TW_TEST_EMBED_KEY",
            },
            "gem": {
                "type": "gemini",
                "base_url": server.base_url + "/v1beta",
                "api_key_env": "TW_TEST_GEM_KEY",
            },
        },
        "models": models or {"embedder": {"provider": "oai", "model": "text-embedding-3-small"}},
        "retry": {"max_attempts": 3, "initial_backoff_s": 0.0, "max_backoff_s": 0.0},
    }


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_EMBED_KEY", OAI_KEY)
    monkeypatch.setenv("TW_TEST_GEM_KEY", GEM_KEY)


async def test_orchestrator_embed_end_to_end_with_catalog_cost(keys: None) -> None:
    models = {"text-embedding-3-small": MockModel(input_tokens=50_000)}
    async with MockLLMServer(models) as server:
        async with Orchestrator.from_config(embed_config(server)) as orch:
            result = await orch.embed(TEXTS, model="embedder")
            snapshot = orch.metrics.snapshot()
        request = server.requests[-1]
    assert request.path == "/v1/embeddings"
    assert request.json()["model"] == "text-embedding-3-small"  # the provider-side name
    assert request.headers["authorization"] == f"Bearer {OAI_KEY}"
    assert result.vectors == [hashed_embedding(t) for t in TEXTS]
    assert result.deployment == "embedder" and result.model == "text-embedding-3-small"
    assert result.usage.input_tokens == 50_000
    price = Catalog.default()["text-embedding-3-small"].input
    assert price == 0.02
    assert result.cost_usd == pytest.approx(50_000 * 0.02 / 1e6)
    assert "embedder" in json.dumps(snapshot, default=str)


async def test_orchestrator_embed_on_gemini_prices_the_reported_tokens(keys: None) -> None:
    config_models = {"gem-embed": {"provider": "gem", "model": "gemini-embedding-001"}}
    async with MockLLMServer({"gemini-embedding-001": MockModel(input_tokens=2_000)}) as server:
        async with Orchestrator.from_config(embed_config(server, **config_models)) as orch:
            result = await orch.embed(TEXTS, model="gem-embed")
            # An older Gemini surface reports no usage: the cost is unknown, not $0.
            server.replay(
                200,
                {"content-type": "application/json"},
                [fixture_bytes("gemini", "batch_embed_no_usage.json")],
            )
            unreported = await orch.embed(TEXTS[:2], model="gem-embed")
    assert result.cost_usd == pytest.approx(2_000 * 0.15 / 1e6)
    assert unreported.usage.input_tokens == 0 and unreported.cost_usd is None


async def test_orchestrator_embed_unknown_price_is_none(keys: None) -> None:
    config_models = {"house": {"provider": "oai", "model": "house-embedder-v2"}}
    async with MockLLMServer() as server:
        async with Orchestrator.from_config(embed_config(server, **config_models)) as orch:
            result = await orch.embed(TEXTS, model="house")
    assert result.usage.input_tokens > 0
    assert result.cost_usd is None


async def test_orchestrator_embed_retries_per_the_retry_policy(keys: None) -> None:
    models = {"text-embedding-3-small": MockModel(faults=["503", "429", "ok"], retry_after_s=0.0)}
    async with MockLLMServer(models) as server:
        async with Orchestrator.from_config(embed_config(server)) as orch:
            result = await orch.embed(TEXTS, model="embedder")
        stats = server.stats["text-embedding-3-small"]
    assert len(result.vectors) == 3
    assert stats.requests == 3 and stats.faults == {"503": 1, "429": 1}


async def test_orchestrator_embed_does_not_retry_what_cannot_succeed(keys: None) -> None:
    models = {"text-embedding-3-small": MockModel(faults=["401"])}
    async with MockLLMServer(models) as server:
        async with Orchestrator.from_config(embed_config(server)) as orch:
            with pytest.raises(AuthenticationError) as info:
                await orch.embed(TEXTS, model="embedder")
        assert server.stats["text-embedding-3-small"].requests == 1
    assert secret_free(info.value, OAI_KEY)


async def test_orchestrator_embed_gives_up_after_max_attempts(keys: None) -> None:
    models = {"text-embedding-3-small": MockModel(faults=["503"] * 5)}
    async with MockLLMServer(models) as server:
        async with Orchestrator.from_config(embed_config(server)) as orch:
            with pytest.raises(ServerError):
                await orch.embed(TEXTS, model="embedder")
        assert server.stats["text-embedding-3-small"].requests == 3


async def test_orchestrator_embed_honours_the_deployment_timeout(keys: None) -> None:
    config_models = {"slow": {"provider": "oai", "model": "text-embedding-3-small", "timeout_s": 0.2}}
    async with MockLLMServer({"text-embedding-3-small": MockModel(latency_ms=5_000)}) as server:
        config = embed_config(server, **config_models)
        config["retry"] = {"max_attempts": 1}
        async with Orchestrator.from_config(config) as orch:
            with pytest.raises(ProviderTimeout, match=r"no embeddings within 0\.2s"):
                await orch.embed(TEXTS, model="slow")


async def test_orchestrator_embed_unknown_alias_is_a_config_error(keys: None) -> None:
    async with MockLLMServer() as server:
        async with Orchestrator.from_config(embed_config(server)) as orch:
            with pytest.raises(ConfigError, match=r"unknown model 'nope'; configured: embedder"):
                await orch.embed(TEXTS, model="nope")
            with pytest.raises(ConfigError) as same:
                orch.executor.chain("nope")
            with pytest.raises(ConfigError) as embedded:
                await orch.embed(TEXTS, model="nope")
    assert str(embedded.value) == str(same.value)


async def test_orchestrator_embed_on_anthropic_raises_without_calling() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no HTTP request may be sent")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        provider = Anthropic(api_key="sk-ant-test-0123456789", http_client=client)
        orch = Orchestrator(
            [Deployment("haiku", provider, "claude-haiku-4-5")], retry=FAST_RETRY, log_level=None
        )
        with pytest.raises(NotFoundError, match="no embeddings endpoint"):
            await orch.embed(TEXTS, model="haiku")


async def test_orchestrator_embed_books_its_cost_against_the_budget() -> None:
    spec = ModelSpec("text-embedding-3-small", "openai", input=0.02, embedding=True, context_window=8192)
    budget = BudgetLedger([BudgetLimit(limit_usd=1.0, period="day")])
    async with MockLLMServer({"text-embedding-3-small": MockModel(input_tokens=1_000_000)}) as server:
        provider = oai(server)
        orch = Orchestrator(
            [Deployment("emb", provider, "text-embedding-3-small", spec=spec)], budget=budget, log_level=None
        )
        async with orch:
            result = await orch.embed(TEXTS, model="emb")
            assert budget.spent() == pytest.approx(0.02) == result.cost_usd
            tight = BudgetLedger([BudgetLimit(limit_usd=0.0, period="day")])
            orch.executor.budget = tight
            with pytest.raises(BudgetExceeded):
                await orch.embed(TEXTS, model="emb")
        assert server.stats["text-embedding-3-small"].requests == 1


async def test_orchestrator_embed_empty_batch_and_closed_orchestrator(keys: None) -> None:
    async with MockLLMServer() as server:
        orch = Orchestrator.from_config(embed_config(server))
        async with orch:
            empty = await orch.embed([], model="embedder")
        assert server.requests == []
        with pytest.raises(RuntimeError, match="closed"):
            await orch.embed(TEXTS, model="embedder")
    assert empty.vectors == [] and empty.cost_usd == 0.0 and empty.deployment == "embedder"


# --------------------------------------------------------------------------- catalog


@pytest.mark.parametrize(
    ("name", "provider", "price"),
    [
        ("text-embedding-3-small", "openai", 0.02),
        ("text-embedding-3-large", "openai", 0.13),
        ("gemini-embedding-001", "gemini", 0.15),
    ],
)
def test_embedding_models_are_priced_by_input_only(name: str, provider: str, price: float) -> None:
    spec = Catalog.default()[name]
    assert (spec.provider, spec.input, spec.output, spec.embedding, spec.priced) == (
        provider,
        price,
        None,
        True,
        True,
    )
    assert Catalog.default().cost(name, Usage(input_tokens=1_000_000)) == pytest.approx(price)
