"""Earning benchmark: purchases per second through the API, against pgbench on the same server.

Seeds members set-based in SQL, serves the app with `loyalty serve` on the local PostgreSQL and
Redis, then, in one run and at one concurrency:

1. pgbench's built-in tpcb-like script (the ceiling), before the app phases;
2. `POST /api/v1/purchases` driven by wrk (bench/earn.lua): purchases/s, p50, p99;
3. `POST /api/v1/purchases/batch` driven by an asyncio client (closed loop: calls in flight
   at the end finish and count, the rate is over the time to the last answer): purchases/s;
4. the database floor (with the batch phase): pgbench writing only the rows a batched
   purchase stores, in copies of the app's tables (same columns, checks and indexes; no
   foreign keys, triggers, lookups or app), a transaction of BATCH_CHUNK purchases at a time:
   what the database alone can take, the most any batch endpoint could reach here;
5. pgbench again, after the app phases (the machine is noisy: the ceiling is their mean).

Goals: single purchases >= 0.5 x pgbench TPS with p99 < 100 ms; batch >= 5 x pgbench TPS.
Every process it starts (server, wrk, pgbench) is stopped on exit, Ctrl-C or error.

    uv run python bench/earn.py [--concurrency 16] [--duration 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    import asyncpg
    import httpx
    import msgspec
    import redis
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table
except ImportError as exc:  # not in the project's environment
    sys.exit(f"{exc}: run it in the project: cd /work/main && uv run python bench/earn.py")

HOST = "127.0.0.1"  # the only host this benchmark ever talks to
APP_DB = "loyalty_bench"
PGBENCH_DB = "pgbench_bench"
BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "earn.lua"
PHASES = ("single", "batch", "floor")
PHASE_ORDER = ("pgbench_before", "single", "batch", "floor", "pgbench_after")
OTHER_LOAD_WARNING = 0.25  # cores used by processes outside the benchmark
BATCH_CALL_TIMEOUT = 300.0  # seconds; a slower batch call fails the phase
SEED_CHUNK = 5_000
GOAL_SINGLE_RATIO = 0.5
GOAL_BATCH_RATIO = 5.0
GOAL_P99_MS = 100.0
FLOOR_CHUNK = 250  # purchases per transaction, as the batch endpoint writes them (BATCH_CHUNK)
FLOOR_SCHEMA = "floor"
FLOOR_TABLES = ("purchases", "purchase_lines", "points_ledger", "points_lots", "points_accounts")

console = Console()


class BenchError(Exception):
    """A failure with a message meant for the person running the benchmark."""


# --- arguments ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Purchases/s of the loyalty API against pgbench tpcb-like on the same "
        "PostgreSQL (127.0.0.1), in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="connections for wrk, the batch client and pgbench",
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured phase")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds of wrk first")
    parser.add_argument("--members", type=int, default=100_000, help="members to seed")
    parser.add_argument("--workers", type=int, default=2, help="web processes (loyalty serve)")
    parser.add_argument("--batch-size", type=int, default=1000, help="purchases per batch call")
    parser.add_argument(
        "--batch-concurrency",
        type=int,
        default=None,
        help="concurrent batch calls (default: min(--concurrency, 2 x --workers): once the "
        "server is busy, more calls add waiting, not throughput, and drain for longer)",
    )
    parser.add_argument(
        "--phases",
        default="single,batch,floor",
        help="phases to run, of single, batch and floor (the database alone)",
    )
    parser.add_argument("--port", type=int, default=8765, help="port for loyalty serve")
    parser.add_argument("--pg-port", type=int, default=5432, help="local PostgreSQL port")
    parser.add_argument("--pg-user", default="postgres", help="PostgreSQL user (trust auth)")
    parser.add_argument("--redis-port", type=int, default=6379, help="local Redis port")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database (flushed)")
    parser.add_argument(
        "--pgbench-scale", type=int, default=None, help="pgbench -s (default: max(10, concurrency))"
    )
    parser.add_argument(
        "--pgbench-protocol",
        choices=["simple", "extended", "prepared"],
        default="simple",
        help="pgbench -M",
    )
    parser.add_argument("--log-level", default="INFO", help="the server's LOYALTY_LOG_LEVEL")
    parser.add_argument(
        "--py-spy",
        metavar="BIN",
        default=None,
        help="py-spy binary: profile the server during the API phases (skews the figures)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if min(args.concurrency, args.duration, args.members, args.workers) < 1:
        parser.error("--concurrency, --duration, --members and --workers must be at least 1")
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size must be between 1 and 1000 (the endpoint's limit)")
    if args.members > 899_999_999:
        parser.error("--members is at most 899,999,999 (ten-digit member numbers)")
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not args.phases or set(args.phases) - set(PHASES):
        parser.error("--phases takes single, batch and floor, separated by commas")
    args.batch_concurrency = args.batch_concurrency or min(args.concurrency, 2 * args.workers)
    args.pgbench_scale = args.pgbench_scale or max(10, args.concurrency)
    return args


# --- processes ----------------------------------------------------------------------------


class Processes:
    """Every process this benchmark starts, each in a session of its own, stopped by its id."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 15.0) -> None:
        """SIGTERM the process group the benchmark created, SIGKILL it after `grace` s."""
        if proc in self.running:
            self.running.remove(proc)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                proc.poll()
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if proc.poll() is not None and not _group_alive(proc.pid):
                    return
                time.sleep(0.1)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- CPU accounting from /proc ------------------------------------------------------------


