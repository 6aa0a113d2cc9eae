"""Company-owned relationships: who serves each member, and how that changes.

Rules (every number is in `rep_settings`):
- At most one rep serves a member at a time (a unique index on open assignments); every
  change closes one assignment and opens the next, with who, why and who approved.
- Reps never move members. Managers hand pool members to reps of their department (with the
  approval recorded); a rep in their first month gets none, and a rep gets at most
  `daily_pool_cap` pool members a day.
- Reclaim (the `reclaim_members` job, daily): no purchase or referral since the assignment
  began -> back to the pool on the first day of the fourth month; no purchase for six months
  (shorter for upper tiers) -> on the first day of the seventh month. Rep and manager are
  warned `warning_days` ahead. An assignment without a service record in its protection
  period may be taken back by the manager.
- A rep who leaves or changes department hands every member to the manager's queue; each
  must be reassigned within `handover_days`, else the general managers are told.
- Swaps between two reps need the manager's approval (the general manager's across
  departments).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import local_today, now
from loyalty.members import service as members
from loyalty.reps import schemas
from loyalty.settings import get_settings
from loyalty.webhooks import service as webhooks

# --- settings -----------------------------------------------------------------------------


def _settings_schema(row: Any) -> schemas.RepSettings:
    return schemas.RepSettings(
        protection_days=row["protection_days"],
        inactive_months=row["inactive_months"],
        no_deal_months=row["no_deal_months"],
        tier_no_deal_months=_json(row["tier_no_deal_months"]),
        warning_days=row["warning_days"],
        new_rep_days=row["new_rep_days"],
        daily_pool_cap=row["daily_pool_cap"],
        handover_days=row["handover_days"],
        contact_deadline_hour=row["contact_deadline_hour"],
        tier_min_level=_json(row["tier_min_level"]),
        refusal_retry_days=row["refusal_retry_days"],
        completeness_fields=list(row["completeness_fields"] or []),
        completeness_days=row["completeness_days"],
        rotation_months=row["rotation_months"],
        introduction_days=row["introduction_days"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


def _json(value: Any) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


async def get_rep_settings(conn: asyncpg.Connection | None = None) -> schemas.RepSettings:
    if conn is None:
        async with db.connection() as conn:
            return await get_rep_settings(conn)
    row = await conn.fetchrow("SELECT * FROM rep_settings WHERE id = 1")
    if row is None:
        row = await conn.fetchrow(
            """
            INSERT INTO rep_settings (id, protection_days, inactive_months, no_deal_months,
                tier_no_deal_months, warning_days, new_rep_days, daily_pool_cap,
                handover_days, contact_deadline_hour, updated_at, updated_by)
            VALUES (1, 30, 3, 6, '{}', 7, 30, 20, 7, 10, now(), 'system')
            ON CONFLICT (id) DO UPDATE SET id = 1 RETURNING *
            """
        )
    return _settings_schema(row)


async def put_rep_settings(
    data: schemas.RepSettingsBody, principal: Principal
) -> schemas.RepSettings:
    async with db.transaction() as conn:
        await get_rep_settings(conn)
        row = await conn.fetchrow(
            """
            UPDATE rep_settings SET protection_days = $1, inactive_months = $2,
                no_deal_months = $3, tier_no_deal_months = $4::jsonb, warning_days = $5,
                new_rep_days = $6, daily_pool_cap = $7, handover_days = $8,
                contact_deadline_hour = $9, updated_at = now(), updated_by = $10,
                tier_min_level = $11::jsonb, refusal_retry_days = $12,
                completeness_fields = $13, completeness_days = $14, rotation_months = $15,
                introduction_days = $16
            WHERE id = 1 RETURNING *
            """,
            data.protection_days,
            data.inactive_months,
            data.no_deal_months,
            json.dumps(data.tier_no_deal_months),
            data.warning_days,
            data.new_rep_days,
            data.daily_pool_cap,
            data.handover_days,
            data.contact_deadline_hour,
            principal.label,
            json.dumps(data.tier_min_level),
            data.refusal_retry_days,
            data.completeness_fields,
            data.completeness_days,
            data.rotation_months,
            data.introduction_days,
        )
    return _settings_schema(row)


# --- assignment ---------------------------------------------------------------------------


async def reassign(
    conn: asyncpg.Connection,
    member_ids: list[UUID],
    rep_id: UUID | None,
    *,
    kind: str,
    reason: str,
    by: str,
    approved_by: str | None = None,
    end_reason: str | None = None,
) -> None:
    """Close the members' current assignments and open one with `rep_id` (None: the pool),
    inside the caller's transaction, recording the change on each archive."""
    if not member_ids:
        return
    previous = await conn.fetch(
        "SELECT id, assigned_rep FROM members WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        member_ids,
    )
    await conn.execute(
        """
        UPDATE assignments SET ended_at = now(), end_reason = $2
        WHERE member = ANY($1::uuid[]) AND ended_at IS NULL
        """,
        member_ids,
        end_reason or kind,
    )
    if rep_id is not None:
        await conn.execute(
            """
            INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, approved_by,
                started_at)
            SELECT gen_random_uuid(), m, $2, $3, $4, $5, $6, now() FROM unnest($1::uuid[]) AS m
            """,
            member_ids,
            rep_id,
            kind,
            reason,
            by,
            approved_by,
        )
    await conn.execute(
        "UPDATE members SET assigned_rep = $2, updated_at = now() WHERE id = ANY($1::uuid[])",
        member_ids,
        rep_id,
    )
    # Open follow-ups are the new rep's (none in the pool) from now, not at the next plan.
    await conn.execute(
        "UPDATE follow_ups SET rep = $2 WHERE member = ANY($1::uuid[]) AND closed_at IS NULL",
        member_ids,
        rep_id,
    )
    if await webhooks.subscribed("member.reassigned"):
        await events.record_many(
            conn,
            "member.reassigned",
            [
                (
                    row["id"],
                    {
                        "from_rep": str(row["assigned_rep"]) if row["assigned_rep"] else None,
                        "to_rep": str(rep_id) if rep_id else None,
                        "kind": kind,
                    },
                )
                for row in previous
            ],
        )
    await conn.execute(
        """
        INSERT INTO member_changes (id, member, action, actor, changes, at)
        SELECT gen_random_uuid(), p.id, 'assign', $3,
            jsonb_build_object('assigned_rep', jsonb_build_object(
                'old', p.rep::text, 'new', $2::text, 'kind', $4::text, 'reason', $5::text,
                'approved_by', $6::text)),
            now()
        FROM unnest($1::uuid[], $7::uuid[]) AS p(id, rep)
        """,
        [row["id"] for row in previous],
        str(rep_id) if rep_id else None,
        by,
        kind,
        reason,
        approved_by,
        [row["assigned_rep"] for row in previous],
    )


