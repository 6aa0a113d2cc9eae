"""Redemption benchmark: redemptions per second through the API, against pgbench on the same
server.

Seeds members set-based in SQL (bench/workload.py's seeding) and gives each the same available
balance (one adjustment entry, one released lot, the account's buckets), serves the app with
`loyalty serve` on the local PostgreSQL and Redis, then, in one run and at one concurrency:

1. pgbench's built-in tpcb-like script (the ceiling), before the app phases;
2. hot reward: one event seat with limited stock (--hot-stock), each request from a member
   who has not asked yet, until the stock is gone and then --hot-tail seconds more:
   redemptions/s over the time to the last seat (201s only), p50/p99 of those, and the
   out_of_stock answers per second after the sell-out;
3. many members: a voucher with unlimited stock, members taken in windows of 4 x
   concurrency, each redeeming it --redemptions-per-member times: redemptions/s, p50/p99;
4. pgbench again, after the app phases (the machine is noisy: the ceiling is their mean).

The load comes from a small asyncio HTTP/1.1 client on keep-alive connections (a few tens of
microseconds a request, and a latency per answer, so successes and refusals are timed
apart). No goals: it prints rates and their ratios to pgbench TPS. Afterwards it checks that
no seat was oversold, no balance is negative and the ledger matches the accounts, lots and
redemptions (`--check`: exit 1 when not). Every process it starts (server, pgbench) is
stopped on exit, Ctrl-C or error.

    uv run python bench/redeem.py [--concurrency 16] [--duration 20] [--hot-stock 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import asyncpg
    import httpx
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
    sys.exit(f"{exc}: run it in the project: cd /work/main && uv run python bench/redeem.py")

try:
    import uvloop
except ImportError:  # the client then runs on asyncio's own loop
    uvloop = None

import common
import workload
from common import HOST, RESULTS_DIR, BenchError

APP_DB = "loyalty_bench_redeem"  # its own databases: it never drops the earn benchmark's
PGBENCH_DB = "pgbench_bench_redeem"

console = Console(width=None if sys.stdout.isatty() else 110)  # logs: wide enough for the tables
PHASE_ORDER = ("pgbench_before", "hot", "many", "pgbench_after")
HOT_COST = 500  # points for the hot seat
MANY_COST = 100  # points for the unlimited voucher
MAX_TRANSPORT_ERRORS = 5  # a phase stops at this many failed connections or timeouts
REQUEST_TIMEOUT = 30.0  # seconds
SAMPLES_KEPT = 5  # unexpected answers kept for the report
REASON = re.compile(rb"\(([a-z_]+)\)")  # the service ends a refusal's detail with "(reason)"


# --- arguments ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Redemptions/s of the loyalty API (one hot reward with limited stock; "
        "many members at once) against pgbench tpcb-like on the same PostgreSQL (127.0.0.1), "
        "in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="connections for the client and pgbench"
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=20,
        help="seconds of the many-members phase and of each pgbench run",
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="unmeasured seconds of redemptions first"
    )
    parser.add_argument("--members", type=int, default=100_000, help="members to seed")
    parser.add_argument("--workers", type=int, default=2, help="web processes (loyalty serve)")
    parser.add_argument("--hot-stock", type=int, default=5_000, help="seats of the hot reward")
    parser.add_argument(
        "--hot-tail",
        type=float,
        default=2.0,
        help="seconds the hot phase goes on after the sell-out (out_of_stock answers)",
    )
    parser.add_argument(
        "--hot-timeout",
        type=float,
        default=180.0,
        help="seconds the hot phase may take before it stops unsold",
    )
    parser.add_argument(
        "--redemptions-per-member",
        type=int,
        default=3,
        help="redemptions each member makes in the many-members phase",
    )
    parser.add_argument("--port", type=int, default=8766, help="port for loyalty serve")
    parser.add_argument("--pg-port", type=int, default=5432, help="local PostgreSQL port")
    parser.add_argument("--pg-user", default="postgres", help="PostgreSQL user (trust auth)")
    parser.add_argument("--redis-port", type=int, default=6379, help="local Redis port")
    parser.add_argument("--redis-db", type=int, default=12, help="Redis database (flushed)")
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
        "--check",
        action="store_true",
        help="exit 1 when a correctness check fails (oversold stock, a negative balance, a "
        "ledger mismatch); there are no speed goals",
    )
    args = parser.parse_args(argv)
    if min(args.concurrency, args.duration, args.members, args.workers, args.hot_stock) < 1:
        parser.error(
            "--concurrency, --duration, --members, --workers and --hot-stock must be at least 1"
        )
    if args.warmup < 0 or args.hot_tail < 0 or args.hot_timeout <= 0:
        parser.error("--warmup and --hot-tail must not be negative, --hot-timeout positive")
    if not 1 <= args.redemptions_per_member <= 1000:
        parser.error("--redemptions-per-member must be between 1 and 1000")
    if args.members > 899_999_999:
        parser.error("--members is at most 899,999,999 (ten-digit member numbers)")
    # One preflight member, two hot members a seat (the sold and the refused), and at least
    # two windows of many-members.
    needed = 1 + 2 * args.hot_stock + 2 * window(args)
    if args.members < needed:
        parser.error(
            f"--members must be at least 1 + 2 x --hot-stock + 8 x --concurrency = {needed:,}"
        )
    args.pgbench_scale = args.pgbench_scale or max(10, args.concurrency)
    return args


def window(args: argparse.Namespace) -> int:
    """Members redeeming in turn in the many-members phase before the next ones start."""
    return 4 * args.concurrency


def balance(args: argparse.Namespace) -> int:
    """Every member's available points: one hot seat or all their many-members redemptions."""
    return max(HOT_COST, MANY_COST * args.redemptions_per_member)


