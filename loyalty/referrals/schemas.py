"""Referral shapes: settings, referrals, a member's code and statistics, the programme."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from loyalty.infrastructure.schemas import Input

Status = Literal["pending", "held", "rewarded", "rejected", "reversed"]
HoldReason = Literal["shared_contact", "shared_address", "loop", "existing_member", "over_cap"]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
CodeIn = Annotated[str, msgspec.Meta(min_length=1, max_length=20)]


class ReferralSettingsUpdate(Input):
    referrer_points: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    referred_points: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    min_purchase: Decimal  # the smallest first purchase that counts; checked by the service
    monthly_cap: Annotated[int, msgspec.Meta(ge=0, le=10_000)]


class ReferralSettings(msgspec.Struct):
    referrer_points: int
    referred_points: int
    min_purchase: Decimal
    monthly_cap: int
    updated_at: datetime
    updated_by: str


class Referral(msgspec.Struct):
    id: UUID
    referrer_id: UUID
    referred_id: UUID
    referred_name: str
    code: str
    channel: str
    status: Status
    hold_reasons: list[str]
    assigned_rep_id: UUID | None
    qualified_at: datetime | None
    referrer_points: int
    referred_points: int
    rewarded_at: datetime | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_reason: str | None
    reversed_at: datetime | None
    created_at: datetime


class ReferralStats(msgspec.Struct):
    invited: int  # signed up with the member's code
    joined: int  # of those, made their first qualifying purchase
    rewarded: int
    held: int


class MemberReferrals(msgspec.Struct):
    member_id: UUID
    code: str
    link: str
    stats: ReferralStats
    referred_by: Referral | None
    referrals: list[Referral]


class ReferralList(msgspec.Struct):
    items: list[Referral]
    next_cursor: str | None = None


class ReferralReviewCreate(Input):
    reason: Reason


class ReferrerUpdate(Input):
    referral_code: CodeIn


class ProgrammeMonth(msgspec.Struct):
    month: str  # YYYY-MM, in the platform's time zone
    signed_up: int
    joined: int
    rewarded: int
    held: int
    rejected: int
    reversed: int
    conversion: float  # rewarded / signed up


class ProgrammeStats(msgspec.Struct):
    months: list[ProgrammeMonth]
    signed_up: int
    rewarded: int
    points_paid: int
