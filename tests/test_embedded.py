"""Embedded PostgreSQL/Redis against real servers (no mocks).

Synchronous on purpose: loyalty.infrastructure.embedded is plain subprocess code, and asyncpg is only
used through asyncio.run to prove the DSN works for the real client.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis

from loyalty.infrastructure.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServiceError,
    default_postgres_bin_dirs,
    stop_pids_in,
)

Server = TypeVar("Server", EmbeddedPostgres, EmbeddedRedis)


@pytest.fixture
def base() -> Iterator[Path]:
    """A private scratch folder.

    Not tmp_path: as root, every parent of a PostgreSQL data dir must be traversable by
    the postgres user, and any other pytest session starting meanwhile chmods
    /tmp/pytest-of-root back to 0700, breaking a server mid-initdb.
    """
    path = Path(tempfile.mkdtemp(prefix="loyalty-embedded-test-"))
    try:
        yield path
    finally:
        stop_pids_in(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def track(base: Path) -> Iterator[Callable[[Server], Server]]:
    """Register servers so they are stopped even when the test fails half-way."""
    servers: list[EmbeddedPostgres | EmbeddedRedis] = []

    def add(server: Server) -> Server:
        servers.append(server)
        return server

    try:
        yield add
    finally:
        for server in reversed(servers):
            try:
                server.stop()
            except Exception:
                pass  # the last resort below still runs
        stop_pids_in(base)
        for server in servers:
            if isinstance(server, EmbeddedPostgres):
                assert not _processes_mentioning(server.data_dir), "postgres left running"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_mentioning(path: Path) -> list[int]:
    """Pids whose command line names path (postgres is started with -D <path>/pgdata)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "cmdline").read_bytes() and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


