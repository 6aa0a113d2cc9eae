"""Company-owned relationships: who serves each member (with the full history), the public
pool and reclaims, handovers when a rep leaves, swaps, the contact log, follow-up tasks,
staff notices and the audit of who looked at which archive."""

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from loyalty.infrastructure.tables import SettingsRow
from loyalty.members.tables import Member
from loyalty.staff.tables import Staff


class RepSettings(SettingsRow, Table, tablename="rep_settings"):
    """Every number of the ownership rules."""

    protection_days = Integer(default=30)  # a new assignment needs a service record by then
    inactive_months = Integer(default=3)  # no purchase or referral: pool on the 1st of month 4
    no_deal_months = Integer(default=6)  # no purchase: pool on the first day of month 7
    tier_no_deal_months = JSONB(default="{}")  # shorter limits for upper tiers, by tier code
    warning_days = Integer(default=7)
    new_rep_days = Integer(default=30)  # a rep in their first month gets no pool members
    daily_pool_cap = Integer(default=20)  # pool members a rep may receive per day
    handover_days = Integer(default=7)
    contact_deadline_hour = Integer(default=10)  # contacts are logged by the next working day
    tier_min_level = JSONB(default="{}")  # e.g. {"gold": "senior"}: who may serve a tier
    refusal_retry_days = Integer(default=14)  # a refusal schedules the next attempt this later
    completeness_fields = Array(base_column=Varchar(length=32), default=list)
    completeness_days = Integer(default=61)  # archives complete within two months of buying
    rotation_months = Integer(default=6)  # books rotate this often; managers are reminded
    introduction_days = Integer(default=14)  # the new rep introduces themselves by then


class Assignment(Table, tablename="assignments"):
    """One period of a rep serving a member; the open one (ended_at null) is current."""

    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    rep = ForeignKey(references=Staff, index=True)
    kind = Varchar(length=16)  # registration | referral | pool | handover | swap | transfer
    reason = Text(default="")
    assigned_by = Varchar(length=120)
    approved_by = Varchar(length=120, null=True, default=None)
    started_at = Timestamptz(default=TimestamptzNow())
    ended_at = Timestamptz(null=True, default=None)
    end_reason = Varchar(length=32, null=True, default=None)  # reclaim rule, handover, swap...


class Handover(Table, tablename="handovers"):
    """A member whose rep left or moved, waiting in the manager's queue for a new rep."""

    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    from_rep = ForeignKey(references=Staff)
    department = Varchar(length=64, null=True, default=None)
    reason = Varchar(length=32)  # departure | transfer
    created_at = Timestamptz(default=TimestamptzNow())
    due_at = Timestamptz()
    resolved_at = Timestamptz(null=True, default=None)
    resolved_by = Varchar(length=120, null=True, default=None)
    escalated_at = Timestamptz(null=True, default=None)


class SwapRequest(Table, tablename="swap_requests"):
    id = UUID(primary_key=True)
    member_a = ForeignKey(references=Member)
    rep_a = ForeignKey(references=Staff)
    member_b = ForeignKey(references=Member)
    rep_b = ForeignKey(references=Staff)
    reason = Text(default="")
    requested_by = Varchar(length=120)
    status = Varchar(length=16, default="pending")  # pending | approved | refused
    decided_by = Varchar(length=120, null=True, default=None)
    decided_at = Timestamptz(null=True, default=None)
    decision_note = Text(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Reclaim(Table, tablename="reclaims"):
    """A member taken back into the pool, with the rule that did it (and the warning)."""

    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    rep = ForeignKey(references=Staff)
    rule = Varchar(length=32)  # protection | inactive | no_deal
    due_on = Date()
    warned_at = Timestamptz(null=True, default=None)
    reclaimed_at = Timestamptz(null=True, default=None)
    cancelled_at = Timestamptz(null=True, default=None)  # activity came back in time


class Contact(Table, tablename="contacts"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    staff = ForeignKey(references=Staff, null=True, default=None)  # who handled it, if anyone
    kind = Varchar(length=16)  # visit | call | message | complaint | request | note
    channel = Varchar(length=16)  # portal | phone | visit | email | sms | wechat
    direction = Varchar(length=8)  # inbound (from the member) | outbound
    subject = Varchar(length=200, default="")
    body = Text(default="")
    outcome = Text(default="")
    intent = Varchar(length=16, null=True, default=None)  # intent | no_intent | refused
    next_step = Text(default="")
    # Requests and complaints: open | answered (a reply) | resolved (a logged resolution);
    # every other contact is closed.
    status = Varchar(length=16, default="open")
    late = Boolean(default=False)  # logged after the next working day's deadline
    occurred_at = Timestamptz(default=TimestamptzNow())
    logged_at = Timestamptz(default=TimestamptzNow())
    logged_by = Varchar(length=120)
    answered_at = Timestamptz(null=True, default=None)  # when a request's clock stopped
    answered_by = UUID(null=True, default=None)  # the reply or resolution (a contact)


class FollowUp(Table, tablename="follow_ups"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    rep = ForeignKey(references=Staff, null=True, default=None, index=True)
    rule = Varchar(length=32)  # after_purchase | long_standing | no_intent | tier_cadence | silent
    due_on = Date()
    created_at = Timestamptz(default=TimestamptzNow())
    closed_at = Timestamptz(null=True, default=None)
    closed_by_contact = UUID(null=True, default=None)
    escalated_at = Timestamptz(null=True, default=None)
    # Tasks made by an action that runs once per key and member (e.g. "movement:2026-12").
    key = Varchar(length=100, null=True, default=None)


class StaffNotice(Table, tablename="staff_notices"):
    """Something a staff member must know: a reclaim warning, an escalation."""

    id = UUID(primary_key=True)
    staff = ForeignKey(references=Staff, index=True)
    kind = Varchar(length=32)
    key = Varchar(length=200, unique=True)  # makes a repeated job notify once
    title = Varchar(length=200)
    body = Text(default="")
    member = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    read_at = Timestamptz(null=True, default=None)


class MemberView(Table, tablename="member_views"):
    """Audit: which staff member opened which archive, when, and what they looked at."""

    id = UUID(primary_key=True)
    staff = ForeignKey(references=Staff, index=True)
    member = UUID(index=True)
    what = Varchar(length=32)  # archive | brief | export | search
    at = Timestamptz(default=TimestamptzNow())


class Rotation(Table, tablename="rotations"):
    """A planned rotation of a department's books: proposed, adjusted, applied in one step."""

    id = UUID(primary_key=True)
    department = Varchar(length=64)
    status = Varchar(length=16, default="proposed")  # proposed | applied | discarded
    created_by = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())
    applied_by = Varchar(length=120, null=True, default=None)
    applied_at = Timestamptz(null=True, default=None)


class RotationMove(Table, tablename="rotation_moves"):
    id = UUID(primary_key=True)
    rotation = ForeignKey(references=Rotation, index=True)
    member = ForeignKey(references=Member)
    from_rep = ForeignKey(references=Staff)
    to_rep = ForeignKey(references=Staff, null=True, default=None)  # None: stays (no candidate)
    value = Varchar(length=32, default="0")  # the member's qualifying value when proposed
    note = Text(default="")


class ServiceTeamMember(Table, tablename="service_team_members"):
    """A member's service team (for the most valuable members): a lead, accountable, and
    named colleagues for service, settlement and operations. All of them see the member."""

    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    staff = ForeignKey(references=Staff, index=True)
    role = Varchar(length=16)  # lead | sponsor | service | settlement | operations
    added_by = Varchar(length=120)
    added_at = Timestamptz(default=TimestamptzNow())
