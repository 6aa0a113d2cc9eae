"""The points ledger core: postings on a locked account, inside the caller's transaction.

Invariants (the database enforces 1-4, see migrations/points; this module keeps 5-6):
1. Entries are append-only; corrections are new entries.
2. An account's `total` is the sum of its member's entries (a trigger adds every entry).
3. available + pending - debt = total, all three non-negative, checked at commit.
4. An idempotency key posts once.
5. available = the released lots' remaining points; pending = the unreleased lots'.
6. Debt and open lots never coexist: earning repays debt first, and spending takes every
   lot before it leaves debt.

Lock order, everywhere: points accounts first (several in member-id order), then lots.

This module is the only writer of `points_ledger`, `points_lots` and `points_accounts`:
every other module posts, releases, expires or moves points through its functions.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from loyalty.points.entries import Account, NewEntry, NewLot, plan_earn

# Who consumes which lots first.
OWN_LOT_THEN_PENDING = "reversal"  # a return: its own purchase's lot, then pending, then available
AVAILABLE_ONLY = "redemption"  # spending: only available points, soonest expiry first
AVAILABLE_THEN_PENDING = "deduction"  # manual deduction: available, then pending, then debt


async def lock_account(conn: asyncpg.Connection, member_id: UUID) -> Account:
    row = await conn.fetchrow(
        """
        SELECT id, member, available, pending, debt, lifetime_earned FROM points_accounts
        WHERE member = $1 FOR UPDATE
        """,
        member_id,
    )
    if row is None:
        raise LookupError(f"member {member_id} has no points account")
    # A separate statement on purpose: it reads the member as committed now. Joined into the
    # locking query, a merge that committed while we waited for the lock would stay unseen.
    member = await conn.fetchrow(
        "SELECT assigned_rep, merged_into FROM members WHERE id = $1", member_id
    )
    return Account(*row, member["assigned_rep"], member["merged_into"])


async def lock_current_account(conn: asyncpg.Connection, member_id: UUID) -> Account:
    """Lock the account that now holds this member's points: if a merge committed while we
    waited, that is the survivor's."""
    account = await lock_account(conn, member_id)
    while account.merged_into is not None:
        account = await lock_account(conn, account.merged_into)
    return account


async def lock_accounts(conn: asyncpg.Connection, member_ids: list[UUID]) -> dict[UUID, Account]:
    """Lock several accounts in member-id order (so two batches cannot deadlock)."""
    rows = await conn.fetch(
        """
        SELECT id, member, available, pending, debt, lifetime_earned FROM points_accounts
        WHERE member = ANY($1::uuid[]) ORDER BY member FOR UPDATE
        """,
        member_ids,
    )
    return {row["member"]: Account(*row) for row in rows}


async def save_account(conn: asyncpg.Connection, account: Account) -> None:
    await save_accounts(conn, [account])


ENTRY_ROWS = """
    SELECT e.id, e.member, e.points, e.kind, e.cause_type, e.cause_id, e.key, e.occurred_at,
           now(), e.actor, e.note
    FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::timestamptz[], $9::text[], $10::text[])
         AS e(id, member, points, kind, cause_type, cause_id, key, occurred_at, actor, note)
"""


def entry_args(entries: list[NewEntry]) -> list[list]:
    return [
        [e.id for e in entries],
        [e.member for e in entries],
        [e.points for e in entries],
        [e.kind for e in entries],
        [e.cause_type for e in entries],
        [e.cause_id for e in entries],
        [e.key for e in entries],
        [e.occurred_at for e in entries],
        [e.actor for e in entries],
        [e.note for e in entries],
    ]


async def insert_entries(conn: asyncpg.Connection, entries: list[NewEntry]) -> None:
    """One statement for any number of entries (the totals trigger then runs once)."""
    if entries:
        await conn.execute(ENTRIES_INSERT, *entry_args(entries))


