"""Where alerts go: the log, a webhook, or the application's own callback.

Each sink is an ``AlertMonitor`` handler (``handler(alert)``). A Python callback
needs no class: any function taking an ``Alert`` is one.

* ``LogSink`` logs a firing alert as a warning and a resolved one as info, on
  the standard ``logging`` logger ``tierwise.alerts`` (so it lands wherever the
  application's logging goes).
* ``WebhookSink`` POSTs the alert as JSON (``Alert.to_dict()``) with retries.
  It never blocks a request: the call returns a coroutine the monitor runs as a
  background task, at most ``max_pending`` deliveries are in flight (more are
  dropped and counted in ``dropped``: an alert storm must not pile up tasks), and
  the URL — a Slack or PagerDuty webhook URL is a credential — appears in no log
  line or error message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import anyio
import httpx

from .alerts import Alert

__all__ = ["LogSink", "WebhookSink"]


class LogSink:
    """Alerts as log records on ``logger`` (default ``logging.getLogger("tierwise.alerts")``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("tierwise.alerts")

    def __call__(self, alert: Alert) -> None:
        level = logging.INFO if alert.resolved else logging.WARNING
        self.logger.log(level, "alert %s: %s", "resolved" if alert.resolved else "firing", alert.message)

    def __repr__(self) -> str:
        return f"LogSink({self.logger.name!r})"


# Statuses worth another try: the receiver is busy or broken for now.
_RETRY_STATUS = frozenset((408, 425, 429, 500, 502, 503, 504))


class WebhookSink:
    """POST each alert as JSON to ``url``, up to ``max_attempts`` tries.

    A connection error, a timeout or a 408/429/5xx reply is retried after
    ``backoff_s`` (doubling); any other reply ends the delivery. ``delivered``,
    ``failed`` and ``dropped`` count the outcomes. ``client`` lets the
    application supply its own ``httpx.AsyncClient`` (it is then not closed).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        max_pending: int = 100,
        headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if max_attempts < 1 or max_pending < 1 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("max_attempts and max_pending must be >= 1, timeout_s > 0, backoff_s >= 0")
        self._url = url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_pending = max_pending
        self._headers = dict(headers or {})
        self._client = client
        self._own_client: httpx.AsyncClient | None = None
        self.pending = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._log = logging.getLogger("tierwise.alerts")

    def __call__(self, alert: Alert) -> Awaitable[None] | None:
        if self.pending >= self.max_pending:
            self.dropped += 1
            return None
        self.pending += 1
        return self._deliver(alert)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._own_client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    async def _deliver(self, alert: Alert) -> None:
        try:
            body = alert.to_dict()
            delay = self.backoff_s
            for attempt in range(1, self.max_attempts + 1):
                problem: str
                try:
                    reply = await self._http().post(self._url, json=body, headers=self._headers)
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                else:
                    if reply.status_code < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {reply.status_code}"
                    if reply.status_code not in _RETRY_STATUS:
                        break
                if attempt < self.max_attempts:
                    await anyio.sleep(delay)
                    delay *= 2
            self.failed += 1
            # Never the URL: it is often a credential.
            self._log.warning("alert webhook delivery failed for %s: %s", alert.rule, problem)
        finally:
            self.pending -= 1

    async def aclose(self) -> None:
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = self._client = None

    def __repr__(self) -> str:
        return (
            f"WebhookSink(max_attempts={self.max_attempts}, delivered={self.delivered}, failed={self.failed})"
        )
