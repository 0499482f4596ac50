"""One photo, from the bytes a patient sent to a prediction or a refusal: the single path that the worker
and ``skinsense classify`` share, so the bot and the command line can never disagree about a file.

The gates run before the model's answer is used, cheapest first: the file (shared.images), then light
(too dark, too bright), then the picture head (not a lesion, lesion too small in the frame; else the
photo's kind), then focus, with the kind's own sharpness floor (dermoscopy is softer than phone photos).
"""

from __future__ import annotations

import numpy as np

from models.inference import PICTURE_CLASSES, Classifier, Prediction
from models.preprocessing import prepare_image
from models.quality import measure_quality
from shared.answers import PatientAnswers
from shared.images import UnreadableImage, decode_image
from shared.labels import PhotoKind

_NOT_A_LESION = PICTURE_CLASSES.index("not_a_lesion")
_TOO_SMALL = PICTURE_CLASSES.index("lesion_too_small")
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
    refusing = max((_NOT_A_LESION, _TOO_SMALL), key=lambda index: picture[index])
    if picture[refusing] >= gates.refusal_probability:
        if refusing == _NOT_A_LESION:
            raise UnreadableImage("not_a_lesion", f"no skin lesion found (p={picture[refusing]:.2f})")
        raise UnreadableImage("lesion_too_small", f"the lesion is too small in the frame (p={picture[refusing]:.2f})")
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
