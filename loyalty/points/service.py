"""Points rules: earning from purchases exactly once, returns, adjustments, statements,
pending release and expiry. Postings go through `ledger`, inside one transaction each."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.caches import Cache
from loyalty.infrastructure.clock import now
from loyalty.members import service as members
from loyalty.points import ledger, schemas
from loyalty.settings import get_settings

CLOCK_SKEW = timedelta(minutes=5)
RULES_CACHE_SECONDS = 5.0


# --- earning rules -----------------------------------------------------------------------

_rules_cache: Cache[schemas.EarningRules] = Cache("earning rules")


def _rules_from_row(row: Any) -> schemas.EarningRules:
    multipliers = row["category_multipliers"]
    if isinstance(multipliers, str):
        multipliers = msgspec.json.decode(multipliers)
    return schemas.EarningRules(
        points_per_unit=Decimal(row["points_per_unit"]),
        category_multipliers={k: Decimal(str(v)) for k, v in multipliers.items()},
        pending_days=row["pending_days"],
        expiry_months=row["expiry_months"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def get_rules(*, fresh: bool = False) -> schemas.EarningRules:
    """The earning rules, cached for a few seconds per process (they change rarely)."""
    if not fresh and (cached := _rules_cache.get(RULES_CACHE_SECONDS)) is not None:
        return cached
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM earning_rules WHERE id = 1")
        if row is None:  # defaults, should the row ever be missing
            row = await conn.fetchrow(
                """
                INSERT INTO earning_rules (id, points_per_unit, category_multipliers,
                    pending_days, expiry_months, updated_at, updated_by)
                VALUES (1, 1, '{}', 14, 24, now(), 'system')
                ON CONFLICT (id) DO UPDATE SET id = 1
                RETURNING *
                """
            )
    rules = _rules_from_row(row)
    _rules_cache.put(rules)
    return rules


async def update_rules(
    data: schemas.EarningRulesUpdate, principal: Principal
) -> schemas.EarningRules:
    if not 0 < data.points_per_unit <= 1000:
        raise InvalidInput("must be above 0 and at most 1000", field="points_per_unit")
    if data.points_per_unit.as_tuple().exponent < -4:  # type: ignore[operator]
        # The column keeps 4 places: more would be rounded, 0.00001 to 0 (nothing earned).
        raise InvalidInput("has more than 4 decimal places", field="points_per_unit")
    for category, multiplier in data.category_multipliers.items():
        if not 0 <= multiplier <= 100:
            raise InvalidInput(
                "must be between 0 and 100", field=f"category_multipliers.{category}"
            )
    async with db.transaction() as conn:
        before = await conn.fetchrow("SELECT * FROM earning_rules WHERE id = 1 FOR UPDATE")
        row = await conn.fetchrow(
            """
            INSERT INTO earning_rules (id, points_per_unit, category_multipliers, pending_days,
                expiry_months, updated_at, updated_by)
            VALUES (1, $1, $2::jsonb, $3, $4, now(), $5)
            ON CONFLICT (id) DO UPDATE SET
                points_per_unit = excluded.points_per_unit,
                category_multipliers = excluded.category_multipliers,
                pending_days = excluded.pending_days,
                expiry_months = excluded.expiry_months,
                updated_at = excluded.updated_at,
                updated_by = excluded.updated_by
            RETURNING *
            """,
            data.points_per_unit,
            msgspec.json.encode({k: str(v) for k, v in data.category_multipliers.items()}).decode(),
            data.pending_days,
            data.expiry_months,
            principal.label,
        )
        await audit.record("earning_rules.update", "earning_rules", 1, before=before, after=row)
    _rules_cache.clear()
    return _rules_from_row(row)


def line_points(
    amount: Decimal, category: str, rules: schemas.EarningRules, tier_multiplier: Decimal
) -> int:
    """floor(amount x base rate x category multiplier x tier multiplier)."""
    multiplier = rules.category_multipliers.get(category, Decimal(1))
    points = amount * rules.points_per_unit * multiplier * tier_multiplier
    return int(points.to_integral_value(rounding=ROUND_FLOOR))


# --- accounts -----------------------------------------------------------------------------


async def balance(member_id: UUID, principal: Principal) -> schemas.Balance:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        return await _balance(conn, member_id)


async def _balance(conn: asyncpg.Connection, member_id: UUID) -> schemas.Balance:
    row = await conn.fetchrow(
        "SELECT available, pending, debt, total, lifetime_earned FROM points_accounts"
        " WHERE member = $1",
        member_id,
    )
    in_30, in_60, in_90 = await ledger.expiring_within(conn, member_id)
    return schemas.Balance(
        member_id=member_id,
        available=row["available"],
        pending=row["pending"],
        debt=row["debt"],
        total=row["total"],
        lifetime_earned=row["lifetime_earned"],
        expiring=schemas.Expiring(in_30, in_60, in_90),
        can_redeem=row["debt"] == 0 and row["available"] > 0,
    )


# --- adjustments and statements -----------------------------------------------------------


def _entry_schema(row: Any) -> schemas.Entry:
    return db.from_row(schemas.Entry, row, member_id=row["member"])


async def adjust(
    member_id: UUID, data: schemas.AdjustmentCreate, principal: Principal
) -> tuple[schemas.Adjustment, bool]:
    """A manual correction by a manager or above, with its reason and actor recorded."""
    if not principal.can("points:adjust"):
        raise PermissionDenied("only managers and above can adjust points")
    await members.get_member(member_id, principal)
    if data.points == 0:
        raise InvalidInput("must not be zero", field="points")
    key = f"adjustment:{data.idempotency_key or uuid4()}"
    rules = await get_rules()
    async with db.transaction() as conn:
        account = await ledger.lock_account(conn, member_id)
        if account.merged_into is not None:
            raise Conflict("this member was merged; adjust the survivor", field="member_id")
        previous = await conn.fetchrow(
            "SELECT * FROM points_ledger WHERE idempotency_key = $1", key
        )
        if previous is not None:
            if (previous["member"], previous["points"], previous["note"]) != (
                member_id,
                data.points,
                data.reason,
            ):
                raise Conflict(
                    "a different adjustment was already made with this idempotency_key",
                    field="idempotency_key",
                )
            entry, created = previous, False
        else:
            entry = ledger.NewEntry(
                member_id,
                data.points,
                kind="adjustment",
                cause_type="adjustment",
                cause_id=key.removeprefix("adjustment:"),
                key=key,
                occurred_at=now(),
                actor=principal.label,
                note=data.reason,
            )
            if data.points > 0:
                # A goodwill credit is spendable at once: no return window applies.
                await ledger.earn(
                    conn,
                    account,
                    entry,
                    now=now(),
                    pending_days=0,
                    expiry_months=rules.expiry_months,
                )
            else:
                await ledger.insert_entries(conn, [entry])
                await ledger.consume(
                    conn, account, -data.points, order=ledger.AVAILABLE_THEN_PENDING
                )
            await ledger.save_account(conn, account)
            entry = await conn.fetchrow(
                "SELECT * FROM points_ledger WHERE idempotency_key = $1", key
            )
            created = True
            await audit.record(
                "points.adjust", "member", member_id, after=entry, summary=data.reason
            )
        result = schemas.Adjustment(
            entry=_entry_schema(entry),
            balance=await _balance(conn, member_id),
            status="created" if created else "replayed",
        )
    return result, created


def _encode_cursor(created_at: datetime, entry_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{entry_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, entry_id = raw.split("|")
        at = datetime.fromisoformat(created_at)
        if at.tzinfo is None or not 1970 <= at.astimezone(UTC).year <= 9999:
            raise ValueError(created_at)  # not one we gave out (and out of the database's range)
        return at, UUID(entry_id)
    except (ValueError, OverflowError):
        raise InvalidInput("is not a cursor this API gave out", field="cursor") from None


async def statement(
    member_id: UUID,
    principal: Principal,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> schemas.EntryPage:
    """Entries newest first, including those of members merged into this one."""
    await members.get_member(member_id, principal)
    if kind is not None and kind not in schemas.Kind.__args__:  # type: ignore[attr-defined]
        raise InvalidInput(
            f"must be one of {', '.join(schemas.Kind.__args__)}",  # type: ignore[attr-defined]
            field="kind",
        )
    conditions = ["member IN (SELECT $1::uuid UNION SELECT id FROM members WHERE merged_into = $1)"]
    args: list[Any] = [member_id]
    if kind:
        args.append(kind)
        conditions.append(f"kind = ${len(args)}")
    if since:
        args.append(since)
        conditions.append(f"created_at >= ${len(args)}")
    if until:
        args.append(until)
        conditions.append(f"created_at < ${len(args)}")
    if cursor:
        created_at, entry_id = _decode_cursor(cursor)
        args.extend([created_at, entry_id])
        conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"""
            SELECT * FROM points_ledger WHERE {" AND ".join(conditions)}
            ORDER BY created_at DESC, id DESC LIMIT ${len(args)}
            """,
            *args,
        )
    items = [_entry_schema(row) for row in rows[:limit]]
    next_cursor = (
        _encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"])
        if len(rows) > limit
        else None
    )
    return schemas.EntryPage(items=items, next_cursor=next_cursor)


# --- background work: pending release and expiry ------------------------------------------


async def _settle_lots_due(batch_size: int, at: datetime | None, *, expiry: bool) -> int:
    """Release (or expire) the lots due at `at`, a transaction for each `batch_size`
    members with lots due, their accounts locked, until no member has any left."""
    at = at or now()
    settle = ledger.expire_lots if expiry else ledger.release_lots
    settled = 0
    while True:
        async with db.transaction() as conn:
            member_ids = await ledger.members_with_lots_due(conn, at, batch_size, expiry=expiry)
            if not member_ids:
                return settled
            await ledger.lock_accounts(conn, member_ids)
            settled += await settle(conn, member_ids, at)


async def release_pending(batch_size: int = 500, at: datetime | None = None) -> int:
    """Make pending points available once their return window has passed. Idempotent."""
    return await _settle_lots_due(batch_size, at, expiry=False)


async def expire_points(batch_size: int = 500, at: datetime | None = None) -> int:
    """Expire what is left of lots past their expiry, oldest first. Idempotent: each lot
    expires under its own ledger key, and an expired lot has nothing left."""
    return await _settle_lots_due(batch_size, at, expiry=True)


@dataclass(frozen=True)
class ExpiringPoints:
    """Points of one member that expire in one calendar month (business time zone)."""

    member: UUID
    month: str  # YYYY-MM
    points: int  # what is left of every lot expiring that month
    first_at: datetime  # the first of them expires then...
    last_at: datetime  # ...and the last of them then


EXPIRING_SQL = """
WITH soon AS (
    SELECT DISTINCT member FROM points_lots
    WHERE remaining > 0 AND expires_at > $1 AND expires_at <= $2 AND member > $3
    ORDER BY member LIMIT $4
), months AS (
    SELECT DISTINCT l.member, to_char(l.expires_at AT TIME ZONE $5, 'YYYY-MM') AS month
    FROM points_lots l JOIN soon s ON s.member = l.member
    WHERE l.remaining > 0 AND l.expires_at > $1 AND l.expires_at <= $2
)
SELECT mo.member, mo.month, sum(l.remaining) AS points,
       min(l.expires_at) AS first_at, max(l.expires_at) AS last_at
