"""Referrals: enrolment with a code, guards that hold suspicious referrals for review, the
review itself, and what a member sees of their referrals. Codes are in referrals.codes, the
reward and its reversal in referrals.rewards, reading and statistics in referrals.stats.

Lock order as everywhere (see loyalty.points.ledger): both members' points accounts in
member-id order first, then the referral row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.money import check_money
from loyalty.members import service as members
from loyalty.points import ledger
from loyalty.referrals import schemas
from loyalty.referrals.codes import Referrer, find_referrer, issue_code, link
from loyalty.referrals.rewards import (
    announce_reward,
    earn_now,
    referral_settings,
    reward_entries,
    settings_schema,
)
from loyalty.referrals.stats import SELECT_REFERRALS, check_reviewer, get_referral, referral_schema
from loyalty.settings import get_settings

WAITING = ("pending", "held")


# --- settings -----------------------------------------------------------------------------


async def get_referral_settings() -> schemas.ReferralSettings:
    async with db.connection() as conn:
        return await referral_settings(conn)


async def put_referral_settings(
    data: schemas.ReferralSettingsUpdate, principal: Principal
) -> schemas.ReferralSettings:
    check_money(data.min_purchase, "min_purchase")
    async with db.transaction() as conn:
        await referral_settings(conn)
        before = await conn.fetchrow("SELECT * FROM referral_settings WHERE id = 1 FOR UPDATE")
        row = await conn.fetchrow(
            """
            UPDATE referral_settings SET referrer_points = $1, referred_points = $2,
                min_purchase = $3, monthly_cap = $4, updated_at = now(), updated_by = $5
            WHERE id = 1 RETURNING *
            """,
            data.referrer_points,
            data.referred_points,
            data.min_purchase,
            data.monthly_cap,
            principal.label,
        )
        await audit.record(
            "referral_settings.update", "referral_settings", 1, before=before, after=row
        )
    return settings_schema(row)


# --- recording a referral -----------------------------------------------------------------

# Why a referral is held, all in one statement. Identities include phones and emails a member
# had before (the change history), so a member who changed number and signs up again with
# the old one is caught.
_HOLD_REASONS = """
WITH RECURSIVE identities AS (
    SELECT m.id AS member, v.value FROM members m
    CROSS JOIN LATERAL (VALUES (m.phone), (m.email)) AS v(value)
    WHERE m.id IN ($1, $2) AND v.value IS NOT NULL
    UNION
    SELECT c.member, c.changes -> f ->> k FROM member_changes c
    CROSS JOIN unnest(ARRAY['phone', 'email']) AS f
    CROSS JOIN unnest(ARRAY['old', 'new']) AS k
    WHERE c.member IN ($1, $2) AND c.changes -> f ->> k IS NOT NULL
), address AS (
    SELECT id, nullif(lower(regexp_replace(
        -- Every part present (a blank one and a missing one give the same key).
        concat_ws('|', coalesce(address ->> 'line1', ''), coalesce(address ->> 'line2', ''),
                  coalesce(address ->> 'city', ''), coalesce(address ->> 'postcode', ''),
                  coalesce(address ->> 'country', '')),
        '\\s+', '', 'g')), '') AS key
    FROM members WHERE id IN ($1, $2) AND coalesce(address ->> 'line1', '') <> ''
), chain AS (
    -- Who referred the referrer, and who referred them, and so on, however long the chain
    -- (UNION drops members already found, so a cycle already there ends it).
    SELECT r.referrer AS member FROM referrals r WHERE r.referred = $1
    UNION
    SELECT r.referrer FROM referrals r JOIN chain c ON r.referred = c.member
)
SELECT
    EXISTS (SELECT 1 FROM identities a JOIN identities b USING (value)
            WHERE a.member = $1 AND b.member = $2) AS shared_contact,
    EXISTS (SELECT 1 FROM address a JOIN address b USING (key)
            WHERE a.id = $1 AND b.id = $2) AS shared_address,
    EXISTS (SELECT 1 FROM chain WHERE member = $2) AS loop,
    EXISTS (SELECT 1 FROM purchases WHERE member = $2 AND created_at < $3)
        OR EXISTS (SELECT 1 FROM member_changes c
                   CROSS JOIN unnest(ARRAY['phone', 'email']) AS f
                   JOIN identities i ON i.member = $2 AND i.value = c.changes -> f ->> 'old'
                   WHERE c.member NOT IN ($1, $2)) AS existing_member,
    (SELECT count(*) FROM referrals
     WHERE referrer = $1 AND status <> 'rejected' AND created_at >= $4) >= $5 AS over_cap
