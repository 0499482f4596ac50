"""Settings: names, parsing, derived Bot API URLs, and unsafe defaults refused in production."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from shared.config import Settings


def test_required_settings_exist_with_their_names(tmp_env: pytest.MonkeyPatch) -> None:
    tmp_env.setenv("SKINSENSE_TELEGRAM_TOKEN", "123:abc")
    tmp_env.setenv("SKINSENSE_TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    tmp_env.setenv("SKINSENSE_REDIS_URL", "redis://127.0.0.1:6390/3")
    tmp_env.setenv("SKINSENSE_DATABASE_URL", "postgresql://db/skinsense")
    tmp_env.setenv("SKINSENSE_CLINICIAN_CHAT_IDS", "11, 22,-1003")
    settings = Settings()
    assert settings.telegram_token is not None and settings.telegram_token.get_secret_value() == "123:abc"
    assert settings.bot_api_base == "http://127.0.0.1:8081/bot"
    assert settings.bot_file_base == "http://127.0.0.1:8081/file/bot"
    assert settings.redis_url == "redis://127.0.0.1:6390/3"
    assert settings.database_url == "postgresql://db/skinsense"
    assert settings.clinician_chat_ids == [11, 22, -1003]


def test_defaults_point_at_telegram_and_a_sqlite_file(tmp_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.clinician_chat_ids == []


def test_token_is_not_shown_in_reprs(tmp_env: pytest.MonkeyPatch) -> None:
    tmp_env.setenv("SKINSENSE_TELEGRAM_TOKEN", "123:very-secret")
    assert "very-secret" not in repr(Settings())


def production_settings() -> dict[str, str]:
    """Settings production accepts (each test takes one away or spoils it)."""
    return {
        "SKINSENSE_ENVIRONMENT": "production",
        "SKINSENSE_TELEGRAM_TOKEN": "1:x",
        "SKINSENSE_CHAT_HASH_KEY": "k" * 32,
        "SKINSENSE_DELIVERY_KEY": Fernet.generate_key().decode(),
        "SKINSENSE_FLOWER_PASSWORD": "p" * 16,
        "SKINSENSE_DATABASE_URL": "postgresql://skinsense:secret@db.internal:5432/skinsense",
    }


@pytest.mark.parametrize(
    "missing",
    [
        "SKINSENSE_TELEGRAM_TOKEN",
        "SKINSENSE_CHAT_HASH_KEY",
        "SKINSENSE_DELIVERY_KEY",
        "SKINSENSE_FLOWER_PASSWORD",
        "SKINSENSE_DATABASE_URL",  # the default is SQLite: one host's private database
    ],
)
def test_production_refuses_development_defaults(tmp_env: pytest.MonkeyPatch, missing: str) -> None:
    production = production_settings()
    for key, value in production.items():
        if key != missing:
            tmp_env.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()
    tmp_env.setenv(missing, production[missing])
    assert Settings().environment == "production"  # each one alone was what it refused


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SKINSENSE_TELEGRAM_TOKEN", ""),  # .env.example's blank
        ("SKINSENSE_CHAT_HASH_KEY", ""),
        ("SKINSENSE_CHAT_HASH_KEY", "short-key"),
        ("SKINSENSE_WEBHOOK_URL", "https://bot.example.org"),  # a webhook without its secret
    ],
)
def test_production_refuses_blank_or_weak_secrets(tmp_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    production = production_settings()
    for key, setting in production.items():
        tmp_env.setenv(key, setting)
    tmp_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
    if name == "SKINSENSE_WEBHOOK_URL":
        tmp_env.setenv("SKINSENSE_WEBHOOK_SECRET", "s" * 32)
        assert Settings().webhook_url == value
