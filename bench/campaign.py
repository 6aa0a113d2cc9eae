"""Campaign benchmark: segment counts, the audience snapshot and offer delivery by email.

Seeds members set-based in SQL (bench/workload.py's seeding, with an email address, a tier
spread over the ladder and, for most of them, consent to email in `contact_preferences`),
serves the app with `loyalty serve` on the local PostgreSQL and Redis, then in one run:

1. segment counts: `POST /api/v1/segments/count?breakdown=true` (what the console's live
   segment builder asks on every change: the count with its breakdown by tier and channel)
   with one filter of every kind the builder offers (tiers, spend, recency, points,
   referrals, birthday month, region, tags, consent, value group, lifecycle stage) and a
   combination, each called repeatedly in turn: p50/p99 per filter and over all calls (and
   the server's own `took_ms`). The seed gives members birthdays, regions and, for three in
   five, one to four purchases over the last two years, so the purchase conditions have
   work to do;
2. the audience snapshot of an approved offer to a large segment, timed through the
   service's own `loyalty.marketing.delivery.snapshot`, against one equivalent hand-written
   `INSERT ... SELECT` into a scratch copy of `offer_audience` (same columns, keys and
   foreign keys), run before and after it (the ceiling is their mean): both times and the
   ratio;
3. delivery: the real `send_offer` job, run by `loyalty worker` (arq, a child process) with
   LOYALTY_SMTP_HOST/PORT pointing at an aiosmtpd server this benchmark runs in-process on a
   free port, which counts the messages. A send to --deliver members and one to a 5x
   smaller audience (each by a fresh worker): messages/s, and the worker's RSS sampled
   every second: start, peak, end, at 20% and 100% of the large send, and whether it grew
   with the audience.

Goals (`--check` exits 1 when one is missed): every filter's count p50 <= 300 ms and p99 <=
1 s; the snapshot <= 2 x the hand-written INSERT ... SELECT; the worker's RSS flat. It
prints figures and ratios, and writes bench/results/campaign-<timestamp>.json. Every
process it starts (server, workers) is stopped on exit, Ctrl-C or error.

    uv run python bench/campaign.py [--members 1000000] [--deliver 20000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    import asyncpg
    import httpx
    import psutil
    from aiosmtpd.controller import Controller
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # not in the project's environment
    sys.exit(f"{exc}: run it in the project: cd /work/main && uv run python bench/campaign.py")

import common
import workload
from common import HOST, RESULTS_DIR, BenchError

APP_DB = "loyalty_bench_campaign"  # its own database: it never drops the earn benchmark's
console = Console(width=None if sys.stdout.isatty() else 110)
SCRATCH = "bench_scratch_audience"
LARGE_TAG, SMALL_TAG = "bench_deliver", "bench_deliver_small"
EMAIL_CONSENT = '{"channels": ["email"], "consents": [{"channel": "email", "granted": true}]}'
NO_CONSENT = '{"channels": ["email"], "consents": [{"channel": "email", "granted": false}]}'

# The shared member seed, with an address, consent to email for four members in five (and
# everyone to be delivered to) and the delivery tags: the first --deliver members carry the
# large send's tag, the next --deliver / 5 the small one's (DELIVER: --deliver, an integer).
SEED_FROM = "NULL, NULL, '{}', '{}', '', '{}', '{}'::jsonb"
SEED_TO = (
    "NULL, 'member' || g || '@bench.example', '{}', '{}', '', "
    f"CASE WHEN g <= DELIVER THEN '{{{LARGE_TAG}}}' "
    f"WHEN g <= DELIVER + DELIVER / 5 THEN '{{{SMALL_TAG}}}' ELSE '{{}}' END::varchar[], "
    f"CASE WHEN g % 5 <> 0 OR g <= DELIVER + DELIVER / 5 THEN '{EMAIL_CONSENT}' "
    f"ELSE '{NO_CONSENT}' END::jsonb"
)
if SEED_FROM not in workload.SEED_MEMBERS_SQL:
    sys.exit("bench/workload.py's member seed changed: update SEED_FROM in bench/campaign.py")
# Goals: each filter's count, the snapshot against its ceiling, the worker's memory.
GOALS = {"count_p50_ms": 300.0, "count_p99_ms": 1000.0, "snapshot_ratio": 2.0}
REGIONS = 30
# What the purchase, birthday and region conditions look at: a birthday and a region for
# everyone; for three members in five, one to four purchases spread over two years.
SEED_ARCHIVE_SQL = f"""
UPDATE members SET
    birthday = date '1950-01-01' + abs(hashtext(id::text)) % 20000,
    address = jsonb_build_object('line1', 'Bench road 1',
                                 'region', 'R' || abs(hashtext(id::text || 'r')) % {REGIONS})
