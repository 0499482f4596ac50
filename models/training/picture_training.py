"""Fitting the picture head: which pictures are dermoscopic, clinical (phone) close-ups, not lesions at all,
or lesions too small in the frame. A logistic regression on the frozen ImageNet embedding, fitted on:
- dermoscopic: HAM10000's training split (its validation split stays out, to measure the gates on);
- clinical: PAD-UFES-20's phone photos, and HAM10000 images made phone-like at a normal framing;
- not a lesion: models.training.negatives' pictures and the lesion-free skin in the corners of the phone photos;
- lesion too small: the same photos with the lesion shrunk into a wide frame of skin;
- blurry: the same photos out of focus.
Every example has a group (lesion, patient or picture source) for cross-validation by group.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from models.serving.inference import PICTURE_CLASSES, REFUSING_PICTURES, EmbeddingHead
from models.serving.preprocessing import prepare_image
from models.training.augment import phone_style
from models.training.data import Sample, image_path
from models.training.negatives import negative_pictures, skin_without_lesion
from models.training.pad_ufes import PhoneSample

# The refusing classes' probability at which a picture is refused (chosen on the first grouped
# cross-validation: it refused under 1 % of lesion photos of either kind, see the model card).
REFUSAL_PROBABILITY = 0.35
# The kind's band on the dermoscopic share (models/serving/screening.py): under the first the phone network
# alone, at or above the second the dermoscopy network alone, between them both. Chosen by nested grouped
# cross-validation (models/training/kind_routing.py; figures in the model card).
CLINICAL_SHARE_UNDER = 0.1989
DERMOSCOPIC_SHARE_AT_LEAST = 0.9852
REGULARISATION = 0.01  # inverse L2 strength of the logistic regression on standardised embeddings
TOO_SMALL_FRAME = (5.0, 9.0)  # the lesion's picture is 1/5 to 1/9 of the frame's side
NORMAL_FRAME = (1.2, 2.2)
BLUR_RADIUS = (2.5, 6.0)  # px at the model's 224 px
SYNTHETIC_HAM_IMAGES = 700

Embed = Callable[[np.ndarray], np.ndarray]


@dataclass
class PictureExamples:
    embeddings: list[np.ndarray] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # for reporting: ham, pad, negative:<kind>, small, framed

    def add(self, embed: Embed, images: Iterable[Image.Image], target: str, group: str, source: str) -> None:
        prepared = np.stack([prepare_image(image) for image in images])
        for embedding in embed(prepared):
            self.embeddings.append(embedding)
            self.targets.append(PICTURE_CLASSES.index(target))
            self.groups.append(group)
            self.sources.append(source)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return np.stack(self.embeddings), np.array(self.targets), np.array(self.groups), np.array(self.sources)


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def build_picture_examples(
    embed: Embed, ham_dir: Path, ham_train: list[Sample], phone_photos: list[PhoneSample], seed: int = 0
) -> PictureExamples:
    examples = PictureExamples()
    rng = np.random.default_rng(seed)
    corners = random.Random(seed)
    for start in range(0, len(ham_train), 256):
        chunk = ham_train[start : start + 256]
        prepared = np.stack([prepare_image(_rgb(image_path(ham_dir, s))) for s in chunk])
        for sample, embedding in zip(chunk, embed(prepared), strict=True):
            examples.embeddings.append(embedding)
            examples.targets.append(PICTURE_CLASSES.index("dermoscopic"))
            examples.groups.append(f"ham:{sample.lesion_id}")
            examples.sources.append("ham")
    synthetic_sources = [(_rgb(s.path), f"pad:{s.patient_id}") for s in phone_photos]
    chosen = rng.choice(len(ham_train), min(SYNTHETIC_HAM_IMAGES, len(ham_train)), replace=False)
    synthetic_sources += [(_rgb(image_path(ham_dir, ham_train[i])), f"ham:{ham_train[i].lesion_id}") for i in chosen]
    for photo, phone_photo in zip(synthetic_sources[: len(phone_photos)], phone_photos, strict=True):
        group = f"pad:{phone_photo.patient_id}"
        examples.add(embed, [photo[0]], "clinical", group, "pad")
        examples.add(embed, [skin_without_lesion(photo[0], corners)], "not_a_lesion", group, "negative:skin_corner")
    for image, group in synthetic_sources:
        examples.add(embed, [phone_style(image, rng, TOO_SMALL_FRAME)], "lesion_too_small", group, "small")
        examples.add(embed, [phone_style(image, rng, NORMAL_FRAME)], "clinical", group, "framed")
        examples.add(embed, [_blurred(image, rng)], "blurry", group, "blurred")
    for picture in negative_pictures(seed):
        examples.add(embed, [picture.image], "not_a_lesion", picture.group, f"negative:{picture.kind}")
    return examples


def _blurred(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Out of focus as a shaking hand or a missed focus leaves it: Gaussian blur of 2.5-6 px at 224 px."""
    scale = max(image.size) / 224
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR_RADIUS) * scale))


def fit_embedding_head(
    embeddings: np.ndarray, targets: np.ndarray, classes: int, regularisation: float
) -> EmbeddingHead:
    """Class-balanced logistic regression on standardised embeddings; a class absent from ``targets`` gets
    a score no photo reaches (the blend floors its probability)."""
    from sklearn.linear_model import LogisticRegression

    mean = embeddings.mean(axis=0)
    scale = embeddings.std(axis=0) + 1e-6
    counts = np.bincount(targets, minlength=classes)
    present = np.flatnonzero(counts)
    weights = (len(targets) / (len(present) * np.maximum(counts, 1)))[targets]
    model = LogisticRegression(C=regularisation, max_iter=3000)
    model.fit((embeddings - mean) / scale, targets, sample_weight=weights)
    coefficients = np.zeros((classes, embeddings.shape[1]), np.float32)
    intercepts = np.full(classes, -30.0, np.float32)
    coefficients[model.classes_] = model.coef_
    intercepts[model.classes_] = model.intercept_
    return EmbeddingHead(mean.astype(np.float32), scale.astype(np.float32), coefficients, intercepts)


def fit_picture_head(embeddings: np.ndarray, targets: np.ndarray) -> EmbeddingHead:
    return fit_embedding_head(embeddings, targets, len(PICTURE_CLASSES), REGULARISATION)


def cross_validated_probabilities(
    embeddings: np.ndarray, targets: np.ndarray, groups: np.ndarray, folds: int = 5
) -> np.ndarray:
    """Out-of-fold picture probabilities: each example scored by a head fitted without its group."""
    from sklearn.model_selection import GroupKFold

    probabilities = np.zeros((len(targets), len(PICTURE_CLASSES)))
    for fit_index, held_out in GroupKFold(n_splits=folds).split(embeddings, targets, groups):
        head = fit_picture_head(embeddings[fit_index], targets[fit_index])
        probabilities[held_out] = head.probabilities(embeddings[held_out])
    return probabilities


def refused(probabilities: np.ndarray) -> np.ndarray:
    refusing = [PICTURE_CLASSES.index(name) for name in REFUSING_PICTURES]
    return np.asarray(probabilities[:, refusing].max(axis=1) >= REFUSAL_PROBABILITY)
