"""One photo, from the bytes a patient sent to a prediction or a refusal: the single path that the worker
and ``skinsense classify`` share, so the bot and the command line can never disagree about a file.

The gates run before the model's answer is used, cheapest first: the file (shared.images), then light
(too dark, too bright), then the picture head (not a lesion, lesion too small in the frame, blurred;
else the photo's kind), then a sharpness floor per kind for what the head lets through.

The kind: patients send phone photos, and a phone photo scored by the dermoscopy network is the costliest
routing error (that network misses far more cancers on phone photos). So a photo goes to the dermoscopy
network alone only when the picture head is clearly sure it is dermoscopic, to the phone network alone when it
is clearly not, and in between to both: read by the more likely kind's network, its risk level and melanoma alert
never under the other network's (models/training/kind_routing.py chose the band and measured it on held-out
patients).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.serving.decision import OtherKindResult
from models.serving.inference import PICTURE_CLASSES, REFUSING_PICTURES, Classifier, GateSettings, Prediction
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


@dataclass(frozen=True)
class KindRoute:
    """Which network a photo that passed the gates goes to."""

    kind: PhotoKind  # that network; where uncertain, the kind the picture head finds more likely
    uncertain: bool  # neither clearly phone nor clearly dermoscopy: both networks run (the likelier kind reads it)


def dermoscopic_share(picture: np.ndarray) -> np.ndarray:
    """p(dermoscopic) / (p(dermoscopic) + p(clinical)) of picture-head probabilities (..., 5): the kind alone,
    whatever mass the refusing classes took."""
    dermoscopic, clinical = picture[..., _DERMOSCOPIC], picture[..., _CLINICAL]
    return np.asarray(dermoscopic / np.maximum(dermoscopic + clinical, 1e-12))


def route_kind(share: float, gates: GateSettings) -> KindRoute:
    if share >= gates.dermoscopic_share_at_least:
        return KindRoute(PhotoKind.DERMOSCOPIC, uncertain=False)
    if share < gates.clinical_share_under:
        return KindRoute(PhotoKind.CLINICAL, uncertain=False)
    return KindRoute(PhotoKind.DERMOSCOPIC if share >= 0.5 else PhotoKind.CLINICAL, uncertain=True)


def gate_prepared(prepared: np.ndarray, classifier: Classifier) -> tuple[KindRoute, np.ndarray]:
    """The photo's route and ImageNet embedding, or UnreadableImage with the first gate that refuses it."""
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
    route = route_kind(float(dermoscopic_share(picture)), gates)
    # Of an uncertain photo, refused only when too blurred for either kind: it may be of either.
    kinds = list(PhotoKind) if route.uncertain else [route.kind]
    if quality.sharpness < min(classifier.metadata.kinds[kind].min_sharpness for kind in kinds):
        raise UnreadableImage("blurry", f"the photo is out of focus (sharpness {quality.sharpness:.1f})")
    return route, embedding


def screen_prepared(prepared: np.ndarray, classifier: Classifier, answers: PatientAnswers | None = None) -> Prediction:
    """Gate and classify one prepared image (uint8, 224x224x3), with the patient's answers where known."""
    route, embedding = gate_prepared(prepared, classifier)
    if not route.uncertain:
        return classifier.classify_prepared([prepared], [route.kind], [answers], embedding)[0]
    # Both networks on the photo alone: the more likely kind's reading, never less risky than the other's. Its
    # ranking stays the more likely kind's (dermoscopy photos keep the dermoscopy network's classes), its risk and
    # alert are raised to the other's where higher (models/serving/decision.py OtherKindResult), as the worker
    # stores and finalizes it later (Classifier.prediction_from_ranking).
    other_kind = next(kind for kind in PhotoKind if kind != route.kind)
    likely, other = classifier.classify_prepared(
        [prepared, prepared], [route.kind, other_kind], None, np.concatenate([embedding, embedding])
    )
    return replace(read_as_likelier_kind(classifier, likely, other, answers), feature_map=likely.feature_map)


def read_as_likelier_kind(
    classifier: Classifier, likely: Prediction, other: Prediction, answers: PatientAnswers | None = None
) -> Prediction:
    """The result of a photo of uncertain kind, from both networks' photo-only results: the likelier kind's
    reading (its classes, its policy, the answers), its risk and melanoma alert never under the other's. The one
    rule that serving and every evaluation of it apply."""
    return classifier.prediction(
        likely.class_probabilities(),
        likely.photo_kind,
        answers,
        skin_tone=likely.skin_tone,
        other_kind=OtherKindResult(other.risk, other.melanoma_alert),
    )


def screen_photo(data: bytes, classifier: Classifier, answers: PatientAnswers | None = None) -> Prediction:
    """Decode, gate and classify one photo; raises UnreadableImage (a stable code and a reason) on refusal."""
    return screen_prepared(prepare_image(decode_image(data)), classifier, answers)
