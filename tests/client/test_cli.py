"""The `hwr` commands against a fake service: what reaches stdout, stderr and the exit code."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from client.cli import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, app
from tests.client.fake_service import FakeService

runner = CliRunner()


def hwr(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, [str(arg) for arg in args], env=env)


def test_submit_wait_json_prints_every_result(cli_service: FakeService, image_folder: Path) -> None:
    result = hwr("submit", image_folder, "--wait", "--json")

    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert [(i["filename"], i["prediction"]) for i in job["results"]["items"]] == [
        ("a.png", "A"),
        ("c.zip", "C"),
        ("more/b.JPG", "B"),
    ]
    assert job["results"]["total"] == 3


def test_submit_wait_csv_prints_the_servers_csv(
    cli_service: FakeService, image_folder: Path
) -> None:
    result = hwr("submit", image_folder, "--wait", "--csv")

    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["filename"], row["prediction"]) for row in rows] == [
        ("a.png", "A"),
        ("c.zip", "C"),
        ("more/b.JPG", "B"),
    ]


def test_submit_wait_table_shows_files_and_predictions(
    cli_service: FakeService, image_folder: Path
) -> None:
    result = hwr("submit", image_folder, "--wait")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("a.png" in line and " A " in line and "50.0%" in line for line in lines)
    assert any("more/b.JPG" in line and " B " in line for line in lines)


def test_submit_without_wait_prints_only_the_job_id(
    cli_service: FakeService, image_folder: Path
) -> None:
    result = hwr("submit", image_folder / "a.png", "--model", "emnist62")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() in cli_service.jobs


def test_failed_file_fails_the_command_after_printing_results(
    cli_service: FakeService, image_folder: Path
) -> None:
    (image_folder / "bad.png").write_bytes(b"garbage")

    result = hwr("submit", image_folder, "--wait", "--json")

    assert result.exit_code == EXIT_FAILED
    items = json.loads(result.stdout)["results"]["items"]
    assert {i["filename"]: i["error"] for i in items}["bad.png"] == "not an image"
    assert "error: 1 of 4 files failed" in result.stderr


def test_refused_upload_shows_the_servers_sentence(
    cli_service: FakeService, image_folder: Path
) -> None:
    cli_service.refusals.append(httpx.Response(413, json={"detail": "request is over 100 MB"}))

    result = hwr("submit", image_folder, "--wait")

    assert result.exit_code == EXIT_FAILED
    assert "error: request is over 100 MB" in result.stderr


def test_unreachable_server_exits_3_naming_the_url(closed_url: str, image_folder: Path) -> None:
    result = hwr("--url", closed_url, "submit", image_folder)

    assert result.exit_code == EXIT_UNREACHABLE
    assert f"cannot reach server at {closed_url}" in result.stderr
    assert "HWR_URL" in result.stderr


def test_url_comes_from_the_environment(closed_url: str) -> None:
    result = hwr("models", env={"HWR_URL": closed_url})

    assert result.exit_code == EXIT_UNREACHABLE
    assert f"cannot reach server at {closed_url}" in result.stderr


@pytest.mark.parametrize(
    "args",
    [("submit", "nowhere.png"), ("submit", ".", "--csv", "--json"), ("status",)],
    ids=["missing-file", "two-formats", "missing-job-id"],
)
def test_usage_errors_exit_2(cli_service: FakeService, args: tuple[str, ...]) -> None:
    assert hwr(*args).exit_code == EXIT_USAGE


def test_status_results_and_cancel_of_a_job(cli_service: FakeService) -> None:
    cli_service.jobs["j"], cli_service.polls["j"] = ["a.png", "b.png"], 1

    assert hwr("status", "j").stdout.split()[:3] == ["j", "succeeded", "2/2"]
    assert json.loads(hwr("results", "j", "--json").stdout)["results"]["total"] == 2
    assert "already succeeded" in hwr("cancel", "j").stderr
    assert "job j deleted" in hwr("delete", "j").stderr
    assert hwr("status", "missing").stderr == "error: job not found\n"


def test_file_names_are_shown_as_they_are_never_as_markup_or_escapes(
    cli_service: FakeService,
) -> None:
    names = ["[/]x.png", "a\x1b]0;owned\x07.png", "b\u202egnp.exe"]
    cli_service.jobs["j"], cli_service.polls["j"] = names, 1

    result = hwr("results", "j")

    assert result.exit_code == 0, result.output
    assert "[/]x.png" in result.stdout
    assert "a\ufffd]0;owned\ufffd.png" in result.stdout
    assert "b\ufffdgnp.exe" in result.stdout
    assert "\x1b" not in result.stdout


def test_models_lists_names_and_metrics(cli_service: FakeService) -> None:
    result = hwr("models")

    assert result.exit_code == 0, result.output
    assert "emnist47" in result.stdout and "accuracy 0.900" in result.stdout


def test_hash_key_makes_a_new_key_and_its_sha256() -> None:
    first, second = hwr("hash-key"), hwr("hash-key")
    lines = dict(line.split() for line in first.stdout.splitlines())
    assert first.exit_code == 0, first.output
    assert hashlib.sha256(lines["key"].encode()).hexdigest() == lines["sha256"]
    assert len(lines["key"]) >= 40
    assert first.stdout != second.stdout
    given = hwr("hash-key", "my-key").stdout
    assert hashlib.sha256(b"my-key").hexdigest() in given
