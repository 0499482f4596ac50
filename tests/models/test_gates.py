"""The gates before the model: each kind of refusal on generated and sample pictures, real lesion photos of
each kind pass with their kind, and the bot's path and ``skinsense classify`` are one function."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image, ImageFilter

from models.serving.inference import Classifier
from models.serving.screening import screen_photo
from models.training.augment import phone_style
from models.training.data import Sample, image_path
from models.training.negatives import _document, _plain_skin, _screenshot
from models.training.pad_ufes import PhoneSample
from models.training.validation_data import validation_samples
from shared.images import UnreadableImage
from shared.labels import PhotoKind


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def refusal_code(data: bytes, classifier: Classifier) -> str | None:
    try:
        screen_photo(data, classifier)
    except UnreadableImage as refusal:
        return refusal.code
    return None


@pytest.fixture(scope="module")
def phone_photos(phone_samples: list[PhoneSample]) -> list[PhoneSample]:
    return [s for s in phone_samples if not s.is_crop][::40]


def test_pictures_that_are_not_lesions_are_refused(classifier: Classifier) -> None:
    rng = random.Random(12345)  # other pictures than the picture head was fitted on
    pictures = {
        "document": _document(rng),
        "screenshot": _screenshot(rng),
        "plain skin": _plain_skin(rng),
        "cat": Image.open(Path(skimage.__file__).parent / "data" / "chelsea.png"),
        "coffee": Image.open(Path(skimage.__file__).parent / "data" / "coffee.png"),
        "noise": Image.fromarray(np.random.default_rng(3).integers(0, 256, (400, 400, 3), dtype=np.uint8)),
    }
    for name, picture in pictures.items():
        assert refusal_code(jpeg(picture), classifier) == "not_a_lesion", name


def test_dark_and_washed_out_photos_get_light_advice(classifier: Classifier, phone_photos: list[PhoneSample]) -> None:
    photo = np.asarray(Image.open(phone_photos[0].path).convert("RGB")).astype(np.float32)
    dark = Image.fromarray((photo * 0.12).astype(np.uint8))
    washed_out = Image.fromarray(np.clip(photo * 2.5 + 60, 0, 255).astype(np.uint8))
    assert refusal_code(jpeg(dark), classifier) == "too_dark"
    assert refusal_code(jpeg(washed_out), classifier) == "too_bright"


def test_blurred_phone_photo_is_refused_as_blurred(classifier: Classifier, phone_photos: list[PhoneSample]) -> None:
    codes = [
        refusal_code(jpeg(Image.open(s.path).convert("RGB").filter(ImageFilter.GaussianBlur(5))), classifier)
        for s in phone_photos
    ]
    assert codes.count("blurry") >= len(codes) - 1, codes


def test_lesion_far_away_in_the_frame_is_refused_as_too_small(
    classifier: Classifier, phone_photos: list[PhoneSample]
) -> None:
    rng = np.random.default_rng(7)
    codes = [
        refusal_code(jpeg(phone_style(Image.open(s.path).convert("RGB"), rng, (6.0, 8.0))), classifier)
        for s in phone_photos
    ]
    assert codes.count("lesion_too_small") >= len(codes) - 1, codes


def test_real_lesion_photos_of_each_kind_pass_with_their_kind(
    classifier: Classifier, data_dir: Path, phone_photos: list[PhoneSample]
) -> None:
    """With their kind, or of uncertain kind (both networks: tests/models/test_kind_routing.py)."""
    dermoscopic = [image_path(data_dir, s) for s in validation_samples(data_dir)[::200]]
    for paths, kind in ((dermoscopic, PhotoKind.DERMOSCOPIC), ([s.path for s in phone_photos], PhotoKind.CLINICAL)):
        outcomes: list[str] = []
        for path in paths:
            try:
                prediction = screen_photo(path.read_bytes(), classifier)
                outcomes.append("uncertain" if prediction.photo_kind_uncertain else prediction.photo_kind)
            except UnreadableImage as refusal:
                outcomes.append(refusal.code)
        assert outcomes.count(kind) + outcomes.count("uncertain") >= len(outcomes) - 1, (kind, outcomes)
        assert outcomes.count(kind) > len(outcomes) / 2, (kind, outcomes)


def test_classify_and_the_worker_give_the_same_answer_for_the_same_file(
    classifier: Classifier, data_dir: Path, samples: list[Sample], phone_photos: list[PhoneSample], tmp_path: Path
) -> None:
    document = tmp_path / "document.jpg"
    document.write_bytes(jpeg(_document(random.Random(99))))
    files = [image_path(data_dir, samples[3]), phone_photos[1].path, document]
    completed = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "classify", "--json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    for path, record in zip(files, records, strict=True):
        try:
            expected = screen_photo(path.read_bytes(), classifier).to_dict()  # what the worker calls
        except UnreadableImage as refusal:
            expected = {"error": refusal.reason, "code": refusal.code}
        assert record == {"image": str(path), **expected}
    assert records[2]["code"] == "not_a_lesion"
    assert {records[0]["photo_kind"], records[1]["photo_kind"]} == {"dermoscopic", "clinical"}
