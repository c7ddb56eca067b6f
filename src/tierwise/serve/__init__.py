"""``tierwise serve``: the orchestrator behind OpenAI- and Anthropic-compatible HTTP routes.

Needs the ``server`` extra (``pip install 'tierwise[server]'``: Starlette and
uvicorn), imported only when a server is built, so ``import tierwise`` stays
fast. ``create_app(orch)`` gives the ASGI app for embedding in your own server;
``serve(config)`` runs it under uvicorn, with ``workers`` processes that share
state through the configured backend (docs/serve.md).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._keys import ApiKey, KeyRing, hash_key

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["ApiKey", "KeyRing", "app_from_env", "create_app", "hash_key", "serve"]

#: Where ``serve`` hands its settings to worker processes (uvicorn imports the app
#: anew in each): the config path, the key variable's name and the drain bound.
_ENV_CONFIG = "TIERWISE_SERVE_CONFIG"
_ENV_KEYS = "TIERWISE_SERVE_KEYS_ENV"
_ENV_DRAIN = "TIERWISE_SERVE_DRAIN_S"

_INSTALL_HINT = "tierwise serve needs the server extra: pip install 'tierwise[server]'"


def _require() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT, name=exc.name) from None


def create_app(
    orch: Any, keys: KeyRing | None = None, *, drain_s: float = 30.0, manage: bool = True
) -> Starlette:
    """The ASGI app serving ``orch`` (see ``tierwise.serve._app``)."""
    _require()
    from ._app import create_app as _create

    return _create(orch, keys, drain_s=drain_s, manage=manage)


def app_from_env() -> Starlette:
    """The app of one worker process, built from the settings ``serve`` exported."""
    from ..orchestrator import Orchestrator

    config = os.environ.get(_ENV_CONFIG)
    if not config:
        raise RuntimeError(f"{_ENV_CONFIG} is not set: start workers with `tierwise serve --config FILE`")
    keys = KeyRing.from_env(os.environ.get(_ENV_KEYS, "TIERWISE_API_KEYS"))
    drain = float(os.environ.get(_ENV_DRAIN, "30"))
    return create_app(Orchestrator.from_config(config), keys, drain_s=drain)


def serve(
    config: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    keys_env: str = "TIERWISE_API_KEYS",
    drain_s: float = 30.0,
    log_level: str = "warning",
) -> None:
    """Run the gateway under uvicorn until interrupted. ``drain_s`` bounds how long
    a shutdown waits for in-flight requests and streams to finish."""
    _require()
    import uvicorn

    from ..config import check_config

    # Fail here, in the parent, on a bad config or key table: not in every worker.
    check_config(config)
    KeyRing.from_env(keys_env)
    os.environ[_ENV_CONFIG] = os.path.abspath(config)
    os.environ[_ENV_KEYS] = keys_env
    os.environ[_ENV_DRAIN] = str(drain_s)
    uvicorn.run(
        "tierwise.serve:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        timeout_graceful_shutdown=int(drain_s) if drain_s >= 1 else 1,
        log_level=log_level,
        access_log=False,
    )
