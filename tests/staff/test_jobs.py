"""Staff background jobs, run by a real arq worker against the real Redis."""

from __future__ import annotations

from datetime import timedelta

from loyalty.infrastructure.clock import now
from loyalty.staff.tables import StaffToken


async def test_prune_job_deletes_old_tokens_once_and_keeps_live_ones(app, settings, bearer):
    from loyalty.worker import create_worker

    await bearer("rep")  # a live token
    await bearer("rep")
    old = await StaffToken.select(StaffToken.id).first()
    await StaffToken.update({StaffToken.expires_at: now() - timedelta(days=30)}).where(
        StaffToken.id == old["id"]
    )

    redis = app.state.redis
    await redis.enqueue_job("prune_expired_tokens", _job_id="prune-test-1")
    await redis.enqueue_job("prune_expired_tokens", _job_id="prune-test-2")
    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker.jobs_complete == 2 and worker.jobs_failed == 0
    remaining = await StaffToken.select(StaffToken.id)
    assert len(remaining) == 1 and remaining[0]["id"] != old["id"]
