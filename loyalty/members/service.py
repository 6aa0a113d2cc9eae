"""Member archives: normalised, unique phone and email checked before enrolment; lookup
within the caller's visibility; partial updates with a change record. Enrolling and merging
span domains: `loyalty.workflows.enrolment` and `loyalty.workflows.merging` run them."""

from __future__ import annotations

import json
import secrets
from datetime import date
from typing import Any, get_args
from uuid import UUID

import asyncpg
import msgspec
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from msgspec import UNSET

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.members import schemas, visibility
from loyalty.members.tables import Member, MemberChange
from loyalty.settings import get_settings

ARCHIVE_FIELDS = (
    "name",
    "phone",
    "email",
    "gender",
    "birthday",
    "address",
    "household",
    "hobbies",
    "consumption_preferences",
    "notes",
    "tags",
    "organisation",
    "contact_preferences",
    "occupation",
    "source",
    "relationship_strength",
)


# --- normalisation ------------------------------------------------------------------------


def normalise_phone(raw: str, field: str = "phone") -> str:
    """E.164, read in the platform's default region when no country code is given."""
    try:
        number = phonenumbers.parse(raw, get_settings().phone_region)
    except phonenumbers.NumberParseException:
        raise InvalidInput(f"{raw!r} is not a phone number", field=field) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput(f"{raw!r} is not a valid phone number", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str, field: str = "email") -> str:
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"is not a valid email address: {exc}", field=field) from None
    return result.normalized.lower()


def normalise_number(raw: str) -> str:
    return "".join(ch for ch in raw if ch.isdigit())


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def new_member_number() -> str:
    """Ten digits, no leading zero, the last a Luhn check digit: easy to read aloud and a
    mistyped digit is caught."""
    body = str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(8))
    return body + _luhn_digit(body)


def format_number(number: str) -> str:
    return f"{number[:4]} {number[4:7]} {number[7:]}"


# --- reading ------------------------------------------------------------------------------


def _decode(value: Any, type_: Any) -> Any:
    if value is None:
        return None
    return msgspec.convert(value, type_)


def to_schema(row: dict[str, Any]) -> schemas.Member:
    return schemas.Member(
        id=row["id"],
        number=row["number"],
        kind=row["kind"],
        status=row["status"],
        name=row["name"],
        phone=row["phone"],
        email=row["email"],
        gender=row["gender"],
        birthday=row["birthday"],
        address=_decode(row["address"], schemas.Address),
        household=_decode(row["household"], schemas.Household),
        hobbies=list(row["hobbies"] or []),
        consumption_preferences=list(row["consumption_preferences"] or []),
        notes=row["notes"] or "",
        tags=list(row["tags"] or []),
        organisation=_decode(row["organisation"], schemas.Organisation),
        contact_preferences=_decode(row["contact_preferences"] or {}, schemas.ContactPreferences),
        registration=schemas.Registration(
            at=row["registered_at"], channel=row["registration_channel"], by=row["registered_by"]
        ),
        assigned_rep_id=row["assigned_rep"],
        merged_into=row["merged_into"],
        updated_at=row["updated_at"],
        occupation=row.get("occupation") or "",
        source=row.get("source") or "",
        relationship_strength=row.get("relationship_strength"),
    )


async def _row(member_id: UUID) -> dict[str, Any] | None:
    return await Member.select().where(Member.id == member_id).output(load_json=True).first()


async def get_member(member_id: UUID, principal: Principal) -> schemas.Member:
    """A member the caller may see; others are 'not found' so existence does not leak."""
    row = await _row(member_id)
    if row is None or not await visibility.can_see(principal, row["id"]):
        raise NotFound("no member with that id")
    return to_schema(row)