WHERE number >= $1 AND number < $2
"""
SEED_PURCHASES_SQL = """
INSERT INTO purchases (id, external_id, member, occurred_at, store, currency, total,
    returned_amount, points, reversed_points, request_hash, source, created_at)
SELECT gen_random_uuid(), 'bench-' || m.number || '-' || k, m.id,
       now() - make_interval(days => abs(hashtext(m.id::text || k)) % 730),
       'bench', 'CNY', 10 + abs(hashtext(m.id::text || 'a' || k)) % 3000, 0, 0, 0, '', 'bench',
       now()
FROM members m
CROSS JOIN LATERAL generate_series(1, 1 + abs(hashtext(m.id::text)) % 4) AS k
WHERE m.number >= $1 AND m.number < $2 AND abs(hashtext(m.id::text || 'p')) % 5 < 3
"""
# Spread the members over the ladder (the seed enrols everyone in the lowest tier).
SPREAD_TIERS_SQL = """
UPDATE member_tiers SET tier = ($1::text[])[1 + abs(hashtext(member::text)) % cardinality($1)]
"""


# --- arguments ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Segment count latency, audience snapshot time against an equivalent "
        "INSERT ... SELECT, and email delivery throughput with the worker's RSS.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--members", type=int, default=1_000_000, help="members to seed")
    parser.add_argument("--deliver", type=int, default=20_000, help="audience of the measured send")
    parser.add_argument(
        "--count-calls", type=int, default=20, help="calls of each segment count filter"
    )
    parser.add_argument(
        "--send-timeout", type=float, default=1800.0, help="seconds a send may take"
    )
    parser.add_argument("--workers", type=int, default=1, help="web processes (loyalty serve)")
    parser.add_argument("--port", type=int, default=8767, help="port for loyalty serve")
    parser.add_argument("--pg-port", type=int, default=5432, help="local PostgreSQL port")
    parser.add_argument("--pg-user", default="postgres", help="PostgreSQL user (trust auth)")
    parser.add_argument("--redis-port", type=int, default=6379, help="local Redis port")
    parser.add_argument("--redis-db", type=int, default=10, help="Redis database (flushed)")
    parser.add_argument("--log-level", default="WARNING", help="LOYALTY_LOG_LEVEL")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a goal is missed (see GOALS)"
    )
    parser.add_argument(
        "--skip-delivery", action="store_true", help="counts and snapshot only (no sends)"
    )
    args = parser.parse_args(argv)
    if min(args.members, args.count_calls, args.workers) < 1 or args.deliver < 5:
        parser.error("--members, --count-calls, --workers at least 1; --deliver at least 5")
    if args.deliver + args.deliver // 5 > args.members:
        parser.error("--members must be at least 1.2 x --deliver")
    if args.members > 899_999_999:
        parser.error("--members is at most 899,999,999 (ten-digit member numbers)")
    return args


# --- the run's context --------------------------------------------------------------------


@dataclass
class Bench(common.Bench):
    token: str = ""
    approver_token: str = ""  # another admin: an offer's author cannot approve it
    tiers: list[str] = field(default_factory=list)
    smtp_port: int = 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class CountingHandler:
    """aiosmtpd handler: counts the messages, notes when each arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        with self.lock:
            self.count += 1
            self.first = self.first or now
            self.last = now
        return "250 OK"

    def reset(self) -> None:
        with self.lock:
            self.count, self.first, self.last = 0, 0.0, 0.0


# --- setup --------------------------------------------------------------------------------