# --- the run's context --------------------------------------------------------------------


@dataclass
class Bench(common.Bench):
    token: str = ""  # an admin's bearer token: the catalog
    rewards: dict[str, str] = field(default_factory=dict)  # role -> reward id
    many_cursor: int = 0  # many-members requests handed out (warm-up included)
    many_created: int = 0  # 201s on the unlimited reward (preflight and warm-up included)

    @property
    def preflight_member(self) -> str:
        return self.member_ids[0]

    @property
    def hot_pool(self) -> list[str]:
        return self.member_ids[1 : 1 + 2 * self.args.hot_stock]

    @property
    def many_pool(self) -> list[str]:
        rest = self.member_ids[1 + 2 * self.args.hot_stock :]
        size = window(self.args)
        return rest[: len(rest) // size * size]  # whole windows only


# --- setup: tools, points, staff, rewards ---------------------------------------------------


def check_tools() -> dict[str, str]:
    path = shutil.which("pgbench")
    if path is None:
        raise BenchError(
            "pgbench not found on PATH; install it first (Debian: apt-get install "
            "postgresql-client)"
        )
    if importlib.util.find_spec("loyalty") is None:
        raise BenchError("run it in the project: cd /work/main && uv run python bench/redeem.py")
    return {"pgbench": path}


SEED_CHECK_SQL = """
SELECT count(*) AS accounts,
       count(*) FILTER (WHERE available + pending - debt <> total) AS unbalanced,
       count(*) FILTER (WHERE available <> $1 OR pending <> 0 OR debt <> 0) AS other_balance
FROM points_accounts
"""


async def seed_points(bench: Bench) -> None:
    """Give every member `balance` available points, as an adjustment does; then check every
    account."""
    points = balance(bench.args)
    ids = bench.member_ids
    prefix = f"bench-redeem-{bench.run_id}-"
    await workload.seed_points(bench, ids, points, prefix, "redeem benchmark balance")
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=5)
    try:
        check = await conn.fetchrow(SEED_CHECK_SQL, points)
    finally:
        await conn.close()
    if check["accounts"] != len(ids) or check["unbalanced"] or check["other_balance"]:
        raise BenchError(f"seeded points do not balance: {dict(check)}")


def create_staff_and_key(bench: Bench) -> str:
    """An admin (for the catalog; its password) and an integration key (for redemptions)."""
    output = common.loyalty_cli(
        bench.env(), "create-staff", "--username", f"bench-{bench.run_id}", "--role", "admin"
    )
    match = re.search(r"password \(shown once\): (\S+)", output)
    if match is None:
        raise BenchError(f"no password in the output of loyalty create-staff:\n{output}")
    password = match.group(1)
    output = common.loyalty_cli(
        bench.env(),
        "create-api-key",
        "--name",
        "bench",
        "--scopes",
        "redemptions:write,members:read",
    )
    key = re.search(r"key \(shown once\): (lk_\S+)", output)
    if key is None:
        raise BenchError(f"no key in the output of loyalty create-api-key:\n{output}")
    bench.key = key.group(1)
    return password


