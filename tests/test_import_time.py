"""``import tierwise`` stays light: no heavy or optional dependency, no catalog load.

Each check runs in a fresh interpreter, because this test process has long since
imported pydantic, the catalog and everything else. What is asserted is what must
hold for the package as it is: the stable types and errors load eagerly; config
(pydantic), the learned router (scikit-learn/numpy), shared state (redis), logging
setup (structlog), optional exporters and the price table load only when used.
httpx and anyio are allowed (the providers and executor are built on them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Top-level modules that `import tierwise` must not pull in.
FORBIDDEN = (
    "pydantic",
    "pydantic_core",
    "sklearn",
    "numpy",
    "scipy",
    "redis",
    "structlog",
    "opentelemetry",
    "prometheus_client",
    "tiktoken",
    "rich",
    "openai",
    "anthropic",
    "litellm",
    "tomllib",  # only needed to read the price table, i.e. on first catalog use
    "sqlite3",
)


def _run(code: str, cwd: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,  # not the repo root: nothing may be imported from the working directory
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def modules_after_import(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    code = "import json, sys\nimport tierwise\nprint(json.dumps({'modules': sorted(sys.modules)}))"
    out = _run(code, tmp_path_factory.mktemp("import"))
    modules = out["modules"]
    assert isinstance(modules, list)
    return set(modules)


@pytest.mark.parametrize("name", FORBIDDEN)
def test_import_tierwise_does_not_import(modules_after_import: set[str], name: str) -> None:
    loaded = sorted(m for m in modules_after_import if m == name or m.startswith(name + "."))
    assert not loaded, f"`import tierwise` imported {loaded}"


def test_import_tierwise_does_not_import_the_catalog(modules_after_import: set[str]) -> None:
    assert "tierwise" in modules_after_import
    assert "tierwise.catalog" not in modules_after_import
    assert "tierwise.config" not in modules_after_import


def test_catalog_module_does_not_load_the_table_until_used(tmp_path: Path) -> None:
    code = """
import json, sys
import tierwise.catalog as c
before = {"loaded": c._DEFAULT is not None, "tomllib": "tomllib" in sys.modules}
first = c.Catalog.default()
after = {"loaded": c._DEFAULT is not None, "same": c.Catalog.default() is first, "rows": len(first)}
print(json.dumps({"before": before, "after": after}))
"""
    out = _run(code, tmp_path)
    assert out["before"] == {"loaded": False, "tomllib": False}
    after = out["after"]
    assert isinstance(after, dict)
    assert after["loaded"] is True
    assert after["same"] is True
    assert after["rows"] > 20


def test_building_a_router_from_config_imports_no_runtime_only_modules(tmp_path: Path) -> None:
    """A cold ``from_config`` (every ``tierwise run``, every serverless start) loads
    only what building needs: anyio (task groups, timeouts, threads) and sqlite3
    (the SQLite cache and audit) load on first use, when a request runs."""
    (tmp_path / "tierwise.toml").write_text(
        """
[providers.openai]
type = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "OPENAI_API_KEY"
[models.mini]
provider = "openai"
model = "gpt-5-mini"
[models.nano]
provider = "openai"
model = "gpt-5-nano"
[strategies.auto]
type = "router"
classifier = "keyword"
default = "standard"
[strategies.auto.routes]
standard = "mini"
bulk = "nano"
""",
        encoding="utf-8",
    )
    code = """
import json, sys
import tierwise
orch = tierwise.Orchestrator.from_config("tierwise.toml")
print(json.dumps({"modules": sorted(sys.modules), "built": type(orch).__name__}))
"""
    out = _run(code, tmp_path)
    assert out["built"] == "Orchestrator"
    modules = out["modules"]
    assert isinstance(modules, list)
    for name in ("anyio", "sqlite3", "sklearn", "numpy", "structlog", "redis"):
        loaded = [m for m in modules if m == name or m.startswith(name + ".")]
        assert not loaded, f"from_config imported {loaded}"
