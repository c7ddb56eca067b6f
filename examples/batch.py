"""Batch processing with bounded concurrency, progress, and crash-safe resume.

Mirrors the tutorials' "Parallel Processing for Batch Tasks" (``batch_process(items,
prompt_template, max_workers=5)`` with DeepSeek, "generate docstrings for 50
functions"), with ``tierwise.strategies.run_batch``:

* 30 function signatures, one template (``{item}`` is filled per item), at most 8
  requests in flight, a progress callback, results in input order;
* every finished item is appended to an output JSONL file at once, so a crash
  loses at most the requests in flight;
* running again with the same output file loads the answers already paid for
  and sends only the missing items.

The "crash" is simulated by cancelling the first run from its progress callback
after 12 items. The second run finishes the rest; a third run sends nothing at
all. The mock server's request log shows exactly what was sent each time.

    python examples/batch.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import anyio

import tierwise as tw
from tierwise.strategies import BatchProgress, run_batch
from tierwise.testing import MockLLMServer, MockModel
from tierwise.testing.mock_server import MockRequest

KEY_ENV = "TIERWISE_EXAMPLE_KEY"  # an example-only variable: never a real key

TEMPLATE = "Write a clear docstring for this Python function:\n{item}"
NAMES = [
    "calculate_tax",
    "validate_email",
    "parse_date",
    "merge_records",
    "send_invoice",
    "hash_password",
    "load_config",
    "retry_request",
    "format_money",
    "slugify",
]
ITEMS = [f"def {name}_{i}(value, *, strict=False):" for i in range(3) for name in NAMES]  # 30 items
CRASH_AFTER = 12


def batch_config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "gateway": {"type": "openai", "compat": "gateway", "base_url": base_url, "api_key_env": KEY_ENV}
        },
        # Bulk work goes to the cheapest model, as in the tutorials.
        "models": {"deepseek": {"provider": "gateway", "model": "deepseek-chat", "max_concurrency": 8}},
    }


def _docstring(request: MockRequest) -> str:
    signature = request.prompt.rsplit("\n", 1)[-1]
    return f'"""{signature.split("(")[0].removeprefix("def ")}: one-line summary of what it does."""'


async def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-example-not-a-real-key")
    mocks = {"deepseek-chat": MockModel(reply=_docstring, latency_ms=25, jitter_ms=10)}
    with tempfile.TemporaryDirectory(prefix="tierwise-example-") as tmp:
        output = Path(tmp) / "docstrings.jsonl"
        async with MockLLMServer(mocks, seed=1) as server:
            config = batch_config(server.base_url + "/v1")

            def progress(p: BatchProgress) -> None:
                if p.done % 10 == 0 or p.done == p.total:
                    print(
                        f"   progress: {p.done}/{p.total} done ({p.resumed} resumed, {p.failed} failed), "
                        f"${p.cost_usd:.6f} so far"
                    )

            # Run 1: "crashes" (is cancelled) after CRASH_AFTER items, as a killed process would.
            print(
                f"Run 1: {len(ITEMS)} items, concurrency 8, output {output.name}; crashes after {CRASH_AFTER}"
            )
            async with tw.Orchestrator.from_config(config) as orch:
                with anyio.CancelScope() as crash:

                    def progress_then_crash(p: BatchProgress) -> None:
                        progress(p)
                        if p.done >= CRASH_AFTER:
                            crash.cancel()

                    await run_batch(
                        orch, ITEMS, TEMPLATE, concurrency=8, progress=progress_then_crash, output=output
                    )
            saved = len(output.read_text().splitlines())
            sent_1 = len(server.requests)
            print(f"   crashed: {saved} answers saved to {output.name}; server received {sent_1} requests")
            print("   (requests in flight at the crash were sent but their answers lost)")

            # Run 2: a fresh process would build a fresh orchestrator; same output file.
            print("\nRun 2: same items, same output file")
            async with tw.Orchestrator.from_config(config) as orch:
                results = await run_batch(
                    orch, ITEMS, TEMPLATE, concurrency=8, progress=progress, output=output
                )
            sent_2 = server.requests[sent_1:]
            from_file = {r.prompt for r in results if r.resumed}
            in_flight = {r.prompt for r in server.requests[:sent_1]} - from_file
            print(
                f"   {sum(r.ok for r in results)}/{len(results)} ok: {len(from_file)} loaded from the file, "
                f"{len(sent_2)} new requests sent ({len(in_flight)} of them had been in flight at the crash)"
            )
            print(f"   already-answered items sent again: {sum(1 for r in sent_2 if r.prompt in from_file)}")
            first = results[0]
            answer = first.response.text if first.response is not None else first.error
            print(f"   e.g. {first.prompt.splitlines()[-1]}  ->  {answer}")

            # Run 3: everything is in the file; nothing is sent.
            print("\nRun 3: same again")
            before = len(server.requests)
            async with tw.Orchestrator.from_config(config) as orch:
                results = await run_batch(orch, ITEMS, TEMPLATE, concurrency=8, output=output)
            print(
                f"   {sum(r.ok for r in results)}/{len(results)} ok, all resumed: "
                f"{all(r.resumed for r in results)}; new requests sent: {len(server.requests) - before}"
            )
            total = sum(r.response.cost_usd or 0.0 for r in results if r.response is not None)
            print(
                f"\nTotal paid for {len(ITEMS)} docstrings: ${total:.6f}; "
                f"server requests overall: {len(server.requests)}"
            )


if __name__ == "__main__":
    anyio.run(main)
