"""The sandbox's web chat (skinsense/sandbox/webchat) in real headless Chromium: the page sends what a patient
sends, presses the bot's buttons and shows what the bot sent, live.

Chromium and its driver are Debian's (``apt-get install chromium chromium-driver``; ./dev test installs them);
selenium is pointed at them, so nothing downloads a browser. Without them these tests skip (fail under CI).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from sqlmodel import Session, select

from models.serving.explain import CHART_WIDTH, PANEL
from shared.answers import BodySite, PatientAnswers, Sex
from shared.audit import Job
from shared.questionnaire import AgeRange, Question
from shared.texts import clinician as clinician_texts
from shared.texts import patient as patient_texts
from shared.texts import questionnaire as questionnaire_texts
from skinsense.sandbox import plain_text
from skinsense.sandbox.webchat import STATIC_DIR
from skinsense.sandbox.webchat.routes import CHAT_ACTION_SHOWN_S, LISTED_CHATS
from tests.auxil.sandbox_user import SandboxUser, button_data
from tests.auxil.services import ChildProcess, child_env, free_port, port_open, python_command, wait_until
from tests.auxil.stack import CLINICIANS, RunningStack, running_stack

T = TypeVar("T")
TOKEN = "2222:webchat-test-token"
PAGE_WAIT_S = 120  # generous: the machine running the suite may be busy (timeouts, never timings asserted)


# ---- the browser -------------------------------------------------------------------------------------------


def chromium_binaries() -> tuple[str, str]:
    """Debian's Chromium and chromedriver; skip (fail under CI, where ./dev test installs them) when absent."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        message = (
            "Chromium or chromedriver is not installed; ./dev test installs them "
            "(apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver_path = chromium_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = binary  # with the driver's path given too, Selenium Manager never runs
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: webdriver.Chrome, check: Callable[[], T | None], what: str) -> T:
    """Wait until ``check`` gives a value; a page element replaced meanwhile (a live update) means: look again."""

    def attempt(_: Any) -> T | None:
        try:
            return check()
        except StaleElementReferenceException:
            return None

    result = WebDriverWait(browser, PAGE_WAIT_S, poll_frequency=0.2).until(attempt, f"waiting for {what}")
    assert result is not None  # until() returns only a value that is not falsy
    return result


def bubble(browser: webdriver.Chrome, message_id: int) -> WebElement | None:
    """The page's bubble showing a message (an album's bubble lists all its message ids)."""
    found = browser.find_elements(
        By.XPATH,
        f"//ol[@id='messages']/li[contains(concat(' ', @data-message-ids, ' '), ' {message_id} ') "
        f"or @data-message-id='{message_id}']",
    )
    return found[0] if found else None


def bubble_text(element: WebElement) -> str:
    return " ".join(" ".join(part.text for part in element.find_elements(By.CLASS_NAME, "text")).split())


def bubble_reading(browser: webdriver.Chrome, message_id: int, text: str) -> WebElement | None:
    """The message's bubble once it reads ``text`` (whitespace aside)."""
    element = bubble(browser, message_id)
    return element if element is not None and bubble_text(element) == normalised(text) else None


def normalised(text: str) -> str:
    return " ".join(text.split())


def page_button(browser: webdriver.Chrome, message_id: int, label: str) -> WebElement | None:
    element = bubble(browser, message_id)
    if element is None:
        return None
    for button in element.find_elements(By.CSS_SELECTOR, "button.inline-button"):
        if button.text == label and button.is_enabled():
            return button
    return None


def click(browser: webdriver.Chrome, find: Callable[[], WebElement | None], what: str) -> None:
    """Click an element once it is there (found again if a live update replaced it meanwhile)."""

    def clicked() -> bool:
        element = find()
        if element is None:
            return False
        element.click()
        return True

    wait_for(browser, clicked, what)


