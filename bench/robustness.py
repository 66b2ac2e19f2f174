"""Accuracy on test images sent the way people send them: `python -m bench.robustness`.

Each EMNIST test image of the model's own split (pool47 for emnist47, pool62 for emnist62;
`--split` for another) is rendered as a user would produce it (a scanned page, a phone photo, a
shadow across it, a browser canvas, a marker drawing), encoded to file bytes, put through
`ml.preprocess` and the model; macro accuracy per rendering style is compared with the model on
the clean test images. Two more references: the same images redrawn as training redraws pen
lines, fed to the model directly (in EMNIST's frame), and those pen lines framed by
preprocessing first (cropped to the ink, as every canvas letter is). Between them they show how
much of the canvas style's loss is the pen line, how much EMNIST's frame, and how much is left
for the canvas rendering. Every row also counts the letters read right clean and wrong once
rendered, and what they were read as.
Writes bench/results/robustness_<model>.json and .md.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ml import Predictor, load_model
from ml.artifact import InputSpec
from ml.data import DEFAULT_DATA_DIR, load_split
from ml.image_errors import PreprocessError
from ml.metrics import macro_accuracy
from ml.pen_lines import pen_lines_of
from ml.predictor import Precision
from ml.preprocess import read_model_input, skeleton

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPOSITORY / "bench" / "results"
DEFAULT_LIMIT = 2000
# A style passes when its macro accuracy is at most this many points below the clean images'.
TOLERANCE_POINTS = 2.0
# Confusions listed per style in the Markdown table (the JSON holds them all).
CONFUSIONS_SHOWN = 6
CANVAS_SIDE = 280
# This service's draw page (frontend/index.html, js/draw.js): its canvas side and ink grey.
DRAW_PAGE_SIDE = 400
DRAW_PAGE_INK = 0x11
# Browser canvas strokes are antialiased: strokes are drawn this many times larger, then reduced.
SUPERSAMPLE = 4
# The centre line is found on the EMNIST image enlarged this many times.
THIN_SCALE = 4

Renderer = Callable[[np.ndarray, np.random.Generator], bytes]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# How Chromium's canvas.toBlob and toDataURL write a PNG (tests/browser checks it against the
# browser): 8-bit RGBA, PNG filter type 2 ("Up") on every row, zlib's fastest level.
BROWSER_PNG_FILTER = 2
BROWSER_ZLIB_LEVEL = 1


def encode(image: Image.Image, file_format: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, and the CRC decoders check."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def browser_png(rgba: np.ndarray) -> bytes:
    """An (H, W, 4) uint8 canvas as a browser exports it; Pillow's own filters decode slower."""
    height, width, _ = rgba.shape
    rows = rgba.reshape(height, width * 4)
    filtered = np.empty((height, width * 4 + 1), dtype=np.uint8)
    filtered[:, 0] = BROWSER_PNG_FILTER
    filtered[0, 1:] = rows[0]
    # "Up" stores each byte minus the one above it, modulo 256, as uint8 arithmetic wraps.
    filtered[1:, 1:] = rows[1:] - rows[:-1]
    return png_file(width, height, 8, 6, filtered.tobytes(), BROWSER_ZLIB_LEVEL)


def png_file(
    width: int, height: int, bit_depth: int, colour_type: int, scanlines: bytes, level: int = -1
) -> bytes:
    """A PNG of filtered scanlines, chunk by chunk: filters, bit depths and zlib levels that
    Pillow's encoder does not choose."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(scanlines, level))
        + png_chunk(b"IEND", b"")
    )


def as_is(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """The EMNIST image itself as a PNG: what re-cropping and re-drawing alone cost."""
    return encode(Image.fromarray(pixels), "PNG")


def crisp(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """Enlarged and cut at half intensity: a clean drawing with no grey levels at all."""
    side = round(28 * rng.uniform(4, 8))
    letter = np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC))
    return encode(Image.fromarray(np.where(letter >= 128, 0, 255).astype(np.uint8)), "PNG")


def page(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Dark ink on white or off-white paper, enlarged 4-16x and placed off-centre on a page."""
    side = round(28 * rng.uniform(4, 16))
    letter = np.asarray(
        Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32
    )
    page_side = round(side * rng.uniform(1.3, 2.2))
    paper, ink = rng.uniform(200, 255), rng.uniform(0, 70)
    sheet = np.full((page_side, page_side), paper, dtype=np.float32)
    top, left = rng.integers(0, page_side - side + 1, size=2)
    coverage = letter / 255.0
    region = sheet[top : top + side, left : left + side]
    region[:] = region * (1 - coverage) + ink * coverage
    return Image.fromarray(np.rint(sheet).astype(np.uint8), mode="L")


