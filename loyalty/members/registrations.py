"""Who registered a customer first: the duplicate check a rep sees while typing a new
customer's phone or email. The first registration wins, and its record (who, when) is the
evidence in an ownership dispute.

What a caller learns about an existing member is decided here, once:
- a member the caller may see (`visibility`): the member itself (id, number, name), plus
  who registered it and when;
- any other member: only who registered it (the staff user's display name, or "the
  portal" / "an integration") and the day. Not the name, number, id, tier, current rep or
  department: the archive stays with those who may see it, and the registrant and date are
  already the company's evidence of ownership, which a rep needs to settle a dispute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import InvalidInput
from loyalty.infrastructure import db
from loyalty.infrastructure.i18n import N_
from loyalty.members import schemas, service, visibility


@dataclass(frozen=True)
class Registered:
    """An existing member holding the phone or email a caller typed."""

    field: str  # "phone" or "email": which of the two matched
    registered_at: datetime
    channel: str  # staff | portal | integration
    registered_by: str  # the staff user's display name; "" for the portal or an integration
    by_me: bool  # the caller registered it
    visible: bool  # the caller may see the member: the fields below are filled
    member_id: UUID | None = None
    number: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Typed:
    """A phone and an email as normalised for the check; a value that is not (yet) a valid
    phone or email is None, with its problem kept for the form to show when submitted."""

    phone: str | None
    email: str | None
    problems: tuple[InvalidInput, ...] = ()


def normalise(phone: str | None, email: str | None) -> Typed:
    found: dict[str, str | None] = {"phone": None, "email": None}
    problems = []
    for field, raw, normaliser in (
        ("phone", phone, service.normalise_phone),
        ("email", email, service.normalise_email),
    ):
        if raw and raw.strip():
            try:
                found[field] = normaliser(raw.strip())
            except InvalidInput as exc:
                problems.append(exc)
    return Typed(found["phone"], found["email"], tuple(problems))


def check_reachable(data: schemas.MemberCreate) -> None:
    """A customer registered by staff gives a phone or an email: they are how the customer
    is found again, and how a second registration of the same customer is caught."""
    if not (data.phone and data.phone.strip()) and not (data.email and data.email.strip()):
        raise InvalidInput(N_("give a phone or an email"), field="phone")


async def find_registered(
    principal: Principal, phone: str | None, email: str | None
) -> list[Registered]:
    """The members already holding this phone or email (normalised: E.164, lower-cased), at
    most one per field, told as much as the caller may know (see the module's docstring)."""
    typed = normalise(phone, email)
    if typed.phone is None and typed.email is None:
        return []
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT m.id, m.number, m.name, m.phone, m.email, m.registered_at,
                m.registration_channel, m.registered_by_staff,
                coalesce(nullif(s.display_name, ''), s.username) AS staff_name
            FROM members m LEFT JOIN staff s ON s.id = m.registered_by_staff
            WHERE (m.phone = $1 OR m.email = $2)
            ORDER BY m.registered_at
            """,
            typed.phone,
            typed.email,
        )
    found: list[Registered] = []
    for row in rows:
        field = "phone" if typed.phone and row["phone"] == typed.phone else "email"
        visible = await visibility.can_see(principal, row["id"])
        found.append(
            Registered(
                field=field,
                registered_at=row["registered_at"],
                channel=row["registration_channel"],
                registered_by=row["staff_name"] or "",
                by_me=principal.is_staff and row["registered_by_staff"] == principal.id,
                visible=visible,
                member_id=row["id"] if visible else None,
                number=row["number"] if visible else None,
                name=row["name"] if visible else None,
            )
        )
    return found


async def holder(phone: str | None, email: str | None) -> UUID | None:
    """The member holding this phone (else this email), for a service acting on the caller's
    behalf without showing the member (asking a manager for it)."""
    typed = normalise(phone, email)
    if typed.phone is None and typed.email is None:
        return None
    async with db.connection() as conn:
        return await conn.fetchval(
            """
            SELECT id FROM members WHERE phone = $1 OR email = $2
            ORDER BY (phone = $1) DESC NULLS LAST, registered_at LIMIT 1
            """,
            typed.phone,
            typed.email,
        )
