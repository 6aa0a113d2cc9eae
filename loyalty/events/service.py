"""Internal events through an outbox: recorded inside the transaction that caused them,
relayed to the arq queue after commit, delivered to subscribers at least once (so every
subscriber is idempotent). Who subscribes to what is one table, `loyalty.events.jobs.SUBSCRIBERS`:
the subscribers live in the domains, which this module sits below."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from redis.asyncio import Redis

from loyalty.infrastructure import db

Handler = Callable[[dict[str, Any]], Awaitable[None]]
# A published event not delivered by then is published again (its job may have been lost
# with a Redis restart); subscribers are idempotent, so a slow first delivery does no harm.
REPUBLISH_AFTER = timedelta(minutes=5)
log = logging.getLogger("loyalty.events")


async def record(
    conn: asyncpg.Connection, topic: str, payload: dict[str, Any], member_id: UUID | None = None
) -> UUID:
    """Record an event in the caller's transaction: it exists exactly when the change does."""
    event_id = uuid4()
    await conn.execute(
        "INSERT INTO outbox_events (id, topic, member, payload, created_at, attempts)"
        " VALUES ($1, $2, $3, $4::jsonb, now(), 0)",
        event_id,
        topic,
        member_id,
        json.dumps(payload, default=str),
    )
    return event_id


async def record_many(
    conn: asyncpg.Connection, topic: str, events: list[tuple[UUID | None, dict[str, Any]]]
) -> None:
    """Several events of one topic in one statement, in the caller's transaction."""
    if events:
        await conn.execute(
            """
            INSERT INTO outbox_events (id, topic, member, payload, created_at, attempts)
            SELECT gen_random_uuid(), $1, e.member, e.payload::jsonb, now(), 0
            FROM unnest($2::uuid[], $3::text[]) AS e(member, payload)
            """,
            topic,
            [member for member, _ in events],
            [json.dumps(payload, default=str) for _, payload in events],
        )


# Events per delivery job.
DELIVERY_BATCH = 100


async def relay(redis: Redis, batch_size: int = 500) -> int:
    """Queue unpublished events for delivery. If Redis is down the transaction rolls back and
    the events wait for the next run; the job id makes a repeated relay harmless."""
    relayed = 0
    while True:
        async with db.transaction() as conn:
            rows = await conn.fetch(
                """
                SELECT id, attempts FROM outbox_events
                WHERE delivered_at IS NULL
                  AND (published_at IS NULL OR published_at < now() - $2::interval)
                ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED
                """,
                batch_size,
                REPUBLISH_AFTER,
            )
            ids = [row["id"] for row in rows]
            if not ids:
                return relayed
            for start in range(0, len(rows), DELIVERY_BATCH):
                chunk = rows[start : start + DELIVERY_BATCH]
                # One job id per publication (an event is in one chunk per publication): arq
                # keeps a finished job's id (its result) for an hour, and would silently drop
                # a republish under the same id.
                await redis.enqueue_job(
                    "deliver_events",
                    [str(row["id"]) for row in chunk],
                    _job_id=f"events:{chunk[0]['id']}:{chunk[0]['attempts']}",
                )
            await conn.execute(
                "UPDATE outbox_events SET published_at = now(), attempts = attempts + 1"
                " WHERE id = ANY($1::uuid[])",
                ids,
            )
            relayed += len(ids)
        if len(ids) < batch_size:
            return relayed


async def deliver(event_id: UUID, subscribers: Mapping[str, Sequence[Handler]]) -> int:
    """Run every subscriber of the event's topic, each given the event row (id, topic,
    member, payload); returns how many ran."""
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM outbox_events WHERE id = $1", event_id)
    if row is None:
        return 0
    event = dict(row)
    event["payload"] = (
        json.loads(event["payload"]) if isinstance(event["payload"], str) else event["payload"]
    )
    handlers = subscribers.get(event["topic"], ())
    for handler in handlers:
        await handler(event)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE outbox_events SET delivered_at = now() WHERE id = $1 AND delivered_at IS NULL",
            event_id,
        )
    return len(handlers)


async def notify_member(
    event: dict[str, Any],
    *,
    kind: str,
    title: str,
    body: str,
    title_zh: str | None = None,
    body_zh: str | None = None,
) -> None:
    """Put a message in the member's portal inbox, once per event: the English (or only)
    text, and the Chinese where there is one."""
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO member_notifications
                (id, member, event, kind, title, body, title_zh, body_zh, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
            ON CONFLICT (event) DO NOTHING
            """,
            uuid4(),
            event["member"],
            event["id"],
            kind,
            title[:200],
            body[:5000],
            title_zh[:200] if title_zh else None,
            body_zh[:5000] if body_zh else None,
        )


def in_language(row: Mapping[str, Any], language: str) -> tuple[str, str]:
    """A stored message's title and body in `language`: the Chinese text for "zh" where it
    has one, else the English (or only) text."""
    if language == "zh":
        return row["title_zh"] or row["title"], row["body_zh"] or row["body"]
    return row["title"], row["body"]


async def inbox(member_id: UUID, language: str, limit: int = 50) -> list[dict[str, Any]]:
    """The member's portal messages, newest first, each in `language` (see `in_language`)."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT id, kind, title, body, title_zh, body_zh, created_at, read_at
            FROM member_notifications
            WHERE member = $1 ORDER BY created_at DESC LIMIT $2
            """,
            member_id,
            limit,
        )
    messages = []
    for row in rows:
        title, body = in_language(row, language)
        messages.append(
            {
                "id": row["id"],
                "kind": row["kind"],
                "title": title,
                "body": body,
                "created_at": row["created_at"],
                "read_at": row["read_at"],
            }
        )
    return messages


async def mark_read(member_id: UUID, ids: list[UUID]) -> int:
    """The member saw these inbox entries (the portal's messages page): an offer's results
    count them as opened. Already read ones keep their first time."""
    async with db.connection() as conn:
        done = await conn.execute(
            """
            UPDATE member_notifications SET read_at = now()
            WHERE member = $1 AND id = ANY($2::uuid[]) AND read_at IS NULL
            """,
            member_id,
            ids,
        )
    return int(done.split()[-1])
