"""Purchases as the points domain keeps them: checking a purchase's body, how it names its
member, the rows a posting inserts (`purchases`, `purchase_lines`) and reading them back.
Posting a sale, which spans domains, is loyalty.workflows.sales."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import asyncpg
import msgspec

from loyalty.auth import Principal
from loyalty.errors import Conflict, DomainError, InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.money import CENT, NO_MONEY, check_money
from loyalty.members import service as members
from loyalty.points import schemas
from loyalty.points.service import get_rules
from loyalty.settings import get_settings

CLOCK_SKEW = timedelta(minutes=5)


def body_hash(data: msgspec.Struct) -> str:
    return hashlib.sha256(msgspec.json.encode(data)).hexdigest()


def validate_purchase(data: schemas.PurchaseCreate) -> None:
    currency = get_settings().currency
    if data.currency.upper() != currency:
        raise InvalidInput(f"must be {currency}, the platform currency", field="currency")
    for i, line in enumerate(data.lines):
        check_money(line.unit_price, f"lines[{i}].unit_price")
    check_money(data.total, "total")
    lines_total = sum((line.quantity * line.unit_price for line in data.lines), Decimal(0))
    if lines_total != data.total:
        raise InvalidInput(f"is {data.total} but the lines add up to {lines_total}", field="total")
    if data.occurred_at > now() + CLOCK_SKEW:
        raise InvalidInput("is in the future", field="occurred_at")
    named = [x for x in (data.member_id, data.member_number, data.member_phone) if x is not None]
    if len(named) != 1:
        raise InvalidInput(
            "name the member by exactly one of member_id, member_number, member_phone",
            field="member_id",
        )


def normalised(data: schemas.PurchaseCreate) -> schemas.PurchaseCreate:
    """The same purchase however it was spelled: what the replay comparison hashes."""
    return msgspec.structs.replace(
        data,
        currency=data.currency.upper(),
        occurred_at=data.occurred_at.astimezone(UTC),
        total=data.total.quantize(CENT),
        lines=[
            msgspec.structs.replace(line, unit_price=line.unit_price.quantize(CENT))
            for line in data.lines
        ],
    )


# --- reading ------------------------------------------------------------------------------

# Purchases as stored, with when their points become spendable: their lot's date, set by
# the rules when they were posted (a purchase that earned nothing: by the rules now).
_STORED_PURCHASES = """
    SELECT p.*, (SELECT l.available_at FROM points_ledger e
                 JOIN points_lots l ON l.member = p.member AND l.entry = e.id
                 WHERE e.idempotency_key = 'purchase:' || p.external_id) AS pending_until
    FROM purchases p
"""

Status = Literal["created", "replayed"]


def purchase_schema(row: Any, rules: schemas.EarningRules, status: Status) -> schemas.Purchase:
    return db.from_row(
        schemas.Purchase,
        row,
        member_id=row["member"],
        pending_until=row["pending_until"]
        or row["occurred_at"] + timedelta(days=rules.pending_days),
        rep_id=row["rep"],
        status=status,
    )


async def stored_purchases(
    conn: asyncpg.Connection, external_ids: list[str]
) -> dict[str, asyncpg.Record]:
    """The purchases already posted with these external_ids, by external_id."""
    rows = await conn.fetch(
        _STORED_PURCHASES + "WHERE p.external_id = ANY($1::text[])", external_ids
    )
    return {row["external_id"]: row for row in rows}


def replay(
    row: asyncpg.Record, request_hash: str, rules: schemas.EarningRules
) -> schemas.Purchase | DomainError:
    """The answer to a purchase sent again: the stored one, if it is the same purchase."""
    if row["request_hash"] != request_hash:
        return same_id_conflict()
    return purchase_schema(row, rules, "replayed")


def same_id_conflict() -> DomainError:
    return Conflict(
        "a different purchase was already posted with this external_id", field="external_id"
    )


async def get_purchase(external_id: str, principal: Principal) -> schemas.Purchase:
    rules = await get_rules()
    async with db.connection() as conn:
        row = await conn.fetchrow(_STORED_PURCHASES + "WHERE p.external_id = $1", external_id)
    if row is None:
        raise NotFound("no purchase with that external_id")
    await members.get_member(row["member"], principal)
    return purchase_schema(row, rules, "replayed")


# --- naming the member --------------------------------------------------------------------

MemberKey = tuple[Literal["id", "number", "phone", "none"], str]


def member_key(data: schemas.PurchaseCreate) -> MemberKey:
    """How a purchase names its member; a number or phone that cannot be read is an
    InvalidInput."""
    if data.member_id is not None:
        return ("id", str(data.member_id))
    if data.member_number is not None:
        return ("number", members.normalise_number(data.member_number))
    return ("phone", members.normalise_phone(data.member_phone or "", "member_phone"))


def no_member(key: MemberKey) -> DomainError:
    kind = key[0]
    return InvalidInput(
        "no member matches", field=f"member_{kind}" if kind != "id" else "member_id"
    )


def key_args(keys: list[MemberKey]) -> list[list]:
    """The parameters of `FOUND`."""
    return [
        [UUID(v) if k == "id" else None for k, v in keys],
        [v if k == "number" else None for k, v in keys],
        [v if k == "phone" else None for k, v in keys],
    ]


# Each purchase's member (the i-th key, from 1; a merged member's survivor) as CTEs `k` and
# `found`: three index lookups, not one join on an OR (which would scan every member).
FOUND = """
    WITH k AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY
            AS k(id, number, phone, i)
    ), found AS (
        SELECT k.i, coalesce(m.merged_into, m.id) AS member
        FROM k JOIN members m ON m.id = k.id
        UNION ALL
        SELECT k.i, coalesce(m.merged_into, m.id) FROM k JOIN members m ON m.number = k.number
        UNION ALL
        SELECT k.i, coalesce(m.merged_into, m.id) FROM k JOIN members m ON m.phone = k.phone
    )
