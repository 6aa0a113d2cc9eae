"""Reading referrals: one, a page of the programme's (the review queue), and the programme's
monthly statistics."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, NotFound, PermissionDenied
from loyalty.infrastructure import db
from loyalty.referrals import schemas
from loyalty.settings import get_settings


def check_reviewer(principal: Principal) -> None:
    if not principal.can("referrals:review"):
        raise PermissionDenied("this needs the referrals:review permission")


SELECT_REFERRALS = """
SELECT r.*, m.name AS referred_name FROM referrals r JOIN members m ON m.id = r.referred
"""


def referral_schema(row: Any) -> schemas.Referral:
    return db.from_row(
        schemas.Referral,
        row,
        referrer_id=row["referrer"],
        referred_id=row["referred"],
        assigned_rep_id=row["assigned_rep"],
    )


async def get_referral(referral_id: UUID) -> schemas.Referral:
    async with db.connection() as conn:
        row = await conn.fetchrow(f"{SELECT_REFERRALS} WHERE r.id = $1", referral_id)
    if row is None:
        raise NotFound("no such referral")
    return referral_schema(row)


def _encode_cursor(created_at: datetime, referral_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{referral_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        at, referral_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), UUID(referral_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("is not a cursor this API gave out", field="cursor") from None


async def list_referrals(
    principal: Principal, status: str | None, limit: int, cursor: str | None
) -> schemas.ReferralList:
    """Referrals across the programme, newest first (the review queue with status=held)."""
    check_reviewer(principal)
    after = _decode_cursor(cursor) if cursor else None
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"""
            {SELECT_REFERRALS}
            WHERE ($1::text IS NULL OR r.status = $1)
              AND ($2::timestamptz IS NULL OR (r.created_at, r.id) < ($2, $3))
            ORDER BY r.created_at DESC, r.id DESC LIMIT $4
            """,
            status,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
    items = [referral_schema(row) for row in rows[:limit]]
    next_cursor = _encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return schemas.ReferralList(items=items, next_cursor=next_cursor)


async def programme_stats(principal: Principal) -> schemas.ProgrammeStats:
    """Sign-ups with a code by month and how many of them converted into rewards."""
    if not principal.can("referrals:report"):
        raise PermissionDenied("this needs the referrals:report permission")
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT to_char(created_at AT TIME ZONE $1, 'YYYY-MM') AS month,
                count(*) AS signed_up,
                count(*) FILTER (WHERE qualified_at IS NOT NULL) AS joined,
                count(*) FILTER (WHERE status = 'rewarded') AS rewarded,
                count(*) FILTER (WHERE status = 'held') AS held,
                count(*) FILTER (WHERE status = 'rejected') AS rejected,
                count(*) FILTER (WHERE status = 'reversed') AS reversed,
                coalesce(sum(referrer_points + referred_points)
                         FILTER (WHERE status = 'rewarded'), 0) AS points
            FROM referrals GROUP BY 1 ORDER BY 1
            """,
            get_settings().timezone,
        )
    months = [
        db.from_row(
            schemas.ProgrammeMonth,
            row,
            conversion=round(row["rewarded"] / row["signed_up"], 4) if row["signed_up"] else 0.0,
        )
        for row in rows
    ]
    return schemas.ProgrammeStats(
        months=months,
        signed_up=sum(m.signed_up for m in months),
        rewarded=sum(m.rewarded for m in months),
        points_paid=sum(int(row["points"]) for row in rows),
    )
