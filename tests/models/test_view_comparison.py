"""The test-time views compared for issue 19 (models/training/view_comparison.py): the orientations are the
square's 8 symmetries, the first four the server's own flips. (The lesion crop: test_lesion_framing.py.)"""

from __future__ import annotations

import numpy as np

from models.serving.inference import VIEWS
from models.training.view_comparison import FLIPS, ORIENTATIONS, _oriented


def test_the_eight_orientations_are_distinct_and_the_first_four_are_the_servers_flips() -> None:
    batch = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.float32)
    views = {orientation: _oriented(batch, orientation) for orientation in ORIENTATIONS}
    assert len({view.tobytes() for view in views.values()}) == 8
    served = ("identity", "flip_left_right", "flip_up_down", "rotate_180")
    for ours, theirs in zip(FLIPS, served, strict=True):
        np.testing.assert_array_equal(views[ours], VIEWS[theirs](batch))
    # A transpose then a left-right flip is a quarter turn.
    np.testing.assert_array_equal(views["transposed_left_right"], np.rot90(batch, k=-1, axes=(1, 2)))