"""

HOLD_REASONS = ("shared_contact", "shared_address", "loop", "existing_member", "over_cap")


def _month_start(at: datetime) -> datetime:
    tz = get_settings().tz
    local = at.astimezone(tz)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def record(
    conn: asyncpg.Connection,
    referrer: Referrer,
    referred_id: UUID,
    *,
    channel: str,
    assigned_rep: UUID | None,
) -> UUID:
    """Record that `referred_id` joined with the referrer's code, in the caller's transaction:
    pending until the first qualifying purchase, or held for review when a guard trips."""
    if referrer.member_id == referred_id:
        raise InvalidInput("a member cannot refer themselves", field="referral_code")
    at = now()
    settings = await referral_settings(conn)
    # One referral per referrer at a time: the monthly cap is counted under this lock.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", str(referrer.member_id))
    checks = await conn.fetchrow(
        _HOLD_REASONS, referrer.member_id, referred_id, at, _month_start(at), settings.monthly_cap
    )
    reasons = [reason for reason in HOLD_REASONS if checks[reason]]
    try:
        return await conn.fetchval(
            """
            INSERT INTO referrals (id, referrer, referred, code, channel, status, hold_reasons,
                assigned_rep, referrer_points, referred_points, created_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, 0, 0, $8)
            RETURNING id
            """,
            referrer.member_id,
            referred_id,
            referrer.code,
            channel,
            "held" if reasons else "pending",
            reasons,
            assigned_rep,
            at,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("this member was already referred", field="referral_code") from None


async def set_referrer(
    member_id: UUID, data: schemas.ReferrerUpdate, principal: Principal
) -> schemas.Referral:
    """Record who referred a member who joined without giving the code."""
    await members.get_member(member_id, principal)
    referrer = await find_referrer(data.referral_code)
    async with db.transaction() as conn:
        referral_id = await record(
            conn,
            referrer,
            member_id,
            channel="staff" if principal.is_staff else "integration",
            assigned_rep=None,
        )
    return await get_referral(referral_id)


async def after_merge(conn: asyncpg.Connection, duplicate_id: UUID, survivor_id: UUID) -> None:
    """The survivor takes over the duplicate's referrals (a referral between the two ends)."""
    await conn.execute(
        """
        UPDATE referrals SET status = 'rejected', reviewed_by = 'merge', reviewed_at = now(),
            review_reason = 'the two members were merged'
        WHERE ((referrer = $1 AND referred = $2) OR (referrer = $2 AND referred = $1))
          AND status IN ('pending', 'held');
        """,
        duplicate_id,
        survivor_id,
    )
    await conn.execute(
        "UPDATE referrals SET referrer = $2 WHERE referrer = $1 AND referred <> $2",
        duplicate_id,
        survivor_id,
    )
    await conn.execute(
        """
        UPDATE referrals SET referred = $2 WHERE referred = $1 AND referrer <> $2
          AND NOT EXISTS (SELECT 1 FROM referrals WHERE referred = $2)
        """,
        duplicate_id,
        survivor_id,
    )


# --- review -------------------------------------------------------------------------------


