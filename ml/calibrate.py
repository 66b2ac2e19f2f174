"""Calibrate a trained network: `python -m ml.calibrate models/emnist47`.

Training leaves the logits too soft (label smoothing, the weight average) and the class priors
slightly off (logit adjustment, borrowed images). One temperature and one bias per class, fit on
the validation part that training held out, correct both; they fold into the last layer, so the
network costs nothing more to run. `ml.train` ends with this step; the command calibrates a
model trained before it existed.

The fit minimizes the negative log-likelihood, with every class weighing the same when the model
is judged by macro accuracy (the training run's `--select-by`), or every image otherwise.

A second temperature and set of biases, fit on the same validation images redrawn as even pen
lines and framed by preprocessing, is kept in model.json for the letters preprocessing finds drawn
as even pen lines (canvas drawings): without EMNIST's frame the model leans towards digits
(`O` read as `0`), and a calibration of their own reads them about a point better (README).
`--pen-lines` adds it to a model calibrated before it existed.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ml.artifact import InputSpec, LogitCalibration, load_model, save_model
from ml.data import DEFAULT_DATA_DIR, held_out_seed, held_out_split, load_split
from ml.evaluate import evaluate, write_report
from ml.metrics import macro_accuracy
from ml.model import CharCNN
from ml.pen_lines import pen_lines_of

TARGETS = ("macro_accuracy", "accuracy")
CHUNK = 1024


@torch.no_grad()  # not inference_mode: the calibration fit differentiates through these logits
def logits_of(
    network: torch.nn.Module,
    images: torch.Tensor,
    spec: InputSpec,
    device: torch.device = torch.device("cpu"),
) -> torch.Tensor:
    """Float32 logits for uint8 images (N, 28, 28), normalized as `spec` says."""
    network.eval()
    chunks = [
        network(spec.normalize(images[i : i + CHUNK].float().unsqueeze(1)).to(device)).float().cpu()
        for i in range(0, len(images), CHUNK)
    ]
    return torch.cat(chunks)


def fit(logits: torch.Tensor, labels: torch.Tensor, balanced: bool) -> LogitCalibration:
    """The temperature and biases that make `logits` most likely to give `labels`."""
    num_classes = logits.shape[1]
    weight = None
    if balanced:
        weight = 1 / torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    bias = torch.zeros(num_classes, requires_grad=True)
    log_temperature = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [bias, log_temperature], max_iter=500, line_search_fn="strong_wolfe"
    )

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(logits / log_temperature.exp() + bias, labels, weight=weight)
        value.backward()
        return value

    optimizer.step(loss)
    return LogitCalibration(
        temperature=float(log_temperature.detach().exp()), bias=bias.detach().tolist()
    )


def fold(network: CharCNN, calibration: LogitCalibration) -> None:
    """Make the network's last layer compute the calibrated logits itself."""
    last = network.classifier[-1]
    with torch.no_grad():
        last.weight.div_(calibration.temperature)
        last.bias.div_(calibration.temperature).add_(torch.tensor(calibration.bias))


def scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    predicted, truth = logits.argmax(1).numpy(), labels.numpy()
    return {
        "accuracy": round(float((predicted == truth).mean()), 4),
        "macro_accuracy": round(macro_accuracy(truth, predicted, logits.shape[1]), 4),
    }


def calibrate(
    network: CharCNN, images: torch.Tensor, labels: torch.Tensor, spec: InputSpec, target: str
) -> dict[str, Any]:
    """Fit on held-out `images` for `target` (a TARGETS entry), fold it in; model.json's record."""
    calibration, record = _fit_with_record(logits_of(network, images, spec), labels, target)
    fold(network, calibration)
    return record


def _fit_with_record(
    logits: torch.Tensor, labels: torch.Tensor, target: str
) -> tuple[LogitCalibration, dict[str, Any]]:
    calibration = fit(logits, labels, balanced=target == "macro_accuracy")
    return calibration, {
        "fit": "class-balanced likelihood" if target == "macro_accuracy" else "likelihood",
        "temperature": round(calibration.temperature, 4),
        "validation_images": len(labels),
        "validation_before": scores(logits, labels),
        "validation_after": scores(calibration.apply(logits), labels),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def calibrate_pen_lines(
    network: CharCNN, images: torch.Tensor, labels: torch.Tensor, spec: InputSpec, target: str
) -> tuple[LogitCalibration, dict[str, Any]]:
    """The calibrated network's own calibration for pen-line letters, and model.json's record:
    fit on `images` redrawn as pen lines and framed as canvas letters are served (the few
    too faint for preprocessing to find are left out)."""
    _, framed = pen_lines_of(images.numpy(), seed=0)
    kept = [index for index, letter in enumerate(framed) if letter is not None]
    if not kept:
        raise ValueError("no validation image redrawn as a pen line could be read back")
    letters = torch.from_numpy(np.stack([framed[index].pixels for index in kept]))
    return _fit_with_record(logits_of(network, letters, spec), labels[kept], target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model folder written by ml.train")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--target", choices=TARGETS, help="figure to serve (default: the run's --select-by)"
    )
    parser.add_argument(
        "--pen-lines",
        action="store_true",
        help="only (re)fit the pen-line calibration of a model calibrated before it existed",
    )
    args = parser.parse_args(argv)
    loaded = load_model(args.model)
    training = loaded.spec.training
    if not isinstance(loaded.network, CharCNN):
        raise SystemExit(f"{args.model}: an ensemble; calibrate its members before combining them")
    if "calibration" in training and not args.pen_lines:
        raise SystemExit(f"{args.model}: already calibrated (model.json training.calibration)")
    if "calibration" not in training and args.pen_lines:
        raise SystemExit(f"{args.model}: not calibrated yet; run this without --pen-lines first")
    if "config" not in training:
        raise SystemExit(f"{args.model}: model.json does not say how it was trained")
    config = training["config"]
    data = load_split(args.data_dir, training["split"], "train")
    _, val_idx = held_out_split(data.labels, config["val_fraction"], held_out_seed(config))
    if len(val_idx) != training["validation_images"]:
        raise SystemExit(f"{args.model}: cannot rebuild its validation part from {args.data_dir}")
    images = torch.from_numpy(data.images[val_idx])
    labels = torch.from_numpy(data.labels[val_idx])
    target = args.target or config.get("select_by", "macro_accuracy")
    records = {}
    if not args.pen_lines:
        records["calibration"] = calibrate(
            loaded.network, images, labels, loaded.spec.input, target
        )
    pen_lines, records["pen_line_calibration"] = calibrate_pen_lines(
        loaded.network, images, labels, loaded.spec.input, target
    )
    spec = loaded.spec.model_copy(
        update={"training": {**training, **records}, "pen_line_calibration": pen_lines}
    )
    save_model(loaded.path, loaded.network, spec)
    for name, record in records.items():
        print(
            f"{loaded.path} {name}: temperature {record['temperature']}, validation "
            f"{record['validation_before']} -> {record['validation_after']}"
        )
    if not args.pen_lines:  # the test images are read as scans: only the folded fit moves them
        report = evaluate(loaded.path, load_split(args.data_dir, training["split"], "test"))
        write_report(loaded.path, report, loaded.path / "report.json")
        print(f"test accuracy {report['accuracy']:.4f}, macro {report['macro_accuracy']:.4f}")


if __name__ == "__main__":
    main()
