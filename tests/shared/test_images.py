"""Untrusted files: every failure is an UnreadableImage with a stable code and a clear reason."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from shared import images
from shared.audit import MediaKind
from shared.images import MAX_FILE_BYTES, UnreadableImage, decode_image, is_heif
from shared.outcomes import RefusalCode
from shared.texts import patient as patient_texts


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


def test_an_iphone_heic_photo_decodes_like_any_other() -> None:
    image = Image.new("RGB", (320, 240), (180, 120, 100))
    data = encoded(image, "HEIF")
    assert is_heif(data), "an ISO media file of the HEIF family"
    decoded = decode_image(data)
    assert (decoded.format, decoded.size) == ("HEIF", (320, 240))


def test_where_no_heif_decoder_is_installed_a_heic_photo_is_asked_as_a_photo_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Platforms without libheif wheels: the refusal says to send it as a photo (RefusalCode.UNSUPPORTED_FORMAT)."""
    data = encoded(Image.new("RGB", (320, 240), (180, 120, 100)), "HEIF")
    monkeypatch.setattr(images, "HEIF_READABLE", False)
    with pytest.raises(UnreadableImage) as caught:
        decode_image(data)
    assert caught.value.code == "unsupported_format" and "HEIC" in caught.value.reason
    assert "send it as a photo instead" in patient_texts.rejection(
        RefusalCode.UNSUPPORTED_FORMAT, 10, "this HEIC photo"
    )
    assert patient_texts.sent_name(MediaKind.DOCUMENT, "image/heic") == "this HEIC photo"
