"""Per-orchestrator structured logging that never leaks a key.

Why ``structlog.wrap_logger`` and not ``structlog.configure``: ``configure`` sets
process-wide defaults, which would let one orchestrator (or tierwise itself)
silently change how the host application logs. ``make_logger`` instead builds a
private processor chain per call; output goes to a stdlib ``logging`` logger, so
the application's handlers, formatters and levels decide where lines end up (a
library must not add handlers). Two loggers made with different secrets share
nothing but that stdlib logger.

Why a filtering bound logger: the executor logs every attempt at debug level.
``structlog.make_filtering_bound_logger`` turns methods below ``level`` into
no-ops returning ``None``, so a disabled ``log.debug("attempt", ...)`` costs one
Python call, with no processor chain, dict building or redaction.

Every event value (and the event text, and rendered tracebacks) is scrubbed with
``tierwise.errors.redact`` and the known secrets before rendering.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import redact

if TYPE_CHECKING:
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

    from .events import AttemptEvent, RequestEvent

__all__ = ["LogObserver", "log_level", "make_logger", "redacting_processor"]

_PLAIN = (str, int, float, bool, type(None))


def redacting_processor(secrets: Sequence[str] = ()) -> Processor:
    """A structlog processor scrubbing ``secrets`` and key-shaped strings from every
    value, recursing into dicts, lists and tuples. Other objects (exceptions, say)
    are rendered with ``str()`` first: their text is what would be logged anyway."""
    known = tuple(s for s in secrets if s)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, known)
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, Mapping):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        return redact(str(value), known)

    def processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {k: scrub(v) for k, v in event_dict.items()}

    return processor


def make_logger(
    name: str = "tierwise",
    *,
    level: str | int = "info",
    json: bool = False,
    secrets: Sequence[str] = (),
    **initial_values: Any,
) -> FilteringBoundLogger:
    """A structlog logger writing through ``logging.getLogger(name)``.

    ``level`` filters before any work is done; the stdlib logger's own level and
    handlers still apply after rendering. ``json=True`` renders one JSON object per
    line (for log shippers), otherwise logfmt ``key=value`` pairs. ``initial_values`` are
    bound to every event (``orchestrator="billing"``).
    """
    import structlog  # here, not at import: most processes never log through tierwise

    lvl = log_level(level)
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json
        else structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "event"], drop_missing=True, bool_as_flag=False
        )
    )
    processors: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redacting_processor(secrets),
        renderer,
    ]
    # wrap_logger returns a lazy proxy that would rebuild the bound logger on every
    # call (~2.5 µs even for a disabled level); bind() materializes it once.
    proxy = structlog.wrap_logger(
        logging.getLogger(name),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        cache_logger_on_first_use=False,
        **initial_values,
    )
    logger: FilteringBoundLogger = proxy.bind()
    return logger


def log_level(level: str | int) -> int:
    """The numeric level of ``"info"``/``"DEBUG"``/``20``; ``ValueError`` if unknown."""
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(lvl, int):
        raise ValueError(f"unknown log level {level!r}")
    return lvl


class LogObserver:
    """One structlog event per attempt and per request, through one orchestrator's
    own logger.

    Failed attempts log at info (``attempt_failed``), successful ones and whole
    requests at debug, so the default level records every fault without
    rendering anything on the success path. The structlog logger is made on the
    first event worth logging: a process that never fails a call never imports
    structlog (a cold start saves its import).
    """

    __slots__ = ("_json", "_level", "_log", "_name", "_secrets")

    def __init__(
        self,
        log: Any = None,
        *,
        name: str = "tierwise",
        level: str | int = "info",
        json: bool = False,
        secrets: Sequence[str] = (),
    ) -> None:
        self._log = log
        self._name = name
        self._level = log_level(level)
        self._json = json
        self._secrets = tuple(secrets)

    @property
    def log(self) -> Any:
        log = self._log
        if log is None:
            log = self._log = make_logger(
                self._name, level=self._level, json=self._json, secrets=self._secrets
            )
        return log

    def on_attempt(self, event: AttemptEvent) -> None:
        if event.outcome == "error":
            if self._level > logging.INFO:
                return
            self.log.info("attempt_failed", **_where(event), error_type=event.error_type, retry=event.retry)
        elif self._level <= logging.DEBUG:
            self.log.debug(
                "attempt",
                **_where(event),
                outcome=event.outcome,
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cost_usd=event.cost_usd,
                retry=event.retry,
            )

    def on_request(self, event: RequestEvent) -> None:
        if self._level > logging.DEBUG:
            return
        self.log.debug(
            "request",
            strategy=event.strategy,
            label=event.label,
            model=event.model,
            latency_ms=round(event.latency_ms, 1),
            cost_usd=event.cost_usd,
            fallback=event.fallback,
            cached=event.cached,
            error_type=event.error_type,
        )


def _where(event: AttemptEvent) -> dict[str, Any]:
    return {
        "model": event.model,
        "provider": event.provider,
        "path": event.path,
        "latency_ms": round(event.latency_ms, 1),
    }
