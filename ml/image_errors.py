"""Why an image cannot become a model input: one exception per reason, each with a sentence a
person understands, which the service passes on as the item's error."""

from __future__ import annotations


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


class ImageTooComplexError(PreprocessError):
    """A file whose structure would make its decoder spend seconds or gigabytes on a few bytes:
    a progressive JPEG with thousands of scans, metadata that points at one blob many times."""

    default_message = "The image file's structure is too costly to decode."
