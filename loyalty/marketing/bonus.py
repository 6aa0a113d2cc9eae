"""Bonus points offers in the earning path.

The purchase path asks `live_offers()` first: a list cached per process for a few seconds,
almost always empty, so a posting pays nothing for offers that do not exist. Only when a
bonus offer is live does the posting make one more query: which of its members are in
those offers' audiences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from loyalty.infrastructure import db
from loyalty.infrastructure.caches import Cache

CACHE_SECONDS = 10.0
# Purchases are often posted a little after the sale; an offer stays "live" for the path
# this long after its validity ends, so a late post of a sale inside the window still earns.
LATE_POSTING = timedelta(days=14)


@dataclass(frozen=True)
class BonusOffer:
    id: UUID
    valid_from: datetime
    valid_until: datetime
    multiplier: Decimal


_cache: Cache[list[BonusOffer]] = Cache("live bonus offers")


def forget() -> None:
    """Drop the cached list (after an offer's audience is snapshotted, and in tests)."""
    _cache.clear()


async def live_offers(conn: Any = None) -> list[BonusOffer]:
    if (cached := _cache.get(CACHE_SECONDS)) is not None:
        return cached
    sql = """
        SELECT id, valid_from, valid_until, bonus_multiplier FROM offers
        WHERE benefit = 'bonus_points' AND status IN ('sending', 'sent')
          AND valid_until > now() - $1::interval
    """
    if conn is None:
        async with db.connection() as c:
            rows = await c.fetch(sql, LATE_POSTING)
    else:
        rows = await conn.fetch(sql, LATE_POSTING)
    offers = [
        BonusOffer(r["id"], r["valid_from"], r["valid_until"], r["bonus_multiplier"]) for r in rows
    ]
    _cache.put(offers)
    return offers


async def targeted(
    conn: Any, offers: list[BonusOffer], member_ids: list[UUID]
) -> dict[UUID, list[BonusOffer]]:
    """The live bonus offers each member is in the audience of (one query)."""
    by_id = {o.id: o for o in offers}
    rows = await conn.fetch(
        "SELECT offer, member FROM offer_audience"
        " WHERE offer = ANY($1::uuid[]) AND member = ANY($2::uuid[])",
        list(by_id),
        member_ids,
    )
    found: dict[UUID, list[BonusOffer]] = {}
    for row in rows:
        found.setdefault(row["member"], []).append(by_id[row["offer"]])
    return found


def best(offers: list[BonusOffer], occurred_at: datetime) -> BonusOffer | None:
    """The offer with the highest multiplier whose validity holds the sale (they do not
    multiply with each other)."""
    valid = [o for o in offers if o.valid_from <= occurred_at < o.valid_until]
    return max(valid, key=lambda o: o.multiplier, default=None)


async def record(conn: Any, rows: list[tuple[UUID, UUID, str, int]]) -> None:
    """(offer, member, purchase external id, extra points) for the offer's results."""
    await conn.execute(
        """
        INSERT INTO offer_bonus_points (id, offer, member, purchase, points, created_at)
        SELECT gen_random_uuid(), o, m, p, n, now()
        FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[]) AS b(o, m, p, n)
        ON CONFLICT (offer, purchase) DO NOTHING
        """,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
