"""The account-manager system's measures: each member's lifecycle stage, archive
completeness against its deadline, and the monthly rep scorecard. All set-based SQL."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time
from typing import Any
from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import first_of_month, now
from loyalty.members import service as members
from loyalty.members import visibility
from loyalty.reps import schemas
from loyalty.reps.settings import get_rep_settings
from loyalty.settings import get_settings

STAGES = (
    "prospect_with_intent",
    "prospect_without_intent",
    "new_customer",
    "regular",
    "lapsing",
    "lost",
)
# Days between follow-ups per stage (a refusal waits rep_settings.refusal_retry_days).
STAGE_CADENCE = {
    "prospect_with_intent": 14,
    "prospect_without_intent": 60,
    "new_customer": 7,
    "regular": 30,
    "lapsing": 30,
    "lost": 60,
}

# One SQL condition per archive field that completeness can require.
FIELD_COMPLETE = {
    "name": "m.name <> ''",
    "phone": "m.phone IS NOT NULL",
    "email": "m.email IS NOT NULL",
    "birthday": "m.birthday IS NOT NULL",
    # Blank text is no answer.
    "address": "btrim(coalesce(m.address ->> 'line1', '')) <> ''",
    "household": "(btrim(coalesce(m.household ->> 'spouse', '')) <> ''"
    " OR jsonb_array_length(coalesce(m.household -> 'children', '[]'::jsonb)) > 0"
    " OR jsonb_array_length(coalesce(m.household -> 'elderly_parents', '[]'::jsonb)) > 0)",
    "occupation": "(m.occupation <> '' OR m.organisation IS NOT NULL)",
    "preferences": "cardinality(m.consumption_preferences) > 0",
    "preferred_channel": "jsonb_array_length(coalesce(m.contact_preferences -> 'channels',"
    " '[]'::jsonb)) > 0",
    "source": "m.source <> ''",
    "relationship_strength": "m.relationship_strength IS NOT NULL",
    "hobbies": "cardinality(m.hobbies) > 0",
}

# Each active member's stage on a day ($1: that day's moment), from purchases and the intent
# recorded on the latest contact that recorded one.
STAGE_CTE = """
facts AS (
    SELECT m.id AS member, m.assigned_rep AS rep, m.registered_at, td.contact_cadence_days,
        (SELECT min(p.occurred_at) FROM purchases p WHERE p.member = m.id) AS first_purchase,
        (SELECT max(p.occurred_at) FROM purchases p WHERE p.member = m.id) AS last_purchase,
        (SELECT c.intent FROM contacts c WHERE c.member = m.id AND c.intent IS NOT NULL
         ORDER BY c.occurred_at DESC LIMIT 1) AS last_intent,
        (SELECT max(c.occurred_at) FROM contacts c WHERE c.member = m.id
         AND c.direction = 'outbound' AND c.kind IN ('visit', 'call', 'message'))
            AS last_contact
    FROM members m
    JOIN member_tiers t ON t.member = m.id
    JOIN tier_definitions td ON td.code = t.tier
    WHERE m.status = 'active'
), staged AS (
    SELECT f.*,
        CASE
            WHEN f.last_purchase IS NULL THEN
                CASE WHEN f.last_intent = 'intent' THEN 'prospect_with_intent'
                     ELSE 'prospect_without_intent' END
            WHEN f.first_purchase >= $1::timestamptz - interval '3 months' THEN 'new_customer'
            WHEN f.last_purchase >= $1::timestamptz - interval '6 months' THEN 'regular'
            WHEN f.last_purchase >= $1::timestamptz - interval '12 months' THEN 'lapsing'
            ELSE 'lost'
        END AS stage
    FROM facts f
)
"""


def completeness_sql(fields: list[str]) -> tuple[str, str]:
    """(count of complete fields, array of missing field names) as SQL expressions."""
    if not fields:
        return "0", "ARRAY[]::text[]"
    done = " + ".join(f"({FIELD_COMPLETE[f]})::int" for f in fields)
    missing = ", ".join(f"CASE WHEN NOT ({FIELD_COMPLETE[f]}) THEN '{f}' END" for f in fields)
    return done, f"array_remove(ARRAY[{missing}]::text[], NULL)"


async def lifecycle(member_id: UUID, principal: Principal) -> schemas.Lifecycle:
    """The member's stage and how complete the archive is, against its deadline."""
    await members.get_member(member_id, principal)
    settings = await get_rep_settings()
    done, missing = completeness_sql(settings.completeness_fields)
    async with db.connection() as conn:
        row = await conn.fetchrow(
            f"""
            WITH {STAGE_CTE}
            SELECT s.stage, s.first_purchase, s.last_intent, {done} AS done, {missing} AS missing
            FROM staged s JOIN members m ON m.id = s.member WHERE s.member = $2
            """,
            now(),
            member_id,
        )
    total = len(settings.completeness_fields)
    due = _due(row["first_purchase"], settings.completeness_days)
    return schemas.Lifecycle(
        member_id=member_id,
        stage=row["stage"],
        last_intent=row["last_intent"],
        completeness=schemas.Completeness(
            complete=row["done"],
            required=total,
            percent=round(100 * row["done"] / total) if total else 100,
            missing=list(row["missing"]),
            due_by=due,
            overdue=bool(due and row["missing"] and due < now().date()),
        ),
    )


