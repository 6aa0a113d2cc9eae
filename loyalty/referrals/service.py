"""Referrals: codes and links, enrolment with a code, guards that hold suspicious referrals
for review, the two-sided reward on the first qualifying purchase (exactly once, through the
ledger), and its reversal when that purchase is returned in full.

Lock order as everywhere (see loyalty.points.ledger): both members' points accounts in
member-id order first, then the referral row.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.points import ledger
from loyalty.referrals import schemas
from loyalty.settings import get_settings

# No 0/O, 1/I/L or U: a code read aloud or copied by hand comes out right.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
WAITING = ("pending", "held")


# --- codes --------------------------------------------------------------------------------


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str, field: str = "referral_code") -> str:
    code = raw.strip().upper().replace("-", "").replace(" ", "")
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        raise InvalidInput(
            f"is not a referral code ({CODE_LENGTH} characters from {ALPHABET})", field=field
        )
    return code


def link(code: str) -> str:
    """The link a member shares: the portal's sign-up with the code filled in."""
    return f"{get_settings().public_url}/portal/signup?ref={code}"


async def issue_code(conn: asyncpg.Connection, member_id: UUID) -> str:
    """The member's code, created on first use (members imported in bulk may have none)."""
    code = await conn.fetchval("SELECT code FROM referral_codes WHERE member = $1", member_id)
    while code is None:
        code = await conn.fetchval(
            """
            INSERT INTO referral_codes (member, code, created_at) VALUES ($1, $2, now())
            ON CONFLICT DO NOTHING RETURNING code
            """,
            member_id,
            new_code(),
        )
        if code is None:  # this member got one meanwhile, or (rarely) the code was taken
            code = await conn.fetchval(
                "SELECT code FROM referral_codes WHERE member = $1", member_id
            )
    return code


@dataclass
class Referrer:
    member_id: UUID
    assigned_rep: UUID | None
    code: str


async def find_referrer(raw_code: str) -> Referrer:
    code = normalise_code(raw_code)
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """
            SELECT m.id, m.assigned_rep, m.merged_into FROM referral_codes c
            JOIN members m ON m.id = c.member WHERE c.code = $1
            """,
            code,
        )
        # A merged member's code still counts: the survivor is the referrer.
        while row is not None and row["merged_into"] is not None:
            row = await conn.fetchrow(
                "SELECT id, assigned_rep, merged_into FROM members WHERE id = $1",
                row["merged_into"],
            )
    if row is None:
        raise InvalidInput("no member has this referral code", field="referral_code")
    return Referrer(row["id"], row["assigned_rep"], code)


# --- settings -----------------------------------------------------------------------------


