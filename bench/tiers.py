"""Tier evaluation benchmark: the real `evaluate_tiers` job against one hand-written set-based
statement on the same data, and the earn endpoint's p99 while the evaluation runs.

In one run, on the local PostgreSQL and Redis (127.0.0.1 only):

1. Data: ~1,000,000 members (`members`, `points_accounts`, `member_tiers`, `tier_changes`)
   and their purchases over the last 18 months, written with COPY into a cache database
   (`loyalty_bench_tiers_cache`, kept for `--reuse`) and cloned into the working database
   (`loyalty_bench_tiers`). Current tiers are spread so that an evaluation has work to do:
   upgrades, grace starts, downgrades after the grace, cleared graces, overrides that ended,
   members on a switched-off tier.
2. Timed, `--runs` times, alternating and each from the same data (member_tiers restored from
   a snapshot, the evaluation's tier_changes and outbox events deleted, then VACUUM ANALYZE):
   - the job: `evaluate_tiers` enqueued on arq and run by a real arq worker (burst), from
     enqueue to completion;
   - the ceiling: one hand-written set-based statement (SINGLE_STATEMENT) computing the same
     decisions for every member at once, applying them with one UPDATE plus the history and
     outbox inserts, with the job's own evaluation time, so both must end in the same state:
     member_tiers, tier_changes and outbox_events are compared by checksum.
3. Earn: `loyalty serve` on the same database, wrk posting purchases at a fixed rate
   (bench/tiers_earn.lua): p99 while idle (before and after), and while the job runs.

Goals: the job within 2 x the single statement; the earn p99 during the evaluation within
2 x the idle p99. Every process it starts (server, wrk) is stopped on exit, Ctrl-C or error.

    uv run python bench/tiers.py [--members 1000000] [--purchases-per-member 3] [--reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

try:
    import asyncpg
    import httpx
    from asyncpg.pgproto.pgproto import UUID as PgUUID
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
    sys.exit(f"{exc}: run it in the project: cd /work/main && uv run python bench/tiers.py")

import common
from common import (
    BENCH_DIR,
    CLK_TCK,
    HOST,
    OTHER_LOAD_WARNING,
    PROJECT_DIR,
    RESULTS_DIR,
    BenchError,
    Processes,
    free_port,
    interrupt_on_sigterm,
    proc_stat,
    system_ticks,
)
from workload import phase_progress

WORK_DB = "loyalty_bench_tiers"
CACHE_DB = "loyalty_bench_tiers_cache"
LUA_SCRIPT = BENCH_DIR / "tiers_earn.lua"
CACHE_FORMAT = 1  # bump when the generated data changes shape
GOAL_JOB_RATIO = 2.0
GOAL_P99_RATIO = 2.0
BULK_TABLES = ("members", "points_accounts", "member_tiers", "tier_changes", "purchases")
HISTORY_DAYS = 548  # purchases over the last ~18 months
REGISTRATION_YEARS = 4
EARN_SAMPLE = 20_000  # members the earn load picks from (uniformly over the key space)
COPY_PROGRESS_EVERY = 20_000
DIAGNOSIS_BATCHES = 8  # the plan cache may switch to a generic plan after five executions

console = Console(width=None if sys.stdout.isatty() else 110)  # logs: wide enough for the tables


T = TypeVar("T")


# --- arguments ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The evaluate_tiers job against one hand-written set-based statement, and "
        "the earn p99 while it runs, on the local PostgreSQL and Redis (127.0.0.1).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--members", type=int, default=1_000_000, help="members to generate")
    parser.add_argument(
        "--purchases-per-member",
        type=float,
        default=3.0,
        help="average purchases per member over the 18 months",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"reuse the generated data in {CACHE_DB} when it matches these parameters",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="wrk connections for the earn load"
    )
    parser.add_argument("--rate", type=int, default=100, help="earn requests/s (fixed rate)")
    parser.add_argument(
        "--earn-seconds", type=int, default=20, help="seconds of each idle earn phase"
    )
    parser.add_argument("--runs", type=int, default=2, help="timed job/statement pairs")
    parser.add_argument("--workers", type=int, default=2, help="web processes (loyalty serve)")
    parser.add_argument("--port", type=int, default=0, help="port for loyalty serve (0: free)")
    parser.add_argument("--pg-port", type=int, default=5432, help="local PostgreSQL port")
    parser.add_argument("--pg-user", default="postgres", help="PostgreSQL user (trust auth)")
    parser.add_argument("--redis-port", type=int, default=6379, help="local Redis port")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database (flushed)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the generated data")
    parser.add_argument(
        "--explain",
        choices=["auto", "always", "never"],
        default="auto",
        help="EXPLAIN ANALYZE the job's batch statement and the single statement, and time "
        "the job's batches one by one (auto: when the job misses its goal)",
    )
    parser.add_argument("--skip-earn", action="store_true", help="no earn phases")
    parser.add_argument(
        "--keep-db", action="store_true", help=f"keep {WORK_DB} afterwards (dropped by default)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if args.members < 100 or args.members > 800_000_000:
        parser.error("--members must be between 100 and 800,000,000")
    if not 0 < args.purchases_per_member <= 100:
        parser.error("--purchases-per-member must be above 0 and at most 100")
    if min(args.concurrency, args.rate, args.earn_seconds, args.runs, args.workers) < 1:
        parser.error("--concurrency, --rate, --earn-seconds, --runs and --workers must be >= 1")
    return args


# --- processes ----------------------------------------------------------------------------


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM cancelling the main task as Ctrl-C does (an exception raised
    from a signal handler in the middle of the event loop, a COPY say, can leave it hanging)."""

    terminated = False

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt("SIGTERM") from None
        raise BenchError("the run was cancelled from inside (not by a signal)") from None
    finally:
        signal.signal(signal.SIGTERM, interrupt_on_sigterm)


# --- CPU accounting from /proc ------------------------------------------------------------

CPU_ROLES = ("postgres", "app", "bench", "load", "other")


