"""Changing a staff user, including a rep who leaves or moves: the staff account changes, the
rep's members go back through the department manager's handover queue (never to another rep
directly), and sessions end where the user's trust changed."""

from __future__ import annotations

from uuid import UUID

from litestar.stores.base import Store
from redis.asyncio import Redis

from loyalty.auth import Principal
from loyalty.reps import handovers
from loyalty.staff import schemas
from loyalty.staff import service as staff


async def update_staff(
    staff_id: UUID,
    data: schemas.StaffUpdate,
    *,
    actor: Principal,
    redis: Redis,
    session_store: Store,
) -> schemas.Staff:
    """Partial update of a staff user, with what follows from it."""
    change = await staff.apply_update(staff_id, data, actor=actor)
    if change.rep_goes:
        # The members stay with the company: they go to the manager's handover queue.
        await handovers.hand_over(
            staff_id,
            reason="departure" if change.leaving else "transfer",
            department=change.before.department,
            by=actor.label,
        )
    if change.ends_access:
        await staff.end_all_sessions(staff_id, redis=redis, session_store=session_store)
    return staff.to_schema(await staff.get_staff(staff_id))
