"""What the bot keeps in memory between updates (bot/context.py's BotData holds it; never module globals), typed.
Photos held until consent are in the database (bot/held_photos.py).

Nothing here is written to disk: a photo sent before consent is held only as its Telegram message (its
file id, no image bytes) until the patient answers the privacy question, and is forgotten on "No thanks",
/delete or a restart; a questionnaire in progress lives here until it closes (its answers are also saved on
the job row at each tap, so a restart loses only the buttons; the worker's timeout still answers the patient).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from telegram import Message

from shared.answers import BodySite, PatientAnswers, Sex
from shared.questionnaire import (
    YES_NO_QUESTIONS,
    AgeRange,
    ProfileChoice,
    Question,
    YesNo,
    age_range_of,
    sex_from_token,
    site_from_token,
)
from shared.texts import result as result_texts


class Page(StrEnum):
    ABOUT_YOU = "you"
    ABOUT_THE_SPOT = "spot"


@dataclass
class Questionnaire:
    """One photo's questionnaire in progress."""

    job_id: uuid.UUID
    chat_id: int  # in the bot's memory only, like the questionnaire itself
    chat_ref: str
    remembered_age: AgeRange | None = None
    remembered_sex: Sex | None = None
    page: Page = Page.ABOUT_YOU
    message_id: int | None = None
    confirming_profile: bool = False  # the first page asks "still right?" instead of age and sex
    age_range: AgeRange | None = None
    sex: Sex | None = None
    body_site: BodySite | None = None
    spot: dict[Question, bool] = field(default_factory=dict)
    answered: set[Question] = field(default_factory=set)
    asked_profile: bool = False  # age and sex were asked this time (so they are remembered afresh)
    # Copies of the questions the patient pressed on: a bot that died between sending them and recording the
    # message is replaced by one that sends them again, and the patient may answer either copy.
    copies: set[int] = field(default_factory=set)

    @property
    def shown_in(self) -> set[int]:
        """Every message that shows these questions (closed together)."""
        return self.copies | ({self.message_id} if self.message_id is not None else set())

    @property
    def page_questions(self) -> tuple[Question, ...]:
        if self.page == Page.ABOUT_THE_SPOT:
            return YES_NO_QUESTIONS
        if self.confirming_profile:
            return (Question.CONFIRM_PROFILE, Question.BODY_SITE)
        return (Question.AGE, Question.SEX, Question.BODY_SITE)

    @property
    def page_answered(self) -> bool:
        return all(question in self.answered for question in self.page_questions)

    @property
    def on_last_page(self) -> bool:
        return self.page == Page.ABOUT_THE_SPOT

    def answers(self) -> PatientAnswers:
        return PatientAnswers(
            age=None if self.age_range is None else self.age_range.representative_age,
            sex=self.sex,
            body_site=self.body_site,
            **{question.value: value for question, value in self.spot.items()},
        )

    def record(self, question: Question, value: str) -> None:
        """The patient's tap on ``question`` (already checked to be on the current page); a later tap on the same
        question replaces the earlier one."""
        if question == Question.CONFIRM_PROFILE:
            if ProfileChoice(value) == ProfileChoice.KEEP:
                self.age_range, self.sex = self.remembered_age, self.remembered_sex
            else:  # "Change": the page asks age and sex instead
                self.confirming_profile = False
        elif question == Question.AGE:
            self.age_range = AgeRange(value)
        elif question == Question.SEX:
            self.sex = sex_from_token(value)
        elif question == Question.BODY_SITE:
            self.body_site = site_from_token(value)
        else:
            self.spot[question] = YesNo(value) == YesNo.YES
        if question in (Question.AGE, Question.SEX):
            self.asked_profile = True
        self.answered.add(question)

    def next_page(self) -> None:
        self.page = Page.ABOUT_THE_SPOT

    def restore(self, answers: PatientAnswers | None) -> None:
        """The answers saved on the job row so far (a questionnaire taken up again after a restart)."""
        if answers is None:
            return
        if answers.age is not None:
            self.age_range = age_range_of(answers.age)
            self.answered.add(Question.AGE)
        if answers.sex is not None:
            self.sex = answers.sex
            self.answered.add(Question.SEX)
        if answers.body_site is not None:
            self.body_site = answers.body_site
            self.answered.add(Question.BODY_SITE)
        for question in YES_NO_QUESTIONS:
            value = getattr(answers, question.value)
            if value is not None:
                self.spot[question] = bool(value)
                self.answered.add(question)
        if self.confirming_profile and (self.age_range is not None or self.sex is not None):
            self.answered.add(Question.CONFIRM_PROFILE)
        # Asked this time (not kept from last time): remembered afresh when the questionnaire closes.
        self.asked_profile = not self.confirming_profile and bool({Question.AGE, Question.SEX} & self.answered)


@dataclass
class Album:
    album_id: str  # on each of its jobs (shared.audit.Job.album_id): bot/albums.album_id_of, never the media_group_id
    first: bool  # this photo is the album's first: it sends the "analysing..." message
    status: asyncio.Future[Message] = field(repr=False)
    started: float = field(default_factory=time.monotonic)

    async def status_message(self, message: Message) -> Message:
        """The album's "analysing..." message: sent by its first photo, shared by the others."""
        if not self.first:
            return await asyncio.shield(self.status)
        try:
            sent = await message.reply_text(result_texts.ANALYSING_ALBUM, do_quote=True)
        except Exception as error:
            self.status.set_exception(error)
            raise
        self.status.set_result(sent)
        return sent
