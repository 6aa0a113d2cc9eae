"""Members import benchmark: `loyalty import members` on a generated file against a plain
COPY of the same file plus one set-based de-duplication statement, in the same run.

Generates a CSV of --members rows (default 1,000,000) in a temporary folder, --dup-rate of
them (5%) repeating an earlier member's phone with another name and email (so they merge,
with conflicts), half with opening points. Then, on the system PostgreSQL (127.0.0.1:5432,
user postgres) in its own database `loyalty_bench_import` (dropped and recreated):

1. the ceiling: COPY of the file into an all-text table, then one
   `CREATE TABLE ... AS SELECT DISTINCT ON (phone) ...` keeping each phone's earliest row;
2. the importer: `loyalty import members FILE` in a child process, timed, with its peak RSS
   (from wait4) — memory should stay flat with the file's size.

Prints both times, their ratio and the peak memory, checks the members and ledger, and
writes bench/results/import-<timestamp>.json.

    uv run python bench/import.py [--members 1000000] [--dup-rate 0.05] [--chunk-rows 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from common import HOST, PROJECT_DIR, RESULTS_DIR

APP_DB = "loyalty_bench_import"
HEADER = ["external_id", "name", "phone", "email", "registered_at", "opening_points", "city"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--members", type=int, default=1_000_000, help="rows in the file")
    parser.add_argument("--dup-rate", type=float, default=0.05, help="share of duplicate rows")
    parser.add_argument("--chunk-rows", type=int, default=5000, help="rows per transaction")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def pg_url(args: argparse.Namespace, db: str) -> str:
    return f"postgresql://postgres@{HOST}:{args.pg_port}/{db}"


def generate(path: Path, rows: int, dup_rate: float, seed: int) -> dict[str, int]:
    """Unique members with valid mobile numbers; duplicates reuse an earlier phone."""
    rng = random.Random(seed)
    start = datetime(2015, 1, 1, tzinfo=UTC)
    unique = dups = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for row in range(rows):
            if unique and rng.random() < dup_rate:
                i = rng.randrange(unique)
                dups += 1
                name, email = f"Dup {row}", f"d{row}@example.com"
            else:
                i = unique
                unique += 1
                name, email = f"Member {i}", f"m{i}@example.com"
            phone = f"13{8 + i // 10**8 % 2}{i % 10**8:08d}"
            registered = start + timedelta(minutes=rng.randrange(5_000_000))
            points = rng.randrange(1, 5000) if rng.random() < 0.5 else ""
            out.writerow(
                [f"B{row}", name, phone, email, registered.isoformat(), points, "Shanghai"]
            )
    return {"rows": rows, "unique": unique, "duplicates": dups}


async def recreate(args: argparse.Namespace) -> str:
    conn = await asyncpg.connect(pg_url(args, "postgres"), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{APP_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{APP_DB}"')
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


async def ceiling(args: argparse.Namespace, path: Path) -> dict[str, float]:
    """A plain COPY of the file, then one set-based de-duplication statement."""
    conn = await asyncpg.connect(pg_url(args, APP_DB))
    try:
        await conn.execute(
            "CREATE TABLE plain_rows (external_id text, name text, phone text, email text, "
            "registered_at text, opening_points text, city text)"
        )
        started = time.perf_counter()
        await conn.copy_to_table("plain_rows", source=path, format="csv", header=True)
        copied = time.perf_counter()
        await conn.execute(
            "CREATE TABLE plain_members AS SELECT DISTINCT ON (phone) * FROM plain_rows "
            "ORDER BY phone, registered_at::timestamptz"
        )
        done = time.perf_counter()
        kept = await conn.fetchval("SELECT count(*) FROM plain_members")
        await conn.execute("DROP TABLE plain_rows, plain_members")
    finally:
        await conn.close()
    return {
        "copy_s": copied - started,
        "dedup_s": done - copied,
        "total_s": done - started,
        "kept": kept,
    }


def loyalty_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOYALTY_MODE="production",
        LOYALTY_SECRET_KEY=secrets.token_urlsafe(48),
        LOYALTY_DATABASE_URL=pg_url(args, APP_DB),
        LOYALTY_REDIS_URL=f"redis://{HOST}:{args.redis_port}/13",
        LOYALTY_DATA_DIR=str(workdir / "data"),
        LOYALTY_LOG_LEVEL="WARNING",
        UV_COMPILE_BYTECODE="1",
    )
    return env


def run_import(args: argparse.Namespace, path: Path, env: dict[str, str]) -> dict[str, float]:
    """The importer in a child process: wall time and peak RSS (wait4's ru_maxrss)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loyalty",
            "import",
            "members",
            str(path),
            "--chunk-rows",
            str(args.chunk_rows),
        ],
        env=env,
        cwd=PROJECT_DIR,
    )
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"the import failed with exit code {proc.returncode}")
    return {"total_s": elapsed, "peak_rss_mib": usage.ru_maxrss / 1024}


