"""Purchases and returns: points earned exactly once, set-based.

A single purchase and a nightly batch of a thousand take the same path: validate each,
then in one transaction resolve members, lock their accounts (in member-id order), insert
purchases, lines, ledger entries and lots with one statement each, move the account
buckets, and upgrade tiers at once where a purchase crosses a threshold.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import random
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from loyalty.auth import Principal
from loyalty.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    field_in_message,
)
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.money import NO_MONEY, check_money
from loyalty.marketing import bonus
from loyalty.members import service as members
from loyalty.points import ledger, schemas
from loyalty.points.service import get_rules, line_points
from loyalty.referrals import service as referrals
from loyalty.settings import get_settings
from loyalty.tiers import changes as tier_changes
from loyalty.tiers import ladder as tiers
from loyalty.webhooks import service as webhooks

CLOCK_SKEW = timedelta(minutes=5)
# Postings of up to this many purchases use plans made once per connection (index lookups
# and nested loops, right for a few rows); bigger ones are planned for their size.
GENERIC_PLAN_ITEMS = 64
# Single purchases of one caller that arrive while earlier ones are being posted are
# posted together, at most this many in one transaction, one transaction at a time per
# process; after a commit the next group is gathered for this long (a purchase arriving
# while none is under way is posted at once). Measured with bench/earn.py on two cores:
# two transactions at a time made groups smaller and cost more per purchase than the
# overlap gained; gathering for 1 ms made groups bigger, cheaper per purchase and faster
# (0.5 ms and 2 ms did worse).
GROUP_COMMIT_LIMIT = 64
BATCH_CHUNK = 250  # purchases per transaction of a big posting
# Checking a batch's purchases lets other requests of the process run this often: one of
# them may hold locks that a third is waiting for, until it gets the event loop back.
YIELD_EVERY = 50
GROUP_COMMIT_GATHER = 0.001  # seconds


def body_hash(data: msgspec.Struct) -> str:
    return hashlib.sha256(msgspec.json.encode(data)).hexdigest()


def _validate_purchase(data: schemas.PurchaseIn) -> None:
    currency = get_settings().currency
    if data.currency.upper() != currency:
        raise InvalidInput(f"must be {currency}, the platform currency", field="currency")
    for i, line in enumerate(data.lines):
        check_money(line.unit_price, f"lines[{i}].unit_price")
    check_money(data.total, "total")
    lines_total = sum((line.quantity * line.unit_price for line in data.lines), Decimal(0))
    if lines_total != data.total:
        raise InvalidInput(f"is {data.total} but the lines add up to {lines_total}", field="total")
    if data.occurred_at > now() + CLOCK_SKEW:
        raise InvalidInput("is in the future", field="occurred_at")
    named = [x for x in (data.member_id, data.member_number, data.member_phone) if x is not None]
    if len(named) != 1:
        raise InvalidInput(
            "name the member by exactly one of member_id, member_number, member_phone",
            field="member_id",
        )


def _normalised(data: schemas.PurchaseIn) -> schemas.PurchaseIn:
    """The same purchase however it was spelled: what the replay comparison hashes."""
    return msgspec.structs.replace(
        data,
        currency=data.currency.upper(),
        occurred_at=data.occurred_at.astimezone(UTC),
        total=data.total.quantize(Decimal("0.01")),
        lines=[
            msgspec.structs.replace(line, unit_price=line.unit_price.quantize(Decimal("0.01")))
            for line in data.lines
        ],
    )


# Purchases as stored, with when their points become spendable: their lot's date, set by
# the rules when they were posted (a purchase that earned nothing: by the rules now).
_STORED_PURCHASES = """
    SELECT p.*, (SELECT l.available_at FROM points_ledger e
                 JOIN points_lots l ON l.member = p.member AND l.entry = e.id
                 WHERE e.idempotency_key = 'purchase:' || p.external_id) AS pending_until
    FROM purchases p
