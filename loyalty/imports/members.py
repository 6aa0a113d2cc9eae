"""Running a members import: the file read row by row, and each chunk merged in one
transaction (errors, new members, merges, opening points, row identities)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.errors import InvalidInput
from loyalty.imports import creation, duplicates, matching
from loyalty.imports import rows as readers
from loyalty.imports.creation import Run
from loyalty.imports.records import Progress, report
from loyalty.imports.rows import Problem, Row
from loyalty.infrastructure import db
from loyalty.points.service import get_rules

CHUNK_ROWS = 5_000
LOCK_KEY = 0x1A0B7  # serialises chunk merges of concurrent imports (transaction-scoped)


async def _reps() -> tuple[dict[str, readers.Rep], set[str]]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, username, role, department, active FROM staff")
    reps: dict[str, readers.Rep] = {}
    for row in rows:
        rep = readers.Rep(row["id"], row["username"], row["department"], row["active"], row["role"])
        reps[row["username"].lower()] = rep
        reps[str(row["id"])] = rep
    return reps, {row["department"] for row in rows if row["department"]}


async def run_members(imp: Any, *, chunk_rows: int, progress: Progress | None) -> None:
    """Read the file a chunk at a time and merge each chunk."""
    rules = await get_rules()
    run = Run(
        import_id=imp["id"],
        label=f"import:{imp['id']}",
        file_name=imp["file_name"],
        expiry_months=rules.expiry_months,
    )
    reps, departments = await _reps()
    counter = readers.ByteCounter()
    with Path(imp["file_path"]).open("rb") as stream:  # noqa: ASYNC230  read line by line
        records = readers.records(stream, counter)
        first = next(records, None)
        if first is None:
            raise InvalidInput("the file is empty", field="file")
        mapping, problems = readers.map_header(first[1])
        if "name" not in mapping:
            raise InvalidInput('the header has no "name" column', field="file")
        reader = readers.RowReader(mapping, reps, departments)
        good: list[Row] = []
        read = 0
        for line, record in records:
            read += 1
            parsed = reader.parse(record, line)
            if isinstance(parsed, list):
                problems.extend(parsed)
            else:
                good.append(parsed)
            if len(good) + len(problems) >= chunk_rows:
                await merge_chunk(run, good, problems, read, counter.done)
                good, problems = [], []
                await report(progress, run.import_id)
        await merge_chunk(run, good, problems, read, counter.done)
        await report(progress, run.import_id)


async def merge_chunk(
    run: Run, good: list[Row], problems: list[Problem], rows_read: int, bytes_done: int
) -> None:
    """One chunk in one transaction: errors, new members, merges, points, row identities."""
    run.chunk_no += 1
    for attempt in range(3):
        try:
            async with db.transaction() as conn:
                await _merge(conn, run, good, problems, rows_read, bytes_done)
            return
        except asyncpg.UniqueViolationError:  # a member enrolled meanwhile: look again
            if attempt == 2:
                raise


@dataclass
class _Chunk:
    """A chunk's rows not merged before, in groups of duplicates, and what became of them."""

    fresh: list[Row]
    skipped: int
    groups: list[list[Row]]
    survivors: list[Row] = field(default_factory=list)
    conflicts: matching.Conflicts = field(default_factory=list)
    member_of: dict[int, UUID] = field(default_factory=dict)
    number_of: dict[int, str] = field(default_factory=dict)

    def group_of(self) -> dict[str, int]:
        return {row.key: g for g, group in enumerate(self.groups) for row in group}