def create_rewards(bench: Bench, password: str) -> None:
    """Sign the admin in and add the benchmark's rewards to the catalog."""
    args = bench.args
    rewards = {
        "hot": {
            "name": "Bench hot seat",
            "kind": "event_seat",
            "points_cost": HOT_COST,
            "stock": args.hot_stock,
            "per_member_limit": 1,
        },
        "many": {
            "name": "Bench voucher",
            "kind": "voucher",
            "points_cost": MANY_COST,
            "stock": None,
            "voucher_source": "generated",
        },
        # Sold out from the start: the preflight checks how a refusal reads.
        "sold_out": {"name": "Bench sold out", "kind": "goods", "points_cost": 1, "stock": 0},
    }
    with httpx.Client(base_url=bench.base_url, timeout=30) as client:
        login = {"username": f"bench-{bench.run_id}", "password": password}
        token = common.expect(client.post("/api/v1/auth/tokens", json=login), 201, "signing in")
        bench.token = token["token"]
        headers = {"Authorization": f"Bearer {bench.token}"}
        for role, body in rewards.items():
            answer = client.post("/api/v1/rewards", json=body, headers=headers)
            bench.rewards[role] = common.expect(answer, 201, f"creating the {role} reward")["id"]


def redemption_body(reward_id: str, key: str) -> dict[str, Any]:
    return {"reward_id": reward_id, "quantity": 1, "idempotency_key": key}


def preflight(bench: Bench) -> None:
    """One redemption with the key, its replay, and a refusal: the bodies and the key work."""
    path = f"/api/v1/members/{bench.preflight_member}/redemptions"
    headers = {"Authorization": f"Bearer {bench.key}"}
    body = redemption_body(bench.rewards["many"], f"{bench.run_id}-preflight")
    with httpx.Client(base_url=bench.base_url, headers=headers, timeout=30) as client:
        first = common.expect(client.post(path, json=body), 201, "a redemption")
        if first.get("balance_after") != balance(bench.args) - MANY_COST:
            raise BenchError(f"a redemption left an unexpected balance: {first}")
        again = common.expect(client.post(path, json=body), 200, "a replayed redemption")
        if not again.get("replayed") or again.get("id") != first["id"]:
            raise BenchError(f"a replayed redemption answered {again}")
        refused = client.post(
            path, json=redemption_body(bench.rewards["sold_out"], f"{bench.run_id}-refused")
        )
        if refused.status_code != 409 or outcome(409, refused.content) != "out_of_stock":
            raise BenchError(
                f"a sold-out reward answered {refused.status_code}: {refused.text[:500]}"
            )
    bench.many_created += 1


# --- the load: a small HTTP/1.1 client ----------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection to the server. httpx spends hundreds of
    microseconds a request; this a few tens, and the client shares two cores with the server
    and PostgreSQL."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: bytes, body: bytes) -> tuple[int, bytes]:
        """(status, body); an OSError, IncompleteReadError or ValueError closes it."""
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        try:
            self.writer.write(
                b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
                % (path, self.headers, len(body), body)
            )
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    raise ValueError("a chunked answer: this client reads Content-Length only")
            answer = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, answer


def outcome(status: int, body: bytes) -> str:
    """created, a refusal's reason (out_of_stock, not_enough_points, ...), or the status."""
    if status == 201:
        return "created"
    if status == 409:
        match = REASON.search(body)
        return match.group(1).decode() if match else "409"
    return str(status)


@dataclass
class Tally:
    """The answers of one phase: latencies and first/last answer times per outcome."""

    started: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    last_answer: float = 0.0
    samples: list[str] = field(default_factory=list)  # unexpected answers
    transport_errors: list[str] = field(default_factory=list)

    def count(self, name: str) -> int:
        return len(self.latencies.get(name, ()))

    def add(self, name: str, sent: float, answered: float) -> None:
        self.latencies.setdefault(name, []).append(answered - sent)
        self.first.setdefault(name, answered)
        self.last[name] = answered
        self.last_answer = max(self.last_answer, answered)


Request = tuple[bytes, bytes]  # path, body


