"""What a patient reads outside a result: the welcome, help, privacy and consent, refusals of a photo,
status messages and notices."""

from __future__ import annotations

from datetime import datetime

from shared.audit import MediaKind
from shared.images import MAX_FILE_BYTES
from shared.outcomes import FailureCode, RefusalCode

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


# The same spot over time (bot/spots.py, worker/reminders.py).
REMINDER_BUTTON = "Remind me to photograph it again"
REMINDER_STOP_BUTTON = "Stop reminders"
REMINDER_SET = (
    "I will remind you on {date}, at about this time of day, to photograph the same spot again. Send the new photo "
    "as a reply to the reminder and I will compare the two. /reminders shows or stops your reminders."
)
REMINDER_NOT_POSSIBLE = "I cannot set a reminder for this result. Send /reminders to see the ones you have."
REMINDER_STOPPED = "Stopped: no more reminders for this spot."
REMINDERS_NONE = "You have no reminders. After a result, tap \u201cRemind me to photograph it again\u201d to get one."
REMINDERS_HEADING = "Your reminders to photograph a spot again:"
REMINDERS_ALL_STOPPED = "Stopped: you will get no more reminders."
REMINDERS_STOP_ALL_BUTTON = "Stop all reminders"


def reminder(earlier: datetime) -> str:
    """The reminder: what to do, and that change is what to look for."""
    return (
        f"\u23f0 Time to photograph the spot you sent on {earlier:%d %B %Y} again.\n\n"
        "Take the new photo the same way (same distance, good daylight, the spot in the middle) and send it as a "
        "reply to this message: I will compare the two and tell you whether it looks larger, darker or otherwise "
        "changed. A spot that changes is worth showing to a doctor."
    )


def reminders_list(entries: list[tuple[datetime, datetime, bool]]) -> str:
    """/reminders: each reminder's earlier photo date, when it is (or was) due, and whether it went out."""
    lines = [REMINDERS_HEADING]
    for number, (photo_at, due_at, sent) in enumerate(entries, start=1):
        state = f"sent on {due_at:%d %B %Y}: reply to it with the new photo" if sent else f"due on {due_at:%d %B %Y}"
        lines.append(f"{number}. Spot photographed on {photo_at:%d %B %Y}: {state}")
    return "\n".join(lines)