async def first_assignment(
    conn: asyncpg.Connection, member_id: UUID, rep_id: UUID, *, kind: str, by: str
) -> None:
    """The assignment a new member starts with (the member row already names the rep)."""
    await conn.execute(
        """
        INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, started_at)
        VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, now())
        """,
        member_id,
        rep_id,
        kind,
        "the referrer's rep" if kind == "referral" else "enrolled by this rep",
        by,
    )


async def _rep(conn: asyncpg.Connection, rep_id: UUID) -> Any:
    rep = await conn.fetchrow(
        "SELECT id, username, role, department, active, created_at, level FROM staff WHERE id = $1",
        rep_id,
    )
    if rep is None or rep["role"] != "rep" or not rep["active"]:
        raise InvalidInput("is not an active rep", field="rep_id")
    return rep


LEVELS = ("junior", "regular", "senior")


async def check_levels(
    conn: asyncpg.Connection, rep: Any, member_ids: list[UUID], settings: schemas.RepSettings
) -> None:
    """Upper tiers go only to reps of a high enough level (rep_settings.tier_min_level)."""
    rows = await conn.fetch(
        "SELECT m.number, t.tier FROM members m JOIN member_tiers t ON t.member = m.id"
        " WHERE m.id = ANY($1::uuid[]) ORDER BY m.number",
        member_ids,
    )
    for row in rows:
        needed = settings.tier_min_level.get(row["tier"])
        if needed and LEVELS.index(rep["level"]) < LEVELS.index(needed):
            raise Conflict(
                f"{rep['username']} is a {rep['level']} rep; {row['tier']} members such as"
                f" {row['number']} need a {needed} rep",
                field="rep_id",
            )


def _check_manages(principal: Principal, department: str | None) -> None:
    """Managers act in their own department; general managers and admins everywhere."""
    if principal.can("departments:all"):
        return
    limit = principal.department_limit
    if limit and department and limit == department:
        return
    raise PermissionDenied("only the manager of this department (or above) may do this")