def _sql(dsn: str, query: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _exec(dsn: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _debian_bin_dir() -> Path | None:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return next((d for d in reversed(dirs) if (d / "initdb").exists()), None)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_postgres_start_reuse_stop_restart(base: Path, track: Callable) -> None:
    data_dir = base / "postgres"
    pg = track(EmbeddedPostgres(data_dir))
    dsn = pg.ensure_running()
    assert pg.started_here
    assert dsn == f"postgresql://postgres@/postgres?host={data_dir}"
    assert pg.bin_dir in default_postgres_bin_dirs()
    assert str(pg.bin_dir) in pg.describe()
    assert pg.is_running()

    dsn_x = pg.ensure_database("x")
    assert pg.ensure_database("x") == dsn_x  # idempotent
    assert dsn_x == f"postgresql://postgres@/x?host={data_dir}"
    assert _sql(dsn_x, "SELECT 1") == 1
    _exec(dsn_x, "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('survives restart')")

    # `loyalty migrate` next to a running `loyalty demo`: reuse, quickly, and do not own it.
    other = EmbeddedPostgres(data_dir)
    started = time.monotonic()
    assert other.ensure_running() == dsn
    assert time.monotonic() - started < 2
    assert not other.started_here
    assert other.bin_dir == pg.bin_dir
    assert other.describe() == pg.describe()

    pid = _postmaster_pid(pg)
    pg.stop()
    assert not _alive(pid)
    assert not _processes_mentioning(data_dir)
    assert not pg.is_running() and not other.is_running()
    pg.stop()  # no-op when not running

    started = time.monotonic()
    again = EmbeddedPostgres(data_dir)
    track(again)
    assert again.ensure_running() == dsn
    assert again.started_here
    assert time.monotonic() - started < 2
    assert _sql(dsn_x, "SELECT v FROM kept") == "survives restart"

    again.drop_database("x")
    assert _sql(dsn, "SELECT count(*) FROM pg_database WHERE datname = 'x'") == 0
    again.drop_database("x")  # IF EXISTS


def test_postgres_falls_back_to_next_candidate(base: Path, track: Callable) -> None:
    debian = _debian_bin_dir()
    if debian is None:
        pytest.skip("no /usr/lib/postgresql/*/bin on this machine")
    pg = track(EmbeddedPostgres(base / "pg", bin_dirs=[Path("/nonexistent"), debian]))
    dsn = pg.ensure_running()
    assert pg.bin_dir == debian
    major = debian.parent.name
    assert pg.describe().startswith(f"system PostgreSQL {major}")
    assert str(debian) in pg.describe()
    assert str(_sql(dsn, "SHOW server_version")).startswith(major)


def test_postgres_all_candidates_bad(base: Path, track: Callable) -> None:
    broken = base / "broken-bin"
    broken.mkdir()
    for name in ("postgres", "initdb", "pg_ctl", "psql"):
        script = broken / name
        script.write_text(
            "#!/bin/sh\necho 'error while loading shared libraries: libicu.so.72' >&2\nexit 127\n"
        )
        script.chmod(0o755)
    half = base / "half-bin"
    half.mkdir()
    pg = track(EmbeddedPostgres(base / "pg", bin_dirs=[Path("/nonexistent"), broken, half]))
    with pytest.raises(EmbeddedServiceError) as excinfo:
        pg.ensure_running()
    message = str(excinfo.value)
    for candidate in ("/nonexistent", str(broken), str(half)):
        assert candidate in message
    assert "libicu" in message
    assert "missing postgres" in message
    assert not pg.is_running()
    assert not (pg.data_dir / "pgdata").exists()


def test_postgres_refuses_binaries_of_another_major(base: Path, track: Callable) -> None:
    pgdata = base / "pg" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("9\n")
    candidates = default_postgres_bin_dirs()
    pg = track(EmbeddedPostgres(base / "pg"))
    with pytest.raises(EmbeddedServiceError) as excinfo:
        pg.ensure_running()
    message = str(excinfo.value)
    for candidate in candidates:
        assert str(candidate) in message
    assert "created by PostgreSQL 9" in message


def test_postgres_stale_pidfile_does_not_block_start(base: Path, track: Callable) -> None:
    pg = track(EmbeddedPostgres(base / "pg"))
    pg.ensure_running()
    pidfile = pg.data_dir / "pgdata" / "postmaster.pid"
    real = pidfile.read_text().split("\n")
    pg.stop()

    # A killed run leaves its pidfile; the pid is either dead or recycled by anything,
    # e.g. this very test process (postgres itself would refuse to start over that).
    for stale_pid in (_dead_pid(), os.getpid()):
        pidfile.write_text("\n".join([str(stale_pid), *real[1:]]))
        assert not pg.is_running()
        pg.ensure_running()
        assert pg.started_here
        assert _postmaster_pid(pg) != stale_pid
        assert _sql(pg.dsn(), "SELECT 1") == 1
        pg.stop()
    assert _alive(os.getpid())

    # A crash: the postmaster is SIGKILLed (and may linger as a zombie if nobody reaps it).
    dsn = pg.ensure_running()
    _exec(dsn, "CREATE TABLE crash (v int)", "INSERT INTO crash VALUES (7)")
    crashed = _postmaster_pid(pg)
    os.kill(crashed, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(crashed) and time.monotonic() < deadline:  # SIGKILL is not instantaneous
        time.sleep(0.01)
    assert EmbeddedPostgres(pg.data_dir).ensure_running() == dsn
    assert _sql(dsn, "SELECT v FROM crash") == 7


def test_redis_start_reuse_stop_restart_persists(base: Path, track: Callable) -> None:
    data_dir = base / "redis"
    r = track(EmbeddedRedis(data_dir))
    url = r.ensure_running()
    socket_path = data_dir / "redis.sock"
    assert url == f"unix://{socket_path}"
    assert r.started_here and r.is_running()

    client = redis.Redis(unix_socket_path=str(socket_path))
    client.set("points", "42")
    assert client.get("points") == b"42"
    client.close()

    other = EmbeddedRedis(data_dir)
    started = time.monotonic()
    assert other.ensure_running() == url
    assert time.monotonic() - started < 2
    assert not other.started_here

    pid = int((data_dir / "redis.pid").read_text())
    r.stop()
    assert not _alive(pid)
    assert not r.is_running()
    r.stop()  # no-op

    # A stale pidfile from a killed run must not get in the way either.
    (data_dir / "redis.pid").write_text(f"{_dead_pid()}\n")
    assert r.ensure_running() == url
    client = redis.Redis.from_url(url)
    assert client.get("points") == b"42"
    client.close()


def test_long_data_dir_uses_short_socket_dir(base: Path, track: Callable) -> None:
    deep = base / ("d" * 60) / ("e" * 60)
    pg = track(EmbeddedPostgres(deep / "postgres"))
    r = track(EmbeddedRedis(deep / "redis"))
    dsn = pg.ensure_running()
    url = r.ensure_running()
    host = dsn.split("host=", 1)[1]
    assert host.startswith("/tmp/loyalty-") and len(host) < 60
    assert (deep / "postgres" / "socket-dir").read_text().strip() == host
    assert _sql(dsn, "SELECT 1") == 1
    assert url.startswith("unix:///tmp/loyalty-")
    client = redis.Redis.from_url(url)
    assert client.ping()
    client.close()
    # Reuse finds the short socket from the data dir alone.
    assert EmbeddedPostgres(deep / "postgres").ensure_running() == dsn
    assert EmbeddedRedis(deep / "redis").ensure_running() == url
    pg.stop()
    r.stop()
    assert not Path(host).exists()
    assert not Path(url.removeprefix("unix://")).parent.exists()


def test_stop_pids_in_command_kills_everything(base: Path, track: Callable) -> None:
    pg = track(EmbeddedPostgres(base / "postgres"))
    r = track(EmbeddedRedis(base / "redis"))
    pg.ensure_running()
    r.ensure_running()
    pids = [_postmaster_pid(pg), int((base / "redis" / "redis.pid").read_text())]
    subprocess.run(
        [sys.executable, "-m", "loyalty.infrastructure.embedded", "stop", str(base)],
        check=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert not any(_alive(pid) for pid in pids)
    assert not pg.is_running() and not r.is_running()
    assert not _processes_mentioning(base)
