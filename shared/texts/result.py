"""A patient's result as they read it (Telegram HTML): the headline that follows the policy, the ranking in
words, what the answers did, what to do; an album's one reply; /history's entries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from shared.answers import AnswerEffect
from shared.audit import Job
from shared.labels import (
    CLASS_NAMES,
    EVERYDAY_NAMES,
    MALIGNANT_CODES,
    MelanomaFinding,
    PhotoKind,
    RiskLevel,
    melanoma_finding,
)

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


# Plain language first: a headline that follows the policy (models/serving/policy.py), the three most likely types by
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


# Skin outside the tones SkinSense was measured on (models/serving/skin_tone.py): it says so, plainly, and what to
# do. Outside always means darker: the measured range runs from the lightest skin down. No figures, no "ITA".
SKIN_TONE_LESS_CERTAIN = (
    "SkinSense has been tested mostly on lighter skin, and the skin in this photo looks darker than in most of the "
    "photos it was tested on, so this result is less certain."
)


SKIN_TONE_ADVICE = "If the spot worries you, please see your GP (family doctor), whatever this says."


# The skin tone is what kept this result from LOW.
SKIN_TONE_NOT_LOW = (
    "That is why it does not call this spot low risk: please have it checked by your GP (family doctor)."
)


ALBUM_SKIN_TONE = (
    "SkinSense has been tested mostly on lighter skin, and the skin in {photos} looks darker than in most of the "
    "photos it was tested on, so {results} less certain and never called low risk. If a spot worries you, please "
    "see your GP (family doctor), whatever this says."
)


PHOTO_KIND_SEEN: dict[PhotoKind, str] = {
    PhotoKind.DERMOSCOPIC: "SkinSense judged this to be a dermatoscope photo (taken through a skin magnifier).",
    PhotoKind.CLINICAL: "SkinSense judged this to be an ordinary phone photo (not taken through a dermatoscope).",
}


# A photo whose kind the picture head could not tell: both networks read it, and the more cautious risk was kept.
PHOTO_KIND_UNSURE: dict[PhotoKind, str] = {
    PhotoKind.DERMOSCOPIC: (
        "SkinSense could not tell for sure how this photo was taken. It read it as a dermatoscope photo (taken "
        "through a skin magnifier) and as a phone photo, and kept the more cautious of the two risks."
    ),
    PhotoKind.CLINICAL: (
        "SkinSense could not tell for sure how this photo was taken. It read it as an ordinary phone photo and as a "
        "dermatoscope photo (taken through a skin magnifier), and kept the more cautious of the two risks."
    ),
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


# The measured figure, where the skin is darker than SkinSense was measured on: where the figure comes from.
RELIABILITY_LIGHTER_SKIN = (
    "On {kind} of lighter skin, SkinSense misses about {missed} in 100 skin cancers and pre-cancers (it called them "
    "low risk in its tests); on skin like yours it has not been measured."
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
    "yes" may be said to raise the risk and "no" to lower it. The answer model is fitted so that a warning sign
    answered "yes" never lowers the malignant probability (models/serving/triage.py); this check keeps any
    model, an older one included, from telling a patient otherwise."""
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
    spot_change: Mapping[str, Any] | None = None  # a new photo of a spot compared with its earlier one
    skin_tone_caveat: bool = False  # the skin looks darker than SkinSense was measured on
    kind_uncertain: bool = False  # both kinds' networks read it (models/serving/screening.py)
    raised_by_skin_tone: bool = False  # and that turned LOW into MEDIUM

    @property
    def finding(self) -> MelanomaFinding:
        return melanoma_finding(self.melanoma_alert, str(self.ranking[0]["code"]))

    @classmethod
    def of_job(cls, job: Job) -> PatientResult:
        """The result a DONE job's row holds, as the patient reads it (the reply, /history, an album's reply)."""
        assert job.ranking is not None and job.risk is not None
        return cls(
            ranking=job.ranking,
            risk=RiskLevel(job.risk),
            melanoma_alert=bool(job.melanoma_alert),
            photo_kind=None if job.photo_kind is None else PhotoKind(job.photo_kind),
            malignant_told_low_per_100=job.malignant_told_low_per_100,
            answers_used=tuple(job.answers_used or ()),
            answer_effects=dict(job.answer_effects or {}),
            answers=job.answers,
            photo_ranking=job.photo_ranking,
            spot_change=job.spot_change,
            skin_tone_caveat=bool(job.skin_tone_caveat),
            kind_uncertain=job.other_kind_risk is not None,
            raised_by_skin_tone=bool(job.raised_by_skin_tone),
        )


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
    parts = [(PHOTO_KIND_UNSURE if view.kind_uncertain else PHOTO_KIND_SEEN)[view.photo_kind]]
    if view.malignant_told_low_per_100 is not None:
        missed = round(view.malignant_told_low_per_100)
        figure = "fewer than 1" if missed < 1 else str(missed)
        kind = PHOTO_KIND_PLURAL[view.photo_kind]
        if view.skin_tone_caveat:
            parts.append(RELIABILITY_LIGHTER_SKIN.format(kind=kind, missed=figure))
        else:
            parts.append(RELIABILITY.format(kind=kind, these="this one", missed=figure))
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