"""


# --- writing ------------------------------------------------------------------------------


@dataclass
class NewPurchase:
    """A purchase about to be inserted: its member found, its lines' points counted."""

    id: UUID
    member: UUID
    data: schemas.PurchaseCreate
    points: list[int]  # each line's
    rep: UUID | None  # the sale is credited to the rep assigned at the time of the sale
    request_hash: str

    def created(self, rules: schemas.EarningRules) -> schemas.Purchase:
        data = self.data
        return schemas.Purchase(
            id=self.id,
            external_id=data.external_id,
            member_id=self.member,
            occurred_at=data.occurred_at,
            store=data.store,
            currency=data.currency,
            total=data.total,
            returned_amount=NO_MONEY,
            points=sum(self.points),
            reversed_points=0,
            pending_until=data.occurred_at + timedelta(days=rules.pending_days),
            rep_id=self.rep,
            status="created",
        )


PURCHASE_PARAMS = 19


def purchase_ctes(first: int) -> str:
    """Purchases and their lines, as CTEs to put after WITH, named `inserted` (the purchases
    inserted; one already posted is skipped) and `lines`; their 19 parameters, numbered
    from `first`, are `purchase_args`."""
    return _PURCHASE_ROWS.format(*range(first, first + PURCHASE_PARAMS))


_PURCHASE_ROWS = """
    inserted AS (
        INSERT INTO purchases (id, external_id, member, occurred_at, store, currency, total,
            returned_amount, points, reversed_points, rep, request_hash, source, created_at)
        SELECT p.id, p.external_id, p.member, p.occurred_at, p.store, p.currency,
               p.total::numeric, 0, p.points, 0, p.rep, p.request_hash, ${10}, now()
        FROM unnest(${0}::uuid[], ${1}::text[], ${2}::uuid[], ${3}::timestamptz[],
                    ${4}::text[], ${5}::text[], ${6}::text[], ${7}::bigint[], ${8}::uuid[],
                    ${9}::text[])
             AS p(id, external_id, member, occurred_at, store, currency, total, points, rep,
                  request_hash)
        ON CONFLICT (external_id) DO NOTHING
        RETURNING id
    ), lines AS (
        INSERT INTO purchase_lines (id, purchase, member, line_no, sku, category, quantity,
            unit_price, amount, points, returned_quantity, reversed_points)
        SELECT gen_random_uuid(), l.purchase, l.member, l.line_no, l.sku, l.category,
               l.quantity, l.unit_price::numeric, l.quantity * l.unit_price::numeric,
               l.points, 0, 0
        FROM unnest(${11}::uuid[], ${12}::uuid[], ${13}::int[], ${14}::text[], ${15}::text[],
                    ${16}::int[], ${17}::text[], ${18}::bigint[])
             AS l(purchase, member, line_no, sku, category, quantity, unit_price, points)
        WHERE l.purchase IN (SELECT id FROM inserted)
    )
"""


def purchase_args(purchases: list[NewPurchase], source: str) -> list:
    """The parameters of `purchase_ctes`."""
    lines = [
        (p.id, p.member, n, line, points)
        for p in purchases
        for n, (line, points) in enumerate(zip(p.data.lines, p.points, strict=True), 1)
    ]
    return [
        [p.id for p in purchases],
        [p.data.external_id for p in purchases],
        [p.member for p in purchases],
        [p.data.occurred_at for p in purchases],
        [p.data.store for p in purchases],
        [p.data.currency for p in purchases],
        # Money as text: asyncpg's binary numeric encoding costs 3 x as much.
        [str(p.data.total) for p in purchases],
        [sum(p.points) for p in purchases],
        [p.rep for p in purchases],
        [p.request_hash for p in purchases],
        source,
        [line[0] for line in lines],
        [line[1] for line in lines],
        [line[2] for line in lines],
        [line[3].sku for line in lines],
        [line[3].category for line in lines],
        [line[3].quantity for line in lines],
        [str(line[3].unit_price) for line in lines],
        [line[4] for line in lines],
    ]
