"""The local Bot API sandbox follows the published Bot API: encodings, errors, long polling, files."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from skinsense.sandbox.state import SandboxState
from tests.auxil.sandbox_user import SandboxUser
from tests.auxil.services import ChildProcess, child_env, free_port, port_open, python_command, wait_until

TOKEN = "1111:sandbox-test-token"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    child = ChildProcess(
        "sandbox",
        python_command("-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", TOKEN),
        child_env(),
        tmp_path_factory.mktemp("logs"),
    )
    try:
        wait_until(lambda: port_open(port), 30, what="sandbox")
        yield f"http://127.0.0.1:{port}"
    finally:
        child.stop()


def method_url(api: str, method: str, token: str = TOKEN) -> str:
    return f"{api}/bot{token}/{method}"


def test_wrong_token_is_401_in_bot_api_shape(sandbox: str) -> None:
    response = httpx.get(method_url(sandbox, "getMe", token="1111:wrong"))
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


def test_a_malformed_control_call_is_a_400_that_says_so(sandbox: str) -> None:
    for path, body in (("/sandbox/chats/1001/text", b"hello"), ("/sandbox/chats/x/text", b'{"text": "hi"}')):
        response = httpx.post(sandbox + path, content=body)
        assert response.status_code == 400, path
        assert response.json()["ok"] is False and "malformed request" in response.json()["description"]


def test_unknown_method_is_404(sandbox: str) -> None:
    response = httpx.post(method_url(sandbox, "launchRocket"))
    assert response.status_code == 404 and response.json()["ok"] is False


def test_every_request_encoding_is_understood(sandbox: str) -> None:
    chat = 501
    by_query = httpx.get(method_url(sandbox, "sendMessage"), params={"chat_id": chat, "text": "query"})
    by_form = httpx.post(method_url(sandbox, "sendMessage"), data={"chat_id": str(chat), "text": "form"})
    by_json = httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": chat, "text": "json"})
    by_multipart = httpx.post(
        method_url(sandbox, "sendPhoto"),
        data={"chat_id": str(chat), "caption": "multi"},
        files={"photo": ("p.jpg", b"\xff\xd8 not really a jpeg", "image/jpeg")},
    )
    for response in (by_query, by_form, by_json, by_multipart):
        assert response.status_code == 200, response.text
        assert response.json()["ok"] is True
    texts = [m.get("text") or m.get("caption") for m in SandboxUser(sandbox).bot_messages(chat)]
    assert texts == ["query", "form", "json", "multi"]


def test_html_is_checked_and_stripped_like_telegram(sandbox: str) -> None:
    good = httpx.post(
        method_url(sandbox, "sendMessage"),
        json={"chat_id": 502, "text": "<b>bold</b> &amp; plain", "parse_mode": "HTML"},
    )
    assert good.json()["result"]["text"] == "bold & plain"
    bad = httpx.post(
        method_url(sandbox, "sendMessage"), json={"chat_id": 502, "text": "<b>unclosed", "parse_mode": "HTML"}
    )
    assert bad.status_code == 400 and "can't parse entities" in bad.json()["description"]


def test_long_polling_waits_for_an_update_and_offset_confirms(sandbox: str) -> None:
    user = SandboxUser(sandbox)
    first = httpx.get(method_url(sandbox, "getUpdates"), params={"timeout": 0}).json()["result"]
    offset = (first[-1]["update_id"] + 1) if first else 0
    threading.Timer(1.0, lambda: user.send_text(503, "hello")).start()
    started = time.monotonic()
    updates = httpx.get(method_url(sandbox, "getUpdates"), params={"offset": offset, "timeout": 10}, timeout=20).json()[
        "result"
    ]
    assert time.monotonic() - started < 9, "long polling answers as soon as an update arrives"
    assert [u["message"]["text"] for u in updates] == ["hello"]
    after = httpx.get(
        method_url(sandbox, "getUpdates"), params={"offset": updates[-1]["update_id"] + 1, "timeout": 0}
    ).json()["result"]
    assert after == []


def test_injected_flood_control_answers_429_with_retry_after(sandbox: str) -> None:
    SandboxUser(sandbox).inject_fault("sendChatAction", count=1, retry_after=7)
    refused = httpx.post(method_url(sandbox, "sendChatAction"), json={"chat_id": 1, "action": "typing"})
    assert refused.status_code == 429
    assert refused.json()["parameters"] == {"retry_after": 7}
    accepted = httpx.post(method_url(sandbox, "sendChatAction"), json={"chat_id": 1, "action": "typing"})
    assert accepted.json() == {"ok": True, "result": True}


def test_count_faults_answer_5xx_or_403_or_execute_and_lose_the_response(sandbox: str) -> None:
    user = SandboxUser(sandbox)
    user.clear_faults()
    user.inject_fault("sendMessage", count=1, kind="5xx", status=502)
    failed = httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": 507, "text": "never sent"})
    assert failed.status_code == 502 and failed.json()["ok"] is False
    user.inject_fault("sendMessage", count=1, kind="403")
    refused = httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": 507, "text": "refused"})
    assert refused.status_code == 403 and refused.json()["description"].startswith("Forbidden:")
    user.inject_fault("sendMessage", count=1, kind="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": 507, "text": "sent, answer lost"})
    assert [m["text"] for m in user.bot_messages(507)] == ["sent, answer lost"]
    assert user.fault_report()["injected"] == {"sendMessage": {"429": 0, "5xx": 1, "drop": 1, "403": 1}}


def test_rate_faults_are_seeded_reproducible_counted_and_cleared(sandbox: str) -> None:
    user = SandboxUser(sandbox)

    def outcomes() -> list[str]:
        results = []
        for _ in range(60):
            try:
                response = httpx.post(method_url(sandbox, "sendChatAction"), json={"chat_id": 508, "action": "typing"})
                results.append(str(response.status_code))
            except httpx.RemoteProtocolError:
                results.append("dropped")
        return results

    user.clear_faults()
    user.inject_fault_rates("*", rate_429=0.3, rate_5xx=0.2, rate_drop=0.2, retry_after=3, seed=11)
    first = outcomes()
    report = user.fault_report()
    user.clear_faults()
    user.inject_fault_rates("sendChatAction", rate_429=0.3, rate_5xx=0.2, rate_drop=0.2, retry_after=3, seed=11)
    assert outcomes() == first, "the same seed gives the same faults"
    assert {"200", "429", "dropped"} <= set(first) and ({"502", "503"} & set(first))
    counted = report["injected"]["sendChatAction"]
    assert counted == {
        "429": first.count("429"),
        "5xx": first.count("502") + first.count("503"),
        "drop": first.count("dropped"),
        "403": 0,
    }
    refused = next(c for c in user.calls("sendChatAction") if c.get("fault") == "429")
    assert refused["method"] == "sendChatAction"
    user.clear_faults()
    assert user.fault_report()["total"] == {"429": 0, "5xx": 0, "drop": 0, "403": 0}
    assert all(outcome == "200" for outcome in outcomes()[:10])


def test_download_faults_answer_429_or_5xx_then_the_file(sandbox: str) -> None:
    user = SandboxUser(sandbox)
    user.clear_faults()
    photo = user.send_photo(509, b"downloadable")["photo"][-1]
    info = httpx.post(method_url(sandbox, "getFile"), json={"file_id": photo["file_id"]}).json()["result"]
    user.inject_fault("download", count=1, retry_after=2)
    user.inject_fault("download", count=1, kind="5xx", status=503)
    url = f"{sandbox}/file/bot{TOKEN}/{info['file_path']}"
    assert [httpx.get(url).status_code for _ in range(2)] == [429, 503]
    assert httpx.get(url).content == b"downloadable"
    assert user.fault_report()["injected"]["download"] == {"429": 1, "5xx": 1, "drop": 0, "403": 0}


def test_files_are_fetched_with_get_file_then_downloaded(sandbox: str, tmp_path: Path) -> None:
    photo = SandboxUser(sandbox).send_photo(504, b"raw photo bytes")["photo"][-1]
    info = httpx.post(method_url(sandbox, "getFile"), json={"file_id": photo["file_id"]}).json()["result"]
    download = httpx.get(f"{sandbox}/file/bot{TOKEN}/{info['file_path']}")
    assert download.content == b"raw photo bytes"
    bad = httpx.post(method_url(sandbox, "getFile"), json={"file_id": "nope"})
    assert bad.status_code == 400 and bad.json()["description"] == "Bad Request: invalid file_id"


def test_edit_message_text_edits_and_refuses_unknown_or_unchanged(sandbox: str) -> None:
    sent = httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": 505, "text": "one"}).json()["result"]
    edit = {"chat_id": 505, "message_id": sent["message_id"], "text": "two"}
    assert httpx.post(method_url(sandbox, "editMessageText"), json=edit).json()["result"]["text"] == "two"
    same = httpx.post(method_url(sandbox, "editMessageText"), json=edit)
    assert same.status_code == 400 and "not modified" in same.json()["description"]
    missing = httpx.post(method_url(sandbox, "editMessageText"), json={**edit, "message_id": 999999})
    assert missing.json()["description"] == "Bad Request: message to edit not found"
    history = SandboxUser(sandbox).bot_messages(505)[0]
    assert history["edits"] == ["one"] and history["text"] == "two"


def test_delete_message_removes_the_bots_own_message_only(sandbox: str) -> None:
    sent = httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": 506, "text": "gone"}).json()["result"]
    patient = SandboxUser(sandbox).send_text(506, "mine")
    gone = {"chat_id": 506, "message_id": sent["message_id"]}
    assert httpx.post(method_url(sandbox, "deleteMessage"), json=gone).json()["result"] is True
    assert SandboxUser(sandbox).bot_messages(506) == []
    again = httpx.post(method_url(sandbox, "deleteMessage"), json=gone)
    assert again.status_code == 400 and again.json()["description"] == "Bad Request: message to delete not found"
    theirs = httpx.post(method_url(sandbox, "deleteMessage"), json={**gone, "message_id": patient["message_id"]})
    assert theirs.status_code == 400 and "can't be deleted" in theirs.json()["description"]


def test_structured_parameters_arrive_json_encoded_in_forms(sandbox: str) -> None:
    sent = httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": 506, "text": "first"}).json()["result"]
    reply = httpx.post(
        method_url(sandbox, "sendMessage"),
        data={"chat_id": "506", "text": "second", "reply_parameters": json.dumps({"message_id": sent["message_id"]})},
    ).json()
    assert reply["result"]["reply_to_message"]["message_id"] == sent["message_id"]


def test_a_tap_on_an_inline_button_is_a_callback_query_and_an_edit_without_keyboard_removes_it(sandbox: str) -> None:
    chat = 505
    keyboard = {"inline_keyboard": [[{"text": "I agree", "callback_data": "consent|agree|v1"}]]}
    sent = httpx.post(
        method_url(sandbox, "sendMessage"), json={"chat_id": chat, "text": "ok?", "reply_markup": keyboard}
    ).json()["result"]
    user = SandboxUser(sandbox)
    query = user.tap(chat, sent["message_id"], "I agree")
    assert query["data"] == "consent|agree|v1" and query["message"]["message_id"] == sent["message_id"]
    updates = httpx.get(method_url(sandbox, "getUpdates")).json()["result"]
    assert any(u.get("callback_query", {}).get("id") == query["id"] for u in updates)
    with pytest.raises(httpx.HTTPStatusError):
        user._post(f"/sandbox/chats/{chat}/callback", json={"message_id": sent["message_id"], "data": "forged"})
    edited = httpx.post(
        method_url(sandbox, "editMessageText"), json={"chat_id": chat, "message_id": sent["message_id"], "text": "done"}
    ).json()["result"]
    assert "reply_markup" not in edited


def test_the_call_log_is_read_as_it_grows_from_a_position(sandbox: str) -> None:
    first = httpx.get(f"{sandbox}/sandbox/calls")
    position = int(first.headers["X-Calls-Total"])
    assert position == len(first.json())
    for text in ("one", "two"):
        httpx.post(method_url(sandbox, "sendMessage"), json={"chat_id": 777, "text": text}).raise_for_status()
    httpx.post(method_url(sandbox, "getMe")).raise_for_status()
    grown = httpx.get(f"{sandbox}/sandbox/calls", params={"method": "sendMessage", "since": position})
    assert [call["parameters"]["text"] for call in grown.json()] == ["one", "two"], "only what came after"
    assert int(grown.headers["X-Calls-Total"]) == position + 3, "the whole log's length, getMe included"
    refused = httpx.get(f"{sandbox}/sandbox/calls", params={"since": "x"})
    assert refused.status_code == 400


def test_the_bots_answer_to_a_tap_is_recorded_and_readable_and_the_keyboard_can_be_edited_alone(sandbox: str) -> None:
    chat = 508
    keyboard = {"inline_keyboard": [[{"text": "Close", "callback_data": "close"}]]}
    sent = httpx.post(
        method_url(sandbox, "sendMessage"), json={"chat_id": chat, "text": "case", "reply_markup": keyboard}
    ).json()["result"]
    user = SandboxUser(sandbox)
    query = user.tap(chat, sent["message_id"], "Close")
    (waiting,) = user.answers(chat)
    assert (waiting["query_id"], waiting["data"], waiting["answered"]) == (query["id"], "close", False)

    answer = {"callback_query_id": query["id"], "text": "Sure? Tap again.", "show_alert": True}
    assert httpx.post(method_url(sandbox, "answerCallbackQuery"), json=answer).json()["result"] is True
    again = {"callback_query_id": query["id"], "text": "a second answer"}
    httpx.post(method_url(sandbox, "answerCallbackQuery"), json=again).raise_for_status()
    answered = user.wait_for_answer(query)
    assert (answered["text"], answered["show_alert"]) == ("Sure? Tap again.", True), "Telegram shows the first"
    unknown = httpx.post(method_url(sandbox, "answerCallbackQuery"), json={"callback_query_id": "nope", "text": "x"})
    assert unknown.status_code == 400 and "query ID is invalid" in unknown.json()["description"]
    snapshot = httpx.get(f"{sandbox}/sandbox/web/chats/{chat}").json()
    assert [a["text"] for a in snapshot["answers"]] == ["Sure? Tap again."], "the web chat shows it"

    confirm = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}, {"text": "No", "callback_data": "no"}]]}
    edit = {"chat_id": chat, "message_id": sent["message_id"], "reply_markup": confirm}
    edited = httpx.post(method_url(sandbox, "editMessageReplyMarkup"), json=edit).json()["result"]
    assert edited["text"] == "case" and edited["reply_markup"] == confirm
    same = httpx.post(method_url(sandbox, "editMessageReplyMarkup"), json=edit)
    assert same.status_code == 400 and "not modified" in same.json()["description"]
    removed = {"chat_id": chat, "message_id": sent["message_id"]}
    assert (
        "reply_markup" not in httpx.post(method_url(sandbox, "editMessageReplyMarkup"), json=removed).json()["result"]
    )


def test_configured_clinician_chats_and_users_are_named_as_clinicians_the_others_as_patients() -> None:
    state = SandboxState("t", frozenset({9001, -1009003}), frozenset({7001}))
    assert state.user(9001)["first_name"] == "Dr 9001" and state.chat(9001)["first_name"] == "Dr 9001"
    assert state.user(7001)["first_name"] == "Dr 7001", "a listed user, in the clinicians' group"
    assert state.user(7002)["first_name"] == "Patient 7002" and state.chat(1001)["first_name"] == "Patient 1001"
    assert state.chat(-1009003)["title"] == "Clinicians' group -1009003" and state.chat(-5)["title"] == "Group -5"
    assert state.user(-1009003)["first_name"] == "Patient -1009003", "a group's id is no clinician's"