class CpuMeter:
    """Cores used per role over a phase, sampled every half second: PostgreSQL (without
    backends of other databases), the web server, this process (the arq worker included),
    wrk, and everything else ("other": work that is not the benchmark's)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.wal_bytes: list[int] = []  # the server's WAL position (all databases)
        self.first: dict[int, int] = {}
        self.last: dict[int, tuple[str, int]] = {}
        self.times: list[float] = []
        self.system: list[tuple[int, int, int]] = []

    def _role(self, pid: int, comm: str, sid: int, foreign: set[int]) -> str:
        if pid == os.getpid():
            return "bench"
        if self.bench.server is not None and sid == self.bench.server.pid:
            return "app"
        if comm == "wrk":
            return "load"
        if comm.startswith("postgres"):
            return "other" if pid in foreign else "postgres"
        return "other"

    async def sample(self, conn: asyncpg.Connection | None) -> None:
        foreign: set[int] = set()
        if conn is not None:
            rows = await conn.fetch(
                """
                SELECT pid FROM pg_stat_activity
                WHERE datname IS DISTINCT FROM $1
                  AND backend_type IN ('client backend', 'autovacuum worker', 'parallel worker')
                """,
                self.bench.work_db,
            )
            foreign = {row["pid"] for row in rows}
        first = not self.times
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = proc_stat(pid)
            if stat is None:
                continue
            comm, sid, ticks = stat.comm, stat.sid, stat.ticks
            if first:
                self.first[pid] = ticks
            self.last[pid] = (self._role(pid, comm, sid, foreign), ticks)
        self.times.append(time.monotonic())
        self.system.append(system_ticks())

    def cores(self) -> dict[str, float]:
        if len(self.times) < 2:
            return {}
        elapsed = max(self.times[-1] - self.times[0], 1e-9)
        used = dict.fromkeys(CPU_ROLES, 0.0)
        for pid, (role, ticks) in self.last.items():
            used[role] += (ticks - self.first.get(pid, 0)) / CLK_TCK / elapsed
        busy, steal, total = (b - a for a, b in zip(self.system[0], self.system[-1], strict=True))
        cpus = os.cpu_count() or 1
        used["steal"] = steal / max(total, 1) * cpus
        used["machine"] = busy / max(total, 1) * cpus
        return {k: round(v, 2) for k, v in used.items()}

    def wal_mb(self) -> float | None:
        if len(self.wal_bytes) < 2:
            return None
        return round((self.wal_bytes[-1] - self.wal_bytes[0]) / 2**20, 1)


@asynccontextmanager
async def metered(bench: Bench) -> AsyncIterator[CpuMeter]:
    """Sample CPU use (and the server's WAL position) while the block runs."""
    meter = CpuMeter(bench)
    conn = await bench.connect("postgres")

    async def sampler() -> None:
        while True:
            await asyncio.sleep(0.5)
            await meter.sample(conn)

    wal_sql = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
    meter.wal_bytes.append(await conn.fetchval(wal_sql))
    await meter.sample(conn)
    task = asyncio.create_task(sampler())
    try:
        yield meter
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await meter.sample(conn)
        meter.wal_bytes.append(await conn.fetchval(wal_sql))
        await conn.close()


# --- the run's context --------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Processes
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(36))  # 48 characters
    server: subprocess.Popen | None = None
    port: int = 0
    key: str = ""
    generated_at: datetime | None = None
    # The databases it generates into and clones, and where it prints: another benchmark
    # (bench/soak.py) passes its own.
    work_db: str = WORK_DB
    cache_db: str = CACHE_DB
    console: Console = field(default_factory=lambda: console)

    @property
    def members_file(self) -> Path:
        return self.workdir / "members.txt"

    @property
    def server_log(self) -> Path:
        return self.workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def pg_url(self, database: str) -> str:
        return f"postgresql://{self.args.pg_user}@{HOST}:{self.args.pg_port}/{database}"

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.args.redis_port}/{self.args.redis_db}"

    async def connect(self, database: str | None = None) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(self.pg_url(database or self.work_db), timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise BenchError(f"PostgreSQL at {HOST}:{self.args.pg_port}: {exc}") from None

    def env(self, database: str | None = None) -> dict[str, str]:
        """The environment of `loyalty` commands: the local services, production mode."""
        env = dict(os.environ)
        env.update(
            LOYALTY_MODE="production",
            LOYALTY_SECRET_KEY=self.secret_key,
            LOYALTY_DATABASE_URL=self.pg_url(database or self.work_db),
            LOYALTY_REDIS_URL=self.redis_url,
            LOYALTY_DATA_DIR=str(self.workdir / "data"),
            LOYALTY_HOST=HOST,
        )
        return env


def loyalty_cli(bench: Bench, *argv: str, database: str | None = None) -> str:
    """Run a `loyalty` command on the work database (or `database`); its output."""
    return common.loyalty_cli(bench.env(database), *argv, timeout=600)


def check_tools() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk not found on PATH; install it first (Debian: apt-get install wrk)")
    if importlib.util.find_spec("loyalty") is None:
        raise BenchError("run it in the project: cd /work/main && uv run python bench/tiers.py")
    if not LUA_SCRIPT.exists():
        raise BenchError(f"{LUA_SCRIPT} is missing")
    return wrk


def code_migrations() -> list[str]:
    """The migration ids in the code (what a generated database must have applied)."""
    found = []
    for path in sorted((PROJECT_DIR / "migrations").glob("*/*.py")):
        match = re.search(r'^ID = "([^"]+)"', path.read_text(), re.MULTILINE)
        if match:
            found.append(f"{path.parent.name}:{match.group(1)}")
    return sorted(found)


# --- data generation ----------------------------------------------------------------------

SURNAMES = "Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Gao Luo"
GIVEN = (
    "Wei Fang Na Min Jing Li Qiang Lei Jun Yang Yong Yan Jie Juan Tao Ming Chao Xiu Xia Hui "
    "Ping Gang Gui Hua Fei Lan Bo Yu Hao Ning"
)
STORES = [f"Store {n}" for n in range(1, 121)]
SOURCES = ["api_key:POS", "api_key:Online shop", "api_key:POS batch"]
V4_MASK = ((1 << 128) - 1) ^ (0xF000 << 64) ^ (0xC000 << 48)
V4_BITS = (0x4000 << 64) | (0x8000 << 48)
TS_SHIFT, IDX_SHIFT, CENT_SHIFT = 64, 30, 2
IDX_MASK, CENT_MASK = (1 << 34) - 1, (1 << 28) - 1
MAX_CENTS = 100_000_000  # one purchase at most 1,000,000.00


@dataclass(frozen=True)
class TierDef:
    code: str
    rank: int
    threshold_cents: int
    enabled: bool


@dataclass
class MemberTierRow:
    tier: str
    since: float
    below_since: float | None = None
    override_tier: str | None = None
    override_until: float | None = None


@dataclass
class Population:
    """Everything generated, in memory, before it is copied."""

    generated_at: datetime
    window_start: datetime
    ladder: list[TierDef]
    member_ids: list[PgUUID]
    registered: list[float]
    purchases: list[int]  # packed (ms << 64 | member << 30 | cents << 2 | returned), by time
    tiers: list[MemberTierRow]
    expected: dict[str, int]  # what an evaluation at generation time would do
    tier_mix: dict[str, int]  # current tiers as generated
    qualified_mix: dict[str, int]  # tiers the spend earns at generation time


def random_uuid(rng: random.Random) -> PgUUID:
    return PgUUID(((rng.getrandbits(128) & V4_MASK) | V4_BITS).to_bytes(16, "big"))


def ordered_uuid(ms: int, rng: random.Random) -> PgUUID:
    """A version-4 layout whose first 48 bits are a millisecond time (ids that append)."""
    value = (ms << 80) | rng.getrandbits(80)
    return PgUUID(((value & V4_MASK) | V4_BITS).to_bytes(16, "big"))


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d = d * 2 - 9 if d >= 5 else d * 2
        total += d
    return total


class MemberNumbers:
    """Ten-digit member numbers like the app's: nine digits without a leading zero, then a
    Luhn check digit; here 100000000 + i. Luhn sums are additive over the digits, so the low
    four digits come from a table and the high five are computed once per 10,000."""

    def __init__(self) -> None:
        self.low = [_luhn_sum(f"{n:04d}") for n in range(10_000)]
        self.high: tuple[int, int] = (-1, 0)

    def __call__(self, i: int) -> str:
        body = 100_000_000 + i
        high, low = divmod(body, 10_000)
        if self.high[0] != high:
            self.high = (high, _luhn_sum(str(high)))
        return f"{body}{(10 - (self.high[1] + self.low[low]) % 10) % 10}"


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def plan_population(
    args: argparse.Namespace,
    ladder: list[TierDef],
    now: datetime,
    start: datetime,
    progress: Progress,
) -> Population:
    """Members, their purchases and their current tiers, decided in memory.

    Spend is heavy-tailed (lognormal visit frequency and basket size), so most members are on
    the lowest tier and a few percent reach the upper ones. Current tiers then deviate from
    what the spend earns the way a live system's do: members above what they now earn (their
    grace not started, running, or over: grace starts and downgrades), below it (upgrades),
    with a grace that spending ended (cleared), overrides running and ended, and a few on a
    switched-off tier (stepped down)."""
    rng = random.Random(args.seed)
    now_s = now.timestamp()
    window_s = start.timestamp()
    enabled = [t for t in ladder if t.enabled]
    disabled = [t for t in ladder if not t.enabled and t.rank > enabled[0].rank]
    horizon = now_s - HISTORY_DAYS * 86400
    last_sale = now_s - 3600
    first_reg = now_s - REGISTRATION_YEARS * 365 * 86400
    reg_span = now_s - 2 * 86400 - first_reg
    frequency_sigma, basket_sigma = 0.9, 0.8
    basket_log_median = math.log(700)
    n = args.members

    def registered_at(i: int, jitter: float) -> float:
        return first_reg + (i + jitter) / n * reg_span

    def selling_share(reg: float) -> float:
        """The share of the 18 months a member registered at `reg` could buy in."""
        first = max(reg, horizon)
        return (last_sale - first) / (last_sale - horizon) if last_sale > first else 0.0

    # Members who registered recently buy for less of the period; scale so that the average
    # over all members is --purchases-per-member.
    mean_share = sum(selling_share(registered_at(i, 0.5)) for i in range(n)) / n
    per_member = args.purchases_per_member / math.exp(frequency_sigma**2 / 2) / mean_share

    member_ids: list[PgUUID] = []
    registered: list[float] = []
    keys: list[int] = []
    values: list[int] = []
    task = progress.add_task("planning members and purchases", total=n)
    for i in range(n):
        reg = registered_at(i, rng.random())
        first = max(reg, horizon)
        count = _poisson(
            rng, per_member * rng.lognormvariate(0, frequency_sigma) * selling_share(reg)
        )
        basket = rng.lognormvariate(0, basket_sigma)
        value = 0
        for _ in range(count):
            at = first + rng.random() * (last_sale - first)
            cents = min(int(rng.lognormvariate(basket_log_median, 0.9) * basket * 100), MAX_CENTS)
            cents = max(cents, 100)
            r = rng.random()
            returned = 0 if r >= 0.04 else (1 if r < 0.02 else 2)  # none, all, half
            keys.append(
                (int(at * 1000) << TS_SHIFT) | (i << IDX_SHIFT) | (cents << CENT_SHIFT) | returned
            )
            if at >= window_s:
                value += cents - _returned_cents(cents, returned)
        member_ids.append(random_uuid(rng))
        registered.append(reg)
        values.append(value)
        if i % 50_000 == 0:
            progress.update(task, completed=i)
    progress.update(task, completed=n)
    sorting = progress.add_task("sorting purchases by time", total=None)
    keys.sort()
    progress.update(sorting, total=1, completed=1)

    tiers: list[MemberTierRow] = []
    expected = dict.fromkeys(
        ("upgraded", "downgraded", "grace_started", "grace_cleared", "overrides_ended"), 0
    )
    qualified_mix: dict[str, int] = {}
    tier_mix: dict[str, int] = {}
    top = len(enabled) - 1
    day = 86400.0
    for i in range(n):
        q = max(j for j, t in enumerate(enabled) if t.threshold_cents <= values[i] or j == 0)
        qualified_mix[enabled[q].code] = qualified_mix.get(enabled[q].code, 0) + 1
        reg = registered[i]
        span = max(now_s - day - reg, 1.0)
        row = MemberTierRow(tier=enabled[q].code, since=reg + rng.random() * span)
        u = rng.random()
        if u < 0.004:  # an override still running: the evaluation leaves it alone
            tier = enabled[min(top, q + rng.choice((0, 1, 1, 2)))]
            row.tier = row.override_tier = tier.code
            row.override_until = now_s + rng.uniform(5, 300) * day
        elif u < 0.006:  # an override that has ended: back to what the spend earns
            tier = enabled[min(top, q + rng.choice((0, 1, 1, 2)))]
            row.tier = row.override_tier = tier.code
            row.override_until = now_s - rng.uniform(0.5, 30) * day
            expected["overrides_ended"] += 1
        elif u < 0.007 and disabled:  # on a tier that was switched off: one step down
            off = rng.choice(disabled)
            row.tier = off.code
            step = max(t.rank for t in enabled if t.rank < off.rank)
            expected["downgraded"] += 1
            if enabled[q].rank < step:  # still below the tier stepped down to
                expected["grace_started"] += 1
        else:
            v = rng.random()
            p_above = (0.10, 0.08)[min(q, 1)] if q < top else 0.0
            p_below = (0.0, 0.20, 0.25)[min(q, 2)]
            if v < p_above:  # spend fell below the tier
                steps = 2 if q + 2 <= top and rng.random() < 0.2 else 1
                row.tier = enabled[q + steps].code
                w = rng.random()
                if w < 0.4:
                    expected["grace_started"] += 1
                elif w < 0.7:  # grace running
                    row.below_since = now_s - rng.uniform(1, 28) * day
                else:  # grace over: one step down (a new grace when still below)
                    row.below_since = now_s - rng.uniform(32, 150) * day
                    expected["downgraded"] += 1
            elif v < p_above + p_below:  # earned more than the tier: upgrade
                row.tier = enabled[q - (2 if q >= 2 and rng.random() < 0.2 else 1)].code
                expected["upgraded"] += 1
            elif v < p_above + p_below + 0.02:  # a grace that spending has ended
                row.below_since = now_s - rng.uniform(1, 60) * day
                expected["grace_cleared"] += 1
            if row.below_since is not None:
                row.since = min(row.since, row.below_since - day)
        tier_mix[row.tier] = tier_mix.get(row.tier, 0) + 1
        tiers.append(row)
    return Population(
        generated_at=now,
        window_start=start,
        ladder=ladder,
        member_ids=member_ids,
        registered=registered,
        purchases=keys,
        tiers=tiers,
        expected=expected,
        tier_mix=tier_mix,
        qualified_mix=qualified_mix,
    )


def _returned_cents(cents: int, returned: int) -> int:
    return cents if returned == 1 else cents // 2 if returned == 2 else 0


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _cents(cents: int) -> Any:
    from decimal import Decimal

    return Decimal(cents).scaleb(-2)


async def _rows(
    rows: Iterable[tuple], progress: Progress, label: str, total: int
) -> AsyncIterator[tuple]:
    task = progress.add_task(label, total=total)
    done = 0
    for row in rows:
        yield row
        done += 1
        if done % COPY_PROGRESS_EVERY == 0:
            progress.update(task, completed=done)
    progress.update(task, completed=done)


def member_rows(pop: Population) -> Iterator[tuple]:
    numbers = MemberNumbers()
    surnames, given = SURNAMES.split(), GIVEN.split()
    rng = random.Random(1)
    for i, member in enumerate(pop.member_ids):
        reg = _ts(pop.registered[i])
        name = f"{rng.choice(surnames)} {rng.choice(given)}{rng.choice(given).lower()}"
        yield (member, numbers(i), name, f"+8613{i:09d}", reg, "integration", "api_key:POS", reg)


def account_rows(pop: Population) -> Iterator[tuple]:
    rng = random.Random(2)
    for i, member in enumerate(pop.member_ids):
        ms = int(pop.registered[i] * 1000)
        yield (ordered_uuid(ms, rng), member, _ts(pop.registered[i]))


def tier_rows(pop: Population) -> Iterator[tuple]:
    rng = random.Random(3)
    for i, member in enumerate(pop.member_ids):
        row = pop.tiers[i]
        override = row.override_until is not None
        yield (
            ordered_uuid(int(pop.registered[i] * 1000), rng),
            member,
            row.tier,
            _ts(row.since),
            None if row.below_since is None else _ts(row.below_since),
            row.override_tier,
            None if row.override_until is None else _ts(row.override_until),
            "bench: generated override" if override else None,
            "staff:bench" if override else None,
        )


def history_rows(pop: Population) -> Iterator[tuple]:
    """The 'initial' tier change of every member, and how each got to a higher tier."""
    rng = random.Random(4)
    lowest = lowest_tier(pop.ladder)
    for i, member in enumerate(pop.member_ids):
        reg = pop.registered[i]
        yield (
            ordered_uuid(int(reg * 1000), rng),
            member,
            None,
            lowest,
            "initial",
            "system",
            _ts(reg),
        )
        row = pop.tiers[i]
        if row.tier != lowest:
            reason = "override" if row.override_until is not None else "upgrade"
            actor = "staff:bench" if reason == "override" else "system"
            yield (
                ordered_uuid(int(row.since * 1000), rng),
                member,
                lowest,
                row.tier,
                reason,
                actor,
                _ts(row.since),
            )


def lowest_tier(ladder: list[TierDef]) -> str:
    return next(t.code for t in ladder if t.enabled)


def purchase_rows(pop: Population) -> Iterator[tuple]:
    rng = random.Random(5)
    zero = _cents(0)
    for seq, key in enumerate(pop.purchases):
        ms = key >> TS_SHIFT
        member = (key >> IDX_SHIFT) & IDX_MASK
        cents = (key >> CENT_SHIFT) & CENT_MASK
        returned = key & 3
        at = datetime.fromtimestamp(ms / 1000, UTC)
        store = rng.randrange(len(STORES))
        yield (
            ordered_uuid(ms, rng),
            f"s{store + 1:03d}-{seq:010d}",
            pop.member_ids[member],
            at,
            STORES[store],
            "CNY",
            _cents(cents),
            _cents(_returned_cents(cents, returned)) if returned else zero,
            cents // 100,
            (_returned_cents(cents, returned) // 100) if returned else 0,
            f"{rng.getrandbits(256):064x}",
            SOURCES[store % len(SOURCES)],
            at + timedelta(seconds=90),
        )


COPIES: list[tuple[str, list[str], Callable[[Population], Iterator[tuple]], str]] = [
    (
        "members",
        [
            "id",
            "number",
            "name",
            "phone",
            "registered_at",
            "registration_channel",
            "registered_by",
            "updated_at",
        ],
        member_rows,
        "members",
    ),
    ("points_accounts", ["id", "member", "updated_at"], account_rows, "members"),
    (
        "member_tiers",
        [
            "id",
            "member",
            "tier",
            "since",
            "below_since",
            "override_tier",
            "override_until",
            "override_reason",
            "override_by",
        ],
        tier_rows,
        "members",
    ),
    (
        "tier_changes",
        ["id", "member", "from_tier", "to_tier", "reason", "actor", "at"],
        history_rows,
        "history",
    ),
    (
        "purchases",
        [
            "id",
            "external_id",
            "member",
            "occurred_at",
            "store",
            "currency",
            "total",
            "returned_amount",
            "points",
            "reversed_points",
            "request_hash",
            "source",
            "created_at",
        ],
        purchase_rows,
        "purchases",
    ),
]

SECONDARY_INDEXES_SQL = """
SELECT c.relname AS tbl, i.relname AS idx, pg_get_indexdef(x.indexrelid) AS indexdef,
       con.conname, pg_get_constraintdef(con.oid) AS condef
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
    AND con.contype IN ('u', 'x')
WHERE c.relname = ANY($1::text[]) AND c.relnamespace = 'public'::regnamespace
  AND NOT x.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = x.indexrelid)
ORDER BY c.relname, i.relname
"""


async def generate(bench: Bench) -> dict[str, Any]:
    """Generate the data into the cache database with COPY; its description (the meta row)."""
    args = bench.args
    started = time.monotonic()
    admin = await bench.connect("postgres")
    try:
        for name in (bench.work_db, bench.cache_db):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{bench.cache_db}"')
    finally:
        await admin.close()
    with bench.console.status(f"migrating {bench.cache_db}"):
        loyalty_cli(bench, "migrate", database=bench.cache_db)
    conn = await bench.connect(bench.cache_db)
    try:
        settings = await conn.fetchrow("SELECT * FROM tier_settings WHERE id = 1")
        if settings["basis"] != "net_spend" or settings["window_months"] != 12:
            raise BenchError("the generator expects the default tier settings (net_spend, 12)")
        ladder = [
            TierDef(r["code"], r["rank"], int(r["threshold"] * 100), r["enabled"])
            for r in await conn.fetch("SELECT * FROM tier_definitions ORDER BY rank")
        ]
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=bench.console,
        ) as progress:
            now = datetime.now(UTC).replace(microsecond=0)
            start = await conn.fetchval(WINDOW_START_SQL, now, business_timezone())
            pop = plan_population(args, ladder, now, start, progress)
            indexes = await conn.fetch(SECONDARY_INDEXES_SQL, list(BULK_TABLES))
            drop = progress.add_task("dropping secondary indexes", total=len(indexes))
            for index in indexes:
                if index["conname"]:
                    await conn.execute(
                        f'ALTER TABLE {index["tbl"]} DROP CONSTRAINT "{index["conname"]}"'
                    )
                else:
                    await conn.execute(f'DROP INDEX "{index["idx"]}"')
                progress.advance(drop)
            # Foreign keys and the points triggers are not checked while loading: the data is
            # consistent by construction, and every check is restored for the benchmark.
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("SET synchronous_commit = off")
            totals = {
                "members": args.members,
                "purchases": len(pop.purchases),
                "history": args.members
                + sum(1 for t in pop.tiers if t.tier != lowest_tier(ladder)),
            }
            for table, columns, rows, size in COPIES:
                await conn.copy_records_to_table(
                    table,
                    columns=columns,
                    records=_rows(rows(pop), progress, f"COPY {table}", totals[size]),
                )
            await conn.execute("RESET session_replication_role")
            build = progress.add_task("building indexes", total=len(indexes))
            await _build_indexes(bench, indexes, lambda: progress.advance(build))
            vacuum = progress.add_task("VACUUM ANALYZE", total=len(BULK_TABLES))
            for table in BULK_TABLES:
                await conn.execute(f"VACUUM (ANALYZE) {table}")
                progress.advance(vacuum)
        await conn.execute(
            """
            CREATE TABLE bench_tiers_snapshot AS SELECT * FROM member_tiers;
            ALTER TABLE bench_tiers_snapshot ADD PRIMARY KEY (id);
            CREATE TABLE bench_tiers_meta (id int PRIMARY KEY, info jsonb NOT NULL);
            """
        )
        meta = {
            "format": CACHE_FORMAT,
            "members": args.members,
            "purchases_per_member": args.purchases_per_member,
            "seed": args.seed,
            "purchases": len(pop.purchases),
            "generated_at": pop.generated_at.isoformat(),
            "window_start_at_generation": pop.window_start.isoformat(),
            "migrations": code_migrations(),
            "tier_mix": pop.tier_mix,
            "qualified_mix": pop.qualified_mix,
            "expected_at_generation": pop.expected,
            "generation_seconds": round(time.monotonic() - started, 1),
        }
        await conn.execute(
            "INSERT INTO bench_tiers_meta (id, info) VALUES (1, $1::jsonb)", json.dumps(meta)
        )
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return meta


async def _build_indexes(
    bench: Bench, indexes: list[asyncpg.Record], advance: Callable[[], None]
) -> None:
    """Rebuild the dropped indexes and constraints exactly, two at a time (two cores)."""
    queue = sorted(indexes, key=lambda r: r["tbl"] != "purchases")  # the big ones first

    async def builder() -> None:
        conn = await bench.connect(bench.cache_db)
        try:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            while queue:
                index = queue.pop(0)
                if index["conname"]:
                    await conn.execute(
                        f'ALTER TABLE {index["tbl"]} ADD CONSTRAINT "{index["conname"]}" '
                        f"{index['condef']}"
                    )
                else:
                    await conn.execute(index["indexdef"])
                advance()
        finally:
            await conn.close()

    await asyncio.gather(builder(), builder())


async def prepare_database(bench: Bench) -> dict[str, Any]:
    """The working database, cloned from the cache (generated first unless reusable)."""
    args = bench.args
    meta: dict[str, Any] | None = None
    reason = "not asked to reuse (--reuse)"
    if args.reuse:
        meta, reason = await _cached_meta(bench)
    reused = meta is not None
    if meta is None:
        bench.console.print(f"generating data into {bench.cache_db}: {reason}")
        meta = await generate(bench)
        bench.console.print(
            f"generated {meta['members']:,} members and {meta['purchases']:,} purchases in "
            f"{meta['generation_seconds']:.0f} s"
        )
    else:
        bench.console.print(f"reusing {bench.cache_db} generated at {meta['generated_at']}")
    started = time.monotonic()
    admin = await bench.connect("postgres")
    try:
        with bench.console.status(f"cloning {bench.cache_db} into {bench.work_db}"):
            await admin.execute(f'DROP DATABASE IF EXISTS "{bench.work_db}" WITH (FORCE)')
            await admin.execute(
                f'CREATE DATABASE "{bench.work_db}" TEMPLATE "{bench.cache_db}" STRATEGY = FILE_COPY'
            )
    finally:
        await admin.close()
    clone_seconds = time.monotonic() - started
    bench.generated_at = datetime.fromisoformat(meta["generated_at"])
    age = datetime.now(UTC) - bench.generated_at
    if age > timedelta(days=3):
        bench.console.print(
            f"[yellow]the cached data is {age.days} days old: purchases and graces have aged "
            "(the evaluation has different work to do); run without --reuse to refresh[/]"
        )
    return {
        "reused": reused,
        "clone_seconds": round(clone_seconds, 1),
        "age_hours": round(age.total_seconds() / 3600, 1),
        **meta,
    }


async def _cached_meta(bench: Bench) -> tuple[dict[str, Any] | None, str]:
    args = bench.args
    admin = await bench.connect("postgres")
    try:
        exists = await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", bench.cache_db
        )
    finally:
        await admin.close()
    if not exists:
        return None, "no cached data yet"
    conn = await bench.connect(bench.cache_db)
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_tiers_meta') IS NOT NULL"):
            return None, "the cached data is incomplete"
        meta = json.loads(await conn.fetchval("SELECT info FROM bench_tiers_meta WHERE id = 1"))
    finally:
        await conn.close()
    wanted = {
        "format": CACHE_FORMAT,
        "members": args.members,
        "purchases_per_member": args.purchases_per_member,
        "seed": args.seed,
    }
    differs = [k for k, v in wanted.items() if meta.get(k) != v]
    if differs:
        return None, f"the cached data differs in {', '.join(differs)}"
    migrations = code_migrations()
    if not set(meta["migrations"]) <= set(migrations):
        return None, "the cached data has migrations the code no longer has"
    if set(meta["migrations"]) != set(migrations):
        # Newer migrations: bring the cache up to date once rather than generate again.
        with bench.console.status(f"applying newer migrations to {bench.cache_db}"):
            loyalty_cli(bench, "migrate", database=bench.cache_db)
        meta["migrations"] = migrations
        conn = await bench.connect(bench.cache_db)
        try:
            await conn.execute(
                "UPDATE bench_tiers_meta SET info = $1::jsonb WHERE id = 1", json.dumps(meta)
            )
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()
    return meta, ""


