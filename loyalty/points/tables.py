"""Points: earning rules, accounts, the append-only ledger, lots, purchases and returns.

Ledger invariants (enforced in PostgreSQL by migrations/points, not only here):
1. Ledger entries are append-only: UPDATE and DELETE on `points_ledger` raise.
2. `points_accounts.total` is maintained by a trigger on every ledger insert, so it always
   equals the sum of the member's entries.
3. At commit, every touched account satisfies available + pending - debt = total, with all
   three buckets non-negative.
4. Each idempotency key appears once: replays cannot post twice.
"""

from decimal import Decimal

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from loyalty.infrastructure.tables import SettingsRow
from loyalty.members.tables import Member
from loyalty.staff.tables import Staff


class EarningRules(SettingsRow, Table, tablename="earning_rules"):
    """The earning configuration admins change through the API."""

    points_per_unit = Numeric(digits=(10, 4), default=Decimal(1))
    category_multipliers = JSONB(default="{}")
    pending_days = Integer(default=14)
    expiry_months = Integer(default=24)


class PointsAccount(Table, tablename="points_accounts"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, unique=True)
    available = BigInt(default=0)
    pending = BigInt(default=0)
    debt = BigInt(default=0)
    lifetime_earned = BigInt(default=0)
    total = BigInt(default=0)
    # Set when the member is merged into another: a purchase that locked this account while
    # the merge ran sees it and moves to the survivor.
    closed = Boolean(default=False)
    updated_at = Timestamptz(default=TimestamptzNow())


class LedgerEntry(Table, tablename="points_ledger"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member)  # points_ledger_statement serves lookups
    points = BigInt()
    kind = Varchar(length=24)
    cause_type = Varchar(length=24)
    cause_id = Varchar(length=100)
    idempotency_key = Varchar(length=200, unique=True)
    occurred_at = Timestamptz(default=TimestamptzNow())
    created_at = Timestamptz(default=TimestamptzNow())
    actor = Varchar(length=120, null=True, default=None)
    note = Text(null=True, default=None)


class PointsLot(Table, tablename="points_lots"):
    """What is left of one earning: released after the pending period, expired oldest first."""

    id = UUID(primary_key=True)
    # The entry's member, kept here for lookups; the entry's foreign key checks it (a merge
    # moves both), so a second check per lot would only cost.
    member = UUID(null=True, default=None, index=True)
    entry = ForeignKey(references=LedgerEntry)
    points = BigInt()
    remaining = BigInt()
    available_at = Timestamptz()
    expires_at = Timestamptz()
    released = Boolean(default=False)


class Purchase(Table, tablename="purchases"):
    id = UUID(primary_key=True)
    external_id = Varchar(length=100, unique=True)
    member = ForeignKey(references=Member)  # purchases_member_time serves lookups
    occurred_at = Timestamptz()
    store = Varchar(length=100)
    currency = Varchar(length=3)
    total = Numeric(digits=(14, 2))
    returned_amount = Numeric(digits=(14, 2), default=Decimal(0))
    points = BigInt(default=0)
    reversed_points = BigInt(default=0)
    rep = ForeignKey(references=Staff, null=True, default=None, index=True)
    request_hash = Varchar(length=64)
    source = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())


class PurchaseLine(Table, tablename="purchase_lines"):
    id = UUID(primary_key=True)
    purchase = ForeignKey(references=Purchase, index=True)
    member = UUID(null=True, default=None)  # the purchase's member (see PointsLot.member)
    line_no = Integer()
    sku = Varchar(length=64)
    category = Varchar(length=64)
    quantity = Integer()
    unit_price = Numeric(digits=(14, 2))
    amount = Numeric(digits=(14, 2))
    points = BigInt()
    returned_quantity = Integer(default=0)
    reversed_points = BigInt(default=0)


class PurchaseReturn(Table, tablename="purchase_returns"):
    id = UUID(primary_key=True)
    return_id = Varchar(length=100, unique=True)
    purchase = ForeignKey(references=Purchase, index=True)
    member = ForeignKey(references=Member)
    lines = JSONB()
    amount = Numeric(digits=(14, 2))
    points = BigInt()
    request_hash = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
