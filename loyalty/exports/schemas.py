"""The points liability report."""

from __future__ import annotations

from decimal import Decimal

import msgspec


class TierLiability(msgspec.Struct):
    tier: str
    members: int
    available: int
    pending: int
    owed: int
    outstanding: int  # available + pending - owed
    value: Decimal


class MonthLiability(msgspec.Struct):
    month: str  # YYYY-MM the points expire
    points: int
    value: Decimal


class Liability(msgspec.Struct):
    cost_per_point: Decimal
    currency: str
    outstanding_points: int
    value: Decimal
    by_tier: list[TierLiability]
    by_expiry_month: list[MonthLiability]
