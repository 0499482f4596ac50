"""Real services for tests: a redis-server and a PostgreSQL cluster of their own (free ports, temporary folders,
stopped afterwards), scratch databases on it, child processes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from skinsense.processes import free_port as free_port  # re-exported for the tests
from skinsense.processes import port_open as port_open
from skinsense.processes import stop_process_group

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def wait_until(
    check: Callable[[], T | None], timeout_s: float = 30.0, interval_s: float = 0.2, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class ChildProcess:
    """A real child process with its output in a log file (read back when a test fails)."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], log_dir: Path, cwd: Path | None = None
    ) -> None:
        """``cwd``: its working folder (default: the repository)."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd or REPO, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        code = stop_process_group(self.process, sig, timeout_s)
        self._log.close()
        return code


def _require_binary(path: str | None, package: str) -> str:
    if path is None:
        message = f"{package} is not installed; ./dev test installs it (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI the servers' absence is a failure, not a skip
        pytest.skip(message)
    return path


@contextlib.contextmanager
def redis_server(log_dir: Path, port: int | None = None) -> Iterator[str]:
    """A non-persistent redis-server of our own on ``port`` (default: a free one), stopped afterwards."""
    binary = _require_binary(shutil.which("redis-server"), "redis-server")
    port = port or free_port()
    child = ChildProcess(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        dict(os.environ),
        log_dir,
    )
    try:
        wait_until(lambda: port_open(port), 20, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.stop()


def postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian keeps them off PATH)."""
    candidates = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then run it as the ``postgres`` system user."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@dataclass
class PostgresCluster:
    """A running throwaway cluster: its admin URL, and stop/start for tests (and the chaos benchmark) that take the
    database away for a while."""

    url: str
    pg_ctl: str
    data_dir: Path
    options: str

    def stop(self) -> None:
        subprocess.run(
            _as_server_user([self.pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        server_log = str(self.data_dir / "server.log")
        subprocess.run(
            _as_server_user(
                [self.pg_ctl, "-D", str(self.data_dir), "-o", self.options, "-l", server_log, "-w", "-t", "60", "start"]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster of our own: initdb in a temporary folder, a free port, trust auth on
    127.0.0.1 only; stopped and deleted afterwards. Never touches a server the tests did not start."""
    found = postgres_bin_dir()
    bin_dir = Path(_require_binary(str(found) if found else None, "postgresql"))
    # Not under pytest's tmp_path: that is private to root, and the server may run as ``postgres``.
    data_dir = Path(tempfile.mkdtemp(prefix="skinsense-test-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    port = free_port()
    cluster = PostgresCluster(
        f"postgresql://postgres@127.0.0.1:{port}/postgres",
        str(bin_dir / "pg_ctl"),
        data_dir,
        f"-p {port} -h 127.0.0.1 -k {data_dir} -c fsync=off -c full_page_writes=off",
    )
    started = False
    try:
        subprocess.run(
            _as_server_user(
                [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        started = True
        cluster.start()
        yield cluster
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The admin URL of a throwaway PostgreSQL cluster of our own (``postgres_cluster``)."""
    with postgres_cluster() as cluster:
        yield cluster.url


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh, uniquely named database on the tests' own PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"skinsense_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


def child_env(**settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSENSE_")}
    data_dir = os.environ.get("SKINSENSE_DATA_DIR")
    if data_dir:
        env["SKINSENSE_DATA_DIR"] = data_dir
    env.update({f"SKINSENSE_{k.upper()}": str(v) for k, v in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO)  # the code under test, whatever folder the child runs in
    return env


def skewed_clock_env(offset_s: float) -> dict[str, str]:
    """Environment that sets a child process's wall clock ``offset_s`` seconds off this host's: a host whose clock
    is skewed. tests/auxil/skewed_clock.c, built here with the C compiler on first use and loaded with LD_PRELOAD,
    shifts CLOCK_REALTIME only; the monotonic clock (timers, sleeps, timeouts) is untouched, as on a real skewed
    host. (libfaketime could not do that on Python 3.11: with the monotonic clock left alone time.sleep fails,
    and with it shifted timed waits stall.)"""
    source = Path(__file__).with_name("skewed_clock.c")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    library = Path(tempfile.gettempdir()) / f"skinsense-skewed-clock-{digest}.so"
    if not library.exists():
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise RuntimeError("a C compiler is needed for a skewed clock (Debian's gcc: ./dev test installs it)")
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"], check=True)
        partial.replace(library)  # atomic: concurrent test workers never load a half-written library
    return {"LD_PRELOAD": str(library), "SKEWED_CLOCK_OFFSET_S": f"{offset_s:g}"}
