"""`loyalty jobs list` and `loyalty jobs run NAME` against the test database: every job with
its schedule and last run; a run here is recorded like the worker's; unknown or queued-only
jobs are refused."""

from __future__ import annotations

import os
import subprocess
import sys

from loyalty.jobs import service as jobs


def loyalty(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loyalty", *args],
        env={**os.environ, "PICCOLO_CONF": "loyalty.piccolo_conf"},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


async def test_run_a_job_then_list_shows_its_last_run(app):
    ran = loyalty("jobs", "run", "evaluate_tiers")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("evaluate_tiers: ok ") and '"members": 0' in ran.stdout
    [run] = await jobs.runs("evaluate_tiers")
    assert run.outcome == "ok" and run.trigger == "command line"
    listed = loyalty("jobs", "list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert set(lines) == {j.name for j in jobs.JOBS}
    assert "daily at 01:00" in lines["evaluate_tiers"] and " ok " in lines["evaluate_tiers"]
    assert "never run" in lines["expire_points"]


async def test_unknown_and_queued_only_jobs_are_refused(app):
    unknown = loyalty("jobs", "run", "make_coffee")
    assert unknown.returncode != 0 and "no job make_coffee" in unknown.stderr
    queued = loyalty("jobs", "run", "run_import")
    assert queued.returncode != 0 and "cannot run by hand" in queued.stderr
    assert await jobs.runs("run_import") == []


def test_the_worker_runs_the_catalogue():
    """Every worker function is in the catalogue, and every scheduled one runs on its cron."""
    from loyalty.worker import CRON_JOBS, FUNCTIONS

    names = {f.__name__ for f in FUNCTIONS}
    assert names == {j.name for j in jobs.JOBS}
    assert {c.name for c in CRON_JOBS} == {f"cron:{j.name}" for j in jobs.JOBS if j.schedule}
