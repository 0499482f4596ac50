"""Plays a patient (or a clinician) through the sandbox's control API, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.auxil.services import wait_until


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

    def send_text(self, chat_id: int, text: str) -> dict[str, Any]:
        return self._post(f"/sandbox/chats/{chat_id}/text", json={"text": text})

    def send_message(self, chat_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self._post(f"/sandbox/chats/{chat_id}/message", json=fields)

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        response = self.http.get(f"/sandbox/chats/{chat_id}/messages")
        response.raise_for_status()
        return list(response.json())

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.messages(chat_id) if m["from_bot"]]

    def replies_to(self, chat_id: int, message_id: int) -> list[dict[str, Any]]:
        return [m for m in self.bot_messages(chat_id) if m.get("reply_to_message", {}).get("message_id") == message_id]

    def wait_for_reply(
        self, chat_id: int, message_id: int, final: bool = True, timeout_s: float = 60
    ) -> dict[str, Any]:
        """The bot's reply to a message; with ``final``, once it is no longer "Analysing..."."""

        def reply() -> dict[str, Any] | None:
            for message in self.replies_to(chat_id, message_id):
                if not final or not message.get("text", "").startswith("Analysing"):
                    return message
            return None

        return wait_until(reply, timeout_s, what=f"the bot's reply to message {message_id} in chat {chat_id}")

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        response = self.http.get("/sandbox/calls", params={"method": method} if method else None)
        response.raise_for_status()
        return list(response.json())

    def inject_fault(self, method: str, count: int = 1, retry_after: int = 1) -> None:
        self._post("/sandbox/faults", json={"method": method, "count": count, "retry_after": retry_after})

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.post(path, **kwargs)
        response.raise_for_status()
        return dict(response.json())
