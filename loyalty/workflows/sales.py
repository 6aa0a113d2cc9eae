"""Posting a sale: points earned exactly once, set-based, with the tier upgrade, referral
qualification and bonus points it brings.

A single purchase and a nightly batch of a thousand take the same path: check each, then
in one transaction per chunk resolve members, lock their accounts (in member-id order), and
write purchases, lines, ledger entries, lots, account buckets and tier upgrades in one
statement (loyalty.workflows.sale_posting).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import weakref
from uuid import UUID

import asyncpg
import msgspec

from loyalty.auth import Principal
from loyalty.errors import DomainError, ServiceUnavailable, field_in_message
from loyalty.infrastructure import db
from loyalty.points import purchases, schemas
from loyalty.points.service import get_rules
from loyalty.tiers import ladder as tier_ladder
from loyalty.workflows.sale_posting import Outcome, Raced, Sale, post_fresh

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
ATTEMPTS = 3
# Postings of up to this many purchases use plans made once per connection (index lookups
# and nested loops, right for a few rows); bigger ones are planned for their size.
GENERIC_PLAN_ITEMS = 64
# Each sale's member, read without locks.
_FOUND_MEMBERS = purchases.FOUND + "SELECT i, member FROM found"


async def post_purchases(
    data: list[schemas.PurchaseCreate],
    principal: Principal,
    *,
    look_first: bool | None = None,
    chain: db.TransactionChain | None = None,
) -> list[Outcome]:
    """Post purchases, each exactly once; the answer holds a result or a problem per item.

    `look_first`: look for earlier posts of these external_ids before inserting (a batch
    does by default: a re-upload is common). Without the look the insert finds them, and
    the posting starts over with it.

    `chain`: post in the chain's open transaction (begun if need be) and leave it to the
    caller to commit; starting over rolls it back and begins another."""
    outcomes: dict[int, Outcome] = {}
    sales = await _checked(data, outcomes)
    rules = await get_rules()
    current = await tier_ladder.ladder()
    look = len(data) > 1 if look_first is None else look_first
    big = len(sales) > BATCH_CHUNK
    for chunk in _in_member_order_chunks(sales, await _members_of(sales) if big else {}):
        for attempt in range(ATTEMPTS):
            if chain is not None:
                await chain.begin()
            try:
                posted = await _post_chunk(
                    chunk, principal, rules, current, look_first=look or attempt > 0
                )
                break
            except Raced:
                if chain is not None:
                    await chain.rollback()
        else:
            raise ServiceUnavailable(
                "these purchases kept colliding with concurrent changes; retry"
            )
        outcomes.update(posted)
    return [outcomes[index] for index in range(len(data))]


async def _checked(data: list[schemas.PurchaseCreate], outcomes: dict[int, Outcome]) -> list[Sale]:
    """The purchases that pass their checks, normalised; the others' problems go in
    `outcomes`."""
    sales = []
    for index, purchase in enumerate(data):
        if index % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            purchases.validate_purchase(purchase)
            sales.append(Sale(index, purchases.normalised(purchase)))
        except DomainError as exc:
            outcomes[index] = exc
    return sales


async def _members_of(sales: list[Sale]) -> dict[int, UUID]:
    """Each sale's member by its index, read without locks: to order a big posting."""
    keys: list[purchases.MemberKey] = []
    for sale in sales:
        try:
            keys.append(purchases.member_key(sale.data))
        except DomainError:
            keys.append(("none", ""))
    async with db.connection() as conn:
        rows = await conn.fetch(_FOUND_MEMBERS, *purchases.key_args(keys))
    return {sales[row["i"] - 1].index: row["member"] for row in rows}


