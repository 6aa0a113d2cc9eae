"""Soak: mixed traffic for a set time on ~1,000,000 members; throughput, p99, errors, memory.

On the local PostgreSQL and Redis (127.0.0.1 only), in one run:

1. Data: bench/tiers.py's generator (members, points accounts, tiers and ~3 purchases a member
   over 18 months, written with COPY) into a cache database of this benchmark's own
   (`loyalty_bench_soak_cache`, kept for `--reuse`), cloned into `loyalty_bench_soak`; then
   set-based: points for the members who redeem, an email address and consent to email for
   the campaign's audience and the portal's members.
2. Real processes: `loyalty serve` (web) and `loyalty worker` (arq, every cron job), the
   worker's mail going to an SMTP sink this benchmark runs in-process (it counts messages).
3. For `--duration` seconds, `--concurrency` closed-loop clients, each going round a shuffled
   mix of: `POST /api/v1/purchases` (API key), `POST /api/v1/members/{id}/redemptions` (API
   key), the member portal's pages (`/portal`, `/portal/points`, signed in through the
   portal's own code sign-in), and the visit brief `GET /api/v1/members/{id}/brief` (staff
   token). Beside them: `evaluate_tiers` enqueued on arq every `--tier-every` s (as the cron
   does, never two at once) and a marketing campaign (an approved offer to a tagged segment,
   `POST /api/v1/offers/{id}/send`) every `--campaign-every` s.
4. Memory: RSS of the web server, the worker (each with its children), PostgreSQL (PSS and
   RSS of the postmaster's auxiliary processes and this database's backends) and Redis,
   at start, every `--interval` s (a progress line) and at the end, with a verdict per
   process (see `memory_verdict`).

It writes bench/results/soak-<timestamp>.json and exits 1 when a process is GROWING or more
than 1% of a kind's requests failed. Every process it starts is stopped on exit, Ctrl-C or
error.

    uv run python bench/soak.py [--duration 600] [--members 1000000] [--concurrency 8] [--reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import asyncpg
    import httpx
    import msgspec
    import psutil
    import redis
    from aiosmtpd.controller import Controller
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # not in the project's environment
    sys.exit(f"{exc}: run it in the project: cd /work/main && uv run python bench/soak.py")

import campaign  # approved offers, the SMTP counter
import common
import portal  # sign-in through the portal's pages
import redeem  # the redemption body
import tiers  # the 1,000,000-member generator
import workload
from common import HOST, RESULTS_DIR, BenchError

APP_DB = "loyalty_bench_soak"  # its own databases, bench/tiers.py's generator's included
CACHE_DB = "loyalty_bench_soak_cache"
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

KINDS = ("earn", "redeem", "portal", "brief")
CAMPAIGN_TAG = "soak_campaign"
PORTAL_DOMAIN = "soak-portal.example.com"
CAMPAIGN_DOMAIN = "soak-campaign.example.com"
REDEEM_COST = 100
REQUEST_TIMEOUT = 30.0
MAX_ERROR_RATIO = 0.01
GROUPS = ("web", "worker", "postgres", "redis")


# --- arguments ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mixed traffic (earn, redeem, portal, brief, tier evaluation, campaign) "
        "for a set time against real loyalty serve and loyalty worker processes; throughput, "
        "p99, errors and the memory of every process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=600, help="seconds of traffic")
    parser.add_argument("--members", type=int, default=1_000_000, help="members to generate")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"reuse the generated data in {CACHE_DB} when it matches --members",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="closed-loop clients (requests in flight)"
    )
    parser.add_argument(
        "--mix",
        default="earn=4,portal=3,brief=2,redeem=1",
        help="relative share of each request kind",
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--tier-every", type=float, default=120.0, help="seconds between tier evaluations"
    )
    parser.add_argument(
        "--campaign-every", type=float, default=60.0, help="seconds between campaign sends"
    )
    parser.add_argument("--deliver", type=int, default=1000, help="members a campaign reaches")
    parser.add_argument("--sessions", type=int, default=8, help="portal members signed in")
    parser.add_argument(
        "--redeem-members", type=int, default=5000, help="members with points to redeem"
    )
    parser.add_argument("--workers", type=int, default=2, help="web processes (loyalty serve)")
    parser.add_argument("--port", type=int, default=0, help="port for loyalty serve (0: free)")
    parser.add_argument("--pg-port", type=int, default=5432, help="local PostgreSQL port")
    parser.add_argument("--pg-user", default="postgres", help="PostgreSQL user (trust auth)")
    parser.add_argument("--redis-port", type=int, default=6379, help="local Redis port")
    parser.add_argument("--redis-db", type=int, default=5, help="Redis database (flushed)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the generated data")
    parser.add_argument(
        "--keep-db", action="store_true", help=f"keep {APP_DB} afterwards (dropped by default)"
    )
    parser.add_argument("--log-level", default="warning", help="the server's log level")
    args = parser.parse_args(argv)
    args.purchases_per_member = 3.0  # bench/tiers.py's default: its cache is keyed on it
    if args.members < 1000 or args.members > 50_000_000:
        parser.error("--members must be between 1,000 and 50,000,000")
    if args.duration < 10:
        parser.error("--duration must be at least 10 s")
    if not 1 <= args.sessions <= portal.MAX_SESSIONS:
        parser.error(f"--sessions must be between 1 and {portal.MAX_SESSIONS}")
    if args.deliver + args.sessions + args.redeem_members > args.members:
        parser.error("--deliver + --sessions + --redeem-members must not exceed --members")
    if min(args.concurrency, args.interval, args.deliver, args.redeem_members, args.workers) <= 0:
        parser.error("--concurrency, --interval, --deliver, --redeem-members, --workers: >= 1")
    try:
        mix = {k: int(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    except ValueError:
        parser.error("--mix is kind=weight,kind=weight,...")
    if set(mix) - set(KINDS) or not any(mix.values()) or min(mix.values()) < 0:
        parser.error(f"--mix kinds are {', '.join(KINDS)}, weights >= 0")
    args.mix = {k: mix.get(k, 0) for k in KINDS}
    return args


# --- the run's context --------------------------------------------------------------------


@dataclass
class Bench(common.Bench):
    worker: subprocess.Popen | None = None
    token: str = ""  # the admin's bearer token
    reward_id: str = ""
    smtp_port: int = 0
    redeemers: list[str] = field(default_factory=list)
    audience: list[str] = field(default_factory=list)
    portal_members: list[Any] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)  # Cookie header values
    redis_pid: int | None = None
    load_started: float = 0.0  # monotonic time the traffic began

    @property
    def outbox(self) -> Path:
        return self.workdir / "data" / "outbox"

    @property
    def worker_log(self) -> Path:
        return self.workdir / "worker.log"

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.args.redis_port}/{self.args.redis_db}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            LOYALTY_MODE="production",
            LOYALTY_SECRET_KEY=self.secret_key,
            LOYALTY_DATABASE_URL=self.pg_url(self.app_db),
            LOYALTY_REDIS_URL=self.redis_url,
            LOYALTY_DATA_DIR=str(self.workdir / "data"),
            LOYALTY_HOST=HOST,
            LOYALTY_LOG_LEVEL=self.args.log_level,
        )
        return env


# --- setup --------------------------------------------------------------------------------


async def prepare_data(bench: Bench) -> dict[str, Any]:
    """bench/tiers.py's data (generated, or reused with --reuse) cloned into the app database."""
    tb = tiers.Bench(
        bench.args,
        bench.procs,
        bench.workdir,
        work_db=bench.app_db,
        cache_db=CACHE_DB,
        console=console,
    )
    return await tiers.prepare_database(tb)


