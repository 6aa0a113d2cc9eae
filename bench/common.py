"""What the benchmarks share: the processes they start, CPU accounting from /proc, the local
PostgreSQL and Redis, the set-based member and points seeds, `loyalty` commands and the server,
pgbench, progress bars and the run's facts.

Every benchmark runs as `uv run python bench/x.py`, so bench/ is first on sys.path and
`import common` finds this module. Database names and the console are the caller's, passed
in (mostly through `Bench`): nothing here is a global another benchmark has to overwrite."""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    import asyncpg
    import httpx
    import redis
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # not in the project's environment
    sys.exit(f"{exc}: run it in the project: cd /work/main && uv run python bench/earn.py")

HOST = "127.0.0.1"  # the only host the benchmarks ever talk to
BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
OTHER_LOAD_WARNING = 0.25  # cores used by processes outside the benchmark
SEED_CHUNK = 5_000


class BenchError(Exception):
    """A failure with a message meant for the person running the benchmark."""


# --- processes ----------------------------------------------------------------------------


class Processes:
    """Every process a benchmark starts, each in a session of its own, stopped by its id."""

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


def interrupt_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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


def system_ticks() -> tuple[int, int, int]:
    """(busy, steal, total) CPU ticks of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    return total - values[3] - values[4], values[7], total


def machine_cores(start: tuple[int, ...], end: tuple[int, ...]) -> dict[str, float]:
    """ "machine" is everything but idle, with interrupt time that no process is charged for;
    "steal" is time the hypervisor gave to other guests."""
    busy, steal, total = (b - a for a, b in zip(start, end, strict=True))
    cpus = os.cpu_count() or 1
    return {"steal": steal / max(total, 1) * cpus, "machine": busy / max(total, 1) * cpus}


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
            self.system_start = system_ticks()
        self.ended = now
        self.system_end = system_ticks()

    def cores(self) -> dict[str, float]:
        elapsed = max(self.ended - self.started, 1e-9)
        used = dict.fromkeys(CPU_ROLES, 0.0)
        for pid, (role, ticks) in self.last.items():
            used[role] += (ticks - self.first.get(pid, 0)) / CLK_TCK / elapsed
        used.update(machine_cores(self.system_start, self.system_end))
        return {k: round(v, 2) for k, v in used.items()}


# --- the run's context --------------------------------------------------------------------


@dataclass
class Bench:
    """One run: its arguments, processes, scratch folder, and the databases it may drop."""

    args: argparse.Namespace
    procs: Processes
    workdir: Path
    app_db: str
    pgbench_db: str = ""
    console: Console = field(default_factory=Console)
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
            LOYALTY_DATABASE_URL=self.pg_url(self.app_db),
            LOYALTY_REDIS_URL=f"redis://{HOST}:{self.args.redis_port}/{self.args.redis_db}",
            LOYALTY_DATA_DIR=str(self.workdir / "data"),
            LOYALTY_HOST=HOST,
            LOYALTY_LOG_LEVEL=self.args.log_level,
        )
        return env


# --- PostgreSQL and Redis -----------------------------------------------------------------


async def recreate_databases(bench: Bench, *names: str) -> str:
    """Drop and create the named databases; note the postmaster's pid; the server's version."""
    try:
        conn = await asyncpg.connect(bench.pg_url("postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"PostgreSQL at {HOST}:{bench.args.pg_port}: {exc}") from None
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        version = await conn.fetchval("SHOW server_version")
        backend = proc_stat(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    bench.postmaster = backend.ppid if backend else None
    return version


async def analyze(url: str) -> None:
    """Fresh planner statistics for everything in the database at `url`."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def flush_redis(args: argparse.Namespace) -> None:
    client = redis.Redis(host=HOST, port=args.redis_port, db=args.redis_db, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {HOST}:{args.redis_port}: {exc}") from None
    finally:
        client.close()


def environment_facts(pg_version: str, **extra: Any) -> dict[str, Any]:
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
        **extra,
    }


# --- `loyalty` commands and the server ----------------------------------------------------


def loyalty_cli(env: dict[str, str], *argv: str, timeout: float = 180) -> str:
    """Run a `loyalty` command in `env`; its output, or a BenchError."""
    result = subprocess.run(
        [sys.executable, "-m", "loyalty", *argv],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise BenchError(f"loyalty {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def create_api_key(env: dict[str, str]) -> str:
    """A new integration key for purchases (and reading members)."""
    output = loyalty_cli(
        env, "create-api-key", "--name", "bench", "--scopes", "purchases:write,members:read"
    )
    match = re.search(r"key \(shown once\): (lk_\S+)", output)
    if match is None:
        raise BenchError(f"no key in the output of loyalty create-api-key:\n{output}")
    return match.group(1)


def serve(
    procs: Processes, env: dict[str, str], port: int, workers: int, log: Path
) -> subprocess.Popen:
    """`loyalty serve` on the port, once it answers /health with 200."""
    with socket.socket() as sock:
        if sock.connect_ex((HOST, port)) == 0:
            raise BenchError(f"port {port} on {HOST} is in use; pass --port")
    argv = [sys.executable, "-m", "loyalty", "serve", "--workers", str(workers)]
    argv += ["--host", HOST, "--port", str(port)]
    with log.open("ab") as out:
        server = procs.start(
            argv,
            env=env,
            cwd=PROJECT_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"loyalty serve exited with {server.returncode}")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise BenchError("loyalty serve did not answer /health with 200 within 90 s")


def start_server(bench: Bench) -> None:
    bench.server = serve(
        bench.procs, bench.env(), bench.args.port, bench.args.workers, bench.server_log
    )


def expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise BenchError(f"{what} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def iso_minute_ago() -> str:
    return (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(math.ceil(pct / 100 * len(sorted_values)) - 1, 0)]


def cpu_table(
    title: str,
    roles: list[str],
    rows: list[tuple[str, dict[str, float], dict[str, float | None] | None]],
    unit: str | None = None,
) -> Table:
    """Cores used per role in each phase; with `unit`, also the app's and PostgreSQL's CPU ms
    per unit of work (rows: phase, cores by role, ms per unit by role)."""
    table = Table(title=title)
    table.add_column("phase", no_wrap=True)
    for role in roles:
        table.add_column(role, justify="right")
    if unit:
        for role in ("app", "postgres"):
            table.add_column(f"{role} {unit}", justify="right")
    for phase, cores, per_unit in rows:
        cells = [f"{cores.get(role, 0):.2f}" for role in roles]
        if unit and per_unit is not None:
            cells += [
                "-" if per_unit[r] is None else f"{per_unit[r]:.2f}" for r in ("app", "postgres")
            ]
        table.add_row(phase, *cells)
    return table
