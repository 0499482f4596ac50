"""Control endpoints (``/sandbox/...``): play a patient, read what the bot sent, inject faults."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from skinsense.sandbox.state import BOT_USER_ID, BotApiError, Fault, SandboxState


class Control:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def photo(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        content: dict[str, Any] = {"photo": self.state.photo_sizes(await request.read())}
        for key in ("caption", "media_group_id"):
            if key in request.query:
                content[key] = request.query[key]
        return web.json_response(await self.state.user_message(chat_id, content))

    async def document(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        data = await request.read()
        file_name = request.query.get("file_name", "file.bin")
        stored = self.state.store_file(data, "documents", file_name.rsplit(".", 1)[-1] or "bin")
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": request.query.get("mime_type", "application/octet-stream"),
            "file_size": int(request.query.get("file_size", len(data))),
        }
        return web.json_response(await self.state.user_message(chat_id, {"document": document}))

    async def text(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        text = (await request.json())["text"]
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return web.json_response(await self.state.user_message(chat_id, content))

    async def message(self, request: web.Request) -> web.Response:
        """Any other kind of message (sticker, voice, video...), given as its Bot API fields."""
        chat_id = int(request.match_info["chat_id"])
        return web.json_response(await self.state.user_message(chat_id, await request.json()))

    async def callback(self, request: web.Request) -> web.Response:
        """The patient taps an inline button: ``{"message_id": ..., "data": ...}`` (the button's callback data)."""
        chat_id = int(request.match_info["chat_id"])
        body = await request.json()
        try:
            query = await self.state.callback_query(chat_id, int(body["message_id"]), str(body["data"]))
        except BotApiError as error:
            return web.json_response({"ok": False, "description": error.description}, status=error.status)
        return web.json_response(query)

    async def messages(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        messages = [{**m, "from_bot": m["from"]["id"] == BOT_USER_ID} for m in self.state.messages.get(chat_id, [])]
        return web.json_response(messages)

    async def faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.faults.append(Fault(body["method"], int(body.get("count", 1)), int(body.get("retry_after", 1))))
        return web.json_response({"ok": True})

    async def calls(self, request: web.Request) -> web.Response:
        method = request.query.get("method")
        calls = [c for c in self.state.calls if method is None or c["method"].lower() == method.lower()]
        return web.json_response(calls)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pending_updates": len(self.state.updates)})
