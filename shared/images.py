"""Decoding untrusted photos: every way a file can fail becomes an UnreadableImage with a clear reason."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

# Telegram's own limit for bots downloading files is 20 MB; ours is lower: a lesion photo never needs
# more, and it keeps worker memory bounded.
MAX_FILE_BYTES = 10 * 1024 * 1024
# 50 megapixels is far beyond any phone camera; anything above is treated as a decompression bomb.
MAX_PIXELS = 50_000_000
MIN_SIDE = 64
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "MPO", "HEIF"})
# HEIC/HEIF (iPhones' photos, sent as files) are ISO media files whose first box is "ftyp" with one of these brands.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def _register_heif() -> bool:
    """Teach Pillow HEIC/HEIF through pillow-heif (libheif), where it is installed; False where it is not."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIF_READABLE = _register_heif()


def is_heif(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


class UnreadableImage(Exception):
    """A file we cannot classify; ``code`` is stable (for the audit trail and user texts), ``reason`` is prose."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def decode_image(data: bytes) -> Image.Image:
    """Fully decode ``data`` into a loaded PIL image, or raise UnreadableImage."""
    if not data:
        raise UnreadableImage("empty", "the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise UnreadableImage("too_large", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    if not HEIF_READABLE and is_heif(data):
        raise UnreadableImage("unsupported_format", "a HEIC/HEIF photo, and no HEIF decoder is installed here")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise UnreadableImage(
                    "unsupported_format", f"{image.format} images are not supported; send a JPEG or PNG photo"
                )
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UnreadableImage("too_many_pixels", f"the image is {width}x{height} pixels, more than we accept")
            image.load()
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage("too_many_pixels", "the image has far too many pixels to be a photo") from error
    except UnidentifiedImageError as error:
        raise UnreadableImage("not_an_image", "the file is not an image we can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage("corrupt", "the image is damaged or incomplete (truncated)") from error
    if min(width, height) < MIN_SIDE:
        raise UnreadableImage(
            "too_small", f"the image is only {width}x{height} pixels; we need at least {MIN_SIDE} pixels on each side"
        )
    return image
