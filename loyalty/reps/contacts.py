"""The contact log, follow-up tasks, messages from staff through the company's channels,
the visit brief, and the audit of who opened which archive."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.infrastructure import db, messaging
from loyalty.members import service as members
from loyalty.members import visibility
from loyalty.reps import performance, schemas, service
from loyalty.reps.service import (
    department_managers,
    get_rep_settings,
    local_today,
    notify_staff,
    now,
)
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


def _contact_schema(row: Any) -> schemas.Contact:
    return schemas.Contact(
        id=row["id"],
        member_id=row["member"],
        staff_id=row["staff"],
        kind=row["kind"],
        channel=row["channel"],
        direction=row["direction"],
        subject=row["subject"],
        body=row["body"],
        outcome=row["outcome"],
        next_step=row["next_step"],
        status=row["status"],
        late=row["late"],
        occurred_at=row["occurred_at"],
        logged_at=row["logged_at"],
        logged_by=row["logged_by"],
    )


async def add_contact(
    member_id: UUID, data: schemas.ContactIn, principal: Principal
) -> schemas.Contact:
    await members.get_member(member_id, principal)
    if data.occurred_at and data.occurred_at > now() + timedelta(minutes=5):
        raise InvalidInput("is in the future", field="occurred_at")
    contact_id = await log_contact(
        member_id,
        principal,
        kind=data.kind,
        channel=data.channel,
        direction=data.direction,
        subject=data.subject,
        body=data.body,
        outcome=data.outcome,
        next_step=data.next_step,
        intent=data.intent,
        occurred_at=data.occurred_at,
    )
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM contacts WHERE id = $1", contact_id)
    return _contact_schema(row)


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
    return [_contact_schema(row) for row in rows]


# --- messages from staff ------------------------------------------------------------------


async def send_message(
    member_id: UUID, data: schemas.MessageIn, principal: Principal
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
        schemas.ContactIn(
            kind="message",
            channel=data.channel,
            direction="outbound",
            subject=data.subject,
            body=data.body,
        ),
        principal,
    )


# --- follow-up tasks ----------------------------------------------------------------------

# Each member's next follow-up comes from their lifecycle stage (see performance.py):
# weekly for new customers, fortnightly for prospects with intent, monthly for regular and
# lapsing customers, every two months otherwise, the tier's cadence where that is shorter; a
# refusal waits rep_settings.refusal_retry_days; anyone not contacted for 90 days is due now.
# Due counts from the last outbound contact (or purchase, or registration).
_PLAN = f"""
WITH {performance.STAGE_CTE}, cadenced AS (
    -- Weekly only within the three new-customer months: a weekly date past them is a
    -- regular customer's (monthly) follow-up.
    SELECT s.*,
        CASE WHEN s.stage = 'new_customer'
                  AND greatest(s.last_contact, s.last_purchase, s.registered_at)
                      + make_interval(days => {performance.STAGE_CADENCE["new_customer"]})
                      > s.first_purchase + interval '3 months'
             THEN 'regular' ELSE s.stage END AS cadence_stage
    FROM staged s
), due AS (
    SELECT s.member, s.rep,
        CASE WHEN coalesce(s.last_contact, s.registered_at) < $1::timestamptz - interval '90 days'
             THEN 'silent'
             WHEN s.last_intent = 'refused' THEN 'refused'
             ELSE s.cadence_stage END AS rule,
        CASE WHEN coalesce(s.last_contact, s.registered_at) < $1::timestamptz - interval '90 days'
             THEN ($1::timestamptz AT TIME ZONE $3)::date
             ELSE ((greatest(s.last_contact, s.last_purchase, s.registered_at)
                    + make_interval(days => CASE WHEN s.last_intent = 'refused' THEN $4::int
                        ELSE least(s.contact_cadence_days, CASE s.cadence_stage
                            {" ".join(f"WHEN '{k}' THEN {v}" for k, v in performance.STAGE_CADENCE.items())}
                        END) END))
                   AT TIME ZONE $3)::date END AS due_on
    FROM cadenced s
)
"""


async def plan_follow_ups(today: date | None = None, horizon_days: int = 7) -> schemas.FollowUpRun:
    """The daily job: a task for every member due within the horizon (one open task per
    member), and overdue tasks escalated to the rep's manager once. Idempotent."""
    today = today or local_today()
    at = datetime.combine(today, time(12), get_settings().tz)
    tz = get_settings().timezone
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        created = await conn.fetch(
            _PLAN
            + """
            INSERT INTO follow_ups (id, member, rep, rule, due_on, created_at)
            SELECT gen_random_uuid(), d.member, d.rep, d.rule, d.due_on, now() FROM due d
            WHERE d.due_on <= $2
              AND NOT EXISTS (SELECT 1 FROM follow_ups f
                              WHERE f.member = d.member AND f.closed_at IS NULL)
            ON CONFLICT DO NOTHING
            RETURNING id
            """,
            at,
            today + timedelta(days=horizon_days),
            tz,
            settings.refusal_retry_days,
        )
        # Archives still incomplete after their deadline become tasks of their own.
        done, _ = performance._completeness_sql(settings.completeness_fields)
        required = len(settings.completeness_fields)
        if required:
            created += await conn.fetch(
                f"""
                INSERT INTO follow_ups (id, member, rep, rule, due_on, created_at)
                SELECT gen_random_uuid(), m.id, m.assigned_rep, 'archive', $1, now()
                FROM members m
                WHERE m.status = 'active' AND {done} < {required}
                  AND (SELECT min(p.occurred_at) FROM purchases p WHERE p.member = m.id)
                      < $2::timestamptz - make_interval(days => $3)
                ON CONFLICT DO NOTHING
                RETURNING id
                """,
                today,
                at,
                settings.completeness_days,
            )
        # A member who moved to another rep: the open task moves with them.
        await conn.execute(
            """
            UPDATE follow_ups f SET rep = m.assigned_rep FROM members m
            WHERE m.id = f.member AND f.closed_at IS NULL
              AND f.rep IS DISTINCT FROM m.assigned_rep
            """
        )
        overdue = await conn.fetch(
            """
            UPDATE follow_ups f SET escalated_at = now()
            FROM members m, staff s
            WHERE m.id = f.member AND s.id = f.rep AND f.closed_at IS NULL
              AND f.escalated_at IS NULL AND f.due_on < $1
            RETURNING f.id, f.member, f.rep, f.due_on, m.name, m.number, s.department,
                s.username
            """,
            today - timedelta(days=3),
        )
        for row in overdue:
            for manager in await department_managers(conn, row["department"]):
                await notify_staff(
                    conn,
                    manager,
                    kind="follow_up_overdue",
                    key=f"follow-up:{row['id']}:{manager}",
                    title=f"Overdue follow-up: {row['name']} ({row['number']})",
                    body=f"{row['username']} was due to contact this member on {row['due_on']}.",
                    member_id=row["member"],
                )
    return schemas.FollowUpRun(created=len(created), escalated=len(overdue), day=today)