SEED_AUDIENCE_SQL = f"""
UPDATE members
SET email = 'soak-' || number || '@{CAMPAIGN_DOMAIN}',
    contact_preferences = '{campaign.EMAIL_CONSENT}'::jsonb,
    tags = array_append(tags, '{CAMPAIGN_TAG}'::varchar)
WHERE id = ANY($1::uuid[])
"""


async def seed_extras(bench: Bench) -> dict[str, Any]:
    """Member ids for the load; points for the redeemers; emails for the campaign's audience
    and the portal's members (set-based, disjoint random sets)."""
    args = bench.args
    started = time.monotonic()
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=10)
    try:
        bench.member_ids = [str(r["id"]) for r in await conn.fetch("SELECT id FROM members")]
        rng = random.Random(args.seed + 1)
        picked = rng.sample(bench.member_ids, args.redeem_members + args.deliver + args.sessions)
        bench.redeemers = picked[: args.redeem_members]
        bench.audience = picked[args.redeem_members : args.redeem_members + args.deliver]
        chosen = picked[args.redeem_members + args.deliver :]
        points = REDEEM_COST * 10_000  # far more than a soak spends
        prefix = f"bench-soak-{bench.run_id}-"
        for first in range(0, len(bench.redeemers), common.SEED_CHUNK):
            chunk = bench.redeemers[first : first + common.SEED_CHUNK]
            async with conn.transaction():
                await conn.execute(
                    workload.SEED_POINTS_SQL, chunk, points, prefix, "redeem benchmark balance"
                )
                await conn.execute(workload.SEED_ACCOUNTS_SQL, chunk, points)
        await conn.execute(SEED_AUDIENCE_SQL, bench.audience)
        # A campaign every minute to the same audience: lift the frequency cap (2 marketing
        # messages a member in 7 days), or every send after the second is inbox-only.
        await conn.execute("UPDATE marketing_settings SET frequency_cap = 1000000")
        for i, member_id in enumerate(chosen):
            address = f"soak{i}@{PORTAL_DOMAIN}"
            number = await conn.fetchval(
                "UPDATE members SET email = $2 WHERE id = $1 RETURNING number", member_id, address
            )
            bench.portal_members.append(
                portal.PortalMember(
                    member_id, number, address, f"127.0.0.{portal.FIRST_ADDRESS + i}"
                )
            )
        await conn.execute("ANALYZE members, points_accounts, points_ledger, points_lots")
    finally:
        await conn.close()
    return {
        "seconds": round(time.monotonic() - started, 1),
        "redeemers": len(bench.redeemers),
        "redeemer_points": points,
        "audience": len(bench.audience),
        "portal_members": len(bench.portal_members),
    }


