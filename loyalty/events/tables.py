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
    """A message for a member's portal inbox, in both languages: `title`/`body` are the
    English (or the only) text, `title_zh`/`body_zh` the Chinese or NULL (then the only text
    is shown to everyone). Readers pick with `loyalty.events.service.in_language`."""

    id = UUID(primary_key=True)
    member = UUID(index=True)
    event = UUID(unique=True)  # one notification per event: delivery may run twice
    kind = Varchar(length=64)
    title = Varchar(length=200)
    body = Varchar(length=5000)  # a staff message may be 5,000 characters
    title_zh = Varchar(length=200, null=True, default=None)
    body_zh = Varchar(length=5000, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    read_at = Timestamptz(null=True, default=None)
