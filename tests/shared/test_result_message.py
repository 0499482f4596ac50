"""The patient's result text: plain language first, one headline that follows the policy, what to do and
where, what moved the risk, and how reliable SkinSense measured itself on this kind of photo."""

from __future__ import annotations

import dataclasses
from itertools import product
from typing import Any

import numpy as np
import pytest

from models.serving.inference import Classifier
from shared.answers import AnswerEffect, BodySite, PatientAnswers
from shared.labels import CLASS_CODES, CLASS_NAMES, MALIGNANT_CODES, MELANOMA, PhotoKind, RiskLevel
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from shared.texts import result as result_texts
from skinsense.sandbox import plain_text


def ranking(*leading: tuple[str, float]) -> list[dict[str, Any]]:
    """A full ranking led by ``leading``; the rest share what is left."""
    rest = [code for code in CLASS_CODES if code not in dict(leading)]
    left = (1 - sum(p for _, p in leading)) / len(rest)
    entries = [*leading, *((code, left) for code in rest)]
    return [{"code": code, "name": CLASS_NAMES[code], "probability": p} for code, p in entries]


def text_of(view: result_texts.PatientResult) -> str:
    return plain_text(result_texts.result(view), "HTML")


def test_an_alert_led_by_melanoma_says_signs_of_melanoma_never_cannot_be_ruled_out() -> None:
    view = result_texts.PatientResult(ranking(("mel", 0.55), ("nv", 0.3)), RiskLevel.HIGH, melanoma_alert=True)
    text = text_of(view)
    assert text.startswith("⚠️ Signs of melanoma\n")
    assert "cannot be ruled out" not in text
    assert "melanoma, a serious skin cancer: possible (55 %)\n" in text


def test_an_alert_led_by_another_class_says_melanoma_cannot_be_ruled_out_and_names_the_leader() -> None:
    view = result_texts.PatientResult(ranking(("nv", 0.47), ("mel", 0.34)), RiskLevel.HIGH, melanoma_alert=True)
    text = text_of(view)
    assert text.startswith(
        "⚠️ Melanoma cannot be ruled out\nThe most likely type is an ordinary mole (melanocytic nevus)"
    )
    assert "Signs of melanoma" not in text and "MELANOMA ALERT" not in text
    assert (
        "an ordinary mole (melanocytic nevus): possible (47 %)\nmelanoma, a serious skin cancer: possible (34 %)"
        in text
    )


@pytest.mark.parametrize(
    ("probability", "read"),
    [
        (0.99995, "very likely (more than 99 %)"),
        (0.985, "very likely (98 %)"),
        (0.72, "likely (72 %)"),
        (0.31, "possible (31 %)"),
        (0.12, "less likely (12 %)"),
        (0.04, "unlikely (4 %)"),
        (0.00001, "unlikely (less than 1 %)"),
    ],
)
def test_a_probability_reads_in_words_beside_a_rounded_figure_never_100_or_0_percent(
    probability: float, read: str
) -> None:
    assert result_texts.likelihood(probability) == read


def test_a_near_certain_result_never_says_100_or_0_percent() -> None:
    view = result_texts.PatientResult(
        ranking(("mel", 0.99995), ("nv", 0.00004), ("bcc", 0.00001)), RiskLevel.HIGH, True
    )
    text = text_of(view)
    assert "100 %" not in text and "100%" not in text and " 0 %" not in text and "(0%" not in text
    assert "melanoma, a serious skin cancer: very likely (more than 99 %)" in text


def test_answers_that_moved_the_chance_of_cancer_are_never_said_to_have_changed_it_very_little() -> None:
    """The photo alone gave 98.5 % melanoma; with the answers 99.99 %: the result says the answers raised it."""
    view = result_texts.PatientResult(
        ranking(("mel", 0.9999), ("nv", 0.0001)),
        RiskLevel.HIGH,
        True,
        answers_used=("age", "grew"),
        answer_effects={},
        answers={"age": 65, "grew": True},
        photo_ranking=ranking(("mel", 0.985), ("nv", 0.015)),
    )
    text = text_of(view)
    assert result_texts.ANSWERS_BARELY_MOVED not in text
    assert "they raised the chance of a skin cancer or pre-cancer from 98 % (the photo alone) to more than 99 %" in text
    unmoved = result_texts.PatientResult(
        ranking(("nv", 0.702)),
        RiskLevel.LOW,
        False,
        answers_used=("age",),
        answers={"age": 45},
        photo_ranking=ranking(("nv", 0.7)),
    )
    assert result_texts.ANSWERS_BARELY_MOVED in text_of(unmoved)


# Every result the policy can give: a melanoma alert is always HIGH risk, and a ranking led by a malignant type is
# never LOW risk (models/serving/policy.py).
POSSIBLE_RESULTS = [
    (top, risk, alert)
    for top, risk, alert in product(CLASS_CODES, list(RiskLevel), [False, True])
    if not (alert and risk != RiskLevel.HIGH) and not (risk == RiskLevel.LOW and top in MALIGNANT_CODES)
]


