"""Outbox jobs: relay unpublished events to the queue, and deliver one event."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from arq import Retry

from loyalty.events import service

# The database is unreachable (down, restarting, crashed, or the connection died; a
# connection broken by a crash may also fail with "cannot switch to state ..."): try later.
DATABASE_UNAVAILABLE = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


async def relay_outbox(ctx: dict[str, Any]) -> int:
    return await service.relay(ctx["redis"])


async def deliver_event(ctx: dict[str, Any], event_id: str) -> int:
    """Run the event's subscribers. Without a database the job is retried (5, 10, 15, 20 s
    later) rather than failed: a failed job's kept result would stop the relay queueing the
    event again under the same job id until the result expires (an hour)."""
    return await deliver_events(ctx, [event_id])


async def deliver_events(ctx: dict[str, Any], event_ids: list[str]) -> int:
    """The relay's batches: one job per event made the tens of thousands of tier changes of
    a big evaluation hold up other jobs (campaign sends) for minutes. A retry runs the whole
    batch again; subscribers are idempotent (delivery is at least once)."""
    try:
        return sum([await service.deliver(UUID(event_id)) for event_id in event_ids])
    except DATABASE_UNAVAILABLE as exc:
        raise Retry(defer=5 * ctx["job_try"]) from exc
