"""Every text a patient or clinician reads, in one place (plain text or Telegram HTML), for review and translation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from shared.answers import AnswerEffect, BodySite, PatientAnswers, Sex
from shared.audit import MediaKind
from shared.images import MAX_FILE_BYTES
from shared.labels import (
    CLASS_NAMES,
    EVERYDAY_NAMES,
    MALIGNANT_CODES,
    MelanomaFinding,
    PhotoKind,
    RiskLevel,
    melanoma_finding,
)
from shared.outcomes import FailureCode, RefusalCode
from shared.questionnaire import AgeRange, ProfileChoice, Question, YesNo, age_range_of, site_token

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
    "4. The result follows as soon as you have answered (or skipped) the questions.\n\n"
    "SkinSense reads ordinary phone photos and dermatoscope photos (taken through a skin magnifier); phone photos "
    "are harder for it, so treat the result as a first hint only.\n\n"
    f"{DISCLAIMER}"
)

ABOUT = (
    "<b>About SkinSense</b>\n\n"
    "SkinSense is a screening aid: it reads a photo of one skin spot, and the answers you give, and says which "
    "types of spot it looks most like, how likely each is, and how soon a doctor should see it.\n\n"
    "<b>What it is not:</b> a diagnosis. Only a doctor who examines the spot, often with a dermatoscope or a "
    "biopsy, can diagnose it. SkinSense can be wrong both ways: it can call a harmless spot high risk, and it "
    "can miss a skin cancer. Each result says how often it missed cancers on photos like yours in its tests.\n\n"
    "<b>How it works:</b> a neural network trained on thousands of dermatoscope photos and on phone photos of "
    "lesions whose diagnosis is known. It first judges what kind of photo it was given, then uses the model "
    "and the risk thresholds measured for that kind. Phone photos are harder for it than dermatoscope "
    "photos.\n\n"
    f"{DISCLAIMER}\n\n"
    "If the spot bleeds and the bleeding will not stop, go to urgent care now.\n\n"
    "/history shows your past results, /privacy what is stored, /delete erases everything about you."
)

NOT_A_PHOTO = (
    "I can only read photos of skin lesions. Please send a photo of the spot (or a JPEG/PNG file). Type /help for tips."
)
# A text message: the patient may be telling us something worrying, which a bot must not leave unanswered.
NOT_A_PHOTO_TEXT = (
    "I cannot read messages, only photos of the skin, so please do not rely on me for what you wrote. If a spot "
    "worries you (it is new, growing, changing, bleeding, itching or hurting), please see a doctor: that matters "
    "more than anything I can say. To have a spot looked at here, send me a close-up photo of it. /help has tips."
)

# A group chat (or channel) that is not a clinician chat: one patient per chat, so patients are served in a private
# chat only (bot/private_chats.py). Said at most once an hour per chat; nothing sent there is analysed or stored.
PRIVATE_CHAT_ONLY = (
    "SkinSense works in a private chat only: open a private chat with me (tap my name, then Message) and send "
    "your photo there. Your photos, answers and results are for you alone, so I do not analyse or store "
    "anything sent in a group."
)
PRIVATE_CHAT_ONLY_PRESS = "SkinSense works in a private chat only: open a private chat with me."  # a button's answer

# Sent just under the questionnaire: the result waits for its answers (or Skip, or its time-out), and says so.
ANALYSING = (
    "Analysing your photo... Your result will appear here as soon as you have answered the questions above "
    "(or tapped Skip)."
)


TOO_MANY_UPDATES = (
    "You are sending messages faster than I can answer them, so I will not answer the next ones for about a "
    "minute. Nothing is wrong; please wait a moment, then send the photo (or tap the button) again. If a spot "
    "worries you, do not wait for me: see a doctor."
)


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

ERASED_IN_PROGRESS = "No result for this photo: you erased your data with /delete."
CONSENT_WITHDRAWN_IN_PROGRESS = (
    "No result for this photo: you withdrew your consent, so it will not be analysed. If you change your mind, "
    "send /start and then the photo again."
)

# A status message that went out only after the answer (the chat's allowance held it): it points to the answer.
ANSWERED_ABOVE = "My answer for this photo is in the message above, which replies to it."

# Delivery (worker/reconciler.py): a patient kept waiting is told so once; a job we could not recover, why.
TAKING_LONGER = (
    "Analysing your photo... this is taking longer than usual, sorry. There is no need to send it again: "
    "your result will appear here."
)
STALLED = (
    "Sorry, SkinSense could not analyse this photo: something went wrong on our side and we could not "
    "recover in time. Please send the photo again later. If a spot worries you, do not wait for us: see a doctor."
)

# Reasons a photo is refused, by the stable codes used in the audit trail.
REJECTION_ADVICE: dict[RefusalCode, str] = {
    RefusalCode.TOO_LARGE: (
        "It is larger than {max_mb} MB. Please send it as a photo (Telegram compresses it), or a smaller JPEG/PNG file."
    ),
    RefusalCode.NOT_AN_IMAGE: ("It is not an image I can read. Please send a photo of the spot, or a JPEG/PNG file."),
    RefusalCode.UNSUPPORTED_FORMAT: (
        "I cannot read its image format. Please send it as a photo instead, or as a JPEG or PNG file."
    ),
    RefusalCode.CORRUPT: "It seems damaged or incomplete. Please take or export the photo again and resend it.",
    RefusalCode.EMPTY: "It is empty. Please send the photo again.",
    RefusalCode.TOO_MANY_PIXELS: (
        "It is far too large (in pixels) to be a photo of a spot. Please send an ordinary photo."
    ),
    RefusalCode.TOO_SMALL: "It is too small to analyse. Please send a sharper, larger close-up photo.",
    RefusalCode.NOT_SKIN: (
        "It does not look like a close-up photo of skin. Please send a sharp, well-lit close-up of the "
        "spot, filling most of the picture."
    ),
    RefusalCode.NOT_A_LESION: (
        "I could not find a skin spot in it. Please send a close-up of one spot or mole on the skin, "
        "with the spot in the middle of the picture."
    ),
    RefusalCode.BLURRY: (
        "It is too blurred to judge the spot. Please hold the phone still, let it focus on the spot "
        "(tap the spot on the screen), and take the photo again."
    ),
    RefusalCode.TOO_DARK: (
        "It is too dark to judge the spot. Please take it again in good light, such as near a window "
        "in daylight, without covering the spot with a shadow."
    ),
    RefusalCode.TOO_BRIGHT: (
        "It is too bright (washed out) for me to see a skin spot in it: I can only read close-up photos of skin. "
        "If it is one, please take it again out of direct sunlight and without the flash shining straight on it."
    ),
    RefusalCode.LESION_TOO_SMALL: (
        "The spot is too small in the picture to judge it. Please move closer so that the spot fills a good "
        "part of the picture (it should still be sharp), and take the photo again."
    ),
    RefusalCode.DOWNLOAD_FAILED: "I could not download it from Telegram. Please send the photo again.",
}


# What a refusal calls a file, by its MIME type (a photo sent as a photo is "this photo").
SENT_FILE_NAMES: dict[str, str] = {
    "application/pdf": "this PDF",
    "image/heic": "this HEIC photo",
    "image/heif": "this HEIF photo",
    "image/gif": "this GIF",
    "image/svg+xml": "this SVG drawing",
}
SENT_FILE_FAMILIES: dict[str, str] = {"video": "this video", "audio": "this audio file"}


def sent_name(media_kind: MediaKind, mime_type: str | None = None) -> str:
    """ "this photo", "this PDF", "this file": what the patient sent, as a refusal names it."""
    if media_kind == MediaKind.PHOTO:
        return "this photo"
    mime = (mime_type or "").lower()
    return SENT_FILE_NAMES.get(mime) or SENT_FILE_FAMILIES.get(mime.split("/")[0], "this file")


def rejection(code: RefusalCode, max_mb: int, sent: str = "this file") -> str:
    """A refusal that names what was sent (``sent``: "this photo", "this PDF", "this file")."""
    return f"Sorry, I cannot analyse {sent}. " + REJECTION_ADVICE[code].format(max_mb=max_mb)


# What the patient reads when the analysis failed on our side, by failure code.
FAILURE_TEXT: dict[FailureCode, str] = {
    FailureCode.ENQUEUE_FAILED: ENQUEUE_FAILED,
    FailureCode.TIME_LIMIT: ANALYSIS_FAILED,
    FailureCode.TELEGRAM_UNAVAILABLE: ANALYSIS_FAILED,
    FailureCode.INTERNAL_ERROR: ANALYSIS_FAILED,
    FailureCode.WORKER_LOST: ANALYSIS_FAILED,
    FailureCode.ERASED: ERASED_IN_PROGRESS,
    FailureCode.STALLED: STALLED,
    FailureCode.CONSENT_WITHDRAWN: CONSENT_WITHDRAWN_IN_PROGRESS,
}


def failure(code: FailureCode) -> str:
    return FAILURE_TEXT[code]


def help_text(max_mb: int) -> str:
    return HELP.format(max_mb=max_mb)


# How likely a type is, in words a layperson reads correctly beside a rounded figure: never "100 %" or "0 %"
# (a model's output is not a certainty), and the words carry the meaning the figure alone overstates.
LIKELIHOOD_WORDS: tuple[tuple[float, str], ...] = (
    (0.9, "very likely"),
    (0.6, "likely"),
    (0.3, "possible"),
    (0.1, "less likely"),
    (0.0, "unlikely"),
)


def percent(probability: float) -> str:
    """ "72 %", "more than 99 %", "less than 1 %": rounded, never 100 % or 0 %."""
    if probability >= 0.995:
        return "more than 99 %"
    if probability < 0.01:
        return "less than 1 %"
    return f"{round(probability * 100)} %"


def likelihood(probability: float) -> str:
    """ "very likely (more than 99 %)": the words, then the rounded figure."""
    words = next(word for floor, word in LIKELIHOOD_WORDS if probability >= floor)
    return f"{words} ({percent(probability)})"


def ranking_line(code: str, probability: float) -> str:
    """One line of a patient's ranking (Telegram HTML): the type's name, then how likely it is."""
    return f"{escape(lesion_name(code))}: {likelihood(probability)}"


# --- The patient's result ------------------------------------------------------------------------------------
# Plain language first: a headline that follows the policy (models/policy.py), the three most likely types by
# their everyday and medical names, the risk with what to do, how soon and where, which answers moved it, what
# kind of photo it was and how reliable SkinSense measured itself on that kind, and a one-line disclaimer.

SHORT_DISCLAIMER = (
    "A screening aid, not a diagnosis: if a spot worries you, see a doctor whatever this says. More: /about"
)


def everyday_name(code: str) -> str:
    """ "an ordinary mole": the class's everyday name (shared/labels.py) as it reads inside a sentence."""
    name = EVERYDAY_NAMES[code][:1].lower() + EVERYDAY_NAMES[code][1:]
    if name.startswith(CLASS_NAMES[code].lower()):
        return name  # "melanoma, a serious skin cancer": a name, not a thing to count
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