async def my_tasks(principal: Principal, horizon_days: int = 7) -> list[schemas.FollowUpTask]:
    """Open follow-ups of the rep's members (a manager: the department's), soonest first."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT f.*, m.number, m.name, t.tier, s.username FROM follow_ups f
            JOIN members m ON m.id = f.member JOIN member_tiers t ON t.member = m.id
            LEFT JOIN staff s ON s.id = f.rep
            WHERE f.closed_at IS NULL AND f.due_on <= $1
              AND (($2 = 'rep' AND f.rep = $3) OR ($2 = 'manager' AND s.department = $4)
                   OR $2 IN ('general_manager', 'admin', 'service'))
            ORDER BY f.due_on, m.number LIMIT 500
            """,
            local_today() + timedelta(days=horizon_days),
            principal.role,
            principal.id,
            principal.department,
        )
    today = local_today()
    return [
        schemas.FollowUpTask(
            id=row["id"],
            member_id=row["member"],
            number=row["number"],
            name=row["name"],
            tier=row["tier"],
            rep=row["username"],
            rule=row["rule"],
            due_on=row["due_on"],
            overdue=row["due_on"] < today,
        )
        for row in rows
    ]


# --- audit and the brief ------------------------------------------------------------------


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


async def brief(member_id: UUID, principal: Principal) -> schemas.Brief:
    """Everything a rep needs before a visit, in one call."""
    from loyalty.points import service as points
    from loyalty.referrals import service as referrals
    from loyalty.rewards import eligibility as rewards
    from loyalty.tiers import service as tiers

    member = await members.get_member(member_id, principal)
    await audit_view(principal, member_id, "brief")
    tier = await tiers.status(member_id, principal)
    balance = await points.balance(member_id, principal)
    catalog = await rewards.member_catalog(member_id, principal)
    made = await referrals.member_referrals(member_id, principal)
    async with db.connection() as conn:
        purchases = await conn.fetch(
            """
            SELECT external_id, occurred_at, store, total, returned_amount, points
            FROM purchases WHERE member = $1 ORDER BY occurred_at DESC LIMIT 5
            """,
            member_id,
        )
        contacts = await conn.fetch(
            "SELECT * FROM contacts WHERE member = $1 ORDER BY occurred_at DESC LIMIT 5",
            member_id,
        )
        follow_ups = await conn.fetch(
            "SELECT * FROM follow_ups WHERE member = $1 AND closed_at IS NULL ORDER BY due_on",
            member_id,
        )
        rep = await conn.fetchrow(
            "SELECT id, username, display_name FROM staff WHERE id = $1", member.assigned_rep_id
        )
    return schemas.Brief(
        member=member,
        rep=schemas.RepRef(rep["id"], rep["username"], rep["display_name"]) if rep else None,
        tier=tier.tier,
        tier_name=tier.name,
        service_level=tier.service_level,
        qualifying_value=tier.qualifying_value,
        needed_to_keep=tier.needed_to_keep,
        next_tier=tier.next_tier,
        points=balance,
        recent_purchases=[
            schemas.PurchaseLine(
                external_id=row["external_id"],
                occurred_at=row["occurred_at"],
                store=row["store"],
                total=row["total"],
                returned_amount=row["returned_amount"],
                points=row["points"],
            )
            for row in purchases
        ],
        last_contacts=[_contact_schema(row) for row in contacts],
        open_follow_ups=[
            schemas.FollowUpRef(id=row["id"], rule=row["rule"], due_on=row["due_on"])
            for row in follow_ups
        ],
        redeemable_rewards=[item.reward.name for item in catalog.items if item.redeemable],
        referrals=made.stats,
        referred_by=made.referred_by.referrer_id if made.referred_by else None,
        service_team=(await service.service_team(member_id, principal)).people,
        executive_sponsor=tier.service_level.executive_sponsor_role,
    )


