"""The workers' Telegram client: python-telegram-bot's ``ExtBot``, driven from synchronous Celery tasks.

Each worker process owns one event loop and one ``ExtBot`` on it (``TelegramClient.open``, called from
``worker_process_init``, so never in the prefork parent); every call runs on that loop to completion. Every
call, the file download included, goes through the deployment's one retry policy and shared limiter
(shared/telegram_calls.py: 429 waits exactly ``retry_after`` in every process, network errors and 5xx are
retried where that is safe). What still fails comes through as PTB's typed errors, and worker/tasks.py maps
them onto task retries (``is_transient``); ``BadRequest``/``Forbidden`` are never retried. The token never
reaches a log line (shared/logs.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from telegram import InlineKeyboardMarkup, InputMediaDocument, InputMediaPhoto, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import ExtBot

from shared.config import Settings
from shared.telegram_calls import FILE_DOWNLOAD, TelegramCallLimiter, telegram_request
from shared.telegram_calls import retry_after_seconds as retry_after_seconds

T = TypeVar("T")
WORKER_MAX_WAIT_S = 10.0


class FileTooLarge(Exception):
    """The file is over the size we download."""


def is_transient(error: BaseException) -> bool:
    """Worth retrying the same request later: flood control, network trouble, Telegram's 5xx."""
    return isinstance(error, RetryAfter) or (isinstance(error, NetworkError) and not isinstance(error, BadRequest))


class TelegramClient:
    """The few Bot API calls the worker makes, each run to completion on this process's event loop."""

    def __init__(self, bot: ExtBot[None], limiter: TelegramCallLimiter, loop: asyncio.AbstractEventLoop) -> None:
        self.bot = bot
        self.limiter = limiter
        self._loop = loop

    @classmethod
    def open(cls, settings: Settings) -> TelegramClient:
        if settings.telegram_token is None:
            raise RuntimeError("SKINSENSE_TELEGRAM_TOKEN is not set")
        loop = asyncio.new_event_loop()
        # A child blocks at most WORKER_MAX_WAIT_S for Telegram; a longer pause becomes a task retry (countdown).
        limiter = TelegramCallLimiter.from_settings(settings, process="worker", max_wait_s=WORKER_MAX_WAIT_S)
        bot: ExtBot[None] = ExtBot(
            settings.telegram_token.get_secret_value(),
            base_url=settings.bot_api_base,
            base_file_url=settings.bot_file_base,
            request=telegram_request(pool_size=4),
            rate_limiter=limiter,
        )
        # Only the limiter: bot.initialize() would call getMe, and a worker must start while Telegram is away.
        loop.run_until_complete(limiter.initialize())
        return cls(bot, limiter, loop)

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(call)

    def chat_wait_s(self, chat_id: int, messages: int = 1) -> float:
        """How long ``messages`` messages to ``chat_id`` would wait now for the deployment's budgets; takes nothing."""
        return self._run(self.limiter.chat_wait_s(chat_id, messages))

    def download_file(self, file_id: str, max_bytes: int) -> bytes:
        """getFile, then the download; refuses a file over ``max_bytes`` before downloading when it can.
        A 429 or 5xx on either is retried (PTB raises on any status but 2xx, so an error page is never
        taken for the photo); what still fails is a ``TelegramError``, never bytes to decode."""
        telegram_file = self._run(self.bot.get_file(file_id))
        if (telegram_file.file_size or 0) > max_bytes:
            raise FileTooLarge(f"file of {telegram_file.file_size} bytes is over the limit")
        data = bytes(self._run(self.limiter.call(FILE_DOWNLOAD, telegram_file.download_as_bytearray)))
        if len(data) > max_bytes:
            raise FileTooLarge(f"file of {len(data)} bytes is over the limit")
        return data

    def edit_text(
        self, chat_id: int, message_id: int, text: str, reply_markup: InlineKeyboardMarkup | None = None
    ) -> None:
        self._run(
            self.bot.edit_message_text(
                text, chat_id=chat_id, message_id=message_id, parse_mode=ParseMode.HTML, reply_markup=reply_markup
            )
        )

    def delete_message(self, chat_id: int, message_id: int) -> None:
        self._run(self.bot.delete_message(chat_id, message_id))

    def send_text(
        self,
        chat_id: int,
        text: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to: int | None = None,
    ) -> int:
        """Sends a message (with buttons, or as a reply, if given); returns its id."""
        return self._run(
            self.bot.send_message(
                chat_id,
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=reply_markup,
                reply_parameters=_reply_parameters(reply_to),
            )
        ).message_id

    def send_photo(self, chat_id: int, file_id: str, caption: str, reply_to: int | None = None) -> int:
        """Sends a photo by its Telegram file id; returns the message id."""
        message = self.bot.send_photo(
            chat_id, file_id, caption=caption, parse_mode=ParseMode.HTML, reply_parameters=_reply_parameters(reply_to)
        )
        return self._run(message).message_id

    def send_document(self, chat_id: int, file_id: str, caption: str, reply_to: int | None = None) -> int:
        message = self.bot.send_document(
            chat_id, file_id, caption=caption, parse_mode=ParseMode.HTML, reply_parameters=_reply_parameters(reply_to)
        )
        return self._run(message).message_id

    def send_album(
        self,
        chat_id: int,
        items: list[str | bytes],
        caption: str,
        as_documents: bool = False,
        reply_to: int | None = None,
    ) -> list[tuple[int, str]]:
        """Sends 2-10 photos (by file id, or uploaded bytes) as one media group, the caption under the first;
        returns each message's id and its file id (so an uploaded picture can be sent again by id)."""
        kind = InputMediaDocument if as_documents else InputMediaPhoto
        media = [
            kind(item, caption=caption if number == 0 else None, parse_mode=ParseMode.HTML)
            for number, item in enumerate(items)
        ]
        sent = self._run(self.bot.send_media_group(chat_id, media, reply_parameters=_reply_parameters(reply_to)))
        return [
            (m.message_id, m.photo[-1].file_id if m.photo else m.document.file_id if m.document else "") for m in sent
        ]

    def send_picture(self, chat_id: int, picture: bytes, caption: str) -> int:
        """Uploads a picture we made (the explanation picture) as a photo; returns its message id."""
        message = self._run(self.bot.send_photo(chat_id, picture, caption=caption, parse_mode=ParseMode.HTML))
        return message.message_id

    def send_chat_action(self, chat_id: int, action: str) -> None:
        """ "upload_photo" and the like: what the patient sees the bot doing while it prepares a reply."""
        self._run(self.bot.send_chat_action(chat_id, action))

    def close(self) -> None:
        self._run(self.bot.shutdown())
        self._run(self.limiter.shutdown())
        self._loop.close()


def _reply_parameters(message_id: int | None) -> ReplyParameters | None:
    # allow_sending_without_reply: a deleted original must not stop an alert
    return None if message_id is None else ReplyParameters(message_id, allow_sending_without_reply=True)