async def _drive(
    bench: Bench,
    pick: Callable[[], Request | None],
    stop: Callable[[Tally, float], bool],
    expected: set[str],
    refresh: Callable[[Tally], None],
    meter: Any | None,
    meter_until: str | None = None,
) -> Tally:
    """Closed loop on --concurrency connections: each sends a request, waits for its answer,
    sends the next, until `stop` says so or `pick` has no more. Connections are opened
    before the clock starts; requests in flight at the stop finish and count."""
    args = bench.args
    connections = [Connection(HOST, args.port, bench.key) for _ in range(args.concurrency)]
    await asyncio.gather(*(c.connect() for c in connections))
    tally = Tally()
    metering = meter is not None

    async def worker(connection: Connection) -> None:
        nonlocal metering
        while len(tally.transport_errors) < MAX_TRANSPORT_ERRORS:
            if stop(tally, time.perf_counter()):
                return
            request = pick()
            if request is None:
                return
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, body = await connection.post(*request)
            except (
                OSError,
                TimeoutError,
                ValueError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ) as exc:
                tally.transport_errors.append(f"{type(exc).__name__}: {exc}")
                continue
            name = outcome(status, body)
            tally.add(name, sent, time.perf_counter())
            if name not in expected and len(tally.samples) < SAMPLES_KEPT:
                tally.samples.append(f"{status} {request[0].decode()}: {body[:400].decode()}")
            if metering and name == meter_until:
                meter.sample()  # the CPU figures end where this outcome starts
                metering = False

    async def sampler() -> None:
        while True:
            if metering:
                meter.sample()
            refresh(tally)
            await asyncio.sleep(0.5)

    if meter is not None:
        meter.sample()
    tally.started = time.perf_counter()
    sampling = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        sampling.cancel()
        for connection in connections:
            connection.close()
    if metering:
        meter.sample()
    refresh(tally)
    return tally


def run_client(coro: Any) -> Any:
    """Run the client on uvloop when it is there (it is with uvicorn[standard])."""
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def latency_ms(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50": round(common.percentile(ordered, 50) * 1000, 2) if ordered else None,
        "p99": round(common.percentile(ordered, 99) * 1000, 2) if ordered else None,
        "max": round(ordered[-1] * 1000, 2) if ordered else None,
    }


def outcomes(tally: Tally) -> dict[str, int]:
    return {name: len(values) for name, values in sorted(tally.latencies.items())}


def check_transport(tally: Tally, phase: str) -> None:
    if tally.transport_errors:
        raise BenchError(
            f"{len(tally.transport_errors)} request(s) of the {phase} phase failed: "
            + "; ".join(tally.transport_errors[:3])
        )


# --- phases -------------------------------------------------------------------------------


@contextmanager
def count_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over a count (seats sold); yields the function that moves it."""
    with Progress(
        SpinnerColumn(),
        TextColumn(f"{label:<30}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=min(done, total))


def many_member(args: argparse.Namespace, i: int) -> int:
    """The many-members pool's index for request number `i` (warm-up included): members in
    windows of 4 x concurrency, each member of a window redeeming in turn, a round at a time,
    --redemptions-per-member rounds, then the next window. Requests in flight together are
    for different members, and each member's balance covers its rounds."""
    size, rounds = window(args), args.redemptions_per_member
    return i // (size * rounds) * size + i % size


def many_picker(bench: Bench, tag: str) -> Callable[[], Request | None]:
    pool = [member.encode() for member in bench.many_pool]
    capacity = len(pool) * bench.args.redemptions_per_member
    reward = bench.rewards["many"].encode()
    run = bench.run_id.encode()
    tag_bytes = tag.encode()

    def pick() -> Request | None:
        i = bench.many_cursor
        if i >= capacity:
            return None
        bench.many_cursor = i + 1
        path = b"/api/v1/members/%s/redemptions" % pool[many_member(bench.args, i)]
        body = b'{"reward_id":"%s","quantity":1,"idempotency_key":"%s-%s-%d"}' % (
            reward,
            run,
            tag_bytes,
            i,
        )
        return path, body

    return pick


