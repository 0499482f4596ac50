"""Comparing two photos of one spot: the same photo twice is no change, a spot grown or darkened on a real phone
photo is called LARGER or DARKER, a picture with no spot is refused, and a damaged file fails as elsewhere."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.serving.preprocessing import prepare_image
from models.serving.spot_change import (
    SIZE_RATIO_LIMIT,
    SpotChangeKind,
    SpotMeasures,
    SpotNotFound,
    compare_spots,
    measure_spot,
)
from shared.images import UnreadableImage, decode_image
from tests.auxil.spot_changes import darkened_spot, enlarged_spot, png


@pytest.fixture(scope="module")
def small_spot_path(phone_data_root: Path) -> Path:
    """A PAD-UFES-20 phone photo whose spot is measured, near the centre and small enough to grow beyond
    SIZE_RATIO_LIMIT inside the photo; chosen by its measures, not hard-coded."""
    for path in sorted((phone_data_root / "pad_ufes" / "images").glob("*.jpg")):
        try:
            spot = measure_spot(prepare_image(decode_image(path.read_bytes())))
        except SpotNotFound:
            continue
        ys, xs = np.nonzero(spot.mask)
        central = abs(ys.mean() / spot.mask.shape[0] - 0.5) < 0.15 and abs(xs.mean() / spot.mask.shape[1] - 0.5) < 0.15
        if central and 0.01 <= spot.share <= 0.04:
            return path
    pytest.fail("no PAD-UFES-20 photo with a small central spot")


@pytest.fixture(scope="module")
def small_spot_photo(small_spot_path: Path) -> np.ndarray:
    """That photo prepared (uint8, 224x224x3), to be changed synthetically."""
    return prepare_image(decode_image(small_spot_path.read_bytes()))


def jpeg(image: Image.Image, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif if exif is not None else Image.Exif())
    return buffer.getvalue()


def test_the_same_photo_twice_is_no_clear_change(small_spot_path: Path) -> None:
    photo = small_spot_path.read_bytes()
    comparison = compare_spots(photo, photo)
    assert comparison.comparable and comparison.no_clear_change, comparison
    assert comparison.size_ratio == pytest.approx(1.0)
    assert comparison.darkening == pytest.approx(0.0)
    assert comparison.colour_shift == pytest.approx(0.0)


def test_a_photo_sent_sideways_with_its_exif_orientation_is_the_same_spot(small_spot_photo: np.ndarray) -> None:
    """The phone's EXIF orientation is applied, as for every photo: a rotated file that says so is no change."""
    upright = Image.fromarray(small_spot_photo)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    sideways = jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif)
    comparison = compare_spots(jpeg(upright), sideways)
    assert comparison.no_clear_change, comparison


def test_a_spot_grown_well_beyond_retake_spread_is_called_larger(small_spot_photo: np.ndarray) -> None:
    grown = enlarged_spot(small_spot_photo, area_factor=2 * SIZE_RATIO_LIMIT)
    comparison = compare_spots(png(small_spot_photo), png(grown))
    assert comparison.comparable, comparison.reason
    assert SpotChangeKind.LARGER in comparison.changes, comparison
    assert SpotChangeKind.DARKER not in comparison.changes
    # And the other way round: the grown spot's earlier photo makes the original smaller.
    assert SpotChangeKind.SMALLER in compare_spots(png(grown), png(small_spot_photo)).changes


def test_a_spot_darkened_by_20_lightness_units_is_called_darker(small_spot_photo: np.ndarray) -> None:
    comparison = compare_spots(png(small_spot_photo), png(darkened_spot(small_spot_photo, lightness=20.0)))
    assert comparison.comparable, comparison.reason
    assert comparison.changes == (SpotChangeKind.DARKER,), comparison
    assert comparison.darkening is not None and comparison.darkening > 15


def test_a_growth_of_thirty_percent_is_not_claimed(small_spot_photo: np.ndarray) -> None:
    """Below the spread of two unchanged photos a size change is not called either way (the model card says so)."""
    comparison = compare_spots(png(small_spot_photo), png(enlarged_spot(small_spot_photo, area_factor=1.3)))
    assert comparison.comparable and SpotChangeKind.LARGER not in comparison.changes, comparison


@pytest.mark.parametrize(
    "picture",
    [
        pytest.param(np.full((224, 224, 3), (196, 150, 128), np.uint8), id="flat skin colour"),
        pytest.param(np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8), id="colour noise"),
        pytest.param(
            np.repeat(np.random.default_rng(2).integers(0, 256, (300, 300, 1), dtype=np.uint8), 3, axis=2),
            id="grey noise",
        ),
        pytest.param(np.tile(np.linspace(30, 230, 224, dtype=np.uint8)[None, :, None], (224, 1, 3)), id="gradient"),
    ],
)
def test_a_picture_without_a_spot_is_refused_not_compared(picture: np.ndarray, small_spot_photo: np.ndarray) -> None:
    for earlier, later, which in ((picture, small_spot_photo, "earlier"), (small_spot_photo, picture, "later")):
        comparison = compare_spots(png(earlier), png(later))
        assert not comparison.comparable
        assert comparison.reason is not None and comparison.reason.startswith(f"in the {which} photo")
        assert comparison.size_ratio is None and comparison.darkening is None and comparison.changes == ()


def test_photos_in_very_different_light_are_refused(small_spot_photo: np.ndarray) -> None:
    blue_light = np.clip(small_spot_photo * np.array([0.45, 0.6, 1.3]), 0, 255).astype(np.uint8)
    comparison = compare_spots(png(small_spot_photo), png(blue_light))
    assert not comparison.comparable
    assert comparison.reason == "the light or the skin differs too much between the two photos"


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        pytest.param(lambda data: data[: len(data) // 2], "corrupt", id="truncated"),
        pytest.param(lambda data: b"not a photo at all" * 10, "not_an_image", id="not an image"),
        pytest.param(lambda data: b"", "empty", id="empty"),
    ],
)
def test_a_damaged_file_raises_unreadable_image_as_everywhere(damage: Callable[[bytes], bytes], code: str) -> None:
    photo = jpeg(Image.new("RGB", (256, 256), (196, 150, 128)))
    with pytest.raises(UnreadableImage) as raised:
        compare_spots(photo, damage(photo))
    assert raised.value.code == code


def test_measures_describe_the_spot_relative_to_its_skin(small_spot_photo: np.ndarray) -> None:
    spot = measure_spot(small_spot_photo)
    assert isinstance(spot, SpotMeasures)
    assert spot.mask.shape == small_spot_photo.shape[:2] and spot.mask.dtype == bool
    assert spot.share == pytest.approx(float(spot.mask.mean()))
    assert np.linalg.norm(spot.contrast) > 6 and spot.ring_pixels > 0
