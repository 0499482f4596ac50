"""The test-time views compared for issue 19 (models/training/view_comparison.py): the orientations are the
square's 8 symmetries, the first four the server's own flips, and the lesion crop centres on the spot."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from models.serving.inference import VIEWS
from models.training.view_comparison import FLIPS, ORIENTATIONS, _oriented, lesion_crop


def test_the_eight_orientations_are_distinct_and_the_first_four_are_the_servers_flips() -> None:
    batch = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.float32)
    views = {orientation: _oriented(batch, orientation) for orientation in ORIENTATIONS}
    assert len({view.tobytes() for view in views.values()}) == 8
    served = ("identity", "flip_left_right", "flip_up_down", "rotate_180")
    for ours, theirs in zip(FLIPS, served, strict=True):
        np.testing.assert_array_equal(views[ours], VIEWS[theirs](batch))
    # A transpose then a left-right flip is a quarter turn.
    np.testing.assert_array_equal(views["transposed_left_right"], np.rot90(batch, k=-1, axes=(1, 2)))


def _skin_photo_with_spot(centre: tuple[int, int], radius: int) -> Image.Image:
    photo = Image.new("RGB", (300, 300), (222, 180, 150))
    x, y = centre
    ImageDraw.Draw(photo).ellipse((x - radius, y - radius, x + radius, y + radius), fill=(90, 55, 40))
    return photo


def test_the_lesion_crop_is_centred_on_the_spot_and_zooms_in() -> None:
    crop, found = lesion_crop(_skin_photo_with_spot((170, 130), 30))
    assert found
    dark = crop.mean(axis=2) < 140
    rows, columns = np.nonzero(dark)
    size = crop.shape[0]
    # The spot fills the middle of the crop (centre within a tenth of the side) and looks larger than in the
    # whole photo (60 of 300 pixels across, a fifth of the side).
    assert abs(rows.mean() - size / 2) < size / 10 and abs(columns.mean() - size / 2) < size / 10
    assert (columns.max() - columns.min()) / size > 0.3


def test_a_photo_without_a_spot_keeps_its_whole_frame() -> None:
    crop, found = lesion_crop(Image.new("RGB", (300, 300), (222, 180, 150)))
    assert not found
    assert crop.shape == (224, 224, 3)
