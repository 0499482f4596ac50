"""Web chat latency: from the bot's sendMessage to the message on screen in headless Chromium (the page long-polls
the sandbox). Starts its own sandbox on a free port; needs Debian's chromium and chromium-driver (as
tests/skinsense/test_webchat.py does). Prints figures, asserts nothing; never run by the tests or CI.

    python benchmarks/webchat_latency.py --messages 30
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from skinsense.processes import free_port, wait_for_port

TOKEN = "1:webchat-latency"
CHAT = 1001


def wait_for_css(browser: webdriver.Chrome, selector: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not browser.find_elements(By.CSS_SELECTOR, selector):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {selector}")
        time.sleep(0.005)


def measure(api: str, browser: webdriver.Chrome, count: int, pause_s: float) -> list[float]:
    browser.get(f"{api}/#{CHAT}")
    wait_for_css(browser, f"body[data-shown-chat='{CHAT}']")
    latencies_ms = []
    for number in range(count):
        started = time.perf_counter()
        sent = httpx.post(f"{api}/bot{TOKEN}/sendMessage", json={"chat_id": CHAT, "text": f"message {number}"})
        wait_for_css(browser, f"li[data-message-id='{sent.json()['result']['message_id']}']")
        latencies_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(pause_s)  # the page is back in its long poll, as when a patient waits for the bot
    return latencies_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between messages")
    args = parser.parse_args()
    browser_binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser_binary is None or driver is None:
        raise SystemExit("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    port = free_port()
    command = [sys.executable, "-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", TOKEN]
    sandbox = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_port(port):
            raise SystemExit("the sandbox did not start")
        options = webdriver.ChromeOptions()
        options.binary_location = browser_binary
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(argument)
        browser = webdriver.Chrome(options=options, service=Service(driver))
        try:
            latencies_ms = sorted(measure(f"http://127.0.0.1:{port}", browser, args.messages, args.pause))
        finally:
            browser.quit()
    finally:
        sandbox.terminate()
        sandbox.wait()
    p90 = latencies_ms[max(0, round(0.9 * len(latencies_ms)) - 1)]
    print(
        f"bot message to screen, {len(latencies_ms)} messages: median {statistics.median(latencies_ms):.0f} ms, "
        f"p90 {p90:.0f} ms, max {latencies_ms[-1]:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
