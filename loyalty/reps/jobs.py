"""Ownership and follow-up jobs; each is idempotent (it may run twice)."""

from __future__ import annotations

from typing import Any

from loyalty.reps import follow_ups, handovers, reclaim, rotation


async def reclaim_members(ctx: dict[str, Any]) -> dict[str, int]:
    run = await reclaim.reclaim_members()
    return {"warned": run.warned, "reclaimed": run.reclaimed}


async def plan_follow_ups(ctx: dict[str, Any]) -> dict[str, int]:
    run = await follow_ups.plan_follow_ups()
    reminded = await rotation.remind_due_rotations()
    return {"created": run.created, "escalated": run.escalated, "rotation_reminders": reminded}


async def escalate_handovers(ctx: dict[str, Any]) -> int:
    return await handovers.escalate_handovers()
