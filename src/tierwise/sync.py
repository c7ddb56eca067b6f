"""tierwise for code that is not async: scripts, Flask, Django, Celery workers.

``SyncOrchestrator`` wraps an ``Orchestrator`` and answers with plain blocking
calls::

    from tierwise.sync import SyncOrchestrator

    with SyncOrchestrator.from_config("tierwise.toml") as orch:
        resp = orch.run("Extract the names as JSON", max_tokens=200)
        print(resp.text, resp.cost_usd)

The thread and loop rules, and why:

* **One event loop per facade, on its own daemon thread**, started by the
  constructor and stopped by ``close()`` (or leaving the ``with`` block). The
  orchestrator's connection pools, rate limiters and budget reservations belong
  to that loop for its whole life. A fresh loop per call (``asyncio.run`` each
  time) would be simpler, but pooled connections cannot move between loops: the
  second call would fail or reconnect every time.
* **Thread-safe.** Any number of threads (a threaded Flask or Django server) may
  call one facade at once; their requests run concurrently on the loop, and the
  limits and budgets are shared as with one async orchestrator. Build one facade
  per process at start-up, not one per request.
* **Not from inside a running event loop.** A blocking call there would freeze
  that loop until the answer arrives (every other task stalls), so it raises
  ``EventLoopRunningError`` at once: in async code ``await`` the ``Orchestrator``
  itself. Calling from a worker thread (``anyio.to_thread.run_sync``,
  ``loop.run_in_executor``) is fine: that thread runs no loop.
* **Close it.** ``close()`` releases connections and flushes the audit log; a
  facade still open at interpreter exit is closed then, and its thread is a
  daemon, so a script that forgets never hangs on exit.
* A ``KeyboardInterrupt`` (or any exception) in the waiting thread cancels the
  request on the loop, which releases its limiter slot and budget reservation.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._clock import SYSTEM_CLOCK, Clock
from .errors import TierwiseError

if TYPE_CHECKING:
    from .observe.metrics import MetricsCollector
    from .orchestrator import Orchestrator
    from .strategies.batch import BatchResult
    from .types import Request, Response, RouteInfo, StreamEvent

__all__ = ["EventLoopRunningError", "SyncOrchestrator"]

T = TypeVar("T")

_OPEN: weakref.WeakSet[SyncOrchestrator] = weakref.WeakSet()


class EventLoopRunningError(TierwiseError, RuntimeError):
    """A blocking ``SyncOrchestrator`` call was made from inside a running event
    loop, which it would have frozen: ``await`` the ``Orchestrator`` there instead."""


def _in_running_loop() -> bool:
    import sniffio

    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


class SyncOrchestrator:
    """Blocking calls over an ``Orchestrator`` (see the module docstring for the
    thread and loop rules). Build it with ``from_config`` or from a function that
    builds an ``Orchestrator`` (run on the facade's loop thread)."""

    def __init__(self, build: Callable[[], Orchestrator]) -> None:
        if not callable(build):
            raise TypeError("SyncOrchestrator(build) expects a function returning an Orchestrator")
        if _in_running_loop():
            raise EventLoopRunningError(
                "SyncOrchestrator is for code without an event loop; here, use tierwise.Orchestrator "
                "and await its methods"
            )
        self._closed = False
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tierwise-sync", daemon=True)
        self._thread.start()

        async def make() -> Orchestrator:
            return build()

        try:
            self._orch = self._call(make())
        except BaseException:
            self._stop_loop()
            raise
        _OPEN.add(self)

    @classmethod
    def from_config(
        cls, source: str | os.PathLike[str] | Mapping[str, Any], *, clock: Clock = SYSTEM_CLOCK
    ) -> SyncOrchestrator:
        """Build from a TOML file path or a dict, as ``Orchestrator.from_config``
        (``ConfigError`` names the bad field)."""
        from .orchestrator import Orchestrator

        return cls(lambda: Orchestrator.from_config(source, clock=clock))

    # ------------------------------------------------------------------ the loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the facade's loop and wait for it in this thread."""
        if _in_running_loop():
            coro.close()  # never started: no "was never awaited" warning
            raise EventLoopRunningError(
                "a blocking SyncOrchestrator call inside a running event loop would freeze it; "
                "await the tierwise.Orchestrator (SyncOrchestrator.orchestrator) instead"
            )
        if self._closed and not self._loop.is_running():
            coro.close()
            raise RuntimeError("this SyncOrchestrator is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted while waiting (Ctrl-C): cancel the task on the loop so its
            # limiter slot, budget reservation and connection are released.
            future.cancel()
            raise

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    # ------------------------------------------------------------------ the API

    @property
    def orchestrator(self) -> Orchestrator:
        """The wrapped ``Orchestrator``. Its async methods must run on the
        facade's loop, so use it only for what needs no loop (``deployments``,
        ``strategies``, ``add_strategy``)."""
        return self._orch

    @property
    def metrics(self) -> MetricsCollector:
        """The orchestrator's metrics (``.snapshot()`` is safe from any thread)."""
        return self._orch.metrics

    def run(
        self,
        prompt: str | Request,
        strategy: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Response:
        """``Orchestrator.run``, blocking: the same ``system``, ``max_tokens``,
        ``temperature`` and other request keywords."""
        return self._call(self._orch.run(prompt, strategy, metadata, **params))

    def stream(
        self,
        prompt: str | Request,
        strategy: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Iterator[StreamEvent]:
        """``Orchestrator.stream`` as a plain iterator: ``TextDelta`` events as they
        arrive, then ``Done``. Stopping early (``break``) closes the stream on the
        loop, releasing its connection and limiter slot."""
        events = self._orch.stream(prompt, strategy, metadata, **params)
        finished = False
        try:
            while True:
                try:
                    event = self._call(_next(events))
                except StopAsyncIteration:
                    finished = True
                    return
                yield event
        finally:
            if not finished and not self._closed:
                self._call(events.aclose())

    def explain(
        self,
        prompt: str | Request,
        strategy: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> RouteInfo:
        """Which route a prompt would take and why; calls no model."""
        return self._orch.explain(prompt, strategy, metadata, **params)

    def batch(self, items: Sequence[Any], template: str | None = None, **options: Any) -> list[BatchResult]:
        """``Orchestrator.batch``, blocking: results in input order."""
        return self._call(self._orch.batch(items, template, **options))

    def close(self) -> None:
        """Release connections, flush the audit log, stop the loop thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _OPEN.discard(self)
        try:
            future = asyncio.run_coroutine_threadsafe(self._orch.aclose(), self._loop)
            future.result(timeout=30)
        finally:
            self._stop_loop()

    def __enter__(self) -> SyncOrchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SyncOrchestrator({self._orch!r}, {state})"


async def _next(events: Any) -> StreamEvent:
    result: Awaitable[StreamEvent] = events.__anext__()
    return await result


@atexit.register
def _close_open_facades() -> None:
    # Runs while daemon threads still live, so each loop can close its connections.
    for facade in list(_OPEN):
        try:
            facade.close()
        except Exception:
            pass
