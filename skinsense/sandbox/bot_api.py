"""The Bot API methods (``/bot<token>/<method>``), file downloads and webhook delivery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from http import HTTPStatus
from typing import Any

from aiohttp import BodyPartReader, ClientSession, ClientTimeout, web

from skinsense.sandbox.state import (
    BOT_USER_ID,
    DOWNLOAD,
    MAX_CAPTION,
    MAX_DOWNLOAD_BYTES,
    MAX_TEXT,
    BotApiError,
    InjectedFault,
    SandboxState,
    bot_user,
    formatted_text,
)

log = logging.getLogger(__name__)
MAX_CALLBACK_ANSWER = 200  # answerCallbackQuery's text: 0-200 characters


async def read_parameters(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Bot API parameters from the query string and the body (form, JSON or multipart); uploads apart."""
    parameters: dict[str, Any] = dict(request.query)
    uploads: dict[str, bytes] = {}
    if request.method != "POST" or not request.can_read_body:
        return parameters, uploads
    content_type = request.content_type
    if content_type == "application/json":
        body = await request.json()
        if not isinstance(body, dict):
            raise BotApiError(400, "Bad Request: JSON body must be an object")
        parameters.update(body)
    elif content_type == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename is not None:
                uploads[part.name] = bytes(await part.read())
            else:
                parameters[part.name] = await part.text()
    else:
        parameters.update(await request.post())
    return parameters, uploads


def _decode(value: Any) -> Any:
    """Form values of structured parameters arrive JSON-serialised."""
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _int(parameters: dict[str, Any], name: str, default: int | None = None) -> int:
    value = parameters.get(name, default)
    if value is None:
        raise BotApiError(400, f"Bad Request: {name} is required")
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise BotApiError(400, f"Bad Request: invalid {name}") from error


class BotApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            if request.match_info["token"] != self.state.token:
                raise BotApiError(401, "Unauthorized")
            parameters, uploads = await read_parameters(request)
            call: dict[str, Any] = {"method": method, "parameters": dict(parameters), "time": time.time()}
            self.state.calls.append(call)
            fault = self.state.fault_for(method)
            if fault is not None:
                call["fault"] = fault.kind
                _raise_before_executing(fault)
            handler = getattr(self, f"method_{method.lower()}", None)
            if handler is None:
                raise BotApiError(404, "Not Found")
            result = await handler({k: _decode(v) for k, v in parameters.items()}, uploads)
            if fault is not None:  # a dropped response: the call took effect, the caller never learns it
                return _lose_response(request)
            return web.json_response({"ok": True, "result": result})
        except BotApiError as error:
            body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return web.json_response(body, status=error.status)

    async def method_getme(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        return bot_user()

    async def method_getupdates(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        if self.state.webhook.get("url"):
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int(p, "offset", 0)
        limit = min(max(_int(p, "limit", 100), 1), 100)
        timeout = min(max(_int(p, "timeout", 0), 0), 50)
        state = self.state
        async with state.changed:
            if offset:
                state.updates = [u for u in state.updates if u["update_id"] >= offset]
            if not state.updates and timeout:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.changed.wait_for(lambda: bool(state.updates)), timeout)
            return state.updates[:limit]

    async def method_setwebhook(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        url = str(p.get("url", ""))
        if url and not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise BotApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if _truthy(p.get("drop_pending_updates")):
            self.state.updates.clear()
        self.state.webhook = {"url": url, "secret_token": p.get("secret_token")} if url else {}
        async with self.state.changed:
            self.state.changed.notify_all()
        return True

    async def method_deletewebhook(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        if _truthy(p.get("drop_pending_updates")):
            self.state.updates.clear()
        self.state.webhook = {}
        return True

    async def method_getwebhookinfo(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        return {
            "url": self.state.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.updates),
        }

    async def method_getfile(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        stored = self.state.files.get(str(p.get("file_id", "")))
        if stored is None:
            raise BotApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise BotApiError(400, "Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    async def method_sendmessage(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        chat_id = _int(p, "chat_id")
        text, entities = _text(p, "text", MAX_TEXT, "message text")
        content: dict[str, Any] = {"text": text, **({"entities": entities} if entities else {})}
        reply_to = _reply_to(p)
        if reply_to is not None:
            content["reply_to_message"] = self.state.find_message(chat_id, reply_to)
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:  # like Telegram: a ForceReply (or a reply
            content["reply_markup"] = markup  # keyboard) acts on the client; only an inline keyboard is the message's
        return self.state.bot_message(chat_id, content)

    async def method_editmessagetext(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        message = self.state.find_message(_int(p, "chat_id"), _int(p, "message_id"))
        if message["from"]["id"] != BOT_USER_ID:
            raise BotApiError(400, "Bad Request: message can't be edited")
        text, entities = _text(p, "text", MAX_TEXT, "message text")
        markup = p.get("reply_markup")  # like Telegram: an edit without it removes the inline keyboard
        if text == message.get("text") and markup == message.get("reply_markup"):
            raise BotApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup of the message",
            )
        message.setdefault("edits", []).append(message.get("text"))
        message["text"] = text
        if entities:
            message["entities"] = entities
        else:
            message.pop("entities", None)
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return {k: v for k, v in message.items() if k != "edits"}

    async def method_editmessagereplymarkup(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        """The inline keyboard alone (none: removed), the text kept."""
        message = self.state.find_message(_int(p, "chat_id"), _int(p, "message_id"))
        if message["from"]["id"] != BOT_USER_ID:
            raise BotApiError(400, "Bad Request: message can't be edited")
        markup = p.get("reply_markup") or None
        if markup == message.get("reply_markup"):
            raise BotApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup of the message",
            )
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return {k: v for k, v in message.items() if k != "edits"}

    async def method_deletemessage(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        """Like Telegram for a bot in a private chat: its own messages only; gone from the chat for good."""
        chat_id = _int(p, "chat_id")
        try:
            message = self.state.find_message(chat_id, _int(p, "message_id"))
        except BotApiError:
            raise BotApiError(400, "Bad Request: message to delete not found") from None
        if message["from"]["id"] != BOT_USER_ID:
            raise BotApiError(400, "Bad Request: message can't be deleted")
        self.state.messages[chat_id].remove(message)
        return True

    async def method_sendphoto(self, p: dict[str, Any], uploads: dict[str, bytes]) -> Any:
        chat_id = _int(p, "chat_id")
        data = self._input_file(p, uploads, "photo")
        content: dict[str, Any] = {"photo": self.state.photo_sizes(data)}
        if p.get("caption"):
            content["caption"], entities = _text(p, "caption", MAX_CAPTION, "message caption")
            if entities:
                content["caption_entities"] = entities
        self._reply(chat_id, p, content)
        return self.state.bot_message(chat_id, content)

    async def method_senddocument(self, p: dict[str, Any], uploads: dict[str, bytes]) -> Any:
        chat_id = _int(p, "chat_id")
        data = self._input_file(p, uploads, "document")
        stored = self.state.store_file(data, "documents", "bin")
        content: dict[str, Any] = {
            "document": {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(data)}
        }
        if p.get("caption"):
            content["caption"], entities = _text(p, "caption", MAX_CAPTION, "message caption")
            if entities:
                content["caption_entities"] = entities
        self._reply(chat_id, p, content)
        return self.state.bot_message(chat_id, content)

    async def method_sendmediagroup(self, p: dict[str, Any], uploads: dict[str, bytes]) -> Any:
        """An album: 2-10 photos (or documents) sent as one group; a caption per item; returns the messages."""
        chat_id = _int(p, "chat_id")
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise BotApiError(400, "Bad Request: media must be a list of 2-10 items")
        kinds = {str(item.get("type")) for item in media if isinstance(item, dict)}
        if len(kinds) != 1 or not kinds <= {"photo", "document"}:
            raise BotApiError(400, "Bad Request: a media group holds photos, or documents, not both")
        group_id = str(next(self.state.file_ids))
        sent = []
        for item in media:
            data = self._input_file(item, uploads, "media")
            if item["type"] == "photo":
                content: dict[str, Any] = {"photo": self.state.photo_sizes(data)}
            else:
                stored = self.state.store_file(data, "documents", "bin")
                content = {"document": {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}}
            content["media_group_id"] = group_id
            if item.get("caption"):
                content["caption"], entities = _text(item, "caption", MAX_CAPTION, "message caption")
                if entities:
                    content["caption_entities"] = entities
            self._reply(chat_id, p, content)
            sent.append(self.state.bot_message(chat_id, content))
        return sent

    def _reply(self, chat_id: int, p: dict[str, Any], content: dict[str, Any]) -> None:
        """A media message sent as a reply carries the message it answers, as a text does."""
        reply_to = _reply_to(p)
        if reply_to is not None:
            content["reply_to_message"] = self.state.find_message(chat_id, reply_to)

    async def method_sendchataction(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        _int(p, "chat_id")
        return True

    async def method_answercallbackquery(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        text = p.get("text")
        if text is not None and len(str(text)) > MAX_CALLBACK_ANSWER:
            raise BotApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        url = p.get("url")
        self.state.answer_callback(
            str(p.get("callback_query_id", "")),
            None if text is None else str(text),
            _truthy(p.get("show_alert")),
            None if url is None else str(url),
        )
        return True

    async def method_setmycommands(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        self.state.webhook.setdefault("commands", p.get("commands"))
        return True

    async def method_deletemycommands(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        return True

    async def method_close(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        return True

    def _input_file(self, p: dict[str, Any], uploads: dict[str, bytes], name: str) -> bytes:
        value = p.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = None
            name = p[name][len("attach://") :]
        if name in uploads:
            return uploads[name]
        if isinstance(value, str) and value in self.state.files:
            return self.state.files[value].data
        raise BotApiError(400, f"Bad Request: wrong file identifier/HTTP URL specified ({name})")

    async def download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.state.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        path = request.match_info["path"]
        fault = self.state.fault_for(DOWNLOAD)
        self.state.calls.append({"method": DOWNLOAD, "parameters": {"file_path": path}, "time": time.time()})
        if fault is not None:
            self.state.calls[-1]["fault"] = fault.kind
            try:
                _raise_before_executing(fault)
            except BotApiError as error:
                body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
                if error.parameters:
                    body["parameters"] = error.parameters
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
                return web.json_response(body, status=error.status, headers=headers)
        for stored in self.state.files.values():
            if stored.file_path == path:
                if fault is not None:
                    return _lose_response(request)
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def deliver_webhooks(self) -> None:
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            while True:
                async with self.state.changed:
                    await self.state.changed.wait_for(
                        lambda: bool(self.state.webhook.get("url") and self.state.updates)
                    )
                    update = self.state.updates[0]
                    webhook = dict(self.state.webhook)
                headers = {}
                if webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = str(webhook["secret_token"])
                try:
                    async with session.post(webhook["url"], json=update, headers=headers) as response:
                        delivered = response.status < 300
                except Exception as error:  # a webhook that is down: keep the update, retry
                    log.info("webhook delivery failed: %s", type(error).__name__)
                    delivered = False
                if delivered:
                    async with self.state.changed:
                        self.state.updates = [u for u in self.state.updates if u is not update]
                else:
                    await asyncio.sleep(1)


def _raise_before_executing(fault: InjectedFault) -> None:
    """429, 5xx and 403 faults answer before the call is executed, as Telegram's front end does."""
    if fault.kind == "403":
        raise BotApiError(403, "Forbidden: bot was kicked from the group chat")
    if fault.kind == "429":
        raise BotApiError(
            429, f"Too Many Requests: retry after {fault.retry_after}", {"retry_after": fault.retry_after}
        )
    if fault.kind == "5xx":
        raise BotApiError(fault.status, HTTPStatus(fault.status).phrase)


def _lose_response(request: web.Request) -> web.Response:
    """Closes the connection without an answer (the caller sees the server disconnect)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=200)


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _text(p: dict[str, Any], name: str, limit: int, what: str) -> tuple[str, list[dict[str, Any]]]:
    """The text (or caption) as the message shows it, and its formatting entities (parse_mode HTML)."""
    raw = p.get(name)
    if raw is None or str(raw).strip() == "":
        raise BotApiError(400, f"Bad Request: {what} is empty")
    text, entities = formatted_text(str(raw), p.get("parse_mode"))
    if len(text) > limit:
        raise BotApiError(400, f"Bad Request: {what} is too long")
    return text, entities


def _reply_to(p: dict[str, Any]) -> int | None:
    parameters = p.get("reply_parameters")
    if isinstance(parameters, dict) and "message_id" in parameters:
        return int(parameters["message_id"])
    if p.get("reply_to_message_id") is not None:
        return int(p["reply_to_message_id"])
    return None
