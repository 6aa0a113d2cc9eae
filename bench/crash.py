"""Crash soak: the crash suite's scenario (tests/reliability/crash.py) for as long as you like.

Real `loyalty serve` and `loyalty worker` processes on their own embedded PostgreSQL (and an
embedded Redis, unless LOYALTY_REDIS_URL is set: then its database 9 is flushed and used),
both in a temporary folder, serve --concurrency clients posting purchases and redemptions.
Every --interval seconds one of web, worker and PostgreSQL is killed with SIGKILL and
started again, in turn, until --duration seconds of load have passed. Then every request
without an answer is sent again with the same key, --resend interrupted requests and as
many others are sent once more (each must be answered with the original), and the database
is checked: acknowledged purchases and redemptions stored exactly once, nothing stored that
was not asked for, the release and tier-event jobs ran once in effect, every balance equals
the sum of its entries and its lots; every PostgreSQL crash has an event's delivery queued
into the outage, which must be delivered once it is back. It prints progress every second
and a summary, and exits 1 if anything was lost or doubled. Every process it starts is
stopped on exit, Ctrl-C or error.

    uv run python bench/crash.py                                  # 120 s, 16 clients, a kill every 10 s
    uv run python bench/crash.py --duration 600 --concurrency 32 --interval 15
    uv run python bench/crash.py --keep                           # keep the folder (logs, data)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loyalty.infrastructure.embedded import EmbeddedRedis
from tests.reliability.crash import CRASHES, Cluster, run_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=120, help="seconds of load, restarts not counted"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--interval", type=float, default=10, help="seconds between kills")
    parser.add_argument("--members", type=int, default=20, help="members the load spreads over")
    parser.add_argument("--retry-seconds", type=float, default=120)
    parser.add_argument("--resend", type=int, default=200, help="answered requests sent again")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    kills = max(len(CRASHES), int(args.duration // args.interval) - 1)

    workdir = Path(tempfile.mkdtemp(prefix="loyalty-crash-"))
    redis = None
    cluster = None
    started = time.monotonic()

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        redis_url = os.environ.get("LOYALTY_REDIS_URL")
        if not redis_url:
            redis = EmbeddedRedis(workdir / "redis")
            redis_url = redis.ensure_running()
        say(f"starting PostgreSQL, web and worker in {workdir}")
        cluster = Cluster(workdir, redis_url)
        cluster.start()
        say(
            f"ready after {time.monotonic() - started:.1f}s; {args.concurrency} clients,"
            f" {kills} kills ({', '.join(CRASHES)} in turn), one every {args.interval:g}s"
        )
        report = asyncio.run(
            run_scenario(
                cluster,
                clients=args.concurrency,
                members=args.members,
                interval=args.interval,
                kills=kills,
                progress=say,
                retry_seconds=args.retry_seconds,
                resend=args.resend,
            )
        )
        say("")
        say(report.summary())
        if args.keep:
            say(f"logs: {workdir}/serve.log, {workdir}/worker.log")
        return 1 if report.problems else 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if cluster is not None:
            cluster.stop()
        if redis is not None and redis.started_here:
            redis.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
