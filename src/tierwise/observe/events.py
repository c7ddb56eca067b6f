"""The typed record of what happened: one event per provider try, one per request.

Every consumer of "what happened" — the metrics collector, the structlog logger,
the alert monitor, the audit log, and the exporters (Prometheus, OpenTelemetry) —
is an ``Observer`` fed these two events, so a new consumer is one class and never
a new call site in the executor. Events are immutable ``NamedTuple``s: an observer
cannot change what the next one sees, and building one costs a tuple (this runs
once per try on the hot path; a frozen dataclass costs ten times more).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..types import Attempt, Request, Response

__all__ = ["AttemptEvent", "Observer", "Observers", "RequestCancelled", "RequestEvent"]

_log = logging.getLogger("tierwise.observe")


class AttemptEvent(NamedTuple):
    """One provider try (or a cache hit, or a deployment passed over).

    ``model`` is the deployment alias and ``wire_model`` the provider's name for
    it; ``outcome`` is the ``Attempt`` outcome; ``error_type`` the error's class
    name (``None`` when it succeeded or was cancelled); ``retry`` says it was not
    the first try on this deployment; ``estimated`` that the tokens (and so the
    cost) are tierwise's estimate because the provider reported none.
    ``queue_wait_ms`` is the time spent waiting for a rate-limit slot; ``kind``
    is ``"complete"``, ``"stream"`` or ``"embed"``.
    """

    model: str
    provider: str
    path: str
    label: str | None
    outcome: str
    error_type: str | None
    latency_ms: float
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    retry: bool = False
    estimated: bool = False
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    wire_model: str = ""
    queue_wait_ms: float = 0.0
    error: str | None = None
    kind: str = "complete"
    attempt: Attempt | None = None


class RequestEvent(NamedTuple):
    """One whole orchestrator request, answered, failed or abandoned.

    ``model`` is the answering deployment (``None`` when none answered);
    ``error_type`` is set when the request failed, ``cancelled`` when its caller
    went away first. ``request``/``response``/``error``/``attempts`` carry the
    objects themselves for observers that record more than figures (the audit
    log); exporters must not put them in labels.
    """

    strategy: str
    label: str | None
    model: str | None
    latency_ms: float
    cost_usd: float | None
    fallback: bool
    cached: bool
    error_type: str | None = None
    ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    cancelled: bool = False
    request: Request | None = None
    response: Response | None = None
    error: BaseException | None = None
    attempts: tuple[Attempt, ...] = ()


class RequestCancelled(Exception):
    """Stands for a request its caller abandoned (``RequestEvent.error``, and the
    audit log's ``error``)."""

    def __init__(self) -> None:
        super().__init__("the caller stopped before the answer was complete (cancelled or disconnected)")


@runtime_checkable
class Observer(Protocol):
    """Receives every event of one orchestrator. Called inline on the event loop:
    keep it cheap and never block (hand slow work, like network export, to a
    buffer or a background task)."""

    def on_attempt(self, event: AttemptEvent) -> None: ...

    def on_request(self, event: RequestEvent) -> None: ...


class Observers:
    """The fan-out the executor and orchestrator emit to.

    An observer that raises is counted (``errors``) and logged, never allowed to
    fail the request it describes: a broken dashboard must not take the
    application down with it.
    """

    __slots__ = ("_items", "errors")

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._items: list[Observer] = list(observers)
        self.errors = 0

    def add(self, observer: Observer) -> None:
        if not callable(getattr(observer, "on_attempt", None)) or not callable(
            getattr(observer, "on_request", None)
        ):
            raise TypeError(
                f"an observer needs on_attempt(event) and on_request(event) methods, "
                f"got {type(observer).__name__}"
            )
        self._items.append(observer)

    def remove(self, observer: Observer) -> None:
        self._items.remove(observer)

    def __iter__(self) -> Iterator[Observer]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def attempt(self, event: AttemptEvent) -> None:
        for observer in self._items:
            try:
                observer.on_attempt(event)
            except Exception:
                self._failed(observer)

    def request(self, event: RequestEvent) -> None:
        for observer in self._items:
            try:
                observer.on_request(event)
            except Exception:
                self._failed(observer)

    def _failed(self, observer: Observer) -> None:
        self.errors += 1
        _log.exception("observer %r failed", observer)