async def assign_from_pool(
    data: schemas.PoolAssignment, principal: Principal
) -> schemas.AssignmentResult:
    """A manager hands pool members to a rep of the department, with the approval recorded."""
    settings = await get_rep_settings()
    at = now()
    async with db.transaction() as conn:
        rep = await _rep(conn, data.rep_id)
        _check_manages(principal, rep["department"])
        ids = sorted(set(data.member_ids))
        await _check_pool_hand_out(conn, rep, len(ids), settings, at, cap_field="member_ids")
        rows = await conn.fetch(
            """
            SELECT m.id FROM members m
            WHERE m.id = ANY($1::uuid[]) AND m.assigned_rep IS NULL AND m.status = 'active'
              AND NOT EXISTS (SELECT 1 FROM handovers h
                              WHERE h.member = m.id AND h.resolved_at IS NULL)
            FOR UPDATE OF m
            """,
            ids,
        )
        if len(rows) != len(ids):
            missing = sorted(set(ids) - {row["id"] for row in rows})
            raise Conflict(
                f"not in the pool: {', '.join(str(m) for m in missing[:5])}", field="member_ids"
            )
        await check_levels(conn, rep, ids, settings)
        await reassign(
            conn,
            ids,
            rep["id"],
            kind="pool",
            reason=data.reason,
            by=principal.label,
            approved_by=principal.label,
        )
    return schemas.AssignmentResult(assigned=len(ids), rep_id=rep["id"])


async def _check_pool_hand_out(
    conn: asyncpg.Connection,
    rep: Any,
    count: int,
    settings: schemas.RepSettings,
    at: datetime,
    *,
    cap_field: str,
) -> None:
    """The pool's rules for `count` members going to `rep`, whichever call hands them out:
    no pool members in a rep's first month, and at most the daily cap."""
    if rep["created_at"] > at - timedelta(days=settings.new_rep_days):
        raise Conflict(
            f"a rep gets no pool members in their first {settings.new_rep_days} days",
            field="rep_id",
        )
    # One hand-out at a time per rep: the daily cap is counted under this lock.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"pool:{rep['id']}")
    today_start = datetime.combine(local_today(at), datetime.min.time(), get_settings().tz)
    received = await conn.fetchval(
        "SELECT count(*) FROM assignments WHERE rep = $1 AND kind = 'pool' AND started_at >= $2",
        rep["id"],
        today_start,
    )
    if received + count > settings.daily_pool_cap:
        raise Conflict(
            f"a rep may receive {settings.daily_pool_cap} pool members a day;"
            f" {rep['username']} has {received} today",
            field=cap_field,
        )


async def transfer(
    member_id: UUID, data: schemas.Transfer, principal: Principal
) -> schemas.AssignmentResult:
    """A manager moves a member to another rep (or back to the pool); a member from the pool
    goes by the pool's rules."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("reps cannot move members; ask your manager")
    await members.get_member(member_id, principal)
    async with db.transaction() as conn:
        current_rep = await conn.fetchval(
            "SELECT assigned_rep FROM members WHERE id = $1 FOR UPDATE", member_id
        )
        if await conn.fetchval(
            "SELECT 1 FROM handovers WHERE member = $1 AND resolved_at IS NULL", member_id
        ):
            # Its department's manager resolves it, never back to the rep who left.
            raise Conflict(
                "this member is waiting in a handover queue; resolve the handover instead",
                field="member_id",
            )
        departments = {await _department_of(conn, current_rep)}
        rep_id, kind = None, "transfer"
        if data.rep_id is not None:
            rep = await _rep(conn, data.rep_id)
            settings = await get_rep_settings(conn)
            if current_rep is None:
                kind = "pool"
                await _check_pool_hand_out(conn, rep, 1, settings, now(), cap_field="rep_id")
            await check_levels(conn, rep, [member_id], settings)
            departments.add(rep["department"])
            rep_id = rep["id"]
        for department in departments - {None}:
            _check_manages(principal, department)
        await reassign(
            conn,
            [member_id],
            rep_id,
            kind=kind,
            reason=data.reason,
            by=principal.label,
            approved_by=principal.label,
        )
    return schemas.AssignmentResult(assigned=1, rep_id=rep_id)


async def _department_of(conn: asyncpg.Connection, staff_id: UUID | None) -> str | None:
    if staff_id is None:
        return None
    return await conn.fetchval("SELECT department FROM staff WHERE id = $1", staff_id)


async def history(member_id: UUID, principal: Principal) -> list[schemas.AssignmentPeriod]:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT a.*, s.username FROM assignments a JOIN staff s ON s.id = a.rep
            WHERE a.member = $1 ORDER BY a.started_at DESC
            """,
            member_id,
        )
    return [
        schemas.AssignmentPeriod(
            rep_id=row["rep"],
            rep=row["username"],
            kind=row["kind"],
            reason=row["reason"],
            assigned_by=row["assigned_by"],
            approved_by=row["approved_by"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            end_reason=row["end_reason"],
        )
        for row in rows
    ]


async def pool(principal: Principal, limit: int = 100) -> list[schemas.PoolMember]:
    """Unassigned members not waiting in a handover queue, longest waiting first."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("the pool is handed out by managers")
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT m.id, m.number, m.name, t.tier,
                (SELECT max(a.ended_at) FROM assignments a WHERE a.member = m.id) AS since
            FROM members m JOIN member_tiers t ON t.member = m.id
            WHERE m.assigned_rep IS NULL AND m.status = 'active'
              AND NOT EXISTS (SELECT 1 FROM handovers h
                              WHERE h.member = m.id AND h.resolved_at IS NULL)
            ORDER BY since NULLS FIRST, m.registered_at LIMIT $1
            """,
            limit,
        )
    return [
        schemas.PoolMember(r["id"], r["number"], r["name"], r["tier"], r["since"]) for r in rows
    ]


