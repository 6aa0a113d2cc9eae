"""Background jobs for staff access."""

from __future__ import annotations

from typing import Any

from loyalty.staff import service


async def prune_expired_tokens(ctx: dict[str, Any]) -> int:
    """Delete bearer tokens long expired or revoked. Idempotent: a second run finds nothing."""
    return await service.prune_expired_tokens()
