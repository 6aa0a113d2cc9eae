"""The work the benchmarks put on the database and the server: set-based seeds (members as
enrolment writes them, points as an adjustment gives them), load generators run for a set time
with a progress bar, and pgbench. Each takes the run's databases and console through `Bench`
(or as arguments): none is pointed at a database by a global."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from common import SEED_CHUNK, Bench, BenchError, CpuMeter
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

# --- progress and timed load --------------------------------------------------------------


def seed_progress(console: Console, label: str) -> Progress:
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


@contextmanager
def phase_progress(
    console: Console, label: str, seconds: float | None, width: int = 30
) -> Iterator[Callable[[], None]]:
    """A progress bar over a phase (a spinner when its length is unknown); yields the
    function that moves it."""
    with Progress(
        SpinnerColumn(),
        TextColumn(f"{label:<{width}}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(label, total=seconds)
        started = time.monotonic()

        def refresh() -> None:
            if seconds:
                progress.update(task, completed=min(time.monotonic() - started, seconds))

        yield refresh
        progress.update(task, total=seconds or 1, completed=seconds or 1)


def run_timed(
    bench: Bench, argv: list[str], label: str, seconds: float, meter: CpuMeter | None = None
) -> str:
    """Run a load generator for `seconds` with a progress bar (and CPU samples); its output."""
    with tempfile.TemporaryFile() as out, phase_progress(bench.console, label, seconds) as refresh:
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


# --- pgbench ------------------------------------------------------------------------------


def pgbench_init(bench: Bench) -> None:
    scale, database = bench.args.pgbench_scale, bench.pgbench_db
    argv = ["pgbench", "-i", "-q", "-s", str(scale), *bench.pg_cli(), database]
    with bench.console.status(f"pgbench -i -s {scale} {database}"):
        proc = bench.procs.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            output, _ = proc.communicate(timeout=600)
        finally:
            bench.procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"pgbench -i failed:\n{output.decode(errors='replace')}")


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
    """pgbench's built-in tpcb-like script on the run's pgbench database: the ceiling."""
    meter = bench.meter()
    tps, output = pgbench(bench, label, ["-b", "tpcb-like"], bench.pgbench_db, meter)
    latency = re.search(r"latency average = ([\d.]+) ms", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    return {
        "tps": tps,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "failed": int(failed.group(1)) if failed else 0,
        "cpu_cores": meter.cores(),
    }


# --- seeding ------------------------------------------------------------------------------

# What `loyalty.members.service.create_member` writes for a new member, set-based: the
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


async def seed_members(bench: Bench, members_sql: str = SEED_MEMBERS_SQL) -> None:
    """Seed --members members set-based in chunks (`members_sql`: SEED_MEMBERS_SQL or a
    variant with the same parameters), with a progress bar; their ids go to a file."""
    total = bench.args.members
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=5)
    try:
        lowest_tier = None
        if await conn.fetchval("SELECT to_regclass('member_tiers') IS NOT NULL"):
            lowest_tier = await conn.fetchval(
                "SELECT code FROM tier_definitions WHERE enabled ORDER BY rank LIMIT 1"
            )
            if lowest_tier is None:
                raise BenchError("the tier ladder has no switched-on tier to enrol members in")
        with seed_progress(bench.console, "seeding members") as progress:
            task = progress.add_task("seed", total=total)
            for first in range(1, total + 1, SEED_CHUNK):
                last = min(first + SEED_CHUNK - 1, total)
                if lowest_tier is None:
                    await conn.execute(members_sql + SEED_DONE_SQL, first, last)
                else:
                    await conn.execute(members_sql + SEED_TIERS_SQL, first, last, lowest_tier)
                progress.update(task, completed=last)
        await conn.execute("ANALYZE")
        bench.member_ids = [str(row[0]) for row in await conn.fetch("SELECT id FROM members")]
    finally:
        await conn.close()
    bench.members_file.write_text("\n".join(bench.member_ids) + "\n")


# Points for members as an adjustment of +N gives them (loyalty.points.service.adjust,
# ledger.earn with no return window), set-based: one ledger entry (the totals trigger adds it
# to the account's total), one released lot with all of it remaining, and the account's
# available points. $1 members, $2 points, $3 idempotency prefix, $4 the entry's note.
SEED_POINTS_SQL = """
WITH entries AS (
    INSERT INTO points_ledger (id, member, points, kind, cause_type, cause_id,
        idempotency_key, occurred_at, created_at, actor, note)
    SELECT gen_random_uuid(), m, $2, 'adjustment', 'adjustment', $3 || m::text,
           'adjustment:' || $3 || m::text, now() - interval '1 minute', now(), 'bench', $4
    FROM unnest($1::uuid[]) AS m
    RETURNING id, member, points, occurred_at
)
INSERT INTO points_lots (id, member, entry, points, remaining, available_at, expires_at,
    released)
SELECT gen_random_uuid(), member, id, points, points, occurred_at,
       occurred_at + interval '24 months', true
FROM entries
"""
SEED_ACCOUNTS_SQL = """
UPDATE points_accounts
SET available = available + $2, lifetime_earned = lifetime_earned + $2, updated_at = now()
WHERE member = ANY($1::uuid[])
"""


async def seed_points(bench: Bench, ids: list[str], points: int, prefix: str, note: str) -> None:
    """`points` for each of the members, one transaction a chunk (the balance trigger checks
    every account at its commit), with a progress bar; then fresh statistics."""
    conn = await asyncpg.connect(bench.pg_url(bench.app_db), timeout=5)
    try:
        with seed_progress(bench.console, "seeding points  ") as progress:
            task = progress.add_task("points", total=len(ids))
            for first in range(0, len(ids), SEED_CHUNK):
                chunk = ids[first : first + SEED_CHUNK]
                async with conn.transaction():
                    await conn.execute(SEED_POINTS_SQL, chunk, points, prefix, note)
                    await conn.execute(SEED_ACCOUNTS_SQL, chunk, points)
                progress.update(task, completed=first + len(chunk))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