# --- reclaim ------------------------------------------------------------------------------

# Each open assignment's reclaim dates: `inactive` (no purchase or referral since it began)
# on the first day of the month `inactive_months` after it began; `no_deal` (no purchase for
# `no_deal_months`, fewer for some tiers) on the first day of the month that many months
# after the later of the last purchase and the start of the assignment.
_DUE = """
WITH settings AS (SELECT * FROM rep_settings WHERE id = 1),
open AS (
    SELECT a.member, a.rep, a.started_at,
        (a.started_at AT TIME ZONE $2)::date AS start_day,
        (SELECT max(p.occurred_at) FROM purchases p
         WHERE p.member = a.member AND p.occurred_at >= a.started_at) AS bought_since,
        EXISTS (SELECT 1 FROM referrals r WHERE r.referrer = a.member
                AND r.created_at >= a.started_at) AS referred_since,
        (SELECT max(p.occurred_at) FROM purchases p WHERE p.member = a.member) AS last_purchase,
        t.tier
    FROM assignments a JOIN member_tiers t ON t.member = a.member
    WHERE a.ended_at IS NULL
), due AS (
    SELECT o.member, o.rep, 'inactive' AS rule,
        (date_trunc('month', o.start_day) + make_interval(months => s.inactive_months))::date
            AS due_on
    FROM open o, settings s
    WHERE o.bought_since IS NULL AND NOT o.referred_since
    UNION ALL
    SELECT o.member, o.rep, 'no_deal',
        (date_trunc('month', (greatest(o.last_purchase, o.started_at) AT TIME ZONE $2)::date)
         + make_interval(months => least(s.no_deal_months,
               coalesce((s.tier_no_deal_months ->> o.tier)::int, s.no_deal_months))))::date
    FROM open o, settings s
)
"""


async def reclaim_members(today: date | None = None) -> schemas.ReclaimRun:
    """The daily job: warn ahead of reclaims, and return due members to the pool. Running it
    twice on a day changes nothing more."""
    today = today or local_today()
    tz = get_settings().timezone
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        warned = await conn.fetch(
            _DUE
            + """
            INSERT INTO reclaims (id, member, rep, rule, due_on, warned_at)
            SELECT gen_random_uuid(), member, rep, rule, due_on, now() FROM due
            WHERE due_on > $1 AND due_on <= $1 + $3::int
            ON CONFLICT (member, rule, due_on) DO NOTHING
            RETURNING member, rep, rule, due_on
            """,
            today,
            tz,
            settings.warning_days,
        )
        for row in warned:
            await _warn(conn, row)
        due = await conn.fetch(
            _DUE
            + """
            SELECT DISTINCT ON (member) member, rep, rule, due_on FROM due
            WHERE due_on <= $1 ORDER BY member, due_on
            """,
            today,
            tz,
        )
        for row in due:
            await conn.execute(
                """
                INSERT INTO reclaims (id, member, rep, rule, due_on, reclaimed_at)
                VALUES (gen_random_uuid(), $1, $2, $3, $4, now())
                ON CONFLICT (member, rule, due_on) DO UPDATE SET reclaimed_at = now()
                """,
                row["member"],
                row["rep"],
                row["rule"],
                row["due_on"],
            )
        by_rule: dict[str, list[UUID]] = {}
        for row in due:
            by_rule.setdefault(row["rule"], []).append(row["member"])
        for rule, member_ids in by_rule.items():
            await reassign(
                conn,
                member_ids,
                None,
                kind="reclaim",
                reason=f"reclaimed by the {rule} rule",
                by="reclaim job",
                end_reason=f"reclaim:{rule}",
            )
    return schemas.ReclaimRun(warned=len(warned), reclaimed=len(due), day=today)