def create_staff_key_reward(bench: Bench) -> None:
    """An admin (its token: brief, rewards, offers), an integration key (purchases and
    redemptions) and an unlimited voucher to redeem."""
    output = common.loyalty_cli(
        bench.env(), "create-staff", "--username", f"soak-{bench.run_id}", "--role", "admin"
    )
    match = re.search(r"password \(shown once\): (\S+)", output)
    if match is None:
        raise BenchError(f"no password in the output of loyalty create-staff:\n{output}")
    output = common.loyalty_cli(
        bench.env(),
        "create-api-key",
        "--name",
        "soak",
        "--scopes",
        "purchases:write,redemptions:write,members:read",
    )
    key = re.search(r"key \(shown once\): (lk_\S+)", output)
    if key is None:
        raise BenchError(f"no key in the output of loyalty create-api-key:\n{output}")
    bench.key = key.group(1)
    login = {"username": f"soak-{bench.run_id}", "password": match.group(1)}
    with httpx.Client(base_url=bench.base_url, timeout=30) as client:
        answer = client.post("/api/v1/auth/tokens", json=login)
        bench.token = common.expect(answer, 201, "signing in")["token"]
        reward = {
            "name": "Soak voucher",
            "kind": "voucher",
            "points_cost": REDEEM_COST,
            "stock": None,
            "voucher_source": "generated",
        }
        answer = client.post("/api/v1/rewards", json=reward, headers=bench.headers())
        bench.reward_id = common.expect(answer, 201, "creating the reward")["id"]


