"""Crash safety: under a running load of purchases and redemptions, kill -9 the web server,
then the worker, then PostgreSQL, and start each again. Every purchase and redemption a
client saw acknowledged is stored exactly once, every request retried with its key finds
its first attempt instead of making a second, every job ran once in effect, and every
balance equals the sum of its entries (tests/reliability/crash.py holds the scenario and
the checks; bench/crash.py runs it for longer).

Bounded for CI by CRASH_CLIENTS (default 8) and CRASH_INTERVAL (seconds of load before each
kill and after the last, default 3)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from tests.helpers.database import TEST_DATA_DIR
from tests.reliability.crash import Cluster, run_scenario


async def test_acknowledged_work_survives_kill_9_of_web_worker_and_postgres(
    backing_services,
):
    # Under the test data folder, not pytest's tmp_path: every pytest run (another checkout's
    # too) chmods /tmp/pytest-of-<user> back to 0700, which locks out the postgres user a
    # root run starts PostgreSQL as, and .ci/run stops what is left in this folder.
    workdir = Path(tempfile.mkdtemp(prefix="crash-", dir=TEST_DATA_DIR))
    cluster = Cluster(workdir, backing_services["redis_url"])
    log: list[str] = []
    tails = ""
    started = time.monotonic()
    try:
        cluster.start()
        log.append(f"processes ready after {time.monotonic() - started:.1f}s")
        report = await run_scenario(
            cluster,
            clients=int(os.environ.get("CRASH_CLIENTS", "8")),
            members=6,
            interval=float(os.environ.get("CRASH_INTERVAL", "3")),
            progress=log.append,
            retry_seconds=60,
            resend=40,
        )
    except BaseException:
        print("\n".join(log), cluster.tails(), sep="\n")
        raise
    finally:
        tails = cluster.tails()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(line for line in log if "s  " not in line), report.summary(), sep="\n")
    assert [c.target for c in report.crashes] == ["web", "worker", "postgres"]
    # The load really ran across the crashes: work acknowledged, and some of it interrupted.
    assert report.counts["purchases acknowledged"] > 50, report.summary()
    assert report.counts["redemptions acknowledged"] > 5, report.summary()
    assert report.counts["purchases failed at least once"] > 0, report.summary()
    assert report.tier_events > 0, report.summary()
    assert report.problems == [], "\n".join([report.summary(), *log[-30:], tails])
    # A crash shows as 503 (or a dropped connection while the web server is down), never 500.
    assert "500" not in report.statuses, report.summary()
