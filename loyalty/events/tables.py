"""The outbox: internal events recorded in the transaction that caused them, published to
the job queue afterwards, so no event is lost while Redis is down."""

from piccolo.columns import JSONB, UUID, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class OutboxEvent(Table, tablename="outbox_events"):
    id = UUID(primary_key=True)
    topic = Varchar(length=64)
    member = UUID(null=True, default=None)
    payload = JSONB(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
    published_at = Timestamptz(null=True, default=None)
    # Set once every subscriber ran. A published event still without it after a while was
    # lost with the queue (a Redis restart) and is published again.
    delivered_at = Timestamptz(null=True, default=None)
    attempts = Integer(default=0)


class Notification(Table, tablename="member_notifications"):
    """A message for a member's portal inbox (and, later, their preferred channel)."""

    id = UUID(primary_key=True)
    member = UUID(index=True)
    event = UUID(unique=True)  # one notification per event: delivery may run twice
    kind = Varchar(length=64)
    title = Varchar(length=200)
    body = Varchar(length=2000)
    created_at = Timestamptz(default=TimestamptzNow())
    read_at = Timestamptz(null=True, default=None)
