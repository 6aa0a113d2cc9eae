"""Company-owned relationships: the contact log."""

from __future__ import annotations

from uuid import UUID, uuid4

from loyalty import db
from loyalty.auth import Principal


async def log_contact(
    member_id: UUID,
    principal: Principal,
    *,
    kind: str,
    channel: str,
    direction: str,
    subject: str,
    body: str,
) -> UUID:
    """Record a contact with a member in the company's log (never in a rep's notebook)."""
    contact_id = uuid4()
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO contacts (id, member, staff, kind, channel, direction, subject, body,
                status, occurred_at, logged_at, logged_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', now(), now(), $9)
            """,
            contact_id,
            member_id,
            principal.id if principal.is_staff else None,
            kind,
            channel,
            direction,
            subject,
            body,
            principal.label,
        )
    return contact_id