def run_many(bench: Bench, seconds: float, tag: str, label: str, measured: bool) -> dict:
    """The unlimited reward, many members at once, for `seconds`."""
    args = bench.args
    meter = bench.meter() if measured else None
    pick = many_picker(bench, tag)
    first = bench.many_cursor
    with workload.phase_progress(console, label, seconds) as refresh:
        tally = run_client(
            _drive(
                bench,
                pick,
                lambda t, now: now >= t.started + seconds,
                {"created"},
                lambda _t: refresh(),
                meter,
            )
        )
    check_transport(tally, tag)
    created = tally.count("created")
    bench.many_created += created
    elapsed = tally.last_answer - tally.started if tally.last_answer else 0.0
    members = {many_member(args, i) for i in range(first, bench.many_cursor)}
    result: dict[str, Any] = {
        "requests": bench.many_cursor - first,
        "members": len(members),
        "outcomes": outcomes(tally),
        "seconds": round(elapsed, 3),
        "redemptions_per_s": round(created / elapsed, 1) if elapsed else 0.0,
        "latency_ms": latency_ms(tally.latencies.get("created", [])),
        "members_pool_exhausted": bench.many_cursor
        >= len(bench.many_pool) * args.redemptions_per_member,
        "unexpected_answers": tally.samples,
    }
    if meter is not None:
        result["cpu_cores"] = meter.cores()
    return result


def run_hot(bench: Bench) -> dict[str, Any]:
    """The hot seat: every request from another member, until the stock is gone and then
    --hot-tail seconds more (or --hot-timeout, or the hot members run out)."""
    args = bench.args
    pool = [member.encode() for member in bench.hot_pool]
    reward = bench.rewards["hot"].encode()
    run = bench.run_id.encode()
    cursor = 0

    def pick() -> Request | None:
        nonlocal cursor
        if cursor >= len(pool):
            return None
        i, cursor = cursor, cursor + 1
        path = b"/api/v1/members/%s/redemptions" % pool[i]
        body = b'{"reward_id":"%s","quantity":1,"idempotency_key":"%s-hot-%d"}' % (reward, run, i)
        return path, body

    def stop(tally: Tally, now: float) -> bool:
        sold_out = tally.first.get("out_of_stock")
        if sold_out is not None:
            return now >= sold_out + args.hot_tail
        return now >= tally.started + args.hot_timeout

    meter = bench.meter()
    label = f"hot seat ({args.hot_stock:,} in stock)"
    with count_progress(label, args.hot_stock) as move:
        tally = run_client(
            _drive(
                bench,
                pick,
                stop,
                {"created", "out_of_stock"},
                lambda t: move(t.count("created")),
                meter,
                meter_until="out_of_stock",
            )
        )
    check_transport(tally, "hot")
    created, refused = tally.count("created"), tally.count("out_of_stock")
    selling = tally.last.get("created", tally.started) - tally.started
    sold_out_at = tally.first.get("out_of_stock")
    tail = tally.last_answer - sold_out_at if sold_out_at is not None else 0.0
    return {
        "stock": args.hot_stock,
        "requests": cursor,
        "outcomes": outcomes(tally),
        "sold_out": sold_out_at is not None,
        "seconds_to_sell_out": round(selling, 3),
        "redemptions_per_s": round(created / selling, 1) if selling > 0 else 0.0,
        "latency_ms": latency_ms(tally.latencies.get("created", [])),
        "tail_seconds": round(tail, 3),
        "out_of_stock_per_s": round(refused / tail, 1) if tail > 0 else None,
        "out_of_stock_latency_ms": latency_ms(tally.latencies.get("out_of_stock", [])),
        "hot_members_exhausted": cursor >= len(pool),
        "unexpected_answers": tally.samples,
        "cpu_cores": meter.cores(),  # up to the first out_of_stock answer
    }


# --- correctness, after the run -----------------------------------------------------------