# The medical name a patient reads, where the class's full name is a clinician's ("intraepithelial carcinoma").
PATIENT_MEDICAL_NAMES: dict[str, str] = {"akiec": "actinic keratosis"}


def lesion_name(code: str) -> str:
    """ "an ordinary mole (melanocytic nevus)": the everyday name, then the medical one when it differs."""
    everyday = everyday_name(code)
    medical = PATIENT_MEDICAL_NAMES.get(code, CLASS_NAMES[code].lower())
    return everyday if medical in everyday.lower() else f"{everyday} ({medical})"


# (headline, explanation): the explanation names the most likely type as {top}.
MELANOMA_HEADLINE: dict[MelanomaFinding, tuple[str, str]] = {
    MelanomaFinding.LIKELY: (
        "⚠️ Signs of melanoma",
        "Melanoma, the most serious skin cancer, is the most likely type for this spot. This is not a diagnosis, "
        "but please have a dermatologist look at it promptly.",
    ),
    MelanomaFinding.CANNOT_RULE_OUT: (
        "⚠️ Melanoma cannot be ruled out",
        "The most likely type is {top}, but the photo shows enough signs of melanoma that a dermatologist "
        "should look at this spot promptly.",
    ),
}
RISK_HEADLINE: dict[RiskLevel, tuple[str, str]] = {
    RiskLevel.HIGH: (
        "⚠️ Signs of a skin cancer or pre-cancer",
        "The most likely type is {top}. Taken together, skin cancers and pre-cancers are more likely than not "
        "for this spot.",
    ),
    RiskLevel.MEDIUM: (
        "This spot should be checked by a doctor",
        "The most likely type is {top}, but a skin cancer or pre-cancer cannot be ruled out.",
    ),
    RiskLevel.LOW: ("Low risk from this photo", "It looks most like {top}."),
}
MEDIUM_MALIGNANT_TOP = "The most likely type is {top}."  # MEDIUM led by a malignant type: nothing to rule out

