"""One log format for every process (bot, workers, sandbox, Flower, the stack runner), set here only.

Bot API URLs contain the bot token, and so can exception texts and tracebacks: every handler gets a filter
that blanks the token (and anything shaped like one), and the row values PostgreSQL quotes in its error
details, out of messages and tracebacks, which keeps the tracebacks themselves. httpx's per-request lines are
turned down as well, and python-telegram-bot's DEBUG lines (raw updates and request parameters: patient data)
are never shown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from shared.config import Settings, get_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
REDACTED = "<redacted>"
# A Telegram bot token: the bot's numeric id, a colon, 35 url-safe characters.
TOKEN_PATTERN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b")
# PostgreSQL's error details quote the values of the row or key at fault (a chat reference, answers); SQLAlchemy
# hides the statement's parameters itself (shared/db.py: hide_parameters).
DATABASE_DETAIL_PATTERN = re.compile(r"DETAIL:[^\n]*")


class RedactSecrets(logging.Filter):
    """Replaces secrets in a record's message and traceback before any handler formats it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = DATABASE_DETAIL_PATTERN.sub(f"DETAIL: {REDACTED}", text)
        return TOKEN_PATTERN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def configure_logging(settings: Settings | None = None, **_: object) -> None:
    """The one logging set-up; also Celery's ``setup_logging`` handler, so workers use it instead of Celery's."""
    settings = settings if isinstance(settings, Settings) else get_settings()
    token = settings.telegram_token.get_secret_value() if settings.telegram_token else ""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactSecrets([token]))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore"):  # a line per request, each URL with the token in it
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # python-telegram-bot logs every update and every request's parameters (chat ids, texts) at DEBUG: never
    # patient data in the logs, whatever the level asked for.
    logging.getLogger("telegram").setLevel(max(logging.INFO, root.level))
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin on every run