def _lots_insert(first: int) -> str:
    """Insert lots from seven arrays numbered from `$first` (see `lot_args`)."""
    n = [f"${first + i}" for i in range(7)]
    return f"""
        INSERT INTO points_lots (id, member, entry, points, remaining, available_at,
            expires_at, released)
        SELECT gen_random_uuid(), l.member, l.entry, l.points, l.remaining, l.available_at,
               l.expires_at, l.released
        FROM unnest({n[0]}::uuid[], {n[1]}::uuid[], {n[2]}::bigint[], {n[3]}::bigint[],
                    {n[4]}::timestamptz[], {n[5]}::timestamptz[], {n[6]}::bool[])
             AS l(member, entry, points, remaining, available_at, expires_at, released)
    """


def lot_args(lots: list[NewLot]) -> list[list]:
    return [
        [lot.member for lot in lots],
        [lot.entry for lot in lots],
        [lot.points for lot in lots],
        [lot.remaining for lot in lots],
        [lot.available_at for lot in lots],
        [lot.expires_at for lot in lots],
        [lot.released for lot in lots],
    ]


def _accounts_update(first: int) -> str:
    """Set the buckets of accounts from five arrays numbered from `$first` (`account_args`)."""
    n = [f"${first + i}" for i in range(5)]
    return f"""
        UPDATE points_accounts a
        SET available = v.available, pending = v.pending, debt = v.debt,
            lifetime_earned = v.lifetime_earned, updated_at = now()
        FROM unnest({n[0]}::uuid[], {n[1]}::bigint[], {n[2]}::bigint[], {n[3]}::bigint[],
                    {n[4]}::bigint[])
             AS v(id, available, pending, debt, lifetime_earned)
        WHERE a.id = v.id
    """


def account_args(accounts: list[Account]) -> list[list]:
    return [
        [a.id for a in accounts],
        [a.available for a in accounts],
        [a.pending for a in accounts],
        [a.debt for a in accounts],
        [a.lifetime_earned for a in accounts],
    ]


ENTRIES_INSERT = f"""
    INSERT INTO points_ledger (id, member, points, kind, cause_type, cause_id,
        idempotency_key, occurred_at, created_at, actor, note)
    {ENTRY_ROWS}
"""


async def insert_earnings(
    conn: asyncpg.Connection, entries: list[NewEntry], lots: list[NewLot]
) -> None:
    """Earning entries and their lots in one statement (one round trip for a whole batch)."""
    if entries:
        await conn.execute(
            f"WITH entries AS ({ENTRIES_INSERT}) {_lots_insert(11)}",
            *entry_args(entries),
            *lot_args(lots),
        )


async def save_accounts(conn: asyncpg.Connection, accounts: list[Account]) -> None:
    if accounts:
        await conn.execute(_accounts_update(1), *account_args(accounts))


async def earn(
    conn: asyncpg.Connection,
    account: Account,
    entry: NewEntry,
    *,
    now: datetime,
    pending_days: int,
    expiry_months: int,
) -> None:
    """Post one positive entry and its lot; debt is repaid first."""
    lot = plan_earn(account, entry, now=now, pending_days=pending_days, expiry_months=expiry_months)
    await insert_earnings(conn, [entry], [lot])


# --- postings as part of a bigger statement ------------------------------------------------
# Posting a sale writes purchases, ledger entries, lots, accounts and tier changes in one
# round trip: these CTEs are the ledger's share of that statement, so this module stays the
# only writer of entries, lots and accounts while the statement is composed elsewhere.

POSTING_PARAMS = 22  # parameters of `POSTING_CTES`, numbered from $1


POSTING_CTES = f"""
    entries AS ({ENTRIES_INSERT}),
    lots AS ({_lots_insert(11)}),
    accounts AS ({_accounts_update(18)})
"""


def posting_args(entries: list[NewEntry], lots: list[NewLot], accounts: list[Account]) -> list:
    """The parameters of `POSTING_CTES`: the entries, their lots and the accounts they moved
    (the ledger trigger adds the entries to the accounts' totals once the statement is done)."""
    return [*entry_args(entries), *lot_args(lots), *account_args(accounts)]