"""


def _purchase_schema(row: Any, rules: schemas.EarningRules, status: str) -> schemas.Purchase:
    return schemas.Purchase(
        id=row["id"],
        external_id=row["external_id"],
        member_id=row["member"],
        occurred_at=row["occurred_at"],
        store=row["store"],
        currency=row["currency"],
        total=row["total"],
        returned_amount=row["returned_amount"],
        points=row["points"],
        reversed_points=row["reversed_points"],
        pending_until=row["pending_until"]
        or row["occurred_at"] + timedelta(days=rules.pending_days),
        rep_id=row["rep"],
        status=status,  # type: ignore[arg-type]
    )


@dataclass
class _Item:
    """One purchase on its way through a posting."""

    index: int
    data: schemas.PurchaseIn
    request_hash: str = ""
    member_id: UUID | None = None
    referrer: UUID | None = None  # of a referral waiting for this member's first purchase
    points: list[int] = field(default_factory=list)
    purchase_id: UUID | None = None
    result: schemas.Purchase | None = None
    problem: DomainError | None = None


class _Raced(Exception):
    """A purchase of this posting was inserted meanwhile by another request: start over."""


def _existing_outcome(
    item: _Item, row: Any, rules: schemas.EarningRules
) -> schemas.Purchase | DomainError:
    if row["request_hash"] != item.request_hash:
        return Conflict(
            "a different purchase was already posted with this external_id", field="external_id"
        )
    return _purchase_schema(row, rules, "replayed")


def _member_keys(items: list[_Item]) -> list[tuple[str, str]]:
    """How each item names its member: ("id" | "number" | "phone" | "none", value); an item
    whose number or phone cannot be read gets its problem."""
    keys: list[tuple[str, str]] = []
    for item in items:
        data = item.data
        try:
            if data.member_id is not None:
                keys.append(("id", str(data.member_id)))
            elif data.member_number is not None:
                keys.append(("number", members.normalise_number(data.member_number)))
            else:
                keys.append(
                    ("phone", members.normalise_phone(data.member_phone or "", "member_phone"))
                )
        except DomainError as exc:
            item.problem = exc
            keys.append(("none", ""))
    return keys


def _key_args(keys: list[tuple[str, str]]) -> list[list]:
    return [
        [UUID(v) if k == "id" else None for k, v in keys],
        [v if k == "number" else None for k, v in keys],
        [v if k == "phone" else None for k, v in keys],
    ]


# Each item's member (the i-th key, from 1; a merged member's survivor) as CTEs `k` and
# `found`: three index lookups, not one join on an OR (which would scan every member).
_FOUND = """
    WITH k AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY
            AS k(id, number, phone, i)
    ), found AS (
        SELECT k.i, coalesce(m.merged_into, m.id) AS member
        FROM k JOIN members m ON m.id = k.id
        UNION ALL
        SELECT k.i, coalesce(m.merged_into, m.id) FROM k JOIN members m ON m.number = k.number
        UNION ALL
        SELECT k.i, coalesce(m.merged_into, m.id) FROM k JOIN members m ON m.phone = k.phone
    )
"""


async def _members_of(items: list[_Item]) -> dict[int, UUID]:
    """Each item's member by its index, read without locks: to order a big posting."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            _FOUND + "SELECT i, member FROM found", *_key_args(_member_keys(items))
        )
    return {items[row["i"] - 1].index: row["member"] for row in rows}


