"""The whole pipeline on real parts: sandbox Bot API, redis-server, a prefork Celery worker, the bot."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from shared.config import Settings
from skinsense.stack import beat_command, worker_command
from tests.auxil.database import migrated_engine
from tests.auxil.sandbox_user import SandboxUser
from tests.auxil.services import ChildProcess, child_env, free_port, port_open, python_command, wait_until

BOT_TOKEN = "4242:e2e-test-token"
CLINICIANS = (9001, 9002)
CHAT_HASH_KEY = "e2e-chat-hash-key"


@dataclass
class RunningStack:
    user: SandboxUser
    engine: Engine
    redis_url: str
    database_url: str
    env: dict[str, str]
    worker: ChildProcess
    bot: ChildProcess
    sandbox: ChildProcess
    key_prefix: str = ""  # SKINSENSE_REDIS_KEY_PREFIX: each stack its own, on the tests' one Redis

    def settings(self) -> Settings:
        """The stack's broker settings, for a test that enqueues or counts as the bot does."""
        return Settings(redis_url=self.redis_url, redis_key_prefix=self.key_prefix, chat_hash_key=CHAT_HASH_KEY)  # type: ignore[arg-type]

    def logs(self) -> str:
        return "\n".join(f"----- {c.name} -----\n{c.output()[-4000:]}" for c in (self.worker, self.bot, self.sandbox))


@contextlib.contextmanager
def running_stack(
    redis_url: str,
    database_url: str,
    log_dir: Path,
    questionnaire_timeout_s: float = 20,
    beat: bool = False,
    **settings_overrides: object,
) -> Iterator[RunningStack]:
    """``beat``: also run Celery beat (its periodic work); ``settings_overrides``: more SKINSENSE_ settings."""
    port = free_port()
    key_prefix = f"stack-{uuid.uuid4().hex[:8]}:"
    base: dict[str, object] = dict(
        redis_key_prefix=key_prefix,
        telegram_token=BOT_TOKEN,
        telegram_api_url=f"http://127.0.0.1:{port}",
        redis_url=redis_url,
        database_url=database_url,
        clinician_chat_ids=",".join(map(str, CLINICIANS)),
        chat_hash_key=CHAT_HASH_KEY,
        worker_concurrency=1,
        questionnaire_timeout_s=questionnaire_timeout_s,  # a photo whose questions nobody answers is not stuck
        log_level="INFO",
        worker_metrics_port=free_port(),
        bot_metrics_port=free_port(),
    )
    env = child_env(**{**base, **settings_overrides})
    children: list[ChildProcess] = []
    try:
        sandbox = ChildProcess(
            "sandbox",
            python_command("-m", "skinsense.cli", "sandbox", "--port", str(port), "--token", BOT_TOKEN),
            env,
            log_dir,
        )
        children.append(sandbox)
        wait_until(lambda: port_open(port), 30, what="sandbox")
        engine = migrated_engine(database_url)  # what `skinsense up` does before it starts the processes
        settings = Settings(worker_concurrency=1)
        worker = ChildProcess("worker", worker_command(settings, hostname="e2e@%h"), env, log_dir)
        children.append(worker)
        bot = ChildProcess("bot", python_command("-m", "skinsense.cli", "bot"), env, log_dir)
        children.append(bot)
        if beat:
            children.append(ChildProcess("beat", beat_command(log_dir / "celerybeat-schedule"), env, log_dir))
        user = SandboxUser(f"http://127.0.0.1:{port}")
        wait_until(lambda: "ready." in worker.output(), 90, what="the Celery worker")
        wait_until(lambda: user.calls("getUpdates"), 60, what="the bot polling")
        yield RunningStack(user, engine, redis_url, database_url, env, worker, bot, sandbox, key_prefix)
    finally:
        for child in reversed(children):
            child.stop()
