"""Fairness benchmark: does one chat's flood hold up the other patients? Prints figures, asserts nothing.

Starts the real stack on free ports (redis-server, the sandbox, prefork workers, the bot; SQLite; patients who
consented and never answer the questions, so a result goes out once it is ready), then runs phases in which
``--patients`` other chats each send a phone or HAM10000 photo, spread over the phase:

- ``quiet``: nobody floods (the baseline);
- ``texts``: one chat sends ``--flood-texts`` texts in 10 s meanwhile;
- ``photos``: one chat sends ``--flood-photos`` photos in 20 s meanwhile;
- ``presses``: one chat sends 300 copied button presses in 20 s meanwhile.

For the other patients' photos it prints p50/p95 of the first answer ("Analysing...") and of the result (the
worker's edit), from the sandbox's log of Bot API calls, and for the flooding chat how many messages it got.

    python benchmarks/fairness.py --patients 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from pipeline import SandboxCalls, consent_all, free_port, start_stack

from shared.config import get_settings
from skinsense.migrate import upgrade_database
from skinsense.sandbox import SANDBOX_TOKEN
from skinsense.stack import Stack


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Figures:
    phase: str
    first_answer_s: list[float]
    result_s: list[float]
    flood_sent: int
    flood_answered: int

    def line(self) -> str:
        def pair(values: list[float]) -> str:
            if not values:
                return "-"
            return f"{statistics.median(values):.2f} / {percentile(values, 0.95):.2f}"

        return (
            f"| {self.phase} | {len(self.first_answer_s)} | {pair(self.first_answer_s)} | {pair(self.result_s)} "
            f"| {self.flood_sent} | {self.flood_answered} |"
        )


def flood(http: httpx.Client, chat: int, kind: str, count: int, seconds: float, photo: bytes) -> None:
    """``count`` updates from ``chat`` spread evenly over ``seconds``."""
    if kind == "presses":
        anchor = http.post(f"/sandbox/chats/{chat}/text", json={"text": "/privacy"}).json()["message_id"]
        time.sleep(1.0)
    for number in range(count):
        started = time.time()
        if kind == "texts":
            http.post(f"/sandbox/chats/{chat}/text", json={"text": f"is it bad? {number}"})
        elif kind == "photos":
            http.post(f"/sandbox/chats/{chat}/photo", content=photo)
        else:
            body = {"message_id": anchor + 1, "data": f"q|{'0' * 32}|grew|yes", "forged": True}
            http.post(f"/sandbox/chats/{chat}/callback", json=body)
        time.sleep(max(0.0, seconds / count - (time.time() - started)))


def run_phase(
    http: httpx.Client,
    calls: SandboxCalls,
    phase: str,
    patients: list[int],
    photos: list[bytes],
    flood_chat: int,
    flood_count: int,
    seconds: float,
) -> Figures:
    flooding = None
    if phase != "quiet":
        flooding = threading.Thread(
            target=flood, args=(http, flood_chat, phase, flood_count, seconds, photos[0]), daemon=True
        )
        flooding.start()
        time.sleep(1.0)  # the flood is under way when the patients send
    sent_at: dict[int, float] = {}
    for chat, photo in zip(patients, photos, strict=False):
        sent_at[chat] = time.time()
        http.post(f"/sandbox/chats/{chat}/photo", content=photo).raise_for_status()
        time.sleep(seconds / len(patients))
    deadline = time.time() + 180
    first: dict[int, float] = {}
    result: dict[int, float] = {}
    while time.time() < deadline and len(result) < len(sent_at):
        time.sleep(0.5)
        for call in calls.read():
            chat = int(call["parameters"].get("chat_id", 0) or 0)
            if chat not in sent_at or call["time"] < sent_at[chat] or call.get("fault"):
                continue
            if call["method"] == "sendMessage":
                first.setdefault(chat, call["time"] - sent_at[chat])
            elif call["method"] == "editMessageText" and "Analysing" not in str(call["parameters"].get("text")):
                result.setdefault(chat, call["time"] - sent_at[chat])
    if flooding is not None:
        flooding.join()
    flood_answers = [
        c for c in calls.read() if str(c["parameters"].get("chat_id")) == str(flood_chat) and not c.get("fault")
    ]
    answered = [c for c in flood_answers if c["method"] in ("sendMessage", "answerCallbackQuery")]
    return Figures(phase, list(first.values()), list(result.values()), flood_count if flooding else 0, len(answered))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20, help="other patients' photos per phase")
    parser.add_argument("--flood-texts", type=int, default=100)
    parser.add_argument("--flood-photos", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--phases", default="quiet,texts,photos,presses")
    args = parser.parse_args()
    data_dir = get_settings().data_dir
    if data_dir is None:
        raise SystemExit("set SKINSENSE_DATA_DIR")
    photos = [p.read_bytes() for p in sorted((data_dir / "images").glob("*.jpg"))[: args.patients]]
    redis_port, sandbox_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="skinsense-fairness-"))
    database_url = f"sqlite:///{workdir / 'audit.sqlite3'}"
    stack = Stack()
    stack.environment.update(
        SKINSENSE_TELEGRAM_TOKEN=SANDBOX_TOKEN,
        SKINSENSE_TELEGRAM_API_URL=f"http://127.0.0.1:{sandbox_port}",
        SKINSENSE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        SKINSENSE_DATABASE_URL=database_url,
        SKINSENSE_LOG_LEVEL="WARNING",
        SKINSENSE_QUESTIONNAIRE_TIMEOUT_S="0",
    )
    upgrade_database(database_url)
    phases = args.phases.split(",")
    chats_per_phase = args.patients + 1
    consent_all(database_url, range(200_000, 200_000 + chats_per_phase * len(phases)))
    rows = []
    try:
        http = start_stack(stack, redis_port, sandbox_port, args.concurrency)
        calls = SandboxCalls(f"http://127.0.0.1:{sandbox_port}")
        time.sleep(5)  # the worker processes load their models
        for index, phase in enumerate(phases):
            base = 200_000 + index * chats_per_phase
            count = {"texts": args.flood_texts, "photos": args.flood_photos, "presses": 300}.get(phase, 0)
            seconds = 10.0 if phase in ("quiet", "texts") else 20.0
            figures = run_phase(
                http, calls, phase, list(range(base + 1, base + chats_per_phase)), photos, base, count, seconds
            )
            rows.append(figures)
            time.sleep(5)
    finally:
        stack.stop()
    header = "| flood | other patients | first answer p50 / p95 s | result p50 / p95 s | flood sent | answered |"
    print(header)
    print("| --- | --- | --- | --- | --- | --- |")
    for figures in rows:
        print(figures.line())


if __name__ == "__main__":
    main()
