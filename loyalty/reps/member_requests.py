"""A rep asks the manager for a member someone else registered or serves: the customer came
to the rep, the registration check found the customer already on file, and only a manager
may move a member (a rep never takes one directly).

The request lands as a notice (`notices.notify_staff`) to the managers who may move the
member: those of the department of the member's current rep, else (a pool member, or a rep
in a department without a manager) the asking rep's own managers. The notice names the
member, so the manager (who may see it) can open it and reassign it or start a swap; the
rep's note is its body. The rep learns only that the managers were told, never who or in
which department. Asking twice on the same day tells nobody twice (the notice key).
"""

from __future__ import annotations

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import local_today
from loyalty.infrastructure.i18n import N_
from loyalty.members import registrations
from loyalty.reps import notices

NOTE_LENGTH = 1000


async def ask_for_member(
    principal: Principal, phone: str | None, email: str | None, note: str
) -> int:
    """Tell the managers that `principal` asks to serve the member holding this phone or
    email; how many managers were told (0 when the same request was made today already)."""
    if not principal.is_staff or not principal.can("members:read"):
        raise PermissionDenied(N_("only staff serving members may ask for one"))
    note = note.strip()
    if len(note) > NOTE_LENGTH:
        raise InvalidInput(N_("is too long"), field="note")
    member_id = await registrations.holder(phone, email)
    if member_id is None:
        raise InvalidInput(N_("no customer is registered with this phone or email"), field="phone")
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """
            SELECT m.number, m.assigned_rep, s.department
            FROM members m LEFT JOIN staff s ON s.id = m.assigned_rep WHERE m.id = $1
            """,
            member_id,
        )
        if row["assigned_rep"] == principal.id:
            raise Conflict(N_("you serve this customer already"), field="phone")
        managers = []
        if row["assigned_rep"] is not None:
            managers = await notices.department_managers(conn, row["department"])
        if not managers:
            managers = await notices.department_managers(conn, principal.department)
        managers = [manager for manager in managers if manager != principal.id]
        if not managers:
            raise Conflict(N_("there is no manager to ask: ask a general manager"), field="phone")
        who = principal.label.split(":", 1)[-1]
        key = f"member-request:{member_id}:{principal.id}:{local_today().isoformat()}"
        await notices.notify_staff(
            conn,
            managers,
            kind="member_request",
            key=key,
            title=f"{who} asks to serve member {row['number']}",
            body=note,
            member_id=member_id,
        )
        # Written by this transaction (now() is its start), not by an earlier request.
        told = await conn.fetchval(
            "SELECT count(*) FROM staff_notices WHERE key = ANY($1::text[]) AND created_at = now()",
            [f"{key}:{manager}" for manager in managers],
        )
    return told
