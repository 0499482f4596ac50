"""The patients' answers: the CSV of ``skinsense classify --answers``, the triage combination and the floors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from models.serving.answers_csv import AnswersFileError, read_answers
from models.serving.inference import Classifier
from models.serving.policy import KindPolicy, assess_risk
from models.serving.triage import FEATURE_NAMES, TriageModel, answer_features, fit_triage
from shared.answers import BodySite, PatientAnswers, Sex
from shared.labels import CLASS_CODES, PhotoKind, RiskLevel


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "answers.csv"
    path.write_text(text)
    return path


def test_answers_csv_reads_values_and_treats_blanks_and_missing_columns_as_unknown(tmp_path: Path) -> None:
    answers = read_answers(
        write(tmp_path, "image,age,sex,body_site,bleeds\nspot.jpg,61,Male,upper extremity,yes\nother.jpg,,,,\n")
    )
    assert answers["spot.jpg"] == PatientAnswers(age=61, sex=Sex.MALE, body_site=BodySite.UPPER_EXTREMITY, bleeds=True)
    assert answers["other.jpg"] == PatientAnswers()
    assert answers["other.jpg"].known() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image,age\nspot.jpg,abc\n", "row 2, column age"),
        ("image,body_site\na.jpg,face\nspot.jpg,elbow\n", "row 3, column body_site"),
        ("image,bleeds\nspot.jpg,sometimes\n", "row 2, column bleeds"),
        ("image,sex\nspot.jpg,x\n", "row 2, column sex"),
        ("image,colour\nspot.jpg,red\n", "unknown column(s) colour"),
        ("photo,age\nspot.jpg,40\n", "'image' column"),
    ],
)
def test_answers_csv_errors_name_the_row_and_column(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(AnswersFileError, match=re.escape(message)):
        read_answers(write(tmp_path, content))


def test_unknown_answers_give_exactly_the_photo_only_probabilities() -> None:
    rng = np.random.default_rng(0)
    triage = TriageModel(rng.normal(0, 1, (len(CLASS_CODES), len(FEATURE_NAMES))))
    photo = rng.dirichlet(np.ones(len(CLASS_CODES)))
    assert np.array_equal(answer_features(PatientAnswers()), np.zeros(len(FEATURE_NAMES)))
    np.testing.assert_allclose(triage.combine(photo, PatientAnswers()), photo, rtol=1e-12)


def test_triage_learns_that_an_answer_moves_a_class() -> None:
    rng = np.random.default_rng(1)
    bcc = CLASS_CODES.index("bcc")
    labels = rng.integers(0, len(CLASS_CODES), 600)
    bleeds = np.where(labels == bcc, rng.random(600) < 0.8, rng.random(600) < 0.1)
    answers = [PatientAnswers(bleeds=bool(b)) for b in bleeds]
    photo = np.full((600, len(CLASS_CODES)), 1 / len(CLASS_CODES))
    triage = fit_triage(photo, labels, np.stack([answer_features(a) for a in answers]))
    assert triage.combine(photo[0], PatientAnswers(bleeds=True))[bcc] > 1 / len(CLASS_CODES) * 1.5
    assert triage.combine(photo[0], PatientAnswers(bleeds=False))[bcc] < 1 / len(CLASS_CODES)


def test_bleeding_with_growth_is_never_low_risk() -> None:
    benign = np.zeros(len(CLASS_CODES))
    benign[CLASS_CODES.index("nv")] = 0.98
    benign[CLASS_CODES.index("bcc")] = 0.02
    policy = KindPolicy(melanoma_alert_threshold=0.3, low_risk_below=0.2)
    assert assess_risk(benign, policy).risk == RiskLevel.LOW
    assert assess_risk(benign, policy, PatientAnswers(bleeds=True, grew=True)).risk == RiskLevel.MEDIUM
    assert assess_risk(benign, policy, PatientAnswers(grew=True, changed=True)).risk == RiskLevel.MEDIUM
    assert assess_risk(benign, policy, PatientAnswers(bleeds=True, grew=False)).risk == RiskLevel.LOW


def photo_with(melanoma: float, malignant_rest: float = 0.0) -> np.ndarray:
    """A photo-only probability vector: melanoma, some bcc, the rest an ordinary mole."""
    probabilities = np.zeros(len(CLASS_CODES))
    probabilities[CLASS_CODES.index("mel")] = melanoma
    probabilities[CLASS_CODES.index("bcc")] = malignant_rest
    probabilities[CLASS_CODES.index("nv")] = 1.0 - melanoma - malignant_rest
    return probabilities


# Answers the shipped answer model reads as lowering melanoma and the malignant share (learned on phone photos).
REASSURING = PatientAnswers(itches=True, bleeds=True, hurts=True)


def test_answers_never_take_away_a_melanoma_alert_the_photo_raised(classifier: Classifier) -> None:
    for kind in PhotoKind:
        threshold = classifier.kind_policy(kind).melanoma_alert_threshold
        photo = photo_with(min(threshold * 1.05, 0.9))
        assert classifier.prediction(photo, kind).melanoma_alert
        combined = classifier.prediction(photo, kind, REASSURING)
        assert combined.melanoma_alert and combined.risk == RiskLevel.HIGH, kind


def test_answers_lower_a_phone_photos_risk_by_one_level_at_most(classifier: Classifier) -> None:
    """A phone photo HIGH on its own is never told LOW because of the answers (a melanoma alert at 3 % was, with
    "itches" alone, before the answers' limits)."""
    kind = PhotoKind.CLINICAL
    threshold = classifier.kind_policy(kind).melanoma_alert_threshold
    photos = [photo_with(threshold * 1.1, rest) for rest in (0.0, 0.05, 0.1, 0.15)]
    photos += [photo_with(threshold * 0.5, rest) for rest in (0.5, 0.6, 0.7)]  # HIGH from the malignant share
    for photo in photos:
        assert classifier.prediction(photo, kind).risk == RiskLevel.HIGH
        for answers in (PatientAnswers(itches=True), REASSURING):
            assert classifier.prediction(photo, kind, answers).risk != RiskLevel.LOW, (photo, answers)


def test_a_dermoscopic_photos_result_is_the_photos_whatever_the_answers(classifier: Classifier) -> None:
    """The answer model was fitted and measured on phone photos only."""
    photo = photo_with(0.1, 0.2)
    alone = classifier.prediction(photo, PhotoKind.DERMOSCOPIC)
    answered = classifier.prediction(photo, PhotoKind.DERMOSCOPIC, REASSURING)
    assert answered.ranking == alone.ranking and answered.answers_used == [] and answered.risk == alone.risk
    assert classifier.prediction(photo, PhotoKind.CLINICAL, REASSURING).answers_used, "phone photos combine them"
