"""Any drawn, photographed or scanned character image -> the input an EMNIST-trained model expects.

The model only ever saw EMNIST (Cohen et al. 2017): white strokes on black, cropped to the ink,
centred in a square with a small border, downsampled with antialiasing to 28x28. Every path that
feeds a model goes through here, so user images are decoded safely, ink is separated from paper,
stroke width is brought into EMNIST's range and the result is shaped by the model's `InputSpec`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyspng
from PIL import ExifTags, Image, ImageChops, ImageFilter, UnidentifiedImageError
from scipy import ndimage

from ml.artifact import InputSpec

DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_FRAMES = 100
# Phone photos with several pictures (MPO) are opened through the JPEG plugin.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# How files of the accepted formats begin (WebP's RIFF header also names "WEBP" at byte 8).
IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
WEBP_SIGNATURE = b"WEBP"
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

# PNGs in these modes are decoded by libspng (pyspng), three times faster than Pillow on canvas
# exports; Pillow keeps animations, those with a tRNS chunk (transparency libspng would not
# apply) and those with chunks that may carry an orientation Pillow applies: EXIF, or XMP and
# raw EXIF profiles in text chunks. (A false match inside compressed pixels only costs time.)
FAST_PNG_MODES = ("L", "RGB", "RGBA")
PNG_ORIENTATION_CHUNKS = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")

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
# its sides in from its edges.
SHEET_FILL = 0.85
SHEET_MARKS = 0.01
SHEET_INSET = 0.03
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
# Dilation never goes beyond this many working pixels.
MAX_DILATION = 8


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


def _gaussian_kernel(sigma: float) -> ImageFilter.Kernel:
    """A 5x5 Gaussian as one Pillow convolution: cheap on a 28x28 image."""
    taps = np.exp(-(np.arange(-2, 3) ** 2) / (2 * sigma**2))
    weights = np.outer(taps, taps) / np.outer(taps, taps).sum()
    return ImageFilter.Kernel((5, 5), weights.ravel().tolist(), scale=1)


BLUR_KERNEL = _gaussian_kernel(BLUR_SIGMA)


class PreprocessError(ValueError):
    """An image that cannot become a model input; `.message` is a short sentence for the user."""

    default_message = "The image could not be prepared for the model."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class NotAnImageError(PreprocessError):
    """Bytes (or an array) that none of the accepted image decoders recognise."""

    default_message = "The file is not a PNG, JPEG, BMP, GIF, TIFF or WebP image."


class TruncatedImageError(PreprocessError):
    """A recognised image whose data ends early or is corrupt."""

    default_message = "The image file is truncated or damaged."


class BlankImageError(PreprocessError):
    """Nothing stands out from the paper by more than its noise: there is no letter to read."""

    default_message = "No ink found: the image is blank."


class ImageTooLargeError(PreprocessError):
    """Declared size above the pixel limit, refused before any pixel is decoded."""

    default_message = "The image has too many pixels."


class TooManyFramesError(PreprocessError):
    """An animation with more frames than allowed: a cheap file that is costly to walk."""

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
    return _shape_for_model(array_to_letter(array), spec)


def array_to_letter(array: np.ndarray) -> np.ndarray:
    """An already decoded image -> the upright white-on-black 28x28 uint8 letter, not normalized.

    bench.robustness frames pen lines with this, exactly as canvas letters are framed.
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
    if _is_fast_png(image, data, frames):
        return _reduce_to(_flatten(_decode_png(data, image.mode)), DECODE_MAX_SIDE)
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
        if data.startswith(IMAGE_SIGNATURES) or data[8:12] == WEBP_SIGNATURE:
            raise TruncatedImageError() from error
        raise NotAnImageError() from error
    # A header can be damaged in ways Pillow's parsers report with assorted exception types.
    except Exception as error:
        raise TruncatedImageError() from error


def _is_fast_png(image: Image.Image, data: bytes, frames: int) -> bool:
    """Whether libspng decodes this PNG to the pixels Pillow would (if Pillow reads it)."""
    return (
        image.format == "PNG"
        and image.mode in FAST_PNG_MODES
        and frames == 1
        and "transparency" not in image.info
        and not any(chunk in data for chunk in PNG_ORIENTATION_CHUNKS)
    )


