"""The two-sided referral reward: paid exactly once, through the ledger, on the referred
member's first qualifying purchase (or when a held referral is approved), and taken back
when that purchase is returned in full.

Lock order as everywhere (see loyalty.points.ledger): both members' points accounts in
member-id order first, then the referral row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.points import ledger
from loyalty.points.service import get_rules
from loyalty.referrals import schemas


def settings_schema(row: Any) -> schemas.ReferralSettings:
    return db.from_row(schemas.ReferralSettings, row)


async def referral_settings(conn: asyncpg.Connection) -> schemas.ReferralSettings:
    row = await conn.fetchrow("SELECT * FROM referral_settings WHERE id = 1")
    if row is None:
        row = await conn.fetchrow(
            """
            INSERT INTO referral_settings (id, referrer_points, referred_points, min_purchase,
                monthly_cap, updated_at, updated_by)
            VALUES (1, 500, 200, 100, 10, now(), 'system')
            ON CONFLICT (id) DO UPDATE SET id = 1 RETURNING *
            """
        )
    return settings_schema(row)


@dataclass
class Waiting:
    """A referral waiting for the referred member's first qualifying purchase."""

    id: UUID
    referrer: UUID
    referred: UUID
    status: str


async def waiting_referrals(conn: asyncpg.Connection, member_ids: list[UUID]) -> list[Waiting]:
    """Referrals of these members still waiting for a qualifying purchase, locked. Callers
    hold both members' account locks already."""
    rows = await conn.fetch(
        """
        SELECT id, referrer, referred, status FROM referrals
        WHERE referred = ANY($1::uuid[]) AND qualified_at IS NULL
          AND status IN ('pending', 'held')
        FOR UPDATE
        """,
        member_ids,
    )
    return [Waiting(r["id"], r["referrer"], r["referred"], r["status"]) for r in rows]


def reward_entries(
    referral_id: UUID, referrer: UUID, referred: UUID, settings: schemas.ReferralSettings, at
) -> list[ledger.NewEntry]:
    entries = []
    for side, member, points in (
        ("referrer", referrer, settings.referrer_points),
        ("referred", referred, settings.referred_points),
    ):
        if points > 0:
            entries.append(
                ledger.NewEntry(
                    member=member,
                    points=points,
                    kind="referral_earn",
                    cause_type="referral",
                    cause_id=str(referral_id),
                    key=f"referral:{referral_id}:{side}",
                    occurred_at=at,
                    actor="system",
                )
            )
    return entries


async def qualify(
    conn: asyncpg.Connection,
    qualifying: list[tuple[Waiting, UUID, Decimal]],
    accounts: dict[UUID, ledger.Account],
    at: datetime,
) -> list[ledger.NewEntry]:
    """Mark referrals qualified by these purchases (referral, purchase id, purchase total; in
    posting order: the first that reaches the minimum counts) and return the reward entries
    to post for the pending ones; held ones wait for review. The caller posts the entries on
    the locked accounts in the same transaction."""
    settings = await referral_settings(conn)
    first: dict[UUID, tuple[Waiting, UUID]] = {}
    for waiting, purchase_id, total in qualifying:
        if total >= settings.min_purchase and waiting.id not in first:
            first[waiting.id] = (waiting, purchase_id)
    chosen = list(first.values())
    if not chosen:
        return []
    entries = []
    rewarded = [w for w, _ in chosen if w.status == "pending" and w.referrer in accounts]
    for waiting in rewarded:
        entries += reward_entries(waiting.id, waiting.referrer, waiting.referred, settings, at)
    await conn.execute(
        """
        UPDATE referrals r SET qualified_at = $3::timestamptz, qualifying_purchase = v.purchase,
            status = CASE WHEN v.rewarded THEN 'rewarded' ELSE r.status END,
            rewarded_at = CASE WHEN v.rewarded THEN $3::timestamptz END,
            referrer_points = CASE WHEN v.rewarded THEN $4 ELSE 0 END,
            referred_points = CASE WHEN v.rewarded THEN $5 ELSE 0 END
        FROM unnest($1::uuid[], $2::uuid[], $6::bool[]) AS v(id, purchase, rewarded)
        WHERE r.id = v.id
        """,
        [w.id for w, _ in chosen],
        [p for _, p in chosen],
        at,
        settings.referrer_points,
        settings.referred_points,
        [w in rewarded for w, _ in chosen],
    )
    for waiting in rewarded:
        await announce_reward(conn, waiting.id, waiting.referrer, waiting.referred, settings)
    return entries


