"""The consent buttons (bot/consent.py), run in this process with stand-ins for the stores and Telegram."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from telegram import Update

from bot import consent
from bot.context import BotContext, BotData, BotServices
from shared.outcomes import FailureCode
from shared.texts import patient as patient_texts


class Recorder:
    """Stands in for the patient, job and held-photo stores and the pressed button; notes what happens, in order."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.data = f"consent|decline|{patient_texts.PRIVACY_VERSION}"

    def withdraw_consent(self, chat_ref: str) -> None:
        self.steps.append("consent withdrawn")

    def close_unanalysed(self, chat_ref: str, code: FailureCode, reason: str) -> int:
        assert code == FailureCode.CONSENT_WITHDRAWN
        self.steps.append("photos closed")
        return 1

    def job_count(self, chat_ref: str) -> int:
        return 1

    def held(self, chat_ref: str) -> list[tuple[str, dict[str, Any]]]:
        return []  # no photo waiting for the decision

    def drop(self, chat_ref: str) -> int:
        return 0

    async def answer(self, *args: Any, **kwargs: Any) -> bool:
        self.steps.append("button answered")
        return True

    async def edit_message_text(self, text: str, **kwargs: Any) -> None:
        self.steps.append("message edited")


def test_no_thanks_is_recorded_before_the_button_is_answered() -> None:
    """Under Telegram's flood control every call of the deployment waits, the answer to the button too. The
    withdrawal must not wait with it: the worker's retry at the end of the pause would analyse the photo the
    patient withdrew (issue 20: what made the 'No thanks while a photo waits' test flaky)."""
    recorder = Recorder()
    bot_data = BotData()
    bot_data.use(
        cast(
            BotServices,
            SimpleNamespace(patients=recorder, jobs=recorder, held_photos=recorder, chat_ref=lambda chat_id: "ref"),
        )
    )
    update = cast(Update, SimpleNamespace(callback_query=recorder, effective_chat=SimpleNamespace(id=4242)))
    context = cast(BotContext, SimpleNamespace(bot_data=bot_data))
    asyncio.run(consent.on_consent_choice(update, context))
    assert recorder.steps == ["consent withdrawn", "photos closed", "button answered", "message edited"]
