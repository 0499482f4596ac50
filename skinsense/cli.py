"""``skinsense``: one command for the whole product."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections.abc import Sequence

from shared.config import get_settings


def _configure_logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines contain the bot token


def _up(args: argparse.Namespace) -> int:
    from skinsense.stack import run_up

    return run_up()


def _db_upgrade(args: argparse.Namespace) -> int:
    from skinsense.migrate import upgrade_database

    upgrade_database(revision=args.revision)
    return 0


def _bot(args: argparse.Namespace) -> int:
    from bot.app import run_bot

    run_bot()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from skinsense.stack import worker_command

    command = worker_command(get_settings(), pool=args.pool, concurrency=args.concurrency)
    os.execv(command[0], command)
    return 1  # not reached


def _flower(args: argparse.Namespace) -> int:
    from skinsense.stack import flower_command, flower_environment

    settings = get_settings()
    command = flower_command(settings)
    os.execve(command[0], command, {**os.environ, **flower_environment(settings)})
    return 1


def _sandbox(args: argparse.Namespace) -> int:
    from skinsense.sandbox import run

    return run(args)


def _classify(args: argparse.Namespace) -> int:
    from models.classify import run

    return run(args)


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models.evaluate import evaluate
    from models.package import package
    from models.train import config_from_arguments, train

    config = config_from_arguments(args)
    run_dir = train(config)
    package([run_dir], Path(config.data_dir))
    report = evaluate(Path(config.data_dir), Path("models/evaluation"))
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "model_version",
                    "balanced_accuracy",
                    "melanoma_sensitivity",
                    "melanoma_specificity",
                    "ece_after_calibration",
                )
            },
            indent=2,
        )
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from models.evaluate import main

    main(args.rest)
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from models.benchmark import main

    main(args.rest)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from sqlmodel import col, select

    from shared.audit import Job
    from shared.db import session_scope

    with session_scope() as session:
        jobs = session.exec(select(Job).order_by(col(Job.received_at).desc()).limit(args.limit)).all()
    columns = list(Job.model_fields)
    if args.csv:
        output = open(args.csv, "w", newline="") if args.csv != "-" else sys.stdout  # noqa: SIM115
        writer = csv.writer(output)
        writer.writerow(columns)
        for job in jobs:
            row = job.model_dump(mode="json")
            writer.writerow([json.dumps(row[c]) if isinstance(row[c], list | dict) else row[c] for c in columns])
        if output is not sys.stdout:
            output.close()
        return 0
    for job in jobs:
        top = job.ranking[0]["code"] if job.ranking else "-"
        print(
            f"{job.received_at:%Y-%m-%d %H:%M:%S} {job.id} {job.status.value:<8} {job.risk or '-':<6} "
            f"top={top:<5} alert={job.melanoma_alert} clinicians={len(job.clinicians_notified or {})} "
            f"{job.error_code or ''}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skinsense", description="SkinSense: skin-lesion screening aid")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run the whole stack (sandbox when no token is set)").set_defaults(func=_up)
    commands.add_parser("bot", help="run the Telegram bot").set_defaults(func=_bot)
    db = commands.add_parser("db", help="manage the audit database's schema").add_subparsers(dest="db", required=True)
    upgrade = db.add_parser("upgrade", help="migrate the audit database to the newest schema (Alembic)")
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.set_defaults(func=_db_upgrade)
    worker = commands.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--pool", default="prefork")
    worker.add_argument("--concurrency", type=int, default=None)
    worker.set_defaults(func=_worker)
    commands.add_parser("flower", help="run Flower (basic auth from settings)").set_defaults(func=_flower)

    from skinsense.sandbox import add_arguments as sandbox_arguments

    sandbox = commands.add_parser("sandbox", help="run the local Bot API sandbox")
    sandbox_arguments(sandbox)
    sandbox.set_defaults(func=_sandbox)

    from models.classify import add_arguments as classify_arguments

    classify = commands.add_parser("classify", help="classify image files")
    classify_arguments(classify)
    classify.set_defaults(func=_classify)

    from models.train import add_arguments as train_arguments

    train = commands.add_parser("train", help="train, package and evaluate the model (about an hour)")
    train_arguments(train)
    train.set_defaults(func=_train)
    for name, func, text in (
        ("evaluate", _evaluate, "evaluate the shipped model on its validation split"),
        ("benchmark", _benchmark, "benchmark the model runtimes"),
    ):
        sub = commands.add_parser(name, help=text, add_help=False)
        sub.add_argument("rest", nargs=argparse.REMAINDER)
        sub.set_defaults(func=func)
    audit = commands.add_parser("audit", help="list audit rows, or export them as CSV")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--csv", metavar="FILE", help="write CSV to FILE ('-' for standard output)")
    audit.set_defaults(func=_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _configure_logging()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