async def announce_reward(
    conn: asyncpg.Connection,
    referral_id: UUID,
    referrer: UUID,
    referred: UUID,
    settings: schemas.ReferralSettings,
) -> None:
    for member, points in (
        (referrer, settings.referrer_points),
        (referred, settings.referred_points),
    ):
        await events.record(
            conn,
            "referral.rewarded",
            {"referral_id": str(referral_id), "points": points, "referrer": member == referrer},
            member,
        )


async def earn_now(
    conn: asyncpg.Connection, accounts: dict[UUID, ledger.Account], entries: list[ledger.NewEntry]
) -> None:
    rules = await get_rules()
    at = now()
    for entry in entries:
        await ledger.earn(
            conn,
            accounts[entry.member],
            entry,
            now=at,
            pending_days=rules.pending_days,
            expiry_months=rules.expiry_months,
        )
    await ledger.save_accounts(conn, list(accounts.values()))


async def after_full_return(
    conn: asyncpg.Connection, purchase_id: UUID, accounts: dict[UUID, ledger.Account], actor: str
) -> None:
    """The qualifying purchase came back in full: a paid reward is taken back from both sides
    (as reversal entries, spent points become debt); an unpaid one waits for another first
    purchase. The caller holds both accounts' locks."""
    referral = await conn.fetchrow(
        "SELECT * FROM referrals WHERE qualifying_purchase = $1 FOR UPDATE", purchase_id
    )
    if referral is None or referral["status"] in ("rejected", "reversed"):
        return
    if referral["status"] != "rewarded":
        await conn.execute(
            "UPDATE referrals SET qualified_at = NULL, qualifying_purchase = NULL WHERE id = $1",
            referral["id"],
        )
        return
    for side in ("referrer", "referred"):
        key = f"referral:{referral['id']}:{side}"
        earned = await conn.fetchrow(
            "SELECT id, member, points FROM points_ledger WHERE idempotency_key = $1", key
        )
        if earned is None:
            continue
        # The reward's lot is where the member's points are now: a merge moved it.
        holder = await conn.fetchval(
            "SELECT coalesce(merged_into, id) FROM members WHERE id = $1", earned["member"]
        )
        account = accounts.get(holder)
        if account is None:  # approved after the caller looked: lock it now
            account = accounts[holder] = await ledger.lock_account(conn, holder)
        await ledger.insert_entries(
            conn,
            [
                ledger.NewEntry(
                    member=holder,
                    points=-earned["points"],
                    kind="reversal",
                    cause_type="referral",
                    cause_id=str(referral["id"]),
                    key=f"{key}:reversal",
                    occurred_at=now(),
                    actor=actor,
                    note="the qualifying first purchase was returned in full",
                )
            ],
        )
        await ledger.consume(
            conn,
            account,
            earned["points"],
            order=ledger.OWN_LOT_THEN_PENDING,
            own_entry=earned["id"],
        )
    await ledger.save_accounts(conn, list(accounts.values()))
    await conn.execute(
        "UPDATE referrals SET status = 'reversed', reversed_at = now() WHERE id = $1",
        referral["id"],
    )


async def rewarded_referral_members(conn: asyncpg.Connection, purchase_id: UUID) -> list[UUID]:
    """Both members of a referral this purchase paid for (their accounts must be locked
    before a return of it), or none."""
    row = await conn.fetchrow(
        """
        SELECT referrer, referred FROM referrals
        WHERE qualifying_purchase = $1 AND status = 'rewarded'
        """,
        purchase_id,
    )
    return [row["referrer"], row["referred"]] if row else []
