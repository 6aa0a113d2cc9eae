"""The service desk: the company's own line to every member. Members' requests and
complaints (from the portal, or logged by staff) wait with a response clock taken from the
member's tier (its service level's response time). A request stops its clock when it is
answered (a reply through the company's channels, `reply`) or resolved (a logged resolution
without a reply, `resolve`); either is logged on the member as a contact of its own.

Who sees which request follows `loyalty.members.visibility`: customer service every member,
a manager the department."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.i18n import N_
from loyalty.members import service as members
from loyalty.members import visibility
from loyalty.reps import contacts, schemas

REQUEST_KINDS = ("request", "complaint")
STATUSES = ("open", "answered", "resolved")
DEFAULT_RESPONSE_HOURS = 48  # a member without a tier row: the tiers' own default

# The member's tier as the service level sees it: an override in force wins.
_REQUESTS = """
    SELECT c.id, c.member, c.kind, c.channel, c.subject, c.body, c.status, c.outcome,
        c.occurred_at, c.answered_at, m.number, m.name,
        coalesce(td.code, 'normal') AS tier,
        coalesce(td.response_time_hours, {default}) AS response_hours
    FROM contacts c
    JOIN members m ON m.id = c.member
    LEFT JOIN member_tiers t ON t.member = m.id
    LEFT JOIN tier_definitions td ON td.code = CASE
        WHEN t.override_tier IS NOT NULL AND (t.override_until IS NULL OR t.override_until > now())
        THEN t.override_tier ELSE t.tier END
    WHERE c.kind = ANY($1::text[]) AND {where}
"""


def _require(principal: Principal) -> None:
    if not principal.can("service:desk"):
        raise PermissionDenied("this needs the service:desk permission")


def _request(row: Any) -> schemas.ServiceRequest:
    due_at = row["occurred_at"] + timedelta(hours=row["response_hours"])
    stopped = row["answered_at"]
    overdue = stopped > due_at if stopped is not None else now() > due_at
    return schemas.ServiceRequest(
        id=row["id"],
        member_id=row["member"],
        number=row["number"],
        name=row["name"],
        tier=row["tier"],
        kind=row["kind"],
        channel=row["channel"],
        subject=row["subject"],
        body=row["body"],
        status=row["status"],
        received_at=row["occurred_at"],
        response_hours=row["response_hours"],
        due_at=due_at,
        answered_at=stopped,
        outcome=row["outcome"],
        overdue=overdue,
    )


async def list_requests(
    principal: Principal, status: str = "open", limit: int = 200
) -> list[schemas.ServiceRequest]:
    """Requests and complaints the caller may see: open ones soonest due first, answered and
    resolved ones latest first."""
    _require(principal)
    if status not in STATUSES:
        raise InvalidInput("is not one of the choices", field="status")
    seen, arguments = visibility.condition(principal, "m", first=3)
    sql = _REQUESTS.format(default=DEFAULT_RESPONSE_HOURS, where=f"c.status = $2 AND {seen}")
    async with db.connection() as conn:
        rows = await conn.fetch(sql, list(REQUEST_KINDS), status, *arguments)
    found = [_request(row) for row in rows]
    if status == "open":
        found.sort(key=lambda r: (r.due_at, r.received_at))
    else:
        found.sort(key=lambda r: r.answered_at or r.received_at, reverse=True)
    return found[:limit]


async def get_request(request_id: UUID, principal: Principal) -> schemas.ServiceRequest:
    """One request or complaint; one the caller may not see is not found."""
    _require(principal)
    seen, arguments = visibility.condition(principal, "m", first=3)
    sql = _REQUESTS.format(default=DEFAULT_RESPONSE_HOURS, where=f"c.id = $2 AND {seen}")
    async with db.connection() as conn:
        row = await conn.fetchrow(sql, list(REQUEST_KINDS), request_id, *arguments)
    if row is None:
        raise NotFound(N_("no request with that id"))
    return _request(row)


async def _claim(conn: Any, request_id: UUID, principal: Principal) -> schemas.ServiceRequest:
    """The request, locked until the caller's transaction ends, if still open: a second
    answer (a double submit, or a colleague at the same time) is refused."""
    found = await get_request(request_id, principal)
    status = await conn.fetchval("SELECT status FROM contacts WHERE id = $1 FOR UPDATE", found.id)
    if status != "open":
        raise Conflict(N_("this request is already answered"), field="status")
    return found


async def reply(
    request_id: UUID, data: schemas.MessageCreate, principal: Principal
) -> schemas.Contact:
    """Answer a request through the company's channel (`contacts.send_message`: the portal
    inbox, email or text where consented), logged on the member; the clock stops."""
    _require(principal)
    async with db.transaction() as conn:
        found = await _claim(conn, request_id, principal)
        sent = await contacts.send_message(found.member_id, data, principal)
        await conn.execute(
            "UPDATE contacts SET status = 'answered', answered_at = $2, answered_by = $3"
            " WHERE id = $1",
            found.id,
            sent.logged_at,
            sent.id,
        )
    return sent


async def resolve(
    request_id: UUID, data: schemas.ResolutionCreate, principal: Principal
) -> schemas.ServiceRequest:
    """Close a request without a reply (settled on the phone, in the shop): the resolution
    is logged on the member as a note, and kept as the request's outcome; the clock stops."""
    _require(principal)
    outcome = data.outcome.strip()
    if not outcome:
        raise InvalidInput("is required", field="outcome")
    async with db.transaction() as conn:
        found = await _claim(conn, request_id, principal)
        subject = found.subject or found.kind
        note = await contacts.add_contact(
            found.member_id,
            schemas.ContactCreate(
                kind="note",
                channel="portal" if found.channel == "portal" else "phone",
                direction="outbound",
                subject=f"Resolved: {subject}"[:200],
                outcome=outcome,
            ),
            principal,
        )
        await conn.execute(
            "UPDATE contacts SET status = 'resolved', answered_at = $2, answered_by = $3,"
            " outcome = $4 WHERE id = $1",
            found.id,
            note.logged_at,
            note.id,
            outcome,
        )
    return await get_request(request_id, principal)