async def _warn(conn: asyncpg.Connection, row: Any) -> None:
    member = await conn.fetchrow("SELECT number, name FROM members WHERE id = $1", row["member"])
    rep = await conn.fetchrow("SELECT username, department FROM staff WHERE id = $1", row["rep"])
    managers = await department_managers(conn, rep["department"])
    title = f"{member['name']} ({member['number']}) returns to the pool on {row['due_on']}"
    body = (
        "No purchase or referral since the assignment began."
        if row["rule"] == "inactive"
        else "No purchase for too long."
    ) + " A purchase, or a referral, before then keeps the member with the rep."
    for staff_id in [row["rep"], *managers]:
        await notify_staff(
            conn,
            staff_id,
            kind="reclaim_warning",
            key=f"reclaim:{row['member']}:{row['rule']}:{row['due_on']}:{staff_id}",
            title=title,
            body=body,
            member_id=row["member"],
        )


async def department_managers(conn: asyncpg.Connection, department: str | None) -> list[UUID]:
    """The active managers of a department: who is told about its members."""
    rows = await conn.fetch(
        "SELECT id FROM staff WHERE role = 'manager' AND active AND department = $1", department
    )
    return [row["id"] for row in rows]


async def notify_staff(
    conn: asyncpg.Connection,
    staff_id: UUID,
    *,
    kind: str,
    key: str,
    title: str,
    body: str,
    member_id: UUID | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO staff_notices (id, staff, kind, key, title, body, member, created_at)
        VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, now())
        ON CONFLICT (key) DO NOTHING
        """,
        staff_id,
        kind,
        key,
        title,
        body,
        member_id,
    )


async def reclaim_preview(principal: Principal) -> list[schemas.ReclaimCandidate]:
    """Members a manager may take back now (protection period without a service record)
    and those the job will return to the pool soon, with the rule and the date."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("only managers see the reclaim preview")
    settings = await get_rep_settings()
    today = local_today()
    async with db.connection() as conn:
        rows = await conn.fetch(
            _DUE
            + """
            , protection AS (
                SELECT o.member, o.rep, 'protection' AS rule,
                    (o.started_at + make_interval(days => $3))::date AS due_on
                FROM open o
                WHERE o.started_at < now() - make_interval(days => $3)
                  AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.member = o.member
                                  AND c.staff = o.rep AND c.occurred_at >= o.started_at
                                  AND c.occurred_at < o.started_at + make_interval(days => $3))
            ), everything AS (
                SELECT * FROM due WHERE due_on <= $1::date + 31 UNION ALL SELECT * FROM protection
            )
            SELECT e.*, m.number, m.name, s.username, s.department
            FROM everything e JOIN members m ON m.id = e.member JOIN staff s ON s.id = e.rep
            ORDER BY e.due_on, m.number
            """,
            today,
            get_settings().timezone,
            settings.protection_days,
        )
    return [
        schemas.ReclaimCandidate(
            member_id=row["member"],
            number=row["number"],
            name=row["name"],
            rep=row["username"],
            rule=row["rule"],
            due_on=row["due_on"],
        )
        for row in rows
        if principal.department_limit is None or row["department"] == principal.department_limit
    ]


async def take_back(member_id: UUID, principal: Principal) -> schemas.AssignmentResult:
    """A manager takes back a member whose protection period passed without service."""
    settings = await get_rep_settings()
    member = await members.get_member(member_id, principal)
    async with db.transaction() as conn:
        assignment = await conn.fetchrow(
            "SELECT * FROM assignments WHERE member = $1 AND ended_at IS NULL FOR UPDATE",
            member_id,
        )
        if assignment is None:
            raise Conflict("this member is in the pool already")
        _check_manages(principal, await _department_of(conn, assignment["rep"]))
        protected_until = assignment["started_at"] + timedelta(days=settings.protection_days)
        served = await conn.fetchval(
            "SELECT 1 FROM contacts WHERE member = $1 AND staff = $2"
            " AND occurred_at >= $3 AND occurred_at < $4",
            member_id,
            assignment["rep"],
            assignment["started_at"],
            protected_until,
        )
        if served or protected_until > now():
            raise Conflict(
                "only an assignment without a service record after its protection period"
                " can be taken back"
            )
        await reassign(
            conn,
            [member.id],
            None,
            kind="reclaim",
            reason="no service record in the protection period",
            by=principal.label,
            approved_by=principal.label,
            end_reason="reclaim:protection",
        )
    return schemas.AssignmentResult(assigned=0, rep_id=None)


# --- handovers ----------------------------------------------------------------------------


