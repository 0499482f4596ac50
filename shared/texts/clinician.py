"""What clinicians read: alerts, their buttons' texts, /pending, /case, /stats and the answers to their presses."""

from __future__ import annotations

from html import escape
from typing import Any

from shared.answers import PatientAnswers
from shared.labels import (
    MALIGNANT_CODES,
    MelanomaFinding,
    melanoma_finding,
)
from shared.questionnaire import age_range_of
from shared.texts.patient import PRIVACY_VERSION
from shared.texts.questionnaire import AGE_BUTTONS
from shared.texts.result import ANSWER_NAMES, MAX_MESSAGE_LENGTH, answer_value

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


# Under a resolved alert, for the clinic's own figures (by shared.audit.ClinicalFinding and Referral values).
CONCLUSION_BUTTONS: dict[str, str] = {
    "mel": "Melanoma",
    "bcc": "Basal cell carcinoma",
    "scc": "Squamous cell carcinoma",
    "akiec": "Actinic keratosis",
    "bkl": "Benign keratosis",
    "nv": "Mole (naevus)",
    "df": "Dermatofibroma",
    "vasc": "Vascular lesion",
    "other": "Something else",
    "cannot_tell": "Cannot tell from the photo",
}
REFERRAL_BUTTONS: dict[str, str] = {
    "biopsy": "Referred for a biopsy",
    "appointment": "Referred for an appointment",
    "none": "No referral",
}
FINDING_NAMES: dict[str, str] = {**CONCLUSION_BUTTONS, "nv": "mole (naevus)", "other": "another diagnosis"}
OUTCOME_QUESTION = "For the clinic's figures: what do you conclude it is, and did you refer?"
PRESS_CONCLUDED = "Recorded: {finding}. Did you refer the patient?"
PRESS_REFERRED = "Recorded: {referral}. When the biopsy's result comes, send /case {job} biopsy RESULT."
PRESS_NOT_RESOLVED = "Resolve the alert first; then record what you concluded."
PRESS_NOT_CONCLUDED = "Record what you concluded first."
CASE_BIOPSY_USAGE = (
    "Send /case followed by the job id, the word biopsy and the result, e.g. /case 3f2a9c41 biopsy melanoma. "
    "Results: {results}."
)
CASE_BIOPSY_RECORDED = "Recorded for job {job}: the biopsy found {finding}."

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
# The prompt's first line names the alert and the clinician (bot/clinician_presses.py reads them back from a reply
# to it).
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
    "/case JOB_ID biopsy RESULT: the biopsy's result, for the clinic's figures (e.g. /case 3f2a9c41 biopsy "
    "melanoma)\n"
    "/stats: alerts today and this week, median times to review\n"
    "Once you resolve an alert, its buttons ask what you concluded and whether you referred: the clinic's own "
    "figures (skinsense audit performance) come from them\n"
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
    given = ", ".join(f"{ANSWER_NAMES[name]}: {answer_value(value)}" for name, value in known.items())
    return f"Patient's answers: {escape(given)}"


def clinician_state(view: Any) -> str:
    """One line: who has the alert, and how it ended (with what the clinician concluded, whether they referred,
    and the biopsy's result, or the question about them under the root)."""
    if view.state == "resolved":
        resolution = RESOLUTION_TEXT[str(view.resolution)]
        line = f"✅ Resolved by {escape(view.resolved_by or '?')} at {_when(view.resolved_at)}: {resolution}"
        return line + _outcome_lines(view)
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


def _outcome_lines(view: Any) -> str:
    conclusion = getattr(view, "conclusion", None)
    if conclusion is None:
        return f"\n{OUTCOME_QUESTION}" if view.is_root else ""
    lines = f"\nConcluded: {FINDING_NAMES[str(conclusion)]} ({escape(view.concluded_by or '?')})"
    if view.referral is not None:
        lines += f"; {REFERRAL_BUTTONS[str(view.referral)].lower()}"
    if view.biopsy_result is not None:
        lines += f"\nBiopsy: {FINDING_NAMES[str(view.biopsy_result)]}"
    return lines


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