def start_worker(bench: Bench) -> None:
    env = bench.env()
    env.update(LOYALTY_SMTP_HOST=HOST, LOYALTY_SMTP_PORT=str(bench.smtp_port))
    with bench.worker_log.open("ab") as log:
        bench.worker = bench.procs.start(
            [sys.executable, "-m", "loyalty", "worker"],
            env=env,
            cwd=common.PROJECT_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 20
    client = redis.Redis.from_url(bench.redis_url, socket_timeout=5)
    try:
        while time.monotonic() < deadline:  # arq writes its health check once it polls
            if bench.worker.poll() is not None:
                raise BenchError(f"loyalty worker exited:\n{common.tail(bench.worker_log)}")
            if client.keys("arq:*health-check*"):
                return
            time.sleep(0.3)
    finally:
        client.close()
    if bench.worker.poll() is not None:
        raise BenchError(f"loyalty worker exited:\n{common.tail(bench.worker_log)}")


# --- the load: a small HTTP/1.1 client ----------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection (GET and POST, Content-Length or chunked answers):
    a few tens of microseconds a request, where httpx spends hundreds, on the same cores."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self, method: bytes, path: bytes, headers: bytes, body: bytes = b""
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        try:
            head = b"%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s" % (
                method,
                path,
                self.host.encode(),
                self.port,
                headers,
            )
            if body:
                head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
            self.writer.write(head + b"\r\n" + body)
            answer_head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(answer_head[9:12])
            length, close, chunked = 0, False, False
            for line in answer_head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
            if chunked:
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await self.reader.readuntil(b"\r\n")
                        break
                    parts.append(await self.reader.readexactly(size + 2))
                answer = b"".join(p[:-2] for p in parts)
            else:
                answer = await self.reader.readexactly(length) if length else b""
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, answer


@dataclass
class KindTally:
    latencies: array = field(default_factory=lambda: array("d"))  # seconds, successes
    window: list[float] = field(default_factory=list)  # this interval's latencies
    ok: int = 0
    errors: Counter = field(default_factory=Counter)  # status or exception name -> count
    samples: list[str] = field(default_factory=list)  # a few unexpected answers


@dataclass
class Load:
    bench: Bench
    deadline: float
    tallies: dict[str, KindTally] = field(default_factory=lambda: {k: KindTally() for k in KINDS})
    sequence: int = 0

    def _purchase(self) -> tuple[bytes, bytes, bytes]:
        self.sequence += 1
        member = random.choice(self.bench.member_ids)
        body = common.purchase_body(
            f"soak-{self.bench.run_id}-{self.sequence}", member, common.iso_minute_ago()
        )
        return b"POST", b"/api/v1/purchases", msgspec.json.encode(body)

    def _redemption(self) -> tuple[bytes, bytes, bytes]:
        self.sequence += 1
        member = random.choice(self.bench.redeemers)
        body = redeem.redemption_body(self.bench.reward_id, f"soak-{self.sequence}")
        return b"POST", f"/api/v1/members/{member}/redemptions".encode(), msgspec.json.encode(body)

    async def client(self, index: int) -> None:
        bench = self.bench
        key = f"Authorization: Bearer {bench.key}\r\nAccept: application/json\r\n".encode()
        staff = f"Authorization: Bearer {bench.token}\r\nAccept: application/json\r\n".encode()
        cookie = bench.sessions[index % len(bench.sessions)]
        browser = f"Cookie: {cookie}\r\nAccept: text/html\r\n".encode()
        schedule = [k for k in KINDS for _ in range(bench.args.mix[k])]
        rng = random.Random(index)
        conn = Connection(HOST, bench.args.port)
        page = 0
        try:
            while time.monotonic() < self.deadline:
                rng.shuffle(schedule)
                for kind in schedule:
                    if time.monotonic() >= self.deadline:
                        break
                    if kind == "earn":
                        method, path, body = self._purchase()
                        headers, expected = key, (200, 201)
                    elif kind == "redeem":
                        method, path, body = self._redemption()
                        headers, expected = key, (200, 201)
                    elif kind == "portal":
                        page += 1
                        path = b"/portal" if page % 2 else b"/portal/points"
                        method, body, headers, expected = b"GET", b"", browser, (200,)
                    else:
                        member = random.choice(bench.member_ids)
                        path = f"/api/v1/members/{member}/brief".encode()
                        method, body, headers, expected = b"GET", b"", staff, (200,)
                    tally = self.tallies[kind]
                    started = time.perf_counter()
                    try:
                        status, answer = await asyncio.wait_for(
                            conn.request(method, path, headers, body), REQUEST_TIMEOUT
                        )
                    except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                        tally.errors[type(exc).__name__] += 1
                        await asyncio.sleep(0.1)  # no hot loop against a server that is down
                        continue
                    took = time.perf_counter() - started
                    if status in expected:
                        tally.ok += 1
                        tally.latencies.append(took)
                        tally.window.append(took)
                    else:
                        tally.errors[str(status)] += 1
                        if len(tally.samples) < 5:
                            tally.samples.append(f"{status} {path.decode()}: {answer[:300]!r}")
        finally:
            conn.close()


# --- periodic jobs: tier evaluation through arq, campaign sends ---------------------------


@dataclass
class Periodic:
    tier_runs: list[dict[str, Any]] = field(default_factory=list)
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def tier_evaluations(bench: Bench, periodic: Periodic, deadline: float) -> None:
    """Enqueue evaluate_tiers on arq (as the nightly cron does) every --tier-every s, never
    while the previous one is still queued or running; note each one's times and result."""
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.jobs import Job, JobStatus

    pool = await create_pool(RedisSettings.from_dsn(bench.redis_url))
    try:
        n = 0
        next_at = time.monotonic() + min(10.0, bench.args.duration / 6)
        while time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, min(next_at, deadline) - time.monotonic()))
            if time.monotonic() >= deadline:
                break
            n += 1
            job_id = f"soak:evaluate_tiers:{bench.run_id}:{n}"
            enqueued = time.monotonic()
            job = await pool.enqueue_job("evaluate_tiers", _job_id=job_id)
            run = {"job_id": job_id, "enqueued_s": round(enqueued - bench.load_started, 1)}
            periodic.tier_runs.append(run)
            if job is None:
                run["outcome"] = "not enqueued"
                next_at = enqueued + bench.args.tier_every
                continue
            while True:  # until it ends, also past the deadline: no evaluation is cut off
                status = await Job(job_id, pool).status()
                if status == JobStatus.complete:
                    break
                if time.monotonic() > deadline + 600:
                    run["outcome"] = f"still {status.value} 10 minutes after the load"
                    return
                await asyncio.sleep(0.5)
            info = await Job(job_id, pool).result_info()
            run["seconds"] = round(time.monotonic() - enqueued, 1)
            if info is not None:
                run["run_seconds"] = round((info.finish_time - info.start_time).total_seconds(), 1)
                run["outcome"] = "ok" if info.success else f"failed: {info.result!r}"[:300]
                if info.success:
                    run["result"] = info.result
            else:
                run["outcome"] = "no result"
            next_at = max(enqueued + bench.args.tier_every, time.monotonic() + 1)
    finally:
        await pool.aclose()