RISK_ADVICE: dict[RiskLevel, str] = {
    RiskLevel.HIGH: (
        "<b>Risk: HIGH.</b> Please see a dermatologist, or your GP (family doctor) who can refer you, within "
        "two weeks, and show them this photo. Go sooner if the spot grows fast or changes."
    ),
    RiskLevel.MEDIUM: (
        "<b>Risk: MEDIUM.</b> Please have the spot checked by your GP (family doctor) or a dermatologist in the "
        "coming weeks, within about a month."
    ),
    RiskLevel.LOW: (
        "<b>Risk: LOW.</b> No appointment is needed for this result, but keep an eye on the spot: if it changes "
        "in size, shape or colour, or starts to bleed or itch, see your GP. Low risk is not no risk."
    ),
}
# A LOW result whose patient reported what the advice itself names as a reason to see a GP: no "no appointment".
LOW_RISK_WITH_WARNING_SIGNS = (
    "<b>Risk: LOW</b> from the photo. But you said {signs}: that alone is a reason to show the spot to your GP "
    "(family doctor) in the coming weeks, whatever the photo shows. Low risk is not no risk."
)
WARNING_SIGNS: dict[str, str] = {
    "grew": "it grew",
    "changed": "it changed in shape or colour",
    "bleeds": "it bleeds",
    "itches": "it itches",
}
RANKING_HEADING = "What it looks most like"
EXPLANATION_CAPTION = (
    "Why: warm colours on your photo show the areas that weighed most for {top}; the bars show how likely each type is."
)
URGENT_CARE = "If the spot bleeds and the bleeding will not stop, go to urgent care now."
URGENT_CARE_NOT_BLEEDING = "If it ever bleeds and the bleeding will not stop, go to urgent care."

PHOTO_KIND_SEEN: dict[PhotoKind, str] = {
    PhotoKind.DERMOSCOPIC: "SkinSense judged this to be a dermatoscope photo (taken through a skin magnifier).",
    PhotoKind.CLINICAL: "SkinSense judged this to be an ordinary phone photo (not taken through a dermatoscope).",
}
PHOTO_KIND_PLURAL: dict[PhotoKind, str] = {
    PhotoKind.DERMOSCOPIC: "dermatoscope photos",
    PhotoKind.CLINICAL: "phone photos",
}
PHOTO_KIND_SHORT: dict[PhotoKind, str] = {
    PhotoKind.DERMOSCOPIC: "dermatoscope photo",
    PhotoKind.CLINICAL: "phone photo",
}
RELIABILITY = (
    "On {kind} like {these}, SkinSense misses about {missed} in 100 skin cancers and pre-cancers (it called "
    "them low risk in its tests)."
)

ANSWERS_USED = "This result combines the photo with your answers ({answers})."
ANSWERS_RAISED = "Raised the risk: {answers}."
ANSWERS_LOWERED = "Lowered it: {answers}."
ANSWERS_BARELY_MOVED = "They changed the risk very little."
# What the answers did to the chance of a skin cancer or pre-cancer, when they moved it more than a little.
ANSWERS_MOVED_CHANCE = (
    "Together, they {direction} the chance of a skin cancer or pre-cancer from {before} (the photo alone) to {after}."
)
NOTICEABLE_CHANGE = 0.05  # a change of the malignant share smaller than this "changed the risk very little"
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
# An answer as the patient gave it, in "Raised the risk: it grew, it bleeds.": {answer: (if yes, if no)}.
ANSWER_GIVEN: dict[str, tuple[str, str]] = {
    "grew": ("it grew", "it did not grow"),
    "changed": ("it changed", "it did not change"),
    "bleeds": ("it bleeds", "it does not bleed"),
    "itches": ("it itches", "it does not itch"),
    "hurts": ("it hurts", "it does not hurt"),
    "raised": ("it is raised", "it is flat"),
}
ANSWER_ABOUT_YOU: dict[str, str] = {"age": "your age", "sex": "your sex", "body_site": "where the spot is"}


def _reads_right(name: str, effect: str, answers: Mapping[str, Any] | None) -> bool:
    """Whether "raised/lowered the risk: <answer>" is a sentence a clinician would say. A warning sign answered
    "yes" may be said to raise the risk and "no" to lower it; the answer model learned the opposite for some of
    them from a few hundred phone photos ("it bleeds" lowering melanoma), which a patient must not be told. Such
    an effect still counts in the risk and in the stated chance; it is only not named as a reason."""
    value = None if answers is None else answers.get(name)
    if name not in ANSWER_GIVEN or not isinstance(value, bool):
        return True
    return value == (effect == AnswerEffect.RAISED)


def _answer_given(name: str, answers: Mapping[str, Any] | None) -> str:
    value = None if answers is None else answers.get(name)
    if name in ANSWER_GIVEN and isinstance(value, bool):
        return ANSWER_GIVEN[name][0 if value else 1]
    return ANSWER_ABOUT_YOU.get(name, ANSWER_NAMES.get(name, name))


@dataclass(frozen=True)
class PatientResult:
    """What a patient's result says, from the job row (so /history can show it again exactly)."""

    ranking: Sequence[Mapping[str, Any]]  # Prediction.to_dict()["ranking"]: most probable first
    risk: RiskLevel
    melanoma_alert: bool
    photo_kind: PhotoKind | None = None
    malignant_told_low_per_100: float | None = None  # measured on this photo kind (the artifact's evaluation)
    answers_used: Sequence[str] = ()
    answer_effects: Mapping[str, str] = field(default_factory=dict)  # {answer: shared.answers.AnswerEffect}
    answers: Mapping[str, Any] | None = None  # the answers as given (PatientAnswers fields)
    photo_ranking: Sequence[Mapping[str, Any]] | None = None  # the photo's own ranking, before the answers

    @property
    def finding(self) -> MelanomaFinding:
        return melanoma_finding(self.melanoma_alert, str(self.ranking[0]["code"]))


def result_headline(view: PatientResult) -> str:
    """The bold headline and its sentence (Telegram HTML); it follows the policy and never contradicts the list."""
    top_code = str(view.ranking[0]["code"])
    top = escape(lesion_name(top_code))
    if view.finding != MelanomaFinding.NONE:
        headline, explanation = MELANOMA_HEADLINE[view.finding]
    else:
        headline, explanation = RISK_HEADLINE[view.risk]
        if view.risk == RiskLevel.MEDIUM and top_code in MALIGNANT_CODES:
            explanation = MEDIUM_MALIGNANT_TOP
    return f"<b>{headline}</b>\n{explanation.format(top=top)}"


def _ranking_section(view: PatientResult) -> str:
    lines = [ranking_line(str(entry["code"]), float(entry["probability"])) for entry in view.ranking[:3]]
    return f"<b>{RANKING_HEADING}</b>\n" + "\n".join(lines)


def _answers_section(view: PatientResult) -> str | None:
    if not view.answers_used:
        return None
    parts = [ANSWERS_USED.format(answers=", ".join(ANSWER_NAMES.get(name, name) for name in view.answers_used))]
    for effect, text in ((AnswerEffect.RAISED, ANSWERS_RAISED), (AnswerEffect.LOWERED, ANSWERS_LOWERED)):
        names = [
            _answer_given(name, view.answers)
            for name, moved in view.answer_effects.items()
            if moved == effect and _reads_right(name, moved, view.answers)
        ]
        if names:
            parts.append(text.format(answers=", ".join(names)))
    moved = _malignant_share_moved(view)
    if moved is not None:
        before, after = moved
        direction = "raised" if after > before else "lowered"
        parts.append(ANSWERS_MOVED_CHANCE.format(direction=direction, before=percent(before), after=percent(after)))
    elif len(parts) == 1:
        parts.append(ANSWERS_BARELY_MOVED)
    return " ".join(parts)


