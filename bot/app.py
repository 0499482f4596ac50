"""Builds and runs the Telegram bot: polling by default, webhook when SKINSENSE_WEBHOOK_URL is set."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from telegram import BotCommand, Update
from telegram.ext import Application, ContextTypes

from bot.context import BotData, BotServices
from bot.durable_updates import DurableApplication, DurableUpdateQueue, InboundUpdateStore, bot_id_of
from bot.fairness import FairUpdateProcessor
from bot.handlers import register_handlers
from bot.leadership import LeaderLease, replica_id_of
from shared.config import Settings, get_settings, parse_keys
from shared.db import get_engine
from shared.sealing import Sealer, delivery_key_problem
from shared.telegram_calls import TelegramCallLimiter, telegram_request

log = logging.getLogger(__name__)


async def _post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    await application.bot.set_my_commands(
        [
            BotCommand("start", "What SkinSense is"),
            BotCommand("help", "How to take and send a photo"),
            BotCommand("history", "Your past results"),
            BotCommand("reminders", "Your reminders to photograph a spot again"),
            BotCommand("about", "What SkinSense is, and is not"),
            BotCommand("privacy", "What is stored, and your consent"),
            BotCommand("delete", "Erase everything about you"),
        ]
    )


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    if settings.telegram_token is None:
        raise SystemExit("SKINSENSE_TELEGRAM_TOKEN is not set (use `skinsense up` to run on the local sandbox)")
    # Durable intake (bot/durable_updates.py): each update recorded before Telegram is told it arrived.
    inbound = InboundUpdateStore(
        get_engine(settings.database_url),
        Sealer(parse_keys(settings.delivery_key)),
        claimant=replica_id_of(settings),
        claim_s=settings.bot_leader_lease_s,  # a dead leader's updates are taken over as soon as its lease
    )
    token = settings.telegram_token.get_secret_value()
    services = BotServices.build(settings)  # the one place the bot's stores and clients are made
    application = (
        Application.builder()
        .context_types(ContextTypes(bot_data=BotData))
        .application_class(DurableApplication, kwargs={"inbound": inbound})
        .update_queue(DurableUpdateQueue(inbound, bot_id=bot_id_of(token)))
        .token(token)
        .base_url(settings.bot_api_base)
        .base_file_url(settings.bot_file_base)
        # Every call (the "Analysing..." reply included) retried where safe, under the deployment's shared limiter.
        .rate_limiter(TelegramCallLimiter.from_settings(settings, process="bot"))
        .request(telegram_request())
        .get_updates_request(telegram_request(pool_size=1))
        .concurrent_updates(FairUpdateProcessor())  # one chat's flood never holds up the others (bot/fairness.py)
        .post_init(_post_init)
        .build()
    )
    application.bot_data.use(services)
    register_handlers(application, services.clinicians)
    return application


def serve_bot_metrics_and_health(settings: Settings, lease: LeaderLease) -> None:
    """/metrics (the bot's own registry) and /health/ready (this replica leads; broker and audit database answer)."""
    if settings.bot_metrics_port == 0:
        return
    from shared.metrics import broker_reachable, database_reachable, serve_metrics_and_health

    def readiness() -> list[str]:
        leading = None if lease.leading else f"standby: replica {lease.replica_id} does not lead"
        checks = (leading, broker_reachable(settings.redis_url), database_reachable(settings.database_url))
        return [problem for problem in checks if problem]

    serve_metrics_and_health(settings.metrics_address, settings.bot_metrics_port, readiness)


def run_bot(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if settings.environment != "production" and settings.telegram_api_url == "https://api.telegram.org":
        # The development keys are published: pseudonyms and sealed data are readable by anyone. Fine for a
        # developer's own test bot; never for patients.
        log.warning("development settings against the real Telegram: not for patients (set SKINSENSE_ENVIRONMENT)")
    # A bot whose delivery key differs from the workers' would seal what no worker can open: no patient answered.
    key_problem = delivery_key_problem(get_engine(settings.database_url), Sealer(parse_keys(settings.delivery_key)))
    if key_problem is not None:
        raise SystemExit(key_problem)
    lease = LeaderLease.from_settings(settings)
    serve_bot_metrics_and_health(settings, lease)
    lease.wait_until_leading()  # a standby waits here (bot/leadership.py)
    application = build_application(settings)
    # Another replica took the lease: stop as PTB stops on SIGTERM; the supervisor starts this one as a standby.
    stop_renewing = lease.keep(on_lost=lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        if settings.webhook_url:
            log.info("bot starting (webhook mode)")
            application.run_webhook(
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                url_path="telegram",
                webhook_url=settings.webhook_url.rstrip("/") + "/telegram",
                secret_token=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
                allowed_updates=Update.ALL_TYPES,
            )
        else:
            log.info("bot starting (polling mode)")
            application.run_polling(allowed_updates=Update.ALL_TYPES)
    finally:
        stop_renewing.set()
        lease.release()
