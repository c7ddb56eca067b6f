"""Embedding tierwise in a FastAPI app: one Orchestrator for the app's lifetime.

The tutorials' orchestrator ("class LLMOrchestrator" holding providers, router,
fallback chain, rate limiter and metrics) belongs to the application, not to a
request: its connection pools, rate limiters, circuit breakers, cache, budget and
metrics only work when every request shares them. So ``create_app(config)``
builds the ``Orchestrator`` in FastAPI's *lifespan* (after the event loop starts)
and closes it on shutdown (connections released, audit log flushed):

* ``POST /ask``  ``{"prompt": "...", "user": "..."}`` → the answer, the model that
  gave it, its cost, and the route and reason. Errors map to HTTP statuses:
  budget exhausted → 429, every model failed → 503, a bad request → 400, any
  other tierwise error → 502.
* ``GET /metrics`` → the orchestrator's request metrics; ``GET /health`` → each
  deployment's circuit-breaker state.

FastAPI is not a tierwise dependency. Without it this script explains how to
install it and exits 0; the module still imports, so ``create_app`` is importable
and testable wherever FastAPI is installed. With it, ``main()`` serves the app
in-process against ``MockLLMServer`` (no network, no uvicorn) and calls ``/ask``.
To serve it for real, point ``TIERWISE_CONFIG`` at a TOML config, put the keys it
names in the environment, and run ``uvicorn --factory fastapi_app:app_from_env``
from this directory.

    pip install fastapi      # optional, for this example only
    python examples/fastapi_app.py
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic import BaseModel

import tierwise as tw
from tierwise.testing import MockLLMServer, MockModel

if TYPE_CHECKING:
    from fastapi import FastAPI

try:
    import fastapi

    HAVE_FASTAPI = True
except ImportError:  # FastAPI is optional: see main()
    HAVE_FASTAPI = False

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

INSTALL_HINT = (
    "This example needs FastAPI, which tierwise does not depend on.\n"
    "Install it with:  pip install fastapi\n"
    "then run again:   python examples/fastapi_app.py"
)


class AskIn(BaseModel):
    prompt: str
    user: str | None = None
    strategy: str | None = None


class AskOut(BaseModel):
    text: str
    model: str
    deployment: str
    cost_usd: float | None
    cached: bool
    route: str
    reason: str


def create_app(config: str | os.PathLike[str] | Mapping[str, Any]) -> FastAPI:
    """A FastAPI app answering ``/ask`` with one ``Orchestrator`` built from ``config``
    (a dict or a TOML path), created at startup and closed at shutdown."""
    if not HAVE_FASTAPI:
        raise RuntimeError(INSTALL_HINT)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Validated here, at startup: a config error stops the app before it serves.
        async with tw.Orchestrator.from_config(config) as orch:
            app.state.orch = orch
            yield
        # Leaving the block closed the orchestrator: pools released, audit flushed.

    app = fastapi.FastAPI(title="tierwise example", lifespan=lifespan)

    def orchestrator(request: fastapi.Request) -> tw.Orchestrator:
        orch: tw.Orchestrator = request.app.state.orch
        return orch

    @app.post("/ask", response_model=AskOut)
    async def ask(body: AskIn, request: fastapi.Request) -> AskOut:
        metadata = {"user": body.user} if body.user else None
        try:
            resp = await orchestrator(request).run(body.prompt, strategy=body.strategy, metadata=metadata)
        except tw.errors.BudgetExceeded as exc:
            raise fastapi.HTTPException(status_code=429, detail=str(exc)) from None
        except tw.errors.AllTargetsFailed as exc:
            raise fastapi.HTTPException(status_code=503, detail=str(exc)) from None
        except (tw.errors.ConfigError, tw.errors.BadRequestError) as exc:
            raise fastapi.HTTPException(status_code=400, detail=str(exc)) from None
        except tw.errors.TierwiseError as exc:  # anything else the providers or executor raised
            raise fastapi.HTTPException(status_code=502, detail=str(exc)) from None
        return AskOut(
            text=resp.text,
            model=resp.model,
            deployment=resp.deployment,
            cost_usd=resp.cost_usd,
            cached=resp.cached,
            route=resp.route.label or resp.route.strategy_path,
            reason=resp.route.reason,
        )

    @app.get("/metrics")
    async def metrics(request: fastapi.Request) -> dict[str, Any]:
        snapshot: dict[str, Any] = orchestrator(request).metrics.snapshot()["requests"]
        return snapshot

    @app.get("/health")
    async def health(request: fastapi.Request) -> dict[str, Any]:
        return orchestrator(request).health()

    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory``: the app for the config file ``$TIERWISE_CONFIG``."""
    return create_app(os.environ.get("TIERWISE_CONFIG", "tierwise.toml"))


def example_config(base_url: str) -> dict[str, Any]:
    """The four-tier router behind one OpenAI-compatible gateway at ``base_url``."""
    gateway = {"provider": "gateway"}
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        "models": {
            "opus": {**gateway, "model": "claude-opus-4-7", "fallbacks": ["sonnet"]},
            "sonnet": {**gateway, "model": "claude-sonnet-4-6", "fallbacks": ["gpt55"]},
            "gpt55": {**gateway, "model": "gpt-5.5", "fallbacks": ["sonnet"]},
            "deepseek": {**gateway, "model": "deepseek-chat", "fallbacks": ["gpt55"]},
        },
        "strategies": {
            "tiers": {
                "type": "router",
                "routes": {
                    "complex": "opus",
                    "standard": "sonnet",
                    "structured": "gpt55",
                    "bulk": "deepseek",
                },
            }
        },
        "cache": {"backend": "memory"},
    }


def mock_models() -> dict[str, MockModel]:
    return {
        wire: MockModel(reply=f"[{wire}] answer", latency_ms=5)
        for wire in ("claude-opus-4-7", "claude-sonnet-4-6", "gpt-5.5", "deepseek-chat")
    }


async def main() -> None:
    if not HAVE_FASTAPI:
        print(INSTALL_HINT)
        return
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    async with MockLLMServer(mock_models()) as server:
        app = create_app(example_config(server.base_url + "/v1"))
        # Serve in-process: run the app's lifespan ourselves and talk to it over ASGI.
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
        ):
            for prompt in (
                "Design a caching strategy for a multi-tenant SaaS app. Consider the trade-offs.",
                "Generate unit tests for the Invoice class.",
                "Generate unit tests for the Invoice class.",
            ):
                r = await client.post("/ask", json={"prompt": prompt, "user": "alice"})
                r.raise_for_status()
                body = r.json()
                print(
                    f"POST /ask {prompt[:45]!r}: {r.status_code} route={body['route']} model={body['model']} "
                    f"cost=${body['cost_usd']:.6f} cached={body['cached']}"
                )
            r = await client.post("/ask", json={"prompt": "hi", "strategy": "no-such-strategy"})
            print(f"POST /ask with an unknown strategy: {r.status_code} {r.json()['detail']}")
            m = (await client.get("/metrics")).json()
            print(
                f"GET /metrics: {m['total']} requests, {m['cache_hits']} cache hit(s), ${m['cost_usd']:.6f}"
            )
            h = (await client.get("/health")).json()
            states = ", ".join(f"{alias}={state['state']}" for alias, state in h.items())
            print(f"GET /health: {states}")
        # The lifespan closed the orchestrator on shutdown.
        try:
            await app.state.orch.run("anyone there?")
        except RuntimeError as exc:
            print(f"after shutdown: {exc}")


if __name__ == "__main__":
    anyio.run(main)
