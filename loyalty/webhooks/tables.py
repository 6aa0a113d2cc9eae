"""Webhook subscribers, one delivery per subscriber and event, and every attempt."""

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class WebhookSubscription(Table, tablename="webhook_subscriptions"):
    id = UUID(primary_key=True)
    url = Varchar(length=500)
    events = Array(base_column=Varchar(length=64))
    secret = Varchar(length=100)
    active = Boolean(default=True)
    description = Varchar(length=200, default="")
    created_by = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())


class WebhookDelivery(Table, tablename="webhook_deliveries"):
    id = UUID(primary_key=True)
    subscription = ForeignKey(references=WebhookSubscription, index=True)
    event_id = UUID()  # the outbox event: receivers drop duplicates by it
    topic = Varchar(length=64)
    payload = JSONB()
    status = Varchar(length=16, default="pending")  # pending | delivered | failed
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    last_status = Integer(null=True, default=None)
    last_error = Text(null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class WebhookAttempt(Table, tablename="webhook_attempts"):
    id = UUID(primary_key=True)
    delivery = ForeignKey(references=WebhookDelivery, index=True)
    at = Timestamptz(default=TimestamptzNow())
    status = Integer(null=True, default=None)
    error = Text(null=True, default=None)
    duration_ms = Integer(default=0)
