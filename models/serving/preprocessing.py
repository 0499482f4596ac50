"""The one preprocessing step shared by training, evaluation and serving.

Kept free of TensorFlow so that serving can import it cheaply. The model itself carries the
normalisation (Keras' MobileNetV3 rescales [0, 255] to [-1, 1] in its first layer), so what the
model receives is the RGB photo resized to INPUT_SIZE x INPUT_SIZE, as float32 values in [0, 255].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

INPUT_SIZE = 224
RESAMPLING = Image.Resampling.BILINEAR
PREPROCESSING_DESCRIPTION = (
    "EXIF orientation applied; converted to RGB; resized to 224x224 (PIL bilinear, aspect not kept); "
    "uint8 values fed as float32 in [0, 255]; the model rescales to [-1, 1] itself"
)


def prepare_image(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """Return the model input for one photo: uint8 array of shape (size, size, 3); the served networks take
    INPUT_SIZE, a larger ``size`` is for training experiments (models/training/train.py ``input_size``)."""
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        # Alpha is composited on white rather than dropped, so transparent areas do not turn black.
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        image = image.convert("RGB")
    resized = image.resize((size, size), RESAMPLING)
    return np.asarray(resized, dtype=np.uint8)


def to_model_input(prepared: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack prepared images into the float32 batch the model takes."""
    return np.asarray(prepared, dtype=np.float32).reshape(-1, INPUT_SIZE, INPUT_SIZE, 3)
