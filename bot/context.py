"""The bot's one composition root: the services every handler uses, built once per process from the settings
(``BotServices.build``, called by bot/app.py), and the process's memory between updates, both reached through
PTB's typed context (``BotContext``: ``context.bot_data.services.jobs``, ``context.bot_data.questionnaires``).
No handler calls a global getter.

The stores are synchronous (SQLModel sessions); a handler calls them with ``await asyncio.to_thread(...)`` so
that a database round trip never blocks the event loop the other chats' updates share.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from telegram.ext import CallbackContext, ExtBot

from bot.held_photos import HeldPhotoStore
from bot.patients import PatientStore
from bot.rate_limit import PhotoRateLimit, RollingLimit, redis_client
from bot.state import Album, Questionnaire
from shared.audit import chat_reference
from shared.clinic.buttons import ClinicianAllowList
from shared.clinic.store import AlertStore
from shared.config import Settings, parse_keys
from shared.db import get_engine
from shared.job_store import JobStore
from shared.sealing import Sealer
from shared.spot_followups import SpotFollowupStore

MINUTE_S = 60.0  # the window of the per-chat update limit (bot/fairness.py)


@dataclass(frozen=True)
class BotServices:
    """What the handlers use, built once per process."""

    settings: Settings
    jobs: JobStore
    patients: PatientStore
    alerts: AlertStore
    held_photos: HeldPhotoStore  # photos sent before the privacy question was answered (sealed, an hour at most)
    followups: SpotFollowupStore  # reminders to photograph a spot again (bot/spots.py)
    photo_limit: PhotoRateLimit  # photos per chat per hour (bot/intake.py)
    update_limit: RollingLimit  # updates per chat (or group member) per minute (bot/fairness.py)
    clinicians: ClinicianAllowList

    @classmethod
    def build(cls, settings: Settings) -> BotServices:
        engine = get_engine(settings.database_url)
        broker = redis_client(settings)
        return cls(
            settings=settings,
            jobs=JobStore(engine),
            patients=PatientStore(engine),
            alerts=AlertStore(engine),
            held_photos=HeldPhotoStore(engine, Sealer(parse_keys(settings.delivery_key))),
            followups=SpotFollowupStore(engine, Sealer(parse_keys(settings.delivery_key))),
            photo_limit=PhotoRateLimit(
                broker, per_hour=settings.photos_per_chat_per_hour, key_prefix=settings.redis_key_prefix
            ),
            update_limit=RollingLimit(
                broker,
                limit=settings.updates_per_chat_per_minute,
                window_s=MINUTE_S,
                name="updates-per-minute",
                key_prefix=settings.redis_key_prefix,
            ),
            clinicians=ClinicianAllowList.from_settings(settings),
        )

    def chat_ref(self, chat_id: int) -> str:
        """A chat's pseudonymous reference: what the database stores and compares instead of its id."""
        return chat_reference(chat_id, self.settings.chat_hash_key.get_secret_value())


class BotData:
    """``context.bot_data``: PTB creates it (with no arguments) when the application is built; bot/app.py then
    hands in the services before any update is handled."""

    def __init__(self) -> None:
        self._services: BotServices | None = None
        self.questionnaires: dict[uuid.UUID, Questionnaire] = {}  # job id -> its questionnaire in progress
        self.albums: dict[tuple[int, str], Album] = {}  # (chat id, media group id) -> the album its photos join
        # (what, chat id, sender id) -> when a refused clinician press or command was last recorded (sampling)
        self.refusals_recorded: dict[tuple[str, int, int | None], float] = {}
        self.group_chats_told: dict[int, float] = {}  # group chat id -> when it was told "private chats only"

    @property
    def services(self) -> BotServices:
        if self._services is None:
            raise RuntimeError("the bot's services were not handed in (bot/app.py builds them)")
        return self._services

    def use(self, services: BotServices) -> None:
        self._services = services


BotContext = CallbackContext[ExtBot[Any], dict[Any, Any], dict[Any, Any], BotData]
