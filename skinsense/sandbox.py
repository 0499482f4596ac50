"""A local Bot API server (``skinsense sandbox``): the subset of the Telegram Bot API that SkinSense uses.

It follows the published Bot API (https://core.telegram.org/bots/api): methods at
``/bot<token>/<method>`` taking parameters as query string, URL-encoded form, JSON or multipart;
answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``;
401 for a wrong token, 429 with ``parameters.retry_after`` when a fault is injected; files at
``/file/bot<token>/<file_path>``. Long polling with getUpdates, or webhooks with setWebhook.

Control endpoints under ``/sandbox/`` let a test or a developer play a patient: send a photo, a
document, text or any other message, read what the bot sent (with edit history) and inject faults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any

from aiohttp import BodyPartReader, ClientSession, ClientTimeout, web

log = logging.getLogger(__name__)

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


class _HtmlChecker(HTMLParser):
    """Checks Telegram-HTML the way the server does (known tags, balanced) and collects the plain text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise BotApiError(400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise BotApiError(400, f'Bad Request: can\'t parse entities: Unexpected end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def plain_text(text: str, parse_mode: str | None) -> str:
    if (parse_mode or "").upper() != "HTML":
        return text
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        raise BotApiError(400, f'Bad Request: can\'t parse entities: unclosed tag "{checker.stack[-1]}"')
    return unescape("".join(checker.text))


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str


@dataclass
class Fault:
    method: str
    remaining: int
    retry_after: int


@dataclass
class SandboxState:
    token: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1
    message_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    file_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # chat id -> messages
    files: dict[str, StoredFile] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    # --- the patient's side ---------------------------------------------------------------------------
    def user(self, chat_id: int) -> dict[str, Any]:
        return {"id": chat_id, "is_bot": False, "first_name": f"Patient {chat_id}"}

    def chat(self, chat_id: int) -> dict[str, Any]:
        return {"id": chat_id, "type": "private", "first_name": f"Patient {chat_id}"}

    def store_file(self, data: bytes, folder: str, extension: str) -> StoredFile:
        number = next(self.file_ids)
        stored = StoredFile(f"sandbox-file-{number}", f"uniq{number}", data, f"{folder}/file_{number}.{extension}")
        self.files[stored.file_id] = stored
        return stored

    async def user_message(self, chat_id: int, content: dict[str, Any]) -> dict[str, Any]:
        message = {
            "message_id": next(self.message_ids),
            "from": self.user(chat_id),
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

    def photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Like Telegram: a thumbnail and the full size, largest last."""
        stored = self.store_file(data, "photos", "jpg")
        width = height = 0
        thumbnail: StoredFile | None = None
        with contextlib.suppress(Exception):
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
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


class Sandbox:
    def __init__(self, token: str) -> None:
        self.state = SandboxState(token)
        self._webhook_task: asyncio.Task[None] | None = None

    # --- Bot API --------------------------------------------------------------------------------------
    async def bot_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            if request.match_info["token"] != self.state.token:
                raise BotApiError(401, "Unauthorized")
            parameters, uploads = await read_parameters(request)
            self.state.calls.append(
                {"method": method, "parameters": {k: v for k, v in parameters.items()}, "time": time.time()}
            )
            self._raise_injected_fault(method)
            handler = getattr(self, f"method_{method.lower()}", None)
            if handler is None:
                raise BotApiError(404, "Not Found")
            result = await handler({k: _decode(v) for k, v in parameters.items()}, uploads)
            return web.json_response({"ok": True, "result": result})
        except BotApiError as error:
            body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return web.json_response(body, status=error.status)

    def _raise_injected_fault(self, method: str) -> None:
        for fault in self.state.faults:
            if fault.method.lower() == method.lower() and fault.remaining > 0:
                fault.remaining -= 1
                raise BotApiError(
                    429, f"Too Many Requests: retry after {fault.retry_after}", {"retry_after": fault.retry_after}
                )

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
        text = _text(p, "text", MAX_TEXT, "message text")
        content: dict[str, Any] = {"text": text}
        reply_to = _reply_to(p)
        if reply_to is not None:
            content["reply_to_message"] = self.state.find_message(chat_id, reply_to)
        if "reply_markup" in p:
            content["reply_markup"] = p["reply_markup"]
        return self.state.bot_message(chat_id, content)

    async def method_editmessagetext(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        message = self.state.find_message(_int(p, "chat_id"), _int(p, "message_id"))
        if message["from"]["id"] != BOT_USER_ID:
            raise BotApiError(400, "Bad Request: message can't be edited")
        text = _text(p, "text", MAX_TEXT, "message text")
        if text == message.get("text"):
            raise BotApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup of the message",
            )
        message.setdefault("edits", []).append(message.get("text"))
        message["text"] = text
        message["edit_date"] = int(time.time())
        return {k: v for k, v in message.items() if k != "edits"}

    async def method_sendphoto(self, p: dict[str, Any], uploads: dict[str, bytes]) -> Any:
        chat_id = _int(p, "chat_id")
        data = self._input_file(p, uploads, "photo")
        content: dict[str, Any] = {"photo": self.state.photo_sizes(data)}
        if p.get("caption"):
            content["caption"] = _text(p, "caption", MAX_CAPTION, "message caption")
        return self.state.bot_message(chat_id, content)

    async def method_senddocument(self, p: dict[str, Any], uploads: dict[str, bytes]) -> Any:
        chat_id = _int(p, "chat_id")
        data = self._input_file(p, uploads, "document")
        stored = self.state.store_file(data, "documents", "bin")
        content: dict[str, Any] = {
            "document": {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(data)}
        }
        if p.get("caption"):
            content["caption"] = _text(p, "caption", MAX_CAPTION, "message caption")
        return self.state.bot_message(chat_id, content)

    async def method_sendchataction(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
        _int(p, "chat_id")
        return True

    async def method_answercallbackquery(self, p: dict[str, Any], _: dict[str, bytes]) -> Any:
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
        for stored in self.state.files.values():
            if stored.file_path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    # --- control API for tests and developers ---------------------------------------------------------
    async def control_photo(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        content: dict[str, Any] = {"photo": self.state.photo_sizes(await request.read())}
        for key in ("caption", "media_group_id"):
            if key in request.query:
                content[key] = request.query[key]
        return web.json_response(await self.state.user_message(chat_id, content))

    async def control_document(self, request: web.Request) -> web.Response:
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

    async def control_text(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        text = (await request.json())["text"]
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return web.json_response(await self.state.user_message(chat_id, content))

    async def control_message(self, request: web.Request) -> web.Response:
        """Any other kind of message (sticker, voice, video...), given as its Bot API fields."""
        chat_id = int(request.match_info["chat_id"])
        return web.json_response(await self.state.user_message(chat_id, await request.json()))

    async def control_messages(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        messages = [{**m, "from_bot": m["from"]["id"] == BOT_USER_ID} for m in self.state.messages.get(chat_id, [])]
        return web.json_response(messages)

    async def control_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.state.faults.append(Fault(body["method"], int(body.get("count", 1)), int(body.get("retry_after", 1))))
        return web.json_response({"ok": True})

    async def control_calls(self, request: web.Request) -> web.Response:
        method = request.query.get("method")
        calls = [c for c in self.state.calls if method is None or c["method"].lower() == method.lower()]
        return web.json_response(calls)

    async def control_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pending_updates": len(self.state.updates)})

    # --- webhook delivery -----------------------------------------------------------------------------
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

    async def _start_background(self, app: web.Application) -> None:
        self._webhook_task = asyncio.create_task(self.deliver_webhooks())

    async def _stop_background(self, app: web.Application) -> None:
        if self._webhook_task:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self.bot_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self.download)
        app.router.add_post("/sandbox/chats/{chat_id}/photo", self.control_photo)
        app.router.add_post("/sandbox/chats/{chat_id}/document", self.control_document)
        app.router.add_post("/sandbox/chats/{chat_id}/text", self.control_text)
        app.router.add_post("/sandbox/chats/{chat_id}/message", self.control_message)
        app.router.add_get("/sandbox/chats/{chat_id}/messages", self.control_messages)
        app.router.add_post("/sandbox/faults", self.control_faults)
        app.router.add_get("/sandbox/calls", self.control_calls)
        app.router.add_get("/sandbox/health", self.control_health)
        app.on_startup.append(self._start_background)
        app.on_cleanup.append(self._stop_background)
        return app


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _text(p: dict[str, Any], name: str, limit: int, what: str) -> str:
    raw = p.get(name)
    if raw is None or str(raw).strip() == "":
        raise BotApiError(400, f"Bad Request: {what} is empty")
    text = plain_text(str(raw), p.get("parse_mode"))
    if len(text) > limit:
        raise BotApiError(400, f"Bad Request: {what} is too long")
    return text


def _reply_to(p: dict[str, Any]) -> int | None:
    parameters = p.get("reply_parameters")
    if isinstance(parameters, dict) and "message_id" in parameters:
        return int(parameters["message_id"])
    if p.get("reply_to_message_id") is not None:
        return int(p["reply_to_message_id"])
    return None


SANDBOX_TOKEN = "123456:SANDBOX-local-token"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: SKINSENSE_SANDBOX_PORT (8081)")
    parser.add_argument("--token", default=SANDBOX_TOKEN, help="the one bot token the sandbox accepts")


def run(args: argparse.Namespace) -> int:
    from shared.config import get_settings

    port = args.port or get_settings().sandbox_port
    log.info("Bot API sandbox on http://%s:%d", args.host, port)
    web.run_app(
        Sandbox(args.token).application(), host=args.host, port=port, print=None, access_log=None, shutdown_timeout=1.0
    )
    return 0
