"""Real `loyalty serve` / `loyalty worker` processes for the reliability suites, pointed at
whatever LOYALTY_DATABASE_URL / LOYALTY_REDIS_URL the caller gives them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from loyalty.infrastructure.embedded import EmbeddedPostgres

PROJECT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoyaltyProcess:
    """One `loyalty <command>` child process; logs go to a file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen | None = None

    def start(self) -> LoyaltyProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "loyalty"), *self.command],
            cwd=PROJECT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9, no goodbye: what a crash looks like."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def child_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOYALTY_DATABASE_URL=database_url,
        LOYALTY_REDIS_URL=redis_url,
        LOYALTY_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


class WebServer(LoyaltyProcess):
    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(["serve", "--host", "127.0.0.1", "--port", str(self.port)], env, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"loyalty serve exited:\n{self.tail()}")
            try:
                httpx.get(f"{self.url}/schema/openapi.json", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"loyalty serve not ready after {timeout}s:\n{self.tail()}")


class Worker(LoyaltyProcess):
    """`loyalty worker`: arq's cron and queued jobs."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(["worker"], env, log)

    def wait_ready(self, redis_url: str, timeout: float = 60) -> None:
        """Until arq's health-check key appears (written on the worker's first poll); the
        caller deletes it before start()."""
        import redis

        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise RuntimeError(f"loyalty worker exited:\n{self.tail()}")
                if client.exists(HEALTH_CHECK_KEY):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"loyalty worker not ready after {timeout}s:\n{self.tail()}")


HEALTH_CHECK_KEY = "arq:queue:health-check"


def crash_postgres(postgres: EmbeddedPostgres) -> int:
    """kill -9 the postmaster of an embedded PostgreSQL and every backend at the same moment
    (what a machine or OOM crash leaves): no checkpoint, no goodbye to clients. Returns the
    postmaster's pid. `postgres.ensure_running()` starts it again, with crash recovery."""
    from loyalty.infrastructure.embedded.processes import children_of, read_pid, wait_gone

    pid = read_pid(postgres.pgdata / "postmaster.pid")
    if pid is None:
        raise RuntimeError(f"no postmaster.pid in {postgres.pgdata}")
    victims = [pid, *children_of(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    if wait_gone(victims, 10.0):
        raise RuntimeError(f"postgres processes {victims} survived SIGKILL")
    return pid


@contextlib.contextmanager
def serving(backing_services: dict[str, str], log: Path) -> Iterator[WebServer]:
    """A ready `loyalty serve` on the test run's PostgreSQL and Redis, stopped afterwards."""
    server = WebServer(
        child_env(backing_services["database_url"], backing_services["redis_url"]), log
    ).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