@pytest.mark.parametrize(("top", "risk", "alert"), POSSIBLE_RESULTS)
def test_no_headline_contradicts_the_ranking_or_the_risk(top: str, risk: RiskLevel, alert: bool) -> None:
    text = text_of(result_texts.PatientResult(ranking((top, 0.6)), risk, melanoma_alert=alert))
    headline = text.splitlines()[0]
    assert ("Signs of melanoma" in headline) == (alert and top == MELANOMA)
    assert ("Melanoma cannot be ruled out" in headline) == (alert and top != MELANOMA)
    assert f"Risk: {risk.value.upper()}." in text and text.count("Risk: ") == 1
    assert "urgent care" in text and ("GP" in text or "dermatologist" in text)
    assert text.count(result_texts.SHORT_DISCLAIMER) == 1 and patient_texts.DISCLAIMER not in text
    if top in MALIGNANT_CODES:
        assert "cannot be ruled out" not in text or alert, "a cancer that leads is not merely 'not ruled out'"
    assert "harmless" not in headline, "low risk is not no risk"


@pytest.mark.parametrize(
    ("answers", "said"),
    [
        ({"grew": True}, "you said it grew:"),
        ({"changed": True, "itches": True}, "you said it changed in shape or colour and it itches:"),
        ({"bleeds": True, "grew": False}, "you said it bleeds:"),
    ],
)
def test_a_low_result_after_a_reported_warning_sign_says_to_see_a_gp_not_that_no_appointment_is_needed(
    answers: dict[str, Any], said: str
) -> None:
    """LOW risk's own advice names growth, change, bleeding and itching as reasons to see a GP: a patient who
    reported one of them is told so, never "no appointment is needed"."""
    view = result_texts.PatientResult(ranking(("nv", 0.8)), RiskLevel.LOW, melanoma_alert=False, answers=answers)
    text = text_of(view)
    assert "Risk: LOW from the photo." in text and said in text and "GP" in text
    assert "No appointment" not in text
    calm = text_of(result_texts.PatientResult(ranking(("nv", 0.8)), RiskLevel.LOW, False, answers={"grew": False}))
    assert "No appointment is needed" in calm and "you said" not in calm


def test_skin_darker_than_tested_on_is_said_plainly_with_what_to_do_and_why_it_is_not_low() -> None:
    raised = result_texts.PatientResult(
        ranking(("nv", 0.8)), RiskLevel.MEDIUM, False, skin_tone_caveat=True, raised_by_skin_tone=True
    )
    text = text_of(raised)
    assert "SkinSense has been tested mostly on lighter skin" in text and "less certain" in text
    assert "does not call this spot low risk" in text and "GP (family doctor)" in text
    assert "ITA" not in text and "Fitzpatrick" not in text, "no jargon for the patient"
    measured = dataclasses.replace(raised, photo_kind=PhotoKind.CLINICAL, malignant_told_low_per_100=3.3)
    assert "On phone photos of lighter skin, SkinSense misses about 3 in 100" in text_of(measured)
    assert "on skin like yours it has not been measured" in text_of(measured)
    # Already MEDIUM or HIGH on its own: the same caveat, with the advice for a worried patient instead.
    high = result_texts.PatientResult(ranking(("bcc", 0.7)), RiskLevel.HIGH, False, skin_tone_caveat=True)
    high_text = text_of(high)
    assert "tested mostly on lighter skin" in high_text and "If the spot worries you" in high_text
    assert "low risk" not in high_text
    plain = text_of(result_texts.PatientResult(ranking(("nv", 0.8)), RiskLevel.LOW, False))
    assert "lighter skin" not in plain


def test_an_album_names_the_photos_whose_skin_is_darker_than_tested_on() -> None:
    caveated = result_texts.PatientResult(ranking(("nv", 0.8)), RiskLevel.MEDIUM, False, skin_tone_caveat=True)
    plain = result_texts.PatientResult(ranking(("nv", 0.8)), RiskLevel.LOW, False)
    photos = [
        result_texts.AlbumPhoto(1, plain),
        result_texts.AlbumPhoto(2, caveated),
        result_texts.AlbumPhoto(3, caveated),
    ]
    text = plain_text("\n\n".join(result_texts.album_result(photos)), "HTML")
    assert "the skin in photos 2 and 3 looks darker" in text and "those results are less certain" in text
    one = plain_text("\n\n".join(result_texts.album_result(photos[:2])), "HTML")
    assert "the skin in photo 2 looks darker" in one and "that result is less certain" in one
    assert "lighter skin" not in plain_text("\n\n".join(result_texts.album_result(photos[:1])), "HTML")


def test_every_class_has_an_everyday_name_before_its_medical_name() -> None:
    assert result_texts.lesion_name("nv") == "an ordinary mole (melanocytic nevus)"
    assert result_texts.lesion_name("mel") == "melanoma, a serious skin cancer"
    assert result_texts.lesion_name("akiec") == "a sun-damage patch that can turn into cancer (actinic keratosis)"
    for code in CLASS_CODES:
        name = result_texts.lesion_name(code)
        medical = result_texts.PATIENT_MEDICAL_NAMES.get(code, CLASS_NAMES[code].lower())
        assert medical in name and not name.startswith(CLASS_NAMES[code])
        assert "intraepithelial" not in name


