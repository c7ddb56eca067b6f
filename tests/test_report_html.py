"""``tierwise report`` over several processes' audit logs, merged exactly, and its
``--html`` page: self-contained, and rendered by a real headless Chromium (the
Debian package ``.ci/run`` installs; the browser test skips cleanly without it).

The audit logs come from real runs (OpenAI adapter against ``MockLLMServer`` over
loopback sockets), two "processes" writing their own log over three days.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import tierwise as tw
from tierwise.catalog import ModelSpec
from tierwise.cli import main
from tierwise.execution.executor import Deployment
from tierwise.execution.retry import RetryPolicy
from tierwise.observe.audit import AuditLog
from tierwise.observe.report import audit_paths, summarize
from tierwise.observe.sketch import QuantileSketch
from tierwise.testing import FakeClock, MockLLMServer, MockModel

DAY = 86_400.0
PROMPTS = [
    "Debug this race condition in the billing worker pool and find the root cause.",
    "Why does my search component re-render twice on mount?",
    "Extract the function names from upload.py and return as JSON.",
    "Add docstrings to every function in session.py.",
    "Generate unit tests for the invoice class.",
]
ROUTES = {"complex": "dear", "standard": "cheap", "structured": "cheap", "bulk": "cheap"}


async def _process_logs(tmp_path: Path) -> list[Path]:
    """Two processes, each with its own audit log, over three days of traffic."""
    models = {
        "cheap-v1": MockModel(
            reply="short answer", input_tokens=400, output_tokens=60, fault_rates={"503": 0.2}
        ),
        "dear-v1": MockModel(reply="a considered answer", input_tokens=400, output_tokens=200),
    }
    paths = []
    async with MockLLMServer(models, seed=5) as server:
        for worker in (1, 2):
            provider = tw.providers.OpenAI(
                api_key="sk-report-test-0123456789", base_url=server.base_url + "/v1"
            )
            deps = [
                Deployment(
                    "cheap", provider, "cheap-v1", spec=ModelSpec("cheap-v1", "openai", input=1, output=2)
                ),
                Deployment(
                    "dear", provider, "dear-v1", spec=ModelSpec("dear-v1", "openai", input=10, output=30)
                ),
            ]
            clock = FakeClock(wall_start=1_767_225_600.0 + worker * 60)
            path = tmp_path / f"audit-worker{worker}.jsonl"
            router = tw.Router(tw.KeywordClassifier.default(), ROUTES, "standard", name="tiers")
            async with tw.Orchestrator(
                deps,
                strategies={"tiers": router},
                fallbacks=["dear"],
                retry=RetryPolicy(max_attempts=1),
                audit=AuditLog(path, clock=clock),
                log_level=None,
                owned_providers=[provider],
            ) as orch:
                rng = random.Random(worker)
                for day in range(3):
                    for i in range(12):
                        await orch.run(f"{rng.choice(PROMPTS)} (task {worker}-{day}-{i})")
                    clock.advance(DAY)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    import anyio

    return anyio.run(_process_logs, tmp_path_factory.mktemp("logs"))


def test_several_logs_merge_into_the_summary_of_all_their_records(logs: list[Path], tmp_path: Path) -> None:
    together = tmp_path / "all.jsonl"
    together.write_text("".join(p.read_text() for p in logs))
    merged, whole = summarize(*logs), summarize(together)
    assert merged["requests"] == 72
    assert merged == whole  # every figure, percentiles included, as if one process had seen it all
    assert len(merged["days"]) == 3
    day = next(iter(merged["days"].values()))
    assert set(day["cost_by_model"]) == {"cheap", "dear"}
    assert sum(d["cost_by_model"]["dear"] for d in merged["days"].values()) == pytest.approx(
        merged["models"]["dear"]["cost_usd"]
    )
    assert audit_paths([str(logs[0].parent / "audit-worker*.jsonl")]) == logs
    with pytest.raises(FileNotFoundError, match="no audit log matches"):
        audit_paths([str(tmp_path / "nothing-*.jsonl")])


def test_sketches_shipped_between_processes_merge_exactly() -> None:
    rng = random.Random(3)
    values = [[rng.lognormvariate(5, 1) for _ in range(5000)] for _ in range(3)]
    whole = QuantileSketch()
    fleet = QuantileSketch()
    for part in values:
        local = QuantileSketch()
        for v in part:
            local.add(v)
            whole.add(v)
        shipped = json.loads(json.dumps(local.to_dict()))  # across a process boundary
        fleet.merge(QuantileSketch.from_dict(shipped))
    assert fleet.to_dict()["pos"] == whole.to_dict()["pos"] and fleet.count == whole.count
    for q in (0.5, 0.95, 0.99, 0.999):
        assert fleet.quantile(q) == whole.quantile(q)
    with pytest.raises(ValueError, match="do not add up"):
        QuantileSketch.from_dict({**whole.to_dict(), "count": 1})
    with pytest.raises(ValueError, match="not a QuantileSketch"):
        QuantileSketch.from_dict({"alpha": 0.01})


def _html(logs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.html"
    assert main(["report", str(logs[0].parent / "audit-worker*.jsonl"), "--html", str(out)]) == 0
    text = capsys.readouterr().out
    assert "72 requests" in text and "Savings" in text
    return out


def test_the_html_report_is_one_self_contained_file(
    logs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = _html(logs, tmp_path, capsys).read_text()
    assert page.count("<svg") == 5
    for chart in ("cost_per_day", "savings", "routes", "latency", "rates"):
        assert f"id='chart-{chart}'" in page
    # Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\((?!#)", page) and "@import" not in page  # only url(#clip-id) fragments
    assert "<td>cheap</td>" in page and "<td>dear</td>" in page
    assert (
        "task 1-0-0" not in page and "race condition" not in page
    )  # prompts are not in the audit log, nor here


def test_report_html_without_matplotlib_says_which_extra(
    logs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["report", str(logs[0]), "--html", str(tmp_path / "r.html")]) == 2
    assert "tierwise[report]" in capsys.readouterr().err


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(page: Path, png: Path, *, width: int = 1200, height: int = 2000) -> None:
    """``page`` as rendered by headless Chromium, saved to ``png`` (also makes the docs image)."""
    browser = chromium()
    assert browser is not None
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.skipif(chromium() is None, reason="no Chromium here (.ci/run installs Debian's chromium)")
def test_a_real_browser_renders_every_chart(
    logs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    page = _html(logs, tmp_path, capsys)
    png = tmp_path / "report.png"
    screenshot(page, png)
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 2000)
    colors = image.getcolors(maxcolors=1 << 24)
    assert colors is not None
    counts: dict[tuple[int, ...], int] = {rgb: n for n, rgb in colors if isinstance(rgb, tuple)}

    def near(rgb: tuple[int, ...]) -> int:
        return sum(n for p, n in counts.items() if all(abs(a - b) <= 6 for a, b in zip(p, rgb, strict=True)))

    # The series colours of the charts are on screen: bars and lines were drawn.
    assert near((0x4E, 0x79, 0xA7)) > 2000  # first series: cost bars, routes, p50, cumulative savings
    assert near((0xF2, 0x8E, 0x2B)) > 500  # second: the dear model's cost, p95, fallback rate
    assert near((0x59, 0xA1, 0x4F)) > 200  # savings bars
