"""Rewards shapes: the catalog, what a member may redeem and why not, redemptions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from loyalty.infrastructure.schemas import VISIBLE, Input
from loyalty.points.schemas import AwareDatetime  # with a time zone: comparable

Kind = Literal["goods", "voucher", "event_seat", "bonus_service"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=4000)]
ImageUrl = Annotated[
    str, msgspec.Meta(max_length=500, pattern=rf"^(https?://{VISIBLE}+|/{VISIBLE}*)?$")
]
Cost = Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
Stock = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
TierCode = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
VoucherCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=rf"^{VISIBLE}+$")]


class RewardCreate(Input):
    name: Name
    kind: Kind
    points_cost: Cost
    description: Description = ""
    image_url: ImageUrl = ""
    stock: Stock | None = None  # null: unlimited
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    eligible_tiers: Annotated[list[TierCode], msgspec.Meta(max_length=20)] = []  # []: all
    per_member_limit: Limit | None = None
    event_at: AwareDatetime | None = None  # event seats: when the gathering takes place
    voucher_source: Literal["generated", "pool"] = "generated"
    active: bool = True


class RewardUpdate(Input):
    """Only the fields sent are changed."""

    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    image_url: ImageUrl | UnsetType = UNSET
    points_cost: Cost | UnsetType = UNSET
    stock: Stock | UnsetType | None = UNSET
    valid_from: AwareDatetime | UnsetType | None = UNSET
    valid_until: AwareDatetime | UnsetType | None = UNSET
    eligible_tiers: Annotated[list[TierCode], msgspec.Meta(max_length=20)] | UnsetType = UNSET
    per_member_limit: Limit | UnsetType | None = UNSET
    event_at: AwareDatetime | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET


class Reward(msgspec.Struct):
    id: UUID
    name: str
    description: str
    image_url: str
    kind: str
    points_cost: int
    stock: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    eligible_tiers: list[str]
    per_member_limit: int | None
    event_at: datetime | None
    voucher_source: str
    vouchers_left: int | None  # pool vouchers not yet issued
    active: bool
    updated_at: datetime
    updated_by: str


class VoucherImportCreate(Input):
    codes: Annotated[list[VoucherCode], msgspec.Meta(min_length=1, max_length=10_000)]


class VoucherImportResult(msgspec.Struct):
    imported: int
    already_there: int
    vouchers_left: int


class CatalogItem(msgspec.Struct):
    reward: Reward
    points_cost: int  # what one costs this member now (lower with a reward_price offer)
    redeemable: bool
    # Why not yet: not_enough_points, points_in_debt, tier_too_low, limit_reached,
    # out_of_stock, not_started, ended. Each with a sentence for people.
    reasons: list[str]
    explanations: list[str]


class MemberCatalog(msgspec.Struct):
    member_id: UUID
    available_points: int
    tier: str
    items: list[CatalogItem]


class RedemptionCreate(Input):
    reward_id: UUID
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class Redemption(msgspec.Struct):
    id: UUID
    member_id: UUID
    reward_id: UUID
    reward_name: str
    kind: str
    quantity: int
    points: int
    status: str  # requested | fulfilled | cancelled
    codes: list[str]  # voucher codes or seat tickets
    requested_by: str
    created_at: datetime
    fulfilled_at: datetime | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    cancel_reason: str | None
    balance_after: int | None = None  # available points right after (on create)
    replayed: bool = False


class CancellationCreate(Input):
    reason: Reason
