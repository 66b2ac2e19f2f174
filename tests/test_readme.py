"""The README documents every setting and starts with the commands CI and users run."""

from __future__ import annotations

from pathlib import Path

from jobs.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f"HWR_{name.upper()}"
        for name in Settings.model_fields
        if f"`HWR_{name.upper()}`" not in README
    ]
    assert not missing, f"README lacks settings: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in README.splitlines()[3]
    assert "exec bash scripts/test.sh" in ci
