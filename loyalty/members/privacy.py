"""Privacy, in one place: the member's export of everything held about them, the member's
closure request, its decision by an admin, and erasure that removes every personal detail
while the ledger, purchases and reports stay correct (entries keep pointing at the member,
now anonymous). Consent history (channel, yes or no, when, how) is kept as evidence; the
erasure itself is recorded."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import msgspec

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import Conflict, NotFound, PermissionDenied
from loyalty.infrastructure import db, i18n
from loyalty.members import schemas
from loyalty.members import service as members

ERASED = "[erased]"
# Archive fields that hold personal data, and what they become.
PERSONAL = {
    "phone": None,
    "email": None,
    "gender": None,
    "birthday": None,
    "address": None,
    "household": None,
    "organisation": None,
    "notes": "",
}


# What the export holds besides the archive: each query takes the member's id.
EXPORTED = {
    "changes": "SELECT * FROM member_changes WHERE member = $1 ORDER BY at",
    "points_ledger": "SELECT * FROM points_ledger WHERE member = $1 ORDER BY created_at",
    "purchases": "SELECT * FROM purchases WHERE member = $1 ORDER BY occurred_at",
    # Through the member's purchases (indexed), not by member (every line ever posted).
    "purchase_lines": (
        "SELECT * FROM purchase_lines"
        " WHERE purchase IN (SELECT id FROM purchases WHERE member = $1)"
        " ORDER BY purchase, line_no"
    ),
    "returns": (
        "SELECT * FROM purchase_returns"
        " WHERE purchase IN (SELECT id FROM purchases WHERE member = $1) ORDER BY created_at"
    ),
    "tier": "SELECT * FROM member_tiers WHERE member = $1",
    "tier_changes": "SELECT * FROM tier_changes WHERE member = $1 ORDER BY at",
    "referrals": "SELECT * FROM referrals WHERE referrer = $1 OR referred = $1 ORDER BY created_at",
    "redemptions": "SELECT * FROM redemptions WHERE member = $1 ORDER BY created_at",
    "messages": "SELECT * FROM member_notifications WHERE member = $1 ORDER BY created_at",
    "contacts": "SELECT * FROM contacts WHERE member = $1 ORDER BY occurred_at",
    "closure_requests": "SELECT * FROM closure_requests WHERE member = $1",
}


_PENDING = "SELECT 1 FROM closure_requests WHERE member = $1 AND status = 'pending'"


# --- what the member asks for -------------------------------------------------------------


async def export_data(principal: Principal) -> dict[str, Any]:
    """Everything held about the member, as JSON-ready data."""
    member = await members.get_member(principal.id, principal)
    export: dict[str, Any] = {"member": msgspec.to_builtins(member)}
    async with db.connection() as conn:
        for name, sql in EXPORTED.items():
            rows = await conn.fetch(sql, principal.id)
            export[name] = [
                {k: v for k, v in dict(row).items() if k not in ("request_hash", "password_hash")}
                for row in rows
            ]
    return json.loads(json.dumps(export, default=str))


async def request_closure(principal: Principal, reason: str) -> None:
    """The member asks for their account to be closed; an admin decides (`decide`)."""
    async with db.connection() as conn:
        if await conn.fetchval(_PENDING, principal.id):
            raise Conflict(i18n.gettext("Your request is already with us."), field="reason")
        await conn.execute(
            """
            INSERT INTO closure_requests (id, member, channel, reason, status, requested_at)
            VALUES (gen_random_uuid(), $1, 'portal', $2, 'pending', now())
            """,
            principal.id,
            reason[:2000],
        )


async def pending_closure(principal: Principal) -> bool:
    async with db.connection() as conn:
        return bool(await conn.fetchval(_PENDING, principal.id))


# --- what an admin decides ----------------------------------------------------------------


def _check_admin(principal: Principal) -> None:
    if not principal.can("privacy:erase"):
        raise PermissionDenied("only administrators decide closure requests")


def _request_schema(row: Any) -> schemas.ClosureRequest:
    return db.from_row(schemas.ClosureRequest, row, member_id=row["member"])


async def closure_requests(
    principal: Principal, status: str | None
) -> list[schemas.ClosureRequest]:
    _check_admin(principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT c.*, m.number FROM closure_requests c JOIN members m ON m.id = c.member
            WHERE ($1::text IS NULL OR c.status = $1) ORDER BY c.requested_at
            """,
            status,
        )
    return [_request_schema(row) for row in rows]


