"""Photos held until the patient answers the privacy question (bot/held_photos.py), on a migrated audit
database (SQLite and PostgreSQL): sealed, per chat, ten at most, the same update once, dropped by "No thanks"
and /delete, forgotten after an hour."""

from __future__ import annotations

from datetime import timedelta

from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from bot.held_photos import HOLD_S, MAX_HELD_PHOTOS, HeldPhotoStore
from shared.audit import HeldPhoto, utc_now
from shared.sealing import Sealer

A, B = "a" * 32, "b" * 32


def store(engine: Engine) -> HeldPhotoStore:
    return HeldPhotoStore(engine, Sealer([Fernet.generate_key().decode()]))


def test_held_photos_come_back_per_chat_in_order_and_are_stored_sealed(audit_engine: Engine) -> None:
    held = store(audit_engine)
    assert held.hold(A, "k1", {"message_id": 1, "photo": [{"file_id": "secret-file-id"}]})
    assert held.hold(A, "k2", {"message_id": 2})
    assert held.hold(B, "k3", {"message_id": 3})
    assert not held.hold(A, "k1", {"message_id": 1}), "the same update handled again is held once"
    assert [key for key, _ in held.held(A)] == ["k1", "k2"] and held.count(A) == 2
    assert held.held(A)[0][1]["photo"][0]["file_id"] == "secret-file-id"
    with Session(audit_engine) as session:
        assert all("secret-file-id" not in row.sealed_message for row in session.exec(select(HeldPhoto)).all())
    held.release("k1")
    assert [key for key, _ in held.held(A)] == ["k2"]
    assert held.drop(A) == 1 and held.held(A) == [] and held.count(B) == 1


def test_a_chat_holds_ten_photos_at_most_and_none_for_longer_than_an_hour(audit_engine: Engine) -> None:
    held = store(audit_engine)
    for number in range(MAX_HELD_PHOTOS):
        assert held.hold(A, f"k{number}", {"message_id": number})
    assert not held.hold(A, "one-more", {"message_id": 99})
    with Session(audit_engine) as session:
        session.exec(update(HeldPhoto).values(held_at=utc_now() - timedelta(seconds=HOLD_S + 60)))
        session.commit()
    assert held.held(A) == [], "an hour on, the patient is asked to send the photo again"
    with Session(audit_engine) as session:
        assert session.exec(select(HeldPhoto).where(col(HeldPhoto.chat_ref) == A)).all() == []


def test_the_privacy_question_goes_with_the_first_photo_held_and_again_when_that_photo_is_handled_again(
    audit_engine: Engine,
) -> None:
    """A bot killed after holding a photo and before asking: the update handled again (by it or another
    replica) finds its own photo held, and must still ask; a later photo of the same chat does not ask again."""
    held = store(audit_engine)
    assert held.hold("chat-a", "first", {"message_id": 1})
    assert not held.held_before("chat-a", "first"), "its own photo is no earlier photo"
    assert not held.held_before("chat-a", "first"), "the same update handled again still asks"
    assert held.hold("chat-a", "second", {"message_id": 2})
    assert held.held_before("chat-a", "second"), "the album's next photo: asked with the first"
    assert not held.held_before("chat-a", "first")
    assert not held.held_before("chat-b", "other"), "another chat's photos are no reason"