async def hand_over(rep_id: UUID, *, reason: str, department: str | None, by: str) -> int:
    """A rep left (or moved): every member goes to the department manager's handover queue."""
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        member_ids = [
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM members WHERE assigned_rep = $1 ORDER BY id", rep_id
            )
        ]
        if not member_ids:
            return 0
        await reassign(
            conn,
            member_ids,
            None,
            kind="handover",
            reason=f"the rep's {reason}",
            by=by,
            end_reason=f"handover:{reason}",
        )
        await conn.execute(
            """
            INSERT INTO handovers (id, member, from_rep, department, reason, created_at, due_at)
            SELECT gen_random_uuid(), m, $2, $3, $4, now(), now() + make_interval(days => $5)
            FROM unnest($1::uuid[]) AS m
            ON CONFLICT DO NOTHING
            """,
            member_ids,
            rep_id,
            department,
            reason,
            settings.handover_days,
        )
    return len(member_ids)


async def handover_queue(principal: Principal) -> list[schemas.HandoverItem]:
    if not principal.can("reps:assign"):
        raise PermissionDenied("the handover queue is for managers")
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT h.*, m.number, m.name, s.username FROM handovers h
            JOIN members m ON m.id = h.member JOIN staff s ON s.id = h.from_rep
            WHERE h.resolved_at IS NULL AND ($1::text IS NULL OR h.department = $1)
            ORDER BY h.due_at
            """,
            principal.department_limit,
        )
    return [
        schemas.HandoverItem(
            id=row["id"],
            member_id=row["member"],
            number=row["number"],
            name=row["name"],
            from_rep=row["username"],
            reason=row["reason"],
            due_at=row["due_at"],
            overdue=row["due_at"] < now(),
            escalated=row["escalated_at"] is not None,
        )
        for row in rows
    ]


async def resolve_handover(
    handover_id: UUID, data: schemas.Transfer, principal: Principal
) -> schemas.AssignmentResult:
    """Give a handed-over member to a new rep (never back to the one who left)."""
    if data.rep_id is None:
        raise InvalidInput("name the rep who takes over", field="rep_id")
    async with db.transaction() as conn:
        handover = await conn.fetchrow(
            "SELECT * FROM handovers WHERE id = $1 FOR UPDATE", handover_id
        )
        if handover is None or (
            principal.department_limit is not None
            and handover["department"] != principal.department_limit
        ):
            raise NotFound("no such handover in your queue")
        if handover["resolved_at"] is not None:
            raise Conflict("this handover is done already")
        if data.rep_id == handover["from_rep"]:
            raise Conflict("a member cannot be handed back to the rep who left", field="rep_id")
        rep = await _rep(conn, data.rep_id)
        _check_manages(principal, rep["department"])
        await check_levels(conn, rep, [handover["member"]], await get_rep_settings(conn))
        await reassign(
            conn,
            [handover["member"]],
            rep["id"],
            kind="handover",
            reason=data.reason,
            by=principal.label,
            approved_by=principal.label,
        )
        await _close_handover(conn, handover["member"], principal)
    return schemas.AssignmentResult(assigned=1, rep_id=rep["id"])


async def _close_handover(conn: asyncpg.Connection, member_id: UUID, principal: Principal) -> None:
    await conn.execute(
        """
        UPDATE handovers SET resolved_at = now(), resolved_by = $2
        WHERE member = $1 AND resolved_at IS NULL
        """,
        member_id,
        principal.label,
    )


async def escalate_handovers() -> int:
    """Handovers past their deadline go to every general manager, once."""
    async with db.transaction() as conn:
        overdue = await conn.fetch(
            """
            UPDATE handovers h SET escalated_at = now()
            FROM members m
            WHERE m.id = h.member AND h.resolved_at IS NULL AND h.escalated_at IS NULL
              AND h.due_at < now()
            RETURNING h.id, h.member, h.department, m.number, m.name
            """
        )
        bosses = await conn.fetch("SELECT id FROM staff WHERE role = 'general_manager' AND active")
        for row in overdue:
            for boss in bosses:
                await notify_staff(
                    conn,
                    boss["id"],
                    kind="handover_overdue",
                    key=f"handover:{row['id']}:{boss['id']}",
                    title=f"Handover overdue: {row['name']} ({row['number']})",
                    body=f"Department {row['department'] or '-'} has not reassigned this member"
                    " in time.",
                    member_id=row["member"],
                )
    return len(overdue)


# --- swaps --------------------------------------------------------------------------------


async def request_swap(data: schemas.SwapIn, principal: Principal) -> schemas.Swap:
    async with db.transaction() as conn:
        rows = {
            row["id"]: row
            for row in await conn.fetch(
                "SELECT id, assigned_rep FROM members WHERE id = ANY($1::uuid[])",
                [data.member_a, data.member_b],
            )
        }
        a, b = rows.get(data.member_a), rows.get(data.member_b)
        if a is None or b is None or a["assigned_rep"] is None or b["assigned_rep"] is None:
            raise InvalidInput("both members must be served by a rep", field="member_b")
        if a["assigned_rep"] == b["assigned_rep"]:
            raise InvalidInput("both members have the same rep", field="member_b")
        mine = principal.id in (a["assigned_rep"], b["assigned_rep"])
        if not mine and not principal.can("reps:assign"):
            raise PermissionDenied("a rep can only ask to swap one of their own members")
        swap_id = await conn.fetchval(
            """
            INSERT INTO swap_requests (id, member_a, rep_a, member_b, rep_b, reason,
                requested_by, status, created_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, 'pending', now()) RETURNING id
            """,
            data.member_a,
            a["assigned_rep"],
            data.member_b,
            b["assigned_rep"],
            data.reason,
            principal.label,
        )
    return await get_swap(swap_id)


async def get_swap(swap_id: UUID) -> schemas.Swap:
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM swap_requests WHERE id = $1", swap_id)
    if row is None:
        raise NotFound("no such swap request")
    return schemas.Swap(
        id=row["id"],
        member_a=row["member_a"],
        rep_a=row["rep_a"],
        member_b=row["member_b"],
        rep_b=row["rep_b"],
        reason=row["reason"],
        requested_by=row["requested_by"],
        status=row["status"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        decision_note=row["decision_note"],
        created_at=row["created_at"],
    )


async def list_swaps(principal: Principal, status: str | None) -> list[schemas.Swap]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT w.id FROM swap_requests w
            JOIN staff a ON a.id = w.rep_a JOIN staff b ON b.id = w.rep_b
            WHERE ($1::text IS NULL OR w.status = $1)
              AND ($2::text IS NULL OR a.department = $2 OR b.department = $2)
              AND ($3::uuid IS NULL OR $3 IN (w.rep_a, w.rep_b))
            ORDER BY w.created_at DESC
            """,
            status,
            principal.department_limit,
            principal.id if principal.role == "rep" else None,
        )
    return [await get_swap(row["id"]) for row in rows]


