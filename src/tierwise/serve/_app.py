"""The ASGI application behind ``tierwise serve``.

One ``Orchestrator`` per worker process answers every route; the shared state
backend (``[state] backend = "redis"``) is what makes several workers one
gateway: provider rate limits, circuits, budgets and the per-key limits below
are booked in Redis, so they hold whichever worker a request lands on.

Streams are answered only once the first event is in hand: a provider that
fails before its first token has then already been replaced by the fallback
chain, and a request that cannot be answered at all gets a real HTTP error
status instead of a 200 followed by an error. After the first byte, a failure
(a stall is a timeout) ends the stream with the format's own error event.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from ..execution.limits import QueueWaitTimeout
from ..types import Done, ReasoningDelta, Response, StreamEvent, TextDelta, ToolCallDelta
from . import _anthropic_wire as aw
from . import _openai_wire as ow
from . import _responses_wire as rw
from ._common import BadInput
from ._errors import Failure, failure_for, key_rate_limited, unauthorized, unknown_model
from ._keys import ApiKey, KeyRing, presented_key

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request as HTTPRequest
    from starlette.responses import Response as HTTPResponse

    from ..orchestrator import Orchestrator
    from ..types import Request

__all__ = ["Gateway", "create_app"]

_RID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _Writer(Protocol):
    def start(self) -> bytes: ...
    def text(self, piece: str) -> bytes: ...
    def reasoning(self, piece: str) -> bytes: ...

    def reasoning_item(self, item: Mapping[str, Any]) -> bytes: ...
    def tool(
        self, index: int, call_id: str | None, name: str | None, arguments: str, signature: str | None = None
    ) -> bytes: ...
    def end(self, r: Response, tierwise: Mapping[str, Any]) -> bytes: ...
    def error(self, status: int, message: str, etype: str, code: str | None = None) -> bytes: ...


def _tierwise_fields(r: Response) -> dict[str, Any]:
    return {
        "route": r.route.strategy_path,
        "label": r.route.label,
        "cost_usd": r.cost_usd,
        "attempts": len(r.attempts),
    }


def _tierwise_headers(r: Response, rid: str) -> dict[str, str]:
    return {
        "x-request-id": rid,
        "x-tierwise-route": r.route.strategy_path + (f"@{r.route.label}" if r.route.label else ""),
        # An unknown price is said as such, never a silent 0.
        "x-tierwise-cost-usd": "unknown" if r.cost_usd is None else f"{r.cost_usd:.8f}",
        "x-tierwise-attempts": str(len(r.attempts)),
        "x-tierwise-model": r.model,
    }


class Gateway:
    """Routes of one worker: ``orch`` answers, ``keys`` admits callers."""

    def __init__(self, orch: Orchestrator, keys: KeyRing | None = None, *, drain_s: float = 30.0) -> None:
        self.orch = orch
        self.keys = keys or KeyRing()
        self.drain_s = drain_s
        self.draining = False
        self._limiters: dict[str, Any] = {}
        # Each configured model alias is servable on its own, as a one-model strategy,
        # beside the configured strategies (which win on a name clash).
        from ..strategies.single import Single

        self._aliases = sorted(a for a in orch.deployments if a not in orch.strategies)
        self._strategies = sorted(orch.strategies)
        for alias in self._aliases:
            orch.add_strategy(alias, Single(alias, name=alias))
        self._embedders = set(orch.deployments)
        self._otel: bool | None = None

    # -- names ------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return ["auto", *self._strategies, *self._aliases]

    def _strategy(self, model: Any) -> str | None:
        if model is None or model == "auto" or model == "":
            return None
        if isinstance(model, str) and model in self.orch.strategies:
            return model
        raise _Refused(unknown_model(str(model)[:100], self.model_names()))

    # -- admission --------------------------------------------------------------------

    def _limiter(self, key: ApiKey) -> Any:
        lim = self._limiters.get(key.name)
        if lim is None:
            state = self.orch.state
            name = f"serve-key:{key.name}"
            if state is not None:
                lim = state.limiter(name, rpm=key.rpm)
            else:
                from ..execution.limits import RateLimiter

                lim = RateLimiter(rpm=key.rpm, clock=self.orch.clock, name=name)
            self._limiters[key.name] = lim
        return lim

    async def admit(self, headers: Mapping[str, str]) -> tuple[ApiKey | None, Any]:
        """The caller's key and its rpm permit; ``_Refused`` (401/429) otherwise."""
        if self.keys.open:
            return None, None
        key = self.keys.lookup(presented_key(headers))
        if key is None:
            raise _Refused(unauthorized())
        if key.rpm is None:
            return key, None
        try:
            permit = await self._limiter(key).acquire(0, timeout=0.0)
        except QueueWaitTimeout:
            # Within a minute a slot is free again; at the key's own pace, sooner.
            raise _Refused(key_rate_limited(key.name, min(60.0, 60.0 / key.rpm))) from None
        return key, permit

    # -- tracing ----------------------------------------------------------------------

    def trace_context(self, headers: Mapping[str, str]) -> Any:
        """The caller's W3C trace context (``traceparent``), when this orchestrator
        exports OTel spans: the request's spans then join the caller's trace, as
        they would if the caller used the library in-process. ``None`` otherwise,
        so a gateway without the ``otel`` extra never imports it."""
        if self._otel is None:
            from ..observe.otel import OTelObserver

            self._otel = any(isinstance(o, OTelObserver) for o in self.orch.observers)
        if not self._otel or "traceparent" not in headers:
            return None
        from opentelemetry import propagate

        return propagate.extract(dict(headers))

    # -- answering --------------------------------------------------------------------

    def metadata(self, key: ApiKey | None, rid: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"request_id": rid}
        if key is not None:
            meta.update(key.tags)
        return meta

    async def answer_json(
        self,
        req: Request,
        strategy: str | None,
        meta: dict[str, Any],
        render: Callable[[Response], bytes],
        rid: str,
    ) -> tuple[bytes, dict[str, str]]:
        response = await self.orch.run(req, strategy, meta)
        return render(response), _tierwise_headers(response, rid)

    async def open_stream(
        self, req: Request, strategy: str | None, meta: dict[str, Any], writer: _Writer
    ) -> AsyncGenerator[bytes, None]:
        """Wait for the first event (a failure now raises: a real HTTP error), then
        hand back the generator that writes the rest."""
        events = self.orch.stream(req, strategy, meta)
        try:
            first = await events.__anext__()
        except BaseException:
            await events.aclose()
            raise
        return _relay(events, first, writer)


