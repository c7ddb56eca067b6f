"""Response cache and request coalescing.

Three pieces the executor composes (cache → single-flight → provider):

* ``request_key`` / ``cacheable``: what makes two requests "the same", and which
  requests may be answered from a cache at all.
* ``ResponseCache`` with ``MemoryCache`` (LRU + TTL) and ``SQLiteCache``
  (persistent, shared by processes on one host).
* ``SingleFlight``: identical requests that arrive while the first is still in
  flight wait for its answer instead of paying for it again. The cache only helps
  *after* a reply; a burst of identical requests needs coalescing.

Hits: every cache implementation returns a fresh ``Response`` marked as a hit, so
the executor needs no special casing: ``cached=True``, ``cost_usd=0.0`` (a hit
costs nothing, and ``None`` would mean "price unknown"), ``attempts`` replaced by a
single ``Attempt(outcome="cached")`` and ``rate_limits=None`` (a stale header
snapshot must not steer the rate limiter). Everything else (text, usage, tool
calls, finish reason, model, provider, route, latency, request id) is the
original's. Note ``usage`` keeps the original token counts: the executor must not
price a cached response from its usage.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from .._clock import SYSTEM_CLOCK, Clock
from .._serde import response_from_dict, response_to_dict
from ..types import Attempt, Message, Request, Response

if TYPE_CHECKING:
    import sqlite3

    import anyio

__all__ = [
    "CoalescingCache",
    "MemoryCache",
    "ResponseCache",
    "SQLiteCache",
    "SingleFlight",
    "cacheable",
    "request_key",
]

T = TypeVar("T")

_KEY_VERSION = "tierwise-cache-v1"


# -- keys ------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    # 0 and 0.0 must give the same key; json writes them differently.
    return None if x is None else float(x)


def _message_repr(m: Message) -> list[Any]:
    calls = [
        # Parsed arguments, not the raw string: whitespace and key order differences
        # in what a provider sent do not change the conversation. The raw string is
        # used only when it did not parse.
        [c.id, c.name, c.arguments if c.arguments else c.raw_arguments]
        for c in m.tool_calls
    ]
    return [m.role, m.content, m.name, m.tool_call_id, calls]


def request_key(model: str, request: Request) -> str:
    """SHA-256 hex of everything that can change the model's answer, and the model.

    Excluded on purpose: ``metadata`` (routing hints and budget tags), ``user`` (an
    abuse-tracking id) and ``stream_usage`` (transport detail): two users asking the
    same question should share the answer. Canonical JSON (sorted keys, fixed
    separators, numbers normalized) makes the key stable across processes and
    independent of dict ordering.
    """
    tools = None if request.tools is None else [[t.name, t.description, t.parameters] for t in request.tools]
    payload = [
        _KEY_VERSION,
        model,
        [_message_repr(m) for m in request.messages],
        request.max_tokens,
        _num(request.temperature),
        _num(request.top_p),
        request.stop,
        tools,
        request.tool_choice,
        request.parallel_tool_calls,
        request.response_format,
        request.reasoning_effort,
        request.thinking_budget,
        request.seed,
        request.extra_body,
    ]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def cacheable(request: Request, force: bool = False) -> bool:
    """Whether a cached answer is an acceptable answer to ``request``.

    * ``force=True``: always (the caller opted in explicitly).
    * ``temperature`` unset (``None``): cacheable. Turning the cache on and sending
      the same prompt again means "don't pay twice" — that is the tutorial use
      case, and most requests never set a temperature. Any one sample at the
      provider's default temperature is as valid as another.
    * ``temperature == 0``: cacheable (as deterministic as the provider gets).
    * ``temperature > 0``: not cacheable — the caller explicitly asked for
      variety — unless ``seed`` is set too, which asks for reproducibility, and
      a cache gives exactly that.
    """
    if force:
        return True
    t = request.temperature
    return t is None or t <= 0 or request.seed is not None


# -- caches ----------------------------------------------------------------------


@runtime_checkable
class ResponseCache(Protocol):
    """Where answers are kept. ``get`` returns a hit-marked copy (see module doc)."""

    async def get(self, key: str) -> Response | None: ...

    async def set(self, key: str, response: Response, ttl_s: float | None = None) -> None:
        """Store ``response``; ``ttl_s=None`` uses the cache's default TTL."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CoalescingCache(ResponseCache, Protocol):
    """A cache shared by processes that also coalesces identical in-flight calls
    across them (``SingleFlight`` does it within one process). The executor, on a
    miss, ``claim``s the key before calling: the answer another process's call
    produced meanwhile (a hit), or ``None`` — call now, and give the key back with
    ``set`` (the answer) or ``abandon`` (none: ``failed`` for an error)."""

    async def claim(self, key: str, *, wait_s: float | None = None) -> Response | None: ...

    def abandon(self, key: str, *, failed: bool) -> None: ...


