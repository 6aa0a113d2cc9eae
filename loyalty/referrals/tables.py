"""Referral codes, referral settings and every referral with its review and reward."""

from decimal import Decimal

from piccolo.columns import (
    UUID,
    Array,
    BigInt,
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
from loyalty.points.tables import Purchase
from loyalty.staff.tables import Staff


class ReferralSettings(SettingsRow, Table, tablename="referral_settings"):
    """What a referral pays and when it counts."""

    referrer_points = Integer(default=500)
    referred_points = Integer(default=200)
    min_purchase = Numeric(digits=(12, 2), default=Decimal(100))
    monthly_cap = Integer(default=10)


class ReferralCode(Table, tablename="referral_codes"):
    member = ForeignKey(references=Member, primary_key=True)
    code = Varchar(length=16, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())


class Referral(Table, tablename="referrals"):
    id = UUID(primary_key=True)
    referrer = ForeignKey(references=Member, index=True)
    referred = ForeignKey(references=Member, unique=True)  # a member is referred once
    code = Varchar(length=16)
    channel = Varchar(length=16)  # staff | portal | integration
    # pending (waits for the first qualifying purchase) | held (waits for review) |
    # rewarded | rejected | reversed (the qualifying purchase was returned in full)
    status = Varchar(length=16, index=True)
    hold_reasons = Array(base_column=Varchar(length=32), default=list)
    assigned_rep = ForeignKey(references=Staff, null=True, default=None)
    qualifying_purchase = ForeignKey(references=Purchase, null=True, default=None)
    qualified_at = Timestamptz(null=True, default=None)
    referrer_points = BigInt(default=0)
    referred_points = BigInt(default=0)
    rewarded_at = Timestamptz(null=True, default=None)
    reviewed_by = Varchar(length=120, null=True, default=None)
    reviewed_at = Timestamptz(null=True, default=None)
    review_reason = Text(null=True, default=None)
    reversed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