async def seed(bench: Bench) -> None:
    """The shared chunked seed with this benchmark's statement, then the tiers spread."""
    deliver = bench.args.deliver
    statement = SEED_TO.replace("DELIVER", str(deliver))
    await workload.seed_members(bench, workload.SEED_MEMBERS_SQL.replace(SEED_FROM, statement))
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=5)
    try:
        bench.tiers = [
            r["code"]
            for r in await conn.fetch(
                "SELECT code FROM tier_definitions WHERE enabled ORDER BY rank"
            )
        ]
        await conn.execute(SPREAD_TIERS_SQL, bench.tiers)
        with console.status("birthdays, regions and purchases"):
            # Member numbers are ten digits from 1000000010 up, in chunks of 10,000,000.
            for low in range(
                1_000_000_000, 1_000_000_000 + 10 * (bench.args.members + 1), 2_000_000
            ):
                high = str(low + 2_000_000)
                await conn.execute(SEED_ARCHIVE_SQL, str(low), high)
                await conn.execute(SEED_PURCHASES_SQL, str(low), high)
        # As autovacuum would leave them after the updates: no dead rows, a visibility map.
        await conn.execute("VACUUM ANALYZE")
        facts = await conn.fetchrow(
            f"""
            SELECT count(*) AS members,
                   count(*) FILTER (WHERE contact_preferences->'consents' @>
                       '[{{"channel": "email", "granted": true}}]') AS email_consent,
                   count(*) FILTER (WHERE tags @> '{{{LARGE_TAG}}}') AS large,
                   count(*) FILTER (WHERE tags @> '{{{SMALL_TAG}}}') AS small
            FROM members
            """
        )
    finally:
        await conn.close()
    if facts["members"] != bench.args.members or facts["large"] != deliver:
        raise BenchError(f"the seed is not what was asked for: {dict(facts)}")
    console.print(
        f"seeded {facts['members']:,} members over tiers {', '.join(bench.tiers)}; "
        f"{facts['email_consent']:,} consent to email"
    )


def sign_in(bench: Bench) -> None:
    bench.token = admin_token(bench, f"bench-{bench.run_id}")
    bench.approver_token = admin_token(bench, f"bench-{bench.run_id}-approver")


def admin_token(bench: Bench, username: str) -> str:
    output = common.loyalty_cli(
        bench.env(), "create-staff", "--username", username, "--role", "admin"
    )
    match = re.search(r"password \(shown once\): (\S+)", output)
    if match is None:
        raise BenchError(f"no password in the output of loyalty create-staff:\n{output}")
    login = {"username": username, "password": match.group(1)}
    with httpx.Client(base_url=bench.base_url, timeout=30) as client:
        return common.expect(client.post("/api/v1/auth/tokens", json=login), 201, "signing in")[
            "token"
        ]


def approved_offer(client: httpx.Client, bench: Bench, name: str, flt: dict[str, Any]) -> str:
    """A saved segment with the filter and an approved offer to it; the offer's id."""
    headers = bench.headers()
    body = {"name": name, "description": "bench", "filter": flt}
    segment = common.expect(client.post("/api/v1/segments", json=body, headers=headers), 201, name)
    start = datetime.now(UTC) - timedelta(minutes=1)
    offer = {
        "title_en": f"Bench {name}",
        "title_zh": "基准测试",
        "body_en": "Twice the points on everything this week.",
        "body_zh": "本周消费双倍积分。",
        "valid_from": start.isoformat(),
        "valid_until": (start + timedelta(days=7)).isoformat(),
        "segment_id": segment["id"],
    }
    created = common.expect(
        client.post("/api/v1/offers", json=offer, headers=headers), 201, "offer"
    )
    url = f"/api/v1/offers/{created['id']}/approve"
    approver = {"Authorization": f"Bearer {bench.approver_token}"}
    common.expect(client.post(url, headers=approver), 200, "approving")
    return created["id"]


