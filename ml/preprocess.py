"""Any drawn, photographed or scanned character image -> the input an EMNIST-trained model expects.

The model only ever saw EMNIST (Cohen et al. 2017): white strokes on black, cropped to the ink,
centred in a square with a small border, downsampled with antialiasing to 28x28. Every path that
feeds a model goes through here, so user images are decoded safely, ink is separated from paper,
stroke width is brought into EMNIST's range and the result is shaped by the model's `InputSpec`.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import ExifTags, Image, ImageFilter, UnidentifiedImageError

from ml.artifact import InputSpec

DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_FRAMES = 100
# Phone photos with several pictures (MPO) are opened through the JPEG plugin.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
)
NUMERIC_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Decoded images are box-reduced to at most this side: enough detail for a letter that fills a
# tenth of a phone photo, and it bounds the cost of everything after decoding.
DECODE_MAX_SIDE = 1024
# Ink, paper and the letter's box are found on an image no larger than this.
ANALYSIS_MAX_SIDE = 160

# Fractions of pixels at the dark and light extremes that stand for "ink" and "paper".
EXTREME_FRACTION = 0.002
# Ink must differ from the paper by this many grey levels (of 255) and by this many noise sigmas.
MIN_CONTRAST = 32
MIN_SNR = 6.0
# Background noise up to this many sigmas is taken as paper.
NOISE_FLOOR_SIGMAS = 3.0
# Median absolute difference of neighbouring pixels, per sigma of Gaussian noise: 0.6745 * sqrt(2).
MAD_DIFF_PER_SIGMA = 0.954
# Ink at or above this level (of 255) bounds the letter; a quarter keeps faint thin pen lines.
BOX_THRESHOLD = 64
# A run of ink rows or columns at the edge with less than this share of the ink is a speck.
SPECK_MASS_FRACTION = 0.02

# Geometry of the working image: the letter's long side in working pixels, WORK_SCALE per output
# pixel, and its long side in output pixels (EMNIST's 2-pixel border at 128 px leaves about 22).
EMNIST_SIDE = 28
WORK_SCALE = 3
LETTER_SIDE = 22.5
# EMNIST strokes, as twice the area over the boundary length of the ink above half intensity, in
# output pixels: the range where a stroke is left as it is, and the value it is brought to.
STROKE_RANGE = (2.0, 5.0)
STROKE_TARGET = 3.1
# EMNIST blurs with sigma 1 at the NIST scan's resolution, about 4 times the output's.
BLUR_SIGMA = 0.5
# Dilation or erosion never goes beyond this many working pixels.
MAX_STROKE_STEPS = 12


class PreprocessError(ValueError):
    """An image that cannot become a model input; `.message` is a short sentence for the user."""

    default_message = "The image could not be prepared for the model."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class NotAnImageError(PreprocessError):
    default_message = "The file is not a PNG, JPEG, BMP, GIF, TIFF or WebP image."


class TruncatedImageError(PreprocessError):
    default_message = "The image file is truncated or damaged."


class BlankImageError(PreprocessError):
    default_message = "No ink found: the image is blank."


class ImageTooLargeError(PreprocessError):
    default_message = "The image has too many pixels."


class TooManyFramesError(PreprocessError):
    default_message = "The image has too many animation frames."


def to_model_input(
    data: bytes,
    spec: InputSpec,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> np.ndarray:
    """Image file bytes -> one normalized (height, width) float32 model input."""
    return _shape_for_model(_letter_pixels(_decode_gray(data, max_pixels, max_frames)), spec)


def array_to_model_input(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """An already decoded image (HxW grey, HxWx3 RGB or HxWx4 RGBA) -> one model input."""
    return _shape_for_model(_letter_pixels(_array_to_gray(np.asarray(array))), spec)


def to_display_png(model_input: np.ndarray, spec: InputSpec) -> bytes:
    """The input the model saw, as an upright white-on-black PNG a person can look at."""
    pixels = (np.asarray(model_input, dtype=np.float32) * spec.std + spec.mean) / spec.scale
    pixels = _from_spec_layout(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), spec)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _shape_for_model(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Upright white-on-black uint8 pixels -> the spec's size, layout and normalization."""
    if pixels.shape != (spec.height, spec.width):
        image = Image.fromarray(pixels, mode="L")
        pixels = np.asarray(image.resize((spec.width, spec.height), Image.Resampling.BILINEAR))
    laid_out = _to_spec_layout(pixels, spec).astype(np.float32)
    return np.ascontiguousarray(spec.normalize(laid_out), dtype=np.float32)


