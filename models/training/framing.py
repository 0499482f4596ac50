"""Square framings of a photo: a centred crop and a lesion-centred crop (issue 19, item 4).

The lesion-centred crop finds the spot as the server does (models/serving/spot_change.py, on the prepared
224-pixel photo), widens its box ``LESION_MARGIN`` times and to at least ``LESION_LEAST_SIDE`` of the photo,
and keeps the square inside the photo. It is used at test time (models/training/view_comparison.py) and, with
``TrainConfig.phone_lesion_crop_probability``, to frame whole phone photos on their lesion in training.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.serving.preprocessing import prepare_image
from models.serving.spot_change import segment_spot

LESION_MARGIN = 1.6  # the lesion crop's side, in times the spot's larger side
LESION_LEAST_SIDE = 0.5  # of the photo's side: a tiny spot still keeps some skin around it
Box = tuple[float, float, float, float]  # left, top, right, bottom, in pixels of the photo


def square_box(size: tuple[int, int], centre: tuple[float, float], side: float) -> Box:
    """The square of ``side`` (a share of the photo's sides) around ``centre`` (shares), kept inside the photo."""
    width, height = size
    x, y = (min(max(c, side / 2), 1 - side / 2) for c in centre)
    return (x - side / 2) * width, (y - side / 2) * height, (x + side / 2) * width, (y + side / 2) * height


def lesion_box(image: Image.Image) -> Box | None:
    """The lesion-centred square of a photo, or None where no spot is found."""
    prepared = prepare_image(image)
    found = segment_spot(prepared)
    if found is None:
        return None
    rows, columns = np.nonzero(found[0])
    side_rows, side_columns = prepared.shape[:2]
    centre = ((columns.min() + columns.max() + 1) / 2 / side_columns, (rows.min() + rows.max() + 1) / 2 / side_rows)
    spot = max((rows.max() - rows.min() + 1) / side_rows, (columns.max() - columns.min() + 1) / side_columns)
    return square_box(image.size, centre, min(1.0, max(LESION_LEAST_SIDE, float(spot) * LESION_MARGIN)))
