"""Whether a patient got a final answer to a photo (a result, a refusal or an apology), and how many times: read
off the sandbox's chats, for the chaos benchmark and the tests that count answers."""

from __future__ import annotations

from typing import Any

from shared.outcomes import RefusalCode
from shared.texts import clinician as clinician_texts
from shared.texts import patient as patient_texts
from shared.texts import result as result_texts
from skinsense.sandbox import plain_text


def _final_texts() -> set[str]:
    """Every fixed text that answers a photo for good (as the sandbox shows it): each refusal and failure text,
    and any apology or give-up text in the catalogue. Results are recognised by their heading."""
    texts = set(patient_texts.FAILURE_TEXT.values())
    for module in (patient_texts, result_texts, clinician_texts):
        for name in dir(module):
            value = getattr(module, name)
            if isinstance(value, str) and any(word in name for word in ("APOLOG", "GAVE_UP", "GIVE_UP", "SORRY")):
                texts.add(value)
    return {plain_text(text, "HTML") for text in texts}


FINAL_TEXTS = _final_texts()
REFUSAL_OPENING = patient_texts.rejection(next(iter(RefusalCode)), 1, "\0").split("\0")[0]  # "Sorry, I cannot analyse "


def is_final_answer(text: str | None) -> bool:
    return bool(text) and (
        result_texts.RANKING_HEADING in str(text) or str(text).startswith(REFUSAL_OPENING) or text in FINAL_TEXTS
    )


def final_answers(chat_messages: list[dict[str, Any]], photo_message_id: int) -> int:
    """How many times the patient got a final answer to the photo: each bot reply to it whose text became (or,
    edited again, became another) final answer."""
    count = 0
    for message in chat_messages:
        if not message["from_bot"] or message.get("reply_to_message", {}).get("message_id") != photo_message_id:
            continue
        history = [*message.get("edits", []), message.get("text")]
        previous: str | None = None
        for version in history:
            if is_final_answer(version) and version != previous:
                count += 1
            previous = version
    return count