# --- 1. segment counts --------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def run_counts(bench: Bench) -> dict[str, Any]:
    tiers = bench.tiers
    filters = {
        "everyone": {},
        "tiers": {"tiers": tiers[-1:]},
        "spend": {"spend_min": "1000", "window_days": 365},
        "recency": {"days_since_purchase_max": 90},
        "points": {"points_min": 0, "points_max": 100},
        "referrals": {"referrals_min": 1},
        "birthday month": {"birthday_months": [3, 4]},
        "region": {"regions": ["R1", "R2"]},
        "tags": {"tags": [LARGE_TAG]},
        "consent": {"consents": ["email"]},
        "value group": {"value_groups": ["valuable", "declining"]},
        "lifecycle stage": {"lifecycle_stages": ["regular"]},
        "two tiers + email + spend": {
            "tiers": tiers[-2:],
            "consents": ["email"],
            "spend_min": "500",
        },
    }
    url = "/api/v1/segments/count?breakdown=true"
    results: dict[str, Any] = {"filters": {}}
    every: list[float] = []
    with httpx.Client(base_url=bench.base_url, timeout=120, headers=bench.headers()) as client:
        for name, flt in filters.items():  # one unmeasured call each: plans and caches
            common.expect(client.post(url, json=flt), 200, f"count {name}")
        timings: dict[str, list[float]] = {name: [] for name in filters}
        server: dict[str, list[float]] = {name: [] for name in filters}
        members: dict[str, int] = {}
        as_of: dict[str, str | None] = {}
        with console.status("segment counts"):
            for _ in range(bench.args.count_calls):
                for name, flt in filters.items():
                    started = time.perf_counter()
                    answer = client.post(url, json=flt)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    body = common.expect(answer, 200, f"count {name}")
                    server[name].append(body["took_ms"])
                    members[name] = body["members"]
                    as_of[name] = body.get("as_of")  # None: counted from the live tables
    for name in filters:
        every += timings[name]
        results["filters"][name] = {
            "filter": filters[name],
            "members": members[name],
            "p50_ms": round(statistics.median(timings[name]), 1),
            "p99_ms": round(percentile(timings[name], 99), 1),
            "server_p50_ms": round(statistics.median(server[name]), 1),
            "from_facts": as_of[name] is not None,
        }
    results["floor"] = asyncio.run(count_floor(bench))
    results["all"] = {
        "calls": len(every),
        "p50_ms": round(statistics.median(every), 1),
        "p99_ms": round(percentile(every, 99), 1),
    }
    return results


# The floor: the cheapest statement that looks at every active member once, straight to
# PostgreSQL (no HTTP, no filter), timed as often as each filter in the same run.
FLOOR_SQL = "SELECT count(*) FROM members m WHERE m.status = 'active'"


async def count_floor(bench: Bench) -> dict[str, Any]:
    conn = await asyncpg.connect(
        bench.pg_url(bench.app_db), timeout=5, server_settings={"jit": "off"}
    )
    try:
        await conn.fetchval(FLOOR_SQL)
        timings = []
        for _ in range(bench.args.count_calls):
            started = time.perf_counter()
            await conn.fetchval(FLOOR_SQL)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return {
        "sql": FLOOR_SQL,
        "p50_ms": round(statistics.median(timings), 1),
        "p99_ms": round(percentile(timings, 99), 1),
    }


# --- 2. the audience snapshot -------------------------------------------------------------


SCRATCH_INSERT_SQL = f"""
INSERT INTO {SCRATCH} (offer, member)
SELECT $1, m.id FROM members m
WHERE m.status = 'active'
  AND m.contact_preferences->'consents' @> '[{{"channel": "email", "granted": true}}]'
"""


async def scratch_insert(conn: asyncpg.Connection, offer_id: str) -> tuple[float, int]:
    await conn.execute(f"TRUNCATE {SCRATCH}")
    await conn.execute("CHECKPOINT")
    started = time.perf_counter()
    status = await conn.execute(SCRATCH_INSERT_SQL, offer_id)
    return time.perf_counter() - started, int(status.split()[-1])


