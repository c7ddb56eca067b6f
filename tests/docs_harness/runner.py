"""Run one docs page's Python chunks, in order, in one namespace; print ``@@ok N`` after each.

Usage: ``python runner.py CHUNKS.json``, where the file holds ``[{"page", "line",
"code"}, ...]``. Blocks are fragments of a page a reader follows top to bottom, so they
share one namespace; top-level ``await`` works (as in an async REPL), on one event
loop that lives for the page, so an object made by one block (an orchestrator, a mock
server) still works in the next. A block that calls ``anyio.run`` itself runs while
that loop is idle, as in a script. Line numbers in tracebacks are the page's.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import sys
import traceback


def main(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        chunks = json.load(fh)
    namespace: dict[str, object] = {"__name__": "__main__"}
    with asyncio.Runner() as runner:
        for i, chunk in enumerate(chunks):
            source = "\n" * (chunk["line"] - 1) + chunk["code"]
            try:
                code = compile(source, chunk["page"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                result = eval(code, namespace)  # exec, or a coroutine when the block awaits
                if inspect.iscoroutine(result):
                    runner.run(result)
            except BaseException:
                traceback.print_exc()
                print(f"@@failed {i} ({chunk['page']}:{chunk['line']})", flush=True)
                return 1
            print(f"@@ok {i}", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a page's daemon threads (mock servers) must not hold the exit