def scan(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """Dark ink on white or off-white paper, enlarged 4-16x, off-centre on a page (PNG)."""
    return encode(page(pixels, rng), "PNG", compress_level=1)


def rotated(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """The scanned page turned by up to 8 degrees either way."""
    sheet = page(pixels, rng)
    paper = int(np.median(np.asarray(sheet)))
    angle = rng.uniform(-8, 8)
    return encode(
        sheet.rotate(angle, Image.Resampling.BILINEAR, fillcolor=paper), "PNG", compress_level=1
    )


def blurred(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """The scanned page out of focus: Gaussian blur, sigma 0.5-2.5 px per 600 px of page."""
    sheet = page(pixels, rng)
    radius = rng.uniform(0.5, 2.5) * sheet.width / 600
    return encode(sheet.filter(ImageFilter.GaussianBlur(radius)), "PNG", compress_level=1)


def noisy(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """The scanned page with Gaussian sensor noise, sigma 4-16 grey levels."""
    sheet = np.asarray(page(pixels, rng), dtype=np.float32)
    sheet = sheet + rng.normal(0, rng.uniform(4, 16), size=sheet.shape)
    return encode(Image.fromarray(np.clip(np.rint(sheet), 0, 255).astype(np.uint8)), "PNG")


def jpeg(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """The scanned page saved as a JPEG at quality 50-90."""
    return encode(page(pixels, rng).convert("RGB"), "JPEG", quality=int(rng.integers(50, 91)))


def photo(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """Everything a phone adds at once: tilt, blur, sensor noise and JPEG."""
    sheet = page(pixels, rng)
    paper = int(np.median(np.asarray(sheet)))
    sheet = sheet.rotate(rng.uniform(-8, 8), Image.Resampling.BILINEAR, fillcolor=paper)
    sheet = sheet.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * sheet.width / 600))
    return phone_jpeg(np.asarray(sheet, dtype=np.float32), rng)


def phone_jpeg(sheet: np.ndarray, rng: np.random.Generator) -> bytes:
    """Sensor noise (sigma 3-10 grey levels) and JPEG at quality 50-90, as a phone adds them."""
    values = sheet + rng.normal(0, rng.uniform(3, 10), sheet.shape)
    noisy_sheet = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    return encode(noisy_sheet.convert("RGB"), "JPEG", quality=int(rng.integers(50, 91)))


def page_coordinates(sheet: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every pixel of a square page, as shares of its side (0 to 1)."""
    rows, cols = np.mgrid[: sheet.shape[0], : sheet.shape[1]]
    return rows / sheet.shape[0], cols / sheet.shape[1]


def shadow(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo with a hard-edged shadow at any angle across the page: 40-70% of the light.

    The edge passes anywhere in the page's middle 70%, across the letter or beside it, and is
    softened over 0.5-3 px per 600 px; then noise and JPEG as in `photo`.
    """
    sheet = np.asarray(page(pixels, rng), dtype=np.float32)
    rows, cols = page_coordinates(sheet)
    angle, (row, col) = rng.uniform(0, np.pi), rng.uniform(0.15, 0.85, size=2)
    across = ((rows - row) * np.cos(angle) - (cols - col) * np.sin(angle)) * sheet.shape[0]
    softness = rng.uniform(0.5, 3.0) * sheet.shape[0] / 600
    shaded = 0.5 * (1 + np.tanh(across / (2 * softness)))
    return phone_jpeg(sheet * (1 - (1 - rng.uniform(0.4, 0.7)) * shaded), rng)


def falloff(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo lit from one side: the light falls by 30-60% across the page, any direction.

    Then noise and JPEG as in `photo`.
    """
    sheet = np.asarray(page(pixels, rng), dtype=np.float32)
    rows, cols = page_coordinates(sheet)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip((cols - 0.5) * np.cos(angle) + (rows - 0.5) * np.sin(angle) + 0.5, 0, 1)
    return phone_jpeg(sheet * (1 - rng.uniform(0.3, 0.6) * ramp), rng)


def pen_canvas(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """The letter's centre line drawn with a 1-3 px pen on a transparent 280x280 canvas.

    Encoded as Chromium encodes a canvas export (`browser_png`), as a canvas page sends it.
    """
    strokes = centre_line_drawing(pixels, rng, CANVAS_SIDE, letter_sides=(150, 250), pens=(1, 3))
    rgba = np.zeros((CANVAS_SIDE, CANVAS_SIDE, 4), dtype=np.uint8)
    rgba[:, :, 3] = strokes
    return browser_png(rgba)


def draw_page(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """The letter's centre line as this service's draw page draws it: a pen 1/14 of the canvas.

    #111 ink on a white 400x400 canvas, the letter about 35-60% of the canvas tall.
    """
    pen = DRAW_PAGE_SIDE / 14
    strokes = centre_line_drawing(
        pixels, rng, DRAW_PAGE_SIDE, letter_sides=(200, 330), pens=(pen, pen)
    ).astype(np.int32)
    gray = (255 - strokes * (255 - DRAW_PAGE_INK) // 255).astype(np.uint8)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    return browser_png(rgba)


def centre_line_drawing(
    pixels: np.ndarray,
    rng: np.random.Generator,
    side: int,
    letter_sides: tuple[float, float],
    pens: tuple[float, float],
) -> np.ndarray:
    """The letter's centre line drawn with a round pen (width drawn from `pens`) on a `side`
    square canvas, anywhere on it, EMNIST's 28 pixels drawn from `letter_sides`; antialiased
    as a browser draws. Ink 255 on 0."""
    enlarged = Image.fromarray(pixels).resize(
        (28 * THIN_SCALE, 28 * THIN_SCALE), Image.Resampling.BILINEAR
    )
    centre_line = skeleton(np.asarray(enlarged) >= 128)
    scale = rng.uniform(*letter_sides) / (28 * THIN_SCALE) * SUPERSAMPLE
    offset = rng.uniform(0, side * SUPERSAMPLE - 28 * THIN_SCALE * scale, size=2)
    width = round(rng.uniform(*pens) * SUPERSAMPLE)
    canvas = Image.new("L", (side * SUPERSAMPLE,) * 2, 0)
    draw = ImageDraw.Draw(canvas)
    rows, cols = np.nonzero(centre_line)
    points = set(zip(rows.tolist(), cols.tolist(), strict=True))
    for row, col in points:
        start = (offset[0] + col * scale, offset[1] + row * scale)
        draw.ellipse(
            [
                start[0] - width / 2,
                start[1] - width / 2,
                start[0] + width / 2,
                start[1] + width / 2,
            ],
            fill=255,
        )
        for d_row, d_col in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if (row + d_row, col + d_col) in points:
                end = (offset[0] + (col + d_col) * scale, offset[1] + (row + d_row) * scale)
                draw.line([start, end], fill=255, width=width)
    return np.asarray(canvas.reduce(SUPERSAMPLE))


def marker(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """Strokes 1.5-2 times EMNIST's width, dark on white, as a felt marker draws them."""
    side = round(28 * rng.uniform(6, 10))
    letter = Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC)
    spread = letter.filter(ImageFilter.GaussianBlur(side / 28 * rng.uniform(0.5, 0.9)))
    fat = np.asarray(spread) >= 40
    ink = Image.fromarray(np.where(fat, 20, 250).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(side / 200)
    )
    sheet = Image.new("L", (round(side * 1.5),) * 2, 250)
    sheet.paste(ink, tuple(rng.integers(0, sheet.width - side + 1, size=2).tolist()))
    return encode(sheet, "PNG")


STYLES: dict[str, Renderer] = {
    "as_is": as_is,
    "crisp": crisp,
    "scan": scan,
    "rotated": rotated,
    "blurred": blurred,
    "noisy": noisy,
    "jpeg": jpeg,
    "photo": photo,
    "pen_canvas": pen_canvas,
    "marker": marker,
    "shadow": shadow,
    "falloff": falloff,
    "draw_page": draw_page,
}


def describe(style: str) -> str:
    """A style's rendering in one sentence: the first line of its docstring."""
    return (STYLES[style].__doc__ or style).strip().splitlines()[0]


def stratified(labels: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the first `limit // classes` test images of every class, in file order."""
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    chosen = [np.flatnonzero(labels == label)[:per_class] for label in classes]
    return np.sort(np.concatenate(chosen))


def style_inputs(
    render: Renderer, images: np.ndarray, style_index: int, spec_input: InputSpec, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Model inputs for every image rendered in one style, which of them preprocessing found drawn
    as even pen lines, and how many failed (those become all-background inputs)."""
    inputs = np.empty((len(images), 28, 28), dtype=np.float32)
    pen_lines = np.zeros(len(images), dtype=bool)
    failures = 0
    for index, pixels in enumerate(images):
        rng = np.random.default_rng([seed, style_index, index])
        try:
            model_input = read_model_input(render(pixels, rng), spec_input)
        except PreprocessError:
            inputs[index] = spec_input.normalize(np.zeros((28, 28), dtype=np.float32))
            failures += 1
            continue
        inputs[index], pen_lines[index] = model_input.pixels, model_input.pen_line
    return inputs, pen_lines, failures


def turned_wrong(
    truth: np.ndarray, clean: np.ndarray, predicted: np.ndarray, characters: list[str]
) -> dict:
    """Images the model reads right clean and wrong here: how many, and what it reads instead.

    `other_case` counts those read as the same letter in the other case (`W` as `w`).
    """
    lost = (clean == truth) & (predicted != truth)
    pairs = Counter(zip(truth[lost].tolist(), predicted[lost].tolist(), strict=True))
    return {
        "images": int(lost.sum()),
        "other_case": sum(
            count
            for (true, read), count in pairs.items()
            if characters[true].lower() == characters[read].lower()
        ),
        "confusions": {
            f"{characters[true]}->{characters[read]}": count
            for (true, read), count in pairs.most_common()
        },
    }


def measure(
    model: str,
    data_dir: Path,
    split: str | None,
    limit: int,
    styles: list[str],
    seed: int,
    precision: Precision = "auto",
) -> dict:
    loaded = load_model(model)
    split = split or loaded.spec.training.get("split")
    if split is None:
        raise SystemExit(f"{model} does not say which split it was trained on: pass --split")
    data = load_split(data_dir, split, "test")
    if loaded.spec.labels != data.characters:
        raise SystemExit(f"{model} was not trained on {split}'s labels")
    chosen = stratified(data.labels, limit)
    images, truth = data.images[chosen], data.labels[chosen]
    predictor = Predictor(loaded, device="cpu", threads=1, precision=precision)
    spec_input = loaded.spec.input
    classes = data.num_classes

    def predict(inputs: np.ndarray, pen_lines: np.ndarray | None = None) -> np.ndarray:
        return predictor.probabilities(inputs, pen_lines).argmax(axis=1)

    def score(predicted: np.ndarray) -> dict:
        return {
            "accuracy": round(float((predicted == truth).mean()), 4),
            "macro_accuracy": round(macro_accuracy(truth, predicted, classes), 4),
        }

    def against_clean(inputs: np.ndarray, pen_lines: np.ndarray | None = None) -> dict:
        predicted = predict(inputs, pen_lines)
        figures = {
            **score(predicted),
            "turned_wrong": turned_wrong(truth, clean_read, predicted, data.characters),
        }
        if pen_lines is None:
            return figures
        return {
            **figures,
            "pen_lines": int(pen_lines.sum()),
            "macro_accuracy_without_pen_line_calibration": score(predict(inputs))["macro_accuracy"],
        }

    clean_read = predict(spec_input.normalize(images.astype(np.float32)))
    clean = score(clean_read)
    redrawn, framed = pen_lines_of(images, seed)
    unframed_pen_lines = against_clean(spec_input.normalize(redrawn))
    background = np.zeros((28, 28), dtype=np.uint8)
    framed_pen_lines = against_clean(
        spec_input.normalize(
            np.stack([background if f is None else f.pixels for f in framed]).astype(np.float32)
        ),
        np.array([f is not None and f.pen_line for f in framed]),
    )
    rows = {}
    for style_index, name in enumerate(styles):
        started = time.perf_counter()
        inputs, pen_lines, failures = style_inputs(
            STYLES[name], images, style_index, spec_input, seed
        )
        figures = against_clean(inputs, pen_lines)
        gap = 100 * (clean["macro_accuracy"] - figures["macro_accuracy"])
        rows[name] = {
            **figures,
            "gap_points": round(gap, 2),
            "passes": gap <= TOLERANCE_POINTS,
            "preprocess_errors": failures,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{name:12s} macro {figures['macro_accuracy']:.4f} gap {gap:+.2f} points")
    macro = [row["macro_accuracy"] for row in rows.values()]
    overall = {
        "macro_accuracy_mean": round(float(np.mean(macro)), 4),
        "worst_gap_points": round(max(row["gap_points"] for row in rows.values()), 2),
        "all_pass": all(row["passes"] for row in rows.values()),
    }
    return {
        "model": loaded.spec.name,
        # Relative to the repository for a shipped model, so results carry no machine's paths.
        "model_path": str(
            loaded.path.resolve().relative_to(REPOSITORY)
            if loaded.path.resolve().is_relative_to(REPOSITORY)
            else loaded.path
        ),
        "split": f"{split} test",
        "precision": predictor.precision,
        "images": int(len(truth)),
        "selection": f"first {len(truth) // classes} test images of each of {classes} classes",
        "seed": seed,
        "tolerance_points": TOLERANCE_POINTS,
        "renderings": {name: describe(name) for name in styles},
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "clean": clean,
        "pen_lines_no_preprocessing": unframed_pen_lines,
        "pen_lines_framed": framed_pen_lines,
        "styles": rows,
        "overall": overall,
    }


def markdown(results: dict) -> str:
    """The results as a table for humans; the JSON beside it holds the same figures."""
    clean = results["clean"]["macro_accuracy"]
    references = {
        "pen lines as training draws them (no preprocessing)": "pen_lines_no_preprocessing",
        "the same pen lines, framed by preprocessing": "pen_lines_framed",
    }
    lines = [
        f"# Robustness of preprocessing + {results['model']} ({results['split']})",
        "",
        f"{results['images']} images ({results['selection']}), model in {results['precision']}, "
        f"measured {results['measured']}.",
        f"A style passes when its macro accuracy is within {results['tolerance_points']} points "
        "of the clean test images fed to the model directly.",
        "",
        "Pen lines: the images preprocessing found drawn as even pen lines, which the model "
        "reads with its pen-line calibration (`ml.calibrate`), and the style's macro accuracy "
        "had they been read without it.",
        "",
        "| style | accuracy | macro accuracy | gap (points) | passes | preprocess errors "
        "| pen lines (macro without their calibration) |",
        "|---|---|---|---|---|---|---|",
        f"| clean (no preprocessing) | {results['clean']['accuracy']:.4f} "
        f"| {results['clean']['macro_accuracy']:.4f} | | | | |",
    ]
    for label, key in references.items():
        row = results[key]
        lines.append(
            f"| {label} | {row['accuracy']:.4f} | {row['macro_accuracy']:.4f} "
            f"| {100 * (clean - row['macro_accuracy']):+.2f} | | | {pen_line_cell(row)} |"
        )
    for name, row in results["styles"].items():
        lines.append(
            f"| {name} | {row['accuracy']:.4f} | {row['macro_accuracy']:.4f} "
            f"| {row['gap_points']:+.2f} | {'yes' if row['passes'] else 'no'} "
            f"| {row['preprocess_errors']} | {pen_line_cell(row)} |"
        )
    overall = results["overall"]
    lines += [
        f"| **overall** (mean of styles) | | {overall['macro_accuracy_mean']:.4f} "
        f"| worst {overall['worst_gap_points']:+.2f} "
        f"| {'yes' if overall['all_pass'] else 'no'} | | |",
        "",
        "Renderings:",
        "",
        *(f"- `{name}`: {text}" for name, text in results["renderings"].items()),
        "",
        "Letters read right clean and wrong once rendered (of them, read as their other case), "
        "and what they were read as most often:",
        "",
        *(misreadings(label, results[key]) for label, key in references.items()),
        *(misreadings(f"`{name}`", row) for name, row in results["styles"].items()),
        "",
    ]
    return "\n".join(lines)


def pen_line_cell(row: dict) -> str:
    """How many were read as pen lines and, if any, the macro accuracy without their calibration."""
    if "pen_lines" not in row:
        return ""
    if not row["pen_lines"]:
        return "0"
    return f"{row['pen_lines']} ({row['macro_accuracy_without_pen_line_calibration']:.4f})"


def misreadings(label: str, row: dict) -> str:
    """One line of `turned_wrong`: the count and the commonest true->read pairs."""
    lost = row["turned_wrong"]
    common = list(lost["confusions"].items())[:CONFUSIONS_SHOWN]
    pairs = ", ".join(f"{pair} {count}" for pair, count in common)
    return f"- {label}: {lost['images']} ({lost['other_case']}): {pairs}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="emnist47", help="shipped name or model folder")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="test images in all")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--split", help="test split to render (default: the model's own)")
    parser.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="auto",
        help="the model's arithmetic (auto: as the service picks it on this machine)",
    )
    parser.add_argument("--styles", nargs="+", choices=sorted(STYLES), default=list(STYLES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = measure(
        args.model, args.data_dir, args.split, args.limit, args.styles, args.seed, args.precision
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"robustness_{results['model']}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