def _decode_png(data: bytes, mode: str) -> Image.Image:
    """All pixels of a PNG in `mode` (16-bit samples reduced to 8, as Pillow does)."""
    try:
        pixels = pyspng.load(data, format=mode)
    except RuntimeError as error:
        raise TruncatedImageError() from error
    return Image.fromarray(pixels, mode=mode)


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
    if image.mode == "RGBA":
        return _composite(image.convert("L"), image.getchannel("A"))
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return _composite(*image.convert("LA").split())
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


def _composite(gray: Image.Image, alpha: Image.Image) -> Image.Image:
    """Transparent pixels -> the background that contrasts with what is opaque.

    A canvas export is a dark (or light) pen on nothing: compositing onto white (or black) keeps
    the stroke whatever colour the transparent pixels carry.
    """
    if alpha.getextrema()[0] == 255:
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
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number)):
        raise NotAnImageError(f"The array holds {array.dtype} values, not pixels.")
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
    """Separate ink from paper, crop to it, even out the stroke and draw it as EMNIST did.

    Levels and the letter's box come from a small copy (or, before the image is called blank,
    from all of it); the crop is taken at full resolution.
    """
    gray, table, factor, (top, bottom, left, right) = _find_ink(gray)
    crop = gray.crop(
        (
            max(left - factor, 0),
            max(top - factor, 0),
            min(right + factor, gray.width),
            min(bottom + factor, gray.height),
        )
    )
    scale = WORK_SCALE * LETTER_SIDE / max(right - left, bottom - top)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    # The table is linear between paper and full ink (clipped beyond), so it may follow the
    # resize, which then works on grey levels and the table on far fewer pixels.
    ink = table[np.asarray(crop.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))]
    return _render(*_even_strokes(ink))


def _find_ink(
    gray: Image.Image, on_sheet: bool = False
) -> tuple[Image.Image, np.ndarray, int, tuple[int, int, int, int]]:
    """The image (evened for lighting, or the sheet in it), its ink table, the reduction used,
    and the ink's box.

    All of it is measured on a copy reduced by a whole factor to FIRST_LOOK_SIDE, unless that
    finds no ink: then the ink is looked for again in the whole image. Where the "ink" found
    is a sheet lighter than its desk, all of this is done anew on the sheet, its lighting too.
    """
    factor = math.ceil(max(gray.size) / FIRST_LOOK_SIDE)
    small = gray.reduce(factor) if factor > 1 else gray
    histogram = small.histogram()
    if _unevenly_lit(small, histogram):
        gray = _divide_lighting(gray)
        small = gray.reduce(factor) if factor > 1 else gray
        histogram = small.histogram()
    try:
        table, ink, (top, bottom, left, right) = _look(small, histogram, FIRST_LOOK)
    except BlankImageError:
        table, _, (top, bottom, left, right) = _look(gray, gray.histogram(), SECOND_LOOK)
        if max(bottom - top, right - left) < MIN_LETTER_FRACTION * max(gray.size):
            raise
        return gray, table, 1, (top, bottom, left, right)
    if not on_sheet and _is_sheet(ink[top:bottom, left:right], table):
        return _find_ink(_on_sheet(gray, (top, bottom, left, right), factor), on_sheet=True)
    return gray, table, factor, (top * factor, bottom * factor, left * factor, right * factor)