DELIVERIES_SQL = """
SELECT count(*) FILTER (WHERE status <> 'sending') AS settled,
       count(*) FILTER (WHERE status = 'sent' AND channel = 'email') AS emailed,
       count(*) FILTER (WHERE status = 'capped') AS capped,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM offer_deliveries WHERE offer = $1
"""


async def campaigns(
    bench: Bench, periodic: Periodic, handler: Any, deadline: float, client: httpx.AsyncClient
) -> None:
    """Every --campaign-every s (never two at once): an approved offer to the tagged audience,
    its send queued through the API; done when every delivery has settled (sent, capped or
    failed), at the latest two minutes after the load."""
    audience = len(bench.audience)
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=10)
    try:
        n = 0
        next_at = time.monotonic() + min(5.0, bench.args.duration / 12)
        while time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, min(next_at, deadline) - time.monotonic()))
            if time.monotonic() >= deadline:
                break
            n += 1
            started = time.monotonic()
            next_at = started + bench.args.campaign_every
            record: dict[str, Any] = {"n": n, "started_s": round(started - bench.load_started, 1)}
            periodic.campaigns.append(record)
            try:
                offer_id = await asyncio.to_thread(_approved_offer, bench, n)
                before = handler.count
                url = f"/api/v1/offers/{offer_id}/send"
                answer = await client.post(url, headers=bench.headers())
                if answer.status_code != 202:
                    record["outcome"] = f"send answered {answer.status_code}: {answer.text[:200]}"
                    continue
                queued = time.monotonic()
                while True:
                    row = await conn.fetchrow(DELIVERIES_SQL, offer_id)
                    if row["settled"] >= audience or time.monotonic() > deadline + 120:
                        break
                    await asyncio.sleep(0.5)
                record.update(dict(row))
                record["messages"] = handler.count - before
                record["seconds"] = round(time.monotonic() - queued, 1)
                complete = row["settled"] >= audience and row["emailed"] == audience
                record["outcome"] = "ok" if complete else "incomplete"
            except (httpx.HTTPError, BenchError, asyncpg.PostgresError) as exc:
                record["outcome"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        await conn.close()


def _approved_offer(bench: Bench, n: int) -> str:
    with httpx.Client(base_url=bench.base_url, timeout=60) as client:
        return campaign.approved_offer(client, bench, f"soak {n}", {"tags": [CAMPAIGN_TAG]})


# --- memory -------------------------------------------------------------------------------


def _tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


CLIENT_BACKEND = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")


def _postgres_processes(bench: Bench) -> list[psutil.Process]:
    """The postmaster, its auxiliary processes (checkpointer, WAL writer, autovacuum, ...)
    and the client backends connected to this benchmark's database; other databases'
    backends (other benchmarks, tests) are not ours."""
    chosen = []
    for proc in _tree(bench.postmaster):
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        backend = CLIENT_BACKEND.match(title)
        if backend is None or backend.group(1) == bench.app_db:
            chosen.append(proc)
    return chosen


def _measure(procs: list[psutil.Process], pss: bool) -> tuple[int, int, int]:
    """(RSS, PSS or RSS, processes) in bytes over the processes still there."""
    rss = proportional = count = 0
    for proc in procs:
        try:
            if pss:
                info = proc.memory_full_info()
                proportional += info.pss
                rss += info.rss
            else:
                value = proc.memory_info().rss
                rss += value
                proportional += value
            count += 1
        except psutil.Error:
            pass
    return rss, proportional, count


def memory_sample(bench: Bench, redis_client: redis.Redis) -> dict[str, dict[str, float]]:
    """MB per process group: rss (summed), main (the figure judged: PSS for PostgreSQL, whose
    backends share their buffers, RSS elsewhere) and, for Redis, its own used_memory."""
    mb = 2**20
    sample: dict[str, dict[str, float]] = {}
    server = bench.server.pid if bench.server else None
    worker = bench.worker.pid if bench.worker else None
    for name, procs, pss in (
        ("web", _tree(server), False),
        ("worker", _tree(worker), False),
        ("postgres", _postgres_processes(bench), True),
        ("redis", _tree(bench.redis_pid), False),
    ):
        rss, main, count = _measure(procs, pss)
        sample[name] = {"rss": round(rss / mb, 1), "main": round(main / mb, 1), "procs": count}
    try:
        used = redis_client.info("memory")["used_memory"]
        sample["redis"]["used_memory"] = round(used / mb, 1)
    except redis.RedisError:
        pass
    return sample


def _at(points: list[tuple[float, float]], index: int) -> float:
    """The median of up to three samples around `index` (rides over one noisy sample)."""
    lo, hi = max(0, index - 1), min(len(points), index + 2)
    return statistics.median(v for _, v in points[lo:hi])


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    ts = [t for t, _ in points]
    mean_t, mean_v = statistics.fmean(ts), statistics.fmean(v for _, v in points)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60


def memory_verdict(points: list[tuple[float, float]], duration: float) -> dict[str, Any]:
    """The rule. Over the samples taken under load (t = seconds, v = MB):

    - first-half growth = v(middle) - v(first); second-half growth = v(last) - v(middle),
      each v the median of up to three samples around that point;
    - slope = least-squares slope over the last third of the samples, in MB/min;
    - margin = max(5 MB, 2% of the last value).

    GROWING when the slope extrapolated over one hour exceeds 2 x margin, the second half
    still grew by more than margin, and by more than half of what the first half grew (it
    is not flattening): a bounded process flattens, an unbounded one keeps its slope.
    Otherwise "flat" when the second half grew by at most margin, else "flattening".
    Runs under 10 minutes (or with fewer than 9 samples) get the same rule, marked short."""
    if len(points) < 3:
        return {"verdict": "too few samples"}
    n = len(points)
    first, middle, last = _at(points, 0), _at(points, n // 2), _at(points, n - 1)
    growth1, growth2 = middle - first, last - middle
    slope = _slope_per_min(points[-max(2, n // 3) :])
    margin = max(5.0, 0.02 * last)
    if slope * 60 > 2 * margin and growth2 > margin and growth2 > 0.5 * growth1:
        verdict = "GROWING"
    elif growth2 <= margin:
        verdict = "flat"
    else:
        verdict = "flattening"
    return {
        "verdict": verdict,
        "first_half_mb": round(growth1, 1),
        "second_half_mb": round(growth2, 1),
        "last_third_mb_per_min": round(slope, 2),
        "margin_mb": round(margin, 1),
        "short": duration < 600 or n < 9,
    }


# --- the soak -----------------------------------------------------------------------------


def _pct(values: list[float] | array, pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))] * 1000, 1)


async def soak(bench: Bench, handler: Any) -> dict[str, Any]:
    args = bench.args
    redis_client = redis.Redis.from_url(bench.redis_url, socket_timeout=5)
    bench.redis_pid = redis_client.info("server").get("process_id")
    samples: list[dict[str, Any]] = []
    start = {"t": None, **memory_sample(bench, redis_client)}
    bench.load_started = time.monotonic()
    deadline = bench.load_started + args.duration
    load = Load(bench, deadline)
    periodic = Periodic()
    async with httpx.AsyncClient(base_url=bench.base_url, timeout=60) as http:
        tasks = [asyncio.create_task(load.client(i)) for i in range(args.concurrency)]
        side = [
            asyncio.create_task(tier_evaluations(bench, periodic, deadline)),
            asyncio.create_task(campaigns(bench, periodic, handler, deadline, http)),
        ]
        last = {k: 0 for k in KINDS}
        last_t = bench.load_started
        try:
            while True:
                now = time.monotonic()
                wait = min(
                    args.interval - (now - bench.load_started) % args.interval, deadline - now
                )
                await asyncio.sleep(max(0.0, wait))
                now = time.monotonic()
                t = round(now - bench.load_started, 1)
                # smaps of every PostgreSQL process: read off the event loop
                sample = {"t": t, **await asyncio.to_thread(memory_sample, bench, redis_client)}
                rates: dict[str, Any] = {}
                parts = []
                for kind in KINDS:
                    tally = load.tallies[kind]
                    done = tally.ok + sum(tally.errors.values())
                    rate = (done - last[kind]) / max(now - last_t, 1e-9)
                    p99 = _pct(tally.window, 99)
                    rates[kind] = {"per_s": round(rate, 1), "p99_ms": p99}
                    last[kind] = done
                    tally.window = []
                    parts.append(f"{kind} {rate:.0f}/s {p99 or 0:.0f}ms")
                sample["requests"] = rates
                samples.append(sample)
                last_t = now
                errors = sum(sum(t.errors.values()) for t in load.tallies.values())
                tiers_done = sum(1 for r in periodic.tier_runs if "outcome" in r)
                sent = sum(c.get("messages", 0) for c in periodic.campaigns)
                memory = " ".join(f"{g} {sample[g]['main']:.0f}" for g in GROUPS)
                console.print(
                    f"{t:5.0f}s {' | '.join(parts)} (p99) | errors {errors} | tiers "
                    f"{tiers_done}/{len(periodic.tier_runs)} | mail {sent:,} | MB {memory}"
                )
                for proc, name in ((bench.server, "loyalty serve"), (bench.worker, "worker")):
                    if proc is not None and proc.poll() is not None:
                        raise BenchError(f"{name} exited with {proc.returncode} during the soak")
                if now >= deadline:
                    break
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        end = {"t": round(time.monotonic() - bench.load_started, 1)}
        end.update(memory_sample(bench, redis_client))
        elapsed = time.monotonic() - bench.load_started
        with console.status("waiting for the running tier evaluation and campaign to finish"):
            await asyncio.gather(*side)
    await asyncio.sleep(3)
    after = {"t": round(time.monotonic() - bench.load_started, 1)}
    after.update(memory_sample(bench, redis_client))
    redis_client.close()
    kinds = {}
    for kind in KINDS:
        tally = load.tallies[kind]
        errors = sum(tally.errors.values())
        total = tally.ok + errors
        kinds[kind] = {
            "requests": total,
            "ok": tally.ok,
            "per_s": round(total / elapsed, 1),
            "p50_ms": _pct(tally.latencies, 50),
            "p99_ms": _pct(tally.latencies, 99),
            "max_ms": _pct(tally.latencies, 100),
            "errors": errors,
            "error_ratio": round(errors / total, 4) if total else 0.0,
            "errors_by": dict(tally.errors),
            "error_samples": tally.samples,
        }
    memory: dict[str, Any] = {}
    for group in GROUPS:
        points = [(s["t"], s[group]["main"]) for s in samples]
        memory[group] = {
            "metric": "PSS" if group == "postgres" else "RSS",
            "start_mb": start[group]["main"],
            "end_mb": end[group]["main"],
            "peak_mb": max(v for _, v in [(0, start[group]["main"]), *points]),
            "after_mb": after[group]["main"],
            "rss_start_mb": start[group]["rss"],
            "rss_end_mb": end[group]["rss"],
            "processes": end[group]["procs"],
            **memory_verdict(points, elapsed),
        }
        if group == "redis":
            memory[group]["used_memory_start_mb"] = start[group].get("used_memory")
            memory[group]["used_memory_end_mb"] = end[group].get("used_memory")
    return {
        "seconds": round(elapsed, 1),
        "kinds": kinds,
        "total_per_s": round(sum(k["requests"] for k in kinds.values()) / elapsed, 1),
        "tier_evaluations": periodic.tier_runs,
        "campaigns": periodic.campaigns,
        "memory": memory,
        "samples": [start, *samples, end, after],
    }


# --- report -------------------------------------------------------------------------------


def print_report(results: dict[str, Any], path: Path) -> None:
    soak_ = results["soak"]
    args = results["parameters"]
    console.print()
    console.print(
        f"[bold]Soak[/]: {soak_['seconds']:.0f} s, {results['data']['members']:,} members, "
        f"concurrency {args['concurrency']}, {args['workers']} web workers; "
        f"{soak_['total_per_s']:.0f} requests/s in all"
    )
    table = Table(title="requests")
    for col in ("kind", "requests", "per s", "p50 ms", "p99 ms", "max ms", "errors", "by"):
        table.add_column(col, justify="left" if col in ("kind", "by") else "right")
    for kind, k in soak_["kinds"].items():
        by = ", ".join(f"{s}: {n}" for s, n in sorted(k["errors_by"].items()))
        table.add_row(
            kind,
            f"{k['requests']:,}",
            f"{k['per_s']:.1f}",
            str(k["p50_ms"]),
            str(k["p99_ms"]),
            str(k["max_ms"]),
            f"{k['errors']:,}",
            by or "-",
        )
    console.print(table)
    runs = soak_["tier_evaluations"]
    ok = [r for r in runs if r.get("outcome") == "ok"]
    console.print(
        f"tier evaluation (arq): {len(runs)} enqueued, {len(ok)} ok"
        + (f", enqueue to done {', '.join(str(r['seconds']) for r in ok)} s" if ok else "")
        + "".join(f"\n  [red]{r['job_id']}: {r.get('outcome')}[/]" for r in runs if r not in ok)
    )
    sends = soak_["campaigns"]
    good = [c for c in sends if c.get("outcome") == "ok"]
    console.print(
        f"campaigns: {len(sends)} sent to {results['extras']['audience']:,} members each, "
        f"{len(good)} fully delivered, {sum(c.get('messages', 0) for c in sends):,} messages"
        + (f", send to settled {', '.join(str(c['seconds']) for c in good)} s" if good else "")
        + "".join(
            f"\n  [red]campaign {c['n']}: {c.get('outcome')} ({c.get('emailed', 0):,} emailed, "
            f"{c.get('capped', 0):,} capped, {c.get('failed', 0):,} failed)[/]"
            for c in sends
            if c not in good
        )
    )
    table = Table(title="memory (MB; PostgreSQL: PSS of its auxiliary processes and our backends)")
    for col in ("process", "start", "end", "peak", "after", "1st half", "2nd half", "slope/min"):
        table.add_column(col, justify="right")
    table.add_column("verdict")
    for group, m in soak_["memory"].items():
        colour = "red" if m["verdict"] == "GROWING" else "green"
        table.add_row(
            group,
            f"{m['start_mb']:.0f}",
            f"{m['end_mb']:.0f}",
            f"{m['peak_mb']:.0f}",
            f"{m['after_mb']:.0f}",
            f"{m.get('first_half_mb', 0):+.1f}",
            f"{m.get('second_half_mb', 0):+.1f}",
            f"{m.get('last_third_mb_per_min', 0):+.2f}",
            f"[{colour}]{m['verdict']}[/]" + (" (short run)" if m.get("short") else ""),
        )
    console.print(table)
    console.print(
        "verdict: GROWING when the last third's slope x 60 min > 2 x margin and the second "
        "half grew by > margin and > half the first half's growth; flat when the second half "
        "grew by <= margin (margin: max(5 MB, 2% of the end value))"
    )
    console.print(f"results: {path}")


def environment_facts(pg_version: str) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "postgresql": pg_version,
        "load_average_at_start": os.getloadavg(),
    }


# --- main ---------------------------------------------------------------------------------


def run(bench: Bench, handler: Any) -> dict[str, Any]:
    args = bench.args
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "parameters": {k: v for k, v in vars(args).items()},
    }
    pg_version = asyncio.run(_postgres_facts(bench))
    results["environment"] = environment_facts(pg_version)
    common.flush_redis(bench.args)
    started = time.monotonic()
    results["data"] = tiers.run_async(prepare_data(bench))
    with console.status(f"migrating {bench.app_db} (nothing to do unless the code moved on)"):
        common.loyalty_cli(bench.env(), "migrate")
    with console.status("points for redeemers, emails for the campaign and the portal"):
        results["extras"] = asyncio.run(seed_extras(bench))
    results["setup_seconds"] = round(time.monotonic() - started, 1)
    console.print(
        f"data ready in {results['setup_seconds']:.0f} s: {len(bench.member_ids):,} members"
    )
    if args.port == 0:
        args.port = common.free_port()
    try:
        with console.status(f"starting loyalty serve --workers {args.workers}"):
            common.start_server(bench)
        with console.status("starting loyalty worker"):
            start_worker(bench)
        with console.status("staff, API key, reward"):
            create_staff_key_reward(bench)
        with console.status(f"signing {len(bench.portal_members)} portal members in"):
            bench.sessions = [portal.sign_in(bench, m) for m in bench.portal_members]
        console.print(
            f"soaking for {args.duration} s: concurrency {args.concurrency}, mix "
            f"{', '.join(f'{k} {v}' for k, v in args.mix.items())}; tier evaluation every "
            f"{args.tier_every:.0f} s, a campaign to {len(bench.audience):,} every "
            f"{args.campaign_every:.0f} s; MB below: web, worker RSS, postgres PSS, redis RSS"
        )
        results["soak"] = asyncio.run(soak(bench, handler))
    except BenchError as exc:
        raise BenchError(
            f"{exc}\n--- server log ---\n{common.tail(bench.server_log)}"
            f"\n--- worker log ---\n{common.tail(bench.worker_log)}"
        ) from None
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


