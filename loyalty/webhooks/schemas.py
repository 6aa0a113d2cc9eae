"""Webhook shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from loyalty.infrastructure.schemas import VISIBLE, Input

Url = Annotated[str, msgspec.Meta(max_length=500, pattern=rf"^https?://{VISIBLE}+$")]
TOPICS = (
    "member.enrolled",
    "points.earned",
    "points.reversed",
    "redemption.created",
    "tier.changed",
    "referral.rewarded",
    "member.reassigned",
)
# Checked by the service (422 names the event); the schema lists the topics.
Topic = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(TOPICS)})]
Events = Annotated[list[Topic], msgspec.Meta(min_length=1, max_length=20)]
Description = Annotated[str, msgspec.Meta(max_length=200)]


class SubscriptionCreate(Input):
    url: Url
    events: Events
    description: Description = ""


class SubscriptionUpdate(Input):
    url: Url | None = None
    events: Events | None = None
    active: bool | None = None
    description: Description | None = None


class Subscription(msgspec.Struct):
    id: UUID
    url: str
    events: list[str]
    active: bool
    description: str
    created_by: str
    created_at: datetime


class SubscriptionCreated(msgspec.Struct):
    subscription: Subscription
    secret: str  # shown once: verify X-Loyalty-Signature with it


class Attempt(msgspec.Struct):
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int


class Delivery(msgspec.Struct):
    id: UUID
    event_id: UUID
    topic: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    history: list[Attempt]
