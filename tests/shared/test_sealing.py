"""Sealing (shared/sealing.py): payloads come back as sealed, are unreadable without the key, refuse tampering
and wrong keys, and survive a key rotation; the setting refuses non-keys and, in production, the development
key."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.engine import Engine

from shared.config import DEVELOPMENT_DELIVERY_KEY, Settings, parse_keys
from shared.sealing import KEY_MISMATCH, SealBroken, Sealer, delivery_key_problem


class Delivery(BaseModel):
    chat_id: int
    status_message_id: int
    file_id: str


DELIVERY = Delivery(chat_id=-1001234567890, status_message_id=42, file_id="AgACAgIAAxkBAAIBQ2file")


def test_sealed_model_comes_back_equal() -> None:
    sealer = Sealer([Fernet.generate_key().decode()])
    token = sealer.seal(DELIVERY)
    assert sealer.unseal(token, Delivery) == DELIVERY
    assert sealer.unseal_dict(sealer.seal({"a": 1})) == {"a": 1}


def test_sealed_token_shows_nothing_of_the_payload() -> None:
    sealer = Sealer([Fernet.generate_key().decode()])
    token = sealer.seal(DELIVERY)
    decoded = base64.urlsafe_b64decode(token.encode())
    for secret in ("1001234567890", "AgACAgIAAxkBAAIBQ2file", "chat_id"):
        assert secret not in token
        assert secret.encode() not in decoded
    # Random IV: the same payload never gives the same token (equal chats cannot be matched at rest).
    assert sealer.seal(DELIVERY) != token


def test_wrong_key_or_tampering_is_refused() -> None:
    sealer = Sealer([Fernet.generate_key().decode()])
    token = sealer.seal(DELIVERY)
    with pytest.raises(SealBroken):
        Sealer([Fernet.generate_key().decode()]).unseal(token, Delivery)
    tampered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    with pytest.raises(SealBroken):
        sealer.unseal(tampered, Delivery)
    with pytest.raises(SealBroken):
        sealer.unseal("not a token at all é", Delivery)


def test_rotation_first_key_seals_every_key_unseals() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_before = Sealer([old]).seal(DELIVERY)
    rotated = Sealer([new, old])
    assert rotated.unseal(sealed_before, Delivery) == DELIVERY
    resealed = rotated.reseal(sealed_before)
    assert Sealer([new]).unseal(resealed, Delivery) == DELIVERY  # the old key can now be dropped
    with pytest.raises(SealBroken):
        Sealer([old]).unseal(rotated.seal(DELIVERY), Delivery)


def test_setting_accepts_a_key_list_and_refuses_non_keys(tmp_env: pytest.MonkeyPatch) -> None:
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    tmp_env.setenv("SKINSENSE_DELIVERY_KEY", f"{first}, {second}")
    assert parse_keys(Settings().delivery_key) == [first, second]
    tmp_env.setenv("SKINSENSE_DELIVERY_KEY", "a passphrase, not a key")
    with pytest.raises(ValidationError, match="not a Fernet key"):
        Settings()


def test_development_key_is_the_default_and_refused_in_production(tmp_env: pytest.MonkeyPatch) -> None:
    assert Settings().delivery_key == SecretStr(DEVELOPMENT_DELIVERY_KEY)
    production = {
        "SKINSENSE_ENVIRONMENT": "production",
        "SKINSENSE_TELEGRAM_TOKEN": "1:x",
        "SKINSENSE_CHAT_HASH_KEY": "k" * 32,
        "SKINSENSE_FLOWER_PASSWORD": "p" * 16,
        "SKINSENSE_DATABASE_URL": "postgresql://skinsense:secret@db.internal:5432/skinsense",
    }
    for key, value in production.items():
        tmp_env.setenv(key, value)
    with pytest.raises(ValidationError, match="SKINSENSE_DELIVERY_KEY"):
        Settings()
    # Even as an old key kept for rotation.
    tmp_env.setenv("SKINSENSE_DELIVERY_KEY", f"{Fernet.generate_key().decode()},{DEVELOPMENT_DELIVERY_KEY}")
    with pytest.raises(ValidationError, match="SKINSENSE_DELIVERY_KEY"):
        Settings()
    tmp_env.setenv("SKINSENSE_DELIVERY_KEY", Fernet.generate_key().decode())
    assert Settings().environment == "production"


def test_every_process_must_open_the_deployments_sealed_check_value(audit_engine: Engine) -> None:
    """Issue 23: a host with another SKINSENSE_DELIVERY_KEY sealed what the others could not open, and the patient
    was never answered. The first process seals a known value; one whose keys cannot open it is told why."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert delivery_key_problem(audit_engine, Sealer([old])) is None, "the first process writes the check value"
    assert delivery_key_problem(audit_engine, Sealer([old])) is None
    assert delivery_key_problem(audit_engine, Sealer([new])) == KEY_MISMATCH, "another key: not ready"
    # A rotation: the new key first, the old one kept; the check value is sealed again under the new key...
    assert delivery_key_problem(audit_engine, Sealer([new, old])) is None
    # ... so that once the old key is dropped, the new one alone still opens it.
    assert delivery_key_problem(audit_engine, Sealer([new])) is None
    assert delivery_key_problem(audit_engine, Sealer([old])) == KEY_MISMATCH
