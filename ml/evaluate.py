"""Evaluate a model: `python -m ml.evaluate models/emnist47 --split pool47 --json report.json`.

Reports accuracy, macro accuracy (mean per-class recall), top-5 accuracy, per-class recall,
the most-confused pairs and a confusion-matrix PNG beside the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ml.artifact import load_model  # noqa: E402
from ml.data import DEFAULT_DATA_DIR, EmnistSplit, load_split  # noqa: E402
from ml.metrics import confusion_matrix, per_class_recall  # noqa: E402
from ml.predictor import Predictor  # noqa: E402

CONFUSED_PAIRS = 15
CHECK_SAMPLE = 2000


def evaluate(model: str | Path, data: EmnistSplit, limit: int | None = None) -> dict[str, Any]:
    """All figures for `model` on `data` (its first `limit` images if given)."""
    loaded = load_model(model)
    if loaded.spec.labels != data.characters:
        raise ValueError(f"{model} labels {loaded.spec.labels} differ from the data's")
    images, truth = data.images[:limit], data.labels[:limit]
    predictor = Predictor(loaded)
    probabilities = predictor.probabilities(loaded.spec.input.normalize(images / 1.0))
    ranked = np.argsort(-probabilities, axis=1)
    predicted = ranked[:, 0]
    confusion = confusion_matrix(truth, predicted, data.num_classes)
    recall = per_class_recall(confusion)
    labels = data.characters
    off_diagonal = confusion - np.diag(np.diag(confusion))
    pairs = np.dstack(np.unravel_index(np.argsort(-off_diagonal, axis=None), confusion.shape))[0]
    return {
        "model": loaded.spec.name,
        "split": data.files[0].name.split("-")[1],
        "part": data.files[0].name.split("-")[2],
        "images": int(len(truth)),
        "precision": predictor.precision,
        "accuracy": float((predicted == truth).mean()),
        "macro_accuracy": float(np.nanmean(recall)),
        "top5_accuracy": float((ranked[:, :5] == truth[:, None]).any(axis=1).mean()),
        "first_images_accuracy": {
            "images": int(min(CHECK_SAMPLE, len(truth))),
            "accuracy": float((predicted[:CHECK_SAMPLE] == truth[:CHECK_SAMPLE]).mean()),
        },
        "per_class_recall": {
            labels[i]: None if np.isnan(r) else round(float(r), 4) for i, r in enumerate(recall)
        },
        "most_confused": [
            {"true": labels[t], "predicted": labels[p], "count": int(off_diagonal[t, p])}
            for t, p in pairs[:CONFUSED_PAIRS]
            if off_diagonal[t, p] > 0
        ],
        "confusion": confusion.tolist(),
    }


def plot_confusion(report: dict[str, Any], labels: list[str], path: Path) -> None:
    """Row-normalized confusion matrix, log-free so small off-diagonal mass still shows."""
    confusion = np.asarray(report["confusion"], dtype=np.float64)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(6.0, len(labels) * 0.22)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(rows, cmap="viridis", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(
        f"{report['model']} on {report['split']} {report['part']}: "
        f"acc {report['accuracy']:.2%}, macro {report['macro_accuracy']:.2%}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(model_dir: Path, report: dict[str, Any], json_path: Path) -> None:
    """Write the JSON report, its confusion PNG beside it, and the headline figures into model.json
    when the report is on the test part of the model's own training split."""
    from ml.artifact import read_spec, write_spec

    json_path.write_text(json.dumps(report, indent=1) + "\n")
    spec = read_spec(model_dir)
    plot_confusion(report, spec.labels, json_path.with_suffix(".png"))
    if report["part"] == "test" and report["split"] == spec.training.get("split"):
        keys = (
            "split",
            "part",
            "images",
            "precision",
            "accuracy",
            "macro_accuracy",
            "top5_accuracy",
            "first_images_accuracy",
        )
        headline = {k: report[k] for k in keys}
        write_spec(model_dir, spec.model_copy(update={"metrics": {"test": headline}}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model folder or shipped name (emnist47, emnist62)")
    parser.add_argument("--split", required=True)
    parser.add_argument("--part", default="test", choices=["train", "test"])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--json", type=Path, default=Path("report.json"))
    args = parser.parse_args(argv)
    data = load_split(args.data_dir, args.split, args.part)
    report = evaluate(args.model, data, args.limit)
    write_report(load_model(args.model).path, report, args.json)
    print(
        f"{report['model']} on {report['split']} {report['part']} ({report['images']} images): "
        f"accuracy {report['accuracy']:.4f}, macro accuracy {report['macro_accuracy']:.4f}, "
        f"top-5 {report['top5_accuracy']:.4f}"
    )
    for pair in report["most_confused"][:5]:
        print(f"  {pair['true']} -> {pair['predicted']}: {pair['count']}")


if __name__ == "__main__":
    main()
