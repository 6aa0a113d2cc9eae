"""The tier ladder (cached per process), its validation, and the qualifying window and
values every tier decision reads: the lowest layer of the tiers domain."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.errors import InvalidInput
from loyalty.infrastructure import db
from loyalty.infrastructure.caches import Cache
from loyalty.infrastructure.clock import add_months
from loyalty.infrastructure.money import CENT
from loyalty.settings import get_settings
from loyalty.tiers import schemas

CACHE_SECONDS = 5.0
EVALUATION_HOUR = 1  # the daily evaluation runs at 01:00 in LOYALTY_TIMEZONE


@dataclass(frozen=True)
class Ladder:
    tiers: list[schemas.Tier]  # every tier, by rank
    settings: schemas.TierSettings

    @property
    def enabled(self) -> list[schemas.Tier]:
        return [t for t in self.tiers if t.enabled]

    def by_code(self, code: str) -> schemas.Tier | None:
        return next((t for t in self.tiers if t.code == code), None)

    def qualified(self, value: Decimal) -> schemas.Tier:
        """The highest switched-on tier whose threshold the value reaches."""
        reached = [t for t in self.enabled if t.threshold <= value]
        return reached[-1] if reached else self.enabled[0]

    def step_below(self, rank: int) -> schemas.Tier | None:
        below = [t for t in self.enabled if t.rank < rank]
        return below[-1] if below else None

    def next_above(self, rank: int) -> schemas.Tier | None:
        return next((t for t in self.enabled if t.rank > rank), None)


_cache: Cache[Ladder] = Cache("tier ladder")


def tier_from_row(row: Any) -> schemas.Tier:
    return schemas.Tier(
        code=row["code"],
        name=row["name"],
        rank=row["rank"],
        threshold=Decimal(row["threshold"]),
        earn_multiplier=Decimal(row["earn_multiplier"]),
        enabled=row["enabled"],
        service_level=schemas.ServiceLevel(
            contact_cadence_days=row["contact_cadence_days"],
            response_time_hours=row["response_time_hours"],
            named_service_team=row["named_service_team"],
            executive_sponsor_role=row["executive_sponsor_role"],
            birthday_gift=row["birthday_gift"],
            event_invitations=row["event_invitations"],
            benefits=row["benefits"],
        ),
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def ladder(*, fresh: bool = False) -> Ladder:
    """The ladder and settings, cached for a few seconds per process."""
    if not fresh and (cached := _cache.get(CACHE_SECONDS)) is not None:
        return cached
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM tier_definitions ORDER BY rank")
        settings = await conn.fetchrow("SELECT * FROM tier_settings WHERE id = 1")
    result = Ladder(
        tiers=[tier_from_row(row) for row in rows],
        settings=schemas.TierSettings(
            basis=settings["basis"],
            window_months=settings["window_months"],
            grace_days=settings["grace_days"],
            updated_at=settings["updated_at"],
            updated_by=settings["updated_by"],
        ),
    )
    _cache.put(result)
    return result


def forget_cache() -> None:
    _cache.clear()


# --- windows and qualifying values ---------------------------------------------------------


def _months_back(day: date, months: int) -> date:
    return add_months(datetime.combine(day, clock()), -months).date()


def window_start(at: datetime, months: int) -> datetime:
    """Local midnight, `months` before the local date of `at` (LOYALTY_TIMEZONE): a purchase
    exactly that old still counts."""
    tz = get_settings().tz
    local_day = at.astimezone(tz).date()
    return datetime.combine(_months_back(local_day, months), clock(), tzinfo=tz)


def next_evaluation(at: datetime) -> datetime:
    tz = get_settings().tz
    local = at.astimezone(tz)
    today_run = datetime.combine(local.date(), clock(EVALUATION_HOUR), tzinfo=tz)
    return today_run if local < today_run else today_run + timedelta(days=1)


def value_query(basis: str, member_expr: str, start: str, end: str) -> str:
    """A scalar query for one member's qualifying value under the qualification basis."""
    if basis == "points_earned":
        return (
            "SELECT coalesce(sum(q.points), 0)::numeric FROM points_ledger q"
            f" WHERE q.member = {member_expr} AND q.occurred_at >= {start}"
            f" AND q.occurred_at <= {end}"
            " AND q.kind IN ('purchase_earn', 'referral_earn', 'bonus', 'reversal')"
            # A cancelled redemption gives spent points back: nothing was earned.
            " AND NOT (q.kind = 'reversal' AND q.cause_type = 'redemption')"
        )
    return (
        "SELECT coalesce(sum(q.total - q.returned_amount), 0) FROM purchases q"
        f" WHERE q.member = {member_expr} AND q.occurred_at >= {start}"
        f" AND q.occurred_at <= {end}"
    )


async def qualifying_value(
    conn: asyncpg.Connection, member_id: UUID, at: datetime, settings: schemas.TierSettings
) -> Decimal:
    result = await conn.fetchval(
        value_query(settings.basis, "$1", "$2", "$3"),
        member_id,
        window_start(at, settings.window_months),
        at,
    )
    return Decimal(result).quantize(CENT)


async def qualifying_values(
    conn: asyncpg.Connection,
    member_ids: list[UUID],
    at: datetime,
    settings: schemas.TierSettings,
    *,
    until: datetime | None = None,
) -> dict[UUID, Decimal]:
    """The members' values over the window ending at `at` (counting up to `until`, later
    than `at` for purchases dated a little ahead)."""
    value = value_query(settings.basis, "m.id", "$2", "$3")
    rows = await conn.fetch(
        f"SELECT m.id, ({value}) AS value FROM unnest($1::uuid[]) AS m(id)",
        member_ids,
        window_start(at, settings.window_months),
        until or at,
    )
    return {row["id"]: Decimal(row["value"]) for row in rows}


def validate_ladder(tiers: list[tuple[str, int, Decimal, bool]]) -> None:
    """(code, rank, threshold, enabled) for every tier: the ladder must make sense."""
    ranks = [rank for _, rank, _, _ in tiers]
    if len(ranks) != len(set(ranks)):
        raise InvalidInput("another tier already has this rank", field="rank")
    enabled = sorted((t for t in tiers if t[3]), key=lambda t: t[1])
    if not enabled:
        raise InvalidInput("at least one tier must stay switched on", field="enabled")
    if enabled[0][2] != 0:
        raise InvalidInput(
            f"the lowest switched-on tier ({enabled[0][0]}) must have threshold 0, so every"
            " member has a tier",
            field="threshold",
        )
    for lower, higher in itertools.pairwise(enabled):
        if higher[2] <= lower[2]:
            raise InvalidInput(
                f"thresholds must rise with rank: {higher[0]} ({higher[2]}) is not above"
                f" {lower[0]} ({lower[2]})",
                field="threshold",
            )