# --- restoring the state before an evaluation ---------------------------------------------

RESTORE_SQL = """
UPDATE member_tiers mt SET tier = s.tier, since = s.since, below_since = s.below_since,
    override_tier = s.override_tier, override_until = s.override_until,
    override_reason = s.override_reason, override_by = s.override_by
FROM bench_tiers_snapshot s
WHERE s.id = mt.id
  AND (mt.tier, mt.since, mt.below_since, mt.override_tier, mt.override_until,
       mt.override_reason, mt.override_by)
      IS DISTINCT FROM
      (s.tier, s.since, s.below_since, s.override_tier, s.override_until, s.override_reason,
       s.override_by)
"""


async def restore(bench: Bench) -> float:
    """Every member's tier as generated; the evaluation's history and events gone; vacuumed,
    analysed and checkpointed, so each timed evaluation starts from the same data and table
    state, and none pays for the write-back of what came before it."""
    started = time.monotonic()
    conn = await bench.connect()
    try:
        await conn.execute(RESTORE_SQL)
        await conn.execute("DELETE FROM tier_changes WHERE at > $1", bench.generated_at)
        await conn.execute("DELETE FROM outbox_events WHERE topic = 'tier.changed'")
        await conn.execute("VACUUM (ANALYZE) member_tiers, tier_changes, outbox_events")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.monotonic() - started


