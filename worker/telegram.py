"""The workers' Telegram client: python-telegram-bot's ``Bot``, driven from synchronous Celery tasks.

Each worker process owns one event loop and one ``Bot`` on it (``TelegramClient.open``, called from
``worker_process_init``, so never in the prefork parent); every call runs on that loop to completion. PTB's
typed errors come through unchanged, and worker/tasks.py maps them onto the retry policy (``is_transient``):
``RetryAfter`` waits what Telegram says, ``NetworkError``/``TimedOut`` (network trouble, 5xx) back off,
``BadRequest``/``Forbidden`` are never retried. The token never reaches a log line (shared/logs.py).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.request import HTTPXRequest

from shared.config import Settings

T = TypeVar("T")


class FileTooLarge(Exception):
    """The file is over the size we download."""


def is_transient(error: BaseException) -> bool:
    """Worth retrying the same request later: flood control, network trouble, Telegram's 5xx."""
    return isinstance(error, RetryAfter) or (isinstance(error, NetworkError) and not isinstance(error, BadRequest))


def retry_after_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int form will become a timedelta
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramClient:
    """The few Bot API calls the worker makes, each run to completion on this process's event loop."""

    def __init__(self, bot: Bot, loop: asyncio.AbstractEventLoop) -> None:
        self.bot = bot
        self._loop = loop

    @classmethod
    def open(cls, settings: Settings) -> TelegramClient:
        if settings.telegram_token is None:
            raise RuntimeError("SKINSENSE_TELEGRAM_TOKEN is not set")
        loop = asyncio.new_event_loop()
        bot = Bot(
            settings.telegram_token.get_secret_value(),
            base_url=settings.bot_api_base,
            base_file_url=settings.bot_file_base,
            request=HTTPXRequest(connect_timeout=10, read_timeout=30, write_timeout=30),
        )
        return cls(bot, loop)

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(call)

    def download_file(self, file_id: str, max_bytes: int) -> bytes:
        """getFile, then the download; refuses a file over ``max_bytes`` before downloading when it can."""
        telegram_file = self._run(self.bot.get_file(file_id))
        if (telegram_file.file_size or 0) > max_bytes:
            raise FileTooLarge(f"file of {telegram_file.file_size} bytes is over the limit")
        data = bytes(self._run(telegram_file.download_as_bytearray()))
        if len(data) > max_bytes:
            raise FileTooLarge(f"file of {len(data)} bytes is over the limit")
        return data

    def edit_text(self, chat_id: int, message_id: int, text: str) -> None:
        self._run(self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id, parse_mode=ParseMode.HTML))

    def send_text(self, chat_id: int, text: str) -> int:
        """Sends a message; returns its id."""
        return self._run(self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)).message_id

    def send_photo(self, chat_id: int, file_id: str, caption: str) -> None:
        self._run(self.bot.send_photo(chat_id, file_id, caption=caption, parse_mode=ParseMode.HTML))

    def send_document(self, chat_id: int, file_id: str, caption: str) -> None:
        self._run(self.bot.send_document(chat_id, file_id, caption=caption, parse_mode=ParseMode.HTML))

    def close(self) -> None:
        self._run(self.bot.shutdown())
        self._loop.close()