def _settings_schema(row: Any) -> schemas.ReferralSettings:
    return schemas.ReferralSettings(
        referrer_points=row["referrer_points"],
        referred_points=row["referred_points"],
        min_purchase=Decimal(row["min_purchase"]),
        monthly_cap=row["monthly_cap"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def _settings(conn: asyncpg.Connection) -> schemas.ReferralSettings:
    row = await conn.fetchrow("SELECT * FROM referral_settings WHERE id = 1")
    if row is None:
        row = await conn.fetchrow(
            """
            INSERT INTO referral_settings (id, referrer_points, referred_points, min_purchase,
                monthly_cap, updated_at, updated_by)
            VALUES (1, 500, 200, 100, 10, now(), 'system')
            ON CONFLICT (id) DO UPDATE SET id = 1 RETURNING *
            """
        )
    return _settings_schema(row)


async def get_referral_settings() -> schemas.ReferralSettings:
    async with db.connection() as conn:
        return await _settings(conn)


async def put_referral_settings(
    data: schemas.ReferralSettingsBody, principal: Principal
) -> schemas.ReferralSettings:
    from loyalty.points.purchases import check_money

    check_money(data.min_purchase, "min_purchase")
    async with db.transaction() as conn:
        await _settings(conn)
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
    return _settings_schema(row)


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
    settings = await _settings(conn)
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
    member_id: UUID, data: schemas.ReferrerIn, principal: Principal
) -> schemas.Referral:
    """Record who referred a member who joined without giving the code."""
    from loyalty.members import service as members

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


# --- the reward ---------------------------------------------------------------------------


@dataclass
class Waiting:
    """A referral waiting for the referred member's first qualifying purchase."""

    id: UUID
    referrer: UUID
    referred: UUID
    status: str


async def waiting_referrals(conn: asyncpg.Connection, member_ids: list[UUID]) -> list[Waiting]:
    """Referrals of these members still waiting for a qualifying purchase, locked. Callers
    hold both members' account locks already."""
    rows = await conn.fetch(
        """
        SELECT id, referrer, referred, status FROM referrals
        WHERE referred = ANY($1::uuid[]) AND qualified_at IS NULL
          AND status IN ('pending', 'held')
        FOR UPDATE
        """,
        member_ids,
    )
    return [Waiting(r["id"], r["referrer"], r["referred"], r["status"]) for r in rows]


def reward_entries(
    referral_id: UUID, referrer: UUID, referred: UUID, settings: schemas.ReferralSettings, at
) -> list[ledger.NewEntry]:
    entries = []
    for side, member, points in (
        ("referrer", referrer, settings.referrer_points),
        ("referred", referred, settings.referred_points),
    ):
        if points > 0:
            entries.append(
                ledger.NewEntry(
                    member=member,
                    points=points,
                    kind="referral_earn",
                    cause_type="referral",
                    cause_id=str(referral_id),
                    key=f"referral:{referral_id}:{side}",
                    occurred_at=at,
                    actor="system",
                )
            )
    return entries


async def qualify(
    conn: asyncpg.Connection,
    qualifying: list[tuple[Waiting, UUID, Decimal]],
    accounts: dict[UUID, ledger.Account],
    at: datetime,
) -> list[ledger.NewEntry]:
    """Mark referrals qualified by these purchases (referral, purchase id, purchase total; in
    posting order: the first that reaches the minimum counts) and return the reward entries
    to post for the pending ones; held ones wait for review. The caller posts the entries on
    the locked accounts in the same transaction."""
    settings = await _settings(conn)
    first: dict[UUID, tuple[Waiting, UUID]] = {}
    for waiting, purchase_id, total in qualifying:
        if total >= settings.min_purchase and waiting.id not in first:
            first[waiting.id] = (waiting, purchase_id)
    chosen = list(first.values())
    if not chosen:
        return []
    entries = []
    rewarded = [w for w, _ in chosen if w.status == "pending" and w.referrer in accounts]
    for waiting in rewarded:
        entries += reward_entries(waiting.id, waiting.referrer, waiting.referred, settings, at)
    await conn.execute(
        """
        UPDATE referrals r SET qualified_at = $3::timestamptz, qualifying_purchase = v.purchase,
            status = CASE WHEN v.rewarded THEN 'rewarded' ELSE r.status END,
            rewarded_at = CASE WHEN v.rewarded THEN $3::timestamptz END,
            referrer_points = CASE WHEN v.rewarded THEN $4 ELSE 0 END,
            referred_points = CASE WHEN v.rewarded THEN $5 ELSE 0 END
        FROM unnest($1::uuid[], $2::uuid[], $6::bool[]) AS v(id, purchase, rewarded)
        WHERE r.id = v.id
        """,
        [w.id for w, _ in chosen],
        [p for _, p in chosen],
        at,
        settings.referrer_points,
        settings.referred_points,
        [w in rewarded for w, _ in chosen],
    )
    for waiting in rewarded:
        await _announce_reward(conn, waiting.id, waiting.referrer, waiting.referred, settings)
    return entries


async def _announce_reward(
    conn: asyncpg.Connection,
    referral_id: UUID,
    referrer: UUID,
    referred: UUID,
    settings: schemas.ReferralSettings,
) -> None:
    for member, points in (
        (referrer, settings.referrer_points),
        (referred, settings.referred_points),
    ):
        await events.record(
            conn,
            "referral.rewarded",
            {"referral_id": str(referral_id), "points": points, "referrer": member == referrer},
            member,
        )


async def _earn_now(
    conn: asyncpg.Connection, accounts: dict[UUID, ledger.Account], entries: list[ledger.NewEntry]
) -> None:
    from loyalty.points.service import get_rules

    rules = await get_rules()
    at = now()
    for entry in entries:
        await ledger.earn(
            conn,
            accounts[entry.member],
            entry,
            now=at,
            pending_days=rules.pending_days,
            expiry_months=rules.expiry_months,
        )
    await ledger.save_accounts(conn, list(accounts.values()))


async def after_full_return(
    conn: asyncpg.Connection, purchase_id: UUID, accounts: dict[UUID, ledger.Account], actor: str
) -> None:
    """The qualifying purchase came back in full: a paid reward is taken back from both sides
    (as reversal entries, spent points become debt); an unpaid one waits for another first
    purchase. The caller holds both accounts' locks."""
    referral = await conn.fetchrow(
        "SELECT * FROM referrals WHERE qualifying_purchase = $1 FOR UPDATE", purchase_id
    )
    if referral is None or referral["status"] in ("rejected", "reversed"):
        return
    if referral["status"] != "rewarded":
        await conn.execute(
            "UPDATE referrals SET qualified_at = NULL, qualifying_purchase = NULL WHERE id = $1",
            referral["id"],
        )
        return
    for side in ("referrer", "referred"):
        key = f"referral:{referral['id']}:{side}"
        earned = await conn.fetchrow(
            "SELECT id, member, points FROM points_ledger WHERE idempotency_key = $1", key
        )
        if earned is None:
            continue
        # The reward's lot is where the member's points are now: a merge moved it.
        holder = await conn.fetchval(
            "SELECT coalesce(merged_into, id) FROM members WHERE id = $1", earned["member"]
        )
        account = accounts.get(holder)
        if account is None:  # approved after the caller looked: lock it now
            account = accounts[holder] = await ledger.lock_account(conn, holder)
        await ledger.insert_entries(
            conn,
            [
                ledger.NewEntry(
                    member=holder,
                    points=-earned["points"],
                    kind="reversal",
                    cause_type="referral",
                    cause_id=str(referral["id"]),
                    key=f"{key}:reversal",
                    occurred_at=now(),
                    actor=actor,
                    note="the qualifying first purchase was returned in full",
                )
            ],
        )
        await ledger.consume(
            conn,
            account,
            earned["points"],
            order=ledger.OWN_LOT_THEN_PENDING,
            own_entry=earned["id"],
        )
    await ledger.save_accounts(conn, list(accounts.values()))
    await conn.execute(
        "UPDATE referrals SET status = 'reversed', reversed_at = now() WHERE id = $1",
        referral["id"],
    )


async def rewarded_referral_members(conn: asyncpg.Connection, purchase_id: UUID) -> list[UUID]:
    """Both members of a referral this purchase paid for (their accounts must be locked
    before a return of it), or none."""
    row = await conn.fetchrow(
        """
        SELECT referrer, referred FROM referrals
        WHERE qualifying_purchase = $1 AND status = 'rewarded'
        """,
        purchase_id,
    )
    return [row["referrer"], row["referred"]] if row else []


# --- review -------------------------------------------------------------------------------


def _check_reviewer(principal: Principal) -> None:
    if not principal.can("referrals:review"):
        raise PermissionDenied("this needs the referrals:review permission")


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
    referral_id: UUID, data: schemas.Review, principal: Principal
) -> schemas.Referral:
    """Release a held referral: rewarded at once if the first qualifying purchase was made,
    otherwise pending until it is."""
    _check_reviewer(principal)
    async with db.transaction() as conn:
        referral, accounts = await _locked_for_review(conn, referral_id)
        if referral["status"] != "held":
            raise Conflict(
                f"only a held referral can be approved; this one is {referral['status']}"
            )
        status = "pending"
        settings = await _settings(conn)
        if referral["qualified_at"] is not None:
            status = "rewarded"
            entries = reward_entries(
                referral_id, referral["referrer"], referral["referred"], settings, now()
            )
            await _earn_now(conn, accounts, entries)
            await _announce_reward(
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


async def reject(referral_id: UUID, data: schemas.Review, principal: Principal) -> schemas.Referral:
    """Turn a held (or still pending) referral down for good: nobody is rewarded for it."""
    _check_reviewer(principal)
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


# --- reading ------------------------------------------------------------------------------

_SELECT = """
SELECT r.*, m.name AS referred_name FROM referrals r JOIN members m ON m.id = r.referred
"""


def _schema(row: Any) -> schemas.Referral:
    return schemas.Referral(
        id=row["id"],
        referrer_id=row["referrer"],
        referred_id=row["referred"],
        referred_name=row["referred_name"],
        code=row["code"],
        channel=row["channel"],
        status=row["status"],
        hold_reasons=list(row["hold_reasons"]),
        assigned_rep_id=row["assigned_rep"],
        qualified_at=row["qualified_at"],
        referrer_points=row["referrer_points"],
        referred_points=row["referred_points"],
        rewarded_at=row["rewarded_at"],
        reviewed_by=row["reviewed_by"],
        reviewed_at=row["reviewed_at"],
        review_reason=row["review_reason"],
        reversed_at=row["reversed_at"],
        created_at=row["created_at"],
    )


async def get_referral(referral_id: UUID) -> schemas.Referral:
    async with db.connection() as conn:
        row = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", referral_id)
    if row is None:
        raise NotFound("no such referral")
    return _schema(row)


async def member_referrals(member_id: UUID, principal: Principal) -> schemas.MemberReferrals:
    """A member's code and link, the referrals they made with statistics, and who referred
    them."""
    from loyalty.members import service as members

    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        code = await issue_code(conn, member_id)
        rows = await conn.fetch(
            f"{_SELECT} WHERE r.referrer = $1 ORDER BY r.created_at DESC", member_id
        )
        referred_by = await conn.fetchrow(f"{_SELECT} WHERE r.referred = $1", member_id)
    items = [_schema(row) for row in rows]
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
        referred_by=_schema(referred_by) if referred_by else None,
        referrals=items,
    )


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
    _check_reviewer(principal)
    after = _decode_cursor(cursor) if cursor else None
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"""
            {_SELECT}
            WHERE ($1::text IS NULL OR r.status = $1)
              AND ($2::timestamptz IS NULL OR (r.created_at, r.id) < ($2, $3))
            ORDER BY r.created_at DESC, r.id DESC LIMIT $4
            """,
            status,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
    items = [_schema(row) for row in rows[:limit]]
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
        schemas.ProgrammeMonth(
            month=row["month"],
            signed_up=row["signed_up"],
            joined=row["joined"],
            rewarded=row["rewarded"],
            held=row["held"],
            rejected=row["rejected"],
            reversed=row["reversed"],
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


async def tell_the_member(event: dict[str, Any]) -> None:
    payload = event["payload"]
    if payload["referrer"]:
        title = "Thank you for your referral"
        body = f"Your friend made their first purchase: {payload['points']} points are yours."
    else:
        title = "Welcome bonus"
        body = f"Thanks for joining on a friend's invitation: {payload['points']} points are yours."
    await events.notify_member(event, kind="referral.rewarded", title=title, body=body)