async def prewarm(bench: Bench) -> None:
    """Read the evaluation's tables and indexes once, so no timed run pays for a cold cache."""
    conn = await bench.connect()
    try:
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        except asyncpg.PostgresError:
            await conn.execute("SELECT count(*) FROM purchases")
            return
        await conn.execute(
            """
            SELECT pg_prewarm(c.oid::regclass, 'read')
            FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')
              AND (c.relname LIKE 'purchases%' OR c.relname LIKE 'member_tiers%'
                   OR c.relname LIKE 'tier_changes%' OR c.relname LIKE 'outbox_events%')
            """
        )
    finally:
        await conn.close()


# --- the job, through arq -----------------------------------------------------------------


def business_timezone() -> str:
    return os.environ.get("LOYALTY_TIMEZONE") or "Asia/Shanghai"


def _configure_loyalty(bench: Bench) -> None:
    """The loyalty package reads its settings from the environment: point it at the bench."""
    os.environ.update(
        {k: v for k, v in bench.env().items() if k.startswith("LOYALTY_")},
    )
    from loyalty.infrastructure import db
    from loyalty.settings import reset_settings

    reset_settings()
    db.configure_engine(bench.pg_url(bench.work_db))


async def run_job(bench: Bench) -> dict[str, Any]:
    """Enqueue evaluate_tiers and run it with a real arq worker (burst): enqueue to done."""
    import logging

    from arq import create_pool
    from arq.connections import RedisSettings

    from loyalty.settings import Settings
    from loyalty.worker import create_worker

    for name in ("arq", "arq.worker", "arq.connections", "arq.jobs"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings = Settings.from_env()
    queue = await create_pool(RedisSettings.from_dsn(bench.redis_url))
    worker = create_worker(
        settings, burst=True, poll_delay=0.01, cron_jobs=[], handle_signals=False
    )
    try:
        wall = datetime.now(UTC)
        started = time.perf_counter()
        job = await queue.enqueue_job("evaluate_tiers")
        if job is None:
            raise BenchError("arq did not enqueue evaluate_tiers (a job with its id exists?)")
        await worker.main()
        seconds = time.perf_counter() - started
        info = await job.result_info()
        if worker.jobs_failed or worker.jobs_retried or info is None or not info.success:
            raise BenchError(
                f"evaluate_tiers failed after {seconds:.1f} s "
                f"({worker.jobs_complete} complete, {worker.jobs_failed} failed, "
                f"{worker.jobs_retried} retried): {info.result if info else 'no result'!r}"
            )
        result = info.result
    finally:
        await worker.close()
        await queue.aclose()
    conn = await bench.connect()
    try:
        at = await conn.fetchval("SELECT max(at) FROM tier_changes WHERE actor = 'evaluation'")
    finally:
        await conn.close()
    return {
        "seconds": round(seconds, 3),
        "result": result,
        "at": at or wall,
        "at_from": "tier_changes" if at else "enqueue time (the job changed nothing)",
    }


# --- the hand-written single statement ----------------------------------------------------

# One statement for every member at once, written from the rules (README "Tiers"), not from
# the service's SQL: qualifying value = net spend in [window start, at], where the window
# starts at local midnight `window_months` before the local date of `at`; the qualified tier
# is the highest switched-on tier whose threshold the value reaches; upgrade at once; below
# the tier: start the grace, or after `grace_days` move one switched-on step down (a new grace
# when still below the new tier); a grace ends when the value is back; running overrides are
# untouched, ended ones go to the qualified tier. $1 = at, $2 = the business time zone.
SINGLE_STATEMENT = """
WITH settings AS (
    SELECT $1::timestamptz AS at,
        (date_trunc('day', $1::timestamptz AT TIME ZONE $2::text)
            - make_interval(months => s.window_months)) AT TIME ZONE $2::text AS window_start,
        $1::timestamptz - make_interval(days => s.grace_days) AS grace_cut
    FROM tier_settings s WHERE s.id = 1 AND s.basis = 'net_spend'
), steps AS (
    -- every tier, switched on or not, with the switched-on tier one step below it
    SELECT t.code, t.rank, t.enabled,
        (SELECT max(e.rank) FROM tier_definitions e WHERE e.enabled AND e.rank < t.rank)
            AS step_rank
    FROM tier_definitions t
), bands AS (
    -- the switched-on tiers as bands of value: [low, high)
    SELECT rank,
        CASE WHEN rank = min(rank) OVER () THEN NULL ELSE threshold END AS low,
        lead(threshold) OVER (ORDER BY rank) AS high
    FROM tier_definitions WHERE enabled
), spend AS (
    SELECT p.member, sum(p.total - p.returned_amount) AS value
    FROM purchases p, settings s
    WHERE p.occurred_at >= s.window_start AND p.occurred_at <= s.at
    GROUP BY p.member
), valued AS (
    SELECT mt.id, mt.member, mt.tier, mt.below_since, mt.override_until IS NOT NULL AS ended,
        coalesce(v.value, 0) AS value, cur.rank AS cur_rank, cur.enabled AS cur_enabled,
        cur.step_rank, s.at, s.grace_cut
    FROM member_tiers mt
    CROSS JOIN settings s
    LEFT JOIN spend v ON v.member = mt.member
    LEFT JOIN steps cur ON cur.code = mt.tier
    WHERE mt.override_until IS NULL OR mt.override_until <= s.at
), decided AS (
    SELECT d.*, q.rank AS q_rank,
        CASE
            WHEN d.ended OR d.cur_rank IS NULL OR q.rank > d.cur_rank THEN q.rank
            WHEN NOT d.cur_enabled OR (q.rank < d.cur_rank AND d.below_since <= d.grace_cut)
                THEN coalesce(d.step_rank, q.rank)
            ELSE d.cur_rank
        END AS new_rank
    FROM valued d
    JOIN bands q ON (q.low IS NULL OR d.value >= q.low) AND (q.high IS NULL OR d.value < q.high)
), changes AS (
    SELECT d.id, d.member, d.tier, d.below_since, d.ended, d.value, d.at, t.code AS new_tier,
        CASE
            WHEN d.q_rank >= d.new_rank THEN NULL
            WHEN d.new_rank IS DISTINCT FROM d.cur_rank OR d.below_since IS NULL THEN d.at
            ELSE d.below_since
        END AS new_below_since,
        CASE
            WHEN d.ended THEN 'override_end'
            WHEN d.cur_rank IS NULL OR d.new_rank > d.cur_rank THEN 'upgrade'
            WHEN d.new_rank < d.cur_rank THEN 'downgrade'
        END AS reason
    FROM decided d JOIN tier_definitions t ON t.rank = d.new_rank
), updated AS (
    UPDATE member_tiers mt SET
        tier = c.new_tier,
        since = CASE WHEN c.new_tier <> mt.tier THEN c.at ELSE mt.since END,
        below_since = c.new_below_since,
        override_tier = CASE WHEN c.ended THEN NULL ELSE mt.override_tier END,
        override_until = CASE WHEN c.ended THEN NULL ELSE mt.override_until END,
        override_reason = CASE WHEN c.ended THEN NULL ELSE mt.override_reason END,
        override_by = CASE WHEN c.ended THEN NULL ELSE mt.override_by END
    FROM changes c
    WHERE mt.id = c.id
      AND (c.new_tier <> c.tier OR c.ended OR c.new_below_since IS DISTINCT FROM c.below_since)
    RETURNING c.member, c.tier AS from_tier, c.new_tier AS to_tier, c.reason, c.value, c.at,
        c.below_since, c.new_below_since
), history AS (
    INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor,
        qualifying_value, at)
    SELECT gen_random_uuid(), member, from_tier, to_tier, reason, '', 'evaluation', value, at
    FROM updated WHERE reason IS NOT NULL
), announced AS (
    INSERT INTO outbox_events (id, topic, member, payload, created_at, attempts)
    SELECT gen_random_uuid(), 'tier.changed', member,
        jsonb_build_object('from_tier', from_tier, 'to_tier', to_tier, 'reason', reason),
        now(), 0
    FROM updated WHERE from_tier <> to_tier
)
SELECT
    count(*) FILTER (WHERE reason = 'upgrade') AS upgraded,
    count(*) FILTER (WHERE reason = 'downgrade') AS downgraded,
    count(*) FILTER (WHERE reason = 'override_end') AS overrides_ended,
    count(*) FILTER (WHERE below_since IS NULL AND new_below_since IS NOT NULL) AS grace_started,
    count(*) AS rows_updated
FROM updated
"""

WINDOW_START_SQL = """
SELECT (date_trunc('day', $1::timestamptz AT TIME ZONE $2::text)
    - make_interval(months => window_months)) AT TIME ZONE $2::text
FROM tier_settings WHERE id = 1
"""


async def run_statement(bench: Bench, at: datetime) -> dict[str, Any]:
    """The single statement on a fresh connection, timed like the job: start to commit."""
    timezone = business_timezone()
    conn = await bench.connect()
    try:
        started = time.perf_counter()
        row = await conn.fetchrow(SINGLE_STATEMENT, at, timezone)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    if row is None:
        raise BenchError("the single statement returned nothing (tier_settings basis?)")
    return {"seconds": round(seconds, 3), "result": dict(row), "at": at}


# --- the state after an evaluation --------------------------------------------------------

STATE_SQL = """
SELECT
    (SELECT count(*) FROM member_tiers) AS members,
    (SELECT sum(hashtextextended(concat_ws('|', member, tier, since, below_since, override_tier,
        override_until, override_reason, override_by), 0)::numeric) FROM member_tiers)
        AS member_tiers_checksum,
    (SELECT jsonb_object_agg(tier, n) FROM (SELECT tier, count(*) AS n FROM member_tiers
        GROUP BY tier) t) AS tiers,
    (SELECT count(*) FROM tier_changes WHERE actor = 'evaluation') AS history,
    (SELECT coalesce(sum(hashtextextended(concat_ws('|', member, from_tier, to_tier, reason,
        qualifying_value, at), 0)::numeric), 0) FROM tier_changes WHERE actor = 'evaluation')
        AS history_checksum,
    (SELECT count(*) FROM outbox_events WHERE topic = 'tier.changed') AS events,
    (SELECT coalesce(sum(hashtextextended(concat_ws('|', member, payload), 0)::numeric), 0)
        FROM outbox_events WHERE topic = 'tier.changed') AS events_checksum
"""


async def capture_state(bench: Bench, keep_as: str | None = None) -> dict[str, Any]:
    """Counts and order-independent checksums of what an evaluation leaves behind."""
    conn = await bench.connect()
    try:
        row = await conn.fetchrow(STATE_SQL)
        if keep_as:
            await conn.execute(
                f"""
                DROP TABLE IF EXISTS {keep_as};
                CREATE UNLOGGED TABLE {keep_as} AS
                SELECT member, tier, since, below_since, override_tier, override_until
                FROM member_tiers
                """
            )
    finally:
        await conn.close()
    state = dict(row)
    state["tiers"] = json.loads(state["tiers"]) if state["tiers"] else {}
    for key in ("member_tiers_checksum", "history_checksum", "events_checksum"):
        state[key] = str(state[key])
    return state


async def differences(bench: Bench, kept: str) -> dict[str, Any]:
    """Members whose tier state after the statement differs from the job's (kept) result."""
    conn = await bench.connect()
    try:
        rows = await conn.fetch(
            f"""
            SELECT coalesce(j.member, m.member) AS member,
                j.tier AS job_tier, m.tier AS statement_tier,
                j.below_since AS job_below_since, m.below_since AS statement_below_since,
                j.since AS job_since, m.since AS statement_since
            FROM {kept} j FULL JOIN member_tiers m USING (member)
            WHERE (j.tier, j.since, j.below_since, j.override_tier, j.override_until)
                IS DISTINCT FROM (m.tier, m.since, m.below_since, m.override_tier,
                                  m.override_until)
            """
        )
    finally:
        await conn.close()
    return {
        "members_differing": len(rows),
        "examples": [{k: str(v) for k, v in dict(r).items()} for r in rows[:5]],
    }


def agreement(job_state: dict[str, Any], statement_state: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "members",
        "member_tiers_checksum",
        "tiers",
        "history",
        "history_checksum",
        "events",
        "events_checksum",
    )
    differing = [k for k in keys if job_state[k] != statement_state[k]]
    return {"agree": not differing, "differing": differing}


# --- diagnosis: plans and per-batch times -------------------------------------------------


async def diagnose(bench: Bench, at: datetime) -> dict[str, Any]:
    """EXPLAIN ANALYZE (rolled back) of the job's first batch and of the single statement,
    and the job's first DIAGNOSIS_BATCHES batches timed one by one (its own SQL, committed
    like the job, from the restored state). The job's statement runs on a connection of the
    app's own pool (its session settings), the single statement on a plain one, as timed."""
    from loyalty.infrastructure import db
    from loyalty.tiers import evaluation
    from loyalty.tiers.ladder import ladder, window_start

    batch_size = inspect.signature(evaluation.evaluate).parameters["batch_size"].default
    out: dict[str, Any] = {"batch_size": batch_size}
    await db.start_pool(max_size=2)
    try:
        current = await ladder(fresh=True)
        settings = current.settings
        tiers = [(t.code, t.rank, t.threshold, t.enabled) for t in current.tiers]
        sql = evaluation._decision_sql(settings.basis, evaluation._APPLY)
        args = [
            *evaluation._ladder_args(tiers),
            window_start(at, settings.window_months),
            at,
            at - timedelta(days=settings.grace_days),
        ]
        first = [*args, evaluation.LOWEST_UUID, batch_size]
        async with db.connection() as conn:
            out["plan_job_first_batch"] = await _explain(conn, sql, first)
            # The plan the prepared statement may switch to after five executions.
            out["plan_job_first_batch_generic"] = await _explain(conn, sql, first, generic=True)
            # The job's loop on one connection: asyncpg prepares the statement once.
            batches: list[float] = []
            after = evaluation.LOWEST_UUID
            started = time.perf_counter()
            while len(batches) < DIAGNOSIS_BATCHES:
                t0 = time.perf_counter()
                async with conn.transaction():
                    row = await conn.fetchrow(sql, *args, after, batch_size)
                if not row["members"]:
                    break
                batches.append(round(time.perf_counter() - t0, 3))
                after = row["last_member"]
            out["batch_seconds"] = batches
            out["loop_seconds"] = round(time.perf_counter() - started, 3)
    finally:
        await db.close_pool()
    conn = await bench.connect()
    try:
        out["plan_single_statement"] = await _explain(
            conn, SINGLE_STATEMENT, [at, business_timezone()]
        )
    finally:
        await conn.close()
    return out


async def _explain(
    conn: asyncpg.Connection, sql: str, params: list[Any], generic: bool = False
) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        if generic:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *params)
    finally:
        await tr.rollback()
    return "\n".join(r[0] for r in plan)


