"""Starting a training run from another lesion network (models/training/warm_start.py, ``train.py --init-from``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.serving.inference import ARTIFACT_DIR
from models.training.train import build_classifier
from models.training.warm_start import copy_weights, load_source_network, start_from

DERMOSCOPIC = ARTIFACT_DIR / "dermoscopic.keras"


@pytest.mark.training
def test_a_run_started_from_the_dermoscopy_network_carries_the_chosen_members_weights(imagenet_weights: Path) -> None:
    with pytest.raises(ValueError, match="choose one"):  # two averaged runs: which one must be said
        load_source_network(DERMOSCOPIC, member=None)
    with pytest.raises(ValueError, match="no member 2"):
        load_source_network(DERMOSCOPIC, member=2)
    model = build_classifier(imagenet_weights, dropout=0.3)
    imagenet_head = model.get_layer("lesion_logits").get_weights()[0].copy()
    copied = start_from(model, DERMOSCOPIC, member=1)
    member = load_source_network(DERMOSCOPIC, member=1)
    assert copied == sum(1 for layer in model.layers if layer.get_weights())
    for ours, theirs in zip(model.get_weights(), member.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(model.get_layer("lesion_logits").get_weights()[0], imagenet_head)


@pytest.mark.training
def test_weights_are_refused_from_a_network_of_another_shape() -> None:
    import keras

    def network(width: int) -> keras.Model:
        image = keras.Input((8,))
        return keras.Model(image, keras.layers.Dense(width, name="lesion_logits")(image))

    with pytest.raises(ValueError, match="lesion_logits"):
        copy_weights(network(5), network(7))