def skin_tone_caveat(view: PatientResult) -> str | None:
    """That the result is less certain on skin darker than SkinSense was measured on, and what to do."""
    if not view.skin_tone_caveat:
        return None
    advice = SKIN_TONE_NOT_LOW if view.raised_by_skin_tone else SKIN_TONE_ADVICE
    return f"{SKIN_TONE_LESS_CERTAIN} {advice}"


def result_body(view: PatientResult) -> str:
    """The result without its disclaimer (Telegram HTML): what an album's combined reply repeats per photo."""
    parts = [
        result_headline(view),
        _ranking_section(view),
        f"{risk_advice(view)} {urgent_care(view)}",
        skin_tone_caveat(view),
        _change_section(view),
        _answers_section(view),
        _photo_section(view),
    ]
    return "\n\n".join(part for part in parts if part)


CHANGE_WORDS = {
    "larger": "larger",
    "smaller": "smaller",
    "darker": "darker",
    "lighter": "lighter",
    "colour": "a different colour",
}
ASSESSMENT_WORDS = {
    "higher": "The analysis now rates it as more likely to need a doctor than last time.",
    "lower": "The analysis now rates it as less worrying than last time; that alone is no reason to relax.",
    "same": "The analysis rates it about the same as last time.",
}


def _change_section(view: PatientResult) -> str:
    """A new photo of a spot photographed before: what changed and what did not, in plain words, and that a
    change raised the risk (it never lowers it). Between two phone photos, size and colour can only be judged
    roughly: it says so."""
    change = view.spot_change
    if not change:
        return ""
    when = ""
    if change.get("compared_with"):
        when = f" of {datetime.fromisoformat(str(change['compared_with'])):%d %B %Y}"
    heading = f"<b>Compared with your earlier photo{when}</b>"
    assessment = ASSESSMENT_WORDS.get(str(change.get("assessment")), "")
    if not change.get("comparable"):
        reason = escape(str(change.get("reason") or "the two photos are too different"))
        return (
            f"{heading}\nI could not compare the two photos ({reason}). {assessment} Look at the spot yourself: if "
            "it has grown, changed shape or colour, bleeds or itches, show it to a doctor."
        ).replace("  ", " ")
    changes = [CHANGE_WORDS[c] for c in change.get("changes", []) if c in CHANGE_WORDS]
    if not changes:
        return (
            f"{heading}\nNo clear change in its size or colour. {assessment} "
            "Two phone photos only show a large change; keep watching it."
        ).rstrip()
    looks = " and ".join(changes)
    raised = (
        " Change is a warning sign, so I raised the risk by one level."
        if change.get("raised_risk")
        else " Change is a warning sign."
    )
    return f"{heading}\nSince then it looks {looks}.{raised} {assessment} Please show it to a doctor.".rstrip()


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
        darker = [photo.number for photo in photos if photo.result is not None and photo.result.skin_tone_caveat]
        if darker:
            sections.append(_album_skin_tone(darker))
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


def _album_skin_tone(numbers: Sequence[int]) -> str:
    """ALBUM_SKIN_TONE for the album's photos ``numbers`` (as the reply numbers them)."""
    if len(numbers) == 1:
        return ALBUM_SKIN_TONE.format(photos=f"photo {numbers[0]}", results="that result is")
    listed = ", ".join(str(number) for number in numbers[:-1]) + f" and {numbers[-1]}"
    return ALBUM_SKIN_TONE.format(photos=f"photos {listed}", results="those results are")


def result(view: PatientResult) -> str:
    """The patient's result (Telegram HTML), with the short disclaimer once."""
    return f"{result_body(view)}\n\n<i>{SHORT_DISCLAIMER}</i>"


def answer_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


HISTORY_EMPTY = "You have no results stored. Send a close-up photo of a skin spot to get one."


HISTORY_HEADING = (
    "<b>Your results</b> (newest first; tap a number to see one in full; to add a new photo of one of these "
    "spots, send it with the caption \u201csame as\u201d and its number, e.g. \u201csame as 2\u201d)"
)


HISTORY_ENTRY = "{number}. {date}: {risk} risk, {top} ({kind})"


HISTORY_SPOT = "<b>The same spot, {count} photos</b> (newest first):"


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
