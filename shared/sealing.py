"""Sealing: small JSON payloads encrypted and authenticated (Fernet: AES-128-CBC + HMAC-SHA256) with the
deployment's key, SKINSENSE_DELIVERY_KEY, for what must be stored but never readable at rest: the chat id,
message ids and Telegram file id the workers need to answer a patient.

The setting holds one or more Fernet keys, comma-separated: the first seals, every one unseals
(``MultiFernet``), so a key is rotated by putting the new one first and dropping the old one once nothing
sealed with it remains (a delivery lives minutes; a clinician alert until it is sent). Generate a key with
``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.

    from shared.sealing import seal, unseal
    token = seal(Delivery(chat_id=..., ...))      # str, safe to store
    delivery = unseal(token, Delivery)            # validated model back; SealBroken if tampered or wrong key
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session

from shared.audit import SealedCheck
from shared.config import get_settings, parse_keys

ModelT = TypeVar("ModelT", bound=BaseModel)


class SealBroken(Exception):
    """A sealed token that none of the configured keys opens: tampered with, truncated, or sealed under a key
    that is no longer configured. Never carries the token (it may be logged)."""


class Sealer:
    """Seals and unseals JSON payloads with a list of keys: the first seals, all unseal."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a sealer needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._current = Fernet(keys[0])

    def seal(self, payload: BaseModel | Mapping[str, Any]) -> str:
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
        plain = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        return self._fernet.encrypt(plain).decode("ascii")

    def unseal_dict(self, token: str) -> dict[str, Any]:
        try:
            plain = self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SealBroken("sealed data could not be opened with the configured keys") from None
        data = json.loads(plain)
        if not isinstance(data, dict):
            raise SealBroken("sealed data is not a JSON object")
        return data

    def unseal(self, token: str, model: type[ModelT]) -> ModelT:
        return model.model_validate(self.unseal_dict(token))

    def current(self, token: str) -> bool:
        """Whether ``token`` was sealed under the current (first) key."""
        try:
            self._current.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def reseal(self, token: str) -> str:
        """The same payload sealed under the current (first) key: for rotating stored tokens."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SealBroken("sealed data could not be opened with the configured keys") from None


@lru_cache
def get_sealer() -> Sealer:
    """The process's sealer, with the keys of SKINSENSE_DELIVERY_KEY."""
    return Sealer(parse_keys(get_settings().delivery_key))


def seal(payload: BaseModel | Mapping[str, Any]) -> str:
    """``payload`` sealed with the deployment's current key (SKINSENSE_DELIVERY_KEY)."""
    return get_sealer().seal(payload)


def unseal(token: str, model: type[ModelT]) -> ModelT:
    """The payload of ``token`` as ``model``; SealBroken if no configured key opens it."""
    return get_sealer().unseal(token, model)


KEY_CHECK = "delivery-key"
KEY_CHECK_VALUE = {"sealed_by": "skinsense"}
KEY_MISMATCH = (
    "SKINSENSE_DELIVERY_KEY cannot open what this deployment sealed: every host needs the same key(s) "
    "(a new key first, the old one kept until nothing sealed with it remains)"
)


def delivery_key_problem(engine: Engine, sealer: Sealer) -> str | None:
    """None when this process's keys open the deployment's sealed check value (written by the first process
    that looks; sealed again under the current key after a rotation); else what is wrong. A database that does
    not answer is another check's problem (shared.metrics.database_reachable): None here."""
    try:
        with Session(engine) as session:
            check = session.get(SealedCheck, KEY_CHECK)
            if check is None:
                session.add(SealedCheck(name=KEY_CHECK, sealed=sealer.seal(KEY_CHECK_VALUE)))
                session.commit()
                return None
            try:
                opened = sealer.unseal_dict(check.sealed)
            except SealBroken:
                return KEY_MISMATCH
            if opened != KEY_CHECK_VALUE:
                return KEY_MISMATCH
            if not sealer.current(check.sealed):  # rotated: seal it under the new key, before the old one goes
                check.sealed = sealer.seal(KEY_CHECK_VALUE)
                session.add(check)
                session.commit()
            return None
    except IntegrityError:  # another process wrote it at the same moment: look again
        return delivery_key_problem(engine, sealer)
    except SQLAlchemyError:
        return None
