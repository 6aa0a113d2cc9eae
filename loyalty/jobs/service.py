"""Job runs: the wrapper the worker puts around every job records each run (start, end,
outcome, the counts the job returned), and "run now" queues a job under a job id, so a
second click or a second command with the same key runs it once."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec
from arq import Retry

from loyalty.errors import InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.infrastructure.i18n import N_
from loyalty.jobs.catalogue import BY_NAME, JOBS, Job

KEEP_RUNS = 50  # per job: the page shows the newest; the frequent jobs would grow without end
log = logging.getLogger("loyalty.jobs")
TRIGGERS = {"cron": "schedule", "console": "console", "cli": "command line"}


class Run(msgspec.Struct):
    id: UUID
    job: str
    job_id: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # running | ok | failed | retry
    result: Any
    error: str

    @property
    def trigger(self) -> str:
        """schedule, console, command line or queue: read from the arq job id's prefix."""
        prefix = (self.job_id or "").split(":", 1)[0]
        return TRIGGERS.get(prefix, "queue")

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 2)


class JobState(msgspec.Struct):
    job: Job
    last: Run | None


def job(name: str) -> Job:
    found = BY_NAME.get(name)
    if found is None:
        raise NotFound(N_("no such job"))
    return found


def plain_result(result: Any) -> Any:
    """What a job returned, as stored: counts stay counts, anything else its text."""
    if isinstance(result, int | float | str | bool) or result is None:
        return {"result": result}
    try:
        return msgspec.to_builtins(result)
    except TypeError:
        return {"result": str(result)[:500]}


async def _start(name: str, job_id: str | None) -> UUID:
    async with db.connection() as conn:
        return await conn.fetchval(
            """
            INSERT INTO job_runs (id, job, job_id, started_at, outcome, error)
            VALUES (gen_random_uuid(), $1, $2, now(), 'running', '') RETURNING id
            """,
            name,
            job_id,
        )


async def _finish(run_id: UUID, name: str, outcome: str, result: Any, error: str) -> None:
    async with db.connection() as conn:
        await conn.execute(
            """
            UPDATE job_runs SET finished_at = now(), outcome = $2, result = $3::jsonb,
                error = $4
            WHERE id = $1
            """,
            run_id,
            outcome,
            msgspec.json.encode(result).decode() if result is not None else None,
            error[:2000],
        )
        # Keep the newest runs of this job only.
        await conn.execute(
            """
            DELETE FROM job_runs WHERE job = $1 AND started_at < (
                SELECT started_at FROM job_runs WHERE job = $1
                ORDER BY started_at DESC OFFSET $2 LIMIT 1)
            """,
            name,
            KEEP_RUNS - 1,
        )


def tracked(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`function` (an arq job) recording each run in job_runs. arq knows jobs by qualified
    name: the wrapper keeps the job's."""
    name = function.__name__

    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # Recording never changes what the job does: without a database the job still runs
        # and decides itself (deliver_event, for one, asks arq to retry).
        try:
            run_id: UUID | None = await _start(name, ctx.get("job_id"))
        except Exception:
            log.warning("run of %s not recorded", name, exc_info=True)
            run_id = None
        try:
            result = await function(ctx, *args, **kwargs)
        except Retry:
            await _finish_quietly(run_id, name, "retry", None, "retried later")
            raise
        except (Exception, asyncio.CancelledError) as exc:
            # A timeout cancels the job: still say how it ended.
            await asyncio.shield(_finish_quietly(run_id, name, "failed", None, repr(exc)))
            raise
        await _finish_quietly(run_id, name, "ok", plain_result(result), "")
        return result

    return run


async def _finish_quietly(
    run_id: UUID | None, name: str, outcome: str, result: Any, error: str
) -> None:
    if run_id is None:
        return
    try:
        await _finish(run_id, name, outcome, result, error)
    except Exception:
        log.warning("end of %s's run not recorded", name, exc_info=True)


def _run(row: Any) -> Run:
    values = dict(row)
    if isinstance(values.get("result"), str):
        values["result"] = msgspec.json.decode(values["result"])
    return msgspec.convert(values, Run)


async def overview() -> list[JobState]:
    """Every job with its newest run."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT DISTINCT ON (job) * FROM job_runs WHERE job = ANY($1::text[])
            ORDER BY job, started_at DESC
            """,
            [j.name for j in JOBS],
        )
    last = {row["job"]: _run(row) for row in rows}
    return [JobState(j, last.get(j.name)) for j in JOBS]


async def runs(name: str, limit: int = KEEP_RUNS) -> list[Run]:
    """A job's newest runs, newest first."""
    job(name)
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM job_runs WHERE job = $1 ORDER BY started_at DESC LIMIT $2",
            name,
            limit,
        )
    return [_run(row) for row in rows]


def _runnable(name: str) -> Job:
    found = job(name)
    if not found.can_run_now:
        raise InvalidInput(N_("this job runs when its work is queued; it cannot run by hand"))
    return found


def request_key(value: Any) -> str:
    """The key a "run now" form carries (a UUID), so a double submit queues once."""
    try:
        return str(UUID(str(value)))
    except ValueError:
        raise InvalidInput(N_("reload the page and try again"), field="key") from None


async def queue_now(redis: Any, name: str, key: str, source: str = "console") -> bool:
    """Queue a job to run now under the job id `<source>:<name>:<key>`. The same key queues
    it once (arq refuses a job id it holds; a finished run's id is in job_runs); False when
    it was queued already."""
    _runnable(name)
    job_id = f"{source}:{name}:{key}"
    async with db.connection() as conn:
        if await conn.fetchval("SELECT 1 FROM job_runs WHERE job_id = $1", job_id):
            return False
    return await redis.enqueue_job(name, _job_id=job_id) is not None


async def run_here(name: str, function: Callable[..., Awaitable[Any]], ctx: dict[str, Any]) -> Any:
    """Run a job in this process (the command line), recorded like a worker's run; `ctx` as
    arq gives it (`redis`: the queue)."""
    _runnable(name)
    return await tracked(function)({**ctx, "job_id": f"cli:{name}:{uuid4()}"})
