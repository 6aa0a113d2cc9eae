"""New members from an import chunk, set-based: the archives, then what every other domain
gives a new member (as `loyalty.workflows.enrolment` does for one), and opening points."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from loyalty.imports.rows import Row
from loyalty.infrastructure import clock
from loyalty.infrastructure.clock import now
from loyalty.members.service import new_member_number
from loyalty.points import ledger
from loyalty.referrals.service import issue_code

# The chunk's members created in this run (survivors that matched nobody).
NEW = "FROM import_member_staging s WHERE s.import_id = $1 AND s.member_id = s.new_id"


@dataclass
class Run:
    import_id: UUID
    label: str  # "import:<id>": registered_by and actor of everything it writes
    file_name: str
    lowest_tier: str
    expiry_months: int
    chunk_no: int = 0


async def create_members(conn: asyncpg.Connection, run: Run) -> int:
    """Everything enrolment gives a member, for every unmatched survivor at once: the
    archive with a member number, a points account, the lowest tier, a referral code, the
    first assignment when a rep is named, and the change record. Members created."""
    await _insert_archives(conn, run)
    new_ids = [r["new_id"] for r in await conn.fetch(f"SELECT s.new_id {NEW}", run.import_id)]
    if not new_ids:
        return 0
    await ledger.open_accounts(conn, new_ids)
    await _enter_lowest_tier(conn, run)
    await _issue_codes(conn, run, new_ids)
    await _first_assignments(conn, run)
    await _record_creations(conn, run)
    return len(new_ids)


async def _insert_archives(conn: asyncpg.Connection, run: Run) -> None:
    """The `members` rows of the staged survivors no member matched, each with its number."""
    for _attempt in range(20):
        inserted = await conn.fetch(
            """
            INSERT INTO members (id, number, kind, status, name, phone, email, gender, birthday,
                address, household, hobbies, consumption_preferences, notes, tags, organisation,
                contact_preferences, registered_at, registration_channel, registered_by,
                registered_by_staff, assigned_rep, merged_into, updated_at)
            SELECT new_id, number, kind, 'active', name, phone, email, gender, birthday,
                address, NULL, '{}', '{}', notes, tags, NULL, '{}', registered_at, 'import', $2,
                NULL, rep, NULL, now()
            FROM import_member_staging WHERE import_id = $1 AND member_id IS NULL
            ORDER BY grp
            ON CONFLICT (number) DO NOTHING
            RETURNING id
            """,
            run.import_id,
            run.label,
        )
        if inserted:
            await conn.execute(
                "UPDATE import_member_staging SET member_id = new_id "
                "WHERE import_id = $1 AND new_id = ANY($2::uuid[])",
                run.import_id,
                [r["id"] for r in inserted],
            )
        waiting = await conn.fetch(
            "SELECT grp FROM import_member_staging WHERE import_id = $1 AND member_id IS NULL",
            run.import_id,
        )
        if not waiting:
            return
        # Member numbers taken meanwhile (about 1 in 1,000 at a million members): new ones.
        await conn.execute(
            """
            UPDATE import_member_staging s SET number = v.number
            FROM unnest($2::int[], $3::text[]) AS v(grp, number)
            WHERE s.import_id = $1 AND s.grp = v.grp
            """,
            run.import_id,
            [w["grp"] for w in waiting],
            [new_member_number() for _ in waiting],
        )
    raise RuntimeError("could not find free member numbers")


async def _enter_lowest_tier(conn: asyncpg.Connection, run: Run) -> None:
    await conn.execute(
        f"""
        INSERT INTO member_tiers (id, member, tier, since)
        SELECT gen_random_uuid(), s.new_id, $2, now() {NEW}
        """,
        run.import_id,
        run.lowest_tier,
    )
    await conn.execute(
        f"""
        INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor, at)
        SELECT gen_random_uuid(), s.new_id, NULL, $2, 'initial', '', 'system', now() {NEW}
        """,
        run.import_id,
        run.lowest_tier,
    )


async def _issue_codes(conn: asyncpg.Connection, run: Run, new_ids: list[UUID]) -> None:
    """The codes drawn when the chunk was staged; one taken meanwhile (rare) is drawn again."""
    coded = await conn.fetch(
        f"""
        INSERT INTO referral_codes (member, code, created_at)
        SELECT s.new_id, s.code, now() {NEW}
        ON CONFLICT DO NOTHING RETURNING member
        """,
        run.import_id,
    )
    if len(coded) < len(new_ids):
        have = {r["member"] for r in coded}
        for member_id in new_ids:
            if member_id not in have:
                await issue_code(conn, member_id)


async def _first_assignments(conn: asyncpg.Connection, run: Run) -> None:
    await conn.execute(
        f"""
        INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, started_at)
        SELECT gen_random_uuid(), s.new_id, s.rep, 'import', 'named as the owner in an import',
               $2, now() {NEW} AND s.rep IS NOT NULL
        """,
        run.import_id,
        run.label,
    )


async def _record_creations(conn: asyncpg.Connection, run: Run) -> None:
    """The change record of each: every field given, from nothing, and the row it came from."""
    await conn.execute(
        f"""
        INSERT INTO member_changes (id, member, action, actor, actor_staff, changes, at)
        SELECT gen_random_uuid(), s.new_id, 'create', $2, NULL,
            (SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('old', NULL, 'new', v)),
                             '{{}}'::jsonb)
             FROM jsonb_each(jsonb_strip_nulls(jsonb_build_object(
                'name', s.name, 'kind', s.kind, 'phone', s.phone, 'email', s.email,
                'gender', s.gender, 'birthday', s.birthday, 'address', s.address,
                'notes', nullif(s.notes, ''), 'tags', nullif(s.tags, '{{}}'),
                'assigned_rep', s.rep, 'import', $3 || ' row ' || s.row_no))) AS e(k, v)),
            now()
        {NEW}
        """,
        run.import_id,
        run.label,
        run.file_name,
    )


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