async def run_snapshot(bench: Bench, offer_id: str) -> dict[str, Any]:
    """The service's snapshot in this process (its own pool and settings, like the worker's)
    between two runs of the hand-written statement."""
    os.environ.update(bench.env())
    from loyalty.infrastructure import db
    from loyalty.marketing import delivery
    from loyalty.settings import reset_settings

    reset_settings()
    db.configure_engine(bench.pg_url(bench.app_db))
    conn = await asyncpg.connect(
        bench.pg_url(bench.app_db), timeout=5, server_settings={"jit": "off"}
    )
    await db.start_pool(max_size=2)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        # The same columns, defaults, keys and indexes as offer_audience, and its foreign keys.
        await conn.execute(f"CREATE TABLE {SCRATCH} (LIKE offer_audience INCLUDING ALL)")
        for (definition,) in await conn.fetch(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'offer_audience'::regclass AND contype = 'f'"
        ):
            await conn.execute(f"ALTER TABLE {SCRATCH} ADD {definition}")
        with console.status("hand-written INSERT ... SELECT (before)"):
            before, rows_before = await scratch_insert(conn, offer_id)
        await conn.execute("CHECKPOINT")
        with console.status("the service's snapshot"):
            started = time.perf_counter()
            size = await delivery.snapshot(offer_id)
            service = time.perf_counter() - started
        with console.status("hand-written INSERT ... SELECT (after)"):
            after, rows_after = await scratch_insert(conn, offer_id)
        await conn.execute(f"DROP TABLE {SCRATCH}")
        # Sent to nobody: the audience stays for the results, the offer is marked sent.
        await conn.execute(
            "UPDATE offers SET status = 'sent', sent_at = now() WHERE id = $1", offer_id
        )
    finally:
        await db.close_pool()
        await conn.close()
    if not size == rows_before == rows_after:
        raise BenchError(f"audiences differ: service {size}, statement {rows_before}/{rows_after}")
    ceiling = statistics.mean([before, after])
    return {
        "audience": size,
        "service_s": round(service, 3),
        "statement_before_s": round(before, 3),
        "statement_after_s": round(after, 3),
        "statement_s": round(ceiling, 3),
        "ratio": round(service / ceiling, 2),
    }


# --- 3. delivery --------------------------------------------------------------------------


