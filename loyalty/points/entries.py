"""The shapes of ledger rows and the plan of an earning, without SQL: the ledger module
(`loyalty.points.ledger`) writes them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from asyncpg.pgproto.pgproto import UUID as _PgUUID

from loyalty.infrastructure.clock import add_months


def new_id() -> UUID:
    """A random (version 4) UUID, as uuid.uuid4() but in a third of the time: a batch of a
    thousand purchases makes three thousand (asyncpg's UUID type, which it also reads back)."""
    random = bytearray(os.urandom(16))
    random[6] = random[6] & 0x0F | 0x40
    random[8] = random[8] & 0x3F | 0x80
    return _PgUUID(bytes(random))


@dataclass
class Account:
    id: UUID
    member_id: UUID
    available: int
    pending: int
    debt: int
    lifetime_earned: int
    assigned_rep: UUID | None = None
    merged_into: UUID | None = None

    @property
    def total(self) -> int:
        return self.available + self.pending - self.debt


@dataclass
class NewEntry:
    member: UUID
    points: int
    kind: str
    cause_type: str
    cause_id: str
    key: str
    occurred_at: datetime
    actor: str | None = None
    note: str | None = None
    id: UUID = field(default_factory=new_id)


@dataclass
class NewLot:
    member: UUID
    entry: UUID
    points: int
    remaining: int
    available_at: datetime
    expires_at: datetime
    released: bool


def plan_earn(
    account: Account,
    entry: NewEntry,
    *,
    now: datetime,
    pending_days: int,
    expiry_months: int,
) -> NewLot:
    """The lot a positive entry creates, with the account's buckets moved: debt is repaid
    first, the rest is pending until the return window has passed."""
    assert entry.points > 0
    available_at = entry.occurred_at + timedelta(days=pending_days)
    released = available_at <= now
    repaid = min(account.debt, entry.points)
    remaining = entry.points - repaid
    account.debt -= repaid
    if released:
        account.available += remaining
    else:
        account.pending += remaining
    account.lifetime_earned += entry.points
    return NewLot(
        member=account.member_id,
        entry=entry.id,
        points=entry.points,
        remaining=remaining,
        available_at=available_at,
        expires_at=add_months(entry.occurred_at, expiry_months),
        released=released,
    )
