"""Webhooks: subscribers managed by admins receive the platform's events, signed, at least
once, from a delivery table (so nothing is lost while Redis or the receiver is down).

Each event becomes one `webhook_deliveries` row per matching subscriber (unique per
subscriber and event). The `send_webhooks` job posts due deliveries:

    POST <url>
    X-Loyalty-Event-Id: <event id>         (receivers drop duplicates by it)
    X-Loyalty-Event: <topic>
    X-Loyalty-Timestamp: <unix seconds>
    X-Loyalty-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>
    {"id": ..., "type": ..., "created_at": ..., "data": {...}}

A 2xx answer delivers it; anything else is retried with exponential backoff (30 s doubling,
at most an hour apart) for up to a day, then marked failed. Every attempt is recorded, and
any delivery can be sent again by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.infrastructure.caches import Cache
from loyalty.webhooks import schemas

TOPICS = schemas.TOPICS
FIRST_RETRY = 30  # seconds, doubling
LONGEST_WAIT = 3600
# 30 s doubling to an hour, then hourly: the 31st failure is a day after the first.
MAX_ATTEMPTS = 31


_subscribed: Cache[frozenset[str]] = Cache("webhook topics")
CACHE_SECONDS = 10


async def subscribed(topic: str) -> bool:
    """Whether any active subscriber wants this topic (cached briefly per process), so hot
    paths record an event only when someone will receive it."""
    topics = _subscribed.get(CACHE_SECONDS)
    if topics is None:
        async with db.connection() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT unnest(events) AS topic FROM webhook_subscriptions WHERE active"
            )
        topics = frozenset(row["topic"] for row in rows)
        _subscribed.put(topics)
    return topic in topics


def forget_subscriptions() -> None:
    _subscribed.clear()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _subscription_schema(row: Any) -> schemas.Subscription:
    return db.from_row(schemas.Subscription, row)


def _check_events(names: list[str]) -> list[str]:
    for i, name in enumerate(names):
        if name not in TOPICS:
            raise InvalidInput(f"unknown event; one of {', '.join(TOPICS)}", field=f"events[{i}]")
    return sorted(set(names))


async def create_subscription(
    data: schemas.SubscriptionCreate, principal: Principal
) -> schemas.SubscriptionCreated:
    """The secret is shown once, here."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """
            INSERT INTO webhook_subscriptions (id, url, events, secret, active, description,
                created_by, created_at)
            VALUES (gen_random_uuid(), $1, $2, $3, true, $4, $5, now()) RETURNING *
            """,
            data.url,
            _check_events(data.events),
            secret,
            data.description,
            principal.label,
        )
        await audit.record("webhooks.create", "webhook", row["id"], after=row)
    forget_subscriptions()
    return schemas.SubscriptionCreated(subscription=_subscription_schema(row), secret=secret)


async def list_subscriptions() -> list[schemas.Subscription]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM webhook_subscriptions ORDER BY created_at")
    return [_subscription_schema(row) for row in rows]


async def get_subscription(subscription_id: UUID) -> schemas.Subscription:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM webhook_subscriptions WHERE id = $1", subscription_id
        )
    if row is None:
        raise NotFound("no such webhook subscription")
    return _subscription_schema(row)


async def update_subscription(
    subscription_id: UUID, data: schemas.SubscriptionUpdate
) -> schemas.Subscription:
    async with db.transaction() as conn:
        before = await conn.fetchrow(
            "SELECT * FROM webhook_subscriptions WHERE id = $1 FOR UPDATE", subscription_id
        )
        row = await conn.fetchrow(
            """
            UPDATE webhook_subscriptions SET url = coalesce($2, url),
                events = coalesce($3, events), active = coalesce($4, active),
                description = coalesce($5, description)
            WHERE id = $1 RETURNING *
            """,
            subscription_id,
            data.url,
            _check_events(data.events) if data.events is not None else None,
            data.active,
            data.description,
        )
        if row is not None:
            await audit.record(
                "webhooks.update", "webhook", subscription_id, before=before, after=row
            )
    if row is None:
        raise NotFound("no such webhook subscription")
    forget_subscriptions()
    return _subscription_schema(row)


async def fan_out(event: dict[str, Any]) -> None:
    """An outbox event becomes a delivery for every active subscriber of its topic (once,
    however often the event is delivered to us)."""
    body = {
        "id": str(event["id"]),
        "type": event["topic"],
        "created_at": event["created_at"].isoformat(),
        "data": {
            **event["payload"],
            "member_id": str(event["member"]) if event["member"] else None,
        },
    }
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO webhook_deliveries (id, subscription, event_id, topic, payload, status,
                attempts, next_attempt_at, created_at)
            SELECT gen_random_uuid(), s.id, $1, $2::text, $3::jsonb, 'pending', 0, now(), now()
            FROM webhook_subscriptions s WHERE s.active AND $2::text = ANY(s.events)
            ON CONFLICT (subscription, event_id) DO NOTHING
            """,
            event["id"],
            event["topic"],
            json.dumps(body),
        )


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_WAIT))