def _look(
    image: Image.Image, histogram: list[int], search: InkSearch
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The ink table, the ink and its box in `image`, looked for as keenly as `search` says."""
    table = _ink_table(image, histogram, search)
    ink = table[np.asarray(image)]
    return table, ink, _ink_box(ink)


def _on_sheet(gray: Image.Image, box: tuple[int, int, int, int], factor: int) -> Image.Image:
    """The part of the image within a sheet's box (measured on a copy reduced by `factor`),
    a little in from its edges, where the sheet's own edge and shadow would read as ink."""
    top, bottom = (min(side * factor, gray.height) for side in box[:2])
    left, right = (min(side * factor, gray.width) for side in box[2:])
    inset_rows, inset_cols = (
        round(extent * SHEET_INSET) for extent in (bottom - top, right - left)
    )
    return gray.crop((left + inset_cols, top + inset_rows, right - inset_cols, bottom - inset_rows))


def _is_sheet(ink: np.ndarray, table: np.ndarray) -> bool:
    """Whether the ink in its box is a sheet of paper lighter than the desk it lies on: light
    "ink" that fills its box and encloses darker marks (a letter filling its box is a bar)."""
    light_ink = table[255] > table[0]
    if not light_ink or (ink >= BOX_THRESHOLD).mean() < SHEET_FILL:
        return False
    sheet = ink >= SHEET_LEVEL
    return bool((ndimage.binary_fill_holes(sheet) & ~sheet).mean() >= SHEET_MARKS)


def _unevenly_lit(small: Image.Image, histogram: list[int]) -> bool:
    """Whether dark ink lies on paper lit unevenly: a phone photo's falloff, a hard shadow.

    A grey closing takes dark strokes away and an opening light ones: the ink is light where
    the closing leaves a much rougher image than the opening; otherwise the closing is the paper.
    """
    if _one_level_dominates(histogram) or _paper_window(small.size) < 3:
        return False
    pixels = np.asarray(small)
    paper = _morphology(pixels, ndimage.grey_closing)
    low, high = np.percentile(paper, LIGHTING_SPREAD_PERCENTILES)
    if high - low < LIGHTING_MIN_SPREAD:
        return False
    light_ink_paper = _morphology(pixels, ndimage.grey_opening)
    return _variation(paper) <= LIGHT_INK_ROUGHNESS * _variation(light_ink_paper)


def _morphology(pixels: np.ndarray, *operations: Callable[..., np.ndarray]) -> np.ndarray:
    """Grey closings or openings over the paper window, in turn, on the image padded once.

    Padding for each step anew would bend a shadow's edge where it meets the image's, and
    leave a wedge of false ink there.
    """
    window = _paper_window(pixels.shape)
    result = np.pad(pixels, window, mode="edge")
    for operation in operations:
        result = operation(result, size=window)
    return result[window:-window, window:-window]


def _paper_window(size: tuple[int, int]) -> int:
    """Odd side of the square that takes strokes off the paper: a share of the longer side."""
    return 2 * round(max(size) * PAPER_WINDOW / 2) + 1


def _variation(pixels: np.ndarray) -> int:
    """Total variation: the sum of differences between neighbours along rows and columns."""
    values = pixels.astype(np.int32)
    return int(np.abs(np.diff(values, axis=0)).sum() + np.abs(np.diff(values, axis=1)).sum())


def _divide_lighting(gray: Image.Image) -> Image.Image:
    """Grey levels relative to the local paper brightness, so paper is white everywhere."""
    pixels = np.asarray(gray)
    factor = math.ceil(max(gray.size) / LIGHTING_MAX_SIDE)
    reduced = np.asarray(gray.reduce(factor)) if factor > 1 else pixels
    # The opening takes back where the closing filled a narrow strip of shadow.
    paper = _morphology(reduced, ndimage.grey_closing, ndimage.grey_opening)
    if factor > 1:
        paper = np.asarray(Image.fromarray(paper).resize(gray.size, Image.Resampling.BILINEAR))
    paper = np.maximum(paper, 1).astype(np.float32)
    flat = pixels.astype(np.float32) * (255.0 / paper)
    return Image.fromarray(np.clip(np.rint(flat), 0, 255).astype(np.uint8), mode="L")


def _ink_table(small: Image.Image, histogram: list[int], search: InkSearch) -> np.ndarray:
    """Lookup table grey level -> ink 0..255, from the paper level, the ink level and the noise.

    Paper is the median; ink is whichever extreme lies further from it (so either polarity);
    levels within a few noise sigmas of the paper count as paper.
    """
    counts = np.cumsum(histogram)
    total = int(counts[-1])
    paper, darkest, lightest = (
        int(np.searchsorted(counts, fraction * total))
        for fraction in (0.5, search.extreme_fraction, 1.0 - search.extreme_fraction)
    )
    dark_ink = paper - darkest > lightest - paper
    contrast = paper - darkest if dark_ink else lightest - paper
    # When 3/4 of the pixels share one level, at least half of all neighbour pairs are equal:
    # the median difference, and so the noise estimate, is zero without computing it.
    sigma = 0.0 if _one_level_dominates(histogram) else _noise_sigma(small)
    if contrast < max(search.min_contrast, search.min_snr * sigma):
        raise BlankImageError()
    floor = NOISE_FLOOR_SIGMAS * sigma
    levels = np.arange(256, dtype=np.float32)
    strength = (paper - levels) if dark_ink else (levels - paper)
    ink = np.clip((strength - floor) * (255.0 / (contrast - floor)), 0, 255)
    return np.rint(ink).astype(np.uint8)


def _one_level_dominates(histogram: list[int]) -> bool:
    """Whether three quarters of the pixels share one grey level (a canvas, a clean scan)."""
    return max(histogram) * 4 >= sum(histogram) * 3


def _noise_sigma(image: Image.Image) -> float:
    """Gaussian noise sigma from the median absolute difference of horizontal neighbours."""
    if image.width < 2:
        return 0.0
    differences = ImageChops.difference(
        image.crop((1, 0, image.width, image.height)),
        image.crop((0, 0, image.width - 1, image.height)),
    )
    counts = np.cumsum(differences.histogram())
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
    top, bottom = _main_span(mask.sum(axis=1))
    left, right = _main_span(mask.sum(axis=0))
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


def _even_strokes(ink: np.ndarray) -> tuple[np.ndarray, bool]:
    """Ink with its stroke width in EMNIST's range, and whether it still needs EMNIST's blur.

    Strokes already in range keep their grey levels: binarizing them cost accuracy. A thin pen
    line is grown to EMNIST's typical width; a stroke fatter than nearly all of EMNIST's is
    eroded, its centre line kept so that no thin part disappears. Grown, eroded or crisp-edged
    ink is blurred as EMNIST blurred its scans; ink with soft edges already is not.
    """
    border = MAX_DILATION + 1
    pixels = np.zeros((ink.shape[0] + 2 * border, ink.shape[1] + 2 * border), dtype=np.uint8)
    pixels[border:-border, border:-border] = ink
    peak = int(ink.max())
    mask = pixels >= max(peak // 2, 1)
    if not mask.any():
        raise BlankImageError()
    area, boundary = int(mask.sum()), _boundary(mask)
    width, extent = 2.0 * area / boundary, _extent(mask)
    low, high = (value / LETTER_SIDE * extent for value in STROKE_RANGE)
    if width < low:
        target = THIN_STROKE_TARGET / LETTER_SIDE
        radius = round((target * extent - width) / (2 * (1 - target)))
        return _dilate(mask, min(radius, MAX_DILATION)).view(np.uint8) * np.uint8(255), True
    if width > high:
        # Eroding by r narrows strokes by 2r and the letter by 2r: solve for the target ratio.
        target = FAT_STROKE_TARGET / LETTER_SIDE
        radius = round((width - target * extent) / (2 * (1 - target)))
        thinned = ~_dilate(~mask, radius) | skeleton(mask)
        return (thinned if thinned.any() else mask).view(np.uint8) * np.uint8(255), True
    edge = np.count_nonzero((pixels > peak * 0.05) & (pixels < peak * 0.95))
    return pixels, edge < SOFT_EDGE * boundary


def _extent(mask: np.ndarray) -> int:
    """The longer side of the ink's bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0])) + 1


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


def _boundary(mask: np.ndarray) -> int:
    """Ink pixels with a 4-neighbour that is not ink: a band of width w and length l has 2l."""
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return max(int(mask.sum()) - int(inner.sum()), 1)


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


def _render(pixels: np.ndarray, blur: bool) -> np.ndarray:
    """Centre the ink's box in a square with EMNIST's border, downsample to 28x28, blur if asked.

    The box is that of the ink above half its peak, the level strokes are measured at.
    """
    mask = pixels >= max(int(pixels.max()) // 2, 1)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(right - left, bottom - top) * EMNIST_SIDE / LETTER_SIDE
    x, y = (left + right - side) / 2, (top + bottom - side) / 2
    region = (math.floor(x), math.floor(y), math.ceil(x + side), math.ceil(y + side))
    box = (x - region[0], y - region[1], x - region[0] + side, y - region[1] + side)
    image = Image.fromarray(pixels, mode="L").crop(region)
    small = image.resize((EMNIST_SIDE, EMNIST_SIDE), Image.Resampling.BICUBIC, box=box)
    result = np.asarray(small.filter(BLUR_KERNEL) if blur else small, dtype=np.float32)
    return np.rint(result * (255.0 / max(float(result.max()), 1.0))).astype(np.uint8)