def press(browser: webdriver.Chrome, message_id: int, label: str) -> None:
    """Click the inline button ``label`` under a message, then wait until the bot has changed that message."""
    before = wait_for(browser, lambda: page_button(browser, message_id, label) and bubble(browser, message_id), label)
    click(browser, lambda: page_button(browser, message_id, label), f"button {label!r}")
    wait_for(browser, lambda: bubble(browser, message_id) != before or None, f"the bot to answer {label!r}")


def press_noted(browser: webdriver.Chrome, user: SandboxUser, chat_id: int, message_id: int, label: str) -> None:
    """Click a questionnaire button; the bot answers the tap with a short note ("Noted: ..."), which the page
    shows, rather than editing the message (it does that only when the page changes or the questions close)."""
    before = len(user.answers(chat_id))
    click(browser, lambda: page_button(browser, message_id, label), f"button {label!r}")

    def answered() -> list[dict[str, Any]]:
        return [answer for answer in user.answers(chat_id)[before:] if answer["answered"]]

    note = wait_until(answered, 30, what=f"the bot's answer to {label!r}")[0].get("text")
    if note:
        assert str(note).startswith("Noted: "), note

        def shown() -> WebElement | None:
            box = browser.find_element(By.ID, "bot-answer")
            return box if box.is_displayed() and box.text == str(note) else None

        wait_for(browser, shown, f"the note {note!r} in the page")


def open_page(browser: webdriver.Chrome, api_url: str, chat_id: int) -> None:
    """Open the web chat on one chat and wait until it shows that chat's messages."""
    browser.get(f"{api_url}/#{chat_id}")
    shown = f"body[data-shown-chat='{chat_id}']"
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, shown), f"the page to show chat {chat_id}")


def type_and_send(browser: webdriver.Chrome, text: str) -> None:
    box = browser.find_element(By.ID, "text")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def attach_and_send(browser: webdriver.Chrome, *paths: Path, caption: str = "") -> None:
    # chromedriver takes canonical paths only (./dev test gives the data as ../shared/...)
    browser.find_element(By.ID, "file-input").send_keys("\n".join(str(path.resolve()) for path in paths))
    if caption:
        browser.find_element(By.ID, "text").send_keys(caption)
    browser.find_element(By.ID, "send").click()


def loaded_image(browser: webdriver.Chrome, image: WebElement) -> tuple[int, int] | None:
    """The picture's size once the browser has decoded it (scrolled into view: pictures load lazily)."""
    size = browser.execute_script(
        "arguments[0].scrollIntoView(); return arguments[0].complete && arguments[0].naturalWidth > 0"
        " ? [arguments[0].naturalWidth, arguments[0].naturalHeight] : null;",
        image,
    )
    return (int(size[0]), int(size[1])) if size else None


def shown_picture(browser: webdriver.Chrome, file_id: str) -> tuple[int, int]:
    def find() -> tuple[int, int] | None:
        images = browser.find_elements(By.CSS_SELECTOR, f"#messages img[data-file-id='{file_id}']")
        return loaded_image(browser, images[0]) if images else None

    return wait_for(browser, find, f"picture {file_id} to be shown")


# ---- the page on a sandbox alone: sending, buttons, edits, safety ---------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    child = ChildProcess(
        "sandbox",
        python_command("-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", TOKEN),
        child_env(clinician_chat_ids="9100,-9200", clinician_user_ids="4242"),
        tmp_path_factory.mktemp("logs"),
    )
    try:
        wait_until(lambda: port_open(port), 30, what="sandbox")
        yield f"http://127.0.0.1:{port}"
    finally:
        child.stop()


