"""Triage that uses the patient's answers: the photo's calibrated probabilities combined with what the
patient knows (age, sex, body site, and whether the spot grew, changed, bleeds, itches, hurts, is raised).

The combination is a multinomial logistic model with the photo as a fixed offset:
    final = softmax(log p_photo + W @ features(answers))
where every feature of an unknown answer is 0, so all answers unknown give exactly the photo-only result.
W is fitted on PAD-UFES-20's phone photos (which have every answer), on the photo's out-of-fold
probabilities, with L2 regularisation; its figures come from a patient-grouped cross-validation.
Clinical floors (models/serving/policy.py) then keep some answer patterns from ever being LOW risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.answers import LESION_QUESTIONS, BodySite, PatientAnswers, Sex
from shared.labels import CLASS_CODES, MALIGNANT_CODES

AGE_CENTRE, AGE_SCALE = 50.0, 20.0
FEATURE_NAMES: tuple[str, ...] = (
    "age",
    "sex",
    *LESION_QUESTIONS,
    *(f"site:{site.value}" for site in BodySite),
)
MALIGNANT_MASK = np.array([code in MALIGNANT_CODES for code in CLASS_CODES])
REGULARISATION = 1.0  # L2 penalty on W, per sample
# Answers that clinicians read only one way (NICE 7-point checklist: change in size, shape or colour, bleeding or
# oozing, itch or altered sensation; the "elevated" of the EFG rule for nodular melanoma; older age): "yes" (or
# older) may only raise the malignant probability. The fit keeps their weights at least 0 for the malignant classes
# and at most 0 for the benign ones, so such an answer never moves probability from a malignant class to a benign
# one. Sex and body site are free: they tell the classes apart, not how alarming a spot is.
WARNING_SIGNS: tuple[str, ...] = ("age", *LESION_QUESTIONS)


def answer_features(answers: PatientAnswers) -> np.ndarray:
    """The feature vector of one photo's answers; every unknown answer contributes 0."""
    features = np.zeros(len(FEATURE_NAMES), dtype=np.float64)
    if answers.age is not None:
        features[0] = (answers.age - AGE_CENTRE) / AGE_SCALE
    if answers.sex is not None:
        features[1] = 1.0 if answers.sex == Sex.MALE else -1.0
    for offset, question in enumerate(LESION_QUESTIONS, start=2):
        value = getattr(answers, question)
        if value is not None:
            features[offset] = 1.0 if value else -1.0
    if answers.body_site is not None:
        features[FEATURE_NAMES.index(f"site:{answers.body_site.value}")] = 1.0
    return features


@dataclass(frozen=True)
class TriageModel:
    weights: np.ndarray  # (classes, features)

    def combine(self, probabilities: np.ndarray, answers: PatientAnswers) -> np.ndarray:
        """The final probabilities (CLASS_CODES order) of one photo given its answers."""
        shift = self.weights @ answer_features(answers)
        scores = np.log(np.clip(probabilities, 1e-12, None)) + shift
        scores -= scores.max()
        exp = np.exp(scores)
        return np.asarray(exp / exp.sum())

    def save(self, path: Path) -> None:
        np.savez(path, weights=self.weights, feature_names=np.array(FEATURE_NAMES))

    @classmethod
    def load(cls, path: Path) -> TriageModel:
        with np.load(path) as arrays:
            if tuple(arrays["feature_names"].tolist()) != FEATURE_NAMES:
                raise ValueError(f"{path}: triage features do not match this code")
            return cls(arrays["weights"])


def fit_triage(probabilities: np.ndarray, labels: np.ndarray, features: np.ndarray) -> TriageModel:
    """Maximum likelihood of the labels under softmax(log p + W f), with an L2 penalty on W."""
    from scipy.optimize import minimize

    classes, size = len(CLASS_CODES), features.shape[1]
    offsets = np.log(np.clip(probabilities, 1e-12, None))
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    present = counts > 0
    sample_weights = np.zeros(classes)
    sample_weights[present] = len(labels) / (present.sum() * counts[present])  # balanced, like the networks
    weights_per_sample = sample_weights[labels]

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        weights = flat.reshape(classes, size)
        scores = offsets + features @ weights.T
        scores -= scores.max(axis=1, keepdims=True)
        log_probabilities = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
        loss = -(weights_per_sample * log_probabilities[np.arange(len(labels)), labels]).sum() / len(labels)
        loss += REGULARISATION * (weights**2).sum() / len(labels)
        residual = np.exp(log_probabilities)
        residual[np.arange(len(labels)), labels] -= 1
        gradient = (residual * weights_per_sample[:, None]).T @ features / len(labels)
        gradient += 2 * REGULARISATION * weights / len(labels)
        return float(loss), gradient.ravel()

    bounds = [
        ((0.0, None) if MALIGNANT_MASK[c] else (None, 0.0)) if FEATURE_NAMES[f] in WARNING_SIGNS else (None, None)
        for c in range(classes)
        for f in range(size)
    ]
    result = minimize(loss_and_gradient, np.zeros(classes * size), jac=True, method="L-BFGS-B", bounds=bounds)
    return TriageModel(result.x.reshape(classes, size))
