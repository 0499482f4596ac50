"""A local Bot API server (``skinsense sandbox``): the subset of the Telegram Bot API that SkinSense uses.

It follows the published Bot API (https://core.telegram.org/bots/api): methods at
``/bot<token>/<method>`` taking parameters as query string, URL-encoded form, JSON or multipart;
answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``;
401 for a wrong token, 429 with ``parameters.retry_after``, 5xx, or a lost response when a fault is injected
(skinsense/sandbox/control.py: counts or seeded rates per method); files at
``/file/bot<token>/<file_path>``. Long polling with getUpdates, or webhooks with setWebhook.

Control endpoints under ``/sandbox/`` let a test or a developer play a patient: send a photo, a
document, text or any other message, tap an inline button (and read the bot's answer to the tap), read what the bot
sent (with edit history) and inject faults.
The web chat at ``/`` (skinsense/sandbox/webchat) does the same in a browser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from skinsense.sandbox.bot_api import BotApi
from skinsense.sandbox.control import Control
from skinsense.sandbox.state import SandboxState, plain_text
from skinsense.sandbox.webchat import add_web_chat

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = ["SANDBOX_TOKEN", "Sandbox", "add_arguments", "plain_text", "run"]
log = logging.getLogger(__name__)


class Sandbox:
    def __init__(
        self, token: str, clinician_chat_ids: Iterable[int] = (), clinician_user_ids: Iterable[int] = ()
    ) -> None:
        # The web chat lists the clinician chats, and in a group chat presses buttons as a listed clinician; the
        # sandbox names these chats and users as clinicians ("Dr 9001"), the others as patients.
        self.clinician_chat_ids = list(clinician_chat_ids)
        self.clinician_user_ids = list(clinician_user_ids)
        self.state = SandboxState(token, frozenset(self.clinician_chat_ids), frozenset(self.clinician_user_ids))
        self.bot_api = BotApi(self.state)
        self.control = Control(self.state)
        self._webhook_task: asyncio.Task[None] | None = None

    async def _start_background(self, app: web.Application) -> None:
        self._webhook_task = asyncio.create_task(self.bot_api.deliver_webhooks())

    async def _stop_background(self, app: web.Application) -> None:
        if self._webhook_task:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_malformed_control_request])
        app.router.add_route("*", "/bot{token}/{method}", self.bot_api.handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self.bot_api.download)
        app.router.add_post("/sandbox/chats/{chat_id}/photo", self.control.photo)
        app.router.add_post("/sandbox/chats/{chat_id}/document", self.control.document)
        app.router.add_post("/sandbox/chats/{chat_id}/text", self.control.text)
        app.router.add_post("/sandbox/chats/{chat_id}/message", self.control.message)
        app.router.add_post("/sandbox/chats/{chat_id}/callback", self.control.callback)
        app.router.add_get("/sandbox/chats/{chat_id}/messages", self.control.messages)
        app.router.add_get("/sandbox/chats/{chat_id}/answers", self.control.answers)
        app.router.add_post("/sandbox/faults", self.control.faults)
        app.router.add_get("/sandbox/faults", self.control.fault_report)
        app.router.add_delete("/sandbox/faults", self.control.clear_faults)
        app.router.add_post("/sandbox/faults/clear", self.control.clear_faults)
        app.router.add_get("/sandbox/calls", self.control.calls)
        app.router.add_get("/sandbox/health", self.control.health)
        add_web_chat(app, self.state, self.clinician_chat_ids, self.clinician_user_ids)
        app.on_startup.append(self._start_background)
        app.on_cleanup.append(self._stop_background)
        return app


@web.middleware
async def _malformed_control_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A control call with a body or chat id it cannot read is the caller's mistake: 400 saying what was
    expected, not a 500 from deep in the handler."""
    try:
        return await handler(request)
    except (json.JSONDecodeError, KeyError, ValueError) as error:
        if not request.path.startswith("/sandbox/"):
            raise
        description = f"malformed request ({type(error).__name__}: {error}); see skinsense/sandbox/control.py"
        return web.json_response({"ok": False, "description": description}, status=400)


SANDBOX_TOKEN = "123456:SANDBOX-local-token"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: SKINSENSE_SANDBOX_PORT (8081)")
    parser.add_argument("--token", default=SANDBOX_TOKEN, help="the one bot token the sandbox accepts")


def run(args: argparse.Namespace) -> int:
    from shared.config import get_settings

    settings = get_settings()
    port = args.port or settings.sandbox_port
    log.info("Bot API sandbox on http://%s:%d (web chat: open it in a browser)", args.host, port)
    web.run_app(
        Sandbox(args.token, settings.clinician_chat_ids, settings.clinician_user_ids).application(),
        host=args.host,
        port=port,
        print=None,
        access_log=None,
        shutdown_timeout=1.0,
    )
    return 0