async def _merge(
    conn: asyncpg.Connection,
    run: Run,
    good: list[Row],
    problems: list[Problem],
    rows_read: int,
    bytes_done: int,
) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    errors = await _record_errors(conn, run, problems)
    chunk = await _new_rows(conn, run, good)
    created = 0
    if chunk.survivors:
        created = await matching.stage_and_merge(
            conn, run, chunk.survivors, chunk.member_of, chunk.number_of, chunk.conflicts
        )
    written = await _record_conflicts(conn, run, chunk)
    group_of = chunk.group_of()
    entries = await creation.opening_points(conn, run, chunk.fresh, group_of, chunk.member_of)
    await _record_rows(conn, run, chunk, group_of)
    await conn.execute(
        """
        UPDATE imports SET created = created + $2, merged = merged + $3, skipped = skipped + $4,
            errors = errors + $5, conflicts = conflicts + $6, points_entries = points_entries + $7,
            rows_read = greatest(rows_read, $8), bytes_done = greatest(bytes_done, $9)
        WHERE id = $1
        """,
        run.import_id,
        created,
        len(chunk.fresh) - created,
        chunk.skipped,
        errors,
        written,
        entries,
        rows_read,
        bytes_done,
    )


async def _record_errors(conn: asyncpg.Connection, run: Run, problems: list[Problem]) -> int:
    """The chunk's problems, each once (a resumed chunk finds some already there)."""
    written = await conn.fetch(
        """
        INSERT INTO import_errors (id, import_id, row_no, "column", value, reason)
        SELECT gen_random_uuid(), $1, r, c, v, why
        FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS p(r, c, v, why)
        ON CONFLICT DO NOTHING RETURNING 1
        """,
        run.import_id,
        [p.row_no for p in problems],
        [p.column for p in problems],
        [p.value for p in problems],
        [p.reason for p in problems],
    )
    return len(written)


async def _new_rows(conn: asyncpg.Connection, run: Run, good: list[Row]) -> _Chunk:
    """The rows whose identity was never merged, grouped into duplicates, one survivor each."""
    done = {
        r["row_key"]: r["import_id"]
        for r in await conn.fetch(
            "SELECT row_key, import_id FROM import_rows WHERE row_key = ANY($1::text[])",
            [row.key for row in good],
        )
    }
    fresh: list[Row] = []
    seen: set[str] = set()
    skipped = 0
    for row in good:
        if row.key in done or row.key in seen:
            if done.get(row.key) != run.import_id:  # merged by this import before a restart
                skipped += 1
            continue
        seen.add(row.key)
        fresh.append(row)
    chunk = _Chunk(fresh=fresh, skipped=skipped, groups=duplicates.group_duplicates(fresh))
    for g, group in enumerate(chunk.groups):
        survivor, found = duplicates.fold(group)
        chunk.survivors.append(survivor)
        chunk.conflicts.extend((g, *c) for c in found)
    return chunk


async def _record_conflicts(conn: asyncpg.Connection, run: Run, chunk: _Chunk) -> int:
    if not chunk.conflicts:
        return 0
    written = await conn.fetch(
        """
        INSERT INTO import_conflicts (id, import_id, row_no, member, member_number, field,
            kept, offered)
        SELECT gen_random_uuid(), $1, r, m, n, f, k, o
        FROM unnest($2::int[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[])
             AS c(r, m, n, f, k, o)
        ON CONFLICT DO NOTHING RETURNING 1
        """,
        run.import_id,
        [c[1] for c in chunk.conflicts],
        [chunk.member_of.get(c[0]) for c in chunk.conflicts],
        [chunk.number_of.get(c[0], "") for c in chunk.conflicts],
        [c[2] for c in chunk.conflicts],
        [c[3] for c in chunk.conflicts],
        [c[4] for c in chunk.conflicts],
    )
    return len(written)


async def _record_rows(
    conn: asyncpg.Connection, run: Run, chunk: _Chunk, group_of: dict[str, int]
) -> None:
    """Each row's identity and the member it landed on: merged once, skipped ever after."""
    await conn.execute(
        """
        INSERT INTO import_rows (row_key, import_id, row_no, member, at)
        SELECT k, $1, r, m, now() FROM unnest($2::text[], $3::int[], $4::uuid[]) AS x(k, r, m)
        """,
        run.import_id,
        [row.key for row in chunk.fresh],
        [row.row_no for row in chunk.fresh],
        [chunk.member_of[group_of[row.key]] for row in chunk.fresh],
    )
