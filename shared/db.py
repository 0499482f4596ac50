"""One engine per process for the audit database: SQLite (WAL) by default, PostgreSQL by URL.

The schema belongs to the Alembic migrations (``skinsense db upgrade``); building an engine creates nothing.
No database call waits forever: PostgreSQL connections time out and have TCP keepalives, so a server that
vanished is noticed and the caller's retry policy takes over. A forked process (a Celery pool child) never
uses the connections of its parent's pools: they would share one socket."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

from shared import clock

# libpq's settings: connecting gives up after 10 s; an idle connection is probed after 30 s, dead after 3 misses.
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; plain SQLAlchemy would pick psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def lock_for_writing(session: Session) -> None:
    """Before a transaction's first read: on SQLite, take the database's write lock (``BEGIN IMMEDIATE``), so that
    no other writer changes what this transaction reads before it writes it back. SQLite ignores ``FOR UPDATE``;
    on PostgreSQL the rows read ``FOR UPDATE`` are locked instead, and this does nothing."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def build_engine(url: str, *, pooled: bool = True) -> Engine:
    """An engine on ``url``; ``pooled=False``: every use opens its own connection (a health check)."""
    url = normalise_url(url)
    parsed = make_url(url)
    # hide_parameters: a database error's text names the statement, never its values (answers, chat references),
    # wherever it ends up (logs, Celery's failure record, Flower).
    options: dict[str, Any] = {"hide_parameters": True}
    if not pooled:
        options["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, **options)
        event.listen(engine, "connect", _enable_sqlite_wal)
    else:
        if pooled:
            options.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
        engine = create_engine(url, connect_args=POSTGRES_CONNECT_ARGS, **options)
    return engine


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """The process's engine on ``url`` (default: the settings' database), built on first use."""
    if url is None:
        from shared.config import get_settings

        url = get_settings().database_url
    with _engines_lock:
        if url not in _engines:
            _engines[url] = build_engine(url)
            clock.CLOCK.follow(_engines[url])  # the process's database: its clock is the one clock
        return _engines[url]


def _forget_parent_connections() -> None:
    """In a forked child: fresh pools, without closing the parent's connections (SQLAlchemy's recipe)."""
    global _engines_lock
    _engines_lock = threading.Lock()  # another thread of the parent may have held it at the fork
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parent_connections)