def _in_member_order_chunks(sales: list[Sale], members_of: dict[int, UUID]) -> list[list[Sale]]:
    """A big posting in transactions of about `BATCH_CHUNK` purchases, each a run of the
    member order (`members_of`: each sale's member, however it was named), so each
    transaction holds its members' locks only while its own part is written. A member's
    purchases stay in one transaction, in their order (the first qualifies a referral); so
    the runs can be taken starting at any one of them, and are, at random: batches posted at
    the same time then mostly work on different members instead of queueing for the same
    ones."""
    if len(sales) <= BATCH_CHUNK:
        return [sales]
    # Copies of one external_id go with the first copy's member, in posting order, so the
    # first copy is the one posted and the others are its replays (or 409s) as before.
    member_of: dict[str, UUID | None] = {}
    for sale in sales:
        member_of.setdefault(sale.data.external_id, members_of.get(sale.index))
    by_id = sorted(  # stable: a member's purchases keep their order
        (sale for sale in sales if member_of[sale.data.external_id] is not None),
        key=lambda sale: str(member_of[sale.data.external_id]),
    )
    runs: list[list[Sale]] = []
    for sale in by_id:
        member = member_of[sale.data.external_id]
        if not runs or (
            len(runs[-1]) >= BATCH_CHUNK and member != member_of[runs[-1][-1].data.external_id]
        ):
            runs.append([])
        runs[-1].append(sale)
    start = random.randrange(len(runs)) if runs else 0
    # Purchases naming no member that exists go last, in posting order (they fail).
    others = [sale for sale in sales if member_of[sale.data.external_id] is None]
    return (
        runs[start:]
        + runs[:start]
        + [others[i : i + BATCH_CHUNK] for i in range(0, len(others), BATCH_CHUNK)]
    )


async def _post_chunk(
    sales: list[Sale],
    principal: Principal,
    rules: schemas.EarningRules,
    ladder: tier_ladder.Ladder,
    *,
    look_first: bool,
) -> dict[int, Outcome]:
    """Post these sales in one transaction (the caller's, if one is open): each sale's
    outcome by its index. Raises `Raced` when the caller must roll back and start over."""
    outcomes: dict[int, Outcome] = {}
    if not sales:
        return outcomes
    # A repeated external_id inside one posting is a replay of its first occurrence.
    first: dict[str, Sale] = {}
    repeats: list[Sale] = []
    for sale in sales:
        if sale.data.external_id in first:
            repeats.append(sale)
        else:
            first[sale.data.external_id] = sale
    # A few purchases are planned once per connection; a batch's plans fit its size.
    plans = "generic" if len(sales) <= GENERIC_PLAN_ITEMS else "custom"
    async with db.transaction(plans=plans) as conn:
        fresh = list(first.values())
        if look_first and fresh:
            fresh = await _not_posted_before(conn, fresh, rules, outcomes)
        if fresh:
            await post_fresh(conn, fresh, principal, rules, ladder, outcomes)
    for sale in repeats:
        outcomes[sale.index] = _repeated(sale, first[sale.data.external_id], outcomes)
    return outcomes


async def _not_posted_before(
    conn: asyncpg.Connection,
    sales: list[Sale],
    rules: schemas.EarningRules,
    outcomes: dict[int, Outcome],
) -> list[Sale]:
    """The sales not posted before; the others are answered as replays (or conflicts)."""
    existing = await purchases.stored_purchases(conn, [s.data.external_id for s in sales])
    fresh = []
    for sale in sales:
        row = existing.get(sale.data.external_id)
        if row is None:
            fresh.append(sale)
        else:
            outcomes[sale.index] = purchases.replay(row, sale.request_hash, rules)
    return fresh


def _repeated(sale: Sale, original: Sale, outcomes: dict[int, Outcome]) -> Outcome:
    outcome = outcomes[original.index]
    if isinstance(outcome, DomainError):
        return outcome
    if original.request_hash != sale.request_hash:
        return purchases.same_id_conflict()
    return msgspec.structs.replace(outcome, status="replayed")


async def post_purchase(data: schemas.PurchaseCreate, principal: Principal) -> schemas.Purchase:
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
        self.waiting: dict[Principal, list[tuple[schemas.PurchaseCreate, asyncio.Future]]] = {}
        self.drains: set[asyncio.Task] = set()

    async def post(
        self, data: schemas.PurchaseCreate, principal: Principal
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

        def take() -> list[tuple[schemas.PurchaseCreate, asyncio.Future]]:
            group = queue[:GROUP_COMMIT_LIMIT]
            del queue[:GROUP_COMMIT_LIMIT]
            return group

        group: list[tuple[schemas.PurchaseCreate, asyncio.Future]] = []
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


async def post_batch(
    data: schemas.PurchaseBatchCreate, principal: Principal
) -> schemas.BatchResult:
    """Up to 1,000 purchases, each applied on its own terms: a bad one is reported and the
    others still land."""
    decoded: list[schemas.PurchaseCreate] = []
    positions: list[int] = []
    items: list[schemas.BatchItem | None] = [None] * len(data.purchases)
    for index, raw in enumerate(data.purchases):
        if index % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            decoded.append(msgspec.convert(raw, type=schemas.PurchaseCreate))
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
