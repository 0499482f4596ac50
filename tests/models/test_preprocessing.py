"""One preprocessing function for training, evaluation and serving: they agree to the byte."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.serving.inference import Classifier
from models.serving.preprocessing import INPUT_SIZE, prepare_image, to_model_input
from models.training.data import Sample, image_path, load_prepared_images
from shared.images import decode_image
from shared.labels import PhotoKind


def test_training_loader_and_serving_decode_give_identical_inputs(data_dir: Path, samples: list[Sample]) -> None:
    chosen = samples[:: len(samples) // 12][:12]
    training_inputs = load_prepared_images(data_dir, chosen)  # what training and evaluation use
    for sample, training_input in zip(chosen, training_inputs, strict=True):
        served = prepare_image(decode_image(image_path(data_dir, sample).read_bytes()))  # what the worker uses
        assert served.shape == (INPUT_SIZE, INPUT_SIZE, 3) and served.dtype == np.uint8
        assert np.array_equal(served, training_input), sample.image_id


def test_classifier_scores_what_prepare_image_produces(
    data_dir: Path, samples: list[Sample], classifier: Classifier
) -> None:
    path = image_path(data_dir, samples[0])
    prepared = prepare_image(Image.open(path))
    from_images = classifier.classify_images([Image.open(path)], [PhotoKind.DERMOSCOPIC])[0]
    from_prepared = classifier.classify_prepared([prepared], [PhotoKind.DERMOSCOPIC])[0]
    assert from_images == from_prepared
    assert np.array_equal(to_model_input([prepared])[0], prepared.astype(np.float32))


@pytest.mark.training
def test_litert_and_keras_runtimes_agree(data_dir: Path, samples: list[Sample], classifier: Classifier) -> None:
    prepared = load_prepared_images(data_dir, samples[:8])
    keras_classifier = Classifier(runtime="keras")
    litert = Classifier(runtime="litert")
    for kind in PhotoKind:
        litert_logits, keras_logits = litert.logits(prepared, kind), keras_classifier.logits(prepared, kind)
        np.testing.assert_allclose(litert_logits, keras_logits, atol=1e-3, rtol=1e-3)
        assert (litert_logits.argmax(1) == keras_logits.argmax(1)).all()
    litert_pictures = litert.picture_probabilities(prepared)
    np.testing.assert_allclose(litert_pictures, keras_classifier.picture_probabilities(prepared), atol=1e-3)


def test_exif_orientation_is_applied() -> None:
    wide = Image.new("RGB", (160, 80), (200, 120, 100))
    wide.paste((20, 20, 20), (0, 0, 80, 80))  # dark left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    prepared = prepare_image(decode_image(buffer.getvalue()))
    # Displayed upright the photo is tall, and its dark half is on top.
    assert prepared[: INPUT_SIZE // 2 - 10].mean() < 60
    assert prepared[INPUT_SIZE // 2 + 10 :].mean() > 100


def test_greyscale_cmyk_and_alpha_become_rgb() -> None:
    for image in (
        Image.new("L", (100, 100), 128),
        Image.new("CMYK", (100, 100), (0, 50, 50, 0)),
        Image.new("RGBA", (100, 100), (255, 0, 0, 0)),
        Image.new("P", (100, 100), 3),
    ):
        prepared = prepare_image(image)
        assert prepared.shape == (INPUT_SIZE, INPUT_SIZE, 3), image.mode
    transparent = prepare_image(Image.new("RGBA", (100, 100), (255, 0, 0, 0)))
    assert (transparent == 255).all(), "transparent pixels are composited on white"
