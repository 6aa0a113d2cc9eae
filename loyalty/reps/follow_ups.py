"""Follow-up tasks: the daily plan of who each rep should contact next, overdue tasks
escalated to the rep's manager, and a rep's (or department's) open tasks."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from uuid import UUID

from loyalty.auth import Principal
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import local_today
from loyalty.reps import performance, schemas
from loyalty.reps.notices import department_managers, notify_staff
from loyalty.reps.settings import get_rep_settings
from loyalty.settings import get_settings

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
        done, _ = performance.completeness_sql(settings.completeness_fields)
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
            await notify_staff(
                conn,
                await department_managers(conn, row["department"]),
                kind="follow_up_overdue",
                key=f"follow-up:{row['id']}",
                title=f"Overdue follow-up: {row['name']} ({row['number']})",
                body=f"{row['username']} was due to contact this member on {row['due_on']}.",
                member_id=row["member"],
            )
    return schemas.FollowUpRun(created=len(created), escalated=len(overdue), day=today)


async def add_keyed_tasks(member_ids: list[UUID], rule: str, key: str, due_on: date) -> int:
    """A task for each member's rep (members without a rep get none), once per `key` and
    member however often this runs, and never beside another open task of the same rule.
    Returns how many tasks were made."""
    async with db.transaction() as conn:
        made = await conn.fetch(
            """
            INSERT INTO follow_ups (id, member, rep, rule, due_on, created_at, key)
            SELECT gen_random_uuid(), m.id, m.assigned_rep, $2, $3, now(), $4
            FROM members m
            WHERE m.id = ANY($1::uuid[]) AND m.status = 'active' AND m.assigned_rep IS NOT NULL
            ON CONFLICT DO NOTHING
            RETURNING id
            """,
            member_ids,
            rule,
            due_on,
            key,
        )
    return len(made)


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
        db.from_row(
            schemas.FollowUpTask,
            row,
            member_id=row["member"],
            rep=row["username"],
            overdue=row["due_on"] < today,
        )
        for row in rows
    ]
