"""Untrusted files: every failure is an UnreadableImage with a stable code and a clear reason."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from shared.images import MAX_FILE_BYTES, UnreadableImage, decode_image


def encoded(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: the classic decompression bomb shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image", "not_an_image"),
        (encoded(Image.new("RGB", (300, 300), (180, 120, 100)))[:400], "corrupt"),
        (encoded(Image.new("RGB", (1, 1))), "too_small"),
        (png_header_only(30_000, 30_000), "too_many_pixels"),
        (b"\xff" * (MAX_FILE_BYTES + 1), "too_large"),
        (encoded(Image.new("RGB", (100, 100)), "GIF"), "unsupported_format"),
    ],
)
def test_bad_files_are_refused_with_a_reason(content: bytes, code: str) -> None:
    with pytest.raises(UnreadableImage) as caught:
        decode_image(content)
    assert caught.value.code == code
    assert caught.value.reason


def test_good_photo_decodes_fully() -> None:
    image = decode_image(encoded(Image.new("RGB", (320, 240), (180, 120, 100))))
    assert image.size == (320, 240)
