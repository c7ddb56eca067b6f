"""A real loopback HTTP/1.1 server speaking the OpenAI, Anthropic and Gemini wire formats.

Why a real server rather than ``httpx.MockTransport``: connection pooling, keep-alive,
chunked transfer encoding, sockets reset mid-reply, read timeouts and TCP back-pressure
only exist on real sockets, and those are exactly where retry, timeout and stream
fallback logic breaks. Tests, examples and benchmarks point a provider's ``base_url``
at ``server.base_url`` and get byte-accurate provider replies with scripted faults.

It runs on the asyncio event loop: ``async with MockLLMServer(...)`` serves from the
caller's loop (so tests need no threads), ``MockLLMServer.run_in_thread()`` gives it a
loop of its own in a daemon thread (for sync code and for benchmarks whose client
must not share a loop with the server), and ``serve()`` / ``tierwise mock-server``
block a whole process on it.

Built on ``asyncio.Protocol`` with a small hand-written HTTP/1.1 parser, not a web
framework: requests that need no waiting (no latency, no stream delays) are parsed and
answered inside ``data_received`` without creating a task; only replies that sleep,
hang or stream slowly get one. Measured against an ``asyncio.start_server`` streams
variant of the same handler, CPU per request was equal (~76 µs on the 2-core dev VM,
dominated by send/recv syscalls and JSON), so Protocol is kept for the control it gives
over RST, half-close and back-pressure; one process serves ~14k JSON requests/s
(``benchmarks/mock_server_rps.py``).

Supported endpoints::

    POST /v1/chat/completions, /chat/completions        OpenAI (JSON or SSE by "stream")
    POST /v1/responses, /responses                      OpenAI Responses API (JSON or SSE by "stream")
    POST /v1/messages                                   Anthropic (JSON or SSE by "stream")
    POST /v1beta/models/{model}:generateContent         Gemini JSON   (also /v1/models/...)
    POST /v1beta/models/{model}:streamGenerateContent   Gemini SSE with ?alt=sse, else a JSON array
    POST /v1/embeddings, /embeddings                    OpenAI embeddings
    POST /v1/messages/count_tokens                      Anthropic token counting
    POST /v1beta/models/{model}:countTokens             Gemini token counting
    POST /v1/responses/input_tokens                     OpenAI Responses input-token counting
    POST /v1beta/models/{model}:batchEmbedContents      Gemini embeddings
    GET  /v1/models, /health                            listing and readiness probe

Embeddings are deterministic by default: a hashed bag of words, L2-normalized, of
``embedding_dim`` dimensions (a request's OpenAI ``dimensions`` or Gemini
``outputDimensionality`` overrides it), so texts sharing words get similar vectors.
``embed=`` replaces them with any function of the batch of texts (a real local
embedding model, say); it runs on the server's event loop, so give a slow one its
own loop with ``run_in_thread``. Embedding requests name a model like chat requests
and get that ``MockModel``'s faults, latency and rate limits (as JSON replies:
``stall``/``truncate`` cut the body, ``inband_error`` is a 200 error body);
``input_tokens`` fixes the reported token count, else it is ~4 characters a token.

Fault kinds (``MockModel.faults`` / ``MockModel.fault_rates``): ``ok``, ``429``,
``500``, ``503``, ``529`` (any other HTTP error status ``400``-``599`` too), ``context``
(400 context-window error), ``hang`` (never answers), ``stall`` (starts answering, then
goes silent), ``reset`` (TCP RST; before any byte for JSON, mid-stream for SSE),
``truncate`` (stream ends cleanly at the HTTP level but before the final events; a
JSON body is cut short and the connection closed), ``malformed`` (invalid JSON body,
or one invalid SSE data line), ``inband_error`` (HTTP 200 carrying the provider's
error event; for JSON a 200 with an error body, as OpenRouter does). Error bodies use
each provider's real error JSON so tierwise's error mapping is exercised for real.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import unquote

from ._mock_batch import MockBatches
from ._mock_count import count_problem, count_reply
from ._mock_embed import DEFAULT_EMBEDDING_DIM, EmbedFn, compute_vectors, hashed_embedding
from ._mock_fidelity import strict_problem
from ._mock_http import _Connection, _json_reply, _Op, _Replay
from ._mock_meta import completions_reply, meta_reply, not_found_reply
from ._mock_model import (
    FAULT_KINDS,
    MockModel,
    MockRequest,
    ModelStats,
    _ModelState,
    _prompt_text,
    embedding_inputs,
    estimate_tokens,
    load_config,
)
from ._mock_reply import _answer, _respond, _respond_embeddings
from ._mock_responses import RESPONSES
from ._mock_wire import _ANTHROPIC, _GEMINI, _OPENAI, _Wire

__all__ = [
    "DEFAULT_EMBEDDING_DIM",
    "FAULT_KINDS",
    "EmbedFn",
    "MockLLMServer",
    "MockModel",
    "MockRequest",
    "ModelStats",
    "estimate_tokens",
    "hashed_embedding",
    "main_mock_server",
    "serve",
]

_GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/", "/v1alpha/models/")
_GEMINI_ACTIONS = frozenset(("generateContent", "streamGenerateContent", "batchEmbedContents", "countTokens"))
_COUNT_PATHS = {
    "/v1/messages/count_tokens": "anthropic",
    "/v1/responses/input_tokens": "openai",
    "/responses/input_tokens": "openai",
}
_OPENAI_EMBEDDINGS = ("/v1/embeddings", "/embeddings")
_COMPLETIONS = ("/v1/completions", "/completions")
#: Paths of the provider batch APIs (``_mock_batch``), checked before model routing.
_BATCH_PREFIXES = ("/v1/files", "/v1/batches", "/v1/messages/batches", "/v1beta/batches")


def _gemini_target(path: str) -> tuple[str, str] | None:
    """(model, action) of a Gemini ``/models/{model}:{action}`` path, else ``None``."""
    if not (path.startswith(_GEMINI_PREFIXES) and ":" in path):
        return None
    name, _, action = path.split("/models/", 1)[1].rpartition(":")
    return unquote(name), action


class MockLLMServer:
    """A loopback LLM API server with per-model behaviour and fault injection.

    ``models`` maps model names to ``MockModel``; requests for other names get the
    provider's 404, unless ``default`` is given (it then answers every name). With
    neither ``models`` nor ``default`` every name is answered by ``MockModel()``.
    ``seed`` makes probabilistic faults and jitter deterministic.
    ``record_limit`` bounds ``requests`` (the most recent are kept) so a long
    benchmark does not grow memory; 0 disables recording. ``embedding_dim`` is the
    size of the default embedding vectors; ``embed`` (texts → vectors) replaces them.

    ``set_model`` and ``replay`` may be called from another thread while the server
    runs in ``run_in_thread`` (they are single atomic container operations).
    """

    def __init__(
        self,
        models: Mapping[str, MockModel] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: MockModel | None = None,
        seed: int = 0,
        record_limit: int = 10_000,
        embedding_dim: int = DEFAULT_EMBEDDING_DIM,
        embed: EmbedFn | None = None,
        strict: bool = True,
        log: TextIO | None = None,
    ) -> None:
        if models is not None and not isinstance(models, Mapping):
            raise TypeError("models must be a mapping of model name to MockModel")
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        if embed is not None and not callable(embed):
            raise TypeError("embed must be a callable taking a list of texts, or None")
        self.embedding_dim = embedding_dim
        self.embed = embed
        self._models: dict[str, MockModel] = dict(models or {})
        self._default = default if default is not None or models is not None else MockModel()
        self.host = host
        self._port = port
        self.seed = seed
        self._requests: deque[MockRequest] = deque(maxlen=max(0, record_limit))
        self._states: dict[str, _ModelState] = {}
        self._stats: dict[str, ModelStats] = {}
        self._replays: deque[_Replay] = deque()
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0
        #: The provider batch APIs: knobs (delay, per-item faults) and counters.
        self.batches = MockBatches()
        #: Validate requests as the real APIs do (400 in the provider's shape); off
        #: for tests that send deliberately incomplete bodies.
        self.strict = strict
        #: A text stream that gets one access-log line per request (``--verbose``).
        self.log = log
        self._paths: Counter[str] = Counter()
        self._unanswered = 0  # requests that hit no route (404): a client shape not served

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> MockLLMServer:
        """Bind and start accepting; returns ``self`` (port 0 picks a free port)."""
        if self._server is not None:
            raise RuntimeError("MockLLMServer already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self._port, backlog=1024, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self.batches.base_url = self.base_url
        return self

    async def aclose(self) -> None:
        """Stop listening, drop every connection (hanging replies included), end all tasks."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        for conn in list(self._conns):
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let connection_lost callbacks run
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)

    async def __aenter__(self) -> MockLLMServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @classmethod
    @contextlib.contextmanager
    def run_in_thread(
        cls,
        models: Mapping[str, MockModel] | None = None,
        **kwargs: Any,
    ) -> Iterator[MockLLMServer]:
        """Run a started server on its own event loop in a daemon thread.

        For synchronous code, and for benchmarks where the client must not compete
        with the server for one loop. Stops and joins the thread on exit.
        """
        server = cls(models, **kwargs)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def runner() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(server.aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        thread = threading.Thread(target=runner, name="tierwise-mock-server", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        try:
            yield server
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    # -- public state ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None and self._port == 0:
            raise RuntimeError("MockLLMServer not started")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[MockRequest]:
        """A snapshot of the recorded requests, oldest first (at most ``record_limit``)."""
        return list(self._requests)

    def clear_requests(self) -> None:
        self._requests.clear()

    @property
    def stats(self) -> dict[str, ModelStats]:
        """Live per-model counters, keyed by the model name requested."""
        return self._stats

    @property
    def models(self) -> dict[str, MockModel]:
        return dict(self._models)

    def set_model(self, name: str, model: MockModel | None) -> None:
        """Add, replace (restarting its fault script and RNG) or, with ``None``, remove a model."""
        if model is None:
            self._models.pop(name, None)
        else:
            self._models[name] = model
        self._states.pop(name, None)

    def replay(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: Sequence[bytes],
        *,
        chunk_delay_ms: float = 0.0,
    ) -> None:
        """Queue one raw scripted response (FIFO) for the next request, whatever its path.

        Each chunk is written separately; the body is chunked when there is more than
        one chunk or the content type is ``text/event-stream``, else sent with
        Content-Length. Framing headers in ``headers`` are replaced by the server's own.
        """
        self._replays.append(_Replay.build(status, headers, chunks, chunk_delay_ms))

    # -- request handling -----------------------------------------------------------

    def _state_for(self, name: str) -> _ModelState | None:
        state = self._states.get(name)
        if state is None:
            model = self._models.get(name, self._default)
            if model is None:
                return None
            stats = self._stats.get(name)
            if stats is None:
                stats = self._stats[name] = ModelStats()
            state = self._states[name] = _ModelState(name, model, self.seed, stats)
        return state

    def _dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes, close: bool
    ) -> list[_Op]:
        rec = MockRequest(method, target, headers, body)
        self._requests.append(rec)
        self._seq += 1
        path, _, query = target.partition("?")
        if self._replays:
            _guess_model(rec, path)
            return self._replays.popleft().ops(close)

        if path.startswith(_BATCH_PREFIXES) or path.endswith(":batchGenerateContent"):
            ops = self.batches.handle(method, path, headers, body, close, self._state_for)
            if ops is not None:
                return ops
        self._paths[path] += 1
        if self.log is not None:
            self.log.write(f"{method} {target} {headers.get('content-length', '0')}b\n")
        wire: _Wire
        gemini: tuple[str, str] | None = None
        embeddings = legacy = counting = False
        if path in ("/v1/chat/completions", "/chat/completions"):
            wire = _OPENAI
        elif path in ("/v1/responses", "/responses"):
            wire = RESPONSES
        elif path == "/v1/messages":
            wire = _ANTHROPIC
        elif path in _OPENAI_EMBEDDINGS:
            wire, embeddings = _OPENAI, True
        elif path in _COUNT_PATHS:
            wire, counting = (_ANTHROPIC if _COUNT_PATHS[path] == "anthropic" else RESPONSES), True
        elif (gemini := _gemini_target(path)) is not None:
            wire = _GEMINI
            if gemini[1] not in _GEMINI_ACTIONS:
                return self._not_found(method, path, headers, close)
            rec.stream = gemini[1] == "streamGenerateContent"
            embeddings = gemini[1] == "batchEmbedContents"
            counting = gemini[1] == "countTokens"
        elif path in _COMPLETIONS:
            wire, legacy = _OPENAI, True
        elif (meta := meta_reply(self, method, path, headers, close)) is not None:
            return meta
        else:
            return self._not_found(method, path, headers, close)
        # The Responses API is OpenAI's: recorded as such (its body is told apart by shape).
        rec.provider = "openai" if wire is RESPONSES else wire.name
        rid = f"req_mock{self._seq:08d}"
        hdrs = [(wire.request_id_header, rid)] if wire.request_id_header else []

        def error(status: int, message: str | None = None, model: str = "") -> list[_Op]:
            return _json_reply(status, wire.error_body(status, model, message, request_id=rid), hdrs, close)

        if method != "POST":
            return error(405, f"Method {method} not allowed on {path}")
        try:
            data = json.loads(body)
        except ValueError:
            return error(400, wire.bad_json_message)
        rec._json = data
        if not isinstance(data, dict):
            return error(400, "The request body must be a JSON object.")
        if wire is RESPONSES:
            rec._prompt = _prompt_text("responses", data)  # recorded as "openai": read by shape here
        if gemini is not None:
            model = gemini[0]
            sse = "alt=sse" in query
        else:
            named = data.get("model")
            if not isinstance(named, str) or not named:
                return error(400, "model: Field required")
            model = named
            rec.stream = data.get("stream") is True and not embeddings
            sse = rec.stream
        rec.model = model
        if counting:
            kind = "openai" if wire is RESPONSES else wire.name
            problem = count_problem(kind, data) if self.strict else None
            if problem is not None:
                return error(400, problem, model)
            state = self._state_for(model)
            if state is None:
                return error(404, None, model)
            return count_reply("responses" if wire is RESPONSES else wire.name, state, rec, data, close, hdrs)
        if self.strict and not legacy:
            problem = strict_problem(wire.name, data, embeddings=embeddings, model=model)
            if problem is not None:
                return error(400, problem, model)
        texts: list[str] = []
        if embeddings:
            problem = _embedding_problem(wire.name, data, model)
            if problem is not None:
                return error(400, problem, model)
            texts = embedding_inputs(wire.name, data) or []
        state = self._state_for(model)
        if state is None:
            return error(404, None, model)
        if legacy:
            return completions_reply(state, rec, data, close, hdrs, self._seq, _answer)
        if embeddings:
            dim = _requested_dim(wire.name, data) or self.embedding_dim
            embed = self.embed
            return _respond_embeddings(
                wire, state, rec, data, texts, lambda: compute_vectors(texts, dim, embed), close, hdrs, rid
            )
        return _respond(wire, state, rec, data, sse, close, hdrs, rid, self._seq)

    def _not_found(self, method: str, path: str, headers: Mapping[str, str], close: bool) -> list[_Op]:
        self._unanswered += 1
        return not_found_reply(method, path, headers, close)


def _embedding_problem(provider: str, data: Mapping[str, Any], model: str) -> str | None:
    """The provider's 400 message for an embeddings body it would reject, else ``None``."""
    if provider == "gemini":
        requests = data.get("requests")
        if not isinstance(requests, list) or not requests:
            return "* BatchEmbedContentsRequest.requests: requests must not be empty"
        for i, item in enumerate(requests):
            named = item.get("model") if isinstance(item, dict) else None
            if named is not None and named != f"models/{model}":
                return (
                    f"* BatchEmbedContentsRequest.requests[{i}].model: the model of each request "
                    f"must match models/{model}"
                )
        if embedding_inputs(provider, data) is None:
            return "* BatchEmbedContentsRequest.requests: each request needs content.parts"
        return None
    texts = embedding_inputs(provider, data)
    if texts is None:
        return "'input' must be a string or an array of strings (token arrays are not mocked)"
    if not texts or any(t == "" for t in texts):
        return "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    return None


def _requested_dim(provider: str, data: Mapping[str, Any]) -> int | None:
    """OpenAI ``dimensions`` / Gemini ``outputDimensionality`` (of the first request)."""
    value: Any
    if provider == "gemini":
        requests = data.get("requests")
        first = requests[0] if isinstance(requests, list) and requests else None
        value = first.get("outputDimensionality") if isinstance(first, dict) else None
    else:
        value = data.get("dimensions")
    return value if type(value) is int and value > 0 else None


def _guess_model(rec: MockRequest, path: str) -> None:
    """Best-effort model/provider for a replayed request (recorded, not routed)."""
    gemini = _gemini_target(path)
    if gemini is not None:
        rec.provider = "gemini"
        rec.model, action = gemini
        rec.stream = action == "streamGenerateContent"
        return
    if path.endswith(("/chat/completions", "/embeddings")):
        rec.provider = "openai"
    elif path.endswith("/messages"):
        rec.provider = "anthropic"
    try:
        data = rec.json()
    except ValueError:
        return
    if isinstance(data, dict):
        model = data.get("model")
        rec.model = model if isinstance(model, str) else None
        rec.stream = data.get("stream") is True


# --------------------------------------------------------------------------- blocking entry points


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    models: Mapping[str, MockModel] | None = None,
    *,
    default: MockModel | None = None,
    seed: int = 0,
    record_limit: int = 1000,
    on_ready: Callable[[MockLLMServer], None] | None = None,
    embedding_dim: int = DEFAULT_EMBEDDING_DIM,
    embed: EmbedFn | None = None,
    strict: bool = True,
    log: TextIO | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (blocking): for the CLI and benchmark subprocesses."""

    async def main() -> None:
        async with MockLLMServer(
            models,
            host=host,
            port=port,
            default=default,
            seed=seed,
            record_limit=record_limit,
            embedding_dim=embedding_dim,
            embed=embed,
            strict=strict,
            log=log,
        ) as server:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, stop.set)
            if on_ready is not None:
                on_ready(server)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def main_mock_server(argv: list[str] | None = None) -> int:
    """``tierwise mock-server``: run the mock server in the foreground."""
    parser = argparse.ArgumentParser(
        prog="tierwise mock-server",
        description="Run a local mock LLM API server (OpenAI, Anthropic and Gemini wire formats).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0 picks a free one)")
    parser.add_argument("--config", help="TOML or JSON file with models/default/seed")
    parser.add_argument("--seed", type=int, default=None, help="seed for probabilistic faults")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--no-strict", action="store_true", help="accept bodies the real APIs reject (no 400s)"
    )
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = {}
    if args.config:
        try:
            kwargs = load_config(args.config)
        except (OSError, ValueError) as exc:
            print(f"tierwise mock-server: bad config {args.config}: {exc}", file=sys.stderr)
            return 2
    if args.seed is not None:
        kwargs["seed"] = args.seed
    if args.verbose:
        kwargs["log"] = sys.stderr
    if args.no_strict:
        kwargs["strict"] = False

    def ready(server: MockLLMServer) -> None:
        print(f"tierwise mock server listening on {server.base_url}", flush=True)

    try:
        serve(args.host, args.port, on_ready=ready, **kwargs)
    except OSError as exc:
        print(f"tierwise mock-server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_mock_server())
