"""The rewards catalog, voucher pools and redemptions."""

from piccolo.columns import (
    UUID,
    Array,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from loyalty.members.tables import Member


class Reward(Table, tablename="rewards"):
    id = UUID(primary_key=True)
    name = Varchar(length=200)
    description = Text(default="")
    image_url = Varchar(length=500, default="")
    kind = Varchar(length=16)  # goods | voucher | event_seat | bonus_service
    points_cost = BigInt()
    stock = Integer(null=True, default=None)  # None: unlimited
    valid_from = Timestamptz(null=True, default=None)
    valid_until = Timestamptz(null=True, default=None)
    eligible_tiers = Array(base_column=Varchar(length=32), default=list)  # empty: every tier
    per_member_limit = Integer(null=True, default=None)
    event_at = Timestamptz(null=True, default=None)  # event seats: when the gathering is
    voucher_source = Varchar(length=16, default="generated")  # generated | pool
    active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    updated_by = Varchar(length=120, default="system")


class Redemption(Table, tablename="redemptions"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    reward = ForeignKey(references=Reward, index=True)
    quantity = Integer()
    points = BigInt()
    status = Varchar(length=16)  # requested | fulfilled | cancelled
    codes = Array(base_column=Varchar(length=64), default=list)  # vouchers or seat tickets
    stock_taken = Boolean(default=True)  # false: redeemed while stock was unlimited
    idempotency_key = Varchar(length=200, unique=True)
    request_hash = Varchar(length=64)
    requested_by = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())
    fulfilled_at = Timestamptz(null=True, default=None)
    fulfilled_by = Varchar(length=120, null=True, default=None)
    cancelled_at = Timestamptz(null=True, default=None)
    cancelled_by = Varchar(length=120, null=True, default=None)
    cancel_reason = Text(null=True, default=None)


class Voucher(Table, tablename="reward_vouchers"):
    """A pool of voucher codes imported by staff; a redemption takes unissued ones."""

    id = UUID(primary_key=True)
    reward = ForeignKey(references=Reward)
    code = Varchar(length=64)
    redemption = ForeignKey(references=Redemption, null=True, default=None)
    imported_at = Timestamptz(default=TimestamptzNow())
