"""The arq worker: every background job and cron schedule of the platform."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from loyalty.events.jobs import deliver_event, deliver_events, relay_outbox
from loyalty.imports.jobs import run_import
from loyalty.infrastructure import db
from loyalty.infrastructure.runtime import collect_garbage_less_often
from loyalty.jobs.catalogue import JOBS
from loyalty.jobs.service import tracked
from loyalty.marketing.jobs import (
    automatic_offers,
    expiry_warnings,
    refresh_segment_facts,
    retry_offer_deliveries,
    send_offer,
)
from loyalty.points.jobs import expire_points, release_pending_points
from loyalty.reps.jobs import escalate_handovers, plan_follow_ups, reclaim_members
from loyalty.settings import Settings
from loyalty.staff.jobs import prune_expired_tokens
from loyalty.tiers.jobs import evaluate_tiers
from loyalty.webhooks.jobs import send_webhooks

JOB_FUNCTIONS: list[Any] = [
    prune_expired_tokens,
    release_pending_points,
    expire_points,
    evaluate_tiers,
    relay_outbox,
    deliver_event,
    deliver_events,
    reclaim_members,
    plan_follow_ups,
    escalate_handovers,
    send_webhooks,
    send_offer,
    retry_offer_deliveries,
    automatic_offers,
    expiry_warnings,
    refresh_segment_facts,
    run_import,
]
# Every job records its runs (job_runs: the console's jobs page, `loyalty jobs list`).
FUNCTIONS: list[Any] = [tracked(function) for function in JOB_FUNCTIONS]
BY_NAME = {function.__name__: function for function in FUNCTIONS}
# Schedules come from the catalogue (times in LOYALTY_TIMEZONE), which the console shows.
CRON_JOBS = [
    cron(BY_NAME[job.name], run_at_startup=job.run_at_startup, **job.schedule)
    for job in JOBS
    if job.schedule
]


# Redis is unreachable (stopped, restarting, or the connection died).
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
log = logging.getLogger("loyalty.worker")


class LoyaltyWorker(Worker):
    """arq's Worker, which ends (and `loyalty worker` with it) when Redis cannot be reached at
    start or at the first Redis call that fails in its poll loop; this one waits for Redis
    and carries on with the same process.
    Jobs stay in Redis and events in the outbox meanwhile; nothing is run twice for it."""

    _redis_down_since: float | None = None

    async def main(self) -> None:
        # arq gives up (and the process ends) when Redis cannot be reached at start: wait
        # for it instead, as the poll loop does once running.
        while True:
            try:
                await super().main()
                return
            except REDIS_UNAVAILABLE as exc:
                if self._pool is not None:  # it was reached: the failure came later
                    raise
                self._note_redis_down(exc)
                await asyncio.sleep(1)

    def _note_redis_down(self, exc: Exception) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning("Redis unavailable, waiting for it: %s", exc)

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_UNAVAILABLE as exc:
            self._note_redis_down(exc)
            await asyncio.sleep(1)
            return
        if self._redis_down_since is not None:
            down_for = time.monotonic() - self._redis_down_since
            log.warning("Redis is back after %.1fs", down_for)
            self._redis_down_since = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq takes a job slot before the job's Redis calls and keeps it if one fails: give
        # it back, or every outage would cost a slot until the worker runs no job at all.
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return
            running = self.tasks.get(job_id.decode())
            try:
                await super().start_jobs([job_id])
            except REDIS_UNAVAILABLE:
                if self.tasks.get(job_id.decode()) is running:
                    self.job_counter -= 1
                    self.sem.release()
                raise

    async def run_cron(self, n: datetime, delay: float, num_windows: int = 2) -> None:
        # arq moves a cron job to its next time before the enqueue: if the enqueue fails,
        # keep the due time so it is queued once Redis is back (same job id: no repeat).
        due = [(job, job.next_run) for job in self.cron_jobs]
        try:
            await super().run_cron(n, delay, num_windows)
        except REDIS_UNAVAILABLE:
            for job, next_run in due:
                job.next_run = next_run
            raise


async def _startup(ctx: dict[str, Any]) -> None:
    collect_garbage_less_often()
    if db.engine.pool is None:
        await db.start_pool(max_size=10)
        ctx["owns_pool"] = True


async def _shutdown(ctx: dict[str, Any]) -> None:
    if ctx.get("owns_pool"):
        await db.close_pool()


def worker_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for arq's Worker; tests override poll_delay and burst."""
    assert settings.redis_url and settings.database_url, "services must be resolved first"
    db.configure_engine(settings.database_url)
    options: dict[str, Any] = {
        "functions": FUNCTIONS,
        "cron_jobs": CRON_JOBS,
        # No retries of arq's own at start: LoyaltyWorker.main waits for Redis.
        "redis_settings": replace(RedisSettings.from_dsn(settings.redis_url), conn_retries=0),
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "max_jobs": 10,
        "job_timeout": 600,
        "keep_result": 3600,
        "timezone": settings.tz,
    }
    options.update(overrides)
    return options


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    return LoyaltyWorker(**worker_options(settings, **overrides))
