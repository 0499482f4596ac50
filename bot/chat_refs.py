"""A chat's pseudonymous reference (shared.audit.chat_reference under the deployment's hash key): what the
database stores and compares instead of the Telegram chat id."""

from __future__ import annotations

from shared.audit import chat_reference
from shared.config import get_settings


def chat_ref_of(chat_id: int) -> str:
    return chat_reference(chat_id, get_settings().chat_hash_key.get_secret_value())