async def _resolve_and_lock(
    conn: asyncpg.Connection,
    items: list[_Item],
    ladder: tiers.Ladder,
    at: datetime,
) -> list[Any]:
    """One statement: each item's member by id, number or phone (a merged member means its
    survivor), then the accounts and tier rows of those members and of any referrer waiting
    for their first purchase, locked in member-id order.

    The tier rows are locked too, so an upgrade is computed from the tier as committed now:
    read unlocked, an evaluation job's concurrent upgrade made the purchase's
    `WHERE tier = from_tier` skip its own (a lost upgrade)."""
    keys = _member_keys(items)
    rows = await conn.fetch(
        _FOUND
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
        """,
        *_key_args(keys),
    )
    for row in rows:
        for i in row["items"] or ():
            items[i - 1].member_id = row["member"]
            items[i - 1].referrer = row["referrer"]
    for item, (kind, _) in zip(items, keys, strict=True):
        if item.problem is None and item.member_id is None:
            item.problem = InvalidInput(
                "no member matches", field=f"member_{kind}" if kind != "id" else "member_id"
            )
    return rows


async def post_purchases(
    purchases: list[schemas.PurchaseIn],
    principal: Principal,
    *,
    look_first: bool | None = None,
    chain: db.TransactionChain | None = None,
) -> list[schemas.Purchase | DomainError]:
    """Post purchases, each exactly once; the answer holds a result or a problem per item.

    `look_first`: look for earlier posts of these external_ids before inserting (a batch
    does by default: a re-upload is common). Without the look the insert finds them, and
    the posting starts over with it.

    `chain`: post in the chain's open transaction (begun if need be) and leave it to the
    caller to commit; starting over rolls it back and begins another."""
    items = [_Item(i, data) for i, data in enumerate(purchases)]
    for item in items:
        if item.index % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            _validate_purchase(item.data)
            item.data = _normalised(item.data)
            item.request_hash = body_hash(item.data)
        except DomainError as exc:
            item.problem = exc
    rules = await get_rules()
    ladder = await tiers.ladder()
    look = len(items) > 1 if look_first is None else look_first
    big = len(items) > BATCH_CHUNK
    chunks = _in_member_order_chunks(items, await _members_of(items) if big else {})
    for chunk in chunks:
        for attempt in range(3):
            if chain is not None:
                await chain.begin()
            try:
                await _post(chunk, principal, rules, ladder, look_first=look or attempt > 0)
                break
            except _Raced:
                if chain is not None:
                    await chain.rollback()
                for item in chunk:
                    item.result = None
        else:
            raise ServiceUnavailable(
                "these purchases kept colliding with concurrent changes; retry"
            )
    return [item.problem or item.result for item in items]  # type: ignore[misc]


def _in_member_order_chunks(items: list[_Item], members_of: dict[int, UUID]) -> list[list[_Item]]:
    """A big posting in transactions of about `BATCH_CHUNK` purchases, each a run of the
    member order (`members_of`: each item's member, however it was named), so each
    transaction holds its members' locks only while its own part is written. A member's
    purchases stay in one transaction, in their order (the first qualifies a referral); so
    the runs can be taken starting at any one of them, and are, at random: batches posted at
    the same time then mostly work on different members instead of queueing for the same
    ones."""
    if len(items) <= BATCH_CHUNK:
        return [items]
    # Copies of one external_id go with the first copy's member, in posting order, so the
    # first copy is the one posted and the others are its replays (or 409s) as before.
    member_of: dict[str, UUID | None] = {}
    for item in items:
        member_of.setdefault(item.data.external_id, members_of.get(item.index))
    by_id = sorted(  # stable: a member's purchases keep their order
        (item for item in items if member_of[item.data.external_id] is not None),
        key=lambda item: str(member_of[item.data.external_id]),
    )
    runs: list[list[_Item]] = []
    for item in by_id:
        member = member_of[item.data.external_id]
        if not runs or (
            len(runs[-1]) >= BATCH_CHUNK and member != member_of[runs[-1][-1].data.external_id]
        ):
            runs.append([])
        runs[-1].append(item)
    start = random.randrange(len(runs)) if runs else 0
    # Purchases naming no member that exists go last, in posting order (they fail).
    others = [item for item in items if member_of[item.data.external_id] is None]
    return (
        runs[start:]
        + runs[:start]
        + [others[i : i + BATCH_CHUNK] for i in range(0, len(others), BATCH_CHUNK)]
    )


async def _post(
    items: list[_Item],
    principal: Principal,
    rules: schemas.EarningRules,
    ladder: tiers.Ladder,
    *,
    look_first: bool,
) -> None:
    open_items = [item for item in items if item.problem is None]
    if not open_items:
        return
    # A repeated external_id inside one posting is a replay of its first occurrence.
    first: dict[str, _Item] = {}
    repeats: list[_Item] = []
    for item in open_items:
        if item.data.external_id in first:
            repeats.append(item)
        else:
            first[item.data.external_id] = item
    fresh = list(first.values())
    at = now()
    # A few purchases are planned once per connection; a batch's plans fit its size.
    plans = "generic" if len(items) <= GENERIC_PLAN_ITEMS else "custom"
    async with db.transaction(plans=plans) as conn:
        existing = {
            row["external_id"]: row
            for row in (
                await conn.fetch(
                    _STORED_PURCHASES + "WHERE p.external_id = ANY($1::text[])", list(first)
                )
                if look_first
                else []
            )
        }
        for item in fresh:
            if item.data.external_id in existing:
                outcome = _existing_outcome(item, existing[item.data.external_id], rules)
                if isinstance(outcome, DomainError):
                    item.problem = outcome
                else:
                    item.result = outcome
        fresh = [item for item in fresh if item.result is None and item.problem is None]
        if fresh:
            locked = await _resolve_and_lock(conn, fresh, ladder, at)
            fresh = [item for item in fresh if item.problem is None]
        if fresh:
            # Read in a statement of its own, after the locks are held: its fresh snapshot
            # sees a purchase of the same member that committed while we waited for a lock
            # (the locking statement's snapshot would miss it). Members already in the top
            # tier cannot climb: their spend is read only while they are in grace (spending
            # back above the threshold ends it). Purchases dated up to CLOCK_SKEW ahead
            # are accepted, so they count.
            climbing = [
                row["member"]
                for row in locked
                if row["items"]
                and (
                    ladder.next_above(_rank(ladder, row["tier"])) or row["below_since"] is not None
                )
            ]
            values = (
                await tiers.qualifying_values(
                    conn, climbing, at, ladder.settings, until=at + CLOCK_SKEW
                )
                if climbing
                else {}
            )
            await _insert(conn, fresh, locked, values, principal, rules, ladder, at)
    for item in repeats:
        original = first[item.data.external_id]
        if original.problem is not None and original.result is None:
            item.problem = original.problem
        elif original.request_hash != item.request_hash:
            item.problem = Conflict(
                "a different purchase was already posted with this external_id",
                field="external_id",
            )
        else:
            item.result = msgspec.structs.replace(original.result, status="replayed")  # type: ignore[arg-type]


async def _insert(
    conn: asyncpg.Connection,
    items: list[_Item],
    rows: list[Any],
    values: dict[UUID, Decimal],
    principal: Principal,
    rules: schemas.EarningRules,
    ladder: tiers.Ladder,
    at: datetime,
) -> None:
    member_ids = sorted({item.member_id for item in items})  # type: ignore[type-var]
    referrers = {item.referrer for item in items if item.referrer is not None}
    if any(row["closed"] and row["member"] in member_ids for row in rows):
        raise _Raced  # a merge committed while we waited: start over with the survivor
    rows = [row for row in rows if not row["closed"]]
    info = {row["member"]: row for row in rows}
    accounts = {
        row["member"]: ledger.Account(
            row["id"],
            row["member"],
            row["available"],
            row["pending"],
            row["debt"],
            row["lifetime_earned"],
        )
        for row in rows
    }
    tier_states = {
        m: tier_changes.TierState(row["tier"], row["below_since"], row["override_until"])
        for m, row in info.items()
    }
    window_start = tiers.window_start(at, ladder.settings.window_months)
    # Bonus points offers: one more query, made only while a bonus offer is live (the list
    # is cached per process), for the posting's members in those offers' audiences.
    live_bonuses = await bonus.live_offers(conn)
    bonuses = await bonus.targeted(conn, live_bonuses, member_ids) if live_bonuses else {}
    bonus_rows: list[tuple[UUID, UUID, str, int]] = []

    upgrades: dict[UUID, tier_changes.Upgrade] = {}
    back_above: list[UUID] = []
    for item in items:  # in posting order: an upgrade applies from the member's next purchase
        member_id = item.member_id
        tier = ladder.by_code(tier_states[member_id].tier)  # type: ignore[index]
        multiplier = tier.earn_multiplier if tier else Decimal(1)
        offer = (
            bonus.best(bonuses[member_id], item.data.occurred_at) if member_id in bonuses else None
        )
        item.points = [
            line_points(
                line.quantity * line.unit_price,
                line.category,
                rules,
                multiplier * offer.multiplier if offer else multiplier,
            )
            for line in item.data.lines
        ]
        if offer:
            extra = sum(item.points) - sum(
                line_points(line.quantity * line.unit_price, line.category, rules, multiplier)
                for line in item.data.lines
            )
            if extra > 0:
                bonus_rows.append((offer.id, member_id, item.data.external_id, extra))  # type: ignore[arg-type]
        if member_id in values and window_start <= item.data.occurred_at <= at + CLOCK_SKEW:
            values[member_id] += (  # type: ignore[index]
                sum(item.points) if ladder.settings.basis == "points_earned" else item.data.total
            )
            target = ladder.qualified(values[member_id])  # type: ignore[index]
            if tier is None or target.rank > tier.rank:
                state = tier_states[member_id]  # type: ignore[index]
                origin = upgrades[member_id].from_tier if member_id in upgrades else state.tier
                upgrades[member_id] = tier_changes.Upgrade(
                    member_id, origin, target.code, values[member_id]
                )  # type: ignore[arg-type,index]
                state.tier = target.code
            elif (
                tier_states[member_id].below_since is not None  # type: ignore[index]
                and target.rank >= tier.rank
                and tier_states[member_id].override_until is None  # type: ignore[index]
            ):
                back_above.append(member_id)  # type: ignore[arg-type]

    for item in items:
        item.purchase_id = ledger.new_id()
    purchase_rows = _purchase_args(items, info, principal)
    entries, lots = [], []
    for item in items:
        points = sum(item.points)
        if points <= 0:
            continue
        entry = ledger.NewEntry(
            member=item.member_id,  # type: ignore[arg-type]
            points=points,
            kind="purchase_earn",
            cause_type="purchase",
            cause_id=item.data.external_id,
            key=f"purchase:{item.data.external_id}",
            occurred_at=item.data.occurred_at,
            actor=principal.label,
        )
        entries.append(entry)
        lots.append(
            ledger.plan_earn(
                accounts[item.member_id],  # type: ignore[index]
                entry,
                now=at,
                pending_days=rules.pending_days,
                expiry_months=rules.expiry_months,
            )
        )
    upgraded = list(upgrades.values())
    cleared = sorted(set(back_above) - set(upgrades))
    try:
        if referrers:
            # A referral records the purchase that qualified it: the purchases go in first.
            inserted = await conn.fetchval(
                f"WITH {_PURCHASE_ROWS.format(*range(1, 20))} SELECT count(*) FROM inserted",
                *purchase_rows,
            )
            _check_all_inserted(inserted, items)
            entries += await _referral_rewards(conn, items, accounts, rules, lots, at)
            await _write_postings(conn, entries, lots, accounts, upgraded, cleared, at)
        else:
            # The usual case: purchases, lines and postings in one statement (one round trip).
            inserted = await _write_postings(
                conn, entries, lots, accounts, upgraded, cleared, at, purchase_rows
            )
            _check_all_inserted(inserted, items)
    except asyncpg.UniqueViolationError as exc:
        # An earn entry's key met one committed meanwhile: its purchase was posted by a
        # concurrent request (our insert skipped it). Roll back and replay.
        raise _Raced from exc
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
    pending = timedelta(days=rules.pending_days)
    for item in items:
        data = item.data
        item.result = schemas.Purchase(
            id=item.purchase_id,  # type: ignore[arg-type]
            external_id=data.external_id,
            member_id=item.member_id,  # type: ignore[arg-type]
            occurred_at=data.occurred_at,
            store=data.store,
            currency=data.currency,
            total=data.total,
            returned_amount=NO_MONEY,
            points=sum(item.points),
            reversed_points=0,
            pending_until=data.occurred_at + pending,
            rep_id=info[item.member_id]["assigned_rep"],  # type: ignore[index]
            status="created",
        )


async def _referral_rewards(
    conn: asyncpg.Connection,
    items: list[_Item],
    accounts: dict[UUID, ledger.Account],
    rules: schemas.EarningRules,
    lots: list[ledger.NewLot],
    at: datetime,
) -> list[ledger.NewEntry]:
    """Reward entries (with their lots added to `lots`) for referrals these purchases
    qualify: the first purchase of the member that reaches the minimum counts."""
    waiting = {
        w.referred: w
        for w in await referrals.waiting_referrals(
            conn,
            sorted({item.member_id for item in items if item.referrer}),  # type: ignore[type-var]
        )
    }
    qualifying = []
    for item in items:
        member_waiting = waiting.get(item.member_id)  # type: ignore[arg-type]
        if member_waiting is not None:
            qualifying.append((member_waiting, item.purchase_id, item.data.total))
    rewards = await referrals.qualify(conn, qualifying, accounts, at)
    for entry in rewards:
        lots.append(
            ledger.plan_earn(
                accounts[entry.member],
                entry,
                now=at,
                pending_days=rules.pending_days,
                expiry_months=rules.expiry_months,
            )
        )
    return rewards


def _purchase_args(items: list[_Item], info: dict[UUID, Any], principal: Principal) -> list:
    """The arguments of `_PURCHASE_ROWS`."""
    lines = [
        (item.purchase_id, item.member_id, n, line, points)
        for item in items
        for n, (line, points) in enumerate(zip(item.data.lines, item.points, strict=True), 1)
    ]
    return [
        [item.purchase_id for item in items],
        [item.data.external_id for item in items],
        [item.member_id for item in items],
        [item.data.occurred_at for item in items],
        [item.data.store for item in items],
        [item.data.currency for item in items],
        # Money as text: asyncpg's binary numeric encoding costs 3 x as much.
        [str(item.data.total) for item in items],
        [sum(item.points) for item in items],
        # The sale is credited to the rep assigned at the time of the sale.
        [info[item.member_id]["assigned_rep"] for item in items],  # type: ignore[index]
        [item.request_hash for item in items],
        principal.label,
        [entry[0] for entry in lines],
        [entry[1] for entry in lines],
        [entry[2] for entry in lines],
        [entry[3].sku for entry in lines],
        [entry[3].category for entry in lines],
        [entry[3].quantity for entry in lines],
        [str(entry[3].unit_price) for entry in lines],
        [entry[4] for entry in lines],
    ]


# Purchases and their lines, as CTEs named `inserted` (the purchases inserted; one already
# posted is skipped) and `lines`; its 19 parameter numbers are filled in with str.format.
_PURCHASE_ROWS = """
    inserted AS (
        INSERT INTO purchases (id, external_id, member, occurred_at, store, currency, total,
            returned_amount, points, reversed_points, rep, request_hash, source, created_at)
        SELECT p.id, p.external_id, p.member, p.occurred_at, p.store, p.currency,
               p.total::numeric, 0, p.points, 0, p.rep, p.request_hash, ${10}, now()
        FROM unnest(${0}::uuid[], ${1}::text[], ${2}::uuid[], ${3}::timestamptz[],
                    ${4}::text[], ${5}::text[], ${6}::text[], ${7}::bigint[], ${8}::uuid[],
                    ${9}::text[])
             AS p(id, external_id, member, occurred_at, store, currency, total, points, rep,
                  request_hash)
        ON CONFLICT (external_id) DO NOTHING
        RETURNING id
    ), lines AS (
        INSERT INTO purchase_lines (id, purchase, member, line_no, sku, category, quantity,
            unit_price, amount, points, returned_quantity, reversed_points)
        SELECT gen_random_uuid(), l.purchase, l.member, l.line_no, l.sku, l.category,
               l.quantity, l.unit_price::numeric, l.quantity * l.unit_price::numeric,
               l.points, 0, 0
        FROM unnest(${11}::uuid[], ${12}::uuid[], ${13}::int[], ${14}::text[], ${15}::text[],
                    ${16}::int[], ${17}::text[], ${18}::bigint[])
             AS l(purchase, member, line_no, sku, category, quantity, unit_price, points)
        WHERE l.purchase IN (SELECT id FROM inserted)
    )
"""


def _check_all_inserted(inserted: int, items: list[_Item]) -> None:
    if inserted != len(items):
        raise _Raced  # rolls back; the next attempt finds them as existing purchases


async def _write_postings(
    conn: asyncpg.Connection,
    entries: list[ledger.NewEntry],
    lots: list[ledger.NewLot],
    accounts: dict[UUID, ledger.Account],
    upgrades: list[tier_changes.Upgrade],
    back_above: list[UUID],
    at: datetime,
    purchase_rows: list | None = None,
) -> int:
    """Ledger entries, lots, account buckets and tier upgrades in one statement, with the
    purchases and lines when `purchase_rows` are given (then the number of purchases
    inserted is returned). The ledger trigger adds the entries to the accounts' totals once the
    statement is done."""
    purchases = _PURCHASE_ROWS.format(*range(29, 48)) + "," if purchase_rows else ""
    changed = [accounts[m] for m in {e.member for e in entries}]
    return await conn.fetchval(
        f"""
        WITH {purchases} entries AS (
            INSERT INTO points_ledger (id, member, points, kind, cause_type, cause_id,
                idempotency_key, occurred_at, created_at, actor, note)
            {ledger.ENTRY_ROWS}
        ), lots AS (
            INSERT INTO points_lots (id, member, entry, points, remaining, available_at,
                expires_at, released)
            SELECT gen_random_uuid(), l.member, l.entry, l.points, l.remaining, l.available_at,
                   l.expires_at, l.released
            FROM unnest($11::uuid[], $12::uuid[], $13::bigint[], $14::bigint[],
                        $15::timestamptz[], $16::timestamptz[], $17::bool[])
                 AS l(member, entry, points, remaining, available_at, expires_at, released)
        ), accounts AS (
            UPDATE points_accounts a
            SET available = v.available, pending = v.pending, debt = v.debt,
                lifetime_earned = v.lifetime_earned, updated_at = now()
            FROM unnest($18::uuid[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[])
                 AS v(id, available, pending, debt, lifetime_earned)
            WHERE a.id = v.id
        ), upgraded AS (
            -- A tier row changed meanwhile (the evaluation job) is left alone.
            UPDATE member_tiers t SET tier = v.to_tier, since = $27, below_since = NULL,
                override_tier = NULL, override_until = NULL, override_reason = NULL,
                override_by = NULL
            FROM unnest($23::uuid[], $24::text[], $25::text[], $26::numeric[])
                 AS v(member, from_tier, to_tier, value)
            WHERE t.member = v.member AND t.tier = v.from_tier
            RETURNING v.member, v.from_tier, v.to_tier, v.value
        ), history AS (
            INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor,
                qualifying_value, at)
            SELECT gen_random_uuid(), member, from_tier, to_tier, 'upgrade', '', 'system',
                   value, $27
            FROM upgraded
        ), announced AS (
            INSERT INTO outbox_events (id, topic, member, payload, created_at, attempts)
            SELECT gen_random_uuid(), 'tier.changed', member,
                   jsonb_build_object('from_tier', from_tier, 'to_tier', to_tier,
                                      'reason', 'upgrade'),
                   now(), 0
            FROM upgraded
        ), back_above AS (
            UPDATE member_tiers SET below_since = NULL WHERE member = ANY($28::uuid[])
        )
        {"SELECT count(*) FROM inserted" if purchase_rows else "SELECT 0"}
        """,
        *ledger.entry_args(entries),
        [lot.member for lot in lots],
        [lot.entry for lot in lots],
        [lot.points for lot in lots],
        [lot.remaining for lot in lots],
        [lot.available_at for lot in lots],
        [lot.expires_at for lot in lots],
        [lot.released for lot in lots],
        [a.id for a in changed],
        [a.available for a in changed],
        [a.pending for a in changed],
        [a.debt for a in changed],
        [a.lifetime_earned for a in changed],
        [u.member for u in upgrades],
        [u.from_tier for u in upgrades],
        [u.to_tier for u in upgrades],
        [u.value for u in upgrades],
        at,
        back_above,
        *(purchase_rows or ()),
    )


def _rank(ladder: tiers.Ladder, code: str) -> int:
    tier = ladder.by_code(code)
    return tier.rank if tier else -1


async def post_purchase(data: schemas.PurchaseIn, principal: Principal) -> schemas.Purchase:
    """Post one purchase and earn its points exactly once, however often it is sent."""
    if db.in_transaction():  # the caller's transaction must hold it: post it there
        (outcome,) = await post_purchases([data], principal)
    else:
        outcome = await _group_commit().post(data, principal)
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


class _GroupCommit:
    """Group commit for single purchases (as PostgreSQL does for WAL flushes).

    A purchase that arrives while no posting of its caller is under way is posted at once,
    alone. Those that arrive meanwhile wait for it to finish (and `GROUP_COMMIT_GATHER`
    more) and are then posted together, in one transaction, each with its own outcome,
    exactly as a batch posts them. Under load a transaction carries several purchases, which
    costs the database and this process a fraction of a transaction each; alone, a purchase
    waits for nothing. Each group's transaction begins in the round trip that commits the
    previous one.

    Each purchase is committed before its caller is answered. An error of the whole
    transaction (the database gone, purchases that kept colliding) is every caller's error,
    as it would have been for each alone."""

    def __init__(self) -> None:
        # Per caller, the purchases waiting; a caller is here while its drain runs.
        self.waiting: dict[Principal, list[tuple[schemas.PurchaseIn, asyncio.Future]]] = {}
        self.drains: set[asyncio.Task] = set()

    async def post(
        self, data: schemas.PurchaseIn, principal: Principal
    ) -> schemas.Purchase | DomainError:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        queue = self.waiting.get(principal)
        if queue is not None:
            queue.append((data, future))
        else:
            self.waiting[principal] = [(data, future)]
            # A context of its own: the drain must not run in the first caller's
            # transaction or outlive it through a context variable.
            drain = asyncio.create_task(self._drain(principal), context=contextvars.Context())
            self.drains.add(drain)
            drain.add_done_callback(self.drains.discard)
        return await future

    async def _drain(self, principal: Principal) -> None:
        queue = self.waiting[principal]

        def take() -> list[tuple[schemas.PurchaseIn, asyncio.Future]]:
            group = queue[:GROUP_COMMIT_LIMIT]
            del queue[:GROUP_COMMIT_LIMIT]
            return group

        group: list[tuple[schemas.PurchaseIn, asyncio.Future]] = []
        try:
            while queue:
                group = take()
                try:
                    # Each group's transaction begins with the previous one's commit.
                    async with db.transaction_chain(plans="generic") as chain:
                        while group:
                            outcomes = await post_purchases(
                                [data for data, _ in group],
                                principal,
                                look_first=False,
                                chain=chain,
                            )
                            await chain.commit(begin_next=bool(queue))
                            for (_, future), outcome in zip(group, outcomes, strict=True):
                                if not future.done():  # its caller may have gone
                                    future.set_result(outcome)
                            await asyncio.sleep(GROUP_COMMIT_GATHER)
                            group = take()
                except Exception as exc:
                    # Nothing of this group was committed. Its connection goes back to
                    # the pool (discarded if broken) and the next group takes another.
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    group = []
        finally:
            del self.waiting[principal]
            for _, future in group + queue:  # left undone only if the drain was cancelled
                if not future.done():
                    future.set_exception(ServiceUnavailable("the server is shutting down"))


_group_commits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _GroupCommit] = (
    weakref.WeakKeyDictionary()
)


def _group_commit() -> _GroupCommit:
    """This event loop's group commit (tests run one loop after another)."""
    loop = asyncio.get_running_loop()
    group_commit = _group_commits.get(loop)
    if group_commit is None:
        group_commit = _group_commits[loop] = _GroupCommit()
    return group_commit


async def post_batch(data: schemas.BatchIn, principal: Principal) -> schemas.BatchResult:
    """Up to 1,000 purchases, each applied on its own terms: a bad one is reported and the
    others still land."""
    decoded: list[schemas.PurchaseIn] = []
    positions: list[int] = []
    items: list[schemas.BatchItem | None] = [None] * len(data.purchases)
    for index, raw in enumerate(data.purchases):
        if index % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            decoded.append(msgspec.convert(raw, type=schemas.PurchaseIn))
            positions.append(index)
        except msgspec.ValidationError as exc:
            items[index] = schemas.BatchItem(
                index,
                400,
                external_id=raw.get("external_id")
                if isinstance(raw.get("external_id"), str)
                else None,
                problem={
                    "title": "Validation failed",
                    "field": field_in_message(str(exc)),
                    "detail": str(exc),
                },
            )
    for index, outcome in zip(positions, await post_purchases(decoded, principal), strict=True):
        external_id = data.purchases[index].get("external_id")
        if isinstance(outcome, DomainError):
            items[index] = schemas.BatchItem(
                index,
                outcome.status_code,
                external_id=external_id,
                problem={"title": outcome.title, "field": outcome.field, "detail": outcome.detail},
            )
        else:
            status = 201 if outcome.status == "created" else 200
            items[index] = schemas.BatchItem(
                index, status, external_id=external_id, purchase=outcome
            )
    done = [item for item in items if item is not None]
    return schemas.BatchResult(
        created=sum(1 for i in done if i.status == 201),
        replayed=sum(1 for i in done if i.status == 200),
        failed=sum(1 for i in done if i.status >= 400),
        items=done,
    )


async def get_purchase(external_id: str, principal: Principal) -> schemas.Purchase:
    rules = await get_rules()
    async with db.connection() as conn:
        row = await conn.fetchrow(_STORED_PURCHASES + "WHERE p.external_id = $1", external_id)
    if row is None:
        raise NotFound("no purchase with that external_id")
    await members.get_member(row["member"], principal)
    return _purchase_schema(row, rules, "replayed")


# --- returns ------------------------------------------------------------------------------


async def post_return(
    external_id: str, data: schemas.ReturnIn, principal: Principal
) -> schemas.Return:
    """Reverse the points of returned lines (pending first); what was spent becomes debt."""
    request_hash = body_hash(data)
    async with db.transaction() as conn:
        purchase = await conn.fetchrow(
            "SELECT id, member FROM purchases WHERE external_id = $1", external_id
        )
        if purchase is None:
            raise NotFound("no purchase with that external_id")
        # Lock order: the accounts first, then the purchase (see ledger). A return of a
        # purchase that paid a referral may take that reward back from both members, so
        # both accounts are locked up front. A merge may move the purchase while we wait,
        # so follow it to the account that holds it now.
        referral_members = await referrals.rewarded_referral_members(conn, purchase["id"])
        referral_accounts = await ledger.lock_accounts(conn, sorted(referral_members))
        account = await ledger.lock_current_account(conn, purchase["member"])
        purchase = await conn.fetchrow(
            "SELECT * FROM purchases WHERE id = $1 FOR UPDATE", purchase["id"]
        )
        while purchase["member"] != account.member_id:
            account = await ledger.lock_current_account(conn, purchase["member"])
            purchase = await conn.fetchrow("SELECT * FROM purchases WHERE id = $1", purchase["id"])
        previous = await conn.fetchrow(
            "SELECT * FROM purchase_returns WHERE return_id = $1", data.return_id
        )
        if previous is not None:
            if previous["request_hash"] != request_hash or previous["purchase"] != purchase["id"]:
                raise Conflict(
                    "a different return was already posted with this return_id",
                    field="return_id",
                )
            return schemas.Return(
                return_id=data.return_id,
                external_id=external_id,
                member_id=previous["member"],
                amount=previous["amount"],
                points_reversed=previous["points"],
                debt_after=account.debt,
                status="replayed",
            )
        lines = await conn.fetch(
            "SELECT * FROM purchase_lines WHERE purchase = $1 ORDER BY line_no FOR UPDATE",
            purchase["id"],
        )
        returned = _returned_quantities(lines, data)
        amount, reversed_total = Decimal(0), 0
        updates = []
        for line in lines:
            quantity = returned.get(line["line_no"], 0)
            if not quantity:
                continue
            new_returned = line["returned_quantity"] + quantity
            # Cumulative, so partial returns add up to exactly the line's points.
            reversed_so_far = line["points"] * new_returned // line["quantity"]
            reversal = reversed_so_far - line["reversed_points"]
            amount += quantity * line["unit_price"]
            reversed_total += reversal
            updates.append((line["id"], new_returned, reversed_so_far))
        await conn.execute(
            """
            UPDATE purchase_lines SET returned_quantity = v.q, reversed_points = v.p
            FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS v(id, q, p)
            WHERE purchase_lines.id = v.id
            """,
            [u[0] for u in updates],
            [u[1] for u in updates],
            [u[2] for u in updates],
        )
        await conn.execute(
            """
            UPDATE purchases SET returned_amount = returned_amount + $2,
                                 reversed_points = reversed_points + $3
            WHERE id = $1
            """,
            purchase["id"],
            amount,
            reversed_total,
        )
        own_entry = await conn.fetchval(
            "SELECT id FROM points_ledger WHERE idempotency_key = $1", f"purchase:{external_id}"
        )
        points_taken = await _points_to_take_back(
            conn, account, purchase["id"], own_entry, purchase["reversed_points"] + reversed_total
        )
        try:
            await conn.execute(
                """
                INSERT INTO purchase_returns (id, return_id, purchase, member, lines, amount,
                    points, request_hash, created_at)
                VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, now())
                """,
                uuid4(),
                data.return_id,
                purchase["id"],
                account.member_id,
                msgspec.json.encode(returned).decode(),
                amount,
                points_taken,
                request_hash,
            )
        except asyncpg.UniqueViolationError as exc:
            # The return_id was checked under this purchase's account lock only: a return of
            # another member's purchase took it meanwhile.
            raise Conflict(
                "a different return was already posted with this return_id", field="return_id"
            ) from exc
        if points_taken > 0:
            reversal = ledger.NewEntry(
                account.member_id,
                -points_taken,
                kind="reversal",
                cause_type="return",
                cause_id=data.return_id,
                key=f"return:{data.return_id}",
                occurred_at=now(),
                actor=principal.label,
                note=data.reason or None,
            )
            await ledger.insert_entries(conn, [reversal])
            await ledger.consume(
                conn,
                account,
                points_taken,
                order=ledger.OWN_LOT_THEN_PENDING,
                own_entry=own_entry,
            )
            await ledger.save_account(conn, account)
            if await webhooks.subscribed("points.reversed"):
                await events.record(
                    conn,
                    "points.reversed",
                    {
                        "points": points_taken,
                        "return_id": data.return_id,
                        "external_id": external_id,
                    },
                    account.member_id,
                )
        if purchase["returned_amount"] + amount >= purchase["total"]:
            referral_accounts[account.member_id] = account
            await referrals.after_full_return(
                conn, purchase["id"], referral_accounts, principal.label
            )
    return schemas.Return(
        return_id=data.return_id,
        external_id=external_id,
        member_id=account.member_id,
        amount=amount,
        points_reversed=points_taken,
        debt_after=account.debt,
        status="created",
    )


async def _points_to_take_back(
    conn: asyncpg.Connection,
    account: ledger.Account,
    purchase_id: UUID,
    own_entry: UUID | None,
    lines_reversed: int,
) -> int:
    """What a return takes from the account: the returned lines' points (`lines_reversed`,
    all returns of the purchase so far) less those of its points that expired, which left
    the account already, less what earlier returns took. Spent points are taken (they become
    debt); expired ones are not taken twice, so a purchase returned in full nets to zero."""
    row = await conn.fetchrow(
        """
        SELECT
            (SELECT coalesce(-sum(e.points), 0)::bigint FROM points_lots l
             JOIN points_ledger e ON e.idempotency_key = 'expiry:' || l.id::text
             WHERE l.member = $1 AND l.entry = $2) AS expired,
            (SELECT coalesce(sum(points), 0)::bigint FROM purchase_returns WHERE purchase = $3)
                AS taken
        """,
        account.member_id,  # the lot's holder (a merge moves lots): its index finds the lot
        own_entry,
        purchase_id,
    )
    return max(0, lines_reversed - row["expired"] - row["taken"])


def _returned_quantities(lines: list, data: schemas.ReturnIn) -> dict[int, int]:
    """Map each returned line (by line_no or a SKU unique in the purchase) to its quantity."""
    by_no = {line["line_no"]: line for line in lines}
    by_sku: dict[str, list] = {}
    for line in lines:
        by_sku.setdefault(line["sku"], []).append(line)
    wanted: dict[int, int] = {}
    for i, item in enumerate(data.lines):
        field = f"lines[{i}]"
        if item.line_no is not None:
            line = by_no.get(item.line_no)
            if line is None:
                raise InvalidInput("the purchase has no such line", field=f"{field}.line_no")
        elif item.sku is not None:
            matches = by_sku.get(item.sku, [])
            if not matches:
                raise InvalidInput("the purchase has no line with this SKU", field=f"{field}.sku")
            if len(matches) > 1:
                raise InvalidInput(
                    "this SKU is on several lines; name the line_no", field=f"{field}.sku"
                )
            line = matches[0]
        else:
            raise InvalidInput("name the line by line_no or sku", field=f"{field}.line_no")
        wanted[line["line_no"]] = wanted.get(line["line_no"], 0) + item.quantity
        left = line["quantity"] - line["returned_quantity"]
        if wanted[line["line_no"]] > left:
            raise InvalidInput(
                f"returns more than was bought: {left} of line {line['line_no']} can still be"
                " returned",
                field=f"{field}.quantity",
            )
    return wanted
