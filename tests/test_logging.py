"""make_logger: redaction, no process-global configuration, cheap disabled levels."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog

from tierwise.observe.logging import make_logger

ALPHA = "alpha-secret-0001"  # not key-shaped: only the secrets list catches these
BETA = "beta-secret-0002"


@pytest.fixture
def sink() -> Iterator[tuple[str, list[str]]]:
    """A fresh stdlib logger name and the rendered lines it receives."""
    name = f"tierwise.test.{uuid.uuid4().hex[:8]}"
    lines: list[str] = []

    class H(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    std = logging.getLogger(name)
    handler = H(level=logging.DEBUG)
    std.addHandler(handler)
    std.setLevel(logging.DEBUG)
    std.propagate = False
    yield name, lines
    std.removeHandler(handler)


def test_redacts_every_value(sink: tuple[str, list[str]]) -> None:
    name, lines = sink
    log = make_logger(name, secrets=[ALPHA])
    log.info(
        f"calling with {ALPHA}",
        error=f"401 for key {ALPHA}",
        nested={"headers": {"x-api-key": ALPHA}, "list": [ALPHA, 3]},
        exc=ValueError(f"bad {ALPHA}"),
        shaped="Authorization: Bearer sk-live-abcdefghijklmnop",
        count=3,
    )
    assert len(lines) == 1
    out = lines[0]
    assert ALPHA not in out
    assert "sk-live-abcdefghijklmnop" not in out
    assert out.count("[REDACTED]") >= 6
    assert "count=3" in out


def test_redacts_tracebacks(sink: tuple[str, list[str]]) -> None:
    name, lines = sink
    log = make_logger(name, secrets=[ALPHA])
    try:
        raise RuntimeError(f"provider said: invalid key {ALPHA}")
    except RuntimeError:
        log.exception("call failed")
    assert "Traceback" in lines[0]
    assert ALPHA not in lines[0]


def test_two_loggers_do_not_interfere(sink: tuple[str, list[str]]) -> None:
    name, lines = sink
    a = make_logger(name, secrets=[ALPHA])
    b = make_logger(name, secrets=[BETA])
    a.info("a", value=f"{ALPHA} {BETA}")
    b.info("b", value=f"{ALPHA} {BETA}")
    assert ALPHA not in lines[0] and BETA in lines[0]
    assert BETA not in lines[1] and ALPHA in lines[1]


def test_does_not_touch_global_structlog_config(sink: tuple[str, list[str]]) -> None:
    name, _ = sink
    before = structlog.get_config()
    was_configured = structlog.is_configured()
    make_logger(name, level="debug", json=True, secrets=[ALPHA]).info("x")
    assert structlog.get_config() == before
    assert structlog.is_configured() == was_configured


def test_json_output(sink: tuple[str, list[str]]) -> None:
    name, lines = sink
    log = make_logger(name, json=True, secrets=[ALPHA], orchestrator="billing")
    log.warning("attempt", model="opus", outcome="error", latency_ms=12.5, note=ALPHA)
    rec = json.loads(lines[0])
    assert rec["event"] == "attempt" and rec["level"] == "warning"
    assert rec["model"] == "opus" and rec["latency_ms"] == 12.5
    assert rec["orchestrator"] == "billing"
    assert rec["note"] == "[REDACTED]"
    assert rec["timestamp"].endswith("Z")


def test_bind_keeps_redaction(sink: tuple[str, list[str]]) -> None:
    name, lines = sink
    log = make_logger(name, secrets=[ALPHA]).bind(key=ALPHA)
    log.info("bound")
    assert ALPHA not in lines[0]


def test_disabled_level_does_no_work(sink: tuple[str, list[str]]) -> None:
    name, lines = sink
    rendered: list[int] = []

    class Probe:
        def __str__(self) -> str:
            rendered.append(1)
            return "probe"

    log = make_logger(name, level="info")
    log.debug("attempt", model="opus", probe=Probe())
    assert lines == [] and rendered == []  # not rendered, not even redacted
    log.info("attempt", probe=Probe())
    assert rendered == [1] and "probe=probe" in lines[0]
    warn_only = make_logger(name, level=logging.WARNING)
    warn_only.info("quiet")
    assert len(lines) == 1


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError):
        make_logger(level="loud")


def test_returns_a_materialized_logger_not_a_lazy_proxy() -> None:
    # structlog's lazy proxy rebuilds the bound logger on every call (~10x the cost
    # of a disabled debug call); the executor logs every attempt at debug level.
    log = make_logger(level="info")
    assert "Lazy" not in type(log).__name__
    assert log.debug("x") is None