def sent_by_patient(user: SandboxUser, chat_id: int, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The first ``count`` messages of one kind (photo, document...) the patient's page sent, once all arrived."""

    def arrived() -> list[dict[str, Any]] | None:
        found = [m for m in user.messages(chat_id) if kind in m and not m["from_bot"]]
        return found[:count] if len(found) >= count else None

    return wait_until(arrived, PAGE_WAIT_S, what=f"{count} {kind} message(s) from the page in chat {chat_id}")


def bot_call(sandbox: str, method: str, **parameters: Any) -> Any:
    """A Bot API call as the bot makes it; its result."""
    response = httpx.post(f"{sandbox}/bot{TOKEN}/{method}", json=parameters, timeout=30)
    response.raise_for_status()
    return response.json()["result"]


def photo_file(folder: Path, name: str, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    path = folder / name
    Image.new("RGB", size, colour).save(path)
    return path


def test_the_page_and_its_scripts_need_nothing_from_outside(sandbox: str) -> None:
    page = httpx.get(sandbox + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("index.html", "app.js", "style.css"):
        served = httpx.get(f"{sandbox}/web/{name}", timeout=10)
        assert served.status_code == 200 and served.text == (STATIC_DIR / name).read_text()
        assert "http://" not in served.text and "https://" not in served.text and "//cdn" not in served.text, name
    config = httpx.get(f"{sandbox}/sandbox/web/config", timeout=10).json()
    assert (config["clinician_chat_ids"], config["clinician_user_ids"]) == ([-9200, 9100], [4242])


def test_files_are_served_as_pictures_only_when_they_are_pictures(sandbox: str, tmp_path: Path) -> None:
    user = SandboxUser(sandbox)
    photo = photo_file(tmp_path, "spot.png", (64, 48), (120, 80, 60)).read_bytes()
    sent = user.send_photo(2001, photo)
    shown = httpx.get(f"{sandbox}/sandbox/files/{sent['photo'][-1]['file_id']}", timeout=10)
    assert (shown.headers["content-type"], shown.content) == ("image/png", photo)
    page = b"<html><script>alert(1)</script></html>"
    document = user.send_document(2001, page, "page.html", "text/html")["document"]
    download = httpx.get(f"{sandbox}/sandbox/files/{document['file_id']}", timeout=10)
    assert download.content == page and download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment")
    assert httpx.get(f"{sandbox}/sandbox/files/no-such-file", timeout=10).status_code == 404


def test_a_waiting_page_hears_of_a_bot_message_as_soon_as_it_is_sent(sandbox: str) -> None:
    first = httpx.get(f"{sandbox}/sandbox/web/chats/2002", timeout=10).json()
    with httpx.Client(base_url=sandbox, timeout=40) as client:
        import threading

        answers: list[dict[str, Any]] = []
        waiting = threading.Thread(
            target=lambda: answers.append(
                client.get("/sandbox/web/chats/2002", params={"version": first["version"], "wait": 30}).json()
            )
        )
        waiting.start()
        bot_call(sandbox, "sendMessage", chat_id=2002, text="news for the waiting page")
        waiting.join()
    assert [m["text"] for m in answers[0]["messages"]] == ["news for the waiting page"]
    assert answers[0]["version"] != first["version"]
    assert {"chat_id": 2002, "role": "patient", "summary": "news for the waiting page"}.items() <= {
        k: v for chat in answers[0]["chats"] if chat["chat_id"] == 2002 for k, v in chat.items()
    }.items()


def test_the_chat_list_keeps_the_clinician_chats_and_the_most_recent_others(sandbox: str) -> None:
    user = SandboxUser(sandbox)
    for chat in range(5000, 5000 + LISTED_CHATS + 5):  # a load benchmark's thousands of patients, in small
        user.send_text(chat, "hello")
    listed = {c["chat_id"] for c in httpx.get(f"{sandbox}/sandbox/web/chats/5000", timeout=10).json()["chats"]}
    assert {9100, -9200} <= listed, "the clinician chats, with messages or not"
    assert set(range(5005, 5000 + LISTED_CHATS + 5)) <= listed and not listed & set(range(5000, 5005))
    confirm_every_update(sandbox)  # as a bot would: the other tests read their callback queries from getUpdates


def confirm_every_update(sandbox: str) -> None:
    updates = bot_call(sandbox, "getUpdates")
    while updates:
        updates = bot_call(sandbox, "getUpdates", offset=updates[-1]["update_id"] + 1)


def test_the_bots_chat_action_is_shown_until_its_next_message(sandbox: str) -> None:
    chat = 2005
    asked_at = time.monotonic()
    bot_call(sandbox, "sendChatAction", chat_id=chat, action="upload_photo")
    while_shown = httpx.get(f"{sandbox}/sandbox/web/chats/{chat}", timeout=10).json()
    if time.monotonic() - asked_at < CHAT_ACTION_SHOWN_S:  # Telegram shows an action for 5 s at most
        assert while_shown["action"] == "upload_photo"
    bot_call(sandbox, "sendMessage", chat_id=chat, text="here it is")
    assert httpx.get(f"{sandbox}/sandbox/web/chats/{chat}", timeout=10).json()["action"] is None


def test_the_page_sends_text_albums_and_files_presses_buttons_and_shows_edits_live(
    sandbox: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    chat = 2003
    user = SandboxUser(sandbox)
    open_page(browser, sandbox, chat)
    type_and_send(browser, "/start")
    sent_text = wait_until(lambda: user.messages(chat), 30, what="the text to reach the sandbox")[0]
    assert sent_text["text"] == "/start" and sent_text["entities"][0]["type"] == "bot_command"

    # An album: two photos picked at once, with the text as the first one's caption.
    first = photo_file(tmp_path, "left.png", (80, 60), (150, 90, 70))
    second = photo_file(tmp_path, "right.jpg", (60, 80), (90, 60, 50))
    attach_and_send(browser, first, second, caption="two spots")
    album = sent_by_patient(user, chat, "photo", count=2)
    assert album[0]["media_group_id"] == album[1]["media_group_id"]
    assert album[0].get("caption") == "two spots" and "caption" not in album[1]
    album_bubble = wait_for(browser, lambda: bubble(browser, album[1]["message_id"]), "the album's bubble")
    assert album_bubble == bubble(browser, album[0]["message_id"]), "one bubble for the album"
    assert shown_picture(browser, album[0]["photo"][-1]["file_id"]) == (80, 60)
    assert shown_picture(browser, album[1]["photo"][-1]["file_id"]) == (60, 80)

    # A file that is not a photo goes as a document, with its name, type and caption.
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    attach_and_send(browser, report, caption="my scan")
    document = sent_by_patient(user, chat, "document")
    assert {k: document[0]["document"][k] for k in ("file_name", "mime_type")} == {
        "file_name": "report.pdf",
        "mime_type": "application/pdf",
    }
    assert document[0]["caption"] == "my scan"

    # Dropped files are attached like picked ones.
    browser.execute_script(
        """
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array([37, 80, 68, 70])], "dropped.pdf", {type: "application/pdf"}));
        document.getElementById("chat").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        """
    )
    browser.find_element(By.ID, "send").click()
    wait_until(
        lambda: [m for m in user.messages(chat) if m.get("document", {}).get("file_name") == "dropped.pdf"],
        30,
        what="the dropped file",
    )

    # The bot's buttons are pressed as callback queries; its edits show live, with the earlier text kept.
    hostile = '<img src=x onerror="document.title=1"> & <b>not bold</b>'
    question = bot_call(
        sandbox,
        "sendMessage",
        chat_id=chat,
        text=hostile,
        reply_markup={"inline_keyboard": [[{"text": "Yes", "callback_data": "answer:yes"}]]},
    )
    shown = wait_for(browser, lambda: bubble(browser, question["message_id"]), "the bot's question")
    assert bubble_text(shown) == normalised(hostile), "shown as text"
    assert shown.find_elements(By.TAG_NAME, "img") == [] and shown.find_elements(By.TAG_NAME, "b") == []
    click(browser, lambda: page_button(browser, question["message_id"], "Yes"), "the button")

    def taps() -> list[dict[str, Any]]:
        updates = httpx.get(f"{sandbox}/bot{TOKEN}/getUpdates", timeout=10).json()["result"]
        queries = [u["callback_query"] for u in updates if "callback_query" in u]
        return [q for q in queries if q["message"]["chat"]["id"] == chat]

    assert [(t["data"], t["message"]["message_id"]) for t in wait_until(taps, 30, what="the tap")] == [
        ("answer:yes", question["message_id"])
    ]
    bot_call(sandbox, "editMessageText", chat_id=chat, message_id=question["message_id"], text="Thank you")
    edited = wait_for(browser, lambda: bubble_reading(browser, question["message_id"], "Thank you"), "the edit")
    assert edited.find_elements(By.CSS_SELECTOR, "button.inline-button") == [], "the edit removed the keyboard"
    assert edited.find_element(By.CSS_SELECTOR, "details.history summary").text == "edited"
    browser.save_screenshot(str(tmp_path / "webchat-sandbox.png"))
    assert browser.title == "SkinSense sandbox chat", "no script from a message ran"


def test_in_a_group_chat_the_page_speaks_and_presses_as_a_listed_clinician(
    sandbox: str, browser: webdriver.Chrome
) -> None:
    group = -9200
    open_page(browser, sandbox, group)
    assert browser.find_element(By.ID, "member-id").get_attribute("value") == "4242", "SKINSENSE_CLINICIAN_USER_IDS"
    type_and_send(browser, "/pending")
    said = sent_by_patient(SandboxUser(sandbox), group, "text")[0]
    assert (said["from"]["id"], said["chat"]["type"]) == (4242, "supergroup")
    shown = wait_for(browser, lambda: bubble(browser, said["message_id"]), "the group message")
    assert shown.find_element(By.CLASS_NAME, "sender").text == "Dr 4242 (4242)", "a listed clinician"
    question = bot_call(
        sandbox,
        "sendMessage",
        chat_id=group,
        text="Claim?",
        reply_markup={"inline_keyboard": [[{"text": "Claim", "callback_data": "claim"}]]},
    )
    click(browser, lambda: page_button(browser, question["message_id"], "Claim"), "the button")

    def taps() -> list[dict[str, Any]]:
        updates = httpx.get(f"{sandbox}/bot{TOKEN}/getUpdates", timeout=10).json()["result"]
        return [u["callback_query"] for u in updates if u.get("callback_query", {}).get("data") == "claim"]

    assert [tap["from"]["id"] for tap in wait_until(taps, 30, what="the tap")] == [4242]


def test_the_bots_answer_to_a_tap_is_shown_as_a_toast_or_an_alert_to_close(
    sandbox: str, browser: webdriver.Chrome
) -> None:
    chat = 2006
    open_page(browser, sandbox, chat)
    keyboard = {
        "inline_keyboard": [[{"text": "Claim", "callback_data": "claim"}, {"text": "Close", "callback_data": "close"}]]
    }
    question = bot_call(sandbox, "sendMessage", chat_id=chat, text="An alert", reply_markup=keyboard)
    user = SandboxUser(sandbox)

    def answer_shown(text: str) -> WebElement | None:
        box = browser.find_element(By.ID, "bot-answer")
        return box if box.is_displayed() and box.text == text.strip() else None

    def press_and_answer(label: str, text: str, show_alert: bool) -> WebElement:
        """Tap ``label`` in the page; the bot answers the tap; the page shows the answer."""
        before = len(user.answers(chat))
        click(browser, lambda: page_button(browser, question["message_id"], label), label)
        tap = wait_until(lambda: user.answers(chat)[before:], 30, what="the tap")[0]
        bot_call(sandbox, "answerCallbackQuery", callback_query_id=tap["query_id"], text=text, show_alert=show_alert)
        return wait_for(browser, lambda: answer_shown(text), f"the answer {text!r}")

    toast = press_and_answer("Claim", "It is yours.", show_alert=False)
    assert "alert" not in (toast.get_attribute("class") or "").split(), "a toast that fades"
    alert = press_and_answer("Close", "Sure? " * 15, show_alert=True)
    assert "alert" in (alert.get_attribute("class") or "").split(), "a box to close"
    alert.click()
    wait_for(browser, lambda: not browser.find_element(By.ID, "bot-answer").is_displayed() or None, "closed")


def test_the_bots_telegram_html_is_shown_formatted_and_nothing_in_it_runs(
    sandbox: str, browser: webdriver.Chrome
) -> None:
    chat = 2004
    html = (
        '🩺 <b>Question 1</b> of <i>9</i>: <a href="javascript:document.title=2">not a link</a>, '
        '<a href="https://example.org/help">help</a>, <code>&lt;img src=x onerror=alert(1)&gt;</code>. '
        "<i>More: /about or https://example.org/more.</i>"
    )
    sent = bot_call(sandbox, "sendMessage", chat_id=chat, text=html, parse_mode="HTML")
    assert sent["text"] == (
        "🩺 Question 1 of 9: not a link, help, <img src=x onerror=alert(1)>. More: /about or https://example.org/more."
    )
    assert sent["entities"][0] == {"type": "bold", "offset": 3, "length": 10}, "offsets in UTF-16 code units"
    open_page(browser, sandbox, chat)
    shown = wait_for(browser, lambda: bubble(browser, sent["message_id"]), "the formatted message")
    assert bubble_text(shown) == normalised(sent["text"])
    assert [e.text for e in shown.find_elements(By.CSS_SELECTOR, ".text strong")] == ["Question 1"]
    assert [e.text for e in shown.find_elements(By.CSS_SELECTOR, ".text em")] == [
        "9",
        "More: /about or https://example.org/more.",
    ]
    assert [e.text for e in shown.find_elements(By.CSS_SELECTOR, ".text code")] == ["<img src=x onerror=alert(1)>"]
    links = shown.find_elements(By.CSS_SELECTOR, ".text a")
    assert [(a.text, a.get_attribute("href")) for a in links] == [
        ("help", "https://example.org/help"),
        ("https://example.org/more", "https://example.org/more"),  # found in the text, like Telegram's apps do
    ]
    assert shown.find_elements(By.TAG_NAME, "img") == [] and browser.title == "SkinSense sandbox chat"
    shown.find_element(By.CSS_SELECTOR, ".text em .command").click()  # a /command in the text sends it
    command = sent_by_patient(SandboxUser(sandbox), chat, "text")[0]
    assert command["text"] == "/about" and command["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]


# ---- the whole stack: a patient's photo to a result, all from the page ---------------------------------------


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    log_dir = tmp_path_factory.mktemp("webchat-stack")
    with running_stack(redis_url, f"sqlite:///{log_dir / 'audit.sqlite3'}", log_dir, questionnaire_timeout_s=120) as up:
        yield up


# The first page (age, sex, where; complete, so the second page follows), then the spot's lines (bleeding left
# out: unknown) and "Done".
ANSWER_TAPS = ["40-49", "Female", "Back", "Grown: yes", "Changed: no", "Itches: no", "Hurts: no", "Raised: yes", "Done"]
NOTED = questionnaire_texts.answers_noted(
    AgeRange.FORTIES,
    Sex.FEMALE,
    BodySite.BACK,
    {
        Question.GREW: True,
        Question.CHANGED: False,
        Question.ITCHES: False,
        Question.HURTS: False,
        Question.RAISED: True,
    },
)
ANSWERS = PatientAnswers(
    age=AgeRange.FORTIES.representative_age,
    sex=Sex.FEMALE,
    body_site=BodySite.BACK,
    grew=True,
    changed=False,
    itches=False,
    hurts=False,
    raised=True,
)


@pytest.mark.e2e
def test_a_patient_gets_a_result_in_the_web_chat_by_pressing_its_buttons(
    stack: RunningStack, browser: webdriver.Chrome, photos_by_risk: dict[str, Path], tmp_path: Path
) -> None:
    chat = 3001
    user = stack.user
    try:
        open_page(browser, user.api_url, chat)
        type_and_send(browser, "/start")
        agree = user.wait_for_button(chat, patient_texts.CONSENT_AGREE_BUTTON, timeout_s=PAGE_WAIT_S)
        press(browser, agree["message_id"], patient_texts.CONSENT_AGREE_BUTTON)
        consented = patient_texts.CONSENT_GIVEN
        wait_for(
            browser, lambda: bubble_reading(browser, agree["message_id"], consented), "the consent to be confirmed"
        )

        attach_and_send(browser, photos_by_risk["alert"])
        sent = sent_by_patient(user, chat, "photo")[0]
        # The questionnaire: the first message after the photo with a "Skip" button (tests/auxil/patient.py)
        questions = user.wait_for_button(
            chat, questionnaire_texts.SKIP_BUTTON, after_id=sent["message_id"], timeout_s=PAGE_WAIT_S
        )
        for label in ANSWER_TAPS:
            press_noted(browser, user, chat, questions["message_id"], label)
        done = plain_text(questionnaire_texts.questionnaire_done(NOTED), "HTML")
        wait_for(browser, lambda: bubble_reading(browser, questions["message_id"], done), "the questionnaire to close")

        reply = user.wait_for_reply(chat, sent["message_id"], timeout_s=PAGE_WAIT_S)
        shown = wait_for(browser, lambda: bubble_reading(browser, reply["message_id"], reply["text"]), "the result")
        assert "edited" in shown.text, "the 'Analysing' message was edited into the result, live"
        with Session(stack.engine) as session:
            job = session.exec(
                select(Job).where(Job.telegram_file_unique_id == sent["photo"][-1]["file_unique_id"])
            ).one()
        assert job.answers == ANSWERS.model_dump(mode="json"), "the answers pressed in the page reached the audit"

        assert shown_picture(browser, sent["photo"][-1]["file_id"]) == Image.open(photos_by_risk["alert"]).size

        # The explanation picture, sent after the result: shown whole, with its caption.
        def explanation_picture() -> dict[str, Any] | None:
            later = [m for m in user.bot_messages(chat) if m["message_id"] > reply["message_id"] and "photo" in m]
            return later[0] if later else None

        picture = wait_until(explanation_picture, PAGE_WAIT_S, what="the explanation picture")
        assert shown_picture(browser, picture["photo"][-1]["file_id"]) == (PANEL + CHART_WIDTH, PANEL)
        shown_picture_bubble = bubble(browser, picture["message_id"])
        assert shown_picture_bubble is not None and bubble_text(shown_picture_bubble) == normalised(picture["caption"])
        browser.save_screenshot(str(tmp_path / "webchat-patient.png"))

        # The melanoma alert reaches the clinicians: their chat, picked in the sidebar, shows the patient's photo and
        # the alert under it; the clinician claims it with its button, and the alert changes in the page.
        clinician, claim = CLINICIANS[0], clinician_texts.CLINICIAN_BUTTONS["claim"]
        alert = user.wait_for_button(clinician, claim, timeout_s=PAGE_WAIT_S)
        chat_link = f"button[data-chat-id='{clinician}']"
        click(
            browser, lambda: next(iter(browser.find_elements(By.CSS_SELECTOR, chat_link)), None), "the clinician chat"
        )
        wait_for(browser, lambda: bubble_reading(browser, alert["message_id"], alert["text"]), "the alert in the page")
        alert_photo = next(m for m in user.bot_messages(clinician) if "photo" in m)
        assert shown_picture(browser, alert_photo["photo"][-1]["file_id"]) == Image.open(photos_by_risk["alert"]).size
        press(browser, alert["message_id"], claim)
        claimed = next(m for m in user.bot_messages(clinician) if m["message_id"] == alert["message_id"])
        assert claimed["text"] != alert["text"] and button_data(claimed, claim) is None, "the claim took effect"
        shown_claim = wait_for(browser, lambda: bubble_reading(browser, alert["message_id"], claimed["text"]), "claim")
        assert claim not in [b.text for b in shown_claim.find_elements(By.CSS_SELECTOR, "button.inline-button")]
        browser.save_screenshot(str(tmp_path / "webchat-clinician.png"))
    except BaseException:
        browser.save_screenshot(str(tmp_path / "webchat-failure.png"))
        print(stack.logs())
        raise
