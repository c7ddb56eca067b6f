"""An httpcore connection pool that hands an idle connection to one request at a time.

Kept apart from ``_http.py`` and imported when a client is built: httpcore
imports anyio, which a cold ``Orchestrator.from_config`` must not load.
"""

from __future__ import annotations

import httpcore

__all__ = ["hand_out_once"]


class _HandOutOncePool(httpcore.AsyncConnectionPool):
    """httpcore's pool, except that an idle connection it has handed to a request
    is not handed to a second one before the first has started on it.

    Why: httpcore assigns an idle HTTP/1.1 connection to a request, but the
    connection stays ``IDLE`` until that request's task has taken two locks
    (each an event-loop turn under anyio). A request that enters the pool in
    between is given the same connection, loses the race, gets
    ``ConnectionNotAvailable`` and goes round the pool again: another
    assignment pass, another connection lock, an exception. That happens
    whenever several requests reach the pool in the same loop turn, which is
    what the Redis state backend does (one pipelined reply admits several
    requests at once): about one such retry per request with 8 in flight,
    ~200 us of CPU each, most of what the Redis backend cost over the memory
    one (``benchmarks/shared_state.py``; upstream: encode/httpcore#1111).

    Same decisions as httpcore 1.0's ``_assign_requests_to_connections``
    otherwise: closed connections dropped, expired ones and surplus idle ones
    (more connections than ``max_keepalive_connections``) closed, a queued
    request given the first available connection, else a new one, else an idle
    one is closed to make room. Nothing is remembered between passes: what is
    taken is read from the pool's pending requests each time, so a request that is
    cancelled or fails frees its connection exactly as with httpcore. Correctness
    does not depend on it: httpcore's own state check and retry stay under it.
    Installed only on an ``http1``-only pool (what ``make_http_client`` builds):
    an HTTP/2 connection serves many requests at once and must stay available
    while one is starting.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        # Runs under the pool's (thread) lock, synchronously: no other pass interleaves.
        conns: list[httpcore.AsyncConnectionInterface] = self._connections
        requests = self._requests
        closing: list[httpcore.AsyncConnectionInterface] = []
        for conn in list(conns):
            if conn.is_closed():
                conns.remove(conn)
            elif conn.has_expired() or (conn.is_idle() and len(conns) > self._max_keepalive_connections):
                conns.remove(conn)
                closing.append(conn)
        # Handed out but not started on yet (started ones are no longer idle).
        taken = {id(r.connection) for r in requests if r.connection is not None}
        for pool_request in requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            chosen = None
            for conn in conns:
                if conn.can_handle_request(origin) and conn.is_available() and id(conn) not in taken:
                    chosen = conn
                    break
            if chosen is None:
                if len(conns) >= self._max_connections:
                    idle = next((c for c in conns if c.is_idle() and id(c) not in taken), None)
                    if idle is None:
                        continue  # waits for a connection to be released
                    conns.remove(idle)
                    closing.append(idle)
                chosen = self.create_connection(origin)
                conns.append(chosen)
            pool_request.assign_to_connection(chosen)
            taken.add(id(chosen))
        return closing


def hand_out_once(transport: object) -> None:
    """Give ``transport``'s pool ``_HandOutOncePool``'s assignment, in place (the
    pool keeps every setting httpx gave it). Only when the pool is exactly
    httpcore 1.0's plain pool with the internals the override reads: another
    httpcore release (or a proxy pool) is left as it is, which costs CPU, not
    correctness."""
    pool = getattr(transport, "_pool", None)
    if (
        # The override mirrors httpcore 1.0's assignment pass; another release may
        # change what that private method must do, so only 1.0.x gets it.
        str(getattr(httpcore, "__version__", "")).startswith("1.0.")
        and type(pool) is httpcore.AsyncConnectionPool
        and not getattr(pool, "_http2", True)
        and all(
            hasattr(pool, a)
            for a in ("_connections", "_requests", "_max_connections", "_max_keepalive_connections")
        )
    ):
        pool.__class__ = _HandOutOncePool
