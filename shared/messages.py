"""Every text a patient or clinician reads, in one place (plain text or Telegram HTML), for review and translation."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from shared.answers import BodySite, PatientAnswers, Sex
from shared.images import MAX_FILE_BYTES
from shared.labels import MelanomaFinding, RiskLevel, melanoma_finding
from shared.outcomes import FailureCode, RefusalCode
from shared.questionnaire import AgeRange, ProfileChoice, Question, YesNo

MAX_FILE_MB = MAX_FILE_BYTES // (1024 * 1024)  # the file size limit, as patients read it

DISCLAIMER = (
    "SkinSense is a screening aid, not a diagnosis. Only a doctor who examines the lesion can diagnose it. "
    "If a spot is new, changing, bleeding, itching or worries you, see a doctor or dermatologist "
    "whatever this result says."
)

START = (
    "Hello, I am SkinSense.\n\n"
    "Send me a sharp, close-up photo of one skin spot or mole (as a photo, or as a JPEG/PNG file) and I will "
    "give you an early, honest read: the most likely types of lesion, a risk level and what to do next.\n\n"
    f"{DISCLAIMER}\n\n"
    "Privacy: I keep no copy of your photo; see /privacy for what is stored and /delete to erase it.\n\n"
    "Type /help for tips."
)

HELP = (
    "How to use SkinSense:\n"
    "1. Take a close-up photo of one spot in good light, in focus, filling most of the picture.\n"
    "2. Send it here as a photo (or as a JPEG/PNG file up to {max_mb} MB).\n"
    "3. Answer a few quick questions with the buttons while it is analysed (or tap Skip).\n"
    "4. The result follows in a few seconds.\n\n"
    "The model was trained on dermatoscope images; ordinary phone photos are harder for it, so treat the "
    "result as a first hint only.\n\n"
    f"{DISCLAIMER}"
)

NOT_A_PHOTO = (
    "I can only read photos of skin lesions. Please send a photo of the spot (or a JPEG/PNG file). Type /help for tips."
)

ANALYSING = "Analysing your photo... this usually takes a few seconds."


def too_many_photos(per_hour: int) -> str:
    """A chat sent more photos in an hour than the per-chat limit allows (SKINSENSE_PHOTOS_PER_CHAT_PER_HOUR)."""
    return (
        f"Thank you for all your photos. I can analyse up to {per_hour} photos an hour for each person, so that "
        "everyone gets a quick answer, and I did not analyse this one. Please send it again in a little while. "
        "If a spot worries you, do not wait for me: see a doctor."
    )


ENQUEUE_FAILED = (
    "Sorry, SkinSense could not start the analysis right now. Nothing was lost: please send the photo "
    "again in a few minutes."
)

ANALYSIS_FAILED = (
    "Sorry, the analysis of this photo failed on our side. Please send it again later. "
    "If a spot worries you, do not wait for us: see a doctor."
)

# Reasons a photo is refused, by the stable codes used in the audit trail.
REJECTION_ADVICE: dict[RefusalCode, str] = {
    RefusalCode.TOO_LARGE: (
        "The file is larger than {max_mb} MB. Please send it as a photo (Telegram compresses it), or a "
        "smaller JPEG/PNG file."
    ),
    RefusalCode.NOT_AN_IMAGE: (
        "This file is not an image I can read. Please send a photo of the spot, or a JPEG/PNG file."
    ),
    RefusalCode.UNSUPPORTED_FORMAT: "I cannot read this image format. Please send a JPEG or PNG photo.",
    RefusalCode.CORRUPT: "This image seems damaged or incomplete. Please take or export the photo again and resend it.",
    RefusalCode.EMPTY: "This file is empty. Please send the photo again.",
    RefusalCode.TOO_MANY_PIXELS: (
        "This image is far too large (in pixels) to be a photo of a spot. Please send an ordinary photo."
    ),
    RefusalCode.TOO_SMALL: "This image is too small to analyse. Please send a sharper, larger close-up photo.",
    RefusalCode.NOT_SKIN: (
        "This does not look like a close-up photo of skin. Please send a sharp, well-lit close-up of the "
        "spot, filling most of the picture."
    ),
    RefusalCode.NOT_A_LESION: (
        "I could not find a skin spot in this photo. Please send a close-up of one spot or mole on the skin, "
        "with the spot in the middle of the picture."
    ),
    RefusalCode.BLURRY: (
        "This photo is too blurred to judge the spot. Please hold the phone still, let it focus on the spot "
        "(tap the spot on the screen), and take the photo again."
    ),
    RefusalCode.TOO_DARK: (
        "This photo is too dark to judge the spot. Please take it again in good light, such as near a window "
        "in daylight, without covering the spot with a shadow."
    ),
    RefusalCode.TOO_BRIGHT: (
        "This photo is too bright (washed out) to judge the spot. Please take it again out of direct sunlight"
        " and without the flash shining straight on the skin."
    ),
    RefusalCode.LESION_TOO_SMALL: (
        "The spot is too small in this photo to judge it. Please move closer so that the spot fills a good "
        "part of the picture (it should still be sharp), and take the photo again."
    ),
    RefusalCode.DOWNLOAD_FAILED: "I could not download this file from Telegram. Please send the photo again.",
}

RISK_ADVICE: dict[RiskLevel, str] = {
    RiskLevel.HIGH: (
        "HIGH risk. Please see a doctor or dermatologist soon, within two weeks; show them this photo. "
        "If the spot is bleeding, growing fast or changing, go sooner."
    ),
    RiskLevel.MEDIUM: (
        "MEDIUM risk. A malignant or pre-malignant lesion cannot be ruled out. Please have it checked by a "
        "doctor in the coming weeks."
    ),
    RiskLevel.LOW: (
        "LOW risk. The spot looks most like a benign lesion. Keep an eye on it: if it changes in size, shape "
        "or colour, bleeds or itches, see a doctor. Low risk is not no risk."
    ),
}

# The melanoma headline follows the policy's finding, so it never contradicts the ranking below it.
MELANOMA_HEADLINE: dict[MelanomaFinding, str] = {
    MelanomaFinding.LIKELY: (
        "⚠️ Signs of melanoma: melanoma is the most likely type for this spot. This is not a diagnosis, but "
        "please book a dermatologist appointment promptly."
    ),
    MelanomaFinding.CANNOT_RULE_OUT: (
        "⚠️ Melanoma cannot be ruled out: another type is more likely (see below), but the model sees enough "
        "signs of melanoma that a dermatologist should look at this spot promptly."
    ),
}


def rejection(code: RefusalCode, max_mb: int) -> str:
    return "Sorry, I cannot analyse this file. " + REJECTION_ADVICE[code].format(max_mb=max_mb)


# What the patient reads when the analysis failed on our side, by failure code.
FAILURE_TEXT: dict[FailureCode, str] = {
    FailureCode.ENQUEUE_FAILED: ENQUEUE_FAILED,
    FailureCode.TIME_LIMIT: ANALYSIS_FAILED,
    FailureCode.TELEGRAM_UNAVAILABLE: ANALYSIS_FAILED,
    FailureCode.INTERNAL_ERROR: ANALYSIS_FAILED,
    FailureCode.WORKER_LOST: ANALYSIS_FAILED,
}


def failure(code: FailureCode) -> str:
    return FAILURE_TEXT[code]


def help_text(max_mb: int) -> str:
    return HELP.format(max_mb=max_mb)


def _ranking_lines(ranking: list[dict[str, Any]], limit: int) -> list[str]:
    return [f"{entry['probability']:.0%}  {escape(entry['name'])}" for entry in ranking[:limit]]


def result(
    ranking: list[dict[str, Any]], risk: RiskLevel, melanoma_alert: bool, answers_used: Sequence[str] = ()
) -> str:
    """The patient's result (Telegram HTML); ``answers_used``: the questionnaire's answers it combined."""
    parts = []
    finding = melanoma_finding(melanoma_alert, ranking[0]["code"])
    if finding != MelanomaFinding.NONE:
        parts.append(f"<b>{MELANOMA_HEADLINE[finding]}</b>")
    parts.append("<b>Most likely lesion types</b>\n" + "\n".join(_ranking_lines(ranking, 3)))
    parts.append(f"<b>{RISK_ADVICE[risk]}</b>")
    if answers_used:
        parts.append(ANSWERS_USED.format(answers=", ".join(ANSWER_NAMES.get(name, name) for name in answers_used)))
    parts.append(f"<i>{DISCLAIMER}</i>")
    return "\n\n".join(parts)


ANSWERS_USED = "This result combines the photo with your answers about: {answers}."
ANSWER_NAMES: dict[str, str] = {
    "age": "age",
    "sex": "sex",
    "body_site": "where the spot is",
    "grew": "growth",
    "changed": "change in shape or colour",
    "bleeds": "bleeding",
    "itches": "itching",
    "hurts": "pain",
    "raised": "whether it is raised",
}


def clinician_alert(
    job_id: str,
    ranking: list[dict[str, Any]],
    risk: RiskLevel,
    melanoma_alert: bool,
    model_version: str,
    answers: PatientAnswers | None = None,
) -> str:
    """Caption for the photo forwarded to clinicians (Telegram HTML; a caption holds 1,024 characters)."""
    heading = {
        MelanomaFinding.LIKELY: "MELANOMA ALERT (melanoma likely)",
        MelanomaFinding.CANNOT_RULE_OUT: "MELANOMA ALERT (melanoma cannot be ruled out)",
        MelanomaFinding.NONE: "High-risk result",
    }[melanoma_finding(melanoma_alert, ranking[0]["code"])]
    lines = [
        f"<b>SkinSense: {heading}</b>",
        f"Risk: {risk.value}",
        *_ranking_lines(ranking, 7),
        f"Job: <code>{escape(job_id)}</code>",
        f"Model: {escape(model_version)}",
    ]
    known = {} if answers is None else answers.model_dump(mode="json", exclude_none=True)
    if known:
        given = ", ".join(f"{ANSWER_NAMES[name]}: {_answer_value(value)}" for name, value in known.items())
        lines.append(f"Patient's answers: {escape(given)}")
    return "\n".join(lines)


def _answer_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# --- Consent (GDPR Art. 9: health data needs explicit consent) ------------------------------------------------
# A change to PRIVACY means a new PRIVACY_VERSION: every patient is asked again before their next photo.
PRIVACY_VERSION = "2026-11-26"

PRIVACY = (
    "<b>Before we start: your privacy</b>\n\n"
    "<b>What SkinSense is:</b> a screening aid that gives an early read of a photo of a skin spot and a few "
    "answers you give. <b>What it is not:</b> a diagnosis or a doctor.\n\n"
    "<b>What we store:</b> your answers to a few short questions (age range, sex, where the spot is, how it "
    "changed), the result, and a fingerprint of the photo (a code computed from it that cannot be turned back "
    "into the photo). <b>We never store the photo itself.</b> You are identified only by a code derived from "
    "this chat, not by your name or number.\n\n"
    "<b>Who sees it:</b> when a result is high risk, the photo and the result are sent to the clinic's "
    "clinicians so that they can follow up.\n\n"
    "<b>How long:</b> your answers, results and the photo's fingerprint are erased automatically when the "
    "clinic's retention period ends (at least six months after the analysis, as the law on such systems "
    "asks), leaving only an anonymous record that an analysis took place; sooner if you erase them.\n\n"
    "<b>Erasing everything:</b> send /delete at any time: your consent, answers and results are erased at "
    "once. /privacy shows this text again.\n\n"
    f"Version {PRIVACY_VERSION}. Do you agree that SkinSense analyses your photos and answers as described?"
)

CONSENT_AGREE_BUTTON = "I agree"
CONSENT_DECLINE_BUTTON = "No thanks"

CONSENT_GIVEN = "Thank you. Send a close-up photo of one skin spot whenever you are ready."
CONSENT_GIVEN_PHOTO_PENDING = "Thank you. I am analysing the photo you sent."
CONSENT_DECLINED = (
    "Understood: nothing was analysed and nothing about you was stored. If you change your mind, send /start."
)
PRIVACY_AGREED = "You agreed to this text on {date}. Send /delete to erase everything about you."

DELETED = (
    "Done: your consent, answers and results are erased ({jobs} analyses). SkinSense will ask for your "
    "consent again before it analyses anything."
)

# --- The questionnaire (skippable; while the photo is analysed) ---------------------------------------------


def _question_texts() -> dict[Question, str]:
    return {
        Question.CONFIRM_PROFILE: "Last time you told me: {profile}. Is that still right?",
        Question.AGE: "How old are you?",
        Question.SEX: "What is your sex?",
        Question.BODY_SITE: "Where on the body is the spot?",
        Question.GREW: "Has the spot grown recently?",
        Question.CHANGED: "Has it changed in shape or colour?",
        Question.BLEEDS: "Does it bleed?",
        Question.ITCHES: "Does it itch?",
        Question.HURTS: "Does it hurt?",
        Question.RAISED: "Is it raised above the skin?",
    }


QUESTIONNAIRE_INTRO = (
    "While I analyse your photo, a few quick questions help me read it better (tap a button; "
    '"Don\'t know" is always fine, "Skip" ends the questions).'
)
QUESTION_TEXTS: dict[Question, str] = _question_texts()
QUESTIONNAIRE_STEP = "{intro}\n\n<b>Question {number} of {total}</b>\n{question}"
QUESTIONNAIRE_DONE = "Thank you for your answers. Your result follows in a moment."
QUESTIONNAIRE_SKIPPED = "Questions skipped. Your result, from the photo alone, follows in a moment."
QUESTIONNAIRE_CLOSED = "These questions are closed."

DONT_KNOW_BUTTON = "Don't know"
SKIP_BUTTON = "Skip"
YES_NO_BUTTONS: dict[YesNo, str] = {YesNo.YES: "Yes", YesNo.NO: "No"}
PROFILE_BUTTONS: dict[ProfileChoice, str] = {ProfileChoice.KEEP: "Yes, still right", ProfileChoice.CHANGE: "Change"}
AGE_BUTTONS: dict[AgeRange, str] = {
    AgeRange.UNDER_20: "under 20",
    AgeRange.TWENTIES: "20-29",
    AgeRange.THIRTIES: "30-39",
    AgeRange.FORTIES: "40-49",
    AgeRange.FIFTIES: "50-59",
    AgeRange.SIXTIES: "60-69",
    AgeRange.SEVENTIES: "70-79",
    AgeRange.EIGHTY_PLUS: "80 or over",
}
SEX_BUTTONS: dict[Sex, str] = {Sex.FEMALE: "Female", Sex.MALE: "Male"}
BODY_SITE_BUTTONS: dict[BodySite, str] = {site: site.value.capitalize() for site in BodySite}


def remembered_profile(age_range: AgeRange | None, sex: Sex | None) -> str:
    """ "age 40-49, female" (what the patient told us last time)."""
    parts = []
    if age_range is not None:
        parts.append(f"age {AGE_BUTTONS[age_range]}")
    if sex is not None:
        parts.append(SEX_BUTTONS[sex].lower())
    return ", ".join(parts)


def question_step(question: Question, number: int, total: int, profile: str = "") -> str:
    """One step of the questionnaire (Telegram HTML)."""
    text = QUESTION_TEXTS[question].format(profile=escape(profile))
    return QUESTIONNAIRE_STEP.format(intro=QUESTIONNAIRE_INTRO, number=number, total=total, question=text)