def _malignant_share(ranking: Sequence[Mapping[str, Any]]) -> float:
    return sum(float(entry["probability"]) for entry in ranking if str(entry["code"]) in MALIGNANT_CODES)


def _malignant_share_moved(view: PatientResult) -> tuple[float, float] | None:
    """(photo alone, with the answers): the chance of a skin cancer or pre-cancer, when the answers moved it by
    at least NOTICEABLE_CHANGE, or when the rounded figures differ (so "very little" is never said of a change the
    patient can read)."""
    if view.photo_ranking is None:
        return None
    before, after = _malignant_share(view.photo_ranking), _malignant_share(view.ranking)
    if abs(after - before) < NOTICEABLE_CHANGE and percent(before) == percent(after):
        return None
    return before, after


def _photo_section(view: PatientResult) -> str | None:
    if view.photo_kind is None:
        return None
    parts = [PHOTO_KIND_SEEN[view.photo_kind]]
    if view.malignant_told_low_per_100 is not None:
        missed = round(view.malignant_told_low_per_100)
        parts.append(
            RELIABILITY.format(
                kind=PHOTO_KIND_PLURAL[view.photo_kind],
                these="this one",
                missed="fewer than 1" if missed < 1 else str(missed),
            )
        )
    return " ".join(parts)


def warning_signs(view: PatientResult) -> list[str]:
    """The changes the patient reported that RISK_ADVICE[LOW] tells them to see a GP for."""
    answers = view.answers or {}
    return [sign for name, sign in WARNING_SIGNS.items() if answers.get(name) is True]


def risk_advice(view: PatientResult) -> str:
    """What to do: the risk level's advice; a LOW result with reported warning signs says to see a GP."""
    signs = warning_signs(view)
    if view.risk == RiskLevel.LOW and signs:
        listed = signs[0] if len(signs) == 1 else ", ".join(signs[:-1]) + " and " + signs[-1]
        return LOW_RISK_WITH_WARNING_SIGNS.format(signs=listed)
    return RISK_ADVICE[view.risk]


def urgent_care(view: PatientResult) -> str:
    """The urgent-care line, as it reads for a patient who said the spot does not bleed, or did not say."""
    return URGENT_CARE_NOT_BLEEDING if (view.answers or {}).get("bleeds") is False else URGENT_CARE


def result_body(view: PatientResult) -> str:
    """The result without its disclaimer (Telegram HTML): what an album's combined reply repeats per photo."""
    parts = [
        result_headline(view),
        _ranking_section(view),
        f"{risk_advice(view)} {urgent_care(view)}",
        _answers_section(view),
        _photo_section(view),
    ]
    return "\n\n".join(part for part in parts if part)


# --- An album: the photos sent together get one reply (and one explanation picture each) ---------------------
ANALYSING_ALBUM = "Analysing your photos... this usually takes a few seconds. You will get one answer for all of them."
ALBUM_HEADING = "<b>Your {count} photos</b>"
ALBUM_HEADING_ONE = "<b>Your photo</b>"
# Photos of an album recorded after its reply went out (held until consent, or slow to arrive): their own message.
ALBUM_LATER_HEADING = "<b>More of the photos you sent together</b> (they arrived after the answer above)"
ALBUM_ADVICE_HEADING = "<b>What to do</b> (for the highest risk among your photos)"
ALBUM_PHOTO = "<b>Photo {number}: {headline}</b>\n{explanation}\n{ranking}\n{risk} risk, {kind}"
ALBUM_REFUSED = "<b>Photo {number}:</b> {refusal}"
ALBUM_PICTURE_CAPTION = "Photo {number}. {caption}"
MAX_MESSAGE_LENGTH = 4000  # Telegram's limit is 4,096 characters; an album's reply is split under it


@dataclass(frozen=True)
class AlbumPhoto:
    """One photo of an album as its reply shows it: its number, and its result or its refusal."""

    number: int
    result: PatientResult | None = None
    refusal: str | None = None


def _album_photo(photo: AlbumPhoto) -> str:
    if photo.result is None:
        return ALBUM_REFUSED.format(number=photo.number, refusal=photo.refusal or "")
    view = photo.result
    headline, explanation = result_headline(view).removeprefix("<b>").split("</b>\n", 1)
    lines = [ranking_line(str(e["code"]), float(e["probability"])) for e in view.ranking[:3]]
    kind = "photo" if view.photo_kind is None else PHOTO_KIND_SHORT[view.photo_kind]
    return ALBUM_PHOTO.format(
        number=photo.number,
        headline=headline,
        explanation=explanation,
        ranking="\n".join(lines),
        risk=view.risk.value.upper(),
        kind=kind,
    )


def album_result(photos: Sequence[AlbumPhoto], later: bool = False) -> list[str]:
    """The one reply to an album (Telegram HTML), split into messages under Telegram's length limit; ``later``:
    for photos of the album recorded after its reply went out."""
    results = [photo.result for photo in photos if photo.result is not None]
    heading = ALBUM_LATER_HEADING if later else ALBUM_HEADING_ONE if len(photos) == 1 else ALBUM_HEADING
    sections = [heading.format(count=len(photos)), *(_album_photo(photo) for photo in photos)]
    if results:
        highest = max(results, key=lambda view: (list(RiskLevel).index(view.risk), bool(warning_signs(view))))
        sections.append(f"{ALBUM_ADVICE_HEADING}\n{risk_advice(highest)} {URGENT_CARE}")
        measured = {view.photo_kind: view.malignant_told_low_per_100 for view in results if view.photo_kind}
        for kind, per_100 in measured.items():
            if per_100 is not None:
                missed = round(per_100)
                sections.append(
                    RELIABILITY.format(
                        kind=PHOTO_KIND_PLURAL[kind], these="these", missed="fewer than 1" if missed < 1 else missed
                    )
                )
    sections.append(f"<i>{SHORT_DISCLAIMER}</i>")
    chunks: list[str] = []
    for section in sections:
        if chunks and len(chunks[-1]) + 2 + len(section) <= MAX_MESSAGE_LENGTH:
            chunks[-1] = f"{chunks[-1]}\n\n{section}"
        else:
            chunks.append(section)
    return chunks


def result(view: PatientResult) -> str:
    """The patient's result (Telegram HTML), with the short disclaimer once."""
    return f"{result_body(view)}\n\n<i>{SHORT_DISCLAIMER}</i>"


def _answer_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# --- Consent (GDPR Art. 9: health data needs explicit consent) ------------------------------------------------
# A change to PRIVACY means a new PRIVACY_VERSION: every patient is asked again before their next photo.
PRIVACY_VERSION = "2026-11-26.2"

