"""The sandbox's world: chats, messages, files, pending updates, injected faults; and Telegram's text rules."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

BOT_USER_ID = 7000000001
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # Bot API limit for getFile
MAX_TEXT = 4096
MAX_CAPTION = 1024
HTML_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "code",
    "pre",
    "a",
    "span",
    "tg-spoiler",
    "blockquote",
    "tg-emoji",
}


class BotApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


# Telegram-HTML tags and the message entity each becomes (https://core.telegram.org/bots/api#formatting-options)
_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-spoiler": "spoiler",
    "blockquote": "blockquote",
}


def _utf16_length(text: str) -> int:
    """Entity offsets and lengths count UTF-16 code units, as Telegram does."""
    return len(text.encode("utf-16-le")) // 2


class _HtmlChecker(HTMLParser):
    """Checks Telegram-HTML the way the server does (known tags, balanced), collects the plain text and the
    formatting as message entities, as Telegram returns them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # the data arrives with &lt; &amp; ... already decoded
        self.stack: list[tuple[str, dict[str, str | None], int]] = []  # tag, attributes, offset where it began
        self.text: list[str] = []
        self.length = 0
        self.entities: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise BotApiError(400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"')
        self.stack.append((tag, dict(attrs), self.length))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise BotApiError(400, f'Bad Request: can\'t parse entities: Unexpected end tag "{tag}"')
        _, attrs, offset = self.stack.pop()
        if tag == "code" and self.stack and self.stack[-1][0] == "pre":  # <pre><code class="language-x">: one entity
            language = (attrs.get("class") or "").removeprefix("language-")
            if language:
                self.stack[-1][1]["language"] = language
            return
        entity_type = _ENTITY_TYPES.get(tag)
        if tag == "span" and attrs.get("class") == "tg-spoiler":
            entity_type = "spoiler"
        if tag == "blockquote" and "expandable" in attrs:
            entity_type = "expandable_blockquote"
        length = self.length - offset
        if entity_type is None or length == 0 or (tag == "a" and not attrs.get("href")):
            return
        entity: dict[str, Any] = {"type": entity_type, "offset": offset, "length": length}
        if tag == "a":
            entity["url"] = attrs["href"]
        if tag == "pre" and attrs.get("language"):
            entity["language"] = attrs["language"]
        self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        self.length += _utf16_length(data)


def formatted_text(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The text a message shows and its formatting entities, from text in ``parse_mode`` (HTML or none)."""
    if (parse_mode or "").upper() != "HTML":
        return text, []
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        raise BotApiError(400, f'Bad Request: can\'t parse entities: unclosed tag "{checker.stack[-1][0]}"')
    return "".join(checker.text), sorted(checker.entities, key=lambda e: (e["offset"], -e["length"]))


def plain_text(text: str, parse_mode: str | None) -> str:
    return formatted_text(text, parse_mode)[0]


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str


FAULT_KINDS = ("429", "5xx", "drop", "403")
DOWNLOAD = "download"  # the fault "method" name of file downloads (``/file/bot<token>/<path>``)
EVERY_METHOD = "*"  # a rate fault for every Bot API method and the file downloads


@dataclass
class Fault:
    """The next ``remaining`` calls of ``method`` fail with this kind of fault (count-based, deterministic)."""

    method: str
    remaining: int
    retry_after: int
    kind: str = "429"
    status: int = 503


@dataclass
class RateFault:
    """Each call of ``method`` fails at random: a 429 (``retry_after``) with ``rate_429``, a 5xx (one of
    ``statuses``) with ``rate_5xx``, or is executed and its response lost (connection closed) with ``rate_drop``.
    The draws come from the sandbox's seeded generator, so a run is reproducible."""

    method: str
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_drop: float = 0.0
    retry_after: int = 1
    statuses: tuple[int, ...] = (502, 503)


@dataclass
class InjectedFault:
    """What to do to one call: answer ``status`` before executing it, or (``drop``) execute it and lose the answer."""

    kind: str
    status: int = 0
    retry_after: int = 0


@dataclass
class CallbackRecord:
    """A tap on an inline button (a callback query) and the bot's answer to it (answerCallbackQuery), if any:
    Telegram shows the answer's text as a toast, or with ``show_alert`` as a dialog the user must close."""

    query_id: str
    chat_id: int
    message_id: int
    data: str
    from_id: int
    time: float
    answered: bool = False
    text: str | None = None
    show_alert: bool = False
    url: str | None = None
    answered_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class SandboxState:
    token: str
    # Chats and users the clinic configured (SKINSENSE_CLINICIAN_CHAT_IDS / _USER_IDS): named as clinicians
    clinician_chat_ids: frozenset[int] = frozenset()
    clinician_user_ids: frozenset[int] = frozenset()
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1
    message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    file_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Like Telegram's, press ids are unique across runs (a bot recognises a redelivered press by its id).
    callback_ids: Iterator[int] = field(default_factory=lambda: iter(lambda: secrets.randbits(62), None))
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # chat id -> messages
    files: dict[str, StoredFile] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    rate_faults: dict[str, RateFault] = field(default_factory=dict)  # lower-case method name -> its rates
    fault_random: random.Random = field(default_factory=lambda: random.Random(0))
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, kind) -> faults injected
    calls: list[dict[str, Any]] = field(default_factory=list)
    callbacks: dict[str, CallbackRecord] = field(default_factory=dict)  # query id -> the tap and its answer
    webhook: dict[str, Any] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    # --- faults ---------------------------------------------------------------------------------------
    def fault_for(self, method: str) -> InjectedFault | None:
        """The fault to inject into this call of ``method`` (or ``download``), if any; counted."""
        injected = self._count_fault(method) or self._rate_fault(method)
        if injected is not None:
            self.injected[(method, injected.kind)] += 1
        return injected

    def _count_fault(self, method: str) -> InjectedFault | None:
        for fault in self.faults:
            if fault.method.lower() == method.lower() and fault.remaining > 0:
                fault.remaining -= 1
                status = {"429": 429, "403": 403}.get(fault.kind, fault.status)
                return InjectedFault(fault.kind, status, fault.retry_after)
        return None

    def _rate_fault(self, method: str) -> InjectedFault | None:
        rates = self.rate_faults.get(method.lower()) or self.rate_faults.get(EVERY_METHOD)
        if rates is None:
            return None
        draw = self.fault_random.random()
        if draw < rates.rate_429:
            return InjectedFault("429", 429, rates.retry_after)
        if draw < rates.rate_429 + rates.rate_5xx:
            return InjectedFault("5xx", self.fault_random.choice(rates.statuses))
        if draw < rates.rate_429 + rates.rate_5xx + rates.rate_drop:
            return InjectedFault("drop")
        return None

    def clear_faults(self, seed: int | None = None) -> None:
        self.faults.clear()
        self.rate_faults.clear()
        self.injected.clear()
        if seed is not None:
            self.fault_random.seed(seed)

    def fault_report(self) -> dict[str, Any]:
        injected: dict[str, dict[str, int]] = {}
        for (method, kind), count in sorted(self.injected.items()):
            injected.setdefault(method, dict.fromkeys(FAULT_KINDS, 0))[kind] = count
        return {
            "injected": injected,
            "total": {kind: sum(c for (_, k), c in self.injected.items() if k == kind) for kind in FAULT_KINDS},
            "count_faults": [vars(f) for f in self.faults if f.remaining > 0],
            "rate_faults": [{**vars(r), "statuses": list(r.statuses)} for r in self.rate_faults.values()],
        }

    # --- the patient's side ---------------------------------------------------------------------------
    def is_clinician(self, user_id: int) -> bool:
        """A configured clinician: a listed user, or a private clinician chat's own user."""
        return user_id in self.clinician_user_ids or (user_id > 0 and user_id in self.clinician_chat_ids)

    def person_name(self, user_id: int) -> str:
        return f"Dr {user_id}" if self.is_clinician(user_id) else f"Patient {user_id}"

    def user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": self.person_name(user_id)}

    def chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id < 0:  # like Telegram: groups have negative ids (a clinicians' group chat, say)
            title = f"Clinicians' group {chat_id}" if chat_id in self.clinician_chat_ids else f"Group {chat_id}"
            return {"id": chat_id, "type": "supergroup", "title": title}
        return {"id": chat_id, "type": "private", "first_name": self.person_name(chat_id)}

    def store_file(self, data: bytes, folder: str, extension: str) -> StoredFile:
        number = next(self.file_ids)
        stored = StoredFile(f"sandbox-file-{number}", f"uniq{number}", data, f"{folder}/file_{number}.{extension}")
        self.files[stored.file_id] = stored
        return stored

    async def user_message(self, chat_id: int, content: dict[str, Any], from_id: int | None = None) -> dict[str, Any]:
        """A message in ``chat_id`` from user ``from_id`` (default: the private chat's own user)."""
        message = {
            "message_id": next(self.message_ids),
            "from": self.user(chat_id if from_id is None else from_id),
            "chat": self.chat(chat_id),
            "date": int(time.time()),
            **content,
        }
        self.messages.setdefault(chat_id, []).append(message)
        async with self.changed:
            self.updates.append({"update_id": self.next_update_id, "message": message})
            self.next_update_id += 1
            self.changed.notify_all()
        return message

    async def callback_query(
        self, chat_id: int, message_id: int, data: str, from_id: int | None = None, forged: bool = False
    ) -> dict[str, Any]:
        """A tap on an inline button under one of the bot's messages; Telegram sends it as a callback query.
        ``from_id``: who taps (a member of a group chat); ``forged``: data no button carries, as a custom client
        can send under any of the bot's messages."""
        message = self.find_message(chat_id, message_id)
        buttons = [b for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
        if not forged and data not in [b.get("callback_data") for b in buttons]:
            raise BotApiError(400, "Bad Request: no such button under this message")
        sender = chat_id if from_id is None else from_id
        query_id = str(next(self.callback_ids))
        query = {
            "id": query_id,
            "from": self.user(sender),
            "message": {k: v for k, v in message.items() if k != "edits"},
            "chat_instance": str(chat_id),
            "data": data,
        }
        self.callbacks[query_id] = CallbackRecord(query_id, chat_id, message_id, data, sender, time.time())
        async with self.changed:
            self.updates.append({"update_id": self.next_update_id, "callback_query": query})
            self.next_update_id += 1
            self.changed.notify_all()
        return query

    def photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Like Telegram: a thumbnail and the full size, largest last."""
        stored = self.store_file(data, "photos", "jpg")
        width = height = 0
        thumbnail: StoredFile | None = None
        with contextlib.suppress(Exception):
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                image.draft("RGB", (90, 90))  # JPEG: decode at a reduced scale; a thumbnail needs no more
                small = image.convert("RGB")
                small.thumbnail((90, 90))
                buffer = io.BytesIO()
                small.save(buffer, "JPEG")
                thumbnail = self.store_file(buffer.getvalue(), "photos", "jpg")
                thumb_size = small.size
        sizes = []
        if thumbnail is not None:
            sizes.append(self._photo_size(thumbnail, *thumb_size))
        sizes.append(self._photo_size(stored, width, height))
        return sizes

    @staticmethod
    def _photo_size(stored: StoredFile, width: int, height: int) -> dict[str, Any]:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": width,
            "height": height,
            "file_size": len(stored.data),
        }

    # --- the bot's side -------------------------------------------------------------------------------
    def bot_message(self, chat_id: int, content: dict[str, Any]) -> dict[str, Any]:
        message = {
            "message_id": next(self.message_ids),
            "from": bot_user(),
            "chat": self.chat(chat_id),
            "date": int(time.time()),
            **content,
        }
        self.messages.setdefault(chat_id, []).append(message)
        return message

    def answer_callback(self, query_id: str, text: str | None, show_alert: bool, url: str | None) -> None:
        """answerCallbackQuery: like Telegram, only a query it sent, and only its first answer is shown."""
        record = self.callbacks.get(query_id)
        if record is None:
            raise BotApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if record.answered:
            return
        record.answered, record.text, record.show_alert, record.url = True, text, show_alert, url
        record.answered_at = time.time()

    def callback_answers(self, chat_id: int) -> list[CallbackRecord]:
        """The taps in a chat, oldest first, with the bot's answers."""
        return [record for record in self.callbacks.values() if record.chat_id == chat_id]

    def find_message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        for message in self.messages.get(chat_id, []):
            if message["message_id"] == message_id:
                return message
        raise BotApiError(400, "Bad Request: message to edit not found")


def bot_user() -> dict[str, Any]:
    return {
        "id": BOT_USER_ID,
        "is_bot": True,
        "first_name": "SkinSense Sandbox",
        "username": "skinsense_sandbox_bot",
        "can_join_groups": False,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }
