"""The Keras port of the ImageNet MobileNetV3-Small agrees with the TFLite interpreter it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

skimage_data = pytest.importorskip("skimage.data")

# Real photos that scikit-image ships, with an unambiguous main object.
PHOTOS = ("chelsea", "coffee", "rocket")


def _tflite_top1(weights: Path, pixels: np.ndarray) -> int:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(weights))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[None].astype(np.uint8))
    interpreter.invoke()
    return int(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].argmax())


@pytest.mark.training
def test_keras_port_matches_tflite_top1_on_real_photos(imagenet_weights: Path) -> None:
    from models.training.port import build_imagenet_mobilenet_v3_small

    model = build_imagenet_mobilenet_v3_small(imagenet_weights)
    for name in PHOTOS:
        pixels = np.asarray(Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((224, 224)))
        keras_probabilities = model.predict(pixels[None].astype(np.float32), verbose=0)[0]
        assert keras_probabilities.shape == (1001,)
        assert keras_probabilities.max() > 0.1, f"{name}: the port is not confident about anything"
        assert int(keras_probabilities.argmax()) == _tflite_top1(imagenet_weights, pixels), name


def test_tflite_file_has_the_54_convolutions_the_port_maps(imagenet_weights: Path) -> None:
    from models.training.port import read_tflite_convolutions

    convolutions = read_tflite_convolutions(imagenet_weights)
    assert len(convolutions) == 54
    kinds = {kind for kind, _, _ in convolutions}
    assert kinds == {"CONV_2D", "DEPTHWISE_CONV_2D"}
