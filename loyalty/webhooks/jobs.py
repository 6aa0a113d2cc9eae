"""Webhook delivery job: due deliveries are posted; it may run twice (each delivery is
claimed with SKIP LOCKED)."""

from __future__ import annotations

from typing import Any

from loyalty.webhooks import service


async def send_webhooks(ctx: dict[str, Any]) -> int:
    sent = 0
    while attempted := await service.send_due():
        sent += attempted
    return sent