async def consume(
    conn: asyncpg.Connection,
    account: Account,
    amount: int,
    *,
    order: str,
    own_entry: UUID | None = None,
) -> None:
    """Take `amount` points out of the account's lots in the given order; any rest is debt."""
    assert amount > 0
    lots = await conn.fetch(
        """
        SELECT id, remaining, released, entry, expires_at, available_at FROM points_lots
        WHERE member = $1 AND remaining > 0
        FOR UPDATE
        """,
        account.member_id,
    )
    if order == AVAILABLE_ONLY:
        lots = [lot for lot in lots if lot["released"]]

    def reversal_priority(lot: asyncpg.Record) -> tuple:
        if lot["entry"] == own_entry:
            return (0, 0.0)
        if not lot["released"]:
            return (1, -lot["available_at"].timestamp())  # newest pending first
        return (2, lot["expires_at"].timestamp())

    def spending_priority(lot: asyncpg.Record) -> tuple:
        return (0 if lot["released"] else 1, lot["expires_at"].timestamp())

    lots.sort(key=reversal_priority if order == OWN_LOT_THEN_PENDING else spending_priority)
    ids, remainders = [], []
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(left, lot["remaining"])
        left -= take
        ids.append(lot["id"])
        remainders.append(lot["remaining"] - take)
        if lot["released"]:
            account.available -= take
        else:
            account.pending -= take
    if ids:
        await conn.execute(
            """
            UPDATE points_lots SET remaining = v.remaining
            FROM unnest($1::uuid[], $2::bigint[]) AS v(id, remaining)
            WHERE points_lots.id = v.id
            """,
            ids,
            remainders,
        )
    if left:
        if order == AVAILABLE_ONLY:
            raise ValueError("spending past the available points")  # callers check first
        account.debt += left


async def expiring_within(conn: asyncpg.Connection, member_id: UUID) -> tuple[int, int, int]:
    row = await conn.fetchrow(
        """
        SELECT
            coalesce(sum(remaining) FILTER (WHERE expires_at <= now() + interval '30 days'), 0),
            coalesce(sum(remaining) FILTER (WHERE expires_at <= now() + interval '60 days'), 0),
            coalesce(sum(remaining) FILTER (WHERE expires_at <= now() + interval '90 days'), 0)
        FROM points_lots WHERE member = $1 AND remaining > 0
        """,
        member_id,
    )
    return int(row[0]), int(row[1]), int(row[2])


# --- opening, releasing, expiring and moving (set-based) -----------------------------------
# Kept apart from the postings above: these run over many members at once, in batches.


async def open_accounts(conn: asyncpg.Connection, member_ids: list[UUID]) -> None:
    """One empty account for each new member (every member has exactly one)."""
    await conn.execute(
        """
        INSERT INTO points_accounts (id, member, available, pending, debt, lifetime_earned,
            total, closed, updated_at)
        SELECT gen_random_uuid(), m, 0, 0, 0, 0, 0, false, now()
        FROM unnest($1::uuid[]) AS m
        """,
        member_ids,
    )


async def members_with_lots_due(
    conn: asyncpg.Connection, at: datetime, limit: int, *, expiry: bool
) -> list[UUID]:
    """Members with lots to release (or, with `expiry`, to expire) at `at`: one batch."""
    due = "expires_at <= $1" if expiry else "NOT released AND available_at <= $1"
    rows = await conn.fetch(
        f"SELECT DISTINCT member FROM points_lots WHERE remaining > 0 AND {due} LIMIT $2",
        at,
        limit,
    )
    return [row["member"] for row in rows]


async def release_lots(conn: asyncpg.Connection, member_ids: list[UUID], at: datetime) -> int:
    """Release these (locked) members' lots whose return window has passed; points released."""
    moved = await conn.fetch(
        """
        WITH due AS (
            UPDATE points_lots SET released = true
            WHERE member = ANY($1::uuid[]) AND NOT released AND available_at <= $2
            RETURNING member, remaining
        ), per_member AS (
            SELECT member, sum(remaining) AS points FROM due GROUP BY member
        )
        UPDATE points_accounts a
        SET pending = a.pending - p.points, available = a.available + p.points,
            updated_at = now()
        FROM per_member p WHERE a.member = p.member
        RETURNING p.points
        """,
        member_ids,
        at,
    )
    return sum(row["points"] for row in moved)


