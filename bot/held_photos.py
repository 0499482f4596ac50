"""Photos sent before the patient answered the privacy question, held in the audit database until they do, so
that "I agree" on any bot process, after a restart or a failover, analyses them without the patient sending
them again. Only the Telegram message is kept (its file id and chat: no image bytes), sealed, and for at most
HOLD_S: "No thanks" and /delete drop it at once, and an older one is dropped the next time anyone looks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, func, select

from shared.audit import HeldPhoto, utc_now
from shared.sealing import SealBroken, Sealer

HOLD_S = 3600.0
MAX_HELD_PHOTOS = 10  # per chat (an album is at most 10)


class HeldPhotoStore:
    def __init__(self, engine: Engine, sealer: Sealer) -> None:
        self._engine = engine
        self._sealer = sealer

    def _drop_expired(self, session: Session) -> None:
        session.exec(delete(HeldPhoto).where(col(HeldPhoto.held_at) < utc_now() - timedelta(seconds=HOLD_S)))

    def count(self, chat_ref: str) -> int:
        with Session(self._engine) as session:
            self._drop_expired(session)
            session.commit()
            return int(session.exec(select(func.count()).where(col(HeldPhoto.chat_ref) == chat_ref)).one())

    def held_before(self, chat_ref: str, update_key: str) -> bool:
        """Whether another photo of this chat was held before the one ``update_key`` brought: the privacy question
        went out with that one (a chat's album asks once). Not this photo itself: a replayed update finds its own
        photo held by a bot that may have died before asking."""
        with Session(self._engine) as session:
            own = session.get(HeldPhoto, update_key)
            since = own.held_at if own is not None else utc_now()
            earlier = select(func.count()).where(
                col(HeldPhoto.chat_ref) == chat_ref,
                col(HeldPhoto.update_key) != update_key,
                col(HeldPhoto.held_at) <= since,
            )
            return int(session.exec(earlier).one()) > 0

    def hold(self, chat_ref: str, update_key: str, message: dict[str, Any]) -> bool:
        """Hold this photo's message; False when the chat holds MAX_HELD_PHOTOS already or this update is held
        (the same update handled again)."""
        with Session(self._engine) as session:
            held = session.exec(select(func.count()).where(col(HeldPhoto.chat_ref) == chat_ref)).one()
            if held >= MAX_HELD_PHOTOS:
                return False
            session.add(HeldPhoto(update_key=update_key, chat_ref=chat_ref, sealed_message=self._sealer.seal(message)))
            try:
                session.commit()
            except IntegrityError:
                return False
            return True

    def held(self, chat_ref: str) -> list[tuple[str, dict[str, Any]]]:
        """(update key, message) of each photo the chat holds, oldest first; one that no key opens is dropped."""
        with Session(self._engine) as session:
            self._drop_expired(session)
            rows = session.exec(
                select(HeldPhoto).where(col(HeldPhoto.chat_ref) == chat_ref).order_by(col(HeldPhoto.held_at))
            ).all()
            opened: list[tuple[str, dict[str, Any]]] = []
            for row in rows:
                try:
                    opened.append((row.update_key, self._sealer.unseal_dict(row.sealed_message)))
                except SealBroken:
                    session.delete(row)
            session.commit()
            return opened

    def release(self, update_key: str) -> None:
        """The photo is taken (its job recorded): no longer held."""
        with Session(self._engine) as session:
            session.exec(delete(HeldPhoto).where(col(HeldPhoto.update_key) == update_key))
            session.commit()

    def drop(self, chat_ref: str) -> int:
        """ "No thanks" or /delete: every photo the chat holds is forgotten; how many."""
        with Session(self._engine) as session:
            dropped = session.exec(delete(HeldPhoto).where(col(HeldPhoto.chat_ref) == chat_ref)).rowcount
            session.commit()
            return int(dropped)
