"""Tier jobs: the periodic evaluation (idempotent: a second run the same day changes nothing)."""

from __future__ import annotations

from typing import Any

import msgspec

from loyalty.tiers import evaluation


async def evaluate_tiers(ctx: dict[str, Any]) -> dict[str, int]:
    return msgspec.to_builtins(await evaluation.evaluate())
