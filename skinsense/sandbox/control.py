"""Control endpoints (``/sandbox/...``): play a patient, read what the bot sent, inject faults.

``GET /sandbox/chats/{chat_id}/answers``: the taps on inline buttons there, each with the bot's answer to it
(answerCallbackQuery's text and show_alert), which the web chat shows as a toast.

Faults (``method`` is a Bot API method name, case-insensitive, ``download`` for file downloads, or ``*`` for all
of them in rate faults):

- ``POST /sandbox/faults {"method", "count": 1, "retry_after": 1}``: the next ``count`` calls answer 429.
  With ``"kind": "5xx"`` (and ``"status": 503``) they answer a 5xx instead; with ``"kind": "drop"`` they are
  executed and the connection is then closed without an answer; with ``"kind": "403"`` they are refused as
  Telegram refuses a chat the bot was removed from.
- ``POST /sandbox/faults {"method", "rate_429": 0.2, "rate_5xx": 0.1, "rate_drop": 0.15, "retry_after": 1,
  "statuses": [502, 503], "seed": 7}``: every call fails at random with these rates (replaces the method's
  earlier rates; a specific method's rates win over ``*``); ``seed`` reseeds the generator for a reproducible run.
- ``GET /sandbox/faults``: faults injected so far per method and kind (``429``, ``5xx``, ``drop``), and the
  faults still armed.
- ``DELETE /sandbox/faults`` (or ``POST /sandbox/faults/clear``, optional ``{"seed": n}``): no more faults,
  counters back to zero.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from skinsense.sandbox.state import BOT_USER_ID, FAULT_KINDS, BotApiError, Fault, RateFault, SandboxState


class Control:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def photo(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        content: dict[str, Any] = {"photo": self.state.photo_sizes(await request.read())}
        for key in ("caption", "media_group_id"):
            if key in request.query:
                content[key] = request.query[key]
        if "reply_to" in request.query:  # sent as a reply to one of the chat's messages (a reminder, say)
            content["reply_to_message"] = self.state.find_message(chat_id, int(request.query["reply_to"]))
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
        content: dict[str, Any] = {"document": document}
        for key in ("caption", "media_group_id"):  # as for photos: a file sent with words, or in an album
            if key in request.query:
                content[key] = request.query[key]
        return web.json_response(await self.state.user_message(chat_id, content))

    async def text(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        body = await request.json()
        text = body["text"]
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        from_id = None if body.get("from_id") is None else int(body["from_id"])  # a member of a group chat
        return web.json_response(await self.state.user_message(chat_id, content, from_id))

    async def message(self, request: web.Request) -> web.Response:
        """Any other kind of message (sticker, voice, video...), given as its Bot API fields."""
        chat_id = int(request.match_info["chat_id"])
        return web.json_response(await self.state.user_message(chat_id, await request.json()))

    async def callback(self, request: web.Request) -> web.Response:
        """The patient taps an inline button: ``{"message_id": ..., "data": ...}`` (the button's callback data);
        optional ``from_id`` (who taps, in a group chat) and ``forged`` (any data, as a custom client sends)."""
        chat_id = int(request.match_info["chat_id"])
        body = await request.json()
        from_id = None if body.get("from_id") is None else int(body["from_id"])
        try:
            query = await self.state.callback_query(
                chat_id, int(body["message_id"]), str(body["data"]), from_id, bool(body.get("forged", False))
            )
        except BotApiError as error:
            return web.json_response({"ok": False, "description": error.description}, status=error.status)
        return web.json_response(query)

    async def messages(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        messages = [{**m, "from_bot": m["from"]["id"] == BOT_USER_ID} for m in self.state.messages.get(chat_id, [])]
        return web.json_response(messages)

    async def answers(self, request: web.Request) -> web.Response:
        """The taps on inline buttons in a chat, oldest first, each with the bot's answer (answerCallbackQuery):
        ``query_id``, ``message_id``, ``data``, ``from_id``, ``answered``, ``text``, ``show_alert``, ``url``;
        ``?query_id=`` for one tap."""
        chat_id = int(request.match_info["chat_id"])
        query_id = request.query.get("query_id")
        records = [
            r.as_json() for r in self.state.callback_answers(chat_id) if query_id is None or r.query_id == query_id
        ]
        return web.json_response(records)

    async def faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        method = str(body["method"])
        if body.get("seed") is not None:
            self.state.fault_random.seed(int(body["seed"]))
        retry_after = int(body.get("retry_after", 1))
        if any(f"rate_{kind}" in body for kind in FAULT_KINDS):
            rates = RateFault(
                method,
                rate_429=_rate(body, "rate_429"),
                rate_5xx=_rate(body, "rate_5xx"),
                rate_drop=_rate(body, "rate_drop"),
                retry_after=retry_after,
                statuses=tuple(int(s) for s in body.get("statuses", (502, 503))),
            )
            if rates.rate_429 + rates.rate_5xx + rates.rate_drop > 1 or not all(500 <= s < 600 for s in rates.statuses):
                raise ValueError("the rates must add up to at most 1 and statuses be 5xx")
            self.state.rate_faults[method.lower()] = rates
        else:
            kind = str(body.get("kind", "429"))
            if kind not in FAULT_KINDS:
                raise ValueError(f"kind must be one of {FAULT_KINDS}")
            status = int(body.get("status", 503))
            self.state.faults.append(Fault(method, int(body.get("count", 1)), retry_after, kind, status))
        return web.json_response({"ok": True})

    async def fault_report(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.fault_report())

    async def clear_faults(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        seed = body.get("seed") if isinstance(body, dict) else None
        self.state.clear_faults(None if seed is None else int(seed))
        return web.json_response({"ok": True})

    async def calls(self, request: web.Request) -> web.Response:
        """The Bot API calls logged, oldest first (``method``: of that method only; ``since``: from that position
        of the whole log on). ``X-Calls-Total`` is the log's length: the next ``since`` of a client that reads
        the log as it grows, instead of the whole log each time."""
        method = request.query.get("method")
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"ok": False, "description": "since must be a whole number"}, status=400)
        logged = self.state.calls
        calls = [c for c in logged[max(since, 0) :] if method is None or c["method"].lower() == method.lower()]
        return web.json_response(calls, headers={"X-Calls-Total": str(len(logged))})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pending_updates": len(self.state.updates)})


def _rate(body: dict[str, Any], name: str) -> float:
    rate = float(body.get(name, 0.0))
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    return rate
