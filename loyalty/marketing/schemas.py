"""Marketing shapes: segment filters, segments, offers, results and reports."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from loyalty.infrastructure.schemas import VISIBLE, Input

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=4000)]
TierCode = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Money = Decimal  # checked by the service: 0 to 9,999,999,999.99
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Days = Annotated[int, msgspec.Meta(ge=0, le=36_500)]
Month = Annotated[int, msgspec.Meta(ge=1, le=12)]
MarketingChannel = Literal["email", "sms", "phone", "wechat", "post", "portal"]
ValueGroupName = Literal["valuable", "rising", "declining", "at_risk"]
LifecycleStage = Literal[
    "prospect_with_intent",
    "prospect_without_intent",
    "new_customer",
    "regular",
    "lapsing",
    "lost",
]


class SegmentFilter(Input, omit_defaults=True):
    """Every condition given must hold; conditions left out select everyone."""

    tiers: Annotated[list[TierCode], msgspec.Meta(max_length=20)] = []
    window_days: Annotated[int, msgspec.Meta(ge=1, le=3660)] = 365  # for spend and purchases
    spend_min: Money | None = None  # net of returns, in the window
    spend_max: Money | None = None
    purchases_min: Count | None = None  # in the window
    purchases_max: Count | None = None
    days_since_purchase_min: Days | None = None  # members who never bought count as infinite
    days_since_purchase_max: Days | None = None
    points_min: Count | None = None  # points balance (available + pending - owed)
    points_max: Count | None = None
    referrals_min: Count | None = None  # referrals made (not rejected)
    birthday_months: Annotated[list[Month], msgspec.Meta(max_length=12)] = []
    regions: Annotated[list[Short], msgspec.Meta(max_length=100)] = []  # address.region
    tags: Annotated[list[Short], msgspec.Meta(max_length=50)] = []  # any of them
    consents: Annotated[list[MarketingChannel], msgspec.Meta(max_length=6)] = []  # all of them
    rep_ids: Annotated[list[UUID], msgspec.Meta(max_length=500)] = []
    departments: Annotated[list[Short], msgspec.Meta(max_length=50)] = []
    unassigned: bool | None = None  # true: pool members only; false: assigned only
    tier_joined_within_days: Days | None = None  # entered the current tier recently
    # The RFM value group over `window_days` (see GET /segments/value-groups): any of them.
    value_groups: Annotated[list[ValueGroupName], msgspec.Meta(max_length=4)] = []
    # The lifecycle stage (GET /members/{id}/lifecycle): any of them.
    lifecycle_stages: Annotated[list[LifecycleStage], msgspec.Meta(max_length=6)] = []
    # Members on a fixed list kept by the platform (the movement report's action segments).
    member_list: UUID | None = None


class SegmentCreate(Input):
    name: Name
    filter: SegmentFilter
    description: Description = ""


class SegmentUpdate(Input):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    filter: SegmentFilter | UnsetType = UNSET


class Segment(msgspec.Struct):
    id: UUID
    name: str
    description: str
    filter: SegmentFilter
    members: int  # how many match now
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


class SegmentCount(msgspec.Struct):
    members: int
    took_ms: float
    # With `breakdown`: members by tier; and how many are reachable by `email` and by `sms`
    # (a preferred channel with consent and an address: a member may count in both), and
    # how many by the portal inbox alone (`portal_only`).
    by_tier: dict[str, int] | None = None
    by_channel: dict[str, int] | None = None
    # Counted from the segment facts built at this time (rebuilt every 5 minutes); absent:
    # counted now from the live tables.
    as_of: datetime | None = None


class SegmentFactsBuild(msgspec.Struct):
    built_at: datetime
    members: int
    took_ms: int


class ValueGroup(msgspec.Struct):
    group: str  # valuable | rising | declining | at_risk
    members: int
    share: float
    avg_spend: Decimal
    avg_purchases: float
    avg_days_since_purchase: float | None


class ValueGroups(msgspec.Struct):
    """The pyramid, top first: valuable, rising, declining, at_risk."""

    window_days: int
    groups: list[ValueGroup]
    members: int


# --- offers -------------------------------------------------------------------------------

Benefit = Literal["none", "voucher", "bonus_points", "reward_price"]
AutoKind = Literal["birthday", "welcome", "winback"]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
OptTitle = Annotated[str, msgspec.Meta(max_length=200)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=1500)]
OptBody = Annotated[str, msgspec.Meta(max_length=1500)]
Multiplier = Decimal  # checked by the service: above 1, at most 20


class OfferCreate(Input):
    title_en: Title
    body_en: Body
    valid_from: datetime
    valid_until: datetime
    title_zh: OptTitle = ""
    body_zh: OptBody = ""
    target_tiers: Annotated[list[TierCode], msgspec.Meta(max_length=20)] = []  # []: all
    segment_id: UUID | None = None
    benefit: Benefit = "none"
    bonus_multiplier: Multiplier | None = None  # bonus_points: e.g. "2" doubles the points
    reward_id: UUID | None = None  # reward_price: the reward...
    # ...at this cost (bounded like a reward's own cost)
    reward_points_cost: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    auto_kind: AutoKind | None = None  # an automatic offer, sent every month to newcomers


class OfferUpdate(Input):
    """Drafts only; only the fields sent change."""

    title_en: Title | UnsetType = UNSET
    body_en: Body | UnsetType = UNSET
    title_zh: OptTitle | UnsetType = UNSET
    body_zh: OptBody | UnsetType = UNSET
    valid_from: datetime | UnsetType = UNSET
    valid_until: datetime | UnsetType = UNSET
    target_tiers: Annotated[list[TierCode], msgspec.Meta(max_length=20)] | UnsetType = UNSET
    segment_id: UUID | UnsetType | None = UNSET
    benefit: Benefit | UnsetType = UNSET
    bonus_multiplier: Multiplier | UnsetType | None = UNSET
    reward_id: UUID | UnsetType | None = UNSET
    reward_points_cost: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | UnsetType | None = (
        UNSET
    )


class Offer(msgspec.Struct):
    id: UUID
    title_en: str
    title_zh: str
    body_en: str
    body_zh: str
    valid_from: datetime
    valid_until: datetime
    target_tiers: list[str]
    segment_id: UUID | None
    benefit: str
    bonus_multiplier: Decimal | None
    reward_id: UUID | None
    reward_points_cost: int | None
    auto_kind: str | None
    template_id: UUID | None
    period: str | None
    status: str
    audience_size: int | None
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    sent_at: datetime | None
    vouchers_left: int | None = None
    submitted_by: str | None = None  # awaiting approval since submitted_at
    submitted_at: datetime | None = None
    review_comment: str | None = None  # why a reviewer sent it back (a draft again)
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None


class OfferSendBack(Input):
    comment: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class VoucherImportCreate(Input):
    codes: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=rf"^{VISIBLE}+$")]],
        msgspec.Meta(min_length=1, max_length=10_000),
    ]


class VoucherImportResult(msgspec.Struct):
    imported: int
    already_there: int
    vouchers_left: int
    skipped: list[str] = []  # codes that were already in the pool (or repeated in the call)


class VoucherUseCreate(Input):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SendResult(msgspec.Struct):
    offer_id: UUID
    status: str
    queued: bool


class OfferResults(msgspec.Struct):
    offer_id: UUID
    status: str
    audience: int | None  # members in the snapshot
    delivered: dict[str, int]  # by channel: email, sms, portal (every member's inbox)
    failed: int  # gave up after the last retry, or waiting for a retry
    waiting_retry: int
    capped: int  # over the frequency cap: inbox only
    in_flight: int
    opened: int  # read in the portal
    redeemed: int  # vouchers used, rewards redeemed at the offer price, purchases with bonus
    points_issued: int  # extra points the offer added to purchases
    failures: list[dict[str, str]]  # the latest failed deliveries (member, channel, error)
    by_tier: list[TierResult] = []  # the same figures per member's tier now
    vouchers_issued: int = 0  # codes handed to members (the pool's cost)


class TierResult(msgspec.Struct):
    tier: str  # the member's tier now ("" for none)
    audience: int
    delivered: int  # by email or text message
    portal: int  # inbox entries
    opened: int
    redeemed: int
    points_issued: int


class ChannelProgress(msgspec.Struct):
    channel: str  # email | sms | portal
    sent: int
    failed: int
    in_flight: int


class OfferProgress(msgspec.Struct):
    """Where a send stands: members not reached yet (queued) and per channel."""

    offer_id: UUID
    status: str
    audience: int | None
    queued: int  # in the snapshot with no delivery yet
    channels: list[ChannelProgress]
    capped: int


class MarketingSettingsUpdate(Input):
    frequency_cap: Annotated[int, msgspec.Meta(ge=0, le=100)]
    cap_days: Annotated[int, msgspec.Meta(ge=1, le=365)]
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)]
    retry_seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)]
    churn_days: Annotated[int, msgspec.Meta(ge=7, le=3650)]
    at_risk_days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    falling_ratio: Decimal  # between 0 and 1


class MarketingSettings(msgspec.Struct):
    frequency_cap: int
    cap_days: int
    max_attempts: int
    retry_seconds: int
    churn_days: int
    at_risk_days: int
    falling_ratio: Decimal
    updated_at: datetime
    updated_by: str


# --- the monthly movement report ----------------------------------------------------------


class MovementRow(msgspec.Struct):
    movement: str  # up | down | falling | lost | won_back
    member_id: UUID
    member_number: str
    name: str
    tier: str | None
    detail: str
    rep_id: UUID | None
    rep: str | None
    department: str | None
    brief_url: str  # the member's brief in the staff console
    brief_api: str


class MovementCount(msgspec.Struct):
    key: str  # a department or a rep (username); "" for none
    up: int = 0
    down: int = 0
    falling: int = 0
    lost: int = 0
    won_back: int = 0


class MovementReport(msgspec.Struct):
    month: str
    starts: date
    ends: date  # exclusive
    totals: MovementCount
    by_department: list[MovementCount]
    by_rep: list[MovementCount]
    members: list[MovementRow]