PRIVACY = (
    "<b>Before we start: your privacy</b>\n\n"
    "<b>What SkinSense is:</b> a screening aid that gives an early read of a photo of a skin spot and a few "
    "answers you give. <b>What it is not:</b> a diagnosis or a doctor.\n\n"
    "<b>What we store:</b> your answers to a few short questions (age range, sex, where the spot is, how it "
    "changed), the result, and a fingerprint of the photo (a code computed from it that cannot be turned back "
    "into the photo). <b>We never store the photo itself.</b> You are identified only by a code derived from "
    "this chat, not by your name or number.\n\n"
    "<b>Who sees it:</b> when a result is high risk, the photo and the result are sent to the clinic's "
    "clinicians so that they can follow up; they may send you a message here, for example to suggest an "
    "appointment or to ask for a better photo.\n\n"
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
# "No thanks" from a patient who agreed to an earlier text: what they sent then is still stored.
CONSENT_DECLINED_WITH_DATA = (
    "Understood: SkinSense will analyse nothing more for you. What you sent before is still stored under the "
    "earlier privacy text ({jobs} analyses and your answers); send /delete to erase it now. If you change your "
    "mind, send /start."
)
PRIVACY_AGREED = (
    "You agreed to this text on {date}. To stop, tap <b>Withdraw my consent</b>: nothing more is analysed, and "
    "what you sent stays stored until you send /delete, which erases everything about you."
)
CONSENT_WITHDRAW_BUTTON = "Withdraw my consent"

DELETE_CONFIRM = (
    "<b>Erase everything about you?</b>\n\n"
    "This erases your consent, your answers, your remembered age and sex, and all your results "
    "({jobs} analyses), for good: they cannot be brought back. SkinSense keeps only an anonymous record that "
    "analyses took place (when, and how they ended), which no one can link to you."
)
DELETE_CONFIRM_BUTTON = "Erase everything"
DELETE_CANCEL_BUTTON = "Keep my data"
DELETE_CANCELLED = "Nothing was erased."
DELETED = (
    "Done: your consent, answers and results are erased ({jobs} analyses). SkinSense will ask for your "
    "consent again before it analyses anything."
)

# --- /history ---------------------------------------------------------------------------------------------------
HISTORY_EMPTY = "You have no results stored. Send a close-up photo of a skin spot to get one."
HISTORY_HEADING = "<b>Your results</b> (newest first; tap a number to see one in full)"
HISTORY_ENTRY = "{number}. {date}: {risk} risk, {top} ({kind})"
HISTORY_GONE = "This result is no longer stored (it was erased)."
HISTORY_RESULT_HEADING = "<b>Your result for the photo you sent on {date}</b>"


def sent_on(moment: datetime) -> str:
    """ "26 Nov 2026, 14:05 UTC": when a photo was sent, as the patient reads it."""
    return moment.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def history_entry(number: int, received_at: datetime, view: PatientResult) -> str:
    kind = "photo" if view.photo_kind is None else PHOTO_KIND_SHORT[view.photo_kind]
    top = everyday_name(str(view.ranking[0]["code"]))
    return HISTORY_ENTRY.format(
        number=number, date=sent_on(received_at), risk=view.risk.value.upper(), top=escape(top), kind=kind
    )


def history(entries: Sequence[str]) -> str:
    return HISTORY_EMPTY if not entries else "\n".join([HISTORY_HEADING, *entries])


SAME_PHOTO = (
    "<b>You sent this same photo on {date}.</b> The same photo always gets the same result, so here it is "
    "again. For a new look at the spot, take a new photo."
)


def same_photo_result(first_sent_at: datetime, view: PatientResult) -> str:
    """The result of a photo the patient sent before (Telegram HTML)."""
    return f"{SAME_PHOTO.format(date=sent_on(first_sent_at))}\n\n{result(view)}"


def past_result(received_at: datetime, view: PatientResult) -> str:
    """A result shown again from /history (Telegram HTML)."""
    return f"{HISTORY_RESULT_HEADING.format(date=sent_on(received_at))}\n\n{result(view)}"


# --- The questionnaire (skippable; while the photo is analysed) ---------------------------------------------


# The questionnaire: two pages in one message (bot/questionnaire.py); a tap is acknowledged with a short note.
QUESTIONNAIRE_INTRO = (
    "While I analyse your photo, a few quick questions help me read it better. Tap one answer on each line (a "
    'short note confirms each tap); leave out what you don\'t know, and "Skip" ends the questions.'
)
QUESTIONNAIRE_ABOUT_YOU = "{intro}\n\n<b>Questions 1 of 2: about you</b>\nYour age, your sex, and where the spot is."
QUESTIONNAIRE_ABOUT_YOU_AGAIN = (
    "{intro}\n\n<b>Questions 1 of 2: about you</b>\nLast time you told me: {profile}. Is that still right? "
    "And where is this spot?"
)
QUESTIONNAIRE_ABOUT_THE_SPOT = (
    "{intro}\n\n{noted}<b>Questions 2 of 2: about the spot</b>\nHas it grown recently? Has it changed in shape or "
    "colour? Does it bleed, itch or hurt? Is it raised above the skin? Tap yes or no on each line, then Done."
)
NOTED = "Noted: {answer}"
# The result replaces "Analysing your photo...", just under the questions: the closing texts say so.
QUESTIONNAIRE_DONE = 'Thank you for your answers. Your result appears below, in place of "Analysing your photo".'
QUESTIONNAIRE_DONE_NOTED = (
    'Thank you for your answers ({noted}). Your result appears below, in place of "Analysing your photo".'
)
QUESTIONNAIRE_SKIPPED = (
    'Questions skipped. Your result, from the photo alone, appears below, in place of "Analysing your photo".'
)
# Closed by the worker (worker/flow.py): nobody answered in time, or the photo needed no answers after all.
QUESTIONNAIRE_TIMED_OUT = (
    "These questions closed because there was no answer for a while. Your result below uses the photo and "
    "any answers you had given."
)
QUESTIONNAIRE_NOT_NEEDED = "No questions needed for this photo: my answer is in the message below."
QUESTIONNAIRE_CLOSED = "These questions are closed."
# A press on questionnaire buttons naming another chat's photo (forged callback data): answered, nothing changes.
QUESTIONNAIRE_NOT_YOURS = "These buttons belong to another chat: nothing was changed."

SKIP_BUTTON = "Skip"
NEXT_BUTTON = "Next"
DONE_BUTTON = "Done"
YES_NO_BUTTONS: dict[YesNo, str] = {YesNo.YES: "yes", YesNo.NO: "no"}
# The spot's questions share one keyboard: each line's buttons say which question they answer.
SPOT_QUESTION_WORDS: dict[Question, str] = {
    Question.GREW: "Grown",
    Question.CHANGED: "Changed",
    Question.BLEEDS: "Bleeds",
    Question.ITCHES: "Itches",
    Question.HURTS: "Hurts",
    Question.RAISED: "Raised",
}
SPOT_BUTTONS: dict[Question, tuple[str, str]] = {
    question: (f"{words}: {YES_NO_BUTTONS[YesNo.YES]}", f"{words}: {YES_NO_BUTTONS[YesNo.NO]}")
    for question, words in SPOT_QUESTION_WORDS.items()
}
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
# In the patient's words (HAM10000's are a clinician's: "acral", "lower extremity", "trunk").
BODY_SITE_BUTTONS: dict[BodySite, str] = {
    BodySite.FACE: "Face",
    BodySite.SCALP: "Scalp",
    BodySite.EAR: "Ear",
    BodySite.NECK: "Neck",
    BodySite.CHEST: "Chest",
    BodySite.ABDOMEN: "Belly",
    BodySite.BACK: "Back",
    BodySite.TRUNK: "Side or hips",
    BodySite.UPPER_EXTREMITY: "Arm",
    BodySite.HAND: "Hand",
    BodySite.LOWER_EXTREMITY: "Leg",
    BodySite.FOOT: "Foot",
    BodySite.ACRAL: "Palm, sole or nail",
    BodySite.GENITAL: "Genitals",
}


def remembered_profile(age_range: AgeRange | None, sex: Sex | None) -> str:
    """ "age 40-49, female" (what the patient told us last time)."""
    parts = []
    if age_range is not None:
        parts.append(f"age {AGE_BUTTONS[age_range]}")
    if sex is not None:
        parts.append(SEX_BUTTONS[sex].lower())
    return ", ".join(parts)


def questionnaire_about_you(profile: str = "") -> str:
    """The first page (Telegram HTML); ``profile``: what the patient told us last time, to confirm."""
    if profile:
        return QUESTIONNAIRE_ABOUT_YOU_AGAIN.format(intro=QUESTIONNAIRE_INTRO, profile=escape(profile))
    return QUESTIONNAIRE_ABOUT_YOU.format(intro=QUESTIONNAIRE_INTRO)


def questionnaire_about_the_spot(noted: str = "") -> str:
    """The second page (Telegram HTML), after what the first page noted."""
    return QUESTIONNAIRE_ABOUT_THE_SPOT.format(
        intro=QUESTIONNAIRE_INTRO, noted=f"{NOTED.format(answer=escape(noted))}.\n\n" if noted else ""
    )


def questionnaire_done(noted: str = "") -> str:
    return QUESTIONNAIRE_DONE_NOTED.format(noted=escape(noted)) if noted else QUESTIONNAIRE_DONE


def answers_noted(
    age_range: AgeRange | None, sex: Sex | None, body_site: BodySite | None, spot: Mapping[Question, bool]
) -> str:
    """ "age 40-49, female, on the back; grown: yes, bleeds: no": what the patient told us, in their words."""
    about_you = remembered_profile(age_range, sex)
    if body_site is not None:
        where = f"on the {BODY_SITE_BUTTONS[body_site].lower()}"
        about_you = f"{about_you}, {where}" if about_you else where
    about_spot = ", ".join(SPOT_BUTTONS[question][0 if value else 1].lower() for question, value in spot.items())
    return "; ".join(part for part in (about_you, about_spot) if part)


def noted_toast(question: Question, value: str) -> str:
    """The short note a tap gets ("Noted: age 40-49"): the answer, as the patient chose it."""
    if question == Question.CONFIRM_PROFILE:
        answer = "still right" if ProfileChoice(value) == ProfileChoice.KEEP else "let's change it"
    elif question == Question.AGE:
        answer = f"age {AGE_BUTTONS[AgeRange(value)]}"
    elif question == Question.SEX:
        answer = next(label for sex, label in SEX_BUTTONS.items() if sex.value == value).lower()
    elif question == Question.BODY_SITE:
        answer = next(label for site, label in BODY_SITE_BUTTONS.items() if site_token(site) == value).lower()
    else:
        answer = SPOT_BUTTONS[question][0 if YesNo(value) == YesNo.YES else 1].lower()
    return NOTED.format(answer=answer)


# --- Clinicians: alerts, their buttons and commands (shared/clinicians.py, bot/clinicians.py) ----------------
# Privacy texts whose wording covers a clinician's message to the patient (see PRIVACY: "they may send you a
# message here"); a patient who agreed only to an older text is not contacted, and the clinician is told.
PRIVACY_VERSIONS_COVERING_CONTACT: frozenset[str] = frozenset({PRIVACY_VERSION})

CLINICIAN_BUTTONS: dict[str, str] = {  # by shared.audit.ClinicianActionKind value
    "claim": "I'll review",
    "no_action": "Reviewed: no action needed",
    "appointment": "Needs an appointment",
    "better_photo": "Ask for a better photo",
    "write": "Write to the patient",
}
# "Reviewed: no action needed" on a melanoma alert asks first (by shared.audit.ClinicianActionKind value).
CLINICIAN_CONFIRM_BUTTONS: dict[str, str] = {"confirm_no_action": "Yes, close it", "cancel": "Cancel"}
RESOLUTION_TEXT: dict[str, str] = {  # by shared.audit.AlertResolution value
    "no_action": "reviewed, no action needed",
    "appointment": "needs an appointment",
    "better_photo": "a better photo was asked for",
}

# To the patient, when a clinician asks for it (and their consent covers it).
PATIENT_APPOINTMENT = (
    "A message from the clinic's team about the photo you sent on {date}: a clinician looked at it and would "
    "like you to have the spot examined. Please book an appointment with a doctor or dermatologist in the "
    "next two weeks, and show them the photo. This is a precaution, not a diagnosis.\n\n"
    "If the spot bleeds, grows fast or changes, go sooner."
)
PATIENT_BETTER_PHOTO = (
    "A message from the clinic's team about the photo you sent on {date}: a clinician looked at it and would "
    "like a clearer photo to judge the spot. When you can, please send a new close-up here: in daylight, in "
    "focus (tap the spot on the screen), with the spot filling a good part of the picture.\n\n"
    "If the spot worries you in the meantime, see a doctor."
)
# A clinician's own words ("Write to the patient"), HTML-escaped, under a heading that says who wrote them.
PATIENT_CLINICIAN_MESSAGE = (
    "<b>A message from the clinic's team about the photo you sent on {date}</b>, written for you by a clinician "
    "who looked at it:\n\n"
    "<blockquote>{text}</blockquote>\n\n"
    "<i>Replies here are read by SkinSense, not by a person. If you need to talk to someone about the spot, see "
    "your doctor; if it bleeds, grows fast or changes, go soon.</i>"
)

# Answers to a clinician's press (a short pop-up: answerCallbackQuery holds 200 characters).
PRESS_REFUSED = "Only the clinic's clinicians can use these buttons."
PRESS_UNKNOWN = "This alert no longer exists (the patient may have erased their data)."
PRESS_CLAIMED = "It is yours: the other clinicians see that you are reviewing it."
PRESS_ALREADY_CLAIMED = "Already taken by {who}."
PRESS_RESOLVED = "Recorded: {resolution}."
PRESS_ALREADY_RESOLVED = "Already resolved by {who} ({resolution})."
PRESS_PATIENT_TOLD = "Recorded: {resolution}. The patient was sent a message."
PRESS_NO_CONSENT = "Recorded: {resolution}. No message could be sent: the patient has not agreed to be contacted."
PRESS_NO_CONTACT = "Recorded: {resolution}. No message could be sent: the patient can no longer be reached here."
PRESS_PATIENT_ERASED = (
    "Recorded: {resolution}. No message could be sent: the patient erased their data (or it passed the retention "
    "period), so SkinSense no longer knows who they are."
)
PRESS_CONFIRM_NO_ACTION = (
    "This is a melanoma alert. Close it with no action? Tap \u201cYes, close it\u201d under the alert to confirm, "
    "or Cancel."
)
PRESS_CANCELLED = "Cancelled: the alert stays as it was."
PRESS_PHOTO_ALREADY_ASKED = "A better photo was already asked for by {who}; the alert is waiting for it."

# "Write to the patient": the prompt (a ForceReply in the chat that pressed) and what the clinician reads after.
# The prompt's first line names the alert and the clinician (bot/clinicians.py reads them back from a reply to it).
WRITE_MAX_CHARACTERS = 1000
WRITE_PROMPT = (
    "✍️ <b>Message to patient {patient}</b> about job <code>{job_id}</code>, for {who} (Telegram id "
    "{user_id})\n\n"
    "Reply to this message with what the patient should read (at most {limit} characters). SkinSense sends it as "
    "a message from the clinic's team about the photo they sent on {date}, saying that replies are not read by a "
    "person. Only your reply is sent; it does not resolve the alert."
)
WRITE_PLACEHOLDER = "Your message to patient {patient}"  # at most 64 characters (Telegram)
PRESS_WRITE_PROMPTED = "Write your message as a reply to the prompt below."
WRITE_SENT = "Sent to patient {patient}. The alert stays as it was (not resolved)."
WRITE_TOO_LONG = (
    "Not sent: your message has {length} characters, at most {limit} can be sent. Reply to the prompt again with "
    "a shorter text."
)
WRITE_NOT_SENT: dict[str, str] = {  # why a message cannot reach the patient (also the answer to the press)
    "patient_erased": (
        "No message was sent: the patient erased their data (or it passed the retention period), so SkinSense no "
        "longer knows who they are."
    ),
    "no_consent": "No message was sent: the patient has not agreed to be contacted.",
    "no_contact": "No message was sent: the patient can no longer be reached here.",
}
WRITE_ALREADY_RESOLVED = (
    "No message was sent: the alert was resolved by {who} ({resolution}), and SkinSense no longer keeps the "
    "patient's contact."
)
WRITE_UNKNOWN = "No message was sent: this alert no longer exists."
WRITE_NOT_YOURS = (
    "Nothing was sent: this prompt is another clinician's. To write to the patient yourself, tap \u201cWrite to "
    "the patient\u201d under the alert."
)
WRITE_REFUSED = "Only the clinic's clinicians can write to a patient; nothing was sent."

COMMAND_REFUSED = "Only the clinic's clinicians can use this command."
CLINICIAN_HELP = (
    "SkinSense clinician commands:\n"
    "/pending: alerts not resolved yet, oldest first (tap a /case_... line to open one)\n"
    "/case JOB_ID: one alert in full, with its buttons and the patient's earlier results (the job id's first 8 "
    "characters are enough)\n"
    "/stats: alerts today and this week, median times to review\n"
    "Under an alert, \u201cWrite to the patient\u201d sends the patient your own message: reply to the prompt it gives"
)
CASE_USAGE = (
    "Send /case followed by the job id shown in an alert (its first 8 characters are enough), e.g. /case 3f2a9c41, "
    "or tap a /case_... line in /pending."
)
CASE_NOT_FOUND = "No alert for job {job_id} (it may have been erased at the patient's request)."
CASE_AMBIGUOUS = "More than one alert's job id starts with {job_id}: send more of it."
NOTHING_PENDING = "No alert is waiting: every alert is resolved."

_HEADINGS: dict[str, str] = {
    "likely": "MELANOMA ALERT (melanoma likely)",
    "cannot_rule_out": "MELANOMA ALERT (melanoma cannot be ruled out)",
    "none": "High-risk result",
}
_KIND_PREFIX: dict[str, str] = {
    "alert": "",
    "reminder": "⏰ REMINDER: not claimed yet. ",
    "escalation": "⚠️ ESCALATED: not resolved in time. ",
    "case": "",  # a clinician's /case copy
}
POSSIBLY_REPEATED = "(This may repeat a message that already reached you: a network error hid whether it arrived.)"
PHOTO_NOT_ATTACHED = (
    "The patient's photo could not be attached: Telegram refused it. If you need to see the spot, use "
    "\u201cAsk for a better photo\u201d."
)


def _when(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%d %H:%M UTC"))


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h {minutes % 60:02d} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


def _clinician_ranking(ranking: list[dict[str, Any]]) -> list[str]:
    """Classes above 1 %, most likely first (no "0%" lines)."""
    return [f"{entry['probability']:.0%}  {escape(entry['name'])}" for entry in ranking if entry["probability"] > 0.01]


def _why_high(view: Any) -> str:
    from shared.labels import MALIGNANT_CODES

    malignant = sum(e["probability"] for e in view.ranking if e["code"] in MALIGNANT_CODES)
    melanoma = next((e["probability"] for e in view.ranking if e["code"] == "mel"), 0.0)
    finding = melanoma_finding(view.melanoma_alert, view.ranking[0]["code"])
    if finding == MelanomaFinding.LIKELY:
        return f"melanoma is the most likely class ({melanoma:.0%})"
    if finding == MelanomaFinding.CANNOT_RULE_OUT:
        return f"melanoma {melanoma:.0%} is above the alert threshold (malignant classes together {malignant:.0%})"
    return f"malignant or pre-malignant classes together {malignant:.0%} (50% or more is high risk)"


def _answers_line(answers: PatientAnswers) -> str:
    """The answers as the patient gave them: the age as the range they chose ("80 or over"), not the
    representative age the model was given."""
    known = answers.model_dump(mode="json", exclude_none=True)
    if not known:
        return "Patient's answers: none given"
    if answers.age is not None:
        known["age"] = AGE_BUTTONS[age_range_of(answers.age)]
    given = ", ".join(f"{ANSWER_NAMES[name]}: {_answer_value(value)}" for name, value in known.items())
    return f"Patient's answers: {escape(given)}"


def clinician_state(view: Any) -> str:
    """One line: who has the alert, and how it ended."""
    if view.state == "resolved":
        resolution = RESOLUTION_TEXT[str(view.resolution)]
        return f"✅ Resolved by {escape(view.resolved_by or '?')} at {_when(view.resolved_at)}: {resolution}"
    if view.state == "awaiting_photo":
        asked = f" by {escape(view.photo_asked_by)}" if view.photo_asked_by else ""
        since = f" at {_when(view.photo_asked_at)}" if view.photo_asked_at else ""
        if view.patient_told_at is None:
            return (
                f"📷 A better photo was asked for{asked}{since}, but the patient could not be told: not resolved, "
                "close it another way"
            )
        return f"📷 Waiting for the better photo the patient was asked for{asked}{since}: not resolved"
    if view.state == "claimed":
        return f"👩‍⚕️ Being reviewed by {escape(view.claimed_by or '?')} (since {_when(view.claimed_at)})"
    return "🔴 Open: nobody has claimed it yet"


def clinician_alert(
    view: Any, *, kind: str = "alert", possibly_repeated: bool = False, photo_not_attached: bool = False
) -> str:
    """The alert's text, under its photo (Telegram HTML, at most 4,096 characters): heading, state, ranking,
    risk and why, photo kind, answers, the patient's pseudonym and history, the thread, job and model; and
    whether the photo could not be sent with it."""
    heading = _HEADINGS[melanoma_finding(view.melanoma_alert, view.ranking[0]["code"]).value]
    earlier = view.earlier_results
    history = (
        "no earlier results"
        if not earlier
        else f"{len(earlier)} earlier result{'s' if len(earlier) > 1 else ''}: "
        + ", ".join(f"{r.risk or 'refused'} ({r.received_at:%Y-%m-%d})" for r in earlier[:8])
        + (" ..." if len(earlier) > 8 else "")
    )
    lines = [
        f"<b>{_KIND_PREFIX[kind]}SkinSense: {heading}</b>",
        clinician_state(view),
        "",
        f"<b>Risk: {view.risk.upper()}</b>, because {_why_high(view)}",
        *_clinician_ranking(view.ranking),
        f"Photo: {view.photo_kind or 'unknown kind'}",
        _answers_line(view.answers),
        f"Patient: {view.patient_ref}, {history}",
    ]
    if len(view.thread_photos) > 1:
        forwarded = sum(1 for p in view.thread_photos if p.forwarded)
        held = len(view.thread_photos) - forwarded
        lines.append(
            f"Thread: {len(view.thread_photos)} high-risk photos from this patient within the hour"
            + (f" ({held} not forwarded, to avoid a flood: /case JOB_ID shows them)" if held else "")
        )
        lines += [f"  • <code>{p.job_id}</code>{'' if p.forwarded else ' (not forwarded)'}" for p in view.thread_photos]
    lines += [
        f"Job: <code>{view.job_id}</code>",
        f"Model: {escape(view.model_version)}",
        f"Alert sent: {_when(view.created_at)}",
    ]
    if photo_not_attached:
        lines.append(f"<i>{PHOTO_NOT_ATTACHED}</i>")
    if possibly_repeated:
        lines.append(f"<i>{POSSIBLY_REPEATED}</i>")
    return "\n".join(lines)


def clinician_photo_caption(
    view: Any, *, kind: str = "alert", possibly_repeated: bool = False, with_picture: bool = False
) -> str:
    """The caption of the forwarded photo (at most 1,024 characters); the details follow in the text below it.
    A later photo of a thread says which thread it belongs to."""
    heading = _HEADINGS[melanoma_finding(view.melanoma_alert, view.ranking[0]["code"]).value]
    if view.is_root:
        picture = " With the explanation picture (where the model looked)." if with_picture else ""
        caption = f"{_KIND_PREFIX[kind]}SkinSense: {heading}, patient {view.patient_ref}.{picture} Details below."
    else:
        number = next((i for i, p in enumerate(view.thread_photos, 1) if p.job_id == view.job_id), 0)
        ranking = "; ".join(line.replace("  ", " ") for line in _clinician_ranking(view.ranking)[:3])
        caption = (
            f"Photo {number} of patient {view.patient_ref}'s thread (same hour): {heading}, risk {view.risk.upper()}."
            f" {ranking}. Job {view.job_id}. Use the buttons of the thread's first alert."
        )
    return caption + (f"\n{POSSIBLY_REPEATED}" if possibly_repeated else "")


PENDING_MORE = "… and {count} more (the oldest are listed first)"


def pending_state(view: Any) -> str:
    """/pending: where an unresolved thread stands (``view``: its root alert)."""
    if view.state == "awaiting_photo":
        state = f"waiting for a better photo (asked for by {view.claimed_by or '?'})"
    elif view.state == "claimed":
        state = f"claimed by {view.claimed_by or '?'}"
    else:
        state = "open, not claimed" + (" (reminded)" if view.reminded_at else "")
    return state + (", escalated" if view.escalated_at else "")


def pending_finding(risk: str, ranking: list[dict[str, Any]], melanoma_alert: bool) -> str:
    """/pending: a thread's risk and most likely type, e.g. "HIGH risk, melanoma alert, most likely Melanoma (62%)"."""
    top = ranking[0]
    finding = melanoma_finding(melanoma_alert, top["code"])
    alert = ", melanoma alert" if finding != MelanomaFinding.NONE else ""
    return f"{risk.upper()} risk{alert}, most likely {top['name']} ({top['probability']:.0%})"


def pending_list(lines: list[tuple[str, str, str, str, float]]) -> str:
    """/pending: (case command, patient, risk and most likely type, state line, age in seconds) per unresolved
    thread, oldest first. The case command (``/case_3f2a9c41``) is one word, so Telegram makes it tappable."""
    if not lines:
        return NOTHING_PENDING
    text = f"<b>{len(lines)} alert{'s' if len(lines) > 1 else ''} waiting</b> (oldest first)"
    for shown, (command, patient, finding, state, age) in enumerate(lines):
        row = f"• {_age(age)} old, {escape(patient)}: {escape(finding)}; {escape(state)}\n  {escape(command)}"
        after = len(lines) - shown - 1
        room_for_more = 1 + len(PENDING_MORE.format(count=after)) if after else 0
        # Whole rows only (a cut tag makes Telegram refuse the message), and room to say what is not shown.
        if len(text) + 1 + len(row) + room_for_more > MAX_MESSAGE_LENGTH:
            return f"{text}\n{PENDING_MORE.format(count=len(lines) - shown)}"
        text = f"{text}\n{row}"
    return text


def clinician_stats(today: int, week: int, median_claim_s: float | None, median_resolution_s: float | None) -> str:
    def shown(seconds: float | None) -> str:
        return "no review yet" if seconds is None else _age(seconds)

    return (
        f"<b>Alerts</b>: {today} today, {week} in the last 7 days\n"
        f"Median time to claim: {shown(median_claim_s)}\n"
        f"Median time to resolution: {shown(median_resolution_s)} (alerts of the last 30 days)"
    )
