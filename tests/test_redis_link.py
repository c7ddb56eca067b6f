"""The pipelined Redis link itself, on a real ``redis-server``, with hiredis's
reply parser and with redis-py's own: a batch of calls shares one round trip
and gets its replies in order, a script Redis lost is loaded again, a script
error comes back as itself, in its place, without taking the link down."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from _redis_helpers import REDIS_SERVER, RedisServer
from tierwise._clock import SYSTEM_CLOCK
from tierwise.state._redis_conn import Conn, RedisDown

redis = pytest.importorskip("redis")
pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
    pytest.mark.timeout(60),
]


def _conn(url: str, parser: str) -> Conn:
    import redis.asyncio as aredis
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

    cls = {"hiredis": _AsyncHiredisParser, "python": _AsyncRESP2Parser}[parser]
    client = aredis.Redis.from_url(url, parser_class=cls, socket_timeout=None)
    return Conn(client, prefix="link-test:", clock=SYSTEM_CLOCK, timeout_s=5.0, retry_s=1.0, lease_s=30.0)


PARSERS = ["python"] + (["hiredis"] if redis.utils.HIREDIS_AVAILABLE else [])


@pytest.mark.parametrize("parser", PARSERS)
def test_replies_lost_scripts_and_script_errors(redis_server: RedisServer, parser: str) -> None:
    async def main() -> dict[str, Any]:
        conn = _conn(redis_server.url, parser)
        try:
            owners = (conn.owners_key,)
            first = await conn.call("status", "BUDGET_READ", owners, (1.0,))
            used = type(conn._link._parser).__name__
            # Eight calls submitted in one loop turn: one round trip, eight replies in order.
            trips = conn.round_trips
            keys = [(conn.prefix + f"b:day:x|k{i}",) for i in range(8)]
            futs = [conn.submit("BUDGET_READ", (conn.owners_key, *k), (1.0,)) for k in keys]
            batch = [await conn.result("status", f) for f in futs]
            batch_trips = conn.round_trips - trips
            # Redis forgets every script: the next call loads them again and is answered.
            await conn.call("status", "BUDGET_READ", owners, (1.0,))
            import redis.asyncio as aredis

            other = aredis.Redis.from_url(redis_server.url)
            await other.script_flush()
            await other.aclose()
            after_flush = await conn.call("status", "BUDGET_READ", owners, (1.0,))
            # A script error (arguments missing: Lua arithmetic on nil) is raised as
            # itself, in its place in a batch; the link stays up.
            bad = conn.submit("LIMIT_ACQUIRE", owners, (1.0,))
            good = conn.submit("BUDGET_READ", owners, (1.0,))
            try:
                await conn.result("status", bad)
                script_error = None
            except Exception as exc:
                script_error = exc
            beside = await conn.result("status", good)
            still = await conn.call("status", "BUDGET_READ", owners, (1.0,))
            return {
                "first": first,
                "parser": used,
                "batch": batch,
                "batch_trips": batch_trips,
                "after_flush": after_flush,
                "script_error": script_error,
                "beside": beside,
                "still": still,
                "down": conn.down(),
            }
        finally:
            await conn.aclose()

    got = anyio.run(main)
    assert ("Hiredis" in got["parser"]) is (parser == "hiredis")
    assert got["first"] == got["after_flush"] == got["still"] == got["beside"] == []
    # An unseen bucket: nothing spent, nothing reserved, for each of the eight.
    assert [[float(x) for x in r] for r in got["batch"]] == [[0.0, 0.0]] * 8
    assert got["batch_trips"] == 1
    assert isinstance(got["script_error"], redis.exceptions.ResponseError)
    assert not isinstance(got["script_error"], RedisDown)
    assert got["down"] is False