FROM months mo JOIN points_lots l ON l.member = mo.member
WHERE l.remaining > 0 AND l.expires_at > $1
  AND to_char(l.expires_at AT TIME ZONE $5, 'YYYY-MM') = mo.month
GROUP BY mo.member, mo.month
ORDER BY mo.member, mo.month
"""


async def expiring_before(
    before: datetime, *, at: datetime | None = None, after: UUID | None = None, limit: int = 500
) -> list[ExpiringPoints]:
    """Members with points expiring after `at` (now) and by `before`, in member order from
    after `after`, at most `limit` members: for each month some of them expire in, all the
    points that expire that month (also those later than `before`) and when."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            EXPIRING_SQL,
            at or now(),
            before,
            after or UUID(int=0),
            limit,
            get_settings().timezone,
        )
    return [
        ExpiringPoints(
            member=row["member"],
            month=row["month"],
            points=int(row["points"]),
            first_at=row["first_at"],
            last_at=row["last_at"],
        )
        for row in rows
    ]


# --- merging members ----------------------------------------------------------------------


async def merge_accounts(
    conn: asyncpg.Connection, duplicate_id: UUID, survivor_id: UUID, *, actor: str
) -> dict[str, int]:
    """Move the duplicate's points, lots and purchases to the survivor, inside the caller's
    transaction (the ledger records the points as a transfer pair)."""
    moved = await ledger.move_account(conn, duplicate_id, survivor_id, at=now(), actor=actor)
    # Lines and returns are found through their purchases (indexed), not by member
    # (which would scan every line and return ever posted).
    purchases = await conn.fetchval(
        """
        WITH moved AS (
            UPDATE purchases SET member = $2 WHERE member = $1 RETURNING id
        ), lines AS (
            UPDATE purchase_lines SET member = $2 WHERE purchase IN (SELECT id FROM moved)
        ), returns AS (
            UPDATE purchase_returns SET member = $2 WHERE purchase IN (SELECT id FROM moved)
        ) SELECT count(*) FROM moved
        """,
        duplicate_id,
        survivor_id,
    )
    return {"points": moved, "purchases": purchases}
