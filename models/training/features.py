"""The ImageNet feature extractor: the ported MobileNetV3-Small, frozen, cut before its classifier.

Its pooled features drive what must work on any picture, lesion or not: the not-a-lesion gate, the
photo-kind decision, and the phone-photo head. Frozen ImageNet features generalise to phone photos
better than features fine-tuned on dermoscopy (measured: see the model card), and they cost one
backbone pass per photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EMBEDDING_SIZE = 1024


def build_feature_model(imagenet_weights: Path) -> Any:
    """Keras model: image (N, 224, 224, 3) float32 in [0, 255] -> embedding (N, 1024)."""
    import keras

    from models.training.port import build_imagenet_mobilenet_v3_small, pre_logits

    imagenet = build_imagenet_mobilenet_v3_small(imagenet_weights)
    embedding = keras.layers.Flatten(name="embedding")(pre_logits(imagenet))
    return keras.Model(imagenet.input, embedding, name="imagenet_features")