def _to_spec_layout(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Upright white-on-black -> the orientation and polarity named in the spec."""
    if spec.orientation == "transposed":
        pixels = pixels.T
    elif spec.orientation != "upright":
        raise ValueError(f"unknown input orientation {spec.orientation!r}")
    if spec.ink == "black-on-white":
        return 255 - pixels
    if spec.ink != "white-on-black":
        raise ValueError(f"unknown input ink {spec.ink!r}")
    return pixels


def _from_spec_layout(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Inverse of `_to_spec_layout` (both steps are involutions, applied in reverse order)."""
    if spec.ink == "black-on-white":
        pixels = 255 - pixels
    return pixels.T if spec.orientation == "transposed" else pixels


# --- decoding: bytes -> one grey image, with every failure a PreprocessError -----------------


def _decode_gray(data: bytes, max_pixels: int, max_frames: int) -> Image.Image:
    """Open, check limits before decoding pixels, decode the first frame, flatten to grey."""
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image has {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:g}."
        )
    frames = _frame_count(image, data, max_frames + 1)
    if frames > max_frames:
        raise TooManyFramesError(f"The image has more than {max_frames} animation frames.")
    if image.format in ("JPEG", "MPO"):
        reduction = max(width, height) / DECODE_MAX_SIDE
        image.draft("L", (math.ceil(width / reduction), math.ceil(height / reduction)))
    try:
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        gray = _flatten(image)
    except PreprocessError:
        raise
    # Pillow's decoders report damaged data with many exception types; all mean the same here.
    except Exception as error:
        raise TruncatedImageError() from error
    gray = _reduce_to(gray, DECODE_MAX_SIDE)
    transpose = EXIF_TRANSPOSE.get(orientation)
    return gray.transpose(transpose) if transpose is not None else gray


def _open(data: bytes) -> Image.Image:
    """Read only the header: format, size and mode."""
    if not data:
        raise NotAnImageError("The file is empty.")
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError() from error
    except UnidentifiedImageError as error:
        if data.startswith(IMAGE_SIGNATURES):
            raise TruncatedImageError() from error
        raise NotAnImageError() from error
    # A header can be damaged in ways Pillow's parsers report with assorted exception types.
    except Exception as error:
        raise TruncatedImageError() from error


def _frame_count(image: Image.Image, data: bytes, limit: int) -> int:
    """Frames in the file, counted no further than `limit` and without decoding any."""
    if image.format == "GIF":
        return _gif_frame_count(data, limit)
    if image.format == "TIFF":
        count = 1
        try:
            while count < limit:
                image.seek(count)
                count += 1
        except EOFError:
            pass
        except Exception as error:
            raise TruncatedImageError() from error
        image.seek(0)
        return count
    return int(getattr(image, "n_frames", 1))


def _gif_frame_count(data: bytes, limit: int) -> int:
    """Image descriptors in a GIF, found by skipping its blocks (Pillow would decode each frame)."""
    position = 13
    if data[10] & 0x80:
        position += 3 << ((data[10] & 7) + 1)
    frames = 0
    while position < len(data) and frames < limit:
        block = data[position]
        if block == 0x2C:
            frames += 1
            flags = data[position + 9] if position + 9 < len(data) else 0
            position += 11 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
        elif block == 0x21:
            position += 2
        else:
            break
        while position < len(data) and data[position]:
            position += data[position] + 1
        position += 1
    return frames


def _flatten(image: Image.Image) -> Image.Image:
    """Any mode -> "L": numeric modes stretched to 0..255, transparency composited away."""
    if image.mode in NUMERIC_MODES:
        return _stretch_to_gray(np.asarray(image, dtype=np.float32))
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return _composite(image.convert("LA"))
    try:
        return image.convert("L")
    except ValueError as error:
        raise NotAnImageError(f"Images in colour mode {image.mode} are not supported.") from error


def _stretch_to_gray(values: np.ndarray) -> Image.Image:
    """Integer or float pixels of any range -> "L" spanning their own minimum to maximum."""
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    return Image.fromarray(np.rint((values - low) * (255.0 / span)).astype(np.uint8), mode="L")