ACCOUNTS_CHECK_SQL = """
WITH ledger AS (SELECT member, sum(points) AS points FROM points_ledger GROUP BY member),
lots AS (
    SELECT member,
           coalesce(sum(remaining) FILTER (WHERE released), 0) AS available,
           coalesce(sum(remaining) FILTER (WHERE NOT released), 0) AS pending
    FROM points_lots GROUP BY member
),
spent AS (
    SELECT member, sum(points) AS points FROM redemptions
    WHERE status <> 'cancelled' GROUP BY member
)
SELECT count(*) AS accounts,
       count(*) FILTER (WHERE a.available < 0 OR a.pending < 0 OR a.debt < 0) AS negative,
       count(*) FILTER (WHERE a.available + a.pending - a.debt <> a.total) AS unbalanced,
       count(*) FILTER (WHERE a.total <> coalesce(l.points, 0)) AS total_not_ledger,
       count(*) FILTER (WHERE a.available <> coalesce(lo.available, 0)
                           OR a.pending <> coalesce(lo.pending, 0)) AS lots_mismatch,
       count(*) FILTER (WHERE a.available <> $1 - coalesce(s.points, 0)) AS spent_mismatch
FROM points_accounts a
LEFT JOIN ledger l ON l.member = a.member
LEFT JOIN lots lo ON lo.member = a.member
LEFT JOIN spent s ON s.member = a.member
"""
REDEMPTIONS_CHECK_SQL = """
SELECT (SELECT count(*) FROM redemptions) AS redemptions,
       (SELECT coalesce(sum(points), 0)::bigint FROM redemptions) AS redemption_points,
       (SELECT count(*) FROM points_ledger WHERE kind = 'redemption') AS ledger_entries,
       (SELECT coalesce(-sum(points), 0)::bigint FROM points_ledger WHERE kind = 'redemption')
           AS ledger_points,
       (SELECT count(*) FROM (SELECT member FROM redemptions WHERE reward = $1
                              GROUP BY member HAVING count(*) > 1) AS twice) AS hot_twice
"""


async def correctness(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    """Stock never oversold, balances never negative, the ledger matching the accounts, the
    lots and the redemptions, and the database matching what the client was answered."""
    hot_id, many_id = bench.rewards["hot"], bench.rewards["many"]
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=5)
    try:
        counts = dict(
            await conn.fetch(
                "SELECT reward::text, count(*) FROM redemptions GROUP BY reward",
            )
        )
        stock = await conn.fetchval("SELECT stock FROM rewards WHERE id = $1", hot_id)
        accounts = dict(await conn.fetchrow(ACCOUNTS_CHECK_SQL, balance(bench.args)))
        ledger = dict(await conn.fetchrow(REDEMPTIONS_CHECK_SQL, hot_id))
    finally:
        await conn.close()
    hot = results.get("hot", {})
    initial = bench.args.hot_stock
    hot_sold = counts.get(hot_id, 0)
    client_hot = hot.get("outcomes", {}).get("created", 0)
    check: dict[str, Any] = {
        "hot": {
            "stock_at_start": initial,
            "stock_left": stock,
            "redemptions_in_db": hot_sold,
            "created_answers": client_hot,
            "members_twice": ledger.pop("hot_twice"),
        },
        "many": {
            "redemptions_in_db": counts.get(many_id, 0),
            "created_answers": bench.many_created,
        },
        "accounts": accounts,
        "ledger": ledger,
    }
    failures = []
    if stock is None or stock < 0 or hot_sold > initial or hot_sold + stock != initial:
        failures.append(f"hot stock: {hot_sold:,} sold from {initial:,}, {stock} left")
    if hot.get("sold_out") and (stock != 0 or hot_sold != initial):
        failures.append("the hot seat answered out_of_stock with stock left")
    if client_hot != hot_sold:
        failures.append(f"hot: {client_hot:,} answered created, {hot_sold:,} in the database")
    if check["hot"]["members_twice"]:
        failures.append(f"{check['hot']['members_twice']} member(s) got the hot seat twice")
    if counts.get(many_id, 0) != bench.many_created:
        failures.append(
            f"many: {bench.many_created:,} answered created, {counts.get(many_id, 0):,} in the "
            "database"
        )
    if counts.get(bench.rewards["sold_out"], 0):
        failures.append("a reward with no stock was redeemed")
    for name in ("negative", "unbalanced", "total_not_ledger", "lots_mismatch", "spent_mismatch"):
        if accounts[name]:
            failures.append(f"{accounts[name]:,} account(s): {name.replace('_', ' ')}")
    if accounts["accounts"] != len(bench.member_ids):
        failures.append(f"{accounts['accounts']:,} accounts for {len(bench.member_ids):,}")
    if (ledger["redemptions"], ledger["redemption_points"]) != (
        ledger["ledger_entries"],
        ledger["ledger_points"],
    ):
        failures.append(f"redemptions and their ledger entries differ: {ledger}")
    check["failures"] = failures
    check["ok"] = not failures
    return check