async def decide_swap(
    swap_id: UUID, approve: bool, data: schemas.Decision, principal: Principal
) -> schemas.Swap:
    """The manager decides a swap within a department; across departments, the next level
    up (a general manager) does."""
    async with db.transaction() as conn:
        swap = await conn.fetchrow("SELECT * FROM swap_requests WHERE id = $1 FOR UPDATE", swap_id)
        if swap is None:
            raise NotFound("no such swap request")
        departments = {
            await _department_of(conn, swap["rep_a"]),
            await _department_of(conn, swap["rep_b"]),
        }
        if len(departments) > 1:
            if not principal.can("departments:all"):
                raise PermissionDenied("a swap across departments needs a general manager")
        else:
            _check_manages(principal, departments.pop())
        if swap["status"] != "pending":
            raise Conflict(f"this swap was {swap['status']} already")
        status = "refused"
        if approve:
            current = dict(
                await conn.fetch(
                    "SELECT id, assigned_rep FROM members WHERE id = ANY($1::uuid[]) FOR UPDATE",
                    [swap["member_a"], swap["member_b"]],
                )
            )
            if (
                current.get(swap["member_a"]) != swap["rep_a"]
                or current.get(swap["member_b"]) != swap["rep_b"]
            ):
                raise Conflict("the members changed hands since the request; ask again")
            moves = ((swap["member_a"], swap["rep_b"]), (swap["member_b"], swap["rep_a"]))
            settings = await get_rep_settings(conn)
            for member, rep in moves:
                await check_levels(conn, await _rep(conn, rep), [member], settings)
            for member, rep in moves:
                await reassign(
                    conn,
                    [member],
                    rep,
                    kind="swap",
                    reason=swap["reason"],
                    by=swap["requested_by"],
                    approved_by=principal.label,
                )
            status = "approved"
        await conn.execute(
            """
            UPDATE swap_requests SET status = $2, decided_by = $3, decided_at = now(),
                decision_note = $4 WHERE id = $1
            """,
            swap_id,
            status,
            principal.label,
            data.note,
        )
    return await get_swap(swap_id)