# --- earn: server, key, wrk ---------------------------------------------------------------

WAITS_SQL = """
SELECT CASE WHEN query LIKE '%member_tiers WHERE member > $8%' THEN 'evaluation' ELSE 'earn' END
        AS who,
    coalesce(wait_event_type || ':' || wait_event, 'CPU') AS waiting_on, count(*) AS n
FROM pg_stat_activity
WHERE datname = $1 AND state = 'active' AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
GROUP BY 1, 2
"""


@asynccontextmanager
async def sampled_waits(bench: Bench) -> AsyncIterator[dict[str, dict[str, float]]]:
    """What the database's active backends wait on, sampled every 50 ms: per side (the
    evaluation's batch statement, everything else = earn), the share of samples on each wait
    event ("CPU" = running or runnable). A mean of active backends per sample."""
    counts: dict[str, dict[str, int]] = {}
    samples = 0
    conn = await bench.connect()
    shares: dict[str, dict[str, float]] = {}

    async def sampler() -> None:
        nonlocal samples
        while True:
            for row in await conn.fetch(WAITS_SQL, bench.work_db):
                side = counts.setdefault(row["who"], {})
                side[row["waiting_on"]] = side.get(row["waiting_on"], 0) + row["n"]
            samples += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(sampler())
    try:
        yield shares
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await conn.close()
        for who, side in counts.items():
            top = sorted(side.items(), key=lambda kv: -kv[1])[:8]
            shares[who] = {k: round(v / max(samples, 1), 3) for k, v in top}


