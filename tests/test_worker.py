"""The worker outlives a Redis outage without losing job slots or cron runs, and waits for
a Redis that is down when it starts (the outage itself, against real processes:
tests/reliability/test_redis_outage.py)."""

from __future__ import annotations

from datetime import datetime

import pytest
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError


@pytest.fixture
async def cut_off_worker(settings, tmp_path):
    """A worker whose Redis is gone (nothing listens on its socket)."""
    from loyalty.worker import create_worker

    worker = create_worker(settings, poll_delay=0.01)
    worker._pool = ArqRedis.from_url(f"unix://{tmp_path}/gone.sock", socket_connect_timeout=1)
    try:
        yield worker
    finally:
        await worker._pool.aclose()


async def test_a_poll_without_redis_waits_instead_of_ending_the_worker(cut_off_worker):
    await cut_off_worker._poll_iteration()  # arq's own raises, and the worker process ends
    assert cut_off_worker._redis_down_since is not None


async def test_a_job_start_that_meets_no_redis_gives_its_slot_back(cut_off_worker):
    free = cut_off_worker.sem._value
    for _ in range(cut_off_worker.max_jobs + 2):
        with pytest.raises(RedisConnectionError):
            await cut_off_worker.start_jobs([b"some-job"])
    assert cut_off_worker.job_counter == 0
    assert cut_off_worker.sem._value == free


async def test_a_cron_run_that_meets_no_redis_stays_due(cut_off_worker):
    due = {job.name: job.next_run for job in cut_off_worker.cron_jobs}
    with pytest.raises(RedisConnectionError):
        await cut_off_worker.run_cron(datetime.now(cut_off_worker.timezone), 0.5)
    assert {job.name: job.next_run for job in cut_off_worker.cron_jobs} == due


async def test_a_worker_started_while_redis_is_down_waits_for_it(settings, tmp_path):
    import asyncio
    from dataclasses import replace

    from loyalty.infrastructure.embedded import EmbeddedRedis
    from loyalty.worker import create_worker

    redis = EmbeddedRedis(tmp_path / "redis")  # not started yet
    worker = create_worker(
        replace(settings, redis_url=redis.url()), burst=True, poll_delay=0.01, cron_jobs=[]
    )
    running = asyncio.create_task(worker.main())
    try:
        # arq alone gives up after 5 attempts a second apart, and the process ends.
        await asyncio.sleep(6)
        assert not running.done(), running.exception()
        redis.ensure_running()
        await asyncio.wait_for(running, 20)  # connected, found no job, done (burst)
        assert worker._redis_down_since is None, "it did not notice Redis came back"
    finally:
        running.cancel()
        await worker.close()
        redis.stop()


def test_event_subscribers_are_one_table():
    """Every subscriber is in loyalty.events.jobs.SUBSCRIBERS (nothing registers itself on
    import), and every topic a webhook may subscribe to reaches the webhook fan-out."""
    from loyalty.events.jobs import SUBSCRIBERS
    from loyalty.referrals import service as referrals
    from loyalty.reps import service as reps
    from loyalty.tiers import service as tiers
    from loyalty.webhooks import service as webhooks
    from loyalty.webhooks.schemas import TOPICS

    assert all(webhooks.fan_out in SUBSCRIBERS[topic] for topic in TOPICS)
    assert set(SUBSCRIBERS) == set(TOPICS)
    assert tiers.tell_the_member in SUBSCRIBERS["tier.changed"]
    assert reps.flag_outgrown_rep in SUBSCRIBERS["tier.changed"]
    assert referrals.tell_the_member in SUBSCRIBERS["referral.rewarded"]