async def _locked_for_review(
    conn: asyncpg.Connection, referral_id: UUID
) -> tuple[asyncpg.Record, dict[UUID, ledger.Account]]:
    row = await conn.fetchrow("SELECT referrer, referred FROM referrals WHERE id = $1", referral_id)
    if row is None:
        raise NotFound("no such referral")
    accounts = await ledger.lock_accounts(conn, sorted([row["referrer"], row["referred"]]))
    referral = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", referral_id)
    return referral, accounts


async def approve(
    referral_id: UUID, data: schemas.ReferralReviewCreate, principal: Principal
) -> schemas.Referral:
    """Release a held referral: rewarded at once if the first qualifying purchase was made,
    otherwise pending until it is."""
    check_reviewer(principal)
    async with db.transaction() as conn:
        referral, accounts = await _locked_for_review(conn, referral_id)
        if referral["status"] != "held":
            raise Conflict(
                f"only a held referral can be approved; this one is {referral['status']}"
            )
        status = "pending"
        settings = await referral_settings(conn)
        if referral["qualified_at"] is not None:
            status = "rewarded"
            entries = reward_entries(
                referral_id, referral["referrer"], referral["referred"], settings, now()
            )
            await earn_now(conn, accounts, entries)
            await announce_reward(
                conn, referral_id, referral["referrer"], referral["referred"], settings
            )
        await conn.execute(
            """
            UPDATE referrals SET status = $2::text, reviewed_by = $3, reviewed_at = now(),
                review_reason = $4,
                rewarded_at = CASE WHEN $2 = 'rewarded' THEN now() END,
                referrer_points = CASE WHEN $2 = 'rewarded' THEN $5 ELSE 0 END,
                referred_points = CASE WHEN $2 = 'rewarded' THEN $6 ELSE 0 END
            WHERE id = $1
            """,
            referral_id,
            status,
            principal.label,
            data.reason,
            settings.referrer_points,
            settings.referred_points,
        )
    return await get_referral(referral_id)


async def reject(
    referral_id: UUID, data: schemas.ReferralReviewCreate, principal: Principal
) -> schemas.Referral:
    """Turn a held (or still pending) referral down for good: nobody is rewarded for it."""
    check_reviewer(principal)
    async with db.transaction() as conn:
        referral, _ = await _locked_for_review(conn, referral_id)
        if referral["status"] not in WAITING:
            raise Conflict(
                f"only a held or pending referral can be rejected; this one is {referral['status']}"
            )
        await conn.execute(
            """
            UPDATE referrals SET status = 'rejected', reviewed_by = $2, reviewed_at = now(),
                review_reason = $3 WHERE id = $1
            """,
            referral_id,
            principal.label,
            data.reason,
        )
    return await get_referral(referral_id)


async def member_referrals(member_id: UUID, principal: Principal) -> schemas.MemberReferrals:
    """A member's code and link, the referrals they made with statistics, and who referred
    them."""
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        code = await issue_code(conn, member_id)
        rows = await conn.fetch(
            f"{SELECT_REFERRALS} WHERE r.referrer = $1 ORDER BY r.created_at DESC", member_id
        )
        referred_by = await conn.fetchrow(f"{SELECT_REFERRALS} WHERE r.referred = $1", member_id)
    items = [referral_schema(row) for row in rows]
    return schemas.MemberReferrals(
        member_id=member_id,
        code=code,
        link=link(code),
        stats=schemas.ReferralStats(
            invited=len(items),
            joined=sum(1 for r in items if r.qualified_at is not None),
            rewarded=sum(1 for r in items if r.status in ("rewarded",)),
            held=sum(1 for r in items if r.status == "held"),
        ),
        referred_by=referral_schema(referred_by) if referred_by else None,
        referrals=items,
    )


async def tell_the_member(event: dict[str, Any]) -> None:
    payload = event["payload"]
    if payload["referrer"]:
        title = "Thank you for your referral"
        body = f"Your friend made their first purchase: {payload['points']} points are yours."
    else:
        title = "Welcome bonus"
        body = f"Thanks for joining on a friend's invitation: {payload['points']} points are yours."
    await events.notify_member(event, kind="referral.rewarded", title=title, body=body)
