"""An album's id is the same whichever bot process takes its photos (a restart or a failover mid-album would
otherwise split one album into two replies), differs between chats, and does not carry Telegram's group id."""

from __future__ import annotations

from bot.albums import album_id_of


def test_one_album_one_id_in_any_process_and_another_chat_another_id() -> None:
    group = "13579246801357"
    first = album_id_of("c" * 32, group)
    assert album_id_of("c" * 32, group) == first, "computed again, as another process would"
    assert album_id_of("d" * 32, group) != first, "the same group id in another chat is another album"
    assert album_id_of("c" * 32, "24680") != first
    assert group not in first and len(first) == 32
