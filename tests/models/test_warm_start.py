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


@pytest.mark.training
def test_the_second_network_built_in_a_process_exports_its_feature_map(imagenet_weights: Path) -> None:
    """The recipe trains six networks in one process, and Keras numbers the unnamed pooling layer of each new one
    (``global_average_pooling2d_5``): the export finds the last feature map by position, for any of them."""
    from models.training.export import explainable_network

    build_classifier(imagenet_weights, dropout=0.3)
    second = build_classifier(imagenet_weights, dropout=0.3)
    assert "global_average_pooling2d" not in {layer.name for layer in second.layers}  # the case that broke
    network, head = explainable_network(second)
    image = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    logits, feature_map = network(image)
    assert feature_map.shape == (1, 7, 7, 576)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(second(image)), rtol=1e-5, atol=1e-5)
    assert head.logits_kernels.shape == (1, 1024, 7)
