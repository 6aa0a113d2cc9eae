"""One transaction of posting sales: find and lock the members, count each purchase's points,
tier and bonus in posting order, then write purchases, lines, ledger entries, lots, accounts
and tier upgrades in one statement (one round trip), each part defined by its domain.

Each step's type says what is known by then: a `Sale` is a valid purchase, a `Placed` one
has its member, an `Earned` one its points and its purchase row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import DomainError
from loyalty.events import service as events
from loyalty.infrastructure.clock import now
from loyalty.marketing import bonus
from loyalty.points import ledger, purchases, schemas
from loyalty.points.entries import new_id
from loyalty.points.service import line_points
from loyalty.referrals import rewards as referrals
from loyalty.tiers import changes as tier_changes
from loyalty.tiers.ladder import Ladder
from loyalty.webhooks import service as webhooks

Outcome = schemas.Purchase | DomainError


@dataclass
class Sale:
    """A purchase that passed its checks, normalised: what is posted."""

    index: int  # its place in the posting
    data: schemas.PurchaseCreate

    @cached_property
    def request_hash(self) -> str:
        return purchases.body_hash(self.data)


@dataclass
class Placed:
    """A sale with its member (a merged member's survivor), whose account is locked."""

    sale: Sale
    member: UUID
    referrer: UUID | None  # of a referral waiting for this member's first purchase


@dataclass
class Earned:
    """A sale with its points counted: the purchase row it inserts."""

    index: int
    referrer: UUID | None
    purchase: purchases.NewPurchase


@dataclass
class Holder:
    """A member whose points account and tier row this posting holds locked."""

    account: ledger.Account
    assigned_rep: UUID | None
    tier: tier_changes.TierState
    closed: bool  # merged away while we waited for the lock
    has_sales: bool  # not only a referrer


class Raced(Exception):
    """A purchase of this posting was inserted meanwhile by another request: start over."""


async def post_fresh(
    conn: asyncpg.Connection,
    sales: list[Sale],
    principal: Principal,
    rules: schemas.EarningRules,
    ladder: Ladder,
    outcomes: dict[int, Outcome],
) -> None:
    """Post sales not posted before, in the caller's transaction; each one's outcome goes in
    `outcomes`. Raises `Raced` when the caller must roll back and start over."""
    at = now()
    placed, holders = await _place_and_lock(conn, sales, outcomes)
    if not placed:
        return
    if any(holders[p.member].closed for p in placed):
        raise Raced  # a merge committed while we waited: start over with the survivor
    # Read in a statement of its own, after the locks are held: its fresh snapshot sees a
    # purchase of the same member that committed while we waited for a lock (the locking
    # statement's snapshot would miss it). Purchases dated up to CLOCK_SKEW ahead count.
    climb = await tier_changes.climb(
        conn,
        ladder,
        {m: h.tier for m, h in holders.items() if h.has_sales},
        at,
        until=at + purchases.CLOCK_SKEW,
    )
    accounts = {m: h.account for m, h in holders.items() if not h.closed}
    earned, bonus_rows = await _earn(conn, placed, holders, climb, rules)
    entries, lots = _ledger_postings(earned, accounts, principal, rules, at)
    entries += await _write(conn, earned, entries, lots, accounts, climb, principal, rules, at)
    if bonus_rows:
        await bonus.record(conn, bonus_rows)
    if entries and await webhooks.subscribed("points.earned"):
        await events.record_many(
            conn,
            "points.earned",
            [
                (e.member, {"points": e.points, "kind": e.kind, "cause_id": e.cause_id})
                for e in entries
            ],
        )
    for item in earned:
        outcomes[item.index] = item.purchase.created(rules)


# One statement: each sale's member by id, number or phone (a merged member means its
# survivor), then the accounts and tier rows of those members and of any referrer waiting
# for their first purchase, locked in member-id order.
#
# The tier rows are locked too, so an upgrade is computed from the tier as committed now:
# read unlocked, an evaluation job's concurrent upgrade made the purchase's
# `WHERE tier = from_tier` skip its own (a lost upgrade).
_PLACE_AND_LOCK = (
    purchases.FOUND
    + """, resolved AS (
        SELECT f.i, f.member, r.referrer FROM found f
        LEFT JOIN referrals r ON r.referred = f.member AND r.qualified_at IS NULL
            AND r.status IN ('pending', 'held')
    ), targets AS (
        SELECT member, array_agg(i) FILTER (WHERE i IS NOT NULL) AS items,
               (array_agg(referrer) FILTER (WHERE referrer IS NOT NULL))[1] AS referrer
        FROM (SELECT i, member, referrer FROM resolved
              UNION ALL
              SELECT NULL, referrer, NULL FROM resolved WHERE referrer IS NOT NULL) x
        GROUP BY member
    ), locked AS (
        SELECT a.id, a.member, a.available, a.pending, a.debt, a.lifetime_earned, a.closed,
               m.assigned_rep, t.tier, t.below_since, t.override_until, b.items, b.referrer
        FROM targets b
        JOIN points_accounts a ON a.member = b.member
        JOIN members m ON m.id = a.member
        JOIN member_tiers t ON t.member = a.member
        ORDER BY a.member
        FOR UPDATE OF a, t
    )
    SELECT * FROM locked
    """
)


async def _place_and_lock(
    conn: asyncpg.Connection, sales: list[Sale], outcomes: dict[int, Outcome]
) -> tuple[list[Placed], dict[UUID, Holder]]:
    """The sales whose member was found, and every member locked; the others get their
    problem in `outcomes`."""
    keys: list[purchases.MemberKey] = []
    for sale in sales:
        try:
            keys.append(purchases.member_key(sale.data))
        except DomainError as exc:
            outcomes[sale.index] = exc
            keys.append(("none", ""))
    rows = await conn.fetch(_PLACE_AND_LOCK, *purchases.key_args(keys))
    holders: dict[UUID, Holder] = {}
    found: dict[int, Placed] = {}
    for row in rows:
        member = row["member"]
        account = ledger.Account(
            row["id"],
            member,
            row["available"],
            row["pending"],
            row["debt"],
            row["lifetime_earned"],
        )
        tier = tier_changes.TierState(row["tier"], row["below_since"], row["override_until"])
        holders[member] = Holder(
            account, row["assigned_rep"], tier, row["closed"], bool(row["items"])
        )
        for i in row["items"] or ():
            found[i - 1] = Placed(sales[i - 1], member, row["referrer"])
    placed = []
    for n, (sale, key) in enumerate(zip(sales, keys, strict=True)):
        if n in found:
            placed.append(found[n])
        elif sale.index not in outcomes:
            outcomes[sale.index] = purchases.no_member(key)
    return placed, holders


async def _earn(
    conn: asyncpg.Connection,
    placed: list[Placed],
    holders: dict[UUID, Holder],
    climb: tier_changes.Climb,
    rules: schemas.EarningRules,
) -> tuple[list[Earned], list[tuple[UUID, UUID, str, int]]]:
    """Each sale's points, in posting order (an upgrade applies from the member's next
    purchase), and the bonus points offers paid (offer, member, external_id, extra points).

    Bonus offers cost one more query, made only while one is live (the list is cached per
    process), for the posting's members in those offers' audiences."""
    live_bonuses = await bonus.live_offers(conn)
    members = sorted({p.member for p in placed})
    bonuses = await bonus.targeted(conn, live_bonuses, members) if live_bonuses else {}
    bonus_rows: list[tuple[UUID, UUID, str, int]] = []
    earned = []
    for p in placed:
        data = p.sale.data
        multiplier = climb.multiplier(p.member)
        offer = bonus.best(bonuses[p.member], data.occurred_at) if p.member in bonuses else None
        amounts = [line.quantity * line.unit_price for line in data.lines]
        points = [
            line_points(
                amount, line.category, rules, multiplier * offer.multiplier if offer else multiplier
            )
            for amount, line in zip(amounts, data.lines, strict=True)
        ]
        if offer:
            extra = sum(points) - sum(
                line_points(amount, line.category, rules, multiplier)
                for amount, line in zip(amounts, data.lines, strict=True)
            )
            if extra > 0:
                bonus_rows.append((offer.id, p.member, data.external_id, extra))
        climb.count(p.member, data.occurred_at, sum(points), data.total)
        row = purchases.NewPurchase(
            new_id(),
            p.member,
            data,
            points,
            holders[p.member].assigned_rep,
            p.sale.request_hash,
        )
        earned.append(Earned(p.sale.index, p.referrer, row))
    return earned, bonus_rows


def _ledger_postings(
    earned: list[Earned],
    accounts: dict[UUID, ledger.Account],
    principal: Principal,
    rules: schemas.EarningRules,
    at: datetime,
) -> tuple[list[ledger.NewEntry], list[ledger.NewLot]]:
    """The earn entry and lot of each purchase that earned points, on its locked account."""
    entries, lots = [], []
    for item in earned:
        purchase = item.purchase
        points = sum(purchase.points)
        if points <= 0:
            continue
        entry = ledger.NewEntry(
            member=purchase.member,
            points=points,
            kind="purchase_earn",
            cause_type="purchase",
            cause_id=purchase.data.external_id,
            key=f"purchase:{purchase.data.external_id}",
            occurred_at=purchase.data.occurred_at,
            actor=principal.label,
        )
        entries.append(entry)
        lots.append(_plan(accounts[purchase.member], entry, rules, at))
    return entries, lots


def _plan(
    account: ledger.Account, entry: ledger.NewEntry, rules: schemas.EarningRules, at: datetime
) -> ledger.NewLot:
    return ledger.plan_earn(
        account,
        entry,
        now=at,
        pending_days=rules.pending_days,
        expiry_months=rules.expiry_months,
    )


async def _write(
    conn: asyncpg.Connection,
    earned: list[Earned],
    entries: list[ledger.NewEntry],
    lots: list[ledger.NewLot],
    accounts: dict[UUID, ledger.Account],
    climb: tier_changes.Climb,
    principal: Principal,
    rules: schemas.EarningRules,
    at: datetime,
) -> list[ledger.NewEntry]:
    """Write the posting; returns the referral reward entries it added to `entries`' own."""
    rows = purchases.purchase_args([item.purchase for item in earned], principal.label)
    rewards: list[ledger.NewEntry] = []
    try:
        if any(item.referrer for item in earned):
            # A referral records the purchase that qualified it: the purchases go in first.
            inserted = await conn.fetchval(
                f"WITH {purchases.purchase_ctes(1)} SELECT count(*) FROM inserted", *rows
            )
            _check_all_inserted(inserted, earned)
            rewards = await _referral_rewards(conn, earned, accounts, rules, lots, at)
            await _write_postings(conn, entries + rewards, lots, accounts, climb, at)
        else:
            # The usual case: purchases, lines and postings in one statement (one round trip).
            inserted = await _write_postings(conn, entries, lots, accounts, climb, at, rows)
            _check_all_inserted(inserted, earned)
    except asyncpg.UniqueViolationError as exc:
        # An earn entry's key met one committed meanwhile: its purchase was posted by a
        # concurrent request (our insert skipped it). Roll back and replay.
        raise Raced from exc
    return rewards


def _check_all_inserted(inserted: int, earned: list[Earned]) -> None:
    if inserted != len(earned):
        raise Raced  # rolls back; the next attempt finds them as existing purchases


async def _referral_rewards(
    conn: asyncpg.Connection,
    earned: list[Earned],
    accounts: dict[UUID, ledger.Account],
    rules: schemas.EarningRules,
    lots: list[ledger.NewLot],
    at: datetime,
) -> list[ledger.NewEntry]:
    """Reward entries (with their lots added to `lots`) for referrals these purchases
    qualify: the first purchase of the member that reaches the minimum counts."""
    referred = sorted({item.purchase.member for item in earned if item.referrer})
    waiting = {w.referred: w for w in await referrals.waiting_referrals(conn, referred)}
    qualifying: list[tuple[referrals.Waiting, UUID, Decimal]] = [
        (waiting[item.purchase.member], item.purchase.id, item.purchase.data.total)
        for item in earned
        if item.purchase.member in waiting
    ]
    rewards = await referrals.qualify(conn, qualifying, accounts, at)
    lots += [_plan(accounts[entry.member], entry, rules, at) for entry in rewards]
    return rewards


async def _write_postings(
    conn: asyncpg.Connection,
    entries: list[ledger.NewEntry],
    lots: list[ledger.NewLot],
    accounts: dict[UUID, ledger.Account],
    climb: tier_changes.Climb,
    at: datetime,
    purchase_rows: list | None = None,
) -> int:
    """Ledger entries, lots, account buckets and tier upgrades in one statement, with the
    purchases and lines when `purchase_rows` are given (then the number of purchases
    inserted is returned)."""
    upgrades_from = ledger.POSTING_PARAMS + 1
    purchases_from = upgrades_from + 6
    with_purchases = purchases.purchase_ctes(purchases_from) + "," if purchase_rows else ""
    changed = [accounts[m] for m in {e.member for e in entries}]
    return await conn.fetchval(
        f"""
        WITH {with_purchases} {ledger.POSTING_CTES}, {tier_changes.upgrade_ctes(upgrades_from)}
        {"SELECT count(*) FROM inserted" if purchase_rows else "SELECT 0"}
        """,
        *ledger.posting_args(entries, lots, changed),
        *climb.args(at),
        *(purchase_rows or ()),
    )
