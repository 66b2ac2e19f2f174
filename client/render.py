"""How jobs, results and models look in a terminal; kept apart from the commands that fetch them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from numbers import Real
from typing import Any

from rich.table import Column, Table
from rich.text import Text

from client.api import Json

# C0 and C1 control characters (escape sequences start with one) and the bidi embeddings,
# overrides and isolates (they make a name display as another), shown as U+FFFD instead.
CONTROL_CHARACTERS = dict.fromkeys(
    [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)], "\ufffd"
)


def job_summary(job: Json) -> str:
    """One line a user can read at a glance and a script can grep."""
    progress = job["progress"]
    return (
        f"{job['id']}  {job['status']}  {progress['done']}/{progress['total']} done"
        f"  {progress['failed']} failed  model {job['model']}"
    )


def results_table(items: Iterable[Json]) -> Table:
    """The same columns as the server's CSV, so the two views read alike."""
    table = Table(
        Column("#", justify="right"),
        "file",
        "status",
        "prediction",
        Column("confidence", justify="right"),
        "error",
    )
    for item in items:
        confidence = item.get("confidence")
        table.add_row(
            str(item["index"]),
            literal(item["filename"]),
            item["status"],
            literal(item.get("prediction") or ""),
            "" if confidence is None else f"{confidence:.1%}",
            literal(item.get("error") or ""),
            style="red" if item["status"] == "failed" else None,
        )
    return table


def literal(text: str) -> Text:
    """Text from the server (file names are the uploader's) as it is: never read as Rich markup,
    never a control sequence for the terminal."""
    return Text(text.translate(CONTROL_CHARACTERS))


def models_table(models: Iterable[Json]) -> Table:
    """Name, class count and the scalar metrics of each model (whatever its report holds)."""
    table = Table("model", "classes", "metrics")
    for model in models:
        metrics = model.get("metrics") or {}
        scalars = (
            f"{name} {value:.3f}"
            for name, value in metrics.items()
            if isinstance(value, Real) and not isinstance(value, bool)
        )
        table.add_row(model["name"], str(model["num_classes"]), ", ".join(scalars))
    return table


def job_with_all_results(job: Json, items: list[Json]) -> Json:
    """The job in the API's shape, its results page widened to hold every item."""
    page = {"offset": 0, "limit": len(items), "total": len(items), "items": items}
    return {**job, "results": page}


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
