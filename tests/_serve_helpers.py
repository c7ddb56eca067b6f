"""``tierwise serve`` for tests: the gateway on a real loopback socket, in a thread
(one process) or as ``tierwise serve --workers N`` subprocesses, in front of a
``MockLLMServer``, with a config file written for it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from _redis_helpers import free_port
from tierwise.testing import MockModel

#: The upstream key ``write_config``'s providers read (``api_key_env``): no response may carry it.
UPSTREAM_KEY = "sk-upstream-do-not-leak"


def use_upstream_key() -> None:
    """Put ``UPSTREAM_KEY`` where ``write_config``'s providers look for it."""
    os.environ["TW_SERVE_MOCK_KEY"] = UPSTREAM_KEY


def openai_sdk(gateway: ServerThread) -> Any:
    """The official ``openai`` client pointed at ``gateway`` (no retries: a test sees every failure)."""
    import openai

    return openai.OpenAI(api_key="anything", base_url=gateway.base_url + "/v1", max_retries=0, timeout=10)


def mock_models() -> dict[str, MockModel]:
    """The mock models behind ``write_config``'s deployments, one per behaviour."""
    return {
        "gpt-mock": MockModel(input_tokens=11, output_tokens=7, tokens_per_chunk=2),
        "claude-mock": MockModel(input_tokens=13, output_tokens=5),
        # Fails before its first byte, every time: the fallback must hide it.
        "flaky-mock": MockModel(faults=["500"], cycle_faults=True),
        # Sends two content chunks, then stops sending without closing.
        "stall-mock": MockModel(
            faults=["stall"], cycle_faults=True, fault_after_chunks=2, tokens_per_chunk=1
        ),
        "tools-mock": MockModel(tool_calls=[("get_weather", {"city": "Paris"})]),
        "embed-mock": MockModel(),
        # Extended thinking, then a tool call: the signed thinking block must come back.
        "thinker-mock": MockModel(
            thinking="The user wants weather; call the tool.", tool_calls=[("get_weather", {"city": "Paris"})]
        ),
    }


def write_config(tmp: Path, base_url: str, extra: str = "", name: str = "serve.toml") -> Path:
    """The gateway's config: an OpenAI-format and an Anthropic-format provider on the
    mock, and one model per behaviour the tests need."""
    text = f"""
[providers.oai]
type = "openai"
base_url = "{base_url}/v1"
api_key_env = "TW_SERVE_MOCK_KEY"

[providers.ant]
type = "anthropic"
base_url = "{base_url}"
api_key_env = "TW_SERVE_MOCK_KEY"

[models.gpt]
provider = "oai"
model = "gpt-mock"
input_price = 1.0
output_price = 2.0

[models.claude]
provider = "ant"
model = "claude-mock"
input_price = 3.0
output_price = 15.0

[models.flaky]
provider = "oai"
model = "flaky-mock"
fallbacks = ["claude"]

[models.staller]
provider = "oai"
model = "stall-mock"
idle_timeout_s = 0.5

[models.tools]
provider = "oai"
model = "tools-mock"

[models.embedder]
provider = "oai"
model = "embed-mock"

[models.thinker]
provider = "ant"
model = "thinker-mock"

[strategies.default]
type = "single"
target = "gpt"

[retry]
max_attempts = 1

[logging]
level = "off"

{extra}
"""
    path = tmp / name
    path.write_text(text)
    return path


class ServerThread:
    """uvicorn serving ``app`` on a free port in a thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextmanager
def serve_process(
    config: Path, env: dict[str, str], workers: int = 1, extra_args: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``tierwise serve`` as a subprocess; yields (base URL, process) once /health answers."""
    port = free_port()
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**env, "PYTHONPATH": src + os.pathsep + env.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "tierwise", "serve", "--config", str(config), "--port", str(port)]
    cmd += ["--workers", str(workers), *extra_args]
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"tierwise serve exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tierwise serve did not start")
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