# --- report -------------------------------------------------------------------------------


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    before, after = results["pgbench_before"]["tps"], results["pgbench_after"]["tps"]
    ceiling = statistics.mean([before, after])
    hot, many = results["hot"], results["many"]
    summary: dict[str, Any] = {
        "pgbench_tps": round(ceiling, 1),
        "pgbench_spread": round(abs(before - after) / ceiling, 3),
        "hot_ratio": round(hot["redemptions_per_s"] / ceiling, 3),
        "hot_out_of_stock_ratio": (
            round(hot["out_of_stock_per_s"] / ceiling, 3) if hot["out_of_stock_per_s"] else None
        ),
        "many_ratio": round(many["redemptions_per_s"] / ceiling, 3),
    }
    # CPU milliseconds per redemption (per transaction for pgbench): steadier than rates when
    # the machine is shared, and it says which side to make cheaper.
    summary["cpu_ms_per_unit"] = {}
    for name in PHASE_ORDER:
        rate = results[name].get("tps") or results[name].get("redemptions_per_s")
        cores = results[name]["cpu_cores"]
        summary["cpu_ms_per_unit"][name] = {
            role: round(cores[role] * 1000 / rate, 3) if rate else None
            for role in ("app", "postgres", "load", "machine")
        }
    summary["disturbed_phases"] = [
        name
        for name in PHASE_ORDER
        if results[name]["cpu_cores"]["other"] > common.OTHER_LOAD_WARNING
    ]
    return summary


def _ms(latency: dict[str, float | None]) -> str:
    if latency["p50"] is None:
        return "-"
    return f"{latency['p50']:.1f} / {latency['p99']:.1f} ms"


