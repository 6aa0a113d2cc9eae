"""The record of job runs never changes what a job does: a job whose run cannot be recorded
(no database) still runs, and its own Retry reaches arq."""

from __future__ import annotations

import pytest
from arq import Retry

from loyalty.jobs import service as jobs


async def test_a_job_runs_and_retries_when_its_run_cannot_be_recorded(app, monkeypatch):
    async def no_database(*args):
        raise OSError("connection refused")

    monkeypatch.setattr(jobs, "_start", no_database)
    calls = []

    async def deliver_event(ctx, event_id):
        calls.append(event_id)
        raise Retry(defer=5)

    with pytest.raises(Retry):
        await jobs.tracked(deliver_event)({"job_id": "x"}, "e1")
    assert calls == ["e1"]
    assert await jobs.runs("deliver_event") == []


async def test_each_outcome_is_recorded_and_old_runs_are_pruned(app):
    async def relay_outbox(ctx):
        return 3

    for _ in range(jobs.KEEP_RUNS + 5):
        assert await jobs.tracked(relay_outbox)({"job_id": "cron:relay_outbox:1"}) == 3
    runs = await jobs.runs("relay_outbox", limit=1000)
    assert len(runs) == jobs.KEEP_RUNS
    assert runs[0].outcome == "ok" and runs[0].result == {"result": 3}
    assert runs[0].trigger == "schedule"
