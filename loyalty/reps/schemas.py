"""Shapes of ownership (assignments, pool, reclaims, handovers, swaps), contacts, follow-ups
and the visit brief."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from loyalty.infrastructure.schemas import Input
from loyalty.members.schemas import Member
from loyalty.points.schemas import Balance
from loyalty.referrals.schemas import ReferralStats
from loyalty.tiers.schemas import NextTier, ServiceLevel

Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
Level = Literal["junior", "regular", "senior"]
CompletenessField = Literal[
    "name",
    "phone",
    "email",
    "birthday",
    "address",
    "household",
    "occupation",
    "preferences",
    "preferred_channel",
    "source",
    "relationship_strength",
    "hobbies",
]
Months = Annotated[int, msgspec.Meta(ge=1, le=36)]
Days = Annotated[int, msgspec.Meta(ge=1, le=365)]


class RepSettingsUpdate(Input):
    protection_days: Days
    inactive_months: Months
    no_deal_months: Months
    tier_no_deal_months: dict[str, Months]
    warning_days: Annotated[int, msgspec.Meta(ge=0, le=60)]
    new_rep_days: Annotated[int, msgspec.Meta(ge=0, le=365)]
    daily_pool_cap: Annotated[int, msgspec.Meta(ge=0, le=10_000)]
    handover_days: Days
    contact_deadline_hour: Annotated[int, msgspec.Meta(ge=0, le=23)]
    tier_min_level: dict[str, Level] = {}
    refusal_retry_days: Days = 14
    completeness_fields: Annotated[list[CompletenessField], msgspec.Meta(max_length=20)] = []
    completeness_days: Days = 61
    rotation_months: Months = 6
    introduction_days: Days = 14


class RepSettings(msgspec.Struct):
    protection_days: int
    inactive_months: int
    no_deal_months: int
    tier_no_deal_months: dict[str, int]
    warning_days: int
    new_rep_days: int
    daily_pool_cap: int
    handover_days: int
    contact_deadline_hour: int
    tier_min_level: dict[str, str]
    refusal_retry_days: int
    completeness_fields: list[str]
    completeness_days: int
    rotation_months: int
    introduction_days: int
    updated_at: datetime
    updated_by: str


class PoolAssignmentCreate(Input):
    member_ids: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=500)]
    rep_id: UUID
    reason: Reason


class TransferCreate(Input):
    rep_id: UUID | None  # None: back to the pool
    reason: Reason


class AssignmentResult(msgspec.Struct):
    assigned: int
    rep_id: UUID | None


class AssignmentPeriod(msgspec.Struct):
    rep_id: UUID
    rep: str
    kind: str
    reason: str
    assigned_by: str
    approved_by: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None


class PoolMember(msgspec.Struct):
    member_id: UUID
    number: str
    name: str
    tier: str
    in_pool_since: datetime | None


class ReclaimRun(msgspec.Struct):
    warned: int
    reclaimed: int
    day: date


class ReclaimCandidate(msgspec.Struct):
    member_id: UUID
    number: str
    name: str
    rep: str
    rule: str  # protection (a manager may take it back now) | inactive | no_deal
    due_on: date


class HandoverItem(msgspec.Struct):
    id: UUID
    member_id: UUID
    number: str
    name: str
    from_rep: str
    reason: str
    due_at: datetime
    overdue: bool
    escalated: bool


class SwapCreate(Input):
    member_a: UUID
    member_b: UUID
    reason: Reason


class SwapDecisionCreate(Input):
    note: Annotated[str, msgspec.Meta(max_length=1000)] = ""


class Swap(msgspec.Struct):
    id: UUID
    member_a: UUID
    rep_a: UUID
    member_b: UUID
    rep_b: UUID
    reason: str
    requested_by: str
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    created_at: datetime


class Notice(msgspec.Struct):
    id: UUID
    kind: str
    title: str
    body: str
    member_id: UUID | None
    created_at: datetime
    read_at: datetime | None = None


class NoticesRead(msgspec.Struct):
    """How many notices `POST /notices/read` marked read."""

    marked: int


class ContactCreate(Input):
    kind: Literal["visit", "call", "message", "complaint", "praise", "request", "note"]
    channel: Literal["visit", "phone", "email", "sms", "wechat", "portal"]
    direction: Literal["inbound", "outbound"] = "outbound"
    subject: Annotated[str, msgspec.Meta(max_length=200)] = ""
    body: Annotated[str, msgspec.Meta(max_length=10_000)] = ""
    outcome: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    next_step: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    # What the member said about buying: it moves prospects between stages; a refusal
    # schedules the next attempt after rep_settings.refusal_retry_days.
    intent: Literal["intent", "no_intent", "refused"] | None = None
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class Contact(msgspec.Struct):
    id: UUID
    member_id: UUID
    staff_id: UUID | None
    kind: str
    channel: str
    direction: str
    subject: str
    body: str
    outcome: str
    next_step: str
    status: str
    late: bool  # logged after the next working day's deadline
    occurred_at: datetime
    logged_at: datetime
    logged_by: str
    answered_at: datetime | None = None  # a request's reply or resolution stopped its clock


class MessageCreate(Input):
    channel: Literal["portal", "email", "sms"]
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=5000)]


class FollowUpRun(msgspec.Struct):
    created: int
    escalated: int
    day: date


class FollowUpTask(msgspec.Struct):
    id: UUID
    member_id: UUID
    number: str
    name: str
    tier: str
    rep: str | None
    rule: str
    due_on: date
    overdue: bool


class FollowUpRef(msgspec.Struct):
    id: UUID
    rule: str
    due_on: date


class View(msgspec.Struct):
    staff: str
    what: str
    at: datetime


class RepRef(msgspec.Struct):
    id: UUID
    username: str
    display_name: str


class PurchaseLine(msgspec.Struct):
    external_id: str
    occurred_at: datetime
    store: str
    total: Decimal
    returned_amount: Decimal
    points: int


class Brief(msgspec.Struct):
    member: Member
    rep: RepRef | None
    tier: str
    tier_name: str
    service_level: ServiceLevel
    qualifying_value: Decimal
    needed_to_keep: Decimal
    next_tier: NextTier | None
    points: Balance
    recent_purchases: list[PurchaseLine]
    last_contacts: list[Contact]
    open_follow_ups: list[FollowUpRef]
    redeemable_rewards: list[str]
    referrals: ReferralStats
    referred_by: UUID | None
    service_team: list[TeamPerson] = []
    executive_sponsor: str | None = None  # the top tier's sponsor role, shown to the rep


class ReassignmentFlag(msgspec.Struct):
    member_id: UUID
    number: str
    name: str
    tier: str
    rep: str
    rep_level: str
    needed_level: str


class Completeness(msgspec.Struct):
    complete: int
    required: int
    percent: int
    missing: list[str]
    due_by: date | None  # two months (configurable) after the first purchase
    overdue: bool


class Lifecycle(msgspec.Struct):
    member_id: UUID
    stage: str  # prospect_with_intent | prospect_without_intent | new_customer | regular |
    # lapsing | lost
    last_intent: str | None
    completeness: Completeness


class IncompleteArchive(msgspec.Struct):
    member_id: UUID
    number: str
    name: str
    rep: str | None
    missing: list[str]
    due_by: date
    overdue: bool


class ScoreRow(msgspec.Struct):
    rep: str
    department: str | None
    members: int
    gained: int
    lost: int
    spend: Decimal
    purchases: int
    buying_members: int
    upgrades: int
    downgrades: int
    complaints: int
    praise: int
    contacts: int
    late_logs: int
    follow_ups_due: int
    follow_ups_done: int
    follow_up_rate: float | None
    archive_completeness: float | None
    referrals_brought: int


class RotationCreate(Input):
    department: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class RotationMoveOut(msgspec.Struct):
    member_id: UUID
    number: str
    name: str
    tier: str
    value: Decimal
    from_rep: str
    to_rep: str | None  # None: stays, no eligible rep who has not served the member before
    to_rep_id: UUID | None
    note: str


class RepLoad(msgspec.Struct):
    rep: str
    level: str
    members_before: int
    members_after: int
    value_before: Decimal
    value_after: Decimal


class RotationOut(msgspec.Struct):
    id: UUID
    department: str
    status: str
    created_by: str
    created_at: datetime
    applied_by: str | None
    applied_at: datetime | None
    moves: list[RotationMoveOut]
    loads: list[RepLoad]


class RotationMoveUpdate(Input):
    rep_id: UUID


class TeamPersonCreate(Input):
    staff_id: UUID
    role: Literal["sponsor", "service", "settlement", "operations"]


class ServiceTeamUpdate(Input):
    lead_id: UUID
    members: Annotated[list[TeamPersonCreate], msgspec.Meta(max_length=10)] = []


class TeamPerson(msgspec.Struct):
    staff_id: UUID
    username: str
    display_name: str
    role: str


class ServiceTeam(msgspec.Struct):
    member_id: UUID
    people: list[TeamPerson]


class ServiceRequest(msgspec.Struct):
    """A member's request or complaint at the service desk, with its response clock."""

    id: UUID
    member_id: UUID
    number: str
    name: str
    tier: str
    kind: str  # request | complaint
    channel: str
    subject: str
    body: str
    status: str  # open | answered | resolved
    received_at: datetime
    response_hours: int  # the member's tier's service level
    due_at: datetime
    answered_at: datetime | None
    outcome: str
    overdue: bool  # open past its clock, or answered after it


class ResolutionCreate(Input):
    """A request closed without a reply: what was done, logged on the member."""

    outcome: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class DepartmentRep(msgspec.Struct):
    """A rep as their manager sees them: level and book size."""

    id: UUID
    username: str
    display_name: str
    department: str | None
    level: str
    active: bool
    members: int


class RepLevelUpdate(Input):
    level: Level