async def search_members(
    principal: Principal,
    *,
    phone: str | None = None,
    email: str | None = None,
    number: str | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> schemas.MemberList:
    query = Member.select(
        Member.id,
        Member.number,
        Member.name,
        Member.kind,
        Member.phone,
        Member.email,
        Member.status,
    )
    clauses = []
    if phone:
        clauses.append(Member.phone == normalise_phone(phone))
    if email:
        clauses.append(Member.email == normalise_email(email))
    if number:
        clauses.append(Member.number == normalise_number(number))
    if q:
        clauses.append(Member.name.ilike(f"%{_escape_like(q.strip())}%"))
    if not (phone or email or number):
        clauses.append(Member.status == "active")
    visible = visibility.where(principal)
    if visible is not None:
        clauses.append(visible)
    for clause in clauses:
        query = query.where(clause)
    rows = await query.order_by(Member.name).order_by(Member.id).limit(limit + 1).offset(offset)
    return schemas.MemberList(
        items=[schemas.MemberSummary(**row) for row in rows[:limit]],
        limit=limit,
        offset=offset,
        has_more=len(rows) > limit,
    )


async def numbers(member_ids: list[UUID]) -> dict[UUID, str]:
    """Member numbers alone (no archive), e.g. for a swap naming another rep's member."""
    if not member_ids:
        return {}
    rows = await Member.select(Member.id, Member.number).where(Member.id.is_in(member_ids))
    return {row["id"]: row["number"] for row in rows}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def history(member_id: UUID, principal: Principal) -> list[schemas.Change]:
    await get_member(member_id, principal)
    rows = (
        await MemberChange.select()
        .where(MemberChange.member == member_id)
        .order_by(MemberChange.at, ascending=False)
        .output(load_json=True)
    )
    return [
        schemas.Change(action=r["action"], actor=r["actor"], at=r["at"], changes=r["changes"])
        for r in rows
    ]


# --- writing ------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A JSON-ready form of a field value (for storage and the change record)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, date):
        return value.isoformat()
    return msgspec.to_builtins(value)


def stored(field: str, plain: Any) -> Any:
    """A change-record value as the column takes it (dates are ISO strings in the record)."""
    if field == "birthday" and isinstance(plain, str):
        return date.fromisoformat(plain)
    return plain


def _stamp_consents(prefs: schemas.ContactPreferences | None) -> schemas.ContactPreferences:
    prefs = prefs or schemas.ContactPreferences()
    for consent in prefs.consents:
        if consent.at is None:
            consent.at = now()
    channels = [c.channel for c in prefs.consents]
    if len(channels) != len(set(channels)):
        raise InvalidInput("one consent per channel", field="contact_preferences.consents")
    return prefs


async def _owner_of(field: str, value: str, principal: Principal) -> str:
    row = (
        await Member.select(Member.id, Member.number, Member.assigned_rep)
        .where(getattr(Member, field) == value)
        .first()
    )
    if row is None:
        return f"this {field} is already registered to another member"
    if await visibility.can_see(principal, row["id"]):
        return f"this {field} is already registered to member {row['number']} ({row['id']})"
    return f"this {field} is already registered to another member"


async def unique_violation(
    exc: asyncpg.UniqueViolationError, values: dict[str, Any], principal: Principal
) -> Conflict:
    """The conflict to answer when a phone or email was taken by a concurrent write."""
    field = "phone" if "phone" in (exc.constraint_name or "") else "email"
    return Conflict(await _owner_of(field, values[field], principal), field=field)


def registration_channel(principal: Principal) -> str:
    return {"api_key": "integration", "member": "portal", "portal": "portal"}.get(
        principal.kind, "staff"
    )


async def enrolment_values(data: schemas.MemberCreate, principal: Principal) -> dict[str, Any]:
    """A new member's archive, normalised and checked: phone and email must be unused."""
    values: dict[str, Any] = {
        "name": data.name.strip(),
        "kind": data.kind,
        "phone": normalise_phone(data.phone) if data.phone else None,
        "email": normalise_email(data.email) if data.email else None,
        "gender": data.gender,
        "birthday": data.birthday,
        "address": plain(data.address),
        "household": plain(data.household),
        "hobbies": data.hobbies,
        "consumption_preferences": data.consumption_preferences,
        "notes": data.notes,
        "tags": sorted(set(data.tags)),
        "organisation": plain(data.organisation),
        "contact_preferences": plain(_stamp_consents(data.contact_preferences)),
        "occupation": data.occupation.strip(),
        "source": data.source.strip(),
        "relationship_strength": data.relationship_strength,
    }
    if data.kind == "person" and data.organisation is not None:
        raise InvalidInput("only organisations have an organisation archive", field="organisation")
    if data.birthday and data.birthday > date.today():
        raise InvalidInput("cannot be in the future", field="birthday")
    for field in ("phone", "email"):
        if values[field] and await Member.exists().where(getattr(Member, field) == values[field]):
            raise Conflict(await _owner_of(field, values[field], principal), field=field)
    return values


async def fetch_member(member_id: UUID) -> schemas.Member:
    """A member as stored, without a visibility check (for the workflows that just wrote it)."""
    return to_schema(await _row(member_id))


async def update_member(
    member_id: UUID, data: schemas.MemberUpdate, principal: Principal
) -> schemas.Member:
    current = await get_member(member_id, principal)
    if current.status != "active":
        raise Conflict("this member was merged into another; update the survivor", field="status")
    values: dict[str, Any] = {}
    for field in ARCHIVE_FIELDS:
        value = getattr(data, field)
        if value is UNSET:
            continue
        if field == "phone" and value is not None:
            value = normalise_phone(value)
        elif field == "email" and value is not None:
            value = normalise_email(value)
        elif field == "name":
            value = value.strip()
        elif field == "tags":
            value = sorted(set(value))
        elif field == "contact_preferences":
            value = _stamp_consents(value)
            if value.language is UNSET:  # not part of this update: the stored one stays
                value.language = current.contact_preferences.language
        elif field == "birthday" and value and value > date.today():
            raise InvalidInput("cannot be in the future", field="birthday")
        elif field == "organisation" and value is not None and current.kind != "organisation":
            raise InvalidInput("only organisations have an organisation archive", field=field)
        values[field] = plain(value)
    old = msgspec.to_builtins(current)
    changes = {
        field: {"old": old[field], "new": new}
        for field, new in values.items()
        if plain(old[field]) != new
    }
    if not changes:
        return current
    try:
        async with db.transaction():
            await Member.update(
                {getattr(Member, f): stored(f, values[f]) for f in changes}
                | {Member.updated_at: now()}
            ).where(Member.id == member_id)
            await MemberChange(
                member=member_id,
                action="update",
                actor=principal.label,
                actor_staff=principal.id if principal.is_staff else None,
                changes=changes,
            ).save()
    except asyncpg.UniqueViolationError as exc:
        raise await unique_violation(exc, values, principal) from None
    return to_schema(await _row(member_id))


async def resolve_member_id(
    *, member_id: UUID | None = None, number: str | None = None, phone: str | None = None
) -> UUID:
    """Find a member by id, number or phone; a merged member resolves to its survivor."""
    if member_id is not None:
        row = (
            await Member.select(Member.id, Member.merged_into).where(Member.id == member_id).first()
        )
        field = "member_id"
    elif number is not None:
        row = (
            await Member.select(Member.id, Member.merged_into)
            .where(Member.number == normalise_number(number))
            .first()
        )
        field = "member_number"
    elif phone is not None:
        row = (
            await Member.select(Member.id, Member.merged_into)
            .where(Member.phone == normalise_phone(phone, field="member_phone"))
            .first()
        )
        field = "member_phone"
    else:
        raise InvalidInput(
            "name the member by member_id, member_number or member_phone", field="member_id"
        )
    if row is None:
        raise InvalidInput("no member matches", field=field)
    return row["merged_into"] or row["id"]


async def language_of(member_id: UUID) -> str | None:
    """The language the member chose for their messages, if any."""
    async with db.connection() as conn:
        return await conn.fetchval(
            "SELECT contact_preferences->>'language' FROM members WHERE id = $1", member_id
        )


async def set_language(member_id: UUID, language: str, actor: str) -> bool:
    """Record the member's language (the portal's language switch); True if it changed.
    Recorded in the archive's change history like any other preference."""
    if language not in get_args(schemas.Language):
        raise InvalidInput("is not a language we write in", field="language")
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            "SELECT contact_preferences->>'language' AS language FROM members"
            " WHERE id = $1 AND status = 'active' FOR UPDATE",
            member_id,
        )
        if row is None or row["language"] == language:
            return False
        await conn.execute(
            """
            UPDATE members SET updated_at = now(), contact_preferences = jsonb_set(
                CASE WHEN jsonb_typeof(contact_preferences) = 'object'
                     THEN contact_preferences ELSE '{}'::jsonb END,
                '{language}', to_jsonb($2::text))
            WHERE id = $1
            """,
            member_id,
            language,
        )
        await conn.execute(
            """
            INSERT INTO member_changes (id, member, action, actor, changes, at)
            VALUES (gen_random_uuid(), $1, 'update', $2, $3::jsonb, now())
            """,
            member_id,
            actor,
            json.dumps({"language": {"old": row["language"], "new": language}}),
        )
    return True
