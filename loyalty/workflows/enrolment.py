"""Enrolling a member: the archive (members), its points account (the ledger), the lowest
tier, a referral code, the first assignment, the referral it came with, and the
`member.enrolled` event, all in one transaction."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.members import creation, schemas
from loyalty.members import service as members
from loyalty.points import ledger
from loyalty.referrals import codes as referral_codes
from loyalty.referrals import service as referrals
from loyalty.reps import assignments as reps
from loyalty.tiers import changes as tiers
from loyalty.webhooks import service as webhooks


def _first_rep(principal: Principal, referrer: referral_codes.Referrer | None) -> UUID | None:
    """The first registration decides the first assignment: the relationship follows
    whoever brought the customer (the referrer's rep), else a rep enrols into their own book."""
    if referrer is not None and referrer.assigned_rep is not None:
        return referrer.assigned_rep
    return principal.id if principal.role == "rep" else None


async def enrol_member(
    data: schemas.MemberCreate, principal: Principal, *, channel: str | None = None
) -> schemas.Member:
    """Enrol a person or organisation with everything a member starts with."""
    values = await members.enrolment_values(data, principal)
    referrer = (
        await referral_codes.find_referrer(data.referral_code) if data.referral_code else None
    )
    assigned_rep = _first_rep(principal, referrer)
    if assigned_rep is not None:
        values["assigned_rep"] = assigned_rep
    channel = channel or members.registration_channel(principal)
    member = creation.NewMember(values)
    staff = principal.id if principal.is_staff else None
    try:
        async with db.transaction() as conn:
            await creation.insert_members(
                conn,
                [member],
                channel=channel,
                registered_by=principal.label,
                registered_by_staff=staff,
            )
            await _start(conn, member, principal, referrer, channel=channel)
            await creation.record_creations(
                conn, [(member.id, values)], actor=principal.label, actor_staff=staff
            )
    except asyncpg.UniqueViolationError as exc:
        raise await members.unique_violation(exc, values, principal) from None
    return await members.fetch_member(member.id)


async def _start(
    conn: asyncpg.Connection,
    member: creation.NewMember,
    principal: Principal,
    referrer: referral_codes.Referrer | None,
    *,
    channel: str,
) -> None:
    """What every other domain gives the new member."""
    assigned_rep = member.values.get("assigned_rep")
    await ledger.open_accounts(conn, [member.id])
    await tiers.enrol(conn, [member.id])
    await referral_codes.issue_codes(conn, [member.id])
    if assigned_rep is not None:
        await reps.first_assignments(
            conn,
            [(member.id, assigned_rep)],
            kind="referral" if referrer and referrer.assigned_rep else "registration",
            by=principal.label,
        )
    if referrer is not None:
        await referrals.record(
            conn, referrer, member.id, channel=channel, assigned_rep=assigned_rep
        )
    if await webhooks.subscribed("member.enrolled"):
        await events.record(
            conn, "member.enrolled", {"number": member.number, "channel": channel}, member.id
        )
