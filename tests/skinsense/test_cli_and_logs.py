"""The command line lists every command on one line, and logs never show the bot token (tracebacks stay)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

from shared.config import Settings
from shared.logs import LOG_FORMAT, REDACTED, RedactSecrets, configure_logging
from skinsense.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAEhBP0av28pWS1vhHJb3gxYw3dBnsd5PYZ"


def command_lines(help_text: str) -> dict[str, str]:
    lines = {}
    for line in help_text.splitlines():
        words = line.split(maxsplit=1)
        if line.startswith("    ") and len(words) == 2:
            lines[words[0]] = words[1]
    return lines


def test_skinsense_help_lists_every_command_with_one_line() -> None:
    output = subprocess.run(
        [sys.executable, "-m", "skinsense.cli", "--help"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    listed = command_lines(output)
    assert {c.name: c.help for c in COMMANDS} == {name: listed.get(name) for name in (c.name for c in COMMANDS)}


def test_dev_help_lists_its_own_and_every_skinsense_command() -> None:
    output = subprocess.run([str(REPO / "dev"), "--help"], capture_output=True, text=True, check=True).stdout
    own = {line.split()[0] for line in output.splitlines() if line.startswith("  ") and not line.startswith("    ")}
    assert {"up", "test", "help"} <= own
    assert set(command_lines(output)) >= {c.name for c in COMMANDS}


def test_the_token_is_redacted_from_messages_and_tracebacks_which_are_kept() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactSecrets([TOKEN]))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ConnectionError(f"POST https://api.telegram.org/bot{TOKEN}/getUpdates failed")
        except ConnectionError:
            logger.exception("while polling %s", f"https://api.telegram.org/bot{TOKEN}/")
        logger.error("another token-shaped string: 987654321:%s", "B" * 35)
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output and "ConnectionError" in output
    assert TOKEN not in output and "B" * 35 not in output
    assert output.count(REDACTED) == 3


def test_telegrams_debug_lines_with_patient_data_stay_out_even_at_debug_level() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging(Settings(log_level="DEBUG"))
        assert logging.getLogger("skinsense.anything").isEnabledFor(logging.DEBUG), "DEBUG was asked for"
        # PTB's DEBUG lines carry raw updates and request parameters (chat ids, texts).
        assert not logging.getLogger("telegram.ext.Updater").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("telegram.ext.Application").isEnabledFor(logging.INFO)
        configure_logging(Settings(log_level="WARNING"))
        assert not logging.getLogger("telegram.ext.Application").isEnabledFor(logging.INFO), "no louder than asked"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.getLogger("telegram").setLevel(logging.NOTSET)