async def expire_lots(conn: asyncpg.Connection, member_ids: list[UUID], at: datetime) -> int:
    """Expire what is left of these (locked) members' lots past their expiry, each lot under
    its own ledger key; points expired."""
    due = await conn.fetch(
        """
        SELECT id, member, remaining, released, expires_at FROM points_lots
        WHERE member = ANY($1::uuid[]) AND remaining > 0 AND expires_at <= $2
        FOR UPDATE
        """,
        member_ids,
        at,
    )
    # Separate statements: the ledger trigger updates the accounts too, and one
    # statement may not touch the same row twice.
    await conn.execute(
        """
        INSERT INTO points_ledger (id, member, points, kind, cause_type, cause_id,
            idempotency_key, occurred_at, created_at, actor)
        SELECT gen_random_uuid(), d.member, -d.remaining, 'expiry', 'lot', d.id::text,
               'expiry:' || d.id::text, d.expires_at, now(), 'system'
        FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[])
             AS d(id, member, remaining, expires_at)
        """,
        [lot["id"] for lot in due],
        [lot["member"] for lot in due],
        [lot["remaining"] for lot in due],
        [lot["expires_at"] for lot in due],
    )
    await conn.execute(
        "UPDATE points_lots SET remaining = 0 WHERE id = ANY($1::uuid[])",
        [lot["id"] for lot in due],
    )
    from_available: dict[UUID, int] = {}
    from_pending: dict[UUID, int] = {}
    for lot in due:
        bucket = from_available if lot["released"] else from_pending
        bucket[lot["member"]] = bucket.get(lot["member"], 0) + lot["remaining"]
    await conn.execute(
        """
        UPDATE points_accounts a
        SET available = a.available - v.from_available,
            pending = a.pending - v.from_pending, updated_at = now()
        FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])
             AS v(member, from_available, from_pending)
        WHERE a.member = v.member
        """,
        member_ids,
        [from_available.get(m, 0) for m in member_ids],
        [from_pending.get(m, 0) for m in member_ids],
    )
    return sum(lot["remaining"] for lot in due)


async def move_account(
    conn: asyncpg.Connection, duplicate_id: UUID, survivor_id: UUID, *, at: datetime, actor: str
) -> int:
    """Move a merged duplicate's points and lots to the survivor and close its account. The
    move is a transfer pair, so both balances still equal the sums of their entries and the
    duplicate's history stays readable. Points moved."""
    accounts = await lock_accounts(conn, [duplicate_id, survivor_id])
    duplicate, survivor = accounts[duplicate_id], accounts[survivor_id]
    moved = duplicate.total
    if moved:
        note = f"member {duplicate_id} merged into {survivor_id}"
        await insert_entries(
            conn,
            [
                NewEntry(
                    member,
                    points,
                    kind="transfer",
                    cause_type="merge",
                    cause_id=str(duplicate_id),
                    key=f"merge:{duplicate_id}:{direction}",
                    occurred_at=at,
                    actor=actor,
                    note=note,
                )
                for member, points, direction in (
                    (duplicate_id, -moved, "out"),
                    (survivor_id, moved, "in"),
                )
            ],
        )
    await conn.execute(
        "UPDATE points_lots SET member = $2 WHERE member = $1", duplicate_id, survivor_id
    )
    survivor.available += duplicate.available
    survivor.pending += duplicate.pending
    survivor.debt += duplicate.debt
    survivor.lifetime_earned += duplicate.lifetime_earned
    duplicate.available = duplicate.pending = duplicate.debt = 0
    await conn.execute("UPDATE points_accounts SET closed = true WHERE id = $1", duplicate.id)
    if survivor.debt:
        # Debt and open lots never coexist: the merged lots repay the debt now.
        debt, survivor.debt = survivor.debt, 0
        await consume(conn, survivor, debt, order=AVAILABLE_THEN_PENDING)
    await save_accounts(conn, [duplicate, survivor])
    return moved