async def start_server(bench: Bench) -> None:
    args = bench.args
    bench.port = args.port or free_port()
    bench.server = await asyncio.to_thread(
        common.serve, bench.procs, bench.env(), bench.port, args.workers, bench.server_log
    )


async def write_members_file(bench: Bench) -> None:
    conn = await bench.connect()
    try:
        rows = await conn.fetch(
            "SELECT member FROM member_tiers ORDER BY random() LIMIT $1", EARN_SAMPLE
        )
    finally:
        await conn.close()
    bench.members_file.write_text("".join(f"{r['member']}\n" for r in rows))


async def preflight(bench: Bench) -> None:
    """One purchase answers 201: the body, the key and the server work."""
    member = bench.members_file.read_text().split()[0]
    at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "external_id": f"{bench.run_id}-preflight",
        "member_id": member,
        "occurred_at": at,
        "store": "S1",
        "currency": "CNY",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": "10.50", "category": "general"}],
        "total": "21.00",
    }
    headers = {"Authorization": f"Bearer {bench.key}"}
    async with httpx.AsyncClient(base_url=bench.base_url, headers=headers, timeout=30) as client:
        answer = await client.post("/api/v1/purchases", json=body)
    if answer.status_code != 201:
        raise BenchError(f"a purchase answered {answer.status_code}: {answer.text}")


