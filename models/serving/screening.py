"""One photo, from the bytes a patient sent to a prediction or a refusal: the single path that the worker
and ``skinsense classify`` share, so the bot and the command line can never disagree about a file.

The gates run before the model's answer is used, cheapest first: the file (shared.images), then light
(too dark, too bright), then the picture head (not a lesion, lesion too small in the frame, blurred;
else the photo's kind), then a sharpness floor per kind for what the head lets through.
"""

from __future__ import annotations

import numpy as np

from models.serving.inference import PICTURE_CLASSES, REFUSING_PICTURES, Classifier, Prediction
from models.serving.preprocessing import prepare_image
from models.serving.quality import measure_quality
from shared.answers import PatientAnswers
from shared.images import UnreadableImage, decode_image
from shared.labels import PhotoKind

_REFUSING = {PICTURE_CLASSES.index(name): name for name in REFUSING_PICTURES}
_REASONS = {
    "not_a_lesion": "no skin lesion found",
    "lesion_too_small": "the lesion is too small in the frame",
    "blurry": "the photo is out of focus",
}
_DERMOSCOPIC = PICTURE_CLASSES.index("dermoscopic")
_CLINICAL = PICTURE_CLASSES.index("clinical")


def gate_prepared(prepared: np.ndarray, classifier: Classifier) -> tuple[PhotoKind, np.ndarray]:
    """The photo's kind and ImageNet embedding, or UnreadableImage with the first gate that refuses it."""
    gates = classifier.metadata.gates
    quality = measure_quality(prepared)
    if quality.brightness < gates.min_brightness:
        raise UnreadableImage("too_dark", f"the photo is too dark (mean brightness {quality.brightness:.0f} of 255)")
    if quality.brightness > gates.max_brightness or quality.saturated_share > gates.max_saturated_share:
        raise UnreadableImage("too_bright", f"the photo is washed out ({quality.saturated_share:.0%} blown to white)")
    embedding = classifier.embeddings([prepared])
    picture = classifier.picture_head.probabilities(embedding)[0]
    refusing = max(_REFUSING, key=lambda index: picture[index])
    if picture[refusing] >= gates.refusal_probability:
        code = _REFUSING[refusing]
        raise UnreadableImage(code, f"{_REASONS[code]} (p={picture[refusing]:.2f})")
    kind = PhotoKind.DERMOSCOPIC if picture[_DERMOSCOPIC] >= picture[_CLINICAL] else PhotoKind.CLINICAL
    if quality.sharpness < classifier.metadata.kinds[kind].min_sharpness:
        raise UnreadableImage("blurry", f"the photo is out of focus (sharpness {quality.sharpness:.1f})")
    return kind, embedding


def screen_prepared(prepared: np.ndarray, classifier: Classifier, answers: PatientAnswers | None = None) -> Prediction:
    """Gate and classify one prepared image (uint8, 224x224x3), with the patient's answers where known."""
    kind, embedding = gate_prepared(prepared, classifier)
    return classifier.classify_prepared([prepared], [kind], [answers], embedding)[0]


def screen_photo(data: bytes, classifier: Classifier, answers: PatientAnswers | None = None) -> Prediction:
    """Decode, gate and classify one photo; raises UnreadableImage (a stable code and a reason) on refusal."""
    return screen_prepared(prepare_image(decode_image(data)), classifier, answers)