async def counts(principal: Principal) -> dict[str, int]:
    """Open requests the caller may see, and how many of them are past their clock."""
    _require(principal)
    seen, arguments = visibility.condition(principal, "m", first=2)
    sql = _REQUESTS.format(default=DEFAULT_RESPONSE_HOURS, where=f"c.status = 'open' AND {seen}")
    async with db.connection() as conn:
        row = await conn.fetchrow(
            f"""
            SELECT count(*) AS open, count(*) FILTER (
                WHERE occurred_at + make_interval(hours => response_hours) < now()) AS overdue
            FROM ({sql}) r
            """,
            list(REQUEST_KINDS),
            *arguments,
        )
    return {"open": row["open"], "overdue": row["overdue"]}


async def find_members(principal: Principal, text: str, limit: int = 30) -> list[Any]:
    """Members by phone, member number or name from one search box, through the caller's
    visibility: digits are tried as a member number and as a phone number, anything else
    as part of a name."""
    text = text.strip()
    if not text:
        raise InvalidInput("is required", field="q")
    digits = members.normalise_number(text)
    if any(ch.isalpha() for ch in text) or len(digits) < 5:
        return (await members.search_members(principal, q=text, limit=limit)).items
    found: dict[UUID, Any] = {}
    for item in (await members.search_members(principal, number=digits, limit=limit)).items:
        found[item.id] = item
    try:
        phone = members.normalise_phone(text, field="q")
    except InvalidInput:
        phone = None
    if phone:
        for item in (await members.search_members(principal, phone=phone, limit=limit)).items:
            found.setdefault(item.id, item)
    return list(found.values())