def _figures_table(args: argparse.Namespace, results: dict[str, Any]) -> Table:
    """Redemptions/s of each phase, as a multiple of pgbench's TPS, with latencies."""
    summary, hot, many = results["summary"], results["hot"], results["many"]
    table = Table(
        title=f"redeem: concurrency {args.concurrency}, {args.workers} web worker(s), "
        f"{args.members:,} members, {args.duration} s a phase"
    )
    for name, justify in (("measure", "left"), ("value", "right"), ("x pgbench", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    before, after = results["pgbench_before"]["tps"], results["pgbench_after"]["tps"]
    table.add_row(
        f"pgbench tpcb-like TPS (-M {args.pgbench_protocol})", f"{summary['pgbench_tps']:,.0f}"
    )
    table.add_row("  before / after", f"{before:,.0f} / {after:,.0f}")
    table.add_row(
        "hot seat: redemptions/s", f"{hot['redemptions_per_s']:,.0f}", f"{summary['hot_ratio']:.2f}"
    )
    table.add_row(
        "  seats sold / stock", f"{hot['outcomes'].get('created', 0):,} / {hot['stock']:,}"
    )
    table.add_row(
        "  sold out in" if hot["sold_out"] else "  [yellow]not sold out[/] after",
        f"{hot['seconds_to_sell_out']:.1f} s",
    )
    table.add_row("  p50 / p99 (201 created)", _ms(hot["latency_ms"]))
    if hot["out_of_stock_per_s"] is not None:
        table.add_row(
            f"  then out_of_stock/s ({hot['tail_seconds']:.1f} s)",
            f"{hot['out_of_stock_per_s']:,.0f}",
            f"{summary['hot_out_of_stock_ratio']:.2f}",
        )
        table.add_row("  p50 / p99 (409 out_of_stock)", _ms(hot["out_of_stock_latency_ms"]))
    table.add_row(
        "many members: redemptions/s",
        f"{many['redemptions_per_s']:,.0f}",
        f"{summary['many_ratio']:.2f}",
    )
    table.add_row("  p50 / p99 (201 created)", _ms(many["latency_ms"]))
    table.add_row(
        "  redemptions / members", f"{many['outcomes'].get('created', 0):,} / {many['members']:,}"
    )
    return table


def print_report(args: argparse.Namespace, results: dict[str, Any], path: Path) -> None:
    summary, hot, many = results["summary"], results["hot"], results["many"]
    console.print(_figures_table(args, results))
    per_unit = summary["cpu_ms_per_unit"]
    console.print(
        common.cpu_table(
            f"CPU: cores used ({os.cpu_count()} = the whole machine), and ms per redemption "
            "or pgbench transaction (hot: up to the sell-out)",
            [*common.CPU_ROLES, "steal", "machine"],
            [(name, results[name]["cpu_cores"], per_unit[name]) for name in PHASE_ORDER],
            unit="ms/unit",
        )
    )
    check = results["correctness"]
    if check["ok"]:
        console.print(
            f"correctness: {check['hot']['redemptions_in_db']:,} hot seats sold of "
            f"{check['hot']['stock_at_start']:,} ({check['hot']['stock_left']:,} left), "
            f"{check['many']['redemptions_in_db']:,} vouchers; no balance negative, every "
            "account balanced and matching its ledger, lots and redemptions"
        )
    else:
        console.print("[red]correctness check failed:[/] " + "; ".join(check["failures"]))
    for name in ("hot", "many"):
        samples = results[name]["unexpected_answers"]
        if samples:
            console.print(f"[yellow]unexpected answers in the {name} phase:[/]")
            for sample in samples:
                console.print(f"  {sample}", markup=False)
    if not hot["sold_out"]:
        console.print(
            f"[yellow]the hot seat did not sell out within --hot-timeout {args.hot_timeout:g} s "
            "(or the hot members ran out): its rate is over the whole phase[/]"
        )
    if many["members_pool_exhausted"]:
        console.print(
            "[yellow]the many-members phase ran out of members before its time was up: pass "
            "more --members[/]"
        )
    if summary["disturbed_phases"]:
        console.print(
            f"[yellow]other processes used more than {common.OTHER_LOAD_WARNING} cores during "
            f"{', '.join(summary['disturbed_phases'])}: those figures are disturbed[/]"
        )
    if summary["pgbench_spread"] > 0.2:
        console.print(
            f"[yellow]pgbench moved {summary['pgbench_spread']:.0%} between before and after: "
            "the machine is noisy; compare several runs[/]"
        )
    console.print(f"results: {path}")


# --- main ---------------------------------------------------------------------------------


def run(bench: Bench) -> dict[str, Any]:
    args = bench.args
    tools = check_tools()
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
    with console.status("databases, Redis, migrations"):
        pg_version = asyncio.run(common.recreate_databases(bench, bench.app_db, bench.pgbench_db))
        common.flush_redis(bench.args)
        common.loyalty_cli(bench.env(), "migrate")
    started = time.monotonic()
    asyncio.run(workload.seed_members(bench))
    asyncio.run(seed_points(bench))
    console.print(
        f"seeded {len(bench.member_ids):,} members with {balance(args):,} available points "
        f"each in {time.monotonic() - started:.1f} s; every account balances"
    )
    with console.status("staff, API key"):
        password = create_staff_and_key(bench)
    workload.pgbench_init(bench)
    results["parameters"] = vars(args)
    results["environment"] = common.environment_facts(pg_version, tools=tools)

    try:
        with console.status(f"starting loyalty serve --workers {args.workers}"):
            common.start_server(bench)
        create_rewards(bench, password)
        preflight(bench)
        results["rewards"] = dict(bench.rewards)
        results["pgbench_before"] = workload.run_pgbench(bench, "pgbench tpcb-like (before)")
        if args.warmup:
            results["warmup"] = run_many(
                bench, args.warmup, "warm", "warm-up (not measured)", measured=False
            )
        results["hot"] = run_hot(bench)
        results["many"] = run_many(bench, args.duration, "many", "many members", measured=True)
        if bench.server is not None and bench.server.poll() is not None:
            raise BenchError("loyalty serve exited during the redemption phases")
        results["pgbench_after"] = workload.run_pgbench(bench, "pgbench tpcb-like (after)")
    except BenchError as exc:
        raise BenchError(
            f"{exc}\n--- server log, last lines ---\n{common.tail(bench.server_log)}"
        ) from None
    finally:
        if bench.server is not None:
            with console.status("stopping loyalty serve"):
                bench.procs.stop(bench.server)
    results["correctness"] = asyncio.run(correctness(bench, results))
    results["summary"] = summarise(results)
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM both unwind through the cleanup, even when started in the background
    # (where a shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, common.interrupt_on_sigterm)
    procs = common.Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-redeem-") as tmp:
            try:
                results = run(Bench(args, procs, Path(tmp), APP_DB, PGBENCH_DB, console))
            finally:
                procs.stop_all()
    except BenchError as exc:
        console.print(f"[red]benchmark failed:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; what the benchmark started is stopped[/]")
        return 130
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"redeem-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_report(args, results, path)
    return 1 if args.check and not results["correctness"]["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
