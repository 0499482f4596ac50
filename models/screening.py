"""One photo, from the bytes a patient sent to a prediction or a refusal: the single path that the worker
and ``skinsense classify`` share, so the bot and the command line can never disagree about a file."""

from __future__ import annotations

from models.inference import Classifier, Prediction
from models.preprocessing import prepare_image
from shared.images import UnreadableImage, decode_image, looks_like_skin


def screen_photo(data: bytes, classifier: Classifier) -> Prediction:
    """Decode, gate and classify one photo; raises UnreadableImage (a stable code and a reason) on refusal."""
    prepared = prepare_image(decode_image(data))
    if not looks_like_skin(prepared):
        raise UnreadableImage("not_skin", "the photo does not look like a close-up of skin")
    return classifier.classify_prepared([prepared])[0]