def rss_of(proc: psutil.Process) -> int:
    """Resident bytes of the worker and any children."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_send(
    bench: Bench, handler: CountingHandler, offer_id: str, audience: int, label: str
) -> dict[str, Any]:
    """A fresh `loyalty worker`, the send queued through the API; until every message came."""
    env = bench.env()
    env.update(LOYALTY_SMTP_HOST=HOST, LOYALTY_SMTP_PORT=str(bench.smtp_port))
    log = bench.workdir / f"worker-{label}.log"
    handler.reset()
    with log.open("ab") as out:
        worker = bench.procs.start(
            [sys.executable, "-m", "loyalty", "worker"],
            env=env,
            cwd=common.PROJECT_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    samples: list[tuple[float, int, int]] = []  # (seconds since queued, messages, RSS)
    try:
        proc = psutil.Process(worker.pid)
        time.sleep(3)  # start-up: imports, pool, cron jobs at startup
        if worker.poll() is not None:
            raise BenchError(f"loyalty worker exited:\n{common.tail(log)}")
        start_rss = rss_of(proc)
        with httpx.Client(base_url=bench.base_url, timeout=30) as client:
            url = f"/api/v1/offers/{offer_id}/send"
            common.expect(client.post(url, headers=bench.headers()), 202, "queueing the send")
        queued = time.monotonic()
        with console.status(f"{label} send: 0 / {audience:,} messages") as status:
            while handler.count < audience:
                if worker.poll() is not None:
                    raise BenchError(f"loyalty worker exited:\n{common.tail(log)}")
                if time.monotonic() - queued > bench.args.send_timeout:
                    raise BenchError(f"{label} send: {handler.count:,} of {audience:,} sent")
                samples.append((time.monotonic() - queued, handler.count, rss_of(proc)))
                status.update(f"{label} send: {handler.count:,} / {audience:,} messages")
                time.sleep(1)
        done = time.monotonic()
        samples.append((done - queued, handler.count, rss_of(proc)))
        time.sleep(2)  # the last batch's bookkeeping; then the idle worker's RSS
        end_rss = rss_of(proc)
    finally:
        bench.procs.stop(worker)
    peak = max([start_rss, end_rss, *(s[2] for s in samples)])

    def rss_at(fraction: float) -> int:
        return next(s[2] for s in samples if s[1] >= fraction * audience)

    return {
        "audience": audience,
        "messages": handler.count,
        "seconds_from_queued": round(done - queued, 2),
        "seconds_first_to_last": round(handler.last - handler.first, 2),
        "messages_per_s": round(audience / (done - queued), 1),
        "messages_per_s_sending": round(
            (handler.count - 1) / max(handler.last - handler.first, 1e-9), 1
        ),
        "rss_mb": {
            "start": round(start_rss / 2**20, 1),
            "at_20pct": round(rss_at(0.2) / 2**20, 1),
            "at_100pct": round(rss_at(1.0) / 2**20, 1),
            "peak": round(peak / 2**20, 1),
            "end": round(end_rss / 2**20, 1),
        },
        "samples": [(round(t, 1), n, round(r / 2**20, 1)) for t, n, r in samples],
    }


async def delivery_check(bench: Bench, offer_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=5)
    try:
        row = await conn.fetchrow(
            """
            SELECT o.status, count(d.*) AS deliveries,
                   count(*) FILTER (WHERE d.status = 'sent' AND d.channel = 'email') AS sent,
                   count(*) FILTER (WHERE d.status <> 'sent') AS other
            FROM offers o LEFT JOIN offer_deliveries d ON d.offer = o.id
            WHERE o.id = $1 GROUP BY o.status
            """,
            offer_id,
        )
    finally:
        await conn.close()
    return dict(row)


def run_delivery(bench: Bench, small_id: str, large_id: str) -> dict[str, Any]:
    handler = CountingHandler()
    bench.smtp_port = common.free_port()
    controller = Controller(handler, hostname=HOST, port=bench.smtp_port)
    controller.start()
    try:
        large_n = bench.args.deliver
        small = run_send(bench, handler, small_id, large_n // 5, "small")
        large = run_send(bench, handler, large_id, large_n, "large")
    finally:
        controller.stop()
    for name, offer_id, result in (("small", small_id, small), ("large", large_id, large)):
        check = asyncio.run(delivery_check(bench, offer_id))
        result["check"] = check
        if check["sent"] != result["audience"] or result["messages"] != result["audience"]:
            raise BenchError(f"{name} send: {result['messages']:,} messages, {check}")
    # Flat: the large send's peak within 10% (or 10 MB) of the small one's, and its RSS at the
    # end of the send within the same margin of its RSS at 20%.
    a, b = small["rss_mb"]["peak"], large["rss_mb"]["peak"]
    c, d = large["rss_mb"]["at_20pct"], large["rss_mb"]["at_100pct"]
    flat = b - a <= max(10.0, 0.1 * a) and d - c <= max(10.0, 0.1 * c)
    return {"small": small, "large": large, "rss_flat": flat}


# --- report -------------------------------------------------------------------------------


def print_report(args: argparse.Namespace, results: dict[str, Any], path: Path) -> None:
    counts = results["counts"]
    table = Table(title=f"segment counts: {args.members:,} members, {args.count_calls} calls each")
    for name, justify in (
        ("filter", "left"),
        ("members", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("server p50 ms", "right"),
        ("from", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for name, row in counts["filters"].items():
        table.add_row(
            name,
            f"{row['members']:,}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['server_p50_ms']:.1f}",
            "facts" if row.get("from_facts") else "live",
        )
    table.add_row(
        f"all {counts['all']['calls']} calls",
        "",
        *(f"{counts['all'][k]:.1f}" for k in ("p50_ms", "p99_ms")),
        "",
        "",
    )
    floor = counts["floor"]
    table.add_row(
        "floor: count(*) of members, no HTTP",
        "",
        f"{floor['p50_ms']:.1f}",
        f"{floor['p99_ms']:.1f}",
        "",
        "",
    )
    console.print(table)
    rebuild = results["facts_rebuild"]
    console.print(
        f"segment facts rebuild: {rebuild['rebuild_s']} s"
        f" ({rebuild['command_s']} s with the command's start)"
    )
    snap = results["snapshot"]
    console.print(
        f"snapshot of {snap['audience']:,} members: service {snap['service_s']:.2f} s, "
        f"INSERT ... SELECT {snap['statement_s']:.2f} s (before {snap['statement_before_s']:.2f}"
        f", after {snap['statement_after_s']:.2f}): ratio {snap['ratio']:.2f}"
    )
    table = Table(title="goals")
    table.add_column("goal", justify="left")
    table.add_column("met", justify="left")
    for name, met in results["goals"].items():
        table.add_row(name, {True: "yes", False: "[red]no[/]", None: "not measured"}[met])
    send = results.get("delivery")
    if send is None:
        console.print(table)
        console.print(f"results: {path}")
        return
    goals_table = table
    table = Table(title="delivery by email (send_offer in loyalty worker, local SMTP server)")
    for name in (
        "send",
        "messages",
        "msg/s",
        "msg/s sending",
        "RSS MB start / 20% / 100% / peak / end",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    for name in ("small", "large"):
        r = send[name]
        rss = r["rss_mb"]
        table.add_row(
            name,
            f"{r['messages']:,}",
            f"{r['messages_per_s']:,.0f}",
            f"{r['messages_per_s_sending']:,.0f}",
            f"{rss['start']:.0f} / {rss['at_20pct']:.0f} / {rss['at_100pct']:.0f} / "
            f"{rss['peak']:.0f} / {rss['end']:.0f}",
        )
    console.print(table)
    console.print(
        "worker RSS: "
        + (
            "flat (does not grow with the audience)"
            if send["rss_flat"]
            else "[yellow]grows with the audience[/]"
        )
    )
    console.print(goals_table)
    console.print(f"results: {path}")


# --- main ---------------------------------------------------------------------------------


def run(bench: Bench) -> dict[str, Any]:
    args = bench.args
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
    with console.status("database, Redis, migrations"):
        conn_version = asyncio.run(common.recreate_databases(bench, bench.app_db))
        common.flush_redis(bench.args)
        common.loyalty_cli(bench.env(), "migrate")
    started = time.monotonic()
    asyncio.run(seed(bench))
    results["seed_s"] = round(time.monotonic() - started, 1)
    # The segment facts the counts read, built once now (the worker rebuilds them every 5
    # minutes): the rebuild's own time, as the job reports it, and the command's.
    with console.status("rebuilding the segment facts"):
        started = time.monotonic()
        out = common.loyalty_cli(bench.env(), "jobs", "run", "refresh_segment_facts", timeout=1800)
        took = re.search(r'"took_ms": (\d+)', out)
        results["facts_rebuild"] = {
            "command_s": round(time.monotonic() - started, 1),
            "rebuild_s": round(int(took.group(1)) / 1000, 1) if took else None,
        }
    results["parameters"] = vars(args)
    results["environment"] = common.environment_facts(conn_version, tools={})
    try:
        with console.status(f"starting loyalty serve --workers {args.workers}"):
            common.start_server(bench)
        sign_in(bench)
        results["counts"] = run_counts(bench)
        with httpx.Client(base_url=bench.base_url, timeout=600) as client:
            big = approved_offer(client, bench, "email consent", {"consents": ["email"]})
            small = approved_offer(client, bench, "small", {"tags": [SMALL_TAG]})
            large = approved_offer(client, bench, "large", {"tags": [LARGE_TAG]})
        results["snapshot"] = asyncio.run(run_snapshot(bench, big))
        if not args.skip_delivery:
            results["delivery"] = run_delivery(bench, small, large)
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- server log ---\n{common.tail(bench.server_log)}") from None
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, common.interrupt_on_sigterm)
    procs = common.Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-campaign-") as tmp:
            try:
                results = run(Bench(args, procs, Path(tmp), APP_DB, console=console))
            finally:
                procs.stop_all()
    except BenchError as exc:
        console.print(f"[red]benchmark failed:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; what the benchmark started is stopped[/]")
        return 130
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"campaign-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["goals"] = goals(results)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_report(args, results, path)
    missed = [name for name, met in results["goals"].items() if met is False]
    if missed:
        console.print(f"[yellow]goals missed:[/] {', '.join(missed)}")
    if args.check:
        return 1 if missed else 0
    return 0 if results.get("delivery", {}).get("rss_flat", True) else 1


def goals(results: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal met (True), missed (False) or not measured (None)."""
    met: dict[str, bool | None] = {}
    for name, row in results["counts"]["filters"].items():
        met[f"count {name}: p50 <= {GOALS['count_p50_ms']:.0f} ms"] = (
            row["p50_ms"] <= GOALS["count_p50_ms"]
        )
        met[f"count {name}: p99 <= {GOALS['count_p99_ms']:.0f} ms"] = (
            row["p99_ms"] <= GOALS["count_p99_ms"]
        )
    met[f"snapshot <= {GOALS['snapshot_ratio']:.0f} x INSERT ... SELECT"] = (
        results["snapshot"]["ratio"] <= GOALS["snapshot_ratio"]
    )
    delivery = results.get("delivery")
    met["worker RSS flat through the send"] = delivery["rss_flat"] if delivery else None
    return met


if __name__ == "__main__":
    sys.exit(main())