def _composite(gray_alpha: Image.Image) -> Image.Image:
    """Transparent pixels -> the background that contrasts with what is opaque.

    A canvas export is a dark (or light) pen on nothing: compositing onto white (or black) keeps
    the stroke whatever colour the transparent pixels carry.
    """
    gray, alpha = gray_alpha.split()
    weights = np.asarray(alpha.histogram(), dtype=np.float64)
    if weights[255] == weights.sum():
        return gray
    counts = np.asarray(gray.histogram(mask=alpha), dtype=np.float64)
    opaque_is_dark = counts @ np.arange(256) < 127.5 * max(counts.sum(), 1.0)
    background = Image.new("L", gray.size, 255 if opaque_is_dark else 0)
    background.paste(gray, mask=alpha)
    return background


def _reduce_to(image: Image.Image, max_side: int) -> Image.Image:
    """Box-average by a whole factor so that no side exceeds `max_side`."""
    factor = math.ceil(max(image.size) / max_side)
    return image.reduce(factor) if factor > 1 else image


def _array_to_gray(array: np.ndarray) -> Image.Image:
    """A numpy image -> "L", with the same flattening rules as decoded files."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if (
        array.size == 0
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (3, 4))
    ):
        raise NotAnImageError("The array is not an image: expected HxW, HxWx3 or HxWx4.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = np.asarray(_stretch_to_gray(array) if array.ndim == 2 else _scale_channels(array))
    if array.ndim == 2:
        return _reduce_to(Image.fromarray(array, mode="L"), DECODE_MAX_SIDE)
    image = Image.fromarray(
        np.ascontiguousarray(array), mode="RGB" if array.shape[2] == 3 else "RGBA"
    )
    return _reduce_to(_flatten(image), DECODE_MAX_SIDE)


def _scale_channels(array: np.ndarray) -> np.ndarray:
    """Colour channels of any numeric type -> uint8: 0..1 floats and 16-bit integers scaled up."""
    values = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if np.issubdtype(array.dtype, np.floating):
        top = 1.0 if values.max() <= 1.0 else 255.0
    else:
        top = float(np.iinfo(array.dtype).max) if array.dtype.itemsize > 1 else 255.0
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


# --- the letter: grey image -> EMNIST-like 28x28 white-on-black ------------------------------


def _letter_pixels(gray: Image.Image) -> np.ndarray:
    """Separate ink from paper, crop to it, even out the stroke and draw it as EMNIST did."""
    factor = math.ceil(max(gray.size) / ANALYSIS_MAX_SIDE)
    small = gray.reduce(factor) if factor > 1 else gray
    table = _ink_table(small)
    ink = small.point(table)
    top, bottom, left, right = _ink_box(np.asarray(ink))
    box = (left, top, right, bottom)
    if factor > 1 and max(bottom - top, right - left) < WORK_SCALE * LETTER_SIDE:
        ink, box = gray.point(table), tuple(side * factor for side in box)
    return _render(_even_strokes(_working_ink(ink, box)))


def _ink_table(small: Image.Image) -> list[int]:
    """Lookup table grey level -> ink 0..255, from the paper level, the ink level and the noise.

    Paper is the median; ink is whichever extreme lies further from it (so either polarity);
    levels within a few noise sigmas of the paper count as paper.
    """
    counts = np.cumsum(small.histogram())
    total = int(counts[-1])
    paper, darkest, lightest = (
        int(np.searchsorted(counts, fraction * total))
        for fraction in (0.5, EXTREME_FRACTION, 1.0 - EXTREME_FRACTION)
    )
    dark_ink = paper - darkest > lightest - paper
    contrast = paper - darkest if dark_ink else lightest - paper
    sigma = _noise_sigma(np.asarray(small))
    if contrast < max(MIN_CONTRAST, MIN_SNR * sigma):
        raise BlankImageError()
    floor = NOISE_FLOOR_SIGMAS * sigma
    levels = np.arange(256, dtype=np.float32)
    strength = (paper - levels) if dark_ink else (levels - paper)
    ink = np.clip((strength - floor) * (255.0 / (contrast - floor)), 0, 255)
    return np.rint(ink).astype(np.uint8).tolist()


def _noise_sigma(pixels: np.ndarray) -> float:
    """Gaussian noise sigma from the median absolute difference of horizontal neighbours."""
    if pixels.shape[1] < 2:
        return 0.0
    differences = np.abs(np.diff(pixels.astype(np.int16), axis=1)).ravel()
    counts = np.cumsum(np.bincount(differences, minlength=256))
    return float(np.searchsorted(counts, counts[-1] / 2)) / MAD_DIFF_PER_SIGMA


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """Top, bottom, left, right (exclusive) of the ink, dropping specks detached at the edges."""
    mask = ink >= BOX_THRESHOLD
    if not mask.any():
        raise BlankImageError()
    top, bottom = _main_span(mask.sum(axis=1))
    left, right = _main_span(mask.sum(axis=0))
    return top, bottom, left, right


def _main_span(profile: np.ndarray) -> tuple[int, int]:
    """First and past-last index of the runs of ink that are not outlying specks."""
    filled = np.flatnonzero(profile)
    gaps = np.flatnonzero(np.diff(filled) > 1)
    starts = np.concatenate(([filled[0]], filled[gaps + 1]))
    ends = np.concatenate((filled[gaps], [filled[-1]])) + 1
    masses = np.add.reduceat(profile, starts)
    kept = masses >= SPECK_MASS_FRACTION * masses.sum()
    if not kept.any():
        kept = masses == masses.max()
    return int(starts[np.argmax(kept)]), int(ends[len(kept) - 1 - np.argmax(kept[::-1])])


def _working_ink(ink: Image.Image, box: tuple[int, ...]) -> np.ndarray:
    """The ink inside `box` (plus a margin), scaled so its long side is the working letter size."""
    left, top, right, bottom = box
    scale = WORK_SCALE * LETTER_SIDE / max(right - left, bottom - top)
    margin = math.ceil(1 / scale) + 1
    crop = ink.crop((left - margin, top - margin, right + margin, bottom + margin))
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return np.asarray(crop.resize(size, Image.Resampling.BILINEAR))


def _even_strokes(ink: np.ndarray) -> np.ndarray:
    """Binary ink with its stroke width dilated or eroded into EMNIST's range.

    Width is twice the area over the boundary length, relative to the letter's size, so a 2-px
    pen on a big canvas and a fat marker both come out the way EMNIST's writers' pens did.
    """
    steps = MAX_STROKE_STEPS + 1
    mask = np.pad(ink >= max(int(ink.max()) // 2, 1), steps)
    width = _stroke_width(mask)
    letter = WORK_SCALE * LETTER_SIDE
    low, high = (value / LETTER_SIDE * letter for value in STROKE_RANGE)
    if low <= width <= high:
        return mask
    target = STROKE_TARGET / LETTER_SIDE
    radius = round((target * letter - width) / (2 * (1 - target)))
    radius = max(-MAX_STROKE_STEPS, min(MAX_STROKE_STEPS, radius))
    if radius > 0:
        return _dilate(mask, radius)
    eroded = ~_dilate(~mask, -radius)
    return eroded if eroded.any() else mask


def _stroke_width(mask: np.ndarray) -> float:
    """Twice the ink area over its boundary pixels: a band of width w and any length gives w."""
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    area = int(mask.sum())
    return 2.0 * area / max(area - int(inner.sum()), 1)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow by `steps` pixels, alternating 3x3 square and cross steps to approximate a disc."""
    for step in range(steps):
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        source = grown if step % 2 == 0 else mask
        grown[:, 1:] |= source[:, :-1]
        grown[:, :-1] |= source[:, 1:]
        mask = grown
    return mask


def _render(mask: np.ndarray) -> np.ndarray:
    """Centre the ink's box in a square with EMNIST's border, blur and downsample to 28x28."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    letter = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = max(letter.shape) * EMNIST_SIDE / LETTER_SIDE
    canvas_side = math.ceil(side) + 2
    canvas = np.zeros((canvas_side, canvas_side), dtype=np.uint8)
    top, left = ((canvas_side - extent) // 2 for extent in letter.shape)
    canvas[top : top + letter.shape[0], left : left + letter.shape[1]] = letter * np.uint8(255)
    start = (canvas_side - side) / 2
    image = Image.fromarray(canvas, mode="L").filter(
        ImageFilter.GaussianBlur(BLUR_SIGMA * side / EMNIST_SIDE)
    )
    pixels = np.asarray(
        image.resize(
            (EMNIST_SIDE, EMNIST_SIDE),
            Image.Resampling.BICUBIC,
            box=(start, start, start + side, start + side),
        ),
        dtype=np.float32,
    )
    peak = float(pixels.max())
    return (
        np.rint(pixels * (255.0 / peak)).astype(np.uint8) if peak > 0 else pixels.astype(np.uint8)
    )