def _due(first_purchase: datetime | None, days: int) -> date | None:
    if first_purchase is None:
        return None
    from datetime import timedelta

    return (first_purchase.astimezone(get_settings().tz) + timedelta(days=days)).date()


async def incomplete_archives(principal: Principal) -> list[schemas.IncompleteArchive]:
    """Members bought from but not yet fully known, of those the caller may see."""
    settings = await get_rep_settings()
    done, missing = completeness_sql(settings.completeness_fields)
    visible, args = visibility.condition(principal, "m", first=3)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"""
            SELECT m.id, m.number, m.name, s.username, {missing} AS missing,
                ((SELECT min(p.occurred_at) FROM purchases p WHERE p.member = m.id)
                  AT TIME ZONE $2)::date + $1::int AS due_by
            FROM members m LEFT JOIN staff s ON s.id = m.assigned_rep
            WHERE m.status = 'active' AND {done} < {max(len(settings.completeness_fields), 1)}
              AND EXISTS (SELECT 1 FROM purchases p WHERE p.member = m.id)
              AND {visible}
            ORDER BY due_by, m.number LIMIT 500
            """,
            settings.completeness_days,
            get_settings().timezone,
            *args,
        )
    today = now().date()
    return [
        db.from_row(
            schemas.IncompleteArchive,
            row,
            member_id=row["id"],
            rep=row["username"],
            overdue=row["due_by"] < today,
        )
        for row in rows
    ]


# --- scorecard ----------------------------------------------------------------------------

SCORE_COLUMNS = (
    "rep",
    "department",
    "members",
    "gained",
    "lost",
    "spend",
    "purchases",
    "buying_members",
    "upgrades",
    "downgrades",
    "complaints",
    "praise",
    "contacts",
    "late_logs",
    "follow_ups_due",
    "follow_ups_done",
    "follow_up_rate",
    "archive_completeness",
    "referrals_brought",
)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        year, number = (int(part) for part in month.split("-"))
        start_day = date(year, number, 1)
    except ValueError:
        raise InvalidInput("must be a month like 2026-11", field="month") from None
    if not 1900 <= year <= 2999:  # the API's months; and its bounds stay datetimes
        raise InvalidInput("must be a month of the years 1900-2999", field="month")
    tz = get_settings().tz
    return (
        datetime.combine(start_day, time(), tz),
        datetime.combine(first_of_month(start_day, 1), time(), tz),
    )


