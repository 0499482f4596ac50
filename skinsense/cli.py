"""``skinsense``: one command for the whole product.

Every subcommand is declared the same way, in COMMANDS below: a name, one line of help, a function that
adds its arguments and a function that runs it (imports stay inside, so ``skinsense --help`` is fast and
serving never imports training code).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from shared.config import get_settings
from shared.logs import configure_logging


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    own_help: bool = True  # False: --help goes through to the command's own parser


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _pass_through(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the command itself (see its --help)")


# Serving


def _run_up(args: argparse.Namespace) -> int:
    from skinsense.stack import run_up

    return run_up()


def _run_bot(args: argparse.Namespace) -> int:
    from bot.app import run_bot

    run_bot()
    return 0


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=None)


def _run_worker(args: argparse.Namespace) -> NoReturn:
    from skinsense.stack import worker_command

    command = worker_command(get_settings(), pool=args.pool, concurrency=args.concurrency)
    os.execv(command[0], command)


def _beat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schedule", default="var/celerybeat-schedule", help="where beat remembers its last runs")


def _run_beat(args: argparse.Namespace) -> NoReturn:
    from pathlib import Path

    from skinsense.stack import beat_command

    command = beat_command(Path(args.schedule))
    os.execv(command[0], command)


def _run_flower(args: argparse.Namespace) -> NoReturn:
    from skinsense.stack import flower_command, flower_environment

    settings = get_settings()
    command = flower_command(settings)
    os.execve(command[0], command, {**os.environ, **flower_environment(settings)})


def _sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    from skinsense.sandbox import add_arguments

    add_arguments(parser)


def _run_sandbox(args: argparse.Namespace) -> int:
    from skinsense.sandbox import run

    return run(args)


# The audit database


def _db_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade"], help="upgrade: migrate to the newest schema")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")


def _run_db(args: argparse.Namespace) -> int:
    from skinsense.migrate import upgrade_database

    upgrade_database(revision=args.revision)
    return 0


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    from skinsense.audit_cli import add_arguments

    add_arguments(parser)


def _run_audit(args: argparse.Namespace) -> int:
    from skinsense.audit_cli import run

    return run(args)


# The model


def _classify_arguments(parser: argparse.ArgumentParser) -> None:
    from models.serving.classify import add_arguments

    add_arguments(parser)


def _run_classify(args: argparse.Namespace) -> int:
    from models.serving.classify import run

    return run(args)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from models.training.recipe import add_arguments

    add_arguments(parser)


def _run_train(args: argparse.Namespace) -> int:
    from models.training.recipe import main

    return main(args)


def _run_evaluate(args: argparse.Namespace) -> int:
    from models.training.evaluate import main

    main(args.rest)
    return 0


def _run_benchmark(args: argparse.Namespace) -> int:
    from models.training.benchmark import main

    main(args.rest)
    return 0


COMMANDS: tuple[Command, ...] = (
    Command("up", "run the whole stack: migrate, Redis, sandbox (no token), worker, beat, bot, Flower", _run_up),
    Command("bot", "run the Telegram bot", _run_bot),
    Command("worker", "run a Celery worker", _run_worker, _worker_arguments),
    Command("beat", "run Celery beat: the daily retention purge (one per deployment)", _run_beat, _beat_arguments),
    Command("flower", "run Flower (basic auth from settings)", _run_flower),
    Command("sandbox", "run the local Bot API sandbox", _run_sandbox, _sandbox_arguments),
    Command("db", "db upgrade: migrate the audit database to the newest schema", _run_db, _db_arguments),
    Command(
        "audit",
        "list audit rows, export them (CSV, JSON lines), or purge patient data past retention",
        _run_audit,
        _audit_arguments,
    ),
    Command("classify", "classify image files", _run_classify, _classify_arguments),
    Command("train", "train, package and evaluate the model (about 2 hours)", _run_train, _train_arguments),
    Command("evaluate", "evaluate the shipped model per photo kind", _run_evaluate, _pass_through, False),
    Command("benchmark", "benchmark the model runtimes", _run_benchmark, _pass_through, False),
)


class _OneLinePerCommand(argparse.HelpFormatter):
    """Keeps each command and its help on one line (argparse under-measures the longest subcommand)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24, width=120)
        self._action_max_length = max(len(c.name) for c in COMMANDS) + 6


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skinsense",
        description="SkinSense: skin-lesion screening aid",
        formatter_class=_OneLinePerCommand,
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subcommands.add_parser(
            command.name, help=command.help, description=command.help, add_help=command.own_help
        )
        (command.add_arguments or _no_arguments)(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging()
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