@pytest.mark.parametrize("kind", list(PhotoKind))
def test_the_reliability_sentence_quotes_the_artifacts_measured_figure(kind: PhotoKind, classifier: Classifier) -> None:
    measured = classifier.metadata.kinds[kind].malignant_told_low_per_100
    view = result_texts.PatientResult(
        ranking(("nv", 0.9)), RiskLevel.LOW, False, photo_kind=kind, malignant_told_low_per_100=measured
    )
    text = text_of(view)
    assert result_texts.PHOTO_KIND_SEEN[kind] in text
    assert (
        f"On {result_texts.PHOTO_KIND_PLURAL[kind]} like this one, SkinSense misses about {round(measured)} in 100"
        in text
    )


@pytest.mark.parametrize("kind", list(PhotoKind))
def test_a_photo_of_uncertain_kind_says_it_was_read_both_ways(kind: PhotoKind) -> None:
    view = result_texts.PatientResult(
        ranking(("nv", 0.9)), RiskLevel.MEDIUM, False, photo_kind=kind, kind_uncertain=True
    )
    text = text_of(view)
    assert result_texts.PHOTO_KIND_UNSURE[kind] in text and result_texts.PHOTO_KIND_SEEN[kind] not in text
    assert "more cautious" in text


def test_the_answers_that_raised_or_lowered_the_risk_are_named() -> None:
    view = result_texts.PatientResult(
        ranking(("nv", 0.6)),
        RiskLevel.MEDIUM,
        False,
        answers_used=("age", "grew", "bleeds", "itches"),
        answer_effects={"grew": "raised", "bleeds": "raised", "age": "lowered"},
        answers={"age": 25, "grew": True, "bleeds": True, "itches": False},
    )
    text = text_of(view)
    assert "Raised the risk: it grew, it bleeds. Lowered it: your age." in text
    assert "itch" not in text.split("Raised the risk")[1], "an answer that moved nothing is not called a cause"


def test_a_warning_sign_is_never_named_as_lowering_the_risk_nor_its_absence_as_raising_it() -> None:
    """The issue's melanoma answered "bleeds, itches, hurts, raised" was told "Lowered it: ... it bleeds": the
    answer model's direction is kept in the risk, but only reasons a clinician would give are named."""
    view = result_texts.PatientResult(
        ranking(("mel", 0.7)),
        RiskLevel.HIGH,
        True,
        answers_used=("sex", "grew", "bleeds", "itches", "raised"),
        answer_effects={
            "sex": "raised",
            "grew": "raised",
            "bleeds": "lowered",
            "itches": "lowered",
            "raised": "raised",
        },
        answers={"sex": "male", "grew": True, "bleeds": True, "itches": True, "raised": False},
    )
    text = text_of(view)
    assert "Raised the risk: your sex, it grew." in text
    assert "Lowered it" not in text and "it is flat" not in text and "it bleeds" not in text


def test_bleeding_growth_and_change_raise_the_risk_of_a_mole(classifier: Classifier) -> None:
    """Measured on the real triage model: the answers that point to a cancer are reported as raising it."""
    photo = np.array([0.02, 0.02, 0.05, 0.01, 0.05, 0.84, 0.01])
    photo_ranking = [
        {"code": c, "name": CLASS_NAMES[c], "probability": float(p)} for c, p in zip(CLASS_CODES, photo, strict=True)
    ]
    worrying = PatientAnswers(grew=True, changed=True, bleeds=True)

    def effects(answers: PatientAnswers | None) -> dict[str, AnswerEffect]:
        return classifier.prediction_from_ranking(photo_ranking, PhotoKind.CLINICAL, answers).answer_effects

    assert effects(worrying) and set(effects(worrying).values()) == {AnswerEffect.RAISED}
    assert effects(PatientAnswers()) == {}
    assert effects(None) == {}


def test_a_patient_who_said_the_spot_does_not_bleed_is_not_told_it_bleeds() -> None:
    said_no = text_of(result_texts.PatientResult(ranking(("nv", 0.8)), RiskLevel.LOW, False, answers={"bleeds": False}))
    assert result_texts.URGENT_CARE not in said_no and result_texts.URGENT_CARE_NOT_BLEEDING in said_no
    not_asked = text_of(result_texts.PatientResult(ranking(("nv", 0.8)), RiskLevel.LOW, False))
    assert result_texts.URGENT_CARE in not_asked


def test_body_site_buttons_use_the_words_patients_use() -> None:
    labels = set(questionnaire_texts.BODY_SITE_BUTTONS.values())
    assert set(questionnaire_texts.BODY_SITE_BUTTONS) == set(BodySite)
    assert not labels & {"Acral", "Lower extremity", "Upper extremity", "Trunk"}


def test_help_and_about_agree_on_what_the_model_reads() -> None:
    assert "trained on dermatoscope images" not in patient_texts.help_text(20)
    assert "phone photos" in patient_texts.help_text(20) and "phone photos" in patient_texts.ABOUT
