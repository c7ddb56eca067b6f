"""``tierwise ... | head``: a reader that goes away ends the command quietly, exit 0.

With buffered stdout (a shell pipe, no ``PYTHONUNBUFFERED``) the broken pipe is
only noticed by the interpreter's final flush, which printed
"Exception ignored ... BrokenPipeError" and exited 120 unless ``main`` flushes
while it can still catch the error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_a_reader_gone_before_any_output_ends_quietly(
    tmp_path: Path, buffered: bool, json_flag: list[str]
) -> None:
    config = tmp_path / "tierwise.toml"
    config.write_text('[models.m]\nprovider = "openai"\nmodel = "gpt-4o"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -0`: the reader is gone before the first write
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tierwise", "check-config", str(config), *json_flag],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
