"""Tier ladder and service levels, each member's tier state, and every tier change."""

from decimal import Decimal

from piccolo.columns import (
    UUID,
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


class TierDefinition(Table, tablename="tier_definitions"):
    code = Varchar(length=32, primary_key=True)
    name = Varchar(length=64)
    rank = Integer(unique=True)
    threshold = Numeric(digits=(14, 2))
    earn_multiplier = Numeric(digits=(6, 3), default=Decimal(1))
    enabled = Boolean(default=True)
    contact_cadence_days = Integer(default=90)
    response_time_hours = Integer(default=48)
    named_service_team = Boolean(default=False)
    executive_sponsor_role = Varchar(length=100, null=True, default=None)
    birthday_gift = Varchar(length=200, default="")
    event_invitations = Boolean(default=False)
    benefits = Text(default="")
    updated_at = Timestamptz(default=TimestamptzNow())
    updated_by = Varchar(length=120, default="system")


class TierSettings(SettingsRow, Table, tablename="tier_settings"):
    """How qualification is measured and how long the grace is."""

    basis = Varchar(length=32, default="net_spend")  # net_spend | points_earned
    window_months = Integer(default=12)
    grace_days = Integer(default=30)


class MemberTier(Table, tablename="member_tiers"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, unique=True)
    tier = Varchar(length=32)
    since = Timestamptz(default=TimestamptzNow())
    below_since = Timestamptz(null=True, default=None)  # when qualification fell short
    override_tier = Varchar(length=32, null=True, default=None)
    override_until = Timestamptz(null=True, default=None)
    override_reason = Text(null=True, default=None)
    override_by = Varchar(length=120, null=True, default=None)


class TierChange(Table, tablename="tier_changes"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member)  # tier_changes_member_time serves lookups
    from_tier = Varchar(length=32, null=True, default=None)
    to_tier = Varchar(length=32)
    reason = Varchar(length=16)  # initial | upgrade | downgrade | override | override_end | merge
    note = Text(default="")
    actor = Varchar(length=120, default="system")
    qualifying_value = Numeric(digits=(14, 2), null=True, default=None)
    at = Timestamptz(default=TimestamptzNow())