CLK_TCK = os.sysconf("SC_CLK_TCK")
CPU_ROLES = ("app", "postgres", "load", "other")


@dataclass(frozen=True)
class ProcStat:
    comm: str
    ppid: int
    sid: int
    ticks: int  # user + system CPU time


def proc_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(comm, int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]))


def _system_ticks() -> tuple[int, int, int]:
    """(busy, steal, total) CPU ticks of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    return total - values[3] - values[4], values[7], total


@dataclass
class CpuMeter:
    """Cores used per role (app server, PostgreSQL, load generators) over one phase.

    Sampled every half second; a process that exits keeps what it used until its last
    sample, so short-lived processes are slightly undercounted."""

    server_sid: int | None
    postmaster: int | None
    first: dict[int, int] = field(default_factory=dict)
    last: dict[int, tuple[str, int]] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0
    system_start: tuple[int, ...] = (0, 0, 0)
    system_end: tuple[int, ...] = (0, 0, 0)

    def _role(self, pid: int, stat: ProcStat) -> str:
        if self.server_sid is not None and stat.sid == self.server_sid:
            return "app"
        if stat.comm.startswith("postgres"):
            # Only the PostgreSQL under test; another one on the machine counts as "other".
            mine = self.postmaster is None or self.postmaster in (pid, stat.ppid)
            return "postgres" if mine else "other"
        if stat.comm in ("wrk", "pgbench") or pid == os.getpid():
            return "load"
        return "other"

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = proc_stat(pid)
            if stat is None:
                continue
            if not self.started:
                self.first[pid] = stat.ticks
            self.last[pid] = (self._role(pid, stat), stat.ticks)
        now = time.monotonic()
        if not self.started:
            self.started = now
            self.system_start = _system_ticks()
        self.ended = now
        self.system_end = _system_ticks()

    def cores(self) -> dict[str, float]:
        elapsed = max(self.ended - self.started, 1e-9)
        used = dict.fromkeys(CPU_ROLES, 0.0)
        for pid, (role, ticks) in self.last.items():
            used[role] += (ticks - self.first.get(pid, 0)) / CLK_TCK / elapsed
        # "machine" is everything but idle, with interrupt time that no process is charged
        # for; "steal" is time the hypervisor gave to other guests.
        busy, steal, total = (
            end - start for start, end in zip(self.system_start, self.system_end, strict=True)
        )
        cpus = os.cpu_count() or 1
        used["steal"] = steal / max(total, 1) * cpus
        used["machine"] = busy / max(total, 1) * cpus
        return {k: round(v, 2) for k, v in used.items()}


# --- the run's context --------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Processes
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    postmaster: int | None = None
    server: subprocess.Popen | None = None
    key: str = ""
    member_ids: list[str] = field(default_factory=list)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(36))  # 48 characters

    @property
    def members_file(self) -> Path:
        return self.workdir / "members.txt"

    @property
    def server_log(self) -> Path:
        return self.workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.args.port}"

    def pg_url(self, database: str) -> str:
        return f"postgresql://{self.args.pg_user}@{HOST}:{self.args.pg_port}/{database}"

    def pg_cli(self) -> list[str]:
        return ["-h", HOST, "-p", str(self.args.pg_port), "-U", self.args.pg_user]

    def meter(self) -> CpuMeter:
        return CpuMeter(self.server.pid if self.server else None, self.postmaster)

    def env(self) -> dict[str, str]:
        """The environment of `loyalty` commands: the local services, production mode."""
        env = dict(os.environ)
        env.update(
            LOYALTY_MODE="production",
            LOYALTY_SECRET_KEY=self.secret_key,
            LOYALTY_DATABASE_URL=self.pg_url(APP_DB),
            LOYALTY_REDIS_URL=f"redis://{HOST}:{self.args.redis_port}/{self.args.redis_db}",
            LOYALTY_DATA_DIR=str(self.workdir / "data"),
            LOYALTY_HOST=HOST,
            LOYALTY_LOG_LEVEL=self.args.log_level,
        )
        return env


# --- setup: tools, databases, seeding, key, server ----------------------------------------


def check_tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("wrk", "pgbench")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise BenchError(
            f"{' and '.join(missing)} not found on PATH; install "
            f"{'them' if len(missing) > 1 else 'it'} first "
            "(Debian: apt-get install wrk postgresql-client)"
        )
    if importlib.util.find_spec("loyalty") is None:
        raise BenchError("run it in the project: cd /work/main && uv run python bench/earn.py")
    if not LUA_SCRIPT.exists():
        raise BenchError(f"{LUA_SCRIPT} is missing")
    return {name: str(path) for name, path in found.items()}


async def recreate_databases(bench: Bench) -> str:
    """Drop and create both databases; note the postmaster's pid; the server's version."""
    try:
        conn = await asyncpg.connect(bench.pg_url("postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"PostgreSQL at {HOST}:{bench.args.pg_port}: {exc}") from None
    try:
        for name in (APP_DB, PGBENCH_DB):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        version = await conn.fetchval("SHOW server_version")
        backend = proc_stat(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    bench.postmaster = backend.ppid if backend else None
    return version


def flush_redis(bench: Bench) -> None:
    args = bench.args
    client = redis.Redis(host=HOST, port=args.redis_port, db=args.redis_db, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {HOST}:{args.redis_port}: {exc}") from None
    finally:
        client.close()


# What `loyalty.workflows.enrolment.enrol_member` writes for a new member, set-based: the
# archive, the points account and (once the tiers app is installed) the lowest tier with its
# "initial" tier change. Member numbers are ten digits like the app's: nine without a leading
# zero, then a Luhn check digit (new_member_number); here 100000001 + check digit, and so on.
SEED_MEMBERS_SQL = """
WITH new_members AS (
    INSERT INTO members (id, number, kind, status, name, phone, email, hobbies,
        consumption_preferences, notes, tags, contact_preferences, registered_at,
        registration_channel, registered_by, updated_at)
    SELECT gen_random_uuid(), b.body || luhn.digit, 'person', 'active', 'Bench Member ' || g,
           NULL, NULL, '{}', '{}', '', '{}', '{}'::jsonb, now(), 'integration', 'bench', now()
    FROM generate_series($1::int, $2::int) AS g
    CROSS JOIN LATERAL (SELECT (100000000 + g)::text AS body) AS b
    CROSS JOIN LATERAL (
        SELECT ((10 - sum(CASE WHEN (length(b.body) - p) % 2 = 0
                               THEN d * 2 - CASE WHEN d >= 5 THEN 9 ELSE 0 END
                               ELSE d END) % 10) % 10)::text AS digit
        FROM generate_series(1, length(b.body)) AS p,
             LATERAL (SELECT substr(b.body, p, 1)::int AS d) AS digits
    ) AS luhn
    RETURNING id, registered_at
), accounts AS (
    INSERT INTO points_accounts (id, member, available, pending, debt, lifetime_earned, total,
        updated_at)
    SELECT gen_random_uuid(), id, 0, 0, 0, 0, 0, now() FROM new_members
)
"""
SEED_TIERS_SQL = """
, tiers AS (
    INSERT INTO member_tiers (id, member, tier, since)
    SELECT gen_random_uuid(), id, $3, registered_at FROM new_members
)
INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor, at)
SELECT gen_random_uuid(), id, NULL, $3, 'initial', '', 'system', registered_at FROM new_members
"""
SEED_DONE_SQL = "SELECT count(*) FROM new_members"


async def seed_members(bench: Bench) -> None:
    """Seed members set-based in chunks, with a progress bar; their ids go to a file."""
    total = bench.args.members
    conn = await asyncpg.connect(bench.pg_url(APP_DB), timeout=5)
    try:
        lowest_tier = None
        if await conn.fetchval("SELECT to_regclass('member_tiers') IS NOT NULL"):
            lowest_tier = await conn.fetchval(
                "SELECT code FROM tier_definitions WHERE enabled ORDER BY rank LIMIT 1"
            )
            if lowest_tier is None:
                raise BenchError("the tier ladder has no switched-on tier to enrol members in")
        with Progress(
            TextColumn("seeding members"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("seed", total=total)
            for first in range(1, total + 1, SEED_CHUNK):
                last = min(first + SEED_CHUNK - 1, total)
                if lowest_tier is None:
                    await conn.execute(SEED_MEMBERS_SQL + SEED_DONE_SQL, first, last)
                else:
                    await conn.execute(SEED_MEMBERS_SQL + SEED_TIERS_SQL, first, last, lowest_tier)
                progress.update(task, completed=last)
        await conn.execute("ANALYZE")
        bench.member_ids = [str(row[0]) for row in await conn.fetch("SELECT id FROM members")]
    finally:
        await conn.close()
    bench.members_file.write_text("\n".join(bench.member_ids) + "\n")


def loyalty_cli(bench: Bench, *argv: str) -> str:
    """Run a `loyalty` command with the benchmark's settings; its output, or a BenchError."""
    result = subprocess.run(
        [sys.executable, "-m", "loyalty", *argv],
        env=bench.env(),
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise BenchError(f"loyalty {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def create_api_key(bench: Bench) -> None:
    output = loyalty_cli(
        bench, "create-api-key", "--name", "bench", "--scopes", "purchases:write,members:read"
    )
    match = re.search(r"key \(shown once\): (lk_\S+)", output)
    if match is None:
        raise BenchError(f"no key in the output of loyalty create-api-key:\n{output}")
    bench.key = match.group(1)


def pgbench_init(bench: Bench) -> None:
    scale = bench.args.pgbench_scale
    argv = ["pgbench", "-i", "-q", "-s", str(scale), *bench.pg_cli(), PGBENCH_DB]
    with console.status(f"pgbench -i -s {scale} {PGBENCH_DB}"):
        proc = bench.procs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            output, _ = proc.communicate(timeout=600)
        finally:
            bench.procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"pgbench -i failed:\n{output.decode(errors='replace')}")


def start_server(bench: Bench) -> None:
    args = bench.args
    with socket.socket() as sock:
        if sock.connect_ex((HOST, args.port)) == 0:
            raise BenchError(f"port {args.port} on {HOST} is in use; pass --port")
    argv = [sys.executable, "-m", "loyalty", "serve", "--workers", str(args.workers)]
    argv += ["--host", HOST, "--port", str(args.port)]
    with bench.server_log.open("ab") as log:
        bench.server = bench.procs.start(
            argv,
            env=bench.env(),
            cwd=PROJECT_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if bench.server.poll() is not None:
            raise BenchError(f"loyalty serve exited with {bench.server.returncode}")
        try:
            if httpx.get(f"{bench.base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise BenchError("loyalty serve did not answer /health with 200 within 90 s")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def purchase_body(external_id: str, member_id: str, occurred_at: str) -> dict[str, Any]:
    """The same purchase as bench/earn.lua sends: one line, 2 x 10.50."""
    return {
        "external_id": external_id,
        "member_id": member_id,
        "occurred_at": occurred_at,
        "store": "S1",
        "currency": "CNY",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": "10.50", "category": "general"}],
        "total": "21.00",
    }


def iso_minute_ago() -> str:
    return (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def preflight(bench: Bench) -> None:
    """One purchase, its replay and a two-item batch: the bodies and the key work."""
    ids, run = bench.member_ids, bench.run_id
    body = purchase_body(f"{run}-preflight", ids[0], iso_minute_ago())
    headers = {"Authorization": f"Bearer {bench.key}"}
    with httpx.Client(base_url=bench.base_url, headers=headers, timeout=30) as client:
        first = client.post("/api/v1/purchases", json=body)
        if first.status_code != 201:
            raise BenchError(f"a purchase answered {first.status_code}: {first.text}")
        again = client.post("/api/v1/purchases", json=body)
        if again.status_code != 200 or again.json().get("status") != "replayed":
            raise BenchError(f"a replayed purchase answered {again.status_code}: {again.text}")
        batch = {
            "purchases": [
                purchase_body(f"{run}-preflight-{i}", ids[i % len(ids)], iso_minute_ago())
                for i in range(2)
            ]
        }
        answer = client.post("/api/v1/purchases/batch", json=batch)
        if answer.status_code != 200 or answer.json().get("created") != 2:
            raise BenchError(f"a batch answered {answer.status_code}: {answer.text}")


# --- phases -------------------------------------------------------------------------------


@contextmanager
def phase_progress(label: str, seconds: float) -> Iterator[Callable[[], None]]:
    """A progress bar over a timed phase; yields the function that moves it."""
    with Progress(
        SpinnerColumn(),
        TextColumn(f"{label:<30}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(label, total=seconds)
        started = time.monotonic()

        def refresh() -> None:
            progress.update(task, completed=min(time.monotonic() - started, seconds))

        yield refresh
        progress.update(task, completed=seconds)


def run_timed(
    bench: Bench, argv: list[str], label: str, seconds: float, meter: CpuMeter | None = None
) -> str:
    """Run a load generator for `seconds` with a progress bar (and CPU samples); its output."""
    with tempfile.TemporaryFile() as out, phase_progress(label, seconds) as refresh:
        proc = bench.procs.start(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + seconds + 120
            if meter:
                meter.sample()
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise BenchError(f"{argv[0]} ran 2 minutes past its duration")
                time.sleep(0.5)
                refresh()
                if meter and proc.poll() is None:
                    meter.sample()
        finally:
            bench.procs.stop(proc)
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} exited with {proc.returncode}:\n{output}")
    return output


def pgbench(
    bench: Bench, label: str, script: list[str], database: str, meter: CpuMeter
) -> tuple[float, str]:
    """pgbench running `script` (its -b or -f arguments) at the concurrency: TPS, output."""
    args = bench.args
    jobs = min(args.concurrency, os.cpu_count() or 1)
    argv = ["pgbench", *script, "-M", args.pgbench_protocol]
    argv += ["-c", str(args.concurrency), "-j", str(jobs), "-T", str(args.duration)]
    argv += [*bench.pg_cli(), database]
    output = run_timed(bench, argv, label, args.duration, meter)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if tps is None:
        raise BenchError(f"no tps in pgbench's output:\n{output}")
    return float(tps.group(1)), output


def run_pgbench(bench: Bench, label: str) -> dict[str, Any]:
    meter = bench.meter()
    tps, output = pgbench(bench, label, ["-b", "tpcb-like"], PGBENCH_DB, meter)
    latency = re.search(r"latency average = ([\d.]+) ms", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    return {
        "tps": tps,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "failed": int(failed.group(1)) if failed else 0,
        "cpu_cores": meter.cores(),
    }


async def count_purchases(bench: Bench) -> int:
    conn = await asyncpg.connect(bench.pg_url(APP_DB), timeout=5)
    try:
        return await conn.fetchval("SELECT count(*) FROM purchases")
    finally:
        await conn.close()


async def analyze(bench: Bench) -> None:
    """Statistics for the tables the warm-up filled. Seeded with members only, they were
    analyzed empty: a plan for "this member's purchases" then guesses at the rows and may
    scan them all. Autovacuum would do this within a minute; the phases are shorter."""
    conn = await asyncpg.connect(bench.pg_url(APP_DB), timeout=5)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def wrk_argv(bench: Bench, seconds: int, tag: str) -> list[str]:
    args = bench.args
    threads = min(2, args.concurrency)
    argv = ["wrk", "-t", str(threads), "-c", str(args.concurrency), "-d", f"{seconds}s"]
    argv += ["--timeout", "10s", "-s", str(LUA_SCRIPT), bench.base_url]
    return [*argv, "--", str(bench.members_file), bench.key, f"{bench.run_id}-{tag}"]


def warm_up(bench: Bench) -> None:
    """Single purchases from wrk, not measured, then `analyze`, before either phase. Without
    it the first statements plan for empty tables and keep those plans (a foreign key check
    planned on an empty table scans it, row by row, until the next ANALYZE)."""
    args = bench.args
    if args.warmup:
        run_timed(
            bench, wrk_argv(bench, args.warmup, "warm"), "warm-up (not measured)", args.warmup
        )
        asyncio.run(analyze(bench))


def run_single(bench: Bench) -> dict[str, Any]:
    """POST /api/v1/purchases from wrk at the fixed concurrency."""
    args = bench.args
    before = asyncio.run(count_purchases(bench))
    meter = bench.meter()
    argv = wrk_argv(bench, args.duration, "single")
    output = run_timed(bench, argv, "single purchases", args.duration, meter)
    match = re.search(r"^WRK_JSON (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise BenchError(f"no summary in wrk's output:\n{output}")
    summary = json.loads(match.group(1))
    time.sleep(0.5)  # requests in flight when wrk stopped still land
    created = asyncio.run(count_purchases(bench)) - before
    seconds = summary["duration_us"] / 1e6
    errors = summary["errors"]
    answered = summary["requests"] - errors["status"]  # wrk counts 4xx/5xx as status errors
    return {
        "requests": summary["requests"],
        "seconds": round(seconds, 3),
        "purchases_per_s": round(answered / seconds, 1),
        "purchases_created_in_db": created,
        "errors": errors,
        "latency_ms": {k: round(v / 1000, 2) for k, v in summary["latency_us"].items()},
        "cpu_cores": meter.cores(),
    }


async def _batch_load(bench: Bench, meter: CpuMeter, refresh: Callable[[], None]) -> dict:
    """Closed loop: each caller posts a batch, waits for the answer, posts the next until
    the duration is up; batches in flight then finish and count (the rate is over the time
    to the last answer)."""
    args = bench.args
    limits = httpx.Limits(
        max_connections=args.batch_concurrency, max_keepalive_connections=args.batch_concurrency
    )
    headers = {"Authorization": f"Bearer {bench.key}", "Content-Type": "application/json"}
    stats: dict[str, Any] = {"created": 0, "other": 0, "http_errors": [], "latencies": []}
    async with httpx.AsyncClient(
        base_url=bench.base_url,
        headers=headers,
        limits=limits,
        timeout=httpx.Timeout(BATCH_CALL_TIMEOUT, connect=10),
    ) as client:
        started = time.perf_counter()
        deadline = started + args.duration
        last_answer = started

        async def caller(number: int) -> None:
            nonlocal last_answer
            rng = random.Random(f"{bench.run_id}-{number}")
            sent = 0
            while time.perf_counter() < deadline and len(stats["http_errors"]) < 5:
                sent += 1
                at = iso_minute_ago()
                prefix = f"{bench.run_id}-batch-{number}-{sent}"
                purchases = [
                    purchase_body(f"{prefix}-{i}", rng.choice(bench.member_ids), at)
                    for i in range(args.batch_size)
                ]
                body = msgspec.json.encode({"purchases": purchases})
                t0 = time.perf_counter()
                try:
                    response = await client.post("/api/v1/purchases/batch", content=body)
                except httpx.HTTPError as exc:
                    stats["http_errors"].append(f"{type(exc).__name__}: {exc}")
                    return
                t1 = time.perf_counter()
                if response.status_code != 200:
                    stats["http_errors"].append(f"{response.status_code}: {response.text[:300]}")
                    continue
                result = msgspec.json.decode(response.content)
                stats["created"] += result["created"]
                stats["other"] += result["replayed"] + result["failed"]
                stats["latencies"].append(t1 - t0)
                last_answer = max(last_answer, t1)

        async def sampler() -> None:
            while True:
                meter.sample()
                refresh()
                await asyncio.sleep(0.5)

        sampling = asyncio.create_task(sampler())
        try:
            await asyncio.gather(*(caller(n) for n in range(args.batch_concurrency)))
        finally:
            sampling.cancel()
        meter.sample()
    stats["seconds"] = last_answer - started
    return stats


def run_batch(bench: Bench) -> dict[str, Any]:
    """POST /api/v1/purchases/batch from an asyncio client at the batch concurrency."""
    args = bench.args
    meter = bench.meter()
    label = f"batch purchases ({args.batch_size} a call)"
    with phase_progress(label, args.duration) as refresh:
        stats = asyncio.run(_batch_load(bench, meter, refresh))
    if stats["http_errors"]:
        raise BenchError("batch calls failed: " + "; ".join(stats["http_errors"][:3]))
    latencies = sorted(stats["latencies"])
    seconds = stats["seconds"]
    return {
        "batches": len(latencies),
        "seconds": round(seconds, 3),
        "purchases_created": stats["created"],
        "purchases_not_created": stats["other"],
        "purchases_per_s": round(stats["created"] / seconds, 1) if seconds else 0.0,
        "batch_latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 1),
            "p99": round(percentile(latencies, 99) * 1000, 1),
            "max": round(latencies[-1] * 1000, 1) if latencies else None,
        },
        "cpu_cores": meter.cores(),
    }


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(math.ceil(pct / 100 * len(sorted_values)) - 1, 0)]


async def ledger_check(bench: Bench) -> dict[str, Any]:
    """After the run: every purchase earned once and every account still balances."""
    conn = await asyncpg.connect(bench.pg_url(APP_DB), timeout=5)
    try:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM purchases) AS purchases,
                   (SELECT count(*) FROM points_ledger WHERE kind = 'purchase_earn') AS earns,
                   (SELECT count(*) FROM points_accounts
                    WHERE available + pending - debt <> total) AS unbalanced,
                   (SELECT coalesce(sum(points), 0) FROM purchases) AS purchase_points,
                   (SELECT coalesce(sum(points), 0) FROM points_ledger) AS ledger_points
            """
        )
    finally:
        await conn.close()
    check = dict(row)
    check["ok"] = (
        check["purchases"] == check["earns"]
        and check["unbalanced"] == 0
        and check["purchase_points"] == check["ledger_points"]
    )
    return check


# --- the database floor -------------------------------------------------------------------

# One transaction of pgbench: FLOOR_CHUNK members locked in member order from a random one,
# and for each the rows of one bench purchase (one line, 2 x 10.50, 21 pending points): the
# purchase, its line, its earn entry, its lot, and the account's buckets. Nothing is looked
# up, checked or computed that the app needs (members by id, number or phone, earlier posts,
# tiers, referrals, offers, foreign keys, the ledger triggers, the request itself).
FLOOR_SCRIPT = """
BEGIN;
WITH run AS MATERIALIZED (
    SELECT id, member FROM {schema}.points_accounts
    WHERE member >= (SELECT gen_random_uuid()) ORDER BY member LIMIT {chunk} FOR UPDATE
), p AS MATERIALIZED (
    SELECT gen_random_uuid() AS purchase, gen_random_uuid() AS entry, id AS account, member,
           'floor-' || gen_random_uuid() AS external_id
    FROM run
), purchases AS (
    INSERT INTO {schema}.purchases (id, external_id, member, occurred_at, store, currency, total,
        returned_amount, points, reversed_points, rep, request_hash, source, created_at)
    SELECT purchase, external_id, member, now(), 'S1', 'CNY', 21.00, 0, 21, 0, NULL,
           md5(external_id) || md5(purchase::text), 'bench', now()
    FROM p
), lines AS (
    INSERT INTO {schema}.purchase_lines (id, purchase, member, line_no, sku, category, quantity,
        unit_price, amount, points, returned_quantity, reversed_points)
    SELECT gen_random_uuid(), purchase, member, 1, 'A', 'general', 2, 10.50, 21.00, 21, 0, 0
    FROM p
), entries AS (
    INSERT INTO {schema}.points_ledger (id, member, points, kind, cause_type, cause_id,
        idempotency_key, occurred_at, created_at, actor, note)
    SELECT entry, member, 21, 'purchase_earn', 'purchase', external_id,
           'purchase:' || external_id, now(), now(), 'bench', NULL
    FROM p
), lots AS (
    INSERT INTO {schema}.points_lots (id, member, entry, points, remaining, available_at,
        expires_at, released)
    SELECT gen_random_uuid(), member, entry, 21, 21, now() + interval '14 days',
           now() + interval '24 months', false
    FROM p
)
UPDATE {schema}.points_accounts a
SET pending = a.pending + 21, lifetime_earned = a.lifetime_earned + 21, total = a.total + 21,
    updated_at = now()
FROM p WHERE a.id = p.account;
COMMIT;
"""


async def create_floor_tables(bench: Bench) -> None:
    """Copies of the app's tables (LIKE ... INCLUDING ALL: columns, defaults, checks and
    indexes, but no foreign keys or triggers), with a copy of every points account."""
    conn = await asyncpg.connect(bench.pg_url(APP_DB), timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {FLOOR_SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {FLOOR_SCHEMA}")
        for table in FLOOR_TABLES:
            await conn.execute(
                f"CREATE TABLE {FLOOR_SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)"
            )
        await conn.execute(
            f"INSERT INTO {FLOOR_SCHEMA}.points_accounts SELECT * FROM public.points_accounts"
        )
        await conn.execute(f"ANALYZE {FLOOR_SCHEMA}.points_accounts")
    finally:
        await conn.close()


async def drop_floor_tables(bench: Bench) -> None:
    conn = await asyncpg.connect(bench.pg_url(APP_DB), timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {FLOOR_SCHEMA} CASCADE")
    finally:
        await conn.close()


def run_floor(bench: Bench) -> dict[str, Any]:
    """pgbench writing the rows of batched purchases and nothing else, at the concurrency."""
    with console.status("copying the tables for the database floor"):
        asyncio.run(create_floor_tables(bench))
    script = bench.workdir / "floor.sql"
    script.write_text(FLOOR_SCRIPT.format(schema=FLOOR_SCHEMA, chunk=FLOOR_CHUNK))
    meter = bench.meter()
    try:
        label = f"database floor ({FLOOR_CHUNK} a transaction)"
        tps, _ = pgbench(bench, label, ["-n", "-f", str(script)], APP_DB, meter)
    finally:
        asyncio.run(drop_floor_tables(bench))
    return {
        "transactions_per_s": tps,
        "purchases_per_transaction": FLOOR_CHUNK,
        "purchases_per_s": round(tps * FLOOR_CHUNK, 1),
        "cpu_cores": meter.cores(),
    }


# --- py-spy (optional) --------------------------------------------------------------------


def start_py_spy(bench: Bench, phase: str) -> subprocess.Popen | None:
    if not bench.args.py_spy or bench.server is None:
        return None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / f"earn-{datetime.now():%Y%m%d-%H%M%S}-{phase}.pyspy.txt"
    argv = [bench.args.py_spy, "record", "--pid", str(bench.server.pid), "--subprocesses"]
    argv += ["--rate", "100", "--format", "raw", "--output", str(output), "--nonblocking"]
    console.print(f"py-spy: profiling the server into {output}")
    return bench.procs.start(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(bench: Bench, proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)  # py-spy writes its profile on SIGINT
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    bench.procs.stop(proc)


# --- report -------------------------------------------------------------------------------


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    before, after = results["pgbench_before"]["tps"], results["pgbench_after"]["tps"]
    ceiling = statistics.mean([before, after])
    summary: dict[str, Any] = {
        "pgbench_tps": round(ceiling, 1),
        "pgbench_spread": round(abs(before - after) / ceiling, 3),
        "goals": {},
    }
    if "single" in results:
        single = results["single"]
        summary["single_ratio"] = round(single["purchases_per_s"] / ceiling, 3)
        summary["goals"]["single_ratio_ge_0.5"] = summary["single_ratio"] >= GOAL_SINGLE_RATIO
        summary["goals"]["single_p99_lt_100ms"] = single["latency_ms"]["p99"] < GOAL_P99_MS
    if "batch" in results:
        summary["batch_ratio"] = round(results["batch"]["purchases_per_s"] / ceiling, 3)
        summary["goals"]["batch_ratio_ge_5"] = summary["batch_ratio"] >= GOAL_BATCH_RATIO
    if "floor" in results:
        floor = results["floor"]["purchases_per_s"]
        summary["floor_ratio"] = round(floor / ceiling, 3)
        if "batch" in results and floor:
            summary["batch_share_of_floor"] = round(results["batch"]["purchases_per_s"] / floor, 3)
    # CPU milliseconds per purchase (per transaction for pgbench): steadier than rates when
    # the machine is shared, and it says which side to make cheaper.
    summary["cpu_ms_per_unit"] = {}
    for name in PHASE_ORDER:
        if name in results:
            rate = results[name].get("tps") or results[name].get("purchases_per_s")
            cores = results[name]["cpu_cores"]
            summary["cpu_ms_per_unit"][name] = {
                role: round(cores[role] * 1000 / rate, 3) if rate else None
                for role in ("app", "postgres", "load", "machine")
            }
    summary["disturbed_phases"] = [
        name
        for name in PHASE_ORDER
        if name in results and results[name]["cpu_cores"]["other"] > OTHER_LOAD_WARNING
    ]
    return summary


def print_report(args: argparse.Namespace, results: dict[str, Any], path: Path) -> None:
    summary, goals = results["summary"], results["summary"]["goals"]

    def mark(ok: bool) -> str:
        return "[green]met[/]" if ok else "[red]missed[/]"

    table = Table(
        title=f"earn: concurrency {args.concurrency}, {args.duration} s a phase, "
        f"{args.workers} web worker(s), {args.members:,} members"
    )
    for name, justify in (("measure", "left"), ("value", "right"), ("goal", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("", no_wrap=True)
    before, after = results["pgbench_before"]["tps"], results["pgbench_after"]["tps"]
    table.add_row(
        f"pgbench tpcb-like TPS (-M {args.pgbench_protocol})", f"{summary['pgbench_tps']:,.0f}"
    )
    table.add_row("  before / after", f"{before:,.0f} / {after:,.0f}")
    if "single" in results:
        single = results["single"]
        table.add_row("single: purchases/s", f"{single['purchases_per_s']:,.0f}")
        table.add_row(
            "single: ratio to pgbench",
            f"{summary['single_ratio']:.2f}",
            f">= {GOAL_SINGLE_RATIO}",
            mark(goals["single_ratio_ge_0.5"]),
        )
        table.add_row("single: p50 latency", f"{single['latency_ms']['p50']:.1f} ms")
        table.add_row(
            "single: p99 latency",
            f"{single['latency_ms']['p99']:.1f} ms",
            f"< {GOAL_P99_MS:.0f} ms",
            mark(goals["single_p99_lt_100ms"]),
        )
    if "batch" in results:
        batch = results["batch"]
        table.add_row(f"batch ({args.batch_size}): purchases/s", f"{batch['purchases_per_s']:,.0f}")
        table.add_row(
            "batch: ratio to pgbench",
            f"{summary['batch_ratio']:.2f}",
            f">= {GOAL_BATCH_RATIO:.0f}",
            mark(goals["batch_ratio_ge_5"]),
        )
        latency = batch["batch_latency_ms"]
        table.add_row("batch: call p50 / p99", f"{latency['p50']:,.0f} / {latency['p99']:,.0f} ms")
    if "floor" in results:
        table.add_row(
            f"database floor ({FLOOR_CHUNK} a tx): purchases/s",
            f"{results['floor']['purchases_per_s']:,.0f}",
        )
        table.add_row("floor: ratio to pgbench", f"{summary['floor_ratio']:.2f}")
        if "batch_share_of_floor" in summary:
            table.add_row("batch: share of the floor", f"{summary['batch_share_of_floor']:.0%}")
    console.print(table)

    roles = [*CPU_ROLES, "steal", "machine"]
    cpu = Table(
        title=f"CPU: cores used ({os.cpu_count()} = the whole machine), "
        "and ms per purchase or pgbench transaction"
    )
    cpu.add_column("phase", no_wrap=True)
    for role in roles:
        cpu.add_column(role, justify="right")
    for role in ("app", "postgres"):
        cpu.add_column(f"{role} ms/unit", justify="right")
    for name in PHASE_ORDER:
        if name in results:
            cores = results[name]["cpu_cores"]
            per_unit = summary["cpu_ms_per_unit"][name]
            cpu.add_row(
                name,
                *(f"{cores[role]:.2f}" for role in roles),
                *(
                    "-" if per_unit[role] is None else f"{per_unit[role]:.2f}"
                    for role in ("app", "postgres")
                ),
            )
    console.print(cpu)

    check = results["ledger_check"]
    if check["ok"]:
        console.print(
            f"ledger check: {check['purchases']:,} purchases, one earn entry each, "
            "every account balanced"
        )
    else:
        console.print(f"[red]ledger check failed:[/] {check}")
    if "single" in results and any(results["single"]["errors"].values()):
        console.print(f"[yellow]wrk errors:[/] {results['single']['errors']}")
    if summary["disturbed_phases"]:
        console.print(
            f"[yellow]other processes used more than {OTHER_LOAD_WARNING} cores during "
            f"{', '.join(summary['disturbed_phases'])}: those figures are disturbed[/]"
        )
    if summary["pgbench_spread"] > 0.2:
        console.print(
            f"[yellow]pgbench moved {summary['pgbench_spread']:.0%} between before and after: "
            "the machine is noisy; compare several runs[/]"
        )
    console.print(f"results: {path}")


def environment_facts(tools: dict[str, str], pg_version: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "postgresql": pg_version,
        "python": sys.version.split()[0],
        "commit": commit,
        "tools": tools,
    }


# --- main ---------------------------------------------------------------------------------


def run(bench: Bench) -> dict[str, Any]:
    args = bench.args
    tools = check_tools()
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
    with console.status("databases, Redis, migrations"):
        pg_version = asyncio.run(recreate_databases(bench))
        flush_redis(bench)
        loyalty_cli(bench, "migrate")
    started = time.monotonic()
    asyncio.run(seed_members(bench))
    console.print(f"seeded {len(bench.member_ids):,} members in {time.monotonic() - started:.1f} s")
    create_api_key(bench)
    pgbench_init(bench)
    results["parameters"] = {k: v for k, v in vars(args).items() if k != "py_spy"}
    results["environment"] = environment_facts(tools, pg_version)

    try:
        with console.status(f"starting loyalty serve --workers {args.workers}"):
            start_server(bench)
        preflight(bench)
        results["pgbench_before"] = run_pgbench(bench, "pgbench tpcb-like (before)")
        warm_up(bench)
        for phase, measure in (("single", run_single), ("batch", run_batch), ("floor", run_floor)):
            if phase in args.phases:
                spy = start_py_spy(bench, phase) if phase != "floor" else None
                try:
                    results[phase] = measure(bench)
                finally:
                    stop_py_spy(bench, spy)
                if bench.server is not None and bench.server.poll() is not None:
                    raise BenchError(f"loyalty serve exited during the {phase} phase")
        results["pgbench_after"] = run_pgbench(bench, "pgbench tpcb-like (after)")
    except BenchError as exc:
        raise BenchError(
            f"{exc}\n--- server log, last lines ---\n{tail(bench.server_log)}"
        ) from None
    finally:
        if bench.server is not None:
            with console.status("stopping loyalty serve"):
                bench.procs.stop(bench.server)
    results["ledger_check"] = asyncio.run(ledger_check(bench))
    results["summary"] = summarise(results)
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM both unwind through the cleanup, even when started in the background
    # (where a shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
            try:
                results = run(Bench(args, procs, Path(tmp)))
            finally:
                procs.stop_all()
    except BenchError as exc:
        console.print(f"[red]benchmark failed:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; what the benchmark started is stopped[/]")
        return 130
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"earn-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_report(args, results, path)
    missed = [name for name, ok in results["summary"]["goals"].items() if not ok]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