def _as_hit(resp: Response) -> Response:
    resp.cached = True
    resp.cost_usd = 0.0
    resp.rate_limits = None
    resp.attempts = [
        Attempt(
            model=resp.deployment or resp.model,
            provider=resp.provider,
            outcome="cached",
            cost_usd=0.0,
            path=resp.route.strategy_path,
        )
    ]
    return resp


def _freeze(resp: Response) -> dict[str, Any]:
    """A dict sharing nothing mutable with ``resp`` (tool-call arguments are copied)."""
    d = response_to_dict(resp)
    for call in d["tool_calls"]:
        call["arguments"] = copy.deepcopy(call["arguments"])
    return d


def _thaw(d: dict[str, Any]) -> Response:
    resp = response_from_dict(d)
    for call in resp.tool_calls:
        if call.arguments:
            call.arguments = copy.deepcopy(call.arguments)
    return resp


def _ttl_deadline(now: float, ttl_s: float | None) -> float:
    if ttl_s is None or ttl_s == math.inf:
        return math.inf
    return now + ttl_s


class MemoryCache:
    """In-process LRU cache with a TTL; every operation is O(1).

    Entries are stored as detached dicts and rebuilt on each hit, so a caller that
    mutates the ``Response`` it got (the executor fills in route and attempts) never
    changes what the next caller sees. TTLs use the monotonic ``clock.now()``.
    ``ttl_s=None`` means entries never expire (they still age out by LRU).
    """

    def __init__(
        self, max_entries: int = 10_000, ttl_s: float | None = 3600.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def get(self, key: str) -> Response | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.now():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return _as_hit(_thaw(entry[1]))

    async def set(self, key: str, response: Response, ttl_s: float | None = None) -> None:
        ttl = self.ttl_s if ttl_s is None else ttl_s
        if ttl is not None and ttl <= 0:
            self._data.pop(key, None)
            return
        data = self._data
        data[key] = (_ttl_deadline(self._clock.now(), ttl), _freeze(response))
        data.move_to_end(key)
        while len(data) > self.max_entries:
            data.popitem(last=False)

    async def aclose(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tierwise_responses ("
    " key TEXT PRIMARY KEY, expires_at REAL NOT NULL, body TEXT NOT NULL)"
)
_PURGE_EVERY = 256


class SQLiteCache:
    """Persistent cache in one SQLite file (stdlib ``sqlite3``).

    Survives restarts and can be shared by several processes on one host (WAL
    mode: readers do not block the writer). Every database call runs in a worker
    thread via ``anyio.to_thread.run_sync`` so the event loop never waits on disk;
    one connection guarded by a lock serializes them (SQLite serializes writers
    anyway). The connection is opened lazily on first use, so constructing the
    cache does no I/O. TTLs use wall time (``clock.wall()``), since monotonic time
    does not survive a restart. Expired rows are dropped when read and purged every
    ``_PURGE_EVERY`` writes.

    After ``aclose()`` the cache is a no-op (``get`` misses, ``set`` does nothing):
    requests still finishing during shutdown must not fail because of the cache.
    """

    def __init__(
        self, path: str | PathLike[str], ttl_s: float | None = 3600.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._writes = 0

    def _connect(self) -> sqlite3.Connection:
        # Called with the lock held.
        if self._conn is None:
            import sqlite3  # lazily: only a configured SQLite cache pays for it

            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _get_sync(self, key: str) -> str | None:
        with self._lock:
            if self._closed:
                return None
            conn = self._connect()
            row = conn.execute(
                "SELECT expires_at, body FROM tierwise_responses WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            if row[0] <= self._clock.wall():
                conn.execute(
                    "DELETE FROM tierwise_responses WHERE key = ? AND expires_at <= ?", (key, row[0])
                )
                return None
            body: str = row[1]
            return body

    def _set_sync(self, key: str, expires_at: float, body: str) -> None:
        with self._lock:
            if self._closed:
                return
            conn = self._connect()
            conn.execute(
                "INSERT OR REPLACE INTO tierwise_responses (key, expires_at, body) VALUES (?, ?, ?)",
                (key, expires_at, body),
            )
            self._writes += 1
            if self._writes % _PURGE_EVERY == 0:
                conn.execute("DELETE FROM tierwise_responses WHERE expires_at <= ?", (self._clock.wall(),))

    def _delete_sync(self, key: str) -> None:
        with self._lock:
            if not self._closed:
                self._connect().execute("DELETE FROM tierwise_responses WHERE key = ?", (key,))

    def _close_sync(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def get(self, key: str) -> Response | None:
        if self._closed:
            return None
        body = await _in_thread(self._get_sync, key)
        if body is None:
            return None
        try:
            return _as_hit(response_from_dict(json.loads(body)))
        except (ValueError, KeyError, TypeError, AttributeError):
            # A row this version cannot read (corrupt, or written by an incompatible
            # version): a miss, and drop it so it is replaced.
            await _in_thread(self._delete_sync, key)
            return None

    async def set(self, key: str, response: Response, ttl_s: float | None = None) -> None:
        if self._closed:
            return
        ttl = self.ttl_s if ttl_s is None else ttl_s
        if ttl is not None and ttl <= 0:
            await _in_thread(self._delete_sync, key)
            return
        # ensure_ascii: lone surrogates in model output must not break the UTF-8 encode.
        body = json.dumps(response_to_dict(response), separators=(",", ":"))
        await _in_thread(self._set_sync, key, _ttl_deadline(self._clock.wall(), ttl), body)

    async def aclose(self) -> None:
        await _in_thread(self._close_sync)

    async def __aenter__(self) -> SQLiteCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# -- coalescing ------------------------------------------------------------------


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking disk work off the event loop (anyio imported on first use)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn, *args)


def _new_event() -> anyio.Event:
    import anyio

    return anyio.Event()


@dataclass(slots=True, eq=False)
class _Flight:
    done: anyio.Event = field(default_factory=_new_event)
    result: Any = None
    error: BaseException | None = None
    abandoned: bool = False
    followers: int = 0


class SingleFlight:
    """Run one call per key at a time; concurrent callers with the same key share it.

    ``await flight.do(key, fn)``: the first caller (the leader) runs ``fn()``;
    callers arriving while it runs wait and get the same result object, or the same
    exception raised again. Nothing is remembered after the call finishes — that is
    the cache's job.

    Cancellation: if the *leader* is cancelled (its caller's deadline, a client
    disconnect), the followers are not cancelled with it and do not hang: they wake
    up and one of them takes over, running its own ``fn`` (identical by contract of
    the shared key); the rest follow the new leader. A cancelled follower simply
    stops waiting and does not affect the others. Other non-``Exception`` errors
    (``KeyboardInterrupt``) are treated like cancellation: they concern the
    leader's task, not the shared result. Ordinary exceptions are shared: every
    waiter gets the same exception object.

    Followers receive the leader's result object itself; callers that mutate it
    (the executor fills in route and attempts) must copy it first.
    """

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        """Keys currently in flight."""
        return len(self._flights)

    def waiting(self, key: Hashable) -> int:
        """Followers currently waiting on ``key`` (0 if not in flight)."""
        flight = self._flights.get(key)
        return 0 if flight is None else flight.followers

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, fn)
            flight.followers += 1
            try:
                await flight.done.wait()
            finally:
                flight.followers -= 1
            if flight.abandoned:
                continue  # the leader was cancelled: take over (or follow whoever did)
            if flight.error is not None:
                raise flight.error
            result: T = flight.result
            return result

    async def _lead(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        flight = _Flight()
        self._flights[key] = flight
        result: Any = None
        error: BaseException | None = None
        try:
            result = await fn()
        except Exception as exc:
            error = exc
            raise
        finally:
            self.end(key, flight, result, error)
        out: T = result
        return out

    def begin(self, key: Hashable) -> _Flight | None:
        """Lead ``key`` by hand, for a leader that is not one awaitable (a stream,
        whose events go to its own consumer while followers wait for the end):
        the flight to pass to ``end``, or ``None`` when a call is already in flight
        (then ``do`` follows it)."""
        if key in self._flights:
            return None
        flight = self._flights[key] = _Flight()
        return flight

    def end(self, key: Hashable, flight: _Flight, result: Any, error: BaseException | None) -> None:
        """Finish a flight: followers get ``error`` if given, else ``result``; with
        neither (the leader was cancelled or abandoned) one of them takes over."""
        if error is not None:
            flight.error = error
        elif result is not None:
            flight.result = result
        else:
            flight.abandoned = True
        # Unregister before waking followers, so a follower taking over finds the
        # key free and becomes the new leader.
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.done.set()
