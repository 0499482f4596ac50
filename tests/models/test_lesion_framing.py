"""The lesion-centred framing (models/training/framing.py; issue 19, item 4). At test time
(models/training/view_comparison.py) the crop centres on the spot and zooms in. In training a phone photo's
lesion box is found once, and with ``phone_lesion_crop_probability`` 1 every training view of the photo is
taken from that box (the spot fills more of the view); with 0 the whole photo trains, as in the shipped runs."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from models.training.framing import lesion_box, square_box
from models.training.train import TrainConfig, TrainingImage, _phone_lesion_boxes, training_batches
from models.training.view_comparison import lesion_crop

SKIN, SPOT = (222, 180, 150), (90, 55, 40)


def _skin_photo_with_spot(centre: tuple[int, int], radius: int) -> Image.Image:
    photo = Image.new("RGB", (300, 300), SKIN)
    x, y = centre
    ImageDraw.Draw(photo).ellipse((x - radius, y - radius, x + radius, y + radius), fill=SPOT)
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
    crop, found = lesion_crop(Image.new("RGB", (300, 300), SKIN))
    assert not found
    assert crop.shape == (224, 224, 3)


def test_a_square_box_stays_inside_the_photo() -> None:
    assert square_box((300, 200), (0.9, 0.1), 0.5) == (150.0, 0.0, 300.0, 100.0)
    assert square_box((300, 300), (0.5, 0.5), 1.0) == (0.0, 0.0, 300.0, 300.0)


def test_the_lesion_box_surrounds_the_spot_with_skin_and_none_is_found_on_plain_skin() -> None:
    box = lesion_box(_skin_photo_with_spot((170, 130), 20))
    assert box is not None
    left, top, right, bottom = box
    assert left < 150 and right > 190 and top < 110 and bottom > 150  # the whole spot is inside
    assert abs((right - left) - (bottom - top)) < 1e-9 and right - left >= 150  # a square of at least half the photo
    assert lesion_box(Image.new("RGB", (300, 300), SKIN)) is None


def _config(probability: float) -> TrainConfig:
    return TrainConfig(
        data_dir="",
        imagenet_weights="",
        run_dir="",
        batch_size=8,
        loader_threads=1,
        phone_lesion_crop_probability=probability,
    )


def _spot_share(batch: np.ndarray) -> float:
    """The share of the views' pixels that are the dark spot."""
    return float((batch.mean(axis=-1) < 140).mean())


def test_training_views_are_framed_on_the_lesion_only_as_often_as_asked() -> None:
    sources = [_skin_photo_with_spot((200, 100), 20), Image.new("RGB", (300, 300), SKIN)]
    items = [TrainingImage(0, 5, "phone")] * 8 + [TrainingImage(1, 4, "phone")]
    weights = {label: 1.0 for label in range(7)}
    assert _phone_lesion_boxes(sources, items, _config(0.0)) == {}
    boxes = _phone_lesion_boxes(sources, items, _config(1.0))
    assert list(boxes) == [0]  # plain skin has no spot, so it always trains whole
    whole, _, _ = training_batches(sources, items, weights, _config(0.0), boxes)[0]
    framed, _, _ = training_batches(sources, items, weights, _config(1.0), boxes)[0]
    # The spot covers about 1.4 % of the whole photo and at least three times that in its lesion box.
    assert _spot_share(framed) > 3 * _spot_share(whole) > 0
