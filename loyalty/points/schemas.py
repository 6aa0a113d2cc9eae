"""Points shapes: purchases, returns, balances, statements, adjustments, earning rules."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from loyalty.infrastructure.schemas import Input

ExternalId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
]
Money = Decimal  # msgspec cannot bound Decimals; the service checks the range
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Kind = Literal[
    "purchase_earn",
    "referral_earn",
    "bonus",
    "redemption",
    "reversal",
    "expiry",
    "adjustment",
    "transfer",
]
MAX_LINES = 1000
MAX_BATCH = 1000


class PurchaseLineCreate(Input):
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    unit_price: Money
    category: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "general"


class PurchaseCreate(Input):
    external_id: ExternalId
    occurred_at: AwareDatetime
    store: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    lines: Annotated[list[PurchaseLineCreate], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    total: Money
    member_id: UUID | None = None
    member_number: Annotated[str, msgspec.Meta(max_length=20)] | None = None
    member_phone: Annotated[str, msgspec.Meta(max_length=30)] | None = None


class Purchase(msgspec.Struct):
    id: UUID
    external_id: str
    member_id: UUID
    occurred_at: datetime
    store: str
    currency: str
    total: Decimal
    returned_amount: Decimal
    points: int
    reversed_points: int
    pending_until: datetime
    rep_id: UUID | None
    status: Literal["created", "replayed"]


class PurchaseBatchCreate(Input):
    # Items are decoded one by one, so one malformed purchase cannot block the others.
    purchases: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class BatchItem(msgspec.Struct, omit_defaults=True):
    index: int
    status: int
    external_id: str | None = None
    purchase: Purchase | None = None
    problem: dict | None = None


class BatchResult(msgspec.Struct):
    created: int
    replayed: int
    failed: int
    items: list[BatchItem]


class ReturnLineCreate(Input):
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    line_no: Annotated[int, msgspec.Meta(ge=1)] | None = None
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class ReturnCreate(Input):
    return_id: ExternalId
    lines: Annotated[list[ReturnLineCreate], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Return(msgspec.Struct):
    return_id: str
    external_id: str
    member_id: UUID
    amount: Decimal
    points_reversed: int
    debt_after: int
    status: Literal["created", "replayed"]


class Expiring(msgspec.Struct):
    within_30_days: int
    within_60_days: int
    within_90_days: int


class Balance(msgspec.Struct):
    member_id: UUID
    available: int
    pending: int
    debt: int
    total: int
    lifetime_earned: int
    expiring: Expiring
    can_redeem: bool


class Entry(msgspec.Struct):
    id: UUID
    member_id: UUID
    points: int
    kind: str
    cause_type: str
    cause_id: str
    occurred_at: datetime
    created_at: datetime
    actor: str | None
    note: str | None


class EntryPage(msgspec.Struct):
    items: list[Entry]
    next_cursor: str | None


class AdjustmentCreate(Input):
    points: Annotated[int, msgspec.Meta(ge=-10_000_000, le=10_000_000)]
    reason: Annotated[str, msgspec.Meta(min_length=3, max_length=500)]
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class Adjustment(msgspec.Struct):
    entry: Entry
    balance: Balance
    status: Literal["created", "replayed"]


class EarningRulesUpdate(Input):
    points_per_unit: Decimal  # above 0, at most 1000 (checked by the service)
    category_multipliers: dict[Annotated[str, msgspec.Meta(min_length=1, max_length=64)], Decimal]
    pending_days: Annotated[int, msgspec.Meta(ge=0, le=365)]
    expiry_months: Annotated[int, msgspec.Meta(ge=1, le=240)]


class EarningRules(msgspec.Struct):
    points_per_unit: Decimal
    category_multipliers: dict[str, Decimal]
    pending_days: int
    expiry_months: int
    updated_at: datetime
    updated_by: str
