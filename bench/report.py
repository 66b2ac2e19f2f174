"""The results JSON as markdown tables for the README: targets first, then each measurement.

The figures are the JSON's; nothing is computed here except ratios shown next to them.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import model_speed

SERVER_PARTS = ("gateway", "worker", "postgres", "naive")
CPU_COLUMNS = ("gateway", "worker", "postgres", "redis", "naive", "client")


def save(out: Path, results: dict, text: str) -> None:
    """The results as JSON at `out` and as markdown beside it; the markdown also printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**miss**", None: "not measured"}[passed]


def _targets(results: dict) -> list[str]:
    rows = ["| target | goal | measured | result |", "|---|---|---:|---|"]
    for row in results["targets"]:
        measured = "" if row["measured"] is None else f"{row['measured']:,}"
        rows.append(f"| {row['target']} | {row['goal']} | {measured} | {_verdict(row['passed'])} |")
    return rows


def _preprocessing(results: dict) -> list[str]:
    figures = results["preprocessing"]
    return [
        f"`to_model_input` on 280x280 canvas PNGs: "
        f"**{figures['to_model_input']['per_cpu_second_median']:,} images per CPU-second** "
        f"(one core; decoding alone {figures['decode_libspng']['per_cpu_second_median']:,}), "
        f"{figures['images']} images x {figures['rounds']} rounds."
    ]


def _batch_job(results: dict) -> list[str]:
    batch = results["batch_job"]
    service, naive = batch["service"], batch["naive"]
    ceiling = results["model_ceiling"]["models"][batch["model"]]["256"]
    per_core = results["preprocessing"]["to_model_input"]["per_cpu_second_median"]
    preprocessing_bound = per_core * results["cores"]
    rows = [
        "| design | images | seconds | characters/s | / ceiling | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in (
        ("service: one job, one zip", service),
        (f"naive: one request per image, {naive['concurrency']} in flight", naive),
    ):
        rate = figures["characters_per_second"]
        rows.append(
            f"| {name} | {figures['images']:,} | {figures['seconds']:.2f} | {rate:,.0f} "
            f"| {rate / ceiling:.1%} | {figures['errors']} |"
        )
    rows += [
        "",
        f"Service job: upload {service['upload_seconds']:.2f} s, queued "
        f"{service['queue_seconds']:.2f} s, running {service['run_seconds']:.2f} s; "
        f"{service['forward_passes']} forward passes of {service['mean_batch_size']:g} on average. "
        f"Ceiling: {batch['model']} at batch 256, {ceiling:,} characters/s. Preprocessing alone "
        f"allows about {preprocessing_bound:,} images/s on {results['cores']} cores "
        "(per-core rate on canvas PNGs times cores).",
    ]
    return rows


def _canvas(results: dict) -> list[str]:
    canvas = results["canvas"]
    rows = [
        f"Each client sends one drawing at a time for {canvas['seconds']:g} s.",
        "",
        "| clients | design | req/s | p50 ms | p95 ms | p99 ms | late | errors | mean batch "
        "| server CPU ms/req |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, level in canvas["levels"].items():
        for name, figures in level.items():
            batch = f"{figures['mean_batch_size']:g}" if "mean_batch_size" in figures else "1"
            rows.append(
                f"| {clients} | {name} | {figures['requests_per_second']:,} | {figures['p50_ms']} "
                f"| {figures['p95_ms']} | {figures['p99_ms']} | {figures['late']} "
                f"| {figures['errors']} | {batch} "
                f"| {_server_cpu_ms(results, f'canvas_{clients}_{name}', figures['requests'])} |"
            )
    return rows


def _server_cpu_ms(results: dict, phase: str, requests: int) -> str:
    """CPU per answered request of everything serving it: gateway, worker and Postgres, or naive."""
    figures = results["cpu_seconds"][phase]
    seconds = sum(figures.get(name, 0.0) for name in SERVER_PARTS)
    return f"{1000 * seconds / requests:.1f}" if requests else ""


def _cpu(results: dict) -> list[str]:
    rows = [
        "| phase | wall s | " + " | ".join(f"{name} CPU s" for name in CPU_COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(CPU_COLUMNS),
    ]
    for phase, figures in results["cpu_seconds"].items():
        cells = " | ".join(f"{figures.get(name, '')}" for name in CPU_COLUMNS)
        rows.append(f"| {phase} | {figures['wall']} | {cells} |")
    return rows


def markdown(results: dict) -> str:
    """The whole report: machine line, targets, ceiling, preprocessing, batch job, canvas, CPU."""
    settings = ", ".join(f"{name}={value}" for name, value in results["settings"].items())
    load = results["load_average"]
    quick = " (--quick: sizes too small to quote)" if results["quick"] else ""
    lines = [
        f"# Service benchmark{quick}",
        "",
        f"Measured {results['measured']} at {results['commit']} on {results['machine']}; "
        f"load average {load['before']} before, {load['after']} after; "
        f"{results['duration_s']:g} s in all. {results['workers']} worker process(es); "
        f"service settings: {settings}.",
        "",
        "## Targets",
        "",
        *_targets(results),
        "",
        "## Model ceiling",
        "",
        model_speed.to_markdown(results["model_ceiling"]).rstrip(),
        "",
        "## Preprocessing",
        "",
        *_preprocessing(results),
        "",
        "## Batch job",
        "",
        *_batch_job(results),
        "",
        "## Canvas",
        "",
        *_canvas(results),
        "",
        "## CPU seconds per phase",
        "",
        "Each core gives one CPU-second per wall second; redis is the whole server, shared with "
        "anything else using it.",
        "",
        *_cpu(results),
        "",
    ]
    return "\n".join(lines)
