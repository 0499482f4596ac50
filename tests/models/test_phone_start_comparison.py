"""Phone network comparisons (models/training/phone_start_comparison.py): the two-network ensemble averages the
candidate's and the shipped network's logits photo by photo and keeps the candidate itself beside it."""

from __future__ import annotations

import numpy as np

from models.training.phone_start_comparison import with_shipped_averages


def test_each_candidate_is_kept_and_averaged_with_the_shipped_network() -> None:
    shipped = np.array([[2.0, 0.0], [0.0, 4.0]])
    larger_input = np.array([[0.0, 2.0], [2.0, 2.0]])
    networks = with_shipped_averages({"larger_input": larger_input}, shipped)
    assert list(networks) == ["larger_input", "larger_input+shipped"]
    np.testing.assert_array_equal(networks["larger_input"], larger_input)
    np.testing.assert_array_equal(networks["larger_input+shipped"], [[1.0, 1.0], [1.0, 3.0]])
