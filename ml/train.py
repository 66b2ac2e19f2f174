"""Train a character model: `python -m ml.train --split pool47 --out models/emnist47`.

Random affine augmentation on whole batches, a validation part held out of the training data,
logit-adjusted cross-entropy against class imbalance, one-cycle learning rate, an exponential
moving average of the weights (smoother than any single step's), and the checkpoint with the best
validation macro accuracy (or accuracy) kept, then calibrated on that validation part
(`ml.calibrate`). Ends by evaluating on the test part.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml.artifact import (
    InputSpec,
    LoadedModel,
    ModelSpec,
    load_model,
    read_spec,
    resolve_model_dir,
    save_model,
)
from ml.calibrate import TARGETS, calibrate, calibrate_pen_lines, logits_of
from ml.data import (
    DEFAULT_DATA_DIR,
    EmnistSplit,
    held_out_seed,
    held_out_split,
    load_split,
    sha256_of,
)
from ml.evaluate import evaluate, write_report
from ml.extra_data import borrow
from ml.metrics import macro_accuracy
from ml.model import ARCHITECTURE, CharCNN
from ml.pen_lines import redraw_as_pen
from ml.predictor import pick_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, help="pool47, pool62, balanced, byclass, ...")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak of the one-cycle schedule")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    parser.add_argument(
        "--balance-tau",
        type=float,
        default=1.0,
        help="logit adjustment strength against class imbalance (0: plain cross-entropy)",
    )
    parser.add_argument(
        "--stroke-jitter",
        type=float,
        default=0.5,
        help="largest blend towards a thickened or thinned stroke (0: strokes as drawn)",
    )
    parser.add_argument(
        "--pen-fraction",
        type=float,
        default=0.2,
        help="share of images redrawn as an even pen line along their centre, as canvases draw",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=0.999,
        help="decay of the weight average that is validated and shipped (0: the latest weights)",
    )
    parser.add_argument(
        "--select-by",
        choices=TARGETS,
        default="macro_accuracy",
        help="validation figure that picks the checkpoint to keep",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="model folder whose weights start the run (a second one-cycle round), same labels",
    )
    parser.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="model folder, same labels, whose softened predictions the new model also learns",
    )
    parser.add_argument("--distill-weight", type=float, default=0.5, help="share of that loss")
    parser.add_argument("--distill-temperature", type=float, default=2.0)
    parser.add_argument(
        "--extra-split",
        default=None,
        help="another split whose new train images join training; its labels may merge ours "
        "(pool47 for a pool62 model: C stands for C or c)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="share held out for validation and calibration (--init-from keeps its model's)",
    )
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument(
        "--no-bf16",
        dest="bf16",
        action="store_false",
        help="train in float32 only (bf16 autocast is ~1.7x faster on AVX512-BF16 CPUs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    return parser.parse_args(argv)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, scale, shear and shift per image, as different writers would vary."""
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.empty(n).uniform_(low, high, generator=generator)

    angle = uniform(-12, 12) * math.pi / 180
    scale = uniform(0.85, 1.15)
    shear = uniform(-0.2, 0.2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear * cos, uniform(-0.12, 0.12)], dim=1),
            torch.stack([sin, cos + shear * sin, uniform(-0.12, 0.12)], dim=1),
        ],
        dim=1,
    ).to(batch.device)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, align_corners=False, padding_mode="zeros")


def jitter_strokes(
    batch: torch.Tensor, strength: float, generator: torch.Generator
) -> torch.Tensor:
    """Blend each image towards its 3x3 dilation or erosion, as pens and markers vary the width."""
    amount = torch.empty(batch.shape[0], 1, 1, 1).uniform_(-strength, strength, generator=generator)
    thicker = F.max_pool2d(batch, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-batch, 3, stride=1, padding=1)
    target = torch.where(amount > 0, thicker, thinner)
    return batch + amount.abs() * (target - batch)


def held_out_part(args: argparse.Namespace) -> tuple[float, int]:
    """Validation share and seed; a second round keeps its first round's, so that nothing it
    validates and calibrates on was ever trained on, whatever seed drives its augmentation."""
    if args.init_from is None:
        return args.val_fraction, args.seed
    first = read_spec(resolve_model_dir(args.init_from)).training.get("config")
    if first is None:
        return args.val_fraction, args.seed
    return first["val_fraction"], held_out_seed(first)