async def decide(request_id: UUID, approve: bool, principal: Principal) -> schemas.ClosureRequest:
    _check_admin(principal)
    async with db.transaction() as conn:
        request = await conn.fetchrow(
            "SELECT * FROM closure_requests WHERE id = $1 FOR UPDATE", request_id
        )
        if request is None:
            raise NotFound("no such closure request")
        if request["status"] != "pending":
            raise Conflict(f"this request was {request['status']} already")
        if approve:
            await erase(conn, request["member"], principal)
        await conn.execute(
            """
            UPDATE closure_requests SET status = $2::text, decided_by = $3, decided_at = now(),
                reason = CASE WHEN $2::text = 'approved' THEN $4 ELSE reason END
            WHERE id = $1
            """,
            request_id,
            "approved" if approve else "rejected",
            principal.label,
            ERASED,
        )
        row = await conn.fetchrow(
            "SELECT c.*, m.number FROM closure_requests c JOIN members m ON m.id = c.member"
            " WHERE c.id = $1",
            request_id,
        )
        await audit.record(
            "closures.approve" if approve else "closures.reject",
            "closure_request",
            request_id,
            before={"status": request["status"], "member": request["member"]},
            after={"status": row["status"], "member": row["member"]},
        )
    return _request_schema(row)


async def erase(conn: Any, member_id: UUID, principal: Principal) -> None:
    """Remove the member's personal data everywhere, in the caller's transaction, and that
    of the duplicates merged into the member (the same person's earlier archives)."""
    member = await conn.fetchrow("SELECT * FROM members WHERE id = $1 FOR UPDATE", member_id)
    if member["status"] == "erased":
        raise Conflict("this member was erased already")
    await _erase_archive(conn, member, principal)
    for duplicate in await conn.fetch(
        "SELECT * FROM members WHERE merged_into = $1 AND status <> 'erased' FOR UPDATE",
        member_id,
    ):
        await _erase_archive(conn, duplicate, principal)


async def _erase_archive(conn: Any, member: Any, principal: Principal) -> None:
    member_id = member["id"]
    preferences = member["contact_preferences"] or "{}"
    await conn.execute(
        """
        UPDATE members SET name = $2, phone = NULL, email = NULL, gender = NULL,
            birthday = NULL, address = NULL, household = NULL, organisation = NULL, notes = '',
            hobbies = '{}', consumption_preferences = '{}', tags = '{}', status = 'erased',
            contact_preferences = jsonb_build_object(
                'channels', '[]'::jsonb,
                'consents', coalesce($3::jsonb -> 'consents', '[]'::jsonb)),
            updated_at = now()
        WHERE id = $1
        """,
        member_id,
        f"Erased member {member['number']}",
        preferences if isinstance(preferences, str) else json.dumps(preferences),
    )
    # The change history keeps who changed which field and when, not the values.
    await conn.execute(
        """
        UPDATE member_changes SET changes = (
            SELECT coalesce(jsonb_object_agg(key, CASE
                WHEN key IN ('contact_preferences') THEN value
                WHEN jsonb_typeof(value) = 'object' AND value ? 'old'
                    THEN jsonb_build_object('old', $2::text, 'new', $2::text)
                ELSE to_jsonb($2::text) END), '{}'::jsonb)
            FROM jsonb_each(changes))
        WHERE member = $1
        """,
        member_id,
        ERASED,
    )
    for sql in (
        "UPDATE contacts SET subject = $2::text, body = $2::text, outcome = $2::text, next_step = $2::text"
        " WHERE member = $1",
        "UPDATE member_notifications SET title = $2::text, body = $2::text, title_zh = NULL,"
        " body_zh = NULL WHERE member = $1 AND kind = 'staff.message'",
        "UPDATE closure_requests SET reason = $2 WHERE member = $1",
    ):
        await conn.execute(sql, member_id, ERASED)
    # Where offers and expiry warnings were sent: the member's email or phone.
    for table in ("offer_deliveries", "expiry_warnings"):
        await conn.execute(f"UPDATE {table} SET address = NULL WHERE member = $1", member_id)
    await conn.execute("DELETE FROM member_credentials WHERE member = $1", member_id)
    await conn.execute(
        """
        INSERT INTO member_changes (id, member, action, actor, actor_staff, changes, at)
        VALUES (gen_random_uuid(), $1, 'erase', $2, $3, '{}'::jsonb, now())
        """,
        member_id,
        principal.label,
        principal.id if principal.is_staff else None,
    )
