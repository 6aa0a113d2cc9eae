"""Ownership and follow-up jobs; each is idempotent (it may run twice)."""

from __future__ import annotations

from typing import Any

from loyalty.reps import contacts, rotation, service


async def reclaim_members(ctx: dict[str, Any]) -> dict[str, int]:
    run = await service.reclaim_members()
    return {"warned": run.warned, "reclaimed": run.reclaimed}


async def plan_follow_ups(ctx: dict[str, Any]) -> dict[str, int]:
    run = await contacts.plan_follow_ups()
    reminded = await rotation.remind_due_rotations()
    return {"created": run.created, "escalated": run.escalated, "rotation_reminders": reminded}


async def escalate_handovers(ctx: dict[str, Any]) -> int:
    return await service.escalate_handovers()
