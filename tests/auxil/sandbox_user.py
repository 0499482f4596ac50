"""Plays a patient (or a clinician) through the sandbox's control API, over real HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from shared.texts import questionnaire as questionnaire_texts
from skinsense.sandbox import plain_text
from tests.auxil.services import ChildProcess, child_env, free_port, port_open, python_command, wait_until

QUESTIONNAIRE_START = plain_text(questionnaire_texts.QUESTIONNAIRE_INTRO, "HTML")


def is_questionnaire(message: dict[str, Any]) -> bool:
    """The bot's questionnaire about a photo, whatever it reads now (its first text opens with the intro)."""
    first_text = (message.get("edits") or [message.get("text", "")])[0] or ""
    return str(first_text).startswith(QUESTIONNAIRE_START)


class SandboxUser:
    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.http = httpx.Client(base_url=api_url, timeout=30)

    def send_photo(self, chat_id: int, data: bytes, **query: str) -> dict[str, Any]:
        return self._post(f"/sandbox/chats/{chat_id}/photo", content=data, params=query)

    def send_document(self, chat_id: int, data: bytes, file_name: str, mime_type: str) -> dict[str, Any]:
        return self._post(
            f"/sandbox/chats/{chat_id}/document", content=data, params={"file_name": file_name, "mime_type": mime_type}
        )

    def send_text(self, chat_id: int, text: str, from_id: int | None = None) -> dict[str, Any]:
        """A text (or command) in ``chat_id``; ``from_id``: which member sends it, in a group chat."""
        return self._post(f"/sandbox/chats/{chat_id}/text", json={"text": text, "from_id": from_id})

    def send_message(self, chat_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self._post(f"/sandbox/chats/{chat_id}/message", json=fields)

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        response = self.http.get(f"/sandbox/chats/{chat_id}/messages")
        response.raise_for_status()
        return list(response.json())

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.messages(chat_id) if m["from_bot"]]

    def replies_to(self, chat_id: int, message_id: int) -> list[dict[str, Any]]:
        """The bot's answers to a message: its replies, except a photo's questionnaire (which replies to it too)."""
        return [
            m
            for m in self.bot_messages(chat_id)
            if m.get("reply_to_message", {}).get("message_id") == message_id and not is_questionnaire(m)
        ]

    def wait_for_reply(
        self, chat_id: int, message_id: int, final: bool = True, timeout_s: float = 60
    ) -> dict[str, Any]:
        """The bot's answer to a message (``replies_to``); with ``final``, once it is no longer "Analysing..."."""

        def reply() -> dict[str, Any] | None:
            for message in self.replies_to(chat_id, message_id):
                if not final or not message.get("text", "").startswith("Analysing"):
                    return message
            return None

        return wait_until(reply, timeout_s, what=f"the bot's reply to message {message_id} in chat {chat_id}")

    def tap(self, chat_id: int, message_id: int, label: str, from_id: int | None = None) -> dict[str, Any]:
        """Tap the inline button labelled ``label`` under one of the bot's messages (a callback query);
        ``from_id``: which member taps, in a group chat."""
        message = next(m for m in self.bot_messages(chat_id) if m["message_id"] == message_id)
        data = button_data(message, label)
        assert data is not None, f"no button {label!r} under message {message_id}: {message.get('reply_markup')}"
        body = {"message_id": message_id, "data": data, "from_id": from_id}
        return self._post(f"/sandbox/chats/{chat_id}/callback", json=body)

    def answers(self, chat_id: int) -> list[dict[str, Any]]:
        """The taps in a chat, oldest first, each with the bot's answer (``answered``, ``text``, ``show_alert``)."""
        response = self.http.get(f"/sandbox/chats/{chat_id}/answers")
        response.raise_for_status()
        return list(response.json())

    def wait_for_answer(self, query: dict[str, Any], timeout_s: float = 30) -> dict[str, Any]:
        """The bot's answer to a tap (a callback query this user made), once it has answered."""
        chat_id = query["message"]["chat"]["id"]

        def answered() -> dict[str, Any] | None:
            return next((a for a in self.answers(chat_id) if a["query_id"] == query["id"] and a["answered"]), None)

        return wait_until(answered, timeout_s, what=f"the bot's answer to tap {query['id']}")

    def forge_callback(self, chat_id: int, message_id: int, data: str) -> dict[str, Any]:
        """What a custom client can do: send any callback data under one of the bot's messages."""
        body = {"message_id": message_id, "data": data, "forged": True}
        return self._post(f"/sandbox/chats/{chat_id}/callback", json=body)

    def wait_for_button(self, chat_id: int, label: str, after_id: int = 0, timeout_s: float = 60) -> dict[str, Any]:
        """The first bot message after ``after_id`` that shows a button labelled ``label``."""

        def find() -> dict[str, Any] | None:
            for message in self.bot_messages(chat_id):
                if message["message_id"] > after_id and button_data(message, label) is not None:
                    return message
            return None

        return wait_until(find, timeout_s, what=f"a button {label!r} in chat {chat_id}")

    def wait_for_text(self, chat_id: int, message_id: int, text: str, timeout_s: float = 60) -> dict[str, Any]:
        """The bot's message once it reads ``text`` (after an edit)."""

        def find() -> dict[str, Any] | None:
            for message in self.bot_messages(chat_id):
                if message["message_id"] == message_id and message.get("text") == text:
                    return message
            return None

        return wait_until(find, timeout_s, what=f"message {message_id} to read {text!r}")

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        response = self.http.get("/sandbox/calls", params={"method": method} if method else None)
        response.raise_for_status()
        return list(response.json())

    def inject_fault(
        self, method: str, count: int = 1, retry_after: int = 1, kind: str = "429", status: int = 503
    ) -> None:
        """The next ``count`` calls of ``method`` fail: ``kind`` 429 (``retry_after``), 5xx (``status``), 403 (a
        chat the bot was removed from) or drop (executed, then the connection closed without an answer)."""
        self._post(
            "/sandbox/faults",
            json={"method": method, "count": count, "retry_after": retry_after, "kind": kind, "status": status},
        )

    def inject_fault_rates(
        self,
        method: str = "*",
        *,
        rate_429: float = 0.0,
        rate_5xx: float = 0.0,
        rate_drop: float = 0.0,
        retry_after: int = 1,
        seed: int | None = None,
    ) -> None:
        """Every call of ``method`` (``*``: all methods and downloads) fails at random with these rates."""
        body = {"method": method, "rate_429": rate_429, "rate_5xx": rate_5xx, "rate_drop": rate_drop}
        self._post("/sandbox/faults", json={**body, "retry_after": retry_after, "seed": seed})

    def fault_report(self) -> dict[str, Any]:
        """Faults injected so far: ``{"injected": {method: {"429": n, "5xx": n, "drop": n}}, "total": {...}}``."""
        response = self.http.get("/sandbox/faults")
        response.raise_for_status()
        return dict(response.json())

    def clear_faults(self) -> None:
        response = self.http.delete("/sandbox/faults")
        response.raise_for_status()

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.post(path, **kwargs)
        response.raise_for_status()
        return dict(response.json())


def button_data(message: dict[str, Any], label: str) -> str | None:
    """The callback data of the inline button labelled ``label`` under a message, if it has one."""
    for row in message.get("reply_markup", {}).get("inline_keyboard", []):
        for button in row:
            if button.get("text") == label:
                return str(button["callback_data"])
    return None


@contextlib.contextmanager
def running_sandbox(token: str, log_dir: Path) -> Iterator[SandboxUser]:
    """A Bot API sandbox of its own (a free port, its log in ``log_dir``) for one bot token, stopped afterwards."""
    port = free_port()
    command = python_command("-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", token)
    child = ChildProcess("sandbox", command, child_env(), log_dir)
    try:
        wait_until(lambda: port_open(port), 30, what="sandbox")
        yield SandboxUser(f"http://127.0.0.1:{port}")
    finally:
        child.stop()