async def send_due(limit: int = 100, client: httpx.AsyncClient | None = None) -> int:
    """Post every due delivery once; returns how many were attempted."""
    async with db.transaction() as conn:
        due = await conn.fetch(
            """
            SELECT d.*, s.url, s.secret FROM webhook_deliveries d
            JOIN webhook_subscriptions s ON s.id = d.subscription
            -- A paused subscription's deliveries wait for it to be active again.
            WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND s.active
            ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED
            """,
            limit,
        )
        if not due:
            return 0
        # Claimed for a minute: another worker skips them while we post.
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 minute'"
            " WHERE id = ANY($1::uuid[])",
            [row["id"] for row in due],
        )
    owned = client is None
    client = client or httpx.AsyncClient(timeout=10)
    try:
        for row in due:
            await _attempt(client, row)
    finally:
        if owned:
            await client.aclose()
    return len(due)


async def _attempt(client: httpx.AsyncClient, delivery: Any) -> None:
    payload = delivery["payload"]
    body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
    timestamp = str(int(time.time()))
    status, error = None, None
    started = time.monotonic()
    try:
        response = await client.post(
            delivery["url"],
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Loyalty-Event-Id": str(delivery["event_id"]),
                "X-Loyalty-Event": delivery["topic"],
                "X-Loyalty-Timestamp": timestamp,
                "X-Loyalty-Signature": signature(delivery["secret"], timestamp, body),
            },
        )
        status = response.status_code
        if not 200 <= status < 300:
            error = f"answered {status}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    took = int((time.monotonic() - started) * 1000)
    attempts = delivery["attempts"] + 1
    async with db.transaction() as conn:
        await conn.execute(
            """
            INSERT INTO webhook_attempts (id, delivery, at, status, error, duration_ms)
            VALUES (gen_random_uuid(), $1, now(), $2, $3, $4)
            """,
            delivery["id"],
            status,
            error,
            took,
        )
        if error is None:
            await conn.execute(
                """
                UPDATE webhook_deliveries SET status = 'delivered', attempts = $2,
                    last_status = $3, last_error = NULL, delivered_at = now()
                WHERE id = $1
                """,
                delivery["id"],
                attempts,
                status,
            )
            return
        gave_up = attempts >= MAX_ATTEMPTS
        retry_at = datetime.now(delivery["created_at"].tzinfo) + _backoff(attempts)
        await conn.execute(
            """
            UPDATE webhook_deliveries SET status = $2, attempts = $3, last_status = $4,
                last_error = $5, next_attempt_at = $6
            WHERE id = $1
            """,
            delivery["id"],
            "failed" if gave_up else "pending",
            attempts,
            status,
            error,
            retry_at,
        )


async def deliveries(subscription_id: UUID, limit: int = 100) -> list[schemas.Delivery]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT * FROM webhook_deliveries WHERE subscription = $1
            ORDER BY created_at DESC LIMIT $2
            """,
            subscription_id,
            limit,
        )
        attempts = await conn.fetch(
            "SELECT * FROM webhook_attempts WHERE delivery = ANY($1::uuid[]) ORDER BY at",
            [row["id"] for row in rows],
        )
    by_delivery: dict[UUID, list[schemas.Attempt]] = {}
    for a in attempts:
        by_delivery.setdefault(a["delivery"], []).append(db.from_row(schemas.Attempt, a))
    return [
        db.from_row(schemas.Delivery, row, history=by_delivery.get(row["id"], [])) for row in rows
    ]


async def resend(delivery_id: UUID) -> None:
    """Send a delivery again now (delivered or failed alike), with a fresh day of retries."""
    async with db.connection() as conn:
        done = await conn.execute(
            """
            UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                attempts = 0
            WHERE id = $1
            """,
            delivery_id,
        )
    if done.endswith(" 0"):
        raise NotFound("no such delivery")