# --- figures for the staff console ---------------------------------------------------------


def _team_department(principal: Principal) -> str | None:
    """Managers see their department's figures; general managers and admins everyone's."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("team figures are for managers")
    return principal.department_limit


async def my_members_overview(principal: Principal, limit: int = 300) -> list[dict[str, Any]]:
    """Members served by a rep, of those the caller may see (`members.visibility`), each with
    tier, last contact, next open follow-up and the date the reclaim job would return them to
    the pool (`reclaim_on`, None if not due soon).
    Dicts with keys member_id, number, name, tier, rep, last_contact, next_follow_up,
    reclaim_on, reclaim_rule."""
    settings = await get_rep_settings()
    today = local_today()
    visible, args = visibility.condition(principal, "m", first=5)
    async with db.connection() as conn:
        rows = await conn.fetch(
            service._DUE
            + f"""
            , soon AS (
                SELECT DISTINCT ON (member) member, due_on, rule FROM due
                WHERE due_on <= $1::date + $4::int ORDER BY member, due_on
            )
            SELECT m.id, m.number, m.name, t.tier, s.username AS rep,
                (SELECT max(c.occurred_at) FROM contacts c WHERE c.member = m.id) AS last_contact,
                (SELECT min(f.due_on) FROM follow_ups f
                 WHERE f.member = m.id AND f.closed_at IS NULL) AS next_follow_up,
                soon.due_on AS reclaim_on, soon.rule AS reclaim_rule
            FROM members m JOIN member_tiers t ON t.member = m.id
            JOIN staff s ON s.id = m.assigned_rep
            LEFT JOIN soon ON soon.member = m.id
            WHERE m.status = 'active' AND {visible}
            ORDER BY soon.due_on NULLS LAST, next_follow_up NULLS LAST, m.name, m.id
            LIMIT $3
            """,
            today,
            get_settings().timezone,
            limit,
            settings.warning_days,
            *args,
        )
    return [
        {
            "member_id": row["id"],
            "number": row["number"],
            "name": row["name"],
            "tier": row["tier"],
            "rep": row["rep"],
            "last_contact": row["last_contact"],
            "next_follow_up": row["next_follow_up"],
            "reclaim_on": row["reclaim_on"],
            "reclaim_rule": row["reclaim_rule"],
        }
        for row in rows
    ]


async def team_activity(principal: Principal, weeks: int = 8) -> dict[str, Any]:
    """For a manager's team (the department's active reps; everyone's for general managers
    and admins): contacts logged per rep per week over the last `weeks` weeks (weeks start on
    Monday, business time zone), late logs in that period, and open follow-ups past due.
    Returns {"weeks": [date, ...], "reps": [{id, username, display_name, per_week: {date: n},
    contacts, late, overdue_tasks}, ...]}."""
    department = _team_department(principal)
    today = local_today()
    first_week = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    tz = get_settings().tz
    since = datetime.combine(first_week, time(0), tz)
    async with db.connection() as conn:
        reps = await conn.fetch(
            """
            SELECT id, username, display_name FROM staff
            WHERE role = 'rep' AND active AND ($1::text IS NULL OR department = $1)
            ORDER BY username
            """,
            department,
        )
        ids = [rep["id"] for rep in reps]
        counts = await conn.fetch(
            """
            SELECT staff, date_trunc('week', occurred_at AT TIME ZONE $3)::date AS week,
                count(*) AS contacts, count(*) FILTER (WHERE late) AS late
            FROM contacts WHERE staff = ANY($1::uuid[]) AND occurred_at >= $2
            GROUP BY 1, 2
            """,
            ids,
            since,
            get_settings().timezone,
        )
        overdue = dict(
            await conn.fetch(
                """
                SELECT rep, count(*) FROM follow_ups
                WHERE rep = ANY($1::uuid[]) AND closed_at IS NULL AND due_on < $2
                GROUP BY rep
                """,
                ids,
                today,
            )
        )
    by_rep: dict[UUID, dict[str, Any]] = {
        rep["id"]: {
            "id": rep["id"],
            "username": rep["username"],
            "display_name": rep["display_name"],
            "per_week": {},
            "contacts": 0,
            "late": 0,
            "overdue_tasks": overdue.get(rep["id"], 0),
        }
        for rep in reps
    }
    for row in counts:
        entry = by_rep[row["staff"]]
        entry["per_week"][row["week"]] = row["contacts"]
        entry["contacts"] += row["contacts"]
        entry["late"] += row["late"]
    return {
        "weeks": [first_week + timedelta(days=7 * i) for i in range(weeks)],
        "reps": list(by_rep.values()),
    }


async def members_per_tier_per_rep(principal: Principal) -> list[dict[str, Any]]:
    """How many active members each rep of the team serves in each tier:
    [{"username", "display_name", "tiers": {tier code: count}, "total"}, ...]."""
    department = _team_department(principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT s.id, s.username, s.display_name, t.tier, count(m.id) AS members
            FROM staff s
            LEFT JOIN members m ON m.assigned_rep = s.id AND m.status = 'active'
            LEFT JOIN member_tiers t ON t.member = m.id
            WHERE s.role = 'rep' AND s.active AND ($1::text IS NULL OR s.department = $1)
            GROUP BY s.id, s.username, s.display_name, t.tier
            ORDER BY s.username
            """,
            department,
        )
    reps: dict[UUID, dict[str, Any]] = {}
    for row in rows:
        entry = reps.setdefault(
            row["id"],
            {
                "username": row["username"],
                "display_name": row["display_name"],
                "tiers": {},
                "total": 0,
            },
        )
        if row["tier"] is not None:
            entry["tiers"][row["tier"]] = row["members"]
            entry["total"] += row["members"]
    return list(reps.values())
