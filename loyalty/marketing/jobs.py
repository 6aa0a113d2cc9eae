"""Marketing jobs: send an offer, retry failed deliveries, automatic monthly offers, points
expiry warnings, the segment facts behind the builder's counts."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from loyalty.marketing import automatic, delivery, expiry, segment_facts


async def send_offer(ctx: dict[str, Any], offer_id: str) -> int:
    return await delivery.send_offer(UUID(offer_id))


async def retry_offer_deliveries(ctx: dict[str, Any]) -> int:
    return await delivery.retry_failed()


async def automatic_offers(ctx: dict[str, Any]) -> int:
    return await automatic.run()


async def expiry_warnings(ctx: dict[str, Any]) -> int:
    """Tell members whose points expire soon, once per member and expiry month."""
    return await expiry.run()


async def refresh_segment_facts(ctx: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the segment facts the segment builder's counts read."""
    built = await segment_facts.rebuild()
    return {"members": built.members, "took_ms": built.took_ms}