def earlier_model(model_dir: Path, characters: list[str]) -> LoadedModel:
    """An earlier model for these labels, to start from or learn from."""
    earlier = load_model(model_dir)
    if earlier.spec.labels != characters:
        raise SystemExit(f"{model_dir}: its labels differ from this split's; cannot use it")
    return earlier


def starting_weights(model_dir: Path, characters: list[str]) -> dict[str, torch.Tensor]:
    """An earlier single network's weights to start from; an ensemble has no one set of them."""
    earlier = earlier_model(model_dir, characters)
    if not isinstance(earlier.network, CharCNN):
        raise SystemExit(f"{model_dir}: an ensemble of {earlier.spec.members}; start from a member")
    return earlier.network.state_dict()


def distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL divergence to the teacher's softened distribution, scaled by T^2 as Hinton et al."""
    return temperature**2 * F.kl_div(
        F.log_softmax(logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )


@dataclass(frozen=True)
class TrainingPool:
    """Every image training draws from, the classes each may be, and the ones trained on."""

    images: torch.Tensor
    candidates: torch.Tensor
    train_idx: np.ndarray
    files: list[Path]
    borrowed: dict[str, str | int]


def training_pool(
    data: EmnistSplit,
    test: EmnistSplit,
    train_idx: np.ndarray,
    data_dir: Path,
    extra_split: str | None,
) -> TrainingPool:
    """Our split with one candidate per image, plus what another split adds (none of our test)."""
    images = torch.from_numpy(data.images)
    candidates = F.one_hot(torch.from_numpy(data.labels), data.num_classes).bool()
    if not extra_split:
        return TrainingPool(images, candidates, train_idx, list(data.files), {})
    other = load_split(data_dir, extra_split, "train")
    borrowed = borrow(other, data.characters, [data, test])
    counts: dict[str, str | int] = {
        "split": extra_split,
        "images": len(borrowed.images),
        "dropped_in_our_split": borrowed.dropped_in_our_split,
        "dropped_unmappable": borrowed.dropped_unmappable,
    }
    print(f"borrowed from {extra_split}: {counts}", flush=True)
    return TrainingPool(
        images=torch.cat([images, torch.from_numpy(borrowed.images)]),
        candidates=torch.cat([candidates, torch.from_numpy(borrowed.candidates)]),
        train_idx=np.concatenate([train_idx, len(images) + np.arange(len(borrowed.images))]),
        files=[*data.files, *other.files],
        borrowed=counts,
    )


@torch.no_grad()
def teacher_logits(
    teacher: LoadedModel, pixels: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """The teacher's logits for a batch of raw pixels, normalized as its own model.json says."""
    inputs = teacher.spec.input.normalize(pixels)
    return teacher.network(inputs.to(device, memory_format=torch.channels_last))


def partial_label_loss(
    logits: torch.Tensor, candidates: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Cross-entropy on the probability of any candidate class; one candidate is plain CE.

    Smoothing spreads `smoothing` over all classes, as `F.cross_entropy(label_smoothing=...)`.
    """
    log_p = F.log_softmax(logits, dim=1)
    nll = -torch.logsumexp(log_p.masked_fill(~candidates, -math.inf), dim=1)
    return ((1 - smoothing) * nll - smoothing * log_p.mean(dim=1)).mean()


def train(args: argparse.Namespace) -> Path:
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    data = load_split(args.data_dir, args.split, "train")
    test = load_split(args.data_dir, args.split, "test")
    args.val_fraction, args.val_seed = held_out_part(args)
    train_idx, val_idx = held_out_split(data.labels, args.val_fraction, args.val_seed)
    train_pixels = data.images[train_idx].astype(np.float32) / 255
    spec_input = InputSpec(mean=float(train_pixels.mean()), std=float(train_pixels.std()))
    del train_pixels

    counts = np.bincount(data.labels[train_idx], minlength=data.num_classes)
    log_prior = torch.log(torch.from_numpy(np.maximum(counts, 1) / counts.sum()).float())
    logit_shift = (args.balance_tau * log_prior).to(device)

    pool = training_pool(data, test, train_idx, args.data_dir, args.extra_split)
    images, candidates, train_idx = pool.images, pool.candidates, pool.train_idx

    network = CharCNN(data.num_classes)
    if args.init_from:
        network.load_state_dict(starting_weights(args.init_from, data.characters))
    teacher = earlier_model(args.teacher, data.characters) if args.teacher else None
    if teacher:
        teacher.network.to(device, memory_format=torch.channels_last)
    network = network.to(device, memory_format=torch.channels_last)
    averaged = torch.optim.swa_utils.AveragedModel(
        network,
        multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema_decay),
        use_buffers=True,
    )
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )
    generator = torch.Generator().manual_seed(args.seed)
    best = {f"val_{args.select_by}": -1.0}
    best_state = copy.deepcopy(network.state_dict())
    shipped = averaged.module
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        network.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=generator)]
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{args.epochs}", unit="batch")
        seen = correct = 0
        loss_sum = 0.0
        for step in bar:
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            pixels = images[idx].float().unsqueeze(1)
            if args.augment:
                pixels = redraw_as_pen(pixels, args.pen_fraction, generator)
                pixels = augment(jitter_strokes(pixels, args.stroke_jitter, generator), generator)
            x = spec_input.normalize(pixels).to(device, memory_format=torch.channels_last)
            y = candidates[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                logits = network(x)
                taught = teacher_logits(teacher, pixels, device) if teacher else None
            loss = partial_label_loss(logits.float() + logit_shift, y, args.label_smoothing)
            if taught is not None:
                loss = (1 - args.distill_weight) * loss + args.distill_weight * distillation_loss(
                    logits.float(), taught.float(), args.distill_temperature
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            averaged.update_parameters(network)
            seen += len(idx)
            correct += int(y.gather(1, logits.argmax(1, keepdim=True)).sum())
            loss_sum += loss.item() * len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        predicted = logits_of(shipped, images[val_idx], spec_input, device).argmax(1).numpy()
        truth = data.labels[val_idx]
        val_acc = float((predicted == truth).mean())
        val_macro = macro_accuracy(truth, predicted, data.num_classes)
        print(
            f"epoch {epoch}: train loss {loss_sum / seen:.4f} acc {correct / seen:.4f} | "
            f"val acc {val_acc:.4f} macro {val_macro:.4f}",
            flush=True,
        )
        scores = {"val_accuracy": val_acc, "val_macro_accuracy": val_macro}
        if scores[f"val_{args.select_by}"] > best[f"val_{args.select_by}"]:
            best = {"epoch": epoch, **scores}
            best_state = copy.deepcopy(shipped.state_dict())
    duration = time.perf_counter() - started

    network.load_state_dict(best_state)
    network = network.to("cpu", memory_format=torch.contiguous_format).eval()
    val_images, val_labels = images[val_idx], torch.from_numpy(data.labels[val_idx])
    calibration = calibrate(network, val_images, val_labels, spec_input, args.select_by)
    pen_lines, pen_line_record = calibrate_pen_lines(
        network, val_images, val_labels, spec_input, args.select_by
    )
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    spec = ModelSpec(
        name=args.out.name,
        architecture=ARCHITECTURE,
        labels=data.characters,
        input=spec_input,
        training={
            "split": args.split,
            "files": {path.name: sha256_of(path) for path in pool.files},
            "train_images": len(train_idx),
            **({"extra": pool.borrowed} if pool.borrowed else {}),
            "validation_images": len(val_idx),
            "config": config,
            "best": best,
            "calibration": calibration,
            "pen_line_calibration": pen_line_record,
            "duration_s": round(duration, 1),
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
        pen_line_calibration=pen_lines,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_model(args.out, network, spec)
    report = evaluate(args.out, test)
    write_report(args.out, report, args.out / "report.json")
    return args.out


def main(argv: list[str] | None = None) -> None:
    out = train(parse_args(argv))
    print(f"model written to {out}")


if __name__ == "__main__":
    main()
