"""The clinical decision's last steps: skin outside the tones SkinSense was measured on is never told LOW (LOW
becomes MEDIUM, nothing else moves), and the result says so, in ``to_dict`` too."""

from __future__ import annotations

import numpy as np
import pytest

from models.serving.decision import decide
from models.serving.inference import Classifier
from models.serving.policy import KindPolicy
from models.serving.skin_tone import SkinTone
from shared.answers import PatientAnswers
from shared.labels import CLASS_CODES, PhotoKind, RiskLevel

POLICY = KindPolicy(melanoma_alert_threshold=0.3, low_risk_below=0.2)
DARK_PHONE_SKIN = SkinTone(-40.0, PhotoKind.CLINICAL)  # "dark": outside what phone photos were measured on
LIGHT_PHONE_SKIN = SkinTone(60.0, PhotoKind.CLINICAL)  # "very light": inside


def probabilities(**by_code: float) -> np.ndarray:
    vector = np.array([by_code.get(code, 0.0) for code in CLASS_CODES])
    vector[CLASS_CODES.index("nv")] += 1.0 - vector.sum()
    return vector


BENIGN = probabilities(bcc=0.05)  # LOW under POLICY
UNCERTAIN = probabilities(bcc=0.3)  # MEDIUM
MALIGNANT = probabilities(bcc=0.6)  # HIGH


def test_a_low_result_on_skin_outside_the_measured_range_becomes_medium() -> None:
    assert decide(BENIGN, PhotoKind.CLINICAL, None, POLICY, None).assessment.risk == RiskLevel.LOW
    outside = decide(BENIGN, PhotoKind.CLINICAL, None, POLICY, None, skin_tone=DARK_PHONE_SKIN)
    assert outside.assessment.risk == RiskLevel.MEDIUM and outside.raised_by_skin_tone
    np.testing.assert_array_equal(outside.probabilities, BENIGN)  # the probabilities the patient reads stay


@pytest.mark.parametrize("skin_tone", [None, LIGHT_PHONE_SKIN])
def test_skin_inside_the_range_or_not_estimated_changes_nothing(skin_tone: SkinTone | None) -> None:
    decision = decide(BENIGN, PhotoKind.CLINICAL, None, POLICY, None, skin_tone=skin_tone)
    assert decision.assessment.risk == RiskLevel.LOW and not decision.raised_by_skin_tone


@pytest.mark.parametrize(("photo", "risk"), [(UNCERTAIN, RiskLevel.MEDIUM), (MALIGNANT, RiskLevel.HIGH)])
def test_medium_and_high_stay_as_they_are_on_any_skin(photo: np.ndarray, risk: RiskLevel) -> None:
    decision = decide(photo, PhotoKind.CLINICAL, None, POLICY, None, skin_tone=DARK_PHONE_SKIN)
    assert decision.assessment.risk == risk and not decision.raised_by_skin_tone


def test_a_change_that_already_raised_low_leaves_the_skin_tone_nothing_to_raise() -> None:
    decision = decide(BENIGN, PhotoKind.CLINICAL, None, POLICY, None, spot_changed=True, skin_tone=DARK_PHONE_SKIN)
    assert decision.assessment.risk == RiskLevel.MEDIUM
    assert decision.raised_by_change and not decision.raised_by_skin_tone


def test_the_range_is_the_kinds_own() -> None:
    """Tan skin: enough phone photos hold it, too few dermoscopic ones."""
    tan_phone, tan_dermoscopic = SkinTone(20.0, PhotoKind.CLINICAL), SkinTone(20.0, PhotoKind.DERMOSCOPIC)
    assert decide(BENIGN, PhotoKind.CLINICAL, None, POLICY, None, skin_tone=tan_phone).assessment.risk == RiskLevel.LOW
    dermoscopic = decide(BENIGN, PhotoKind.DERMOSCOPIC, None, POLICY, None, skin_tone=tan_dermoscopic)
    assert dermoscopic.assessment.risk == RiskLevel.MEDIUM


def test_on_skin_outside_the_range_no_photo_and_no_answers_give_low(classifier: Classifier) -> None:
    """The shipped model with the answers that lower a phone photo's risk most: whatever the photo, never LOW."""
    reassuring = PatientAnswers(itches=True, bleeds=False, hurts=True, grew=False, changed=False, age=25)
    low_seen = False
    for malignant in np.linspace(0.0, 0.6, 13):
        photo = probabilities(bcc=float(malignant) / 2, akiec=float(malignant) / 2)
        for answers in (None, PatientAnswers(), reassuring):
            for kind in PhotoKind:
                outside = SkinTone(-45.0, kind)
                low_seen |= classifier.prediction(photo, kind, answers).risk == RiskLevel.LOW
                assert classifier.prediction(photo, kind, answers, skin_tone=outside).risk != RiskLevel.LOW
    assert low_seen, "some of these photos are LOW on skin the model was measured on"


def test_the_skin_tone_is_in_the_result_and_its_dict(classifier: Classifier) -> None:
    """``skinsense classify --json`` and the job store read the dict."""
    outside = classifier.prediction(BENIGN, PhotoKind.CLINICAL, skin_tone=DARK_PHONE_SKIN)
    record = outside.to_dict()
    assert record["skin_tone"] == {"ita": -40.0, "group": "dark", "outside_measured_range": True}
    assert record["risk"] == "medium" and record["raised_by_skin_tone"] is True
    unknown = classifier.prediction(BENIGN, PhotoKind.CLINICAL).to_dict()
    assert unknown["skin_tone"] is None and unknown["raised_by_skin_tone"] is False


def test_a_stored_result_is_decided_again_with_its_stored_skin_tone(classifier: Classifier) -> None:
    """The worker stores the photo-only ranking and the ITA, and decides again with the answers (worker/flow.py)."""
    first = classifier.prediction(BENIGN, PhotoKind.CLINICAL, skin_tone=DARK_PHONE_SKIN)
    ranking = first.to_dict()["ranking"]
    again = classifier.prediction_from_ranking(ranking, PhotoKind.CLINICAL, None, skin_tone_ita=DARK_PHONE_SKIN.ita)
    assert (again.risk, again.raised_by_skin_tone, again.skin_tone) == (
        first.risk,
        first.raised_by_skin_tone,
        first.skin_tone,
    )
