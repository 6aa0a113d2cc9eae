"""The contact log, messages from staff through the company's channels, and the audit of who
opened which archive."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec

from loyalty.auth import Principal
from loyalty.errors import InvalidInput
from loyalty.infrastructure import db, messaging
from loyalty.infrastructure.clock import local_today, now
from loyalty.members import service as members
from loyalty.reps import schemas
from loyalty.reps.settings import get_rep_settings
from loyalty.settings import get_settings

OUTBOUND_KINDS = ("visit", "call", "message")  # what closes a follow-up task


def log_deadline(occurred_at: datetime, hour: int) -> datetime:
    """Contacts are logged by the next working day at `hour` (local time)."""
    tz = get_settings().tz
    day = occurred_at.astimezone(tz).date() + timedelta(days=1)
    while day.weekday() >= 5:  # Saturday, Sunday
        day += timedelta(days=1)
    return datetime.combine(day, time(hour), tz)


async def log_contact(
    member_id: UUID,
    principal: Principal,
    *,
    kind: str,
    channel: str,
    direction: str,
    subject: str,
    body: str,
    outcome: str = "",
    next_step: str = "",
    intent: str | None = None,
    occurred_at: datetime | None = None,
) -> UUID:
    """Record a contact in the company's log (never in a rep's notebook); an outbound
    contact by staff closes the member's open follow-up tasks."""
    settings = await get_rep_settings()
    logged_at = now()
    occurred_at = occurred_at or logged_at
    late = logged_at > log_deadline(occurred_at, settings.contact_deadline_hour)
    contact_id = uuid4()
    async with db.transaction() as conn:
        await conn.execute(
            """
            INSERT INTO contacts (id, member, staff, kind, channel, direction, subject, body,
                outcome, next_step, status, late, occurred_at, logged_at, logged_by, intent)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            """,
            contact_id,
            member_id,
            principal.id if principal.is_staff else None,
            kind,
            channel,
            direction,
            subject,
            body,
            outcome,
            next_step,
            "open" if kind in ("request", "complaint") else "closed",
            late,
            occurred_at,
            logged_at,
            principal.label,
            intent,
        )
        if principal.is_staff and kind in OUTBOUND_KINDS:
            await conn.execute(
                """
                UPDATE follow_ups SET closed_at = now(), closed_by_contact = $2
                WHERE member = $1 AND closed_at IS NULL AND due_on <= $3
                """,
                member_id,
                contact_id,
                local_today(occurred_at) + timedelta(days=31),
            )
    return contact_id


def contact_schema(row: Any) -> schemas.Contact:
    return db.from_row(schemas.Contact, row, member_id=row["member"], staff_id=row["staff"])


async def add_contact(
    member_id: UUID, data: schemas.ContactCreate, principal: Principal
) -> schemas.Contact:
    await members.get_member(member_id, principal)
    if data.occurred_at and data.occurred_at > now() + timedelta(minutes=5):
        raise InvalidInput("is in the future", field="occurred_at")
    # A ContactCreate's fields are log_contact's keyword arguments.
    contact_id = await log_contact(member_id, principal, **msgspec.structs.asdict(data))
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM contacts WHERE id = $1", contact_id)
    return contact_schema(row)


async def member_contacts(
    member_id: UUID, principal: Principal, limit: int = 50
) -> list[schemas.Contact]:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM contacts WHERE member = $1 ORDER BY occurred_at DESC LIMIT $2",
            member_id,
            limit,
        )
    return [contact_schema(row) for row in rows]


# --- messages from staff ------------------------------------------------------------------


async def send_message(
    member_id: UUID, data: schemas.MessageCreate, principal: Principal
) -> schemas.Contact:
    """A message to the member through the company's channel, never a rep's own phone: the
    portal inbox always, and email or text message where the member consented."""
    member = await members.get_member(member_id, principal)
    consented = {c.channel for c in member.contact_preferences.consents if c.granted}
    if data.channel == "email":
        if not member.email or "email" not in consented:
            raise InvalidInput("the member has no email with consent to write", field="channel")
        await messaging.send_email(
            messaging.Email(to=member.email, subject=data.subject, text=data.body)
        )
    elif data.channel == "sms":
        if not member.phone or "sms" not in consented:
            raise InvalidInput("the member has no phone with consent for texts", field="channel")
        await messaging.sms_sender().send(member.phone, data.body)
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO member_notifications (id, member, event, kind, title, body, created_at)
            VALUES (gen_random_uuid(), $1, gen_random_uuid(), 'staff.message', $2, $3, now())
            """,
            member_id,
            data.subject,
            data.body,
        )
    return await add_contact(
        member_id,
        schemas.ContactCreate(
            kind="message",
            channel=data.channel,
            direction="outbound",
            subject=data.subject,
            body=data.body,
        ),
        principal,
    )


# --- audit ---------------------------------------------------------------------------------


async def audit_view(principal: Principal, member_id: UUID, what: str) -> None:
    """Every view of a member archive by staff is recorded (who, when, what)."""
    if not principal.is_staff:
        return
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO member_views (id, staff, member, what, at)"
            " VALUES (gen_random_uuid(), $1, $2, $3, now())",
            principal.id,
            member_id,
            what,
        )


async def views_of(member_id: UUID, principal: Principal) -> list[schemas.View]:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT v.*, s.username FROM member_views v JOIN staff s ON s.id = v.staff
            WHERE v.member = $1 ORDER BY v.at DESC LIMIT 200
            """,
            member_id,
        )
    return [schemas.View(staff=row["username"], what=row["what"], at=row["at"]) for row in rows]
