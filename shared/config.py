"""Every setting in one place, read from the environment (prefix SKINSENSE_) or a .env file.

The README's settings table documents each field below.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Development-only defaults, refused outside development (see Settings._refuse_unsafe_defaults).
DEVELOPMENT_CHAT_HASH_KEY = "development-only-chat-hash-key"
MIN_CHAT_HASH_KEY_LENGTH = 32
# A Fernet key (32 bytes, url-safe base64): the bytes spell "development-only-delivery-key!!!".
DEVELOPMENT_DELIVERY_KEY = "ZGV2ZWxvcG1lbnQtb25seS1kZWxpdmVyeS1rZXkhISE="
DEVELOPMENT_FLOWER_PASSWORD = "skinsense"
# Passwords that appear in examples (.env.example, the README) or are empty: refused in production too.
EXAMPLE_FLOWER_PASSWORDS = frozenset({"", DEVELOPMENT_FLOWER_PASSWORD, "change-me", "changeme", "admin", "password"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKINSENSE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    log_level: str = "INFO"

    # Telegram
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    clinician_chat_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # In clinician group chats, only these Telegram users may press an alert's buttons or use its commands
    # (in a private clinician chat the chat is the clinician). Empty: nobody in a group chat.
    clinician_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    clinician_lead_chat_id: int | None = None  # alerts not resolved in time are escalated here
    # The closed loop (shared/clinic/store.py): an alert nobody claimed within this many working hours is sent
    # again to every clinician as a reminder; one not resolved within this many working days goes to the lead.
    clinician_claim_within_hours: float = Field(default=4, gt=0)
    clinician_resolve_within_days: float = Field(default=2, gt=0)
    clinician_working_hours: str = "08:00-18:00"  # local time of the clinic; 00:00-24:00: around the clock
    clinician_working_days: str = "mon-fri"  # e.g. "mon-fri", "mon,wed,fri", "mon-sun"
    clinician_timezone: str = "UTC"  # the clinic's IANA time zone, e.g. Europe/Berlin
    # High-risk photos of one patient within this many seconds of the first share one alert thread; at most
    # this many of them are forwarded per thread (the rest are listed, not sent: the patient still gets results).
    clinician_thread_window_s: int = Field(default=3600, gt=0)
    clinician_forwards_per_thread: int = Field(default=3, ge=1)
    clinician_sweep_interval_s: float = Field(default=60, gt=0)  # beat: unsent alerts, reminders, escalations
    # Patients' reminders to photograph a spot again (shared/spot_followups.py): due this many days after a LOW
    # or a MEDIUM result (HIGH ones go to the clinicians); beat looks for due ones this often.
    reminder_after_low_days: float = Field(default=90, gt=0)
    reminder_after_medium_days: float = Field(default=28, gt=0)
    reminder_sweep_interval_s: float = Field(default=60, gt=0)
    webhook_url: str | None = None  # public HTTPS URL; when set the bot runs a webhook instead of polling
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: SecretStr | None = None

    # Infrastructure
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Starts every key this deployment writes in Redis (queues, events, rate limits): two stacks on one Redis
    # with different prefixes never see each other's messages. Empty: the plain queue names.
    redis_key_prefix: str = ""
    # Photos one chat may send in any rolling hour (counted in Redis); 0: no limit.
    photos_per_chat_per_hour: int = Field(default=30, ge=0)
    # Updates of any kind (texts, commands, presses, photos) one chat, or one member of a group, may send in any
    # rolling minute before the bot stops answering them (one notice, bot/fairness.py); 0: no limit. A patient
    # answering the questionnaires of a few photos uses about 30.
    updates_per_chat_per_minute: int = Field(default=40, ge=0)
    # Messages the whole deployment sends per second (shared/telegram_calls.py's overall budget): Telegram's
    # limit for a bot is about 30; a bot Telegram allows more (paid broadcasts), or a benchmark against the
    # local sandbox, sets it higher. A photo costs about three messages, so this bounds photos per second.
    telegram_messages_per_s: float = Field(default=30, gt=0)
    database_url: str = "sqlite:///var/skinsense.sqlite3"
    chat_hash_key: SecretStr = SecretStr(DEVELOPMENT_CHAT_HASH_KEY)
    # Fernet key(s) sealing what is needed to answer a patient (chat id, message ids, file id) wherever it is
    # stored (shared/sealing.py); comma-separated, the first seals and all unseal (key rotation).
    delivery_key: SecretStr = SecretStr(DEVELOPMENT_DELIVERY_KEY)
    # Patient data older than this is erased daily, leaving tombstones (shared/retention.py); at least six
    # months, the EU AI Act's minimum for logs of high-risk systems.
    retention_days: int = Field(default=183, ge=183)

    # Workers and model
    model_runtime: Literal["litert", "keras"] | None = None  # None: the artifact's default (the fastest)
    model_threads: int = 1
    worker_concurrency: int = 2
    # Hard time limit of a task (the soft one is 15 s less). A photo takes well under a second; the limit also
    # bounds how long a job held by a dead worker waits before the reconciler queues it again (+5 s).
    task_time_limit_s: int = 45
    # How long the result waits for the questionnaire once the photo is analysed; then it goes out with the
    # answers given so far (none: the photo-only result).
    questionnaire_timeout_s: float = 120

    # The reconciler (worker.tasks.reconcile_jobs, queued by the beat): every reconcile_interval_s it queues
    # again the jobs overdue (queued and not started for queued_deadline_s, running past the task time limit,
    # analysed but not finalized after the questionnaire's timeout), at most reconcile_max_tries times; then
    # the patient gets an apology. A patient still waiting slow_notice_after_s after the photo is told once.
    reconcile_interval_s: float = Field(default=10, gt=0)
    queued_deadline_s: float = Field(default=30, gt=0)
    # A queued job whose message still waits in the classify queue behind others (published after the oldest
    # message waiting there) is not lost, only late: it is overdue once the queue has reached it, or when it has
    # waited this much longer (no worker takes the queue at all).
    backlog_deadline_s: float = Field(default=180, gt=0)
    reconcile_max_tries: int = Field(default=3, ge=0)
    slow_notice_after_s: float = Field(default=20, gt=0)

    # Metrics and health (shared/metrics.py): /metrics, /health/live, /health/ready; port 0: not served
    metrics_address: str = "127.0.0.1"  # compose's containers: 0.0.0.0 (reached by Prometheus on their network)
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    bot_metrics_port: int = Field(default=9102, ge=0, le=65535)
    # Any number of bot processes may run; one leads (bot/leadership.py). The replica id names this one across
    # its restarts (default: the host name); the lease lapses this long after its leader stopped renewing it.
    bot_replica_id: str = ""
    bot_leader_lease_s: float = Field(default=15.0, gt=0)

    # Flower and the local sandbox
    flower_port: int = 5555
    flower_address: str = "127.0.0.1"  # compose's Flower container listens on 0.0.0.0, published on loopback
    flower_user: str = "admin"
    flower_password: SecretStr = SecretStr(DEVELOPMENT_FLOWER_PASSWORD)
    sandbox_port: int = 8081

    # Model training and evaluation (never needed to serve)
    data_dir: Path | None = None
    imagenet_weights: Path | None = None

    @field_validator("clinician_chat_ids", "clinician_user_ids", mode="before")
    @classmethod
    def _split_chat_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(" ", "").split(",") if part]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("delivery_key")
    @classmethod
    def _delivery_keys_are_fernet_keys(cls, value: SecretStr) -> SecretStr:
        parse_keys(value)
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.environment == "production":
            if self.telegram_token is None or not self.telegram_token.get_secret_value().strip():
                raise ValueError("SKINSENSE_TELEGRAM_TOKEN is required in production")
            hash_key = self.chat_hash_key.get_secret_value()
            # A short or empty key lets anyone recompute the pseudonyms from chat ids (they are few enough to try).
            if hash_key == DEVELOPMENT_CHAT_HASH_KEY or len(hash_key) < MIN_CHAT_HASH_KEY_LENGTH:
                raise ValueError(
                    f"set SKINSENSE_CHAT_HASH_KEY to a secret of at least {MIN_CHAT_HASH_KEY_LENGTH} characters "
                    "in production"
                )
            if self.webhook_url and (self.webhook_secret is None or not self.webhook_secret.get_secret_value()):
                # Without it anyone who finds the URL can post updates as any patient (a forged "erase" tap).
                raise ValueError("set SKINSENSE_WEBHOOK_SECRET in production when SKINSENSE_WEBHOOK_URL is set")
            if DEVELOPMENT_DELIVERY_KEY in value_list(self.delivery_key):
                raise ValueError("set SKINSENSE_DELIVERY_KEY to secret Fernet key(s) in production")
            if self.flower_password.get_secret_value() in EXAMPLE_FLOWER_PASSWORDS:
                raise ValueError("set SKINSENSE_FLOWER_PASSWORD to a secret (not an example value) in production")
            if self.database_url.startswith("sqlite"):
                # SQLite lives on one host: a second host's bot or workers would get a private, empty database
                # and answer every job "missing". Production is PostgreSQL, shared by every host.
                raise ValueError("set SKINSENSE_DATABASE_URL to the deployment's PostgreSQL in production")
        return self

    @property
    def running_deadline_s(self) -> float:
        """A job running longer than this is held by a dead worker (the task's hard limit has passed)."""
        return self.task_time_limit_s + 5

    @property
    def bot_api_base(self) -> str:
        """Root for Bot API methods; the token is appended (``{base}{token}/{method}``)."""
        return f"{self.telegram_api_url}/bot"

    @property
    def bot_file_base(self) -> str:
        return f"{self.telegram_api_url}/file/bot"


def value_list(secret: SecretStr) -> list[str]:
    """The comma-separated values of a secret setting."""
    return [part.strip() for part in secret.get_secret_value().split(",") if part.strip()]


def parse_keys(setting: SecretStr | str) -> list[str]:
    """The Fernet keys in SKINSENSE_DELIVERY_KEY (comma-separated, first one seals); ValueError if one is not a
    Fernet key (32 url-safe base64-encoded bytes)."""
    keys = value_list(setting if isinstance(setting, SecretStr) else SecretStr(setting))
    if not keys:
        raise ValueError("SKINSENSE_DELIVERY_KEY holds no key")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(
                f"SKINSENSE_DELIVERY_KEY: key {position} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return keys


@lru_cache
def get_settings() -> Settings:
    return Settings()
