"""Points background jobs. Both are idempotent: a second run finds nothing left to do."""

from __future__ import annotations

from typing import Any

from loyalty.points import service


async def release_pending_points(ctx: dict[str, Any]) -> int:
    """Make points available once their return window has passed."""
    return await service.release_pending()


async def expire_points(ctx: dict[str, Any]) -> int:
    """Expire points past their expiry, oldest first."""
    return await service.expire_points()