async def scorecard(
    principal: Principal, month: str, department: str | None = None
) -> list[schemas.ScoreRow]:
    """Each rep's month: book movement, their members' spend and tier moves, service (contacts,
    late logs, follow-up completion, complaints and praise), archive completeness, referrals."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("scorecards are for managers")
    if principal.department_limit is not None:
        department = principal.department_limit
    start, end = month_bounds(month)
    settings = await get_rep_settings()
    done, _ = completeness_sql(settings.completeness_fields)
    required = max(len(settings.completeness_fields), 1)
    async with db.connection() as conn:
        rows = await conn.fetch(_score_sql(done, required), start, end, department)
    return [_score_row(row) for row in rows]


def _score_sql(done: str, required: int) -> str:
    """One row per rep; a member's tier moves, complaints and praise count for the rep who
    served the member at that moment. $1, $2: the month's bounds; $3: a department or NULL."""
    return f"""
    WITH reps AS (
        SELECT id, username, department FROM staff
        WHERE role = 'rep' AND ($3::text IS NULL OR department = $3)
    ), served AS (
        -- Who served each member at a moment: the assignment open then.
        SELECT a.member, a.rep, a.started_at, coalesce(a.ended_at, 'infinity') AS ended
        FROM assignments a WHERE a.rep IN (SELECT id FROM reps)
    )
    SELECT r.username AS rep, r.department,
        (SELECT count(*) FROM members m WHERE m.assigned_rep = r.id) AS members,
        (SELECT count(*) FROM assignments a WHERE a.rep = r.id
         AND a.started_at >= $1 AND a.started_at < $2) AS gained,
        (SELECT count(*) FROM assignments a WHERE a.rep = r.id
         AND a.ended_at >= $1 AND a.ended_at < $2) AS lost,
        (SELECT coalesce(sum(p.total - p.returned_amount), 0)::numeric(14, 2) FROM purchases p
         WHERE p.rep = r.id AND p.occurred_at >= $1 AND p.occurred_at < $2) AS spend,
        (SELECT count(*) FROM purchases p WHERE p.rep = r.id
         AND p.occurred_at >= $1 AND p.occurred_at < $2) AS purchases,
        (SELECT count(DISTINCT p.member) FROM purchases p WHERE p.rep = r.id
         AND p.occurred_at >= $1 AND p.occurred_at < $2) AS buying_members,
        (SELECT count(*) FILTER (WHERE c.reason = 'upgrade') FROM tier_changes c
         JOIN served s ON s.member = c.member AND s.rep = r.id
          AND c.at >= s.started_at AND c.at < s.ended
         WHERE c.at >= $1 AND c.at < $2) AS upgrades,
        (SELECT count(*) FILTER (WHERE c.reason = 'downgrade') FROM tier_changes c
         JOIN served s ON s.member = c.member AND s.rep = r.id
          AND c.at >= s.started_at AND c.at < s.ended
         WHERE c.at >= $1 AND c.at < $2) AS downgrades,
        (SELECT count(*) FILTER (WHERE k.kind = 'complaint') FROM contacts k
         JOIN served s ON s.member = k.member AND s.rep = r.id
          AND k.occurred_at >= s.started_at AND k.occurred_at < s.ended
         WHERE k.occurred_at >= $1 AND k.occurred_at < $2) AS complaints,
        (SELECT count(*) FILTER (WHERE k.kind = 'praise') FROM contacts k
         JOIN served s ON s.member = k.member AND s.rep = r.id
          AND k.occurred_at >= s.started_at AND k.occurred_at < s.ended
         WHERE k.occurred_at >= $1 AND k.occurred_at < $2) AS praise,
        (SELECT count(*) FROM contacts k WHERE k.staff = r.id
         AND k.occurred_at >= $1 AND k.occurred_at < $2) AS contacts,
        (SELECT count(*) FROM contacts k WHERE k.staff = r.id AND k.late
         AND k.occurred_at >= $1 AND k.occurred_at < $2) AS late_logs,
        (SELECT count(*) FROM follow_ups f WHERE f.rep = r.id
         AND f.due_on >= $1::date AND f.due_on < $2::date) AS follow_ups_due,
        (SELECT count(*) FROM follow_ups f WHERE f.rep = r.id AND f.closed_at IS NOT NULL
         AND f.due_on >= $1::date AND f.due_on < $2::date) AS follow_ups_done,
        (SELECT avg(({done})::numeric / {required}) FROM members m
         WHERE m.assigned_rep = r.id) AS completeness,
        (SELECT count(*) FROM referrals x WHERE x.assigned_rep = r.id
         AND x.created_at >= $1 AND x.created_at < $2) AS referrals_brought
    FROM reps r ORDER BY r.department NULLS LAST, r.username
    """


def _score_row(row: Any) -> schemas.ScoreRow:
    return db.from_row(
        schemas.ScoreRow,
        row,
        follow_up_rate=round(row["follow_ups_done"] / row["follow_ups_due"], 3)
        if row["follow_ups_due"]
        else None,
        archive_completeness=round(float(row["completeness"]), 3)
        if row["completeness"] is not None
        else None,
    )


def scorecard_csv(rows: list[schemas.ScoreRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(SCORE_COLUMNS)
    for row in rows:
        values: list[Any] = [getattr(row, column) for column in SCORE_COLUMNS]
        writer.writerow(["" if v is None else v for v in values])
    return "\ufeff" + out.getvalue()
