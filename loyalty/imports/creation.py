"""New members from an import chunk, set-based: the archives, then what every other domain
gives a new member (as `loyalty.workflows.enrolment` does for one), and opening points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.imports.rows import Row
from loyalty.infrastructure import clock
from loyalty.infrastructure.clock import now
from loyalty.members import creation as archives
from loyalty.points import ledger
from loyalty.referrals import codes as referral_codes
from loyalty.reps import assignments as reps
from loyalty.tiers import changes as tiers


@dataclass
class Run:
    import_id: UUID
    label: str  # "import:<id>": registered_by and actor of everything it writes
    file_name: str
    expiry_months: int
    chunk_no: int = 0


async def create_members(conn: asyncpg.Connection, run: Run, survivors: list[Row]) -> int:
    """Everything enrolment gives a member, for every unmatched survivor at once, through
    the same set-based functions: the archive with a member number and its change record, a
    points account, the lowest tier, a referral code, and the first assignment when a rep is
    named. Members created."""
    staged = await conn.fetch(
        "SELECT grp, new_id, number FROM import_member_staging"
        " WHERE import_id = $1 AND member_id IS NULL ORDER BY grp",
        run.import_id,
    )
    if not staged:
        return 0
    new = [
        (s["grp"], archives.NewMember(_archive(survivors[s["grp"]]), s["new_id"], s["number"]))
        for s in staged
    ]
    created = [member for _, member in new]
    await archives.insert_members(conn, created, channel="import", registered_by=run.label)
    await conn.execute(
        """
        UPDATE import_member_staging s SET member_id = v.id, number = v.number
        FROM unnest($2::int[], $3::uuid[], $4::text[]) AS v(grp, id, number)
        WHERE s.import_id = $1 AND s.grp = v.grp
        """,
        run.import_id,
        [g for g, _ in new],
        [member.id for member in created],
        [member.number for member in created],
    )
    new_ids = [member.id for member in created]
    await ledger.open_accounts(conn, new_ids)
    await tiers.enrol(conn, new_ids)
    await referral_codes.issue_codes(conn, new_ids)
    await reps.first_assignments(
        conn,
        [(m.id, m.values["assigned_rep"]) for m in created if m.values["assigned_rep"]],
        kind="import",
        by=run.label,
    )
    await archives.record_creations(
        conn,
        [(member.id, _created_fields(survivors[g], run)) for g, member in new],
        actor=run.label,
    )
    return len(new_ids)


def _archive(row: Row) -> dict[str, Any]:
    """What an import row gives a new archive (registered now when the file does not say)."""
    archive = {
        "kind": row.kind,
        "name": row.name,
        "phone": row.phone,
        "email": row.email,
        "gender": row.gender,
        "birthday": row.birthday,
        "address": row.address or None,
        "notes": row.notes,
        "tags": row.tags,
        "registered_at": row.registered_at,
        "assigned_rep": row.rep,
    }
    if row.registered_at is None:
        del archive["registered_at"]
    return archive


def _created_fields(row: Row, run: Run) -> dict[str, Any]:
    """The fields a new member's change record lists (those given), and the row it came from."""
    return {
        "name": row.name,
        "kind": row.kind,
        "phone": row.phone,
        "email": row.email,
        "gender": row.gender,
        "birthday": row.birthday,
        "address": row.address or None,
        "notes": row.notes,
        "tags": row.tags,
        "assigned_rep": row.rep,
        "import": f"{run.file_name} row {row.row_no}",
    }


async def opening_points(
    conn: asyncpg.Connection,
    run: Run,
    fresh: list[Row],
    group_of: dict[str, int],
    member_of: dict[int, UUID],
) -> int:
    """One adjustment entry and one released lot per row with opening points, on the
    member the row landed on; debt (existing members) is repaid first, as for any earning."""
    with_points = [row for row in fresh if row.points > 0]
    if not with_points:
        return 0
    at = now()
    accounts = await ledger.lock_accounts(
        conn, sorted({member_of[group_of[row.key]] for row in with_points})
    )
    entries, lots = [], []
    for row in with_points:
        account = accounts[member_of[group_of[row.key]]]
        entry = ledger.NewEntry(
            member=account.member_id,
            points=row.points,
            kind="adjustment",
            cause_type="import",
            cause_id=str(run.import_id),
            key=f"import:{row.key}"[:200],
            occurred_at=min(row.points_at or row.registered_at or at, at),
            actor=run.label,
            note=f"opening balance: {run.file_name} row {row.row_no}"[:500],
        )
        lot = ledger.plan_earn(account, entry, now=at, pending_days=0, expiry_months=0)
        # A carried-over balance gets a full expiry period from the day it is imported.
        lot.expires_at = clock.add_months(at, run.expiry_months)
        lot.available_at = entry.occurred_at
        entries.append(entry)
        lots.append(lot)
    await ledger.insert_earnings(conn, entries, lots)
    await ledger.save_accounts(conn, list(accounts.values()))
    return len(entries)