def wrk_argv(bench: Bench, seconds: int, tag: str) -> list[str]:
    args = bench.args
    threads = min(2, args.concurrency)
    argv = ["wrk", "-t", str(threads), "-c", str(args.concurrency), "-d", f"{seconds}s"]
    argv += ["--timeout", "10s", "-s", str(LUA_SCRIPT), bench.base_url, "--"]
    return [
        *argv,
        str(bench.members_file),
        bench.key,
        f"{bench.run_id}-{tag}",
        str(args.rate / threads),
    ]


def parse_wrk(output: str) -> dict[str, Any]:
    match = re.search(r"^WRK_JSON (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise BenchError(f"no summary in wrk's output:\n{output}")
    summary = json.loads(match.group(1))
    seconds = summary["duration_us"] / 1e6
    return {
        "requests": summary["requests"],
        "seconds": round(seconds, 3),
        "requests_per_s": round(summary["requests"] / seconds, 1) if seconds else 0.0,
        "errors": summary["errors"],
        "latency_ms": {k: round(v / 1000, 2) for k, v in summary["latency_us"].items()},
    }


async def earn_phase(
    bench: Bench,
    label: str,
    tag: str,
    during: Callable[[Bench], Awaitable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """wrk at the fixed rate for --earn-seconds, or for exactly as long as `during` runs
    (the evaluation job)."""
    seconds = bench.args.earn_seconds
    during_job = during is not None
    job: dict[str, Any] | None = None
    conn = await bench.connect()
    try:
        await conn.execute("CHECKPOINT")  # no write-back of an earlier phase in this one
    finally:
        await conn.close()
    with (
        tempfile.TemporaryFile() as out,
        phase_progress(console, label, None if during_job else seconds, width=44) as refresh,
    ):
        argv = wrk_argv(bench, 3600 if during_job else seconds, tag)
        async with metered(bench) as meter, sampled_waits(bench) as waits:
            proc = bench.procs.start(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                if during is not None:
                    job = await during(bench)
                    proc.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
                deadline = time.monotonic() + seconds + 60
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise BenchError("wrk ran a minute past its duration")
                    await asyncio.sleep(0.25)
                    refresh()
            finally:
                bench.procs.stop(proc)
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode not in (0, -signal.SIGINT):
        raise BenchError(f"wrk exited with {proc.returncode}:\n{output}")
    result = parse_wrk(output)
    result["cpu_cores"] = meter.cores()
    result["wal_mb"] = meter.wal_mb()
    result["waits"] = waits
    if job is not None:
        result["job"] = {k: v for k, v in job.items() if k != "at"}
    return result


async def run_earn(bench: Bench) -> dict[str, Any]:
    with console.status(f"starting loyalty serve --workers {bench.args.workers}"):
        bench.key = common.create_api_key(bench.env())
        await write_members_file(bench)
        await start_server(bench)
        await preflight(bench)
    try:
        warm = wrk_argv(bench, 3, "warm")
        proc = bench.procs.start(
            warm, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        with phase_progress(console, "earn warm-up (not measured)", 3, width=44) as refresh:
            while proc.poll() is None:
                await asyncio.sleep(0.25)
                refresh()
        bench.procs.stop(proc)
        results: dict[str, Any] = {}
        results["idle_before"] = await earn_phase(bench, "earn, idle (before)", "idle1")
        with console.status("restoring member tiers"):
            await restore(bench)
        results["during"] = await earn_phase(
            bench, "earn, while evaluate_tiers runs", "during", during=run_job
        )
        results["idle_after"] = await earn_phase(bench, "earn, idle (after)", "idle2")
    finally:
        if bench.server is not None:
            with console.status("stopping loyalty serve"):
                bench.procs.stop(bench.server)
            if bench.server.returncode not in (0, -signal.SIGTERM, None):
                console.print(f"[yellow]loyalty serve exited with {bench.server.returncode}[/]")
    return results


# --- the timed comparison -----------------------------------------------------------------


async def timed_runs(bench: Bench) -> dict[str, Any]:
    from loyalty.tiers.ladder import window_start

    runs: list[dict[str, Any]] = []
    kept = "bench_tiers_after_job"
    for n in range(1, bench.args.runs + 1):
        with console.status(f"run {n}: restoring member tiers"):
            await restore(bench)
        with phase_progress(console, f"run {n}: evaluate_tiers through arq", None, width=44):
            async with metered(bench) as meter:
                job = await run_job(bench)
        job["cpu_cores"] = meter.cores()
        job["wal_mb"] = meter.wal_mb()
        with console.status(f"run {n}: checking the job's result"):
            job_state = await capture_state(bench, keep_as=kept if n == 1 else None)
            await restore(bench)
        with phase_progress(console, f"run {n}: the single statement", None, width=44):
            async with metered(bench) as meter:
                stmt = await run_statement(bench, job["at"])
        stmt["cpu_cores"] = meter.cores()
        stmt["wal_mb"] = meter.wal_mb()
        with console.status(f"run {n}: checking the statement's result"):
            stmt_state = await capture_state(bench)
            check = agreement(job_state, stmt_state)
            if not check["agree"] and n == 1:
                check.update(await differences(bench, kept))
        conn = await bench.connect()
        try:
            tz = business_timezone()
            sql_start = await conn.fetchval(WINDOW_START_SQL, job["at"], tz)
            if n == 1:
                await conn.execute(f"DROP TABLE IF EXISTS {kept}")
        finally:
            await conn.close()
        check["window_start_sql"] = sql_start.isoformat()
        check["window_start_service"] = window_start(job["at"], 12).isoformat()
        check["window_start_agree"] = sql_start == window_start(job["at"], 12)
        runs.append(
            {
                "job": {**job, "at": job["at"].isoformat(), "state": job_state},
                "statement": {**stmt, "at": stmt["at"].isoformat(), "state": stmt_state},
                "ratio": round(job["seconds"] / stmt["seconds"], 2),
                "check": check,
            }
        )
        console.print(
            f"run {n}: job {job['seconds']:.2f} s, single statement {stmt['seconds']:.2f} s, "
            f"ratio {job['seconds'] / stmt['seconds']:.2f}, "
            f"{'agree' if check['agree'] else '[red]DISAGREE[/]'}"
        )
    return {"runs": runs, "last_at": runs[-1]["job"]["at"]}


# --- report -------------------------------------------------------------------------------


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    runs = results["timed"]["runs"]
    job = statistics.median(r["job"]["seconds"] for r in runs)
    stmt = statistics.median(r["statement"]["seconds"] for r in runs)
    ratio = statistics.median(r["ratio"] for r in runs)
    summary: dict[str, Any] = {
        "job_seconds": job,
        "statement_seconds": stmt,
        "job_ratio": ratio,
        "agree": all(r["check"]["agree"] and r["check"]["window_start_agree"] for r in runs),
        "goals": {"job_within_2x_statement": ratio <= GOAL_JOB_RATIO},
    }
    phases = ["job", "statement"]
    disturbed = [
        f"run {i} {p}"
        for i, r in enumerate(runs, 1)
        for p in phases
        if r[p]["cpu_cores"].get("other", 0) > OTHER_LOAD_WARNING
    ]
    earn = results.get("earn")
    if earn:
        idle = [earn["idle_before"]["latency_ms"]["p99"], earn["idle_after"]["latency_ms"]["p99"]]
        during = earn["during"]["latency_ms"]["p99"]
        summary["earn_p99_idle_ms"] = round(statistics.mean(idle), 2)
        summary["earn_p99_during_ms"] = during
        summary["earn_p99_ratio"] = round(during / statistics.mean(idle), 2)
        summary["goals"]["earn_p99_within_2x"] = summary["earn_p99_ratio"] <= GOAL_P99_RATIO
        summary["job_seconds_under_earn_load"] = earn["during"]["job"]["seconds"]
        # Earn backends waiting on the WAL (flush or its lock), per 50 ms sample: the
        # evaluation's WAL is what earn commits queue behind.
        wal_waits = ("IO:WALSync", "IO:WALWrite", "LWLock:WALWrite")

        def wal_wait(phase: str) -> float:
            waits = earn[phase]["waits"].get("earn", {})
            return round(sum(waits.get(w, 0.0) for w in wal_waits), 3)

        summary["earn_wal_wait_idle"] = round(
            statistics.mean([wal_wait("idle_before"), wal_wait("idle_after")]), 3
        )
        summary["earn_wal_wait_during"] = wal_wait("during")
        disturbed += [
            f"earn {name}"
            for name in ("idle_before", "during", "idle_after")
            if earn[name]["cpu_cores"].get("other", 0) > OTHER_LOAD_WARNING
        ]
    summary["disturbed_phases"] = disturbed
    return summary


def _mark(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


def _figures_table(results: dict[str, Any]) -> Table:
    """The job against the single statement, and earn latency while it runs, with the goals."""
    summary, goals, data = results["summary"], results["summary"]["goals"], results["data"]
    table = Table(
        title=f"tiers: {data['members']:,} members, {data['purchases']:,} purchases, "
        f"{len(results['timed']['runs'])} timed run(s) each"
    )
    for name, justify in (("measure", "left"), ("value", "right"), ("goal", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("", no_wrap=True)
    runs = results["timed"]["runs"]
    table.add_row("evaluate_tiers job (arq, enqueue to done)", f"{summary['job_seconds']:.2f} s")
    table.add_row("  each run", " / ".join(f"{r['job']['seconds']:.2f}" for r in runs))
    table.add_row("single set-based statement", f"{summary['statement_seconds']:.2f} s")
    table.add_row("  each run", " / ".join(f"{r['statement']['seconds']:.2f}" for r in runs))
    table.add_row(
        "job / statement (median of the runs' ratios)",
        f"{summary['job_ratio']:.2f}",
        f"<= {GOAL_JOB_RATIO:.1f}",
        _mark(goals["job_within_2x_statement"]),
    )
    table.add_row(
        "  server WAL written: job / statement",
        f"{runs[0]['job']['wal_mb']:,.0f} / {runs[0]['statement']['wal_mb']:,.0f} MB",
    )
    table.add_row(
        "same result (tiers, history, outbox)",
        "yes" if summary["agree"] else "NO",
        "yes",
        _mark(summary["agree"]),
    )
    if "earn_p99_ratio" in summary:
        _add_earn_rows(table, results)
    return table


def _add_earn_rows(table: Table, results: dict[str, Any]) -> None:
    """Earn latency idle and during the evaluation."""
    summary, goals = results["summary"], results["summary"]["goals"]
    args = results["parameters"]
    earn = results["earn"]
    before, after = earn["idle_before"], earn["idle_after"]
    during = earn["during"]
    table.add_row(
        f"earn p99, idle ({args['rate']}/s offered)",
        f"{summary['earn_p99_idle_ms']:.1f} ms",
    )
    table.add_row(
        "  before / after",
        f"{before['latency_ms']['p99']:.1f} / {after['latency_ms']['p99']:.1f} ms",
    )
    table.add_row("earn p99, during the evaluation", f"{during['latency_ms']['p99']:.1f} ms")
    table.add_row(
        "during / idle",
        f"{summary['earn_p99_ratio']:.2f}",
        f"<= {GOAL_P99_RATIO:.1f}",
        _mark(goals["earn_p99_within_2x"]),
    )
    table.add_row(
        "  requests/s idle / during",
        f"{before['requests_per_s']:.0f}, {after['requests_per_s']:.0f} / "
        f"{during['requests_per_s']:.0f}",
    )
    table.add_row(
        "  p50 idle / during",
        f"{before['latency_ms']['p50']:.1f}, {after['latency_ms']['p50']:.1f} / "
        f"{during['latency_ms']['p50']:.1f} ms",
    )
    table.add_row("  job under earn load", f"{summary['job_seconds_under_earn_load']:.2f} s")
    table.add_row(
        "  earn waiting on WAL flush idle / during",
        f"{summary['earn_wal_wait_idle']:.3f} / {summary['earn_wal_wait_during']:.3f}",
    )


def print_report(results: dict[str, Any], path: Path) -> None:
    summary = results["summary"]
    runs = results["timed"]["runs"]
    console.print(_figures_table(results))
    first = runs[0]["job"]["result"]
    console.print(
        f"each evaluation: {first['members']:,} members, {first['upgraded']:,} upgrades, "
        f"{first['downgraded']:,} downgrades, {first['grace_started']:,} graces started, "
        f"{first['overrides_ended']:,} overrides ended; "
        f"{runs[0]['statement']['result']['rows_updated']:,} member_tiers rows updated"
    )

    rows: list[tuple[str, dict[str, float], None]] = []
    for i, r in enumerate(runs, 1):
        rows.append((f"run {i}: job", r["job"]["cpu_cores"], None))
        rows.append((f"run {i}: statement", r["statement"]["cpu_cores"], None))
    if results.get("earn"):
        for name in ("idle_before", "during", "idle_after"):
            rows.append((f"earn {name}", results["earn"][name]["cpu_cores"], None))
    console.print(
        common.cpu_table(
            f"CPU: cores used ({os.cpu_count()} = the whole machine)",
            [*CPU_ROLES, "steal", "machine"],
            rows,
        )
    )
    for i, r in enumerate(runs, 1):
        if not r["check"]["agree"] or not r["check"]["window_start_agree"]:
            console.print(f"[red]run {i}: results differ:[/] {r['check']}")
    if summary["disturbed_phases"]:
        console.print(
            f"[yellow]other processes used more than {OTHER_LOAD_WARNING} cores during "
            f"{', '.join(summary['disturbed_phases'])}: those figures are disturbed[/]"
        )
    if results.get("earn"):
        errors = {k: v for k, v in results["earn"]["during"]["errors"].items() if v}
        if errors:
            console.print(f"[yellow]wrk errors during the evaluation:[/] {errors}")
    if "diagnosis" in results:
        batches = results["diagnosis"]["batch_seconds"]
        if batches:
            console.print(
                f"the job's first {len(batches)} batches "
                f"({results['diagnosis']['batch_size']:,} members each), timed one by one: "
                + ", ".join(f"{b:.2f}" for b in batches)
                + " s; EXPLAIN ANALYZE of a batch and of the single statement: "
                + str(path.with_suffix(".plans.txt"))
            )
    console.print(f"results: {path}")


# --- main ---------------------------------------------------------------------------------


async def run(bench: Bench) -> dict[str, Any]:
    args = bench.args
    check_tools()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "parameters": vars(args),
    }
    admin = await bench.connect("postgres")
    try:
        pg_version = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    results["environment"] = common.environment_facts(pg_version)
    common.flush_redis(bench.args)
    results["data"] = await prepare_database(bench)
    with console.status(f"migrating {bench.work_db} (nothing to do unless the code moved on)"):
        loyalty_cli(bench, "migrate")
    _configure_loyalty(bench)
    with console.status("warming the cache"):
        await prewarm(bench)
    results["timed"] = await timed_runs(bench)
    ratio = statistics.median(r["ratio"] for r in results["timed"]["runs"])
    if args.explain == "always" or (args.explain == "auto" and ratio > GOAL_JOB_RATIO):
        with console.status("restoring member tiers"):
            await restore(bench)
        with phase_progress(
            console, "diagnosis: plans, the job's batches one by one", None, width=44
        ):
            at = datetime.fromisoformat(results["timed"]["last_at"])
            results["diagnosis"] = await diagnose(bench, at)
    if not args.skip_earn:
        results["earn"] = await run_earn(bench)
    results["summary"] = summarise(results)
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


async def drop_work_db(bench: Bench) -> None:
    admin = await bench.connect("postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{bench.work_db}" WITH (FORCE)')
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM both unwind through the cleanup, even when started in the background
    # (where a shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-tiers-") as tmp:
            bench = Bench(args, procs, Path(tmp))
            try:
                results = run_async(run(bench))
            finally:
                procs.stop_all()
                if not args.keep_db:
                    try:
                        run_async(drop_work_db(bench))
                    except (BenchError, OSError, asyncpg.PostgresError) as exc:
                        console.print(f"[yellow]could not drop {bench.work_db}: {exc}[/]")
    except BenchError as exc:
        console.print(f"[red]benchmark failed:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; what the benchmark started is stopped[/]")
        return 130
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"tiers-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if "diagnosis" in results:
        diagnosis = results["diagnosis"]
        path.with_suffix(".plans.txt").write_text(
            "".join(
                f"=== {name} ===\n{diagnosis[f'plan_{name}']}\n\n"
                for name in ("job_first_batch", "job_first_batch_generic", "single_statement")
            )
        )
    print_report(results, path)
    missed = [name for name, ok in results["summary"]["goals"].items() if not ok]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
