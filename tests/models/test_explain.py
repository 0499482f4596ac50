"""The explanation picture: a class activation map of the served network, drawn over the photo."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from models.serving.explain import CHART_WIDTH, PANEL, explanation_picture, heat_colours
from models.serving.inference import ARTIFACT_DIR, Classifier
from models.serving.preprocessing import prepare_image, to_model_input
from models.serving.screening import screen_photo
from models.training.data import Sample, image_path
from models.training.validation_data import validation_samples
from shared.labels import PhotoKind


@pytest.fixture(scope="module")
def validation(data_dir: Path) -> list[Sample]:
    return validation_samples(data_dir, ARTIFACT_DIR)


def test_the_shipped_head_is_the_served_networks_head(
    classifier: Classifier, data_dir: Path, validation: list[Sample]
) -> None:
    """Logits recomputed from the served feature map with the shipped head weights equal the served logits:
    the map is explained with the weights that made the result."""
    for kind in PhotoKind:
        for sample in validation[:3]:
            prepared = prepare_image(Image.open(image_path(data_dir, sample)))
            logits, feature_maps = classifier._networks[kind].run_with_feature_maps(to_model_input(prepared))
            assert feature_maps is not None and feature_maps.shape[1:3] == (7, 7)
            recomputed = classifier.explanation_heads[kind].logits(feature_maps[0])
            np.testing.assert_allclose(recomputed, logits[0], atol=1e-3)


def lesion_moved_to_corner(photo: Image.Image) -> Image.Image:
    """The photo's central half (where HAM10000 centres the lesion) pasted into the top-left corner of a canvas
    of the skin's colour (the median of the photo's border)."""
    pixels = np.asarray(photo.convert("RGB"))
    height, width = pixels.shape[:2]
    border = np.concatenate([pixels[:10].reshape(-1, 3), pixels[-10:].reshape(-1, 3)])
    canvas = np.empty_like(pixels)
    canvas[:] = np.median(border, axis=0).astype(np.uint8)
    centre = pixels[height // 4 : height // 4 + height // 2, width // 4 : width // 4 + width // 2]
    canvas[: centre.shape[0], : centre.shape[1]] = centre
    return Image.fromarray(canvas)


def test_heat_map_follows_a_lesion_moved_to_a_corner(
    classifier: Classifier, data_dir: Path, validation: list[Sample]
) -> None:
    kind = PhotoKind.DERMOSCOPIC
    for sample in validation[:10]:
        prepared = prepare_image(lesion_moved_to_corner(Image.open(image_path(data_dir, sample))))
        probabilities = classifier.probabilities(classifier.network_logits(prepared[None], kind), [kind])[0]
        activation = classifier.activation_map(prepared, kind, int(np.argmax(probabilities)))
        assert activation.shape == (7, 7) and activation.max() == pytest.approx(1.0)
        quadrants = {
            "top left": activation[:4, :4].mean(),
            "top right": activation[:4, 3:].mean(),
            "bottom left": activation[3:, :4].mean(),
            "bottom right": activation[3:, 3:].mean(),
        }
        assert max(quadrants, key=quadrants.__getitem__) == "top left", (sample.image_id, quadrants)
        row, column = np.unravel_index(int(np.argmax(activation)), activation.shape)
        assert row <= 3 and column <= 3, (sample.image_id, activation.round(2))


def test_explanation_picture_of_each_kind_is_a_jpeg_of_the_expected_size(
    classifier: Classifier, data_dir: Path, phone_data_root: Path, validation: list[Sample]
) -> None:
    photos = {
        "dermoscopic": image_path(data_dir, validation[0]).read_bytes(),
        "phone": sorted((phone_data_root / "pad_ufes" / "images").glob("*.jpg"))[0].read_bytes(),
    }
    for data in photos.values():
        prediction = screen_photo(data, classifier)
        picture = explanation_picture(data, classifier, prediction.to_dict()["ranking"], prediction.photo_kind)
        with Image.open(io.BytesIO(picture)) as image:
            assert image.format == "JPEG"
            assert image.size == (PANEL + CHART_WIDTH, PANEL)
            # The heat map is drawn: the photo panel differs from the plain photo in the same place.
            drawn = np.asarray(image.convert("RGB").crop((0, 0, PANEL, PANEL)), dtype=float)
        plain_photo = ImageOps.contain(Image.open(io.BytesIO(data)).convert("RGB"), (PANEL, PANEL))
        plain = Image.new("RGB", (PANEL, PANEL), (255, 255, 255))
        plain.paste(plain_photo, ((PANEL - plain_photo.width) // 2, (PANEL - plain_photo.height) // 2))
        assert np.abs(drawn - np.asarray(plain, dtype=float)).mean() > 5


def test_heat_colours_run_from_cool_to_warm() -> None:
    colours = heat_colours(np.array([0.0, 0.5, 1.0])).astype(int)
    assert colours[0, 2] > colours[0, 0]  # weak: blue
    assert colours[2, 0] > colours[2, 2]  # strong: red


def test_the_feature_map_kept_from_the_analysis_draws_the_same_picture(
    classifier: Classifier, data_dir: Path, phone_data_root: Path, validation: list[Sample]
) -> None:
    """The worker draws the picture from the feature map of the photo's analysis (the network runs once per
    photo): the same picture as a fresh run of the network gives, for each kind of photo."""
    photos = [
        image_path(data_dir, validation[1]).read_bytes(),
        sorted((phone_data_root / "pad_ufes" / "images").glob("*.jpg"))[1].read_bytes(),
    ]
    kinds = set()
    for data in photos:
        prediction = screen_photo(data, classifier)
        kinds.add(prediction.photo_kind)
        assert prediction.feature_map is not None and prediction.feature_map.shape[:2] == (7, 7)
        ranking = prediction.to_dict()["ranking"]
        kept = explanation_picture(data, classifier, ranking, prediction.photo_kind, prediction.feature_map)
        assert kept == explanation_picture(data, classifier, ranking, prediction.photo_kind)
    assert kinds == set(PhotoKind), "one photo of each kind"


@pytest.mark.training
def test_the_second_network_built_in_a_process_exports_its_feature_map(imagenet_weights: Path) -> None:
    """The recipe trains six networks in one process, and Keras numbers the unnamed pooling layer of each new one
    (``global_average_pooling2d_5``): the export finds the last feature map by position, for any of them, and
    the head's weights turn that map back into the network's logits."""
    from models.training.export import explainable_network
    from models.training.train import build_classifier

    build_classifier(imagenet_weights, dropout=0.3)
    second = build_classifier(imagenet_weights, dropout=0.3)
    assert "global_average_pooling2d" not in {layer.name for layer in second.layers}  # the case that broke
    network, head = explainable_network(second)
    image = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    logits, feature_map = network(image)
    assert feature_map.shape == (1, 7, 7, 576)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(second(image)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.logits(np.asarray(feature_map)[0]), np.asarray(logits)[0], atol=1e-4)
