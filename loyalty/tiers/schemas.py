"""Tier shapes: definitions with service levels, settings, a member's tier status,
overrides, and the what-if simulation."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from loyalty.infrastructure.schemas import Input

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")]


class ServiceLevel(msgspec.Struct):
    contact_cadence_days: Annotated[int, msgspec.Meta(ge=1, le=3650)]
    response_time_hours: Annotated[int, msgspec.Meta(ge=1, le=720)]
    named_service_team: bool
    executive_sponsor_role: Annotated[str, msgspec.Meta(max_length=100)] | None
    birthday_gift: Annotated[str, msgspec.Meta(max_length=200)]
    event_invitations: bool
    benefits: Annotated[str, msgspec.Meta(max_length=4000)]


class TierUpdate(Input):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    rank: Annotated[int, msgspec.Meta(ge=0, le=100)]
    threshold: Decimal  # qualifying value to reach the tier; checked by the service
    earn_multiplier: Decimal
    enabled: bool
    service_level: ServiceLevel


class Tier(msgspec.Struct):
    code: str
    name: str
    rank: int
    threshold: Decimal
    earn_multiplier: Decimal
    enabled: bool
    service_level: ServiceLevel
    updated_at: datetime
    updated_by: str


class TierSettingsUpdate(Input):
    basis: Literal["net_spend", "points_earned"]
    window_months: Annotated[int, msgspec.Meta(ge=1, le=60)]
    grace_days: Annotated[int, msgspec.Meta(ge=0, le=365)]


class TierSettings(msgspec.Struct):
    basis: str
    window_months: int
    grace_days: int
    updated_at: datetime
    updated_by: str


class TierChange(msgspec.Struct):
    from_tier: str | None
    to_tier: str
    reason: str
    note: str
    actor: str
    qualifying_value: Decimal | None
    at: datetime


class NextTier(msgspec.Struct):
    code: str
    name: str
    threshold: Decimal
    still_needed: Decimal


class Override(msgspec.Struct):
    tier: str
    until: datetime
    reason: str
    by: str


class MemberTier(msgspec.Struct):
    member_id: UUID
    tier: str
    name: str
    since: datetime
    basis: str
    qualifying_value: Decimal
    window_start: datetime
    next_tier: NextTier | None
    next_evaluation: datetime
    needed_to_keep: Decimal
    below_threshold_since: datetime | None
    downgrade_possible_from: datetime | None
    override: Override | None
    service_level: ServiceLevel
    history: list[TierChange]


class TierOverrideUpdate(Input):
    tier: Code
    reason: Annotated[str, msgspec.Meta(min_length=3, max_length=500)]
    until: Annotated[datetime, msgspec.Meta(tz=True)]


class SimulationTierCreate(Input):
    code: Code
    rank: Annotated[int, msgspec.Meta(ge=0, le=100)]
    threshold: Decimal
    enabled: bool = True


class SimulationCreate(Input):
    tiers: Annotated[list[SimulationTierCreate], msgspec.Meta(min_length=1, max_length=20)]


class Simulation(msgspec.Struct):
    members: int
    by_tier_now: dict[str, int]
    by_tier_after: dict[str, int]
    moving_up: int
    moving_down: int
    evaluated_at: datetime


class Evaluation(msgspec.Struct):
    members: int
    upgraded: int
    downgraded: int
    overrides_ended: int
    grace_started: int
