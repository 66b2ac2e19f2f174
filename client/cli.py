"""The `hwr` command: submit images, follow jobs and read results from a terminal or a script.

Results go to stdout and everything else (progress, messages) to stderr, so output can be piped.
Exit codes: 0 ok, 1 a job or file failed or the server refused, 2 usage, 3 server unreachable.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from api.access import key_digest
from client import render
from client.api import DEFAULT_URL, ClientError, JobsClient, Json, ServerUnreachable
from client.paths import PathError, expand_paths

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    help="Recognise handwritten characters with the job service.",
    no_args_is_help=True,
    add_completion=False,
)
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


class Output(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@dataclass(frozen=True)
class Server:
    """Where to connect, chosen once by the top-level options and read by every command."""

    url: str
    api_key: str | None


JobId = Annotated[
    str,
    typer.Argument(metavar="JOB_ID", help="The id `hwr submit` printed.", show_default=False),
]
CsvFlag = Annotated[bool, typer.Option("--csv", help="Print results as CSV.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the job as JSON.")]


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="HWR_URL", help="Server address.")] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="HWR_API_KEY", help="API key, sent as a Bearer token.", show_default=False
        ),
    ] = None,
) -> None:
    ctx.obj = Server(url, api_key)


@app.command()
def submit(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...", help="Images, zips, or folders of them.", show_default=False
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(help="Model name (see `hwr models`); the server's default if unset."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job and print its results.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the job with --wait.")
    ] = 3600.0,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Resending with the same key returns the same job.")
    ] = None,
    as_csv: CsvFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Upload images as one job; print its id, or with --wait its results."""
    output = _output(as_csv, as_json)
    with _session(ctx) as client:
        uploads = expand_paths(paths)
        with _bar("upload", DownloadColumn(), TransferSpeedColumn()) as show_upload:
            job = client.submit(uploads, model, idempotency_key, show_upload)
        if not wait:
            stdout.out(render.to_json(job) if output is Output.json else job["id"])
            return
        stderr.print(f"job {job['id']} {job['status']}")
        try:
            with _bar("job", MofNCompleteColumn()) as show_job:
                job = client.wait(job["id"], lambda j: show_job(*_counts(j)), timeout)
        except KeyboardInterrupt:
            stderr.print(f"stopped waiting; the job goes on: hwr status {job['id']}")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        _print_results(client, job, output)
        _exit_for_outcome(job)


@app.command()
def status(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show a job's state and progress."""
    with _session(ctx) as client:
        job = client.get_job(job_id)
    stdout.out(render.to_json(job) if as_json else render.job_summary(job))


@app.command()
def results(
    ctx: typer.Context, job_id: JobId, as_csv: CsvFlag = False, as_json: JsonFlag = False
) -> None:
    """Print every result of a job (pending items included while it runs)."""
    output = _output(as_csv, as_json)
    with _session(ctx) as client:
        _print_results(client, client.get_job(job_id, limit=1), output)


@app.command()
def cancel(ctx: typer.Context, job_id: JobId) -> None:
    """Cancel an unfinished job; a finished one keeps its results."""
    with _session(ctx) as client:
        client.cancel(job_id)
    stderr.print(f"job {job_id} canceled")


@app.command()
def delete(ctx: typer.Context, job_id: JobId) -> None:
    """Delete a finished job and its results; an unfinished one is canceled first."""
    with _session(ctx) as client:
        canceled = client.delete(job_id)
    if canceled is None:
        stderr.print(f"job {job_id} deleted")
    else:
        stderr.print(f"job {job_id} was unfinished: canceled; delete it again to remove it")


@app.command()
def models(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the models the server offers."""
    with _session(ctx) as client:
        offered = client.models()
    if as_json:
        stdout.out(render.to_json(offered))
    else:
        stdout.print(render.models_table(offered))


@app.command("hash-key")
def hash_key(
    key: Annotated[
        str | None,
        typer.Argument(help="A key to hash; without one, a new random key.", show_default=False),
    ] = None,
) -> None:
    """Print an API key and the digest the server lists in HWR_API_KEY_HASHES."""
    key = key or secrets.token_urlsafe(32)
    stdout.out(f"key     {key}\nsha256  {key_digest(key)}")


def _output(as_csv: bool, as_json: bool) -> Output:
    """Two flags read better than `--format`, so refuse the one combination that makes no sense."""
    if as_csv and as_json:
        _fail("choose one of --csv and --json", EXIT_USAGE)
    return Output.csv if as_csv else Output.json if as_json else Output.table


@contextmanager
def _session(ctx: typer.Context) -> Iterator[JobsClient]:
    """A client for one command; any failure becomes one `error:` line and its exit code."""
    server: Server = ctx.find_object(Server)
    try:
        with JobsClient(server.url, server.api_key) as client:
            yield client
    except ServerUnreachable as error:
        _fail(f"{error.message}; is it running? Set --url or HWR_URL.", EXIT_UNREACHABLE)
    except ClientError as error:
        _fail(error.message, EXIT_FAILED)
    except PathError as error:
        _fail(str(error), EXIT_USAGE)


@contextmanager
def _bar(description: str, *columns: ProgressColumn) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr; yields `show(completed, total)` to move it."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), *columns, TimeElapsedColumn(), console=stderr
    ) as progress:
        task = progress.add_task(description, total=None)
        yield lambda completed, total: progress.update(task, completed=completed, total=total)


def _counts(job: Json) -> tuple[int, int]:
    """Finished and total items; `done` counts failed items too."""
    return job["progress"]["done"], job["progress"]["total"]


def _print_results(client: JobsClient, job: Json, output: Output) -> None:
    """CSV is the server's own, so it matches what the batch page downloads byte for byte."""
    if output is Output.csv:
        stdout.out(client.results_csv(job["id"]), end="")
        return
    items = list(client.iter_results(job["id"]))
    if output is Output.json:
        stdout.out(render.to_json(render.job_with_all_results(job, items)))
    else:
        stdout.print(render.results_table(items))


def _exit_for_outcome(job: Json) -> None:
    """A script checking the exit code learns whether every file got a prediction."""
    progress = job["progress"]
    if job["status"] != "succeeded":
        _fail(f"job {job['id']} {job['status']}", EXIT_FAILED)
    if progress["failed"]:
        _fail(f"{progress['failed']} of {progress['total']} files failed", EXIT_FAILED)


def _fail(message: str, code: int) -> NoReturn:
    stderr.print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)
