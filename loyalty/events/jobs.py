"""Outbox jobs: relay unpublished events to the queue, and deliver them to their subscribers,
listed in one table here (jobs sit above the domains, so they may import the handlers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg
from arq import Retry

from loyalty.events import service
from loyalty.events.service import Handler
from loyalty.referrals import service as referrals
from loyalty.reps import service as reps
from loyalty.tiers import service as tiers
from loyalty.webhooks import service as webhooks

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

# Every subscriber of every topic, in the order they run. webhooks.fan_out records a delivery
# for each webhook subscribed to the topic (send_webhooks sends them), so every topic a
# webhook may subscribe to (webhooks.schemas.TOPICS) has it; tests/test_worker.py checks that.
SUBSCRIBERS: Mapping[str, tuple[Handler, ...]] = {
    "tier.changed": (tiers.tell_the_member, reps.flag_outgrown_rep, webhooks.fan_out),
    "referral.rewarded": (referrals.tell_the_member, webhooks.fan_out),
    "member.enrolled": (webhooks.fan_out,),
    "member.reassigned": (webhooks.fan_out,),
    "points.earned": (webhooks.fan_out,),
    "points.reversed": (webhooks.fan_out,),
    "redemption.created": (webhooks.fan_out,),
}


async def deliver(event_id: UUID) -> int:
    """Run the subscribers of one event (at least once: each is idempotent)."""
    return await service.deliver(event_id, SUBSCRIBERS)


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
        return sum([await deliver(UUID(event_id)) for event_id in event_ids])
    except DATABASE_UNAVAILABLE as exc:
        raise Retry(defer=5 * ctx["job_try"]) from exc