async def notices(principal: Principal, unread_only: bool = False) -> list[schemas.Notice]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT * FROM staff_notices WHERE staff = $1 AND (NOT $2 OR read_at IS NULL)
            ORDER BY created_at DESC LIMIT 200
            """,
            principal.id,
            unread_only,
        )
    return [
        schemas.Notice(
            id=row["id"],
            kind=row["kind"],
            title=row["title"],
            body=row["body"],
            member_id=row["member"],
            created_at=row["created_at"],
        )
        for row in rows
    ]


async def reassignment_flags(principal: Principal) -> list[schemas.ReassignmentFlag]:
    """Members whose tier rose above their rep's level: to be reassigned by the manager."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("the reassignment flags are for managers")
    settings = await get_rep_settings()
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT m.id, m.number, m.name, t.tier, s.username, s.level, s.department
            FROM members m JOIN member_tiers t ON t.member = m.id
            JOIN staff s ON s.id = m.assigned_rep
            WHERE ($1::text IS NULL OR s.department = $1)
            ORDER BY m.number
            """,
            principal.department_limit,
        )
    flags = []
    for row in rows:
        needed = settings.tier_min_level.get(row["tier"])
        if needed and LEVELS.index(row["level"]) < LEVELS.index(needed):
            flags.append(
                schemas.ReassignmentFlag(
                    member_id=row["id"],
                    number=row["number"],
                    name=row["name"],
                    tier=row["tier"],
                    rep=row["username"],
                    rep_level=row["level"],
                    needed_level=needed,
                )
            )
    return flags


async def flag_outgrown_rep(event: dict[str, Any]) -> None:
    """A member whose new tier needs a higher-level rep is flagged to the manager."""
    settings = await get_rep_settings()
    needed = settings.tier_min_level.get(event["payload"]["to_tier"])
    if not needed:
        return
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """
            SELECT m.number, m.name, s.username, s.level, s.department FROM members m
            JOIN staff s ON s.id = m.assigned_rep WHERE m.id = $1
            """,
            event["member"],
        )
        if row is None or LEVELS.index(row["level"]) >= LEVELS.index(needed):
            return
        for manager in await department_managers(conn, row["department"]):
            await notify_staff(
                conn,
                manager,
                kind="reassignment_needed",
                key=f"outgrown:{event['id']}:{manager}",
                title=f"{row['name']} ({row['number']}) is now {event['payload']['to_tier']}",
                body=f"{row['username']} is a {row['level']} rep; this tier needs a {needed} rep.",
                member_id=event["member"],
            )


# --- service teams ------------------------------------------------------------------------

TEAM_ROLES = ("lead", "service", "settlement", "operations")


async def service_team(member_id: UUID, principal: Principal) -> schemas.ServiceTeam:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT t.staff, t.role, s.username, s.display_name FROM service_team_members t
            JOIN staff s ON s.id = t.staff WHERE t.member = $1
            ORDER BY array_position(ARRAY['lead', 'service', 'settlement', 'operations'],
                                    t.role::text), s.username
            """,
            member_id,
        )
    return schemas.ServiceTeam(
        member_id=member_id,
        people=[
            schemas.TeamPerson(
                staff_id=row["staff"],
                username=row["username"],
                display_name=row["display_name"],
                role=row["role"],
            )
            for row in rows
        ],
    )


async def set_service_team(
    member_id: UUID, data: schemas.ServiceTeamIn, principal: Principal
) -> schemas.ServiceTeam:
    """Replace the member's service team: one lead (accountable) and named colleagues."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("managers set up service teams")
    member = await members.get_member(member_id, principal)
    people = [(data.lead_id, "lead")] + [(p.staff_id, p.role) for p in data.members]
    if len({staff for staff, _ in people}) != len(people):
        raise InvalidInput("each person once", field="members")
    async with db.transaction() as conn:
        found = {
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM staff WHERE id = ANY($1::uuid[]) AND active",
                [staff for staff, _ in people],
            )
        }
        for i, (staff, _) in enumerate(people):
            if staff not in found:
                field = "lead_id" if i == 0 else f"members[{i - 1}].staff_id"
                raise InvalidInput("is not an active staff member", field=field)
        await conn.execute("DELETE FROM service_team_members WHERE member = $1", member.id)
        await conn.executemany(
            """
            INSERT INTO service_team_members (id, member, staff, role, added_by, added_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, now())
            """,
            [(member.id, staff, role, principal.label) for staff, role in people],
        )
        await conn.execute(
            """
            INSERT INTO member_changes (id, member, action, actor, changes, at)
            VALUES (gen_random_uuid(), $1, 'service_team', $2, $3::jsonb, now())
            """,
            member.id,
            principal.label,
            json.dumps({"team": [{"staff": str(s), "role": r} for s, r in people]}),
        )
    return await service_team(member_id, principal)