async def check(args: argparse.Namespace) -> dict[str, int]:
    conn = await asyncpg.connect(pg_url(args, APP_DB))
    try:
        return {
            "members": await conn.fetchval("SELECT count(*) FROM members"),
            "entries": await conn.fetchval("SELECT count(*) FROM points_ledger"),
            "unbalanced_accounts": await conn.fetchval(
                "SELECT count(*) FROM points_accounts a WHERE a.total <> a.available + a.pending "
                "- a.debt OR a.total <> coalesce((SELECT sum(points) FROM points_ledger e "
                "WHERE e.member = a.member), 0)"
            ),
            "conflicts": await conn.fetchval("SELECT count(*) FROM import_conflicts"),
            "errors": await conn.fetchval("SELECT count(*) FROM import_errors"),
        }
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-import-") as tmp:
        workdir = Path(tmp)
        path = workdir / "members.csv"
        print(f"generating {args.members:,} rows ({args.dup_rate:.0%} duplicates) ...", flush=True)
        generated = generate(path, args.members, args.dup_rate, args.seed)
        size = path.stat().st_size
        version = asyncio.run(recreate(args))
        env = loyalty_env(args, workdir)
        subprocess.run(
            [sys.executable, "-m", "loyalty", "migrate"], env=env, cwd=PROJECT_DIR, check=True
        )
        print("ceiling: COPY + one DISTINCT ON statement ...", flush=True)
        plain = asyncio.run(ceiling(args, path))
        print("loyalty import members ...", flush=True)
        imported = run_import(args, path, env)
        facts = asyncio.run(check(args))
    ratio = imported["total_s"] / plain["total_s"]
    results = {
        "at": datetime.now(UTC).isoformat(),
        "args": vars(args),
        "file": {**generated, "bytes": size},
        "ceiling": plain,
        "import": imported,
        "ratio": ratio,
        "rows_per_s": args.members / imported["total_s"],
        "check": facts,
        "postgresql": version,
        "cpus": os.cpu_count(),
    }
    ok = facts["members"] == generated["unique"] and facts["unbalanced_accounts"] == 0
    print(
        f"file: {args.members:,} rows, {generated['duplicates']:,} duplicates, {size / 2**20:.1f} MiB"
    )
    print(
        f"ceiling (COPY {plain['copy_s']:.1f}s + dedup {plain['dedup_s']:.1f}s): "
        f"{plain['total_s']:.1f}s"
    )
    print(
        f"import: {imported['total_s']:.1f}s ({results['rows_per_s']:,.0f} rows/s), "
        f"peak RSS {imported['peak_rss_mib']:.0f} MiB"
    )
    print(f"ratio import / ceiling: {ratio:.1f}x")
    print(
        f"members {facts['members']:,} (expected {generated['unique']:,}), "
        f"entries {facts['entries']:,}, conflicts {facts['conflicts']:,}, "
        f"unbalanced accounts {facts['unbalanced_accounts']}: {'OK' if ok else 'WRONG'}"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"import-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
