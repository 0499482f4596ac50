"""Routes of the web chat page and the read-only endpoints it polls (see the package docstring)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from skinsense.sandbox.state import BOT_USER_ID, SandboxState, bot_user

STATIC_DIR = Path(__file__).parent / "static"
LONG_POLL_MAX_S = 30.0
LONG_POLL_STEP_S = 0.2  # how often a waiting request looks for a change: the sandbox has no change events
SUMMARY_CHARS = 60
LISTED_CHATS = 200
ANSWERS_SHOWN = 20  # the latest answers to taps a chat's snapshot carries
CHAT_ACTION_SHOWN_S = 5.0  # like Telegram: "typing…" shows for 5 s, or until the bot's next message
_SENDING_METHODS = {"sendmessage", "sendphoto", "senddocument", "sendmediagroup", "sendvideo", "sendaudio"}

# Only these are served with their own type (shown inline by the page); anything else is a download, so a
# file a "patient" sent can never run as a page on the sandbox's origin.
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(data: bytes) -> str | None:
    """The MIME type of a JPEG, PNG, GIF or WebP picture from its first bytes; None for anything else."""
    for signature, mime_type in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return mime_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def message_summary(message: dict[str, Any]) -> str:
    """One short line for the chat list: the text, the caption or what kind of message it is."""
    text = message.get("text") or message.get("caption")
    if text:
        line = " ".join(str(text).split())
        return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"
    for kind in ("photo", "document", "sticker", "voice", "video", "audio", "animation", "location", "contact"):
        if kind in message:
            return f"[{kind}]"
    return "[message]"


class WebChat:
    def __init__(
        self, state: SandboxState, clinician_chat_ids: Iterable[int] = (), clinician_user_ids: Iterable[int] = ()
    ) -> None:
        self.state = state
        self.clinician_chat_ids = sorted(set(clinician_chat_ids))
        self.clinician_user_ids = list(clinician_user_ids)

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "clinician_chat_ids": self.clinician_chat_ids,
                "clinician_user_ids": self.clinician_user_ids,
                "bot_name": bot_user()["first_name"],
            }
        )

    async def chat(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        known_version = request.query.get("version", "")
        wait_s = min(max(float(request.query.get("wait", "0")), 0.0), LONG_POLL_MAX_S)
        deadline = time.monotonic() + wait_s
        snapshot = self._snapshot(chat_id)
        while snapshot["version"] == known_version and time.monotonic() < deadline:
            await asyncio.sleep(LONG_POLL_STEP_S)
            snapshot = self._snapshot(chat_id)
        return web.json_response(snapshot)

    async def file(self, request: web.Request) -> web.Response:
        stored = self.state.files.get(request.match_info["file_id"])
        if stored is None:
            return web.json_response({"ok": False, "description": "no such file"}, status=404)
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
        mime_type = image_type(stored.data)
        if mime_type is None:
            name = stored.file_path.rsplit("/", 1)[-1]
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return web.Response(body=stored.data, content_type=mime_type or "application/octet-stream", headers=headers)

    def _snapshot(self, chat_id: int) -> dict[str, Any]:
        messages = [{**m, "from_bot": m["from"]["id"] == BOT_USER_ID} for m in self.state.messages.get(chat_id, [])]
        chats = self._chats()
        answers = self._answers(chat_id)
        content = json.dumps([messages, chats, answers], sort_keys=True, default=str).encode()
        action = self._chat_action(chat_id)
        content += (action or "").encode()
        version = hashlib.blake2b(content, digest_size=8).hexdigest()
        return {
            "version": version,
            "chat_id": chat_id,
            "messages": messages,
            "chats": chats,
            "action": action,
            "answers": answers,
        }

    def _answers(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's latest answers to taps in this chat (answerCallbackQuery with a text): the page shows each
        new one as a toast, as Telegram's apps do (``show_alert``: until closed)."""
        answered = [r for r in self.state.callback_answers(chat_id) if r.answered and r.text]
        return [
            {"query_id": r.query_id, "message_id": r.message_id, "text": r.text, "show_alert": r.show_alert}
            for r in answered[-ANSWERS_SHOWN:]
        ]

    def _chat_action(self, chat_id: int) -> str | None:
        """What the bot says it is doing in this chat (sendChatAction: "typing", "upload_photo"...), if still shown."""
        now = time.time()
        for call in reversed(self.state.calls):
            if now - call["time"] > CHAT_ACTION_SHOWN_S:
                return None
            method = str(call["method"]).lower()
            if str(call["parameters"].get("chat_id")) != str(chat_id):
                continue
            if method in _SENDING_METHODS:
                return None
            if method == "sendchataction":
                return str(call["parameters"].get("action", "typing"))
        return None

    def _chats(self) -> list[dict[str, Any]]:
        """The clinician chats and the most recently active others (a load benchmark makes thousands)."""

        def last_message_id(chat_id: int) -> int:
            messages = self.state.messages[chat_id]
            return int(messages[-1]["message_id"]) if messages else 0

        recent = sorted(self.state.messages, key=last_message_id, reverse=True)
        chat_ids = sorted(set(recent[:LISTED_CHATS]) | set(self.clinician_chat_ids))
        chats = []
        for chat_id in chat_ids:
            messages = self.state.messages.get(chat_id, [])
            last = messages[-1] if messages else None
            chats.append(
                {
                    "chat_id": chat_id,
                    "role": "clinician" if chat_id in self.clinician_chat_ids else "patient",
                    "message_count": len(messages),
                    "last_message_id": last["message_id"] if last else None,
                    "summary": message_summary(last) if last else "",
                    "edits": sum(len(m.get("edits", [])) for m in messages),
                }
            )
        return chats


def add_web_chat(
    app: web.Application,
    state: SandboxState,
    clinician_chat_ids: Iterable[int] = (),
    clinician_user_ids: Iterable[int] = (),
) -> WebChat:
    """Serve the web chat on ``app`` (the sandbox's application), reading ``state``. ``clinician_chat_ids``:
    listed as clinician chats; ``clinician_user_ids``: who the page is, by default, in a group chat."""
    web_chat = WebChat(state, clinician_chat_ids, clinician_user_ids)
    app.router.add_get("/", web_chat.index)
    app.router.add_static("/web/", STATIC_DIR)
    app.router.add_get("/sandbox/web/config", web_chat.config)
    app.router.add_get("/sandbox/web/chats/{chat_id}", web_chat.chat)
    app.router.add_get("/sandbox/files/{file_id}", web_chat.file)
    return web_chat
