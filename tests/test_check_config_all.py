"""``tierwise check-config`` reports every cross-reference mistake, not only the first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierwise.cli import main


def test_every_cross_reference_error_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tierwise.toml"
    path.write_text(
        """
default_strategy = "nosuch"

[models.a]
provider = "nope"
model = "gpt-4o"
fallbacks = ["zz"]

[models.b]
provider = "openai"
model = "gpt-4o"
fallbacks = ["b"]
""",
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    for field in ("models.a.provider", "models.a.fallbacks[0]", "models.b.fallbacks[0]", "default_strategy"):
        assert field in err, err
    assert "more error" not in err


def test_check_config_takes_config_like_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[models.m]\nprovider = "openai"\nmodel = "gpt-4o"\n', encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 0
    assert f"{path}: OK" in capsys.readouterr().out  # found through --config, not ./tierwise.toml