async def _postgres_facts(bench: Bench) -> str:
    """The server's version; the postmaster's pid (its process tree is measured)."""
    try:
        conn = await asyncpg.connect(bench.pg_url("postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"PostgreSQL at {HOST}:{bench.args.pg_port}: {exc}") from None
    try:
        version = await conn.fetchval("SHOW server_version")
        backend = common.proc_stat(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    bench.postmaster = backend.ppid if backend else None
    return version


async def drop_app_db(bench: Bench) -> None:
    conn = await asyncpg.connect(bench.pg_url("postgres"), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{bench.app_db}" WITH (FORCE)')
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, common.interrupt_on_sigterm)
    if importlib.util.find_spec("loyalty") is None:
        console.print("run it in the project: cd /work/main && uv run python bench/soak.py")
        return 2
    procs = common.Processes()
    handler = campaign.CountingHandler()
    try:
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-soak-") as tmp:
            bench = Bench(args, procs, Path(tmp), APP_DB, console=console)
            bench.smtp_port = common.free_port()
            smtp = Controller(handler, hostname=HOST, port=bench.smtp_port)
            smtp.start()
            try:
                results = run(bench, handler)
            finally:
                procs.stop_all()
                smtp.stop()
                if not args.keep_db:
                    try:
                        asyncio.run(drop_app_db(bench))
                    except (OSError, asyncpg.PostgresError) as exc:
                        console.print(f"[yellow]could not drop {bench.app_db}: {exc}[/]")
    except BenchError as exc:
        console.print(f"[red]soak failed:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; what the soak started is stopped[/]")
        return 130
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"soak-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_report(results, path)
    soak_ = results["soak"]
    growing = [g for g, m in soak_["memory"].items() if m["verdict"] == "GROWING"]
    failing = [k for k, v in soak_["kinds"].items() if v["error_ratio"] > MAX_ERROR_RATIO]
    if growing or failing:
        console.print(
            f"[red]GROWING: {', '.join(growing) or 'none'}; over 1% errors: "
            f"{', '.join(failing) or 'none'}[/]"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
