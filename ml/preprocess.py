"""Any drawn, photographed or scanned character image -> the input an EMNIST-trained model expects.

The model only ever saw EMNIST (Cohen et al. 2017): white strokes on black, cropped to the ink,
centred in a square with a small border, downsampled with antialiasing to 28x28. Every path that
feeds a model goes through here, so user images are decoded safely, ink is separated from paper,
stroke width is brought into EMNIST's range and the result is shaped by the model's `InputSpec`;
a letter drawn as an even pen line (as a canvas draws it) is marked as one
(`ModelInput.pen_line`), for the model's pen-line calibration (`ml.calibrate`).
Files are decoded by libspng (plain PNGs, such as canvas exports) or Pillow; the pixel work is
OpenCV's, on numpy arrays.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pyspng
from PIL import ExifTags, Image, UnidentifiedImageError

from ml import file_structure
from ml.artifact import InputSpec
from ml.file_structure import FileLimits
from ml.image_errors import (
    BlankImageError,
    ImageTooComplexError,
    ImageTooLargeError,
    NotAnImageError,
    PreprocessError,
    TruncatedImageError,
)

# Every image here is small and one of many handled by as many processes: OpenCV's thread pool
# would only add its hand-offs to each call.
cv2.setNumThreads(1)

# Phone photos with several pictures (MPO) are opened through the JPEG plugin.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# How files of the accepted formats begin (WebP's RIFF header also names "WEBP" at byte 8).
IMAGE_SIGNATURES = (
    file_structure.PNG_SIGNATURE,
    file_structure.JPEG_SIGNATURE,
    *file_structure.GIF_SIGNATURES,
    b"BM",
    *file_structure.TIFF_HEADERS,
)
NUMERIC_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
# EXIF orientation -> how the stored pixels are turned upright.
EXIF_TRANSPOSE: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: np.fliplr,
    3: lambda pixels: np.rot90(pixels, 2),
    4: np.flipud,
    5: np.transpose,
    6: lambda pixels: np.rot90(pixels, -1),
    7: lambda pixels: np.rot90(pixels, 2).T,
    8: np.rot90,
}

# Run-length compressed BMPs (BI_RLE8, BI_RLE4) are decoded by OpenCV, which refuses sides
# longer than this (its CV_IO_MAX_IMAGE_WIDTH and HEIGHT).
BMP_RUN_LENGTH = (1, 2)
OPENCV_MAX_SIDE = 1 << 20
# Decoded images are box-reduced to at most this side: enough detail for a letter that fills a
# tenth of a phone photo, and it bounds the cost of everything after decoding.
DECODE_MAX_SIDE = 1024
# Lighting, ink, paper and the letter's box are first measured on a copy no larger than this.
FIRST_LOOK_SIDE = 160


@dataclass(frozen=True)
class InkSearch:
    """How keenly ink is looked for, against paper and its noise."""

    # Fraction of pixels at the dark and light extremes that stands for "ink".
    extreme_fraction: float
    # Ink must differ from the paper by this many grey levels (of 255) and noise sigmas.
    min_contrast: int
    min_snr: float


# Smaller fractions find smaller specks of ink, but set the ink level by the darkest crossings of
# a pen line, so that its antialiased body falls below half and breaks up.
FIRST_LOOK = InkSearch(extreme_fraction=0.002, min_contrast=32, min_snr=6.0)
# Before an image is called blank it is looked at again at full size, where far fewer pixels
# stand for ink: a small letter on a large page, or a thin line that reducing the image faded.
# Ink found so must differ from the paper by twice as many grey levels (on an unevenly lit JPEG
# photo with no ink, whose compression hides its noise from the sigma estimate, that fraction
# is 39 levels from the paper) and span this share of the image's longer side, so that a speck
# on an empty page is still no letter.
SECOND_LOOK = InkSearch(extreme_fraction=0.0001, min_contrast=64, min_snr=6.0)
MIN_LETTER_FRACTION = 0.015
# Background noise up to this many sigmas is taken as paper.
NOISE_FLOOR_SIGMAS = 3.0
# Median absolute difference of neighbouring pixels, per sigma of Gaussian noise: 0.6745 * sqrt(2).
MAD_DIFF_PER_SIGMA = 0.954
# The paper's brightness is what remains once strokes narrower than this share of the image's
# longer side are taken away (a third keeps a fat marker letter out of it, and any shadow wider
# than that in it); it is divided out where it varies by at least this many grey levels (a
# scan's or a canvas's does not).
PAPER_WINDOW = 1 / 3
LIGHTING_MIN_SPREAD = 40
# The spread is measured between these percentiles of the paper, so a few pixels don't make it.
LIGHTING_SPREAD_PERCENTILES = (1, 99)
# Light ink (chalk, a dark-mode screen) leaves the closing 4-15 times as rough as the opening;
# dark ink under a shadow or falloff 0.01-1.3 times, and an empty page about 1: paper is light.
LIGHT_INK_ROUGHNESS = 2.0
# The paper is estimated on a copy no larger than this and enlarged back: a quarter of the cost
# on a 1024 px image, and a shadow's edge blurred over no more than two of its pixels.
LIGHTING_MAX_SIDE = 512
# "Ink" that fills this share of its box and encloses marks covering this share of it is a sheet
# lighter than the desk it lies on (letters that fill their box so fully, on bench.robustness's
# images, are bars that enclose nothing); the letter is looked for on the sheet, this share of
# its sides in from its edges. Such "ink" with no marks, sides within this ratio and a side at
# least this share of the image's is an empty sheet: no character is a solid block.
SHEET_FILL = 0.85
SHEET_MARKS = 0.01
SHEET_INSET = 0.03
SHEET_MAX_ASPECT = 2.0
SHEET_MIN_SHARE = 0.2
# Marks are where the sheet reads as less "ink" than this: a 3 px pen line on a 1024 px photo,
# averaged into the first look's copy, still reads as 60%; the sheet's own noise stays above 90%.
SHEET_LEVEL = 192
# Ink at or above this level (of 255) bounds the letter; a quarter keeps faint thin pen lines.
BOX_THRESHOLD = 64
# A run of ink rows or columns at the edge with less than this share of the ink is a speck.
SPECK_MASS_FRACTION = 0.02
# Ink along at least this share of the image's edge is background reaching in from beyond the
# paper (the desk around a photographed sheet), not the letter.
BORDER_BACKGROUND = 0.25
# Background is followed in from the edge run by run, along rows then columns; a desk takes one
# or two such passes, and this many bound the cost of a maze drawn to take thousands.
MAX_REACH_PASSES = 16
# A box drawn around the letter (a form's field) inks this share of each of its four sides,
# within this share of the ink's box from each edge (a tilted scan spreads a side over rows),
# and is parted from the letter by a row inked no more than this (where the other two sides
# cross it).
FRAME_FILL = 0.9
FRAME_BAND = 0.15
FRAME_GAP_FILL = 0.1

# Output side, working pixels per output pixel (strokes are measured and grown at that scale), and
# the letter's long side in output pixels: EMNIST's border leaves 22-23, and 22.5 brings pool47
# test images, enlarged and sent back through this module, closest to themselves.
EMNIST_SIDE = 28
WORK_SCALE = 3
LETTER_SIDE = 22.5
# Stroke width (twice the area over the boundary of the ink above half intensity) per letter size,
# in output pixels for a LETTER_SIDE letter. Measured on pool47 test images run through this
# module: 5th percentile 2.0, median 3.25, 95th 5.3, 99th 6.9. Widths in that range are left
# alone (writers differ). Thinner ones are grown to the median; fatter ones are eroded to the 95th
# percentile only: on bench.robustness's marker style, thinning further (or redrawing the centre
# line) cost more accuracy than it gained, as loops a marker has closed cannot be reopened.
STROKE_RANGE = (2.0, 6.9)
THIN_STROKE_TARGET = 3.25
FAT_STROKE_TARGET = 5.3
# EMNIST blurs with sigma 1 at the NIST scans' resolution, about 4 times the output's, before its
# bicubic downsampling; after ours, this sigma in output pixels matches its soft edges best.
BLUR_SIGMA = 0.5
# Ink with fewer edge pixels (between 5% and 95% of its peak) than this per boundary pixel has
# crisp edges (a canvas, a marker: about 2) and gets EMNIST's blur; EMNIST's own, enlarged, 5-10.
SOFT_EDGE = 3.5
# A pen of one width draws strokes whose distance to the edge along their centre (the ridge of
# the distance transform) varies little: by at most this share of its mean
# (standard deviation over mean) for the 5% most even of 6,000 pool47 train letters, and for
# most letters drawn on this service's draw page (README, "Preprocessing robustness").
EVEN_STROKE_VARIATION = 0.075
# Where a stroke ends or turns, the ridge comes closer to the edge whatever the pen: this lowest
# share of the ridge (in percent) is left out of the measure.
RIDGE_ENDS_PERCENT = 10
# Dilation never goes beyond this many working pixels.
MAX_DILATION = 8
# Every grey level, for lookup tables.
LEVELS = np.arange(256, dtype=np.float32)
# A pixel and its four neighbours: a pixel of ink is inside the ink where all of them are ink.
CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
# A pixel and its eight neighbours: a pixel on the ridge of a distance map is their maximum.
SQUARE = np.ones((3, 3), dtype=np.uint8)


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """Zhang-Suen's two sub-iterations as lookups from a pixel's 8-neighbour code to "remove".

    Bit i of the code is neighbour P(i+2), clockwise from north (P2) to north-west (P9).
    """
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    p2, _, p4, _, p6, _, p8, _ = bits.T
    count = bits.sum(axis=1)
    transitions = ((bits == 0) & (np.roll(bits, -1, axis=1) == 1)).sum(axis=1)
    simple = (count >= 2) & (count <= 6) & (transitions == 1)
    first = simple & (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
    second = simple & (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
    return first, second


THINNING_TABLES = _thinning_tables()


@dataclass(frozen=True)
class Letter:
    """The upright white-on-black 28x28 uint8 letter, and whether it was drawn as an even pen line
    (a canvas drawing: strokes thinner, or of one width more evenly, than 95% of EMNIST's),
    which models may read apart."""

    pixels: np.ndarray
    pen_line: bool


@dataclass(frozen=True)
class ModelInput:
    """One normalized (height, width) float32 model input and its letter's `pen_line`."""

    pixels: np.ndarray
    pen_line: bool


def read_model_input(data: bytes, spec: InputSpec, limits: FileLimits = FileLimits()) -> ModelInput:
    """Image file bytes -> one model input, as the service reads every image."""
    letter = _letter_pixels(_decode_gray(data, limits))
    return ModelInput(_shape_for_model(letter.pixels, spec), letter.pen_line)


def to_model_input(data: bytes, spec: InputSpec, limits: FileLimits = FileLimits()) -> np.ndarray:
    """Image file bytes -> one normalized (height, width) float32 model input."""
    return read_model_input(data, spec, limits).pixels


def read_header(data: bytes, limits: FileLimits = FileLimits()) -> tuple[int, int]:
    """Width and height of an image file, after every check that reads no pixels: the gateway
    refuses with these before it accepts a file, the worker repeats them before decoding."""
    plain_png = _plain_png(data, limits)
    return plain_png[:2] if plain_png is not None else _open(data, limits)[0].size


def array_to_model_input(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """An already decoded image (HxW grey, HxWx3 RGB or HxWx4 RGBA) -> one model input's pixels
    (as `to_model_input`; `array_to_letter` also says whether it is a pen line)."""
    return _shape_for_model(array_to_letter(array).pixels, spec)


def array_to_letter(array: np.ndarray) -> Letter:
    """An already decoded image -> the upright white-on-black 28x28 uint8 letter, not normalized.

    `ml.pen_lines` frames pen lines with this, exactly as canvas letters are framed.
    """
    return _letter_pixels(_array_to_gray(np.asarray(array)))


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
        pixels = _resize(pixels, (spec.width, spec.height))
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


def _decode_gray(data: bytes, limits: FileLimits) -> np.ndarray:
    """Check the file's structure and declared size, decode its first frame, flatten to grey."""
    plain_png = _plain_png(data, limits)
    if plain_png is not None:
        return _reduce_to(_flatten_pixels(_decode_png(data, plain_png[2])), DECODE_MAX_SIDE)
    image, checked = _open(data, limits)
    if image.format == "BMP" and image.info.get("compression") in BMP_RUN_LENGTH:
        return _reduce_to(_decode_run_length_bmp(checked, image.size), DECODE_MAX_SIDE)
    width, height = image.size
    if image.format in ("JPEG", "MPO"):
        reduction = max(width, height) / DECODE_MAX_SIDE
        image.draft("L", (math.ceil(width / reduction), math.ceil(height / reduction)))
    try:
        image.load()
        orientation = _orientation(image, limits)
        gray = _flatten(image)
    except PreprocessError:
        raise
    # Pillow's decoders report damaged data with many exception types; all mean the same here.
    except Exception as error:
        raise TruncatedImageError() from error
    gray = _reduce_to(gray, DECODE_MAX_SIDE)
    transpose = EXIF_TRANSPOSE.get(orientation)
    return np.ascontiguousarray(transpose(gray)) if transpose is not None else gray


def _open(data: bytes, limits: FileLimits) -> tuple[Image.Image, bytes]:
    """Check the file's structure, then read its header (format, size, mode, frames): the
    image and the bytes it was opened from (a GIF or TIFF cut to its first frame)."""
    if not data:
        raise NotAnImageError("The file is empty.")
    checked = file_structure.for_decoder(data, limits)
    try:
        image = Image.open(io.BytesIO(checked), formats=ALLOWED_FORMATS)
        frames = int(getattr(image, "n_frames", 1))
    except Image.DecompressionBombError as error:
        over = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageTooLargeError(
            f"The image has over {over:.0f} megapixels; the limit is {limits.max_pixels / 1e6:g}."
        ) from error
    except UnidentifiedImageError as error:
        if data.startswith(IMAGE_SIGNATURES) or data[8:12] == file_structure.WEBP_SIGNATURE:
            raise TruncatedImageError() from error
        raise NotAnImageError() from error
    # A header can be damaged in ways Pillow's parsers report with assorted exception types.
    except Exception as error:
        raise TruncatedImageError() from error
    _check_pixels(*image.size, limits.max_pixels)
    file_structure.check_frames(frames, limits)
    return image, checked


def _plain_png(data: bytes, limits: FileLimits) -> tuple[int, int, str] | None:
    """Width, height and mode of a PNG for libspng, its size checked; None for other files."""
    plain_png = file_structure.plain_png(data, limits)
    if plain_png is not None:
        _check_pixels(plain_png[0], plain_png[1], limits.max_pixels)
    return plain_png


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image above the pixel limit from its declared size."""
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image has {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:g}."
        )


def _decode_png(data: bytes, mode: str) -> np.ndarray:
    """All pixels of a PNG in `mode` (16-bit samples reduced to 8, as Pillow does)."""
    try:
        return pyspng.load(data, format=mode)
    except RuntimeError as error:
        raise TruncatedImageError() from error


def _decode_run_length_bmp(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Grey pixels of a run-length BMP of `size` (its header's), by OpenCV: Pillow's decoder, in
    Python, lets one 1 kB file ask for gigabytes (a jump far past the image's end)."""
    if max(size) > OPENCV_MAX_SIDE:
        raise ImageTooComplexError(
            f"Run-length BMPs with a side over {OPENCV_MAX_SIDE:,} px are not decoded."
        )
    try:
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error as error:
        raise TruncatedImageError() from error
    if gray is None:
        raise TruncatedImageError()
    return gray


def _orientation(image: Image.Image, limits: FileLimits) -> int:
    """The EXIF orientation (1: upright), its block checked first: Pillow parses every tag of it,
    and reads it only here (a TIFF's own first directory was checked with the file)."""
    exif = image.info.get("exif")
    raw_profile = image.info.get("Raw profile type exif")
    if exif is None and isinstance(raw_profile, str):
        exif = bytes.fromhex("".join(raw_profile.split("\n")[3:]))
    if isinstance(exif, bytes):
        file_structure.check_exif(exif, limits)
    return image.getexif().get(ExifTags.Base.Orientation, 1)


def _flatten(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> grey pixels: numeric modes stretched to 0..255, transparency
    composited away."""
    if image.mode in NUMERIC_MODES:
        return _stretch_to_gray(np.asarray(image, dtype=np.float32))
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return _flatten_pixels(np.asarray(image.convert("RGBA")))
    if image.mode == "RGB":
        return _flatten_pixels(np.asarray(image))
    try:
        return np.asarray(image.convert("L"))
    except ValueError as error:
        raise NotAnImageError(f"Images in colour mode {image.mode} are not supported.") from error


def _flatten_pixels(pixels: np.ndarray) -> np.ndarray:
    """HxW grey, HxWx3 RGB or HxWx4 RGBA uint8 -> grey, transparency composited away."""
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return _composite(cv2.cvtColor(pixels, cv2.COLOR_RGBA2GRAY), cv2.extractChannel(pixels, 3))


def _stretch_to_gray(values: np.ndarray) -> np.ndarray:
    """Integer or float pixels of any range -> grey spanning their own minimum to maximum."""
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    return np.rint((values - low) * (255.0 / span)).astype(np.uint8)


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Transparent pixels -> the background that contrasts with what is opaque.

    A canvas export is a dark (or light) pen on nothing: compositing onto white (or black) keeps
    the stroke whatever colour the transparent pixels carry.
    """
    if cv2.minMaxLoc(alpha)[0] == 255:
        return gray
    # The mean over pixels that are opaque at all; with none, the background is white.
    if cv2.mean(gray, mask=alpha)[0] < 127.5:
        return 255 - cv2.multiply(255 - gray, alpha, scale=1 / 255)
    return cv2.multiply(gray, alpha, scale=1 / 255)


def _reduce_to(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """Box-average by a whole factor so that no side exceeds `max_side`."""
    return _reduce(pixels, math.ceil(max(pixels.shape) / max_side))


def _reduce(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Box-average by a whole factor, the far edges repeated to fill their last boxes.

    OpenCV averages boxes of a whole number of pixels ten times as fast as other areas. A side
    shorter than the factor (a sliver of an image) is averaged whole instead: padding it would
    multiply the pixels.
    """
    if factor <= 1:
        return pixels
    height, width = pixels.shape
    if min(height, width) < factor:
        size = (math.ceil(width / factor), math.ceil(height / factor))
        return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    padded = cv2.copyMakeBorder(
        pixels, 0, -height % factor, 0, -width % factor, cv2.BORDER_REPLICATE
    )
    size = (padded.shape[1] // factor, padded.shape[0] // factor)
    return cv2.resize(padded, size, interpolation=cv2.INTER_AREA)


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample to `size` (width, height): shrinking averages areas, enlarging interpolates."""
    enlarging = size[0] > pixels.shape[1] or size[1] > pixels.shape[0]
    interpolation = cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA
    return cv2.resize(pixels, size, interpolation=interpolation)


def _array_to_gray(array: np.ndarray) -> np.ndarray:
    """A numpy image -> grey, with the same flattening rules as decoded files."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if (
        array.size == 0
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (3, 4))
    ):
        raise NotAnImageError("The array is not an image: expected HxW, HxWx3 or HxWx4.")
    # Booleans, integers and reals (numpy counts complex numbers and time spans as numbers too).
    if array.dtype.kind not in "biuf":
        raise NotAnImageError(f"The array holds {array.dtype} values, not pixels.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = _stretch_to_gray(array) if array.ndim == 2 else _scale_channels(array)
    return _reduce_to(_flatten_pixels(np.ascontiguousarray(array)), DECODE_MAX_SIDE)


def _scale_channels(array: np.ndarray) -> np.ndarray:
    """Colour channels of any numeric type -> uint8: 0..1 floats and 16-bit integers scaled up."""
    values = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if np.issubdtype(array.dtype, np.floating):
        top = 1.0 if values.max() <= 1.0 else 255.0
    else:
        top = float(np.iinfo(array.dtype).max) if array.dtype.itemsize > 1 else 255.0
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


# --- the letter: grey image -> EMNIST-like 28x28 white-on-black ------------------------------


def _letter_pixels(gray: np.ndarray) -> Letter:
    """Separate ink from paper, crop to it, even out the stroke and draw it as EMNIST did.

    Levels and the letter's box come from a small copy (or, before the image is called blank,
    from all of it); the crop is taken at full resolution.
    """
    gray, table, factor, (top, bottom, left, right) = _find_ink(gray)
    crop = gray[max(top - factor, 0) : bottom + factor, max(left - factor, 0) : right + factor]
    scale = WORK_SCALE * LETTER_SIDE / max(right - left, bottom - top)
    height, width = crop.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # The table is linear between paper and full ink (clipped beyond), so it may follow the
    # resize, which then works on grey levels and the table on far fewer pixels.
    ink = cv2.LUT(_resize(crop, size), table)
    pixels, blur, pen_line = _even_strokes(ink)
    return Letter(_render(pixels, blur), pen_line)


def _find_ink(
    gray: np.ndarray, on_sheet: bool = False
) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int, int, int]]:
    """The image (evened for lighting, or the sheet in it), its ink table, the reduction used,
    and the ink's box.

    All of it is measured on a copy reduced by a whole factor to FIRST_LOOK_SIDE, unless that
    finds no ink: then the ink is looked for again in the whole image. Where the "ink" found
    is a sheet lighter than its desk, all of this is done anew on the sheet, its lighting too.
    """
    factor = math.ceil(max(gray.shape) / FIRST_LOOK_SIDE)
    small = _reduce(gray, factor)
    histogram = _histogram(small)
    if _unevenly_lit(small, histogram):
        gray = _divide_lighting(gray)
        small = _reduce(gray, factor)
        histogram = _histogram(small)
    try:
        table, ink, (top, bottom, left, right) = _look(small, histogram, FIRST_LOOK)
    except BlankImageError:
        table, _, (top, bottom, left, right) = _look(gray, _histogram(gray), SECOND_LOOK)
        if max(bottom - top, right - left) < MIN_LETTER_FRACTION * max(gray.shape):
            raise
        return gray, table, 1, (top, bottom, left, right)
    block = ink[top:bottom, left:right]
    if not on_sheet and _is_light_block(block, table):
        if _holes(block >= SHEET_LEVEL).mean() >= SHEET_MARKS:
            return _find_ink(_on_sheet(gray, (top, bottom, left, right), factor), on_sheet=True)
        full_size = gray[top * factor : bottom * factor, left * factor : right * factor]
        if _is_empty_sheet(full_size, table, max(gray.shape)):
            raise BlankImageError("No ink found: what stands out is an empty sheet.")
    return gray, table, factor, (top * factor, bottom * factor, left * factor, right * factor)


def _histogram(pixels: np.ndarray) -> np.ndarray:
    """Pixel count per grey level.

    Counting one level over and over is slow (each count waits for the one before), and most of
    a canvas or a clean scan is one level: where most pixels share the first one's, they are
    counted at once and only the rest one by one.
    """
    level = int(pixels[0, 0])
    others = pixels != level
    if 2 * np.count_nonzero(others) > others.size:
        return cv2.calcHist([pixels], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    histogram = np.bincount(pixels[others], minlength=256)
    histogram[level] += others.size - int(histogram.sum())
    return histogram


def _look(
    image: np.ndarray, histogram: np.ndarray, search: InkSearch
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The ink table, the ink and its box in `image`, looked for as keenly as `search` says."""
    table = _ink_table(image, histogram, search)
    ink = cv2.LUT(image, table)
    return table, ink, _ink_box(ink)


def _on_sheet(gray: np.ndarray, box: tuple[int, int, int, int], factor: int) -> np.ndarray:
    """The part of the image within a sheet's box (measured on a copy reduced by `factor`),
    a little in from its edges, where the sheet's own edge and shadow would read as ink."""
    top, bottom = (min(side * factor, gray.shape[0]) for side in box[:2])
    left, right = (min(side * factor, gray.shape[1]) for side in box[2:])
    inset_rows, inset_cols = (
        round(extent * SHEET_INSET) for extent in (bottom - top, right - left)
    )
    return gray[top + inset_rows : bottom - inset_rows, left + inset_cols : right - inset_cols]


def _is_light_block(ink: np.ndarray, table: np.ndarray) -> bool:
    """Whether the ink in its box is light "ink" that fills it: likely a sheet of paper lighter
    than the desk it lies on (or a bar, the one letter that fills its box)."""
    return bool(table[255] > table[0] and (ink >= BOX_THRESHOLD).mean() >= SHEET_FILL)


def _is_empty_sheet(block: np.ndarray, table: np.ndarray, image_side: int) -> bool:
    """Whether a light block with no marks is an empty sheet: a good share of the image, no bar,
    and solid at full size too (on the first look's copy a small bold letter blurs into one)."""
    height, width = block.shape
    if max(height, width) < SHEET_MIN_SHARE * image_side:
        return False
    if max(height, width) > SHEET_MAX_ASPECT * min(height, width):
        return False
    ink = cv2.LUT(block, table)
    return _is_light_block(ink, table) and _holes(ink >= SHEET_LEVEL).mean() < SHEET_MARKS


def _holes(mask: np.ndarray) -> np.ndarray:
    """What the mask encloses: the pixels outside it that no 4-connected path joins to the edge."""
    outside = np.pad(~mask, 1, constant_values=True).view(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 0, flags=4)
    return outside[1:-1, 1:-1].view(bool)


def _unevenly_lit(small: np.ndarray, histogram: np.ndarray) -> bool:
    """Whether dark ink lies on paper lit unevenly: a phone photo's falloff, a hard shadow.

    A grey closing takes dark strokes away and an opening light ones: the ink is light where
    the closing leaves a much rougher image than the opening; otherwise the closing is the paper.
    """
    if _one_level_dominates(histogram) or _paper_window(small.shape) < 3:
        return False
    paper = _morphology(small, cv2.MORPH_CLOSE)
    low, high = np.percentile(paper, LIGHTING_SPREAD_PERCENTILES)
    if high - low < LIGHTING_MIN_SPREAD:
        return False
    light_ink_paper = _morphology(small, cv2.MORPH_OPEN)
    return _variation(paper) <= LIGHT_INK_ROUGHNESS * _variation(light_ink_paper)


def _morphology(pixels: np.ndarray, *operations: int) -> np.ndarray:
    """Grey closings or openings over the paper window, in turn, on the image padded once.

    Padding for each step anew would bend a shadow's edge where it meets the image's, and
    leave a wedge of false ink there.
    """
    window = _paper_window(pixels.shape)
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (window, window))
    result = cv2.copyMakeBorder(pixels, *[window] * 4, cv2.BORDER_REPLICATE)
    for operation in operations:
        result = cv2.morphologyEx(result, operation, square)
    return result[window:-window, window:-window]


def _paper_window(size: tuple[int, int]) -> int:
    """Odd side of the square that takes strokes off the paper: a share of the longer side."""
    return 2 * round(max(size) * PAPER_WINDOW / 2) + 1


def _variation(pixels: np.ndarray) -> int:
    """Total variation: the sum of differences between neighbours along rows and columns."""
    values = pixels.astype(np.int32)
    return int(np.abs(np.diff(values, axis=0)).sum() + np.abs(np.diff(values, axis=1)).sum())


def _divide_lighting(gray: np.ndarray) -> np.ndarray:
    """Grey levels relative to the local paper brightness, so paper is white everywhere."""
    factor = math.ceil(max(gray.shape) / LIGHTING_MAX_SIDE)
    # The opening takes back where the closing filled a narrow strip of shadow.
    paper = _morphology(_reduce(gray, factor), cv2.MORPH_CLOSE, cv2.MORPH_OPEN)
    if factor > 1:
        paper = cv2.resize(paper, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    return cv2.divide(gray, np.maximum(paper, 1), scale=255)


def _ink_table(small: np.ndarray, histogram: np.ndarray, search: InkSearch) -> np.ndarray:
    """Lookup table grey level -> ink 0..255, from the paper level, the ink level and the noise.

    Paper is the median; ink is whichever extreme lies further from it (so either polarity);
    levels within a few noise sigmas of the paper count as paper.
    """
    counts = np.cumsum(histogram)
    fractions = np.array((0.5, search.extreme_fraction, 1.0 - search.extreme_fraction))
    paper, darkest, lightest = np.searchsorted(counts, fractions * counts[-1]).tolist()
    dark_ink = paper - darkest > lightest - paper
    contrast = paper - darkest if dark_ink else lightest - paper
    # When 3/4 of the pixels share one level, at least half of all neighbour pairs are equal:
    # the median difference, and so the noise estimate, is zero without computing it.
    sigma = 0.0 if _one_level_dominates(histogram) else _noise_sigma(small)
    if contrast < max(search.min_contrast, search.min_snr * sigma):
        raise BlankImageError()
    floor = NOISE_FLOOR_SIGMAS * sigma
    strength = (paper - LEVELS) if dark_ink else (LEVELS - paper)
    return np.clip(np.rint((strength - floor) * (255.0 / (contrast - floor))), 0, 255).astype(
        np.uint8
    )


def _one_level_dominates(histogram: np.ndarray) -> bool:
    """Whether three quarters of the pixels share one grey level (a canvas, a clean scan)."""
    return bool(histogram.max() * 4 >= histogram.sum() * 3)


def _noise_sigma(pixels: np.ndarray) -> float:
    """Gaussian noise sigma from the median absolute difference of horizontal neighbours."""
    if pixels.shape[1] < 2:
        return 0.0
    counts = np.cumsum(_histogram(cv2.absdiff(pixels[:, 1:], pixels[:, :-1])))
    return float(np.searchsorted(counts, counts[-1] / 2)) / MAD_DIFF_PER_SIGMA


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """Top, bottom, left, right (exclusive) of the letter's ink: without background reaching in
    from the image's edge, specks detached at the edges, or a box drawn around the letter."""
    mask = _without_border_background(ink >= BOX_THRESHOLD)
    if not mask.any():
        raise BlankImageError()
    top, bottom, left, right = _main_box(mask)
    inside = _inside_frame(mask[top:bottom, left:right])
    if inside is None:
        return top, bottom, left, right
    inner_top, inner_bottom, inner_left, inner_right = inside
    return top + inner_top, top + inner_bottom, left + inner_left, left + inner_right


def _main_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Top, bottom, left, right (exclusive) of the ink that is not an outlying speck."""
    pixels = mask.view(np.uint8)
    rows, cols = (cv2.reduce(pixels, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S) for axis in (1, 0))
    top, bottom = _main_span(rows.ravel())
    left, right = _main_span(cols.ravel())
    return top, bottom, left, right


def _without_border_background(mask: np.ndarray) -> np.ndarray:
    """The ink less what reaches in from the image's edge along much of it (the desk around a
    photographed sheet); a letter touches the edge, if at all, along a stroke's width."""
    edge = np.concatenate((mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]))
    if edge.mean() < BORDER_BACKGROUND:
        return mask
    reached = np.zeros_like(mask)
    for side in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):
        reached[side] = mask[side]
    for _ in range(MAX_REACH_PASSES):
        grown = _whole_runs(_whole_runs(reached, mask).T, mask.T).T
        if np.array_equal(grown, reached):
            break
        reached = grown
    return mask & ~reached


def _whole_runs(reached: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Every run of `mask` along a row that holds a pixel of `reached`, whole."""
    starts = mask.copy()
    starts[:, 1:] &= ~mask[:, :-1]
    run = np.cumsum(starts, axis=None).reshape(mask.shape)
    hit = np.zeros(int(run[-1, -1]) + 1, dtype=bool)
    hit[run[reached]] = True
    return mask & hit[run]


def _inside_frame(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box of the ink inside a frame drawn around it, or None where there is no frame.

    A form's field box inks nearly all of each of its four sides; no letter does (the bar of a
    T, the side of an E or the two of an H ink one or two), and a letter drawn as a box would
    enclose nothing.
    """
    depths = []
    for edge in (mask, mask[::-1], mask.T, mask.T[::-1]):  # top, bottom, left, right
        depth = _frame_side_depth(edge)
        if depth is None:
            return None
        depths.append(depth)
    top, bottom, left, right = depths
    inside = mask[top : mask.shape[0] - bottom, left : mask.shape[1] - right]
    if not inside.any():
        return None
    inner_top, inner_bottom, inner_left, inner_right = _main_box(inside)
    return top + inner_top, top + inner_bottom, left + inner_left, left + inner_right


def _frame_side_depth(mask: np.ndarray) -> int | None:
    """Rows from the first to the gap after a frame's side along the first row; None if none."""
    band = mask[: max(2, round(mask.shape[0] * FRAME_BAND))]
    # Rows inked so far cover the most at the band's end: where too little, there is no side.
    if band.any(axis=0).mean() < FRAME_FILL:
        return None
    covered = np.logical_or.accumulate(band, axis=0).mean(axis=1) >= FRAME_FILL
    if not covered.any():
        return None
    side_ends = int(np.argmax(covered))
    gaps = np.flatnonzero(band[side_ends:].mean(axis=1) <= FRAME_GAP_FILL)
    return side_ends + int(gaps[0]) if gaps.size else None


def _main_span(profile: np.ndarray) -> tuple[int, int]:
    """First and past-last index of the runs of ink that are not outlying specks."""
    filled = np.flatnonzero(profile)
    if filled[-1] - filled[0] + 1 == len(filled):
        return int(filled[0]), int(filled[-1]) + 1
    gaps = np.flatnonzero(np.diff(filled) > 1)
    starts = np.concatenate(([filled[0]], filled[gaps + 1]))
    ends = np.concatenate((filled[gaps], [filled[-1]])) + 1
    masses = np.add.reduceat(profile, starts)
    kept = masses >= SPECK_MASS_FRACTION * masses.sum()
    if not kept.any():
        kept = masses == masses.max()
    return int(starts[np.argmax(kept)]), int(ends[len(kept) - 1 - np.argmax(kept[::-1])])


def _even_strokes(ink: np.ndarray) -> tuple[np.ndarray, bool, bool]:
    """Ink with its stroke width in EMNIST's range, whether it still needs EMNIST's blur, and
    whether it was drawn as an even pen line (thinner than nearly all of EMNIST's strokes, or
    of one width all along).

    Strokes already in range keep their grey levels: binarizing them cost accuracy. A thin pen
    line is grown to EMNIST's typical width; a stroke fatter than nearly all of EMNIST's is
    eroded, its centre line kept so that no thin part disappears. Grown, eroded or crisp-edged
    ink is blurred as EMNIST blurred its scans; ink with soft edges already is not.
    """
    border = MAX_DILATION + 1
    pixels = cv2.copyMakeBorder(ink, *[border] * 4, cv2.BORDER_CONSTANT, value=0)
    peak = int(ink.max())
    mask = _at_least(pixels, max(peak // 2, 1))
    area = cv2.countNonZero(mask)
    if not area:
        raise BlankImageError()
    boundary = _boundary(mask, area)
    width, extent = 2.0 * area / boundary, max(cv2.boundingRect(mask)[2:])
    low, high = (value / LETTER_SIDE * extent for value in STROKE_RANGE)
    if width < low:
        target = THIN_STROKE_TARGET / LETTER_SIDE
        radius = round((target * extent - width) / (2 * (1 - target)))
        return _by_disc(cv2.dilate, mask, min(radius, MAX_DILATION)), True, True
    if width > high:
        # Eroding by r narrows strokes by 2r and the letter by 2r: solve for the target ratio.
        target = FAT_STROKE_TARGET / LETTER_SIDE
        radius = round((width - target * extent) / (2 * (1 - target)))
        thinned = _by_disc(cv2.erode, mask, radius) | skeleton(mask > 0) * np.uint8(255)
        return thinned if thinned.any() else mask, True, False
    edge = np.count_nonzero((pixels > peak * 0.05) & (pixels < peak * 0.95))
    return pixels, edge < SOFT_EDGE * boundary, _drawn_evenly(mask)


def _drawn_evenly(mask: np.ndarray) -> bool:
    """Whether the strokes keep one width all along, as a canvas pen draws them."""
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    ridge = distance[(distance >= cv2.dilate(distance, SQUARE)) & (mask > 0)]
    ridge = ridge[ridge >= np.percentile(ridge, RIDGE_ENDS_PERCENT)]
    return bool(ridge.std() <= EVEN_STROKE_VARIATION * ridge.mean())


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel centre line of a binary shape, connectivity kept.

    Takes one (H, W) mask or a stack (..., H, W); training thins whole batches with it.
    """
    grid = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)]).astype(np.uint8)
    inside = grid[..., 1:-1, 1:-1]
    removed = True
    while removed:
        removed = False
        for removable in THINNING_TABLES:
            code = (
                grid[..., :-2, 1:-1]
                | grid[..., :-2, 2:] << 1
                | grid[..., 1:-1, 2:] << 2
                | grid[..., 2:, 2:] << 3
                | grid[..., 2:, 1:-1] << 4
                | grid[..., 2:, :-2] << 5
                | grid[..., 1:-1, :-2] << 6
                | grid[..., :-2, :-2] << 7
            )
            remove = (inside == 1) & removable[code]
            if remove.any():
                inside[remove] = 0
                removed = True
    return inside.astype(bool)


def _at_least(pixels: np.ndarray, level: int) -> np.ndarray:
    """The mask (0 or 255) of pixels at `level` or above."""
    return cv2.threshold(pixels, level - 1, 255, cv2.THRESH_BINARY)[1]


def _boundary(mask: np.ndarray, area: int) -> int:
    """Ink pixels with a 4-neighbour that is not ink: a band of width w and length l has 2l."""
    return max(area - cv2.countNonZero(cv2.erode(mask, CROSS)), 1)


def _by_disc(operation: Callable[..., np.ndarray], mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate or erode by `radius` pixels, approximating a disc by alternating 3x3 square and
    cross steps; as the steps commute, the squares are taken as one square and then the crosses."""
    squares = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * ((radius + 1) // 2) + 1,) * 2)
    return operation(operation(mask, squares), CROSS, iterations=radius // 2)


def _render(pixels: np.ndarray, blur: bool) -> np.ndarray:
    """Centre the ink's box in a square with EMNIST's border, downsample to 28x28, blur if asked.

    The box is that of the ink above half its peak, the level strokes are measured at.
    """
    left, top, width, height = cv2.boundingRect(_at_least(pixels, max(int(pixels.max()) // 2, 1)))
    side = round(max(width, height) * EMNIST_SIDE / LETTER_SIDE)
    square_top, square_left = top + (height - side) // 2, left + (width - side) // 2
    pads = (
        max(-square_top, 0),
        max(square_top + side - pixels.shape[0], 0),
        max(-square_left, 0),
        max(square_left + side - pixels.shape[1], 0),
    )
    framed = cv2.copyMakeBorder(pixels, *pads, cv2.BORDER_CONSTANT, value=0)
    square_top, square_left = square_top + pads[0], square_left + pads[2]
    square = framed[square_top : square_top + side, square_left : square_left + side]
    small = _resize(square, (EMNIST_SIDE, EMNIST_SIDE))
    if blur:
        small = cv2.GaussianBlur(small, (5, 5), BLUR_SIGMA)
    return cv2.convertScaleAbs(small, alpha=255.0 / max(int(small.max()), 1))
