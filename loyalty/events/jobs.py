"""Outbox jobs: relay unpublished events to the queue, and deliver one event."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from loyalty.events import service


async def relay_outbox(ctx: dict[str, Any]) -> int:
    return await service.relay(ctx["redis"])


async def deliver_event(ctx: dict[str, Any], event_id: str) -> int:
    return await service.deliver(UUID(event_id))