async def _relay(
    events: AsyncGenerator[StreamEvent, None], first: StreamEvent, writer: _Writer
) -> AsyncGenerator[bytes, None]:
    try:
        yield writer.start()
        event: StreamEvent | None = first
        while event is not None:
            if isinstance(event, TextDelta):
                yield writer.text(event.text)
            elif isinstance(event, ToolCallDelta):
                yield writer.tool(event.index, event.id, event.name, event.arguments, event.thought_signature)
            elif isinstance(event, ReasoningDelta):
                if event.text:
                    yield writer.reasoning(event.text)
                if event.item is not None:
                    chunk = writer.reasoning_item(event.item)
                    if chunk:
                        yield chunk
            elif isinstance(event, Done):
                yield writer.end(event.response, _tierwise_fields(event.response))
                return
            event = await anext(events, None)
        # A stream that stopped without its Done: say so rather than end silently.
        yield writer.error(502, "The upstream stream ended without finishing.", "server_error")
    except Exception as exc:  # after the first byte the status is sent: an error event
        f = failure_for(exc)
        yield writer.error(
            f.status,
            f.message,
            f.anthropic_type if isinstance(writer, aw.AnthropicStream) else f.openai_type,
            f.code,
        )
    finally:
        await events.aclose()


class _Refused(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _request_id(headers: Mapping[str, str]) -> str:
    rid = headers.get("x-request-id")
    if rid and _RID.match(rid):
        return rid
    return uuid.uuid4().hex


def create_app(
    orch: Orchestrator, keys: KeyRing | None = None, *, drain_s: float = 30.0, manage: bool = True
) -> Starlette:
    """The Starlette app serving ``orch``. With ``manage`` the app enters the
    orchestrator on startup and closes it on shutdown (after in-flight requests)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.responses import Response as Resp
    from starlette.routing import Route

    gw = Gateway(orch, keys, drain_s=drain_s)
    sse_headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}

    def error_response(fmt: str, f: Failure, rid: str) -> HTTPResponse:
        # The Responses API answers errors in the same shape as Chat Completions.
        build = aw.error_body if fmt == "anthropic" else ow.error_body
        etype = f.anthropic_type if fmt == "anthropic" else f.openai_type
        headers = {"x-request-id": rid, **f.retry_header()}
        return Resp(build(f.status, f.message, etype, f.code, f.param), f.status, headers, "application/json")

    async def body_of(request: HTTPRequest) -> dict[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadInput("We could not parse the JSON body of your request.") from None
        if not isinstance(data, dict):
            raise BadInput("The request body must be a JSON object.")
        return data

    async def handle(request: HTTPRequest, fmt: str) -> HTTPResponse:
        headers = request.headers
        rid = _request_id(headers)
        permit = None
        handed_over = False
        trace = gw.trace_context(headers)
        token = _attach(trace)
        try:
            key, permit = await gw.admit(headers)
            body = await body_of(request)
            strategy = gw._strategy(body.get("model"))
            meta = gw.metadata(key, rid)
            requested = str(body.get("model") or "auto")
            if fmt == "openai":
                req = ow.chat_request(body)
                opts = body.get("stream_options")
                include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
                writer: _Writer = ow.OpenAIStream(rid, requested, include_usage)
                render: Callable[[Response], bytes] = lambda r: ow.chat_response(r, rid)  # noqa: E731
            elif fmt == "responses":
                req = rw.responses_request(body)
                writer = rw.ResponsesStream(rid, requested, body)
                render = lambda r: rw.response_json(r, rid, body)  # noqa: E731
            else:
                req = aw.messages_request(body)
                writer = aw.AnthropicStream(rid, requested)
                render = lambda r: aw.messages_response(r, rid)  # noqa: E731
            if body.get("stream") is True:
                gen = await gw.open_stream(req, strategy, meta, writer)
                handed_over = True
                return StreamingResponse(
                    _released(gen, permit, trace),
                    media_type="text/event-stream",
                    headers={"x-request-id": rid, **sse_headers},
                )
            data, extra = await gw.answer_json(req, strategy, meta, render, rid)
            return Resp(data, 200, extra, "application/json")
        except _Refused as exc:
            return error_response(fmt, exc.failure, rid)
        except Exception as exc:  # a TierwiseError, or a bug: answered in the caller's format
            return error_response(fmt, failure_for(exc), rid)
        finally:
            _detach(token)
            if permit is not None and not handed_over:
                await permit.arelease()

    async def chat(request: HTTPRequest) -> HTTPResponse:
        return await handle(request, "openai")

    async def messages(request: HTTPRequest) -> HTTPResponse:
        return await handle(request, "anthropic")

    async def responses(request: HTTPRequest) -> HTTPResponse:
        return await handle(request, "responses")

    async def embeddings(request: HTTPRequest) -> HTTPResponse:
        rid = _request_id(request.headers)
        permit = None
        try:
            _key, permit = await gw.admit(request.headers)
            body = await body_of(request)
            model = body.get("model")
            if not isinstance(model, str) or model not in gw._embedders:
                raise _Refused(unknown_model(str(model)[:100], sorted(gw._embedders)))
            texts = ow.embedding_inputs(body)
            result = await orch.embed(texts, model=model)
            cost = "unknown" if result.cost_usd is None else f"{result.cost_usd:.8f}"
            headers = {"x-request-id": rid, "x-tierwise-cost-usd": cost, "x-tierwise-model": result.model}
            return Resp(ow.embeddings_response(result, body), 200, headers, "application/json")
        except _Refused as exc:
            return error_response("openai", exc.failure, rid)
        except Exception as exc:
            return error_response("openai", failure_for(exc), rid)
        finally:
            if permit is not None:
                await permit.arelease()

    async def models(request: HTTPRequest) -> HTTPResponse:
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "tierwise"} for n in gw.model_names()]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: HTTPRequest) -> HTTPResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: HTTPRequest) -> HTTPResponse:
        circuits = orch.health()
        open_ = [a for a, s in circuits.items() if s["state"] == "cooling"]
        redis_ok = True if orch.state is None else await orch.state.ping()
        ok = not gw.draining and redis_ok and len(open_) < len(circuits)
        body = {"ready": ok, "draining": gw.draining, "state_backend_ok": redis_ok, "circuits": circuits}
        return JSONResponse(body, 200 if ok else 503)

    async def metrics(request: HTTPRequest) -> HTTPResponse:
        registry = orch.prometheus_registry
        if registry is None:
            return Resp(b"prometheus is off: [telemetry] prometheus = true\n", 404, media_type="text/plain")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Resp(generate_latest(registry), 200, media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
        if manage:
            await orch.__aenter__()
        try:
            yield
        finally:
            gw.draining = True
            if manage:
                await orch.aclose()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app


async def _released(
    gen: AsyncGenerator[bytes, None], permit: Any, trace: Any = None
) -> AsyncGenerator[bytes, None]:
    """The stream body; the key's permit is held until the stream has ended.
    The body is iterated by the server after the handler returned, so the
    caller's trace context is attached again here (the stream's request span is
    made when the stream ends)."""
    token = _attach(trace)
    try:
        async for chunk in gen:
            yield chunk
    finally:
        await gen.aclose()
        _detach(token)
        if permit is not None:
            await permit.arelease()


def _attach(trace: Any) -> Any:
    if trace is None:
        return None
    from opentelemetry import context

    return context.attach(trace)


def _detach(token: Any) -> None:
    if token is not None:
        from opentelemetry import context

        context.detach(token)
