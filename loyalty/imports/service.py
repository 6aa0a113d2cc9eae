"""Importing members from CSV: streamed, validated per row, staged with COPY and merged
set-based, one chunk per transaction.

Rules (documented in the README, "Import"):
- A row's identity is its `external_id`, else a hash of the normalised row. An identity
  merged once is skipped ever after: re-running a file changes nothing, and an interrupted
  import run again carries on where it stopped.
- Duplicates share a normalised phone or email. Inside the file the earliest registration
  (`registered_at`, else file order) survives; later duplicates only fill its empty fields,
  and different non-empty values are listed as conflicts. Against a member already in the
  database, the existing archive survives the same way.
- Opening points: one `adjustment` entry per row (cause `import`, idempotency key from the
  row identity, dated `points_date`, else `registered_at`, else now) with a released lot,
  and the account's available points raised in the same transaction.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.imports import rows as readers
from loyalty.imports import schemas
from loyalty.imports.rows import Problem, Row
from loyalty.infrastructure import clock, db
from loyalty.infrastructure.clock import now
from loyalty.members.service import new_member_number
from loyalty.points import ledger
from loyalty.points.service import get_rules
from loyalty.referrals.codes import issue_code, new_code
from loyalty.settings import get_settings
from loyalty.tiers import service as tiers

log = logging.getLogger("loyalty.imports")
CHUNK_ROWS = 5_000
LOCK_KEY = 0x1A0B7  # serialises chunk merges of concurrent imports (transaction-scoped)
Progress = Callable[[schemas.Import], Awaitable[None] | None]


def _schema(row: Any) -> schemas.Import:
    return schemas.Import(
        id=row["id"],
        kind=row["kind"],
        file_name=row["file_name"],
        status=row["status"],
        bytes_total=row["bytes_total"],
        bytes_done=row["bytes_done"],
        progress=round(row["bytes_done"] / row["bytes_total"], 4) if row["bytes_total"] else 0.0,
        rows_read=row["rows_read"],
        created=row["created"],
        merged=row["merged"],
        skipped=row["skipped"],
        errors=row["errors"],
        conflicts=row["conflicts"],
        points_entries=row["points_entries"],
        failure=row["failure"] or None,
        created_by=row["created_by"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


async def get_import(import_id: UUID) -> schemas.Import:
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM imports WHERE id = $1", import_id)
    if row is None:
        raise NotFound("no such import")
    return _schema(row)


async def recent_imports(limit: int = 20) -> list[schemas.Import]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM imports ORDER BY created_at DESC LIMIT $1", limit)
    return [_schema(row) for row in rows]


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def upload_dir() -> Path:
    folder = get_settings().data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def create_import(
    path: Path, file_name: str, principal: Principal, *, kind: str = "members", resume: bool = True
) -> schemas.Import:
    """Record an import of the file at `path`; an unfinished import of the same file (same
    content) is resumed instead of starting another."""
    if kind not in ("members", "purchases"):
        raise InvalidInput("must be members or purchases", field="kind")
    sha, size = file_digest(path)
    async with db.transaction() as conn:
        if resume:
            row = await conn.fetchrow(
                """
                SELECT * FROM imports WHERE file_sha256 = $1 AND kind = $2
                  AND status IN ('queued', 'running', 'failed')
                ORDER BY created_at DESC LIMIT 1
                """,
                sha,
                kind,
            )
            if row is not None:
                await conn.execute(
                    "UPDATE imports SET file_path = $2, status = 'queued' WHERE id = $1",
                    row["id"],
                    str(path),
                )
                return await get_import(row["id"])
        row = await conn.fetchrow(
            """
            INSERT INTO imports (id, kind, file_name, file_path, file_sha256, status,
                bytes_total, bytes_done, rows_read, created, merged, skipped, errors,
                conflicts, points_entries, failure, created_by, created_at)
            VALUES ($1, $2, $3, $4, $5, 'queued', $6, 0, 0, 0, 0, 0, 0, 0, 0, '', $7, now())
            RETURNING *
            """,
            uuid4(),
            kind,
            file_name[:255],
            str(path),
            sha,
            size,
            principal.label,
        )
    return _schema(row)


NOT_QUEUED = "not started: the job queue (Redis) could not be reached; upload the file again"


async def mark_not_queued(import_id: UUID) -> None:
    """An import whose job could not be queued says so, instead of waiting as "queued" for a
    job that will never come. Uploading the same file again resumes it."""
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE imports SET status = 'failed', failure = $2 WHERE id = $1 AND status = 'queued'",
            import_id,
            NOT_QUEUED,
        )


# --- running a members import ---------------------------------------------------------


@dataclass
class _Run:
    import_id: UUID
    label: str  # "import:<id>": registered_by and actor of everything it writes
    file_name: str
    lowest_tier: str
    expiry_months: int
    chunk_no: int = 0


async def _reps() -> tuple[dict[str, readers.Rep], set[str]]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, username, role, department, active FROM staff")
    reps: dict[str, readers.Rep] = {}
    for row in rows:
        rep = readers.Rep(row["id"], row["username"], row["department"], row["active"], row["role"])
        reps[row["username"].lower()] = rep
        reps[str(row["id"])] = rep
    return reps, {row["department"] for row in rows if row["department"]}


async def run_import(
    import_id: UUID, *, chunk_rows: int = CHUNK_ROWS, progress: Progress | None = None
) -> schemas.Import:
    """Run (or resume) an import to the end; safe to run twice."""
    current = await get_import(import_id)
    if current.status == "done":
        return current
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """
            UPDATE imports SET status = 'running', failure = '',
                started_at = coalesce(started_at, now())
            WHERE id = $1 RETURNING *
            """,
            import_id,
        )
    try:
        if row["kind"] == "purchases":
            from loyalty.imports.purchases import run_purchase_import

            await run_purchase_import(row, chunk_rows=min(chunk_rows, 1000), progress=progress)
        else:
            await _run_members(row, chunk_rows=chunk_rows, progress=progress)
    except BaseException as exc:
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE imports SET status = 'failed', failure = $2 WHERE id = $1",
                import_id,
                f"{type(exc).__name__}: {exc}"[:2000],
            )
        raise
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE imports SET status = 'done', finished_at = now() WHERE id = $1", import_id
        )
    return await get_import(import_id)


async def _report(progress: Progress | None, import_id: UUID) -> None:
    if progress is not None:
        result = progress(await get_import(import_id))
        if result is not None:
            await result


async def _run_members(imp: Any, *, chunk_rows: int, progress: Progress | None) -> None:
    ladder = await tiers.ladder()
    rules = await get_rules()
    run = _Run(
        import_id=imp["id"],
        label=f"import:{imp['id']}",
        file_name=imp["file_name"],
        lowest_tier=ladder.enabled[0].code,
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
                await _report(progress, run.import_id)
        await merge_chunk(run, good, problems, read, counter.done)
        await _report(progress, run.import_id)


async def merge_chunk(
    run: _Run, good: list[Row], problems: list[Problem], rows_read: int, bytes_done: int
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


async def _merge(
    conn: asyncpg.Connection,
    run: _Run,
    good: list[Row],
    problems: list[Problem],
    rows_read: int,
    bytes_done: int,
) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    errors = await conn.fetch(
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
    groups = readers.group_duplicates(fresh)
    survivors: list[Row] = []
    conflicts: list[tuple[int, int, str, str, str]] = []  # (group, row, field, kept, offered)
    for g, group in enumerate(groups):
        survivor, found = readers.fold(group)
        survivors.append(survivor)
        conflicts.extend((g, *c) for c in found)
    member_of: dict[int, UUID] = {}
    number_of: dict[int, str] = {}
    created = 0
    if survivors:
        created = await _stage_and_merge(conn, run, survivors, member_of, number_of, conflicts)
    if conflicts:
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
            [c[1] for c in conflicts],
            [member_of.get(c[0]) for c in conflicts],
            [number_of.get(c[0], "") for c in conflicts],
            [c[2] for c in conflicts],
            [c[3] for c in conflicts],
            [c[4] for c in conflicts],
        )
    else:
        written = []
    group_of = {row.key: g for g, group in enumerate(groups) for row in group}
    entries = await _opening_points(conn, run, fresh, group_of, member_of)
    await conn.execute(
        """
        INSERT INTO import_rows (row_key, import_id, row_no, member, at)
        SELECT k, $1, r, m, now() FROM unnest($2::text[], $3::int[], $4::uuid[]) AS x(k, r, m)
        """,
        run.import_id,
        [row.key for row in fresh],
        [row.row_no for row in fresh],
        [member_of[group_of[row.key]] for row in fresh],
    )
    await conn.execute(
        """
        UPDATE imports SET created = created + $2, merged = merged + $3, skipped = skipped + $4,
            errors = errors + $5, conflicts = conflicts + $6, points_entries = points_entries + $7,
            rows_read = greatest(rows_read, $8), bytes_done = greatest(bytes_done, $9)
        WHERE id = $1
        """,
        run.import_id,
        created,
        len(fresh) - created,
        skipped,
        len(errors),
        len(written),
        entries,
        rows_read,
        bytes_done,
    )


STAGING_COLUMNS = (
    "import_id",
    "grp",
    "row_no",
    "new_id",
    "number",
    "code",
    "kind",
    "name",
    "phone",
    "email",
    "gender",
    "birthday",
    "address",
    "notes",
    "tags",
    "registered_at",
    "rep",
)


async def _stage_and_merge(
    conn: asyncpg.Connection,
    run: _Run,
    survivors: list[Row],
    member_of: dict[int, UUID],
    number_of: dict[int, str],
    conflicts: list[tuple[int, int, str, str, str]],
) -> int:
    """COPY the chunk's survivors into the staging table, match them to members by phone or
    email, fill the gaps of matched members, and create the rest. Returns members created."""
    at = now()
    await conn.copy_records_to_table(
        "import_member_staging",
        columns=STAGING_COLUMNS,
        records=[
            (
                run.import_id,
                g,
                row.row_no,
                uuid4(),
                new_member_number(),
                new_code(),
                row.kind,
                row.name,
                row.phone,
                row.email,
                row.gender,
                row.birthday,
                msgspec.json.encode(row.address).decode() if row.address else None,
                row.notes,
                row.tags,
                row.registered_at or at,
                row.rep,
            )
            for g, row in enumerate(survivors)
        ],
    )
    # Every member already holding one of a survivor's phone or email (set-based match).
    candidates = await conn.fetch(
        """
        SELECT x.grp, m.id, m.number, m.name, m.phone, m.email, m.gender, m.birthday,
               m.address::text AS address, m.notes, m.tags, m.registered_at, m.registered_by,
               m.assigned_rep
        FROM (
            SELECT s.grp, m.id FROM import_member_staging s JOIN members m ON m.phone = s.phone
            WHERE s.import_id = $1
            UNION
            SELECT s.grp, m.id FROM import_member_staging s JOIN members m ON m.email = s.email
            WHERE s.import_id = $1
        ) x JOIN members m ON m.id = x.id
        ORDER BY x.grp, m.registered_at, m.id
        FOR NO KEY UPDATE OF m
        """,
        run.import_id,
    )
    matched: dict[int, Any] = {}
    others: dict[int, list[Any]] = {}
    for cand in candidates:
        if cand["grp"] in matched:
            others.setdefault(cand["grp"], []).append(cand)
        else:
            matched[cand["grp"]] = cand
    if matched:
        await _fill_existing(conn, run, survivors, matched, others, conflicts)
        for g, cand in matched.items():
            member_of[g] = cand["id"]
            number_of[g] = cand["number"]
        await conn.execute(
            """
            UPDATE import_member_staging s SET member_id = v.id
            FROM unnest($2::int[], $3::uuid[]) AS v(grp, id)
            WHERE s.import_id = $1 AND s.grp = v.grp
            """,
            run.import_id,
            list(matched),
            [matched[g]["id"] for g in matched],
        )
    created = await _create_members(conn, run)
    for row in await conn.fetch(
        "SELECT grp, member_id, number FROM import_member_staging WHERE import_id = $1 "
        "AND member_id = new_id",
        run.import_id,
    ):
        member_of[row["grp"]] = row["member_id"]
        number_of[row["grp"]] = row["number"]
    await conn.execute("DELETE FROM import_member_staging WHERE import_id = $1", run.import_id)
    return created


def _existing_value(cand: Any, name: str) -> Any:
    if name == "rep":
        return cand["assigned_rep"]
    if name == "address":
        return msgspec.json.decode(cand["address"]) if cand["address"] else None
    return cand[name]


async def _fill_existing(
    conn: asyncpg.Connection,
    run: _Run,
    survivors: list[Row],
    matched: dict[int, Any],
    others: dict[int, list[Any]],
    conflicts: list[tuple[int, int, str, str, str]],
) -> None:
    """The member in the database survives: the file's values only fill its empty fields.
    (A member this same import created from a later registration gives way instead.)"""
    updates: list[tuple] = []
    changes: list[tuple] = []
    assignments: list[tuple[UUID, UUID]] = []
    # Rows matching one member by different keys (one by phone, another by email) fill it
    # one after another, each from the member as the one before left it.
    state: dict[UUID, dict[str, Any]] = {}
    for g, found in matched.items():
        cand = state.setdefault(found["id"], dict(found))
        row = survivors[g]
        taken = {v for o in others.get(g, []) for v in (o["phone"], o["email"]) if v}
        incoming_first = (
            cand["registered_by"] == run.label
            and row.registered_at is not None
            and row.registered_at < cand["registered_at"]
        )
        new: dict[str, Any] = {}
        for name in readers.MERGED_FIELDS:
            kept, offered = _existing_value(cand, name), getattr(row, name)
            if offered in (None, "", {}) or kept == offered:
                continue
            if name in ("phone", "email") and offered in taken:
                owner = next(o for o in others[g] if offered in (o["phone"], o["email"]))
                conflicts.append(
                    (
                        g,
                        row.row_no,
                        name,
                        readers.display(kept),
                        f"{offered} (member {owner['number']})",
                    )
                )
                continue
            if kept in (None, "", {}):
                new[name] = offered
            elif incoming_first:
                new[name] = offered
                conflicts.append(
                    (g, row.row_no, name, readers.display(offered), readers.display(kept))
                )
            else:
                conflicts.append(
                    (g, row.row_no, name, readers.display(kept), readers.display(offered))
                )
        tags = sorted(set(cand["tags"] or []) | set(row.tags))
        if tags != sorted(cand["tags"] or []):
            new["tags"] = tags[:30]
        registered_at = cand["registered_at"]
        if incoming_first:
            new["registered_at"] = registered_at = row.registered_at
        if not new:
            continue
        if "rep" in new:
            assignments.append((cand["id"], new["rep"]))
        merged = {
            "name": new.get("name", cand["name"]),
            "phone": new.get("phone", cand["phone"]),
            "email": new.get("email", cand["email"]),
            "gender": new.get("gender", cand["gender"]),
            "birthday": new.get("birthday", cand["birthday"]),
            "address": new.get("address", _existing_value(cand, "address")),
            "notes": new.get("notes", cand["notes"]),
            "tags": new.get("tags", cand["tags"]),
            "rep": new.get("rep", cand["assigned_rep"]),
        }
        address = msgspec.json.encode(merged["address"]).decode() if merged["address"] else None
        updates.append(
            (
                cand["id"],
                merged["name"],
                merged["phone"],
                merged["email"],
                merged["gender"],
                merged["birthday"],
                address,
                merged["notes"],
                merged["tags"],
                merged["rep"],
                registered_at,
            )
        )
        record = {
            name: {
                "old": readers.display(_existing_value(cand, name))
                if name not in ("tags", "registered_at")
                else _json(cand[name]),
                "new": _json(value)
                if name in ("tags", "registered_at")
                else readers.display(value),
            }
            for name, value in new.items()
        }
        record["import"] = {"old": None, "new": f"{run.file_name} row {row.row_no}"}
        changes.append((uuid4(), cand["id"], msgspec.json.encode(record).decode()))
        cand.update(
            {k: v for k, v in merged.items() if k not in ("rep", "address")},
            address=address,  # as the column reads back, for _existing_value
            assigned_rep=merged["rep"],
            registered_at=registered_at,
        )
    if updates:
        await conn.executemany(
            """
            UPDATE members SET name = $2, phone = $3, email = $4, gender = $5, birthday = $6,
                address = $7::jsonb, notes = $8, tags = $9, assigned_rep = $10,
                registered_at = $11, updated_at = now()
            WHERE id = $1
            """,
            updates,
        )
        await conn.executemany(
            """
            INSERT INTO member_changes (id, member, action, actor, actor_staff, changes, at)
            VALUES ($1, $2, 'update', $4, NULL, $3::jsonb, now())
            """,
            [(*c, run.label) for c in changes],
        )
    if assignments:
        await conn.execute(
            """
            INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, started_at)
            SELECT gen_random_uuid(), m, r, 'import', 'named as the owner in an import', $3,
                   now()
            FROM unnest($1::uuid[], $2::uuid[]) AS a(m, r)
            """,
            [a[0] for a in assignments],
            [a[1] for a in assignments],
            run.label,
        )


def _json(value: Any) -> Any:
    return msgspec.to_builtins(value)


async def _create_members(conn: asyncpg.Connection, run: _Run) -> int:
    """Everything `create_member` gives a member, for every unmatched survivor at once:
    the archive with a member number, a points account, the lowest tier, a referral code,
    the first assignment when a rep is named, and the change record."""
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
            break
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
    else:
        raise RuntimeError("could not find free member numbers")
    new = "FROM import_member_staging s WHERE s.import_id = $1 AND s.member_id = s.new_id"
    count = await conn.fetchval(f"SELECT count(*) {new}", run.import_id)
    if not count:
        return 0
    await conn.execute(
        f"""
        INSERT INTO points_accounts (id, member, available, pending, debt, lifetime_earned,
            total, closed, updated_at)
        SELECT gen_random_uuid(), s.new_id, 0, 0, 0, 0, 0, false, now() {new}
        """,
        run.import_id,
    )
    await conn.execute(
        f"""
        INSERT INTO member_tiers (id, member, tier, since)
        SELECT gen_random_uuid(), s.new_id, $2, now() {new}
        """,
        run.import_id,
        run.lowest_tier,
    )
    await conn.execute(
        f"""
        INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor, at)
        SELECT gen_random_uuid(), s.new_id, NULL, $2, 'initial', '', 'system', now() {new}
        """,
        run.import_id,
        run.lowest_tier,
    )
    coded = await conn.fetch(
        f"""
        INSERT INTO referral_codes (member, code, created_at)
        SELECT s.new_id, s.code, now() {new}
        ON CONFLICT DO NOTHING RETURNING member
        """,
        run.import_id,
    )
    if len(coded) < count:  # a code already taken (rare): one at a time
        have = {r["member"] for r in coded}
        for r in await conn.fetch(f"SELECT s.new_id {new}", run.import_id):
            if r["new_id"] not in have:
                await issue_code(conn, r["new_id"])
    await conn.execute(
        f"""
        INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, started_at)
        SELECT gen_random_uuid(), s.new_id, s.rep, 'import', 'named as the owner in an import',
               $2, now() {new} AND s.rep IS NOT NULL
        """,
        run.import_id,
        run.label,
    )
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
        {new}
        """,
        run.import_id,
        run.label,
        run.file_name,
    )
    return count


async def _opening_points(
    conn: asyncpg.Connection,
    run: _Run,
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


# --- reports --------------------------------------------------------------------------


def _csv_lines(header: list[str], rows: Iterator[list[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    yield "\ufeff" + buffer.getvalue()  # a BOM so spreadsheet programs read UTF-8
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        yield buffer.getvalue()


async def error_rows(import_id: UUID) -> list[list[Any]]:
    await get_import(import_id)
    async with db.connection() as conn:
        rows = await conn.fetch(
            'SELECT row_no, "column", value, reason FROM import_errors WHERE import_id = $1 '
            'ORDER BY row_no, "column"',
            import_id,
        )
    return [[r["row_no"], r["column"], r["value"], r["reason"]] for r in rows]


async def conflict_rows(import_id: UUID) -> list[list[Any]]:
    await get_import(import_id)
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT row_no, member_number, field, kept, offered FROM import_conflicts "
            "WHERE import_id = $1 ORDER BY row_no, field",
            import_id,
        )
    return [[r["row_no"], r["member_number"], r["field"], r["kept"], r["offered"]] for r in rows]


ERRORS_HEADER = ["row", "column", "value", "reason"]
CONFLICTS_HEADER = ["row", "member_number", "field", "kept", "offered"]


async def errors_csv(import_id: UUID) -> str:
    return "".join(_csv_lines(ERRORS_HEADER, iter(await error_rows(import_id))))


async def conflicts_csv(import_id: UUID) -> str:
    return "".join(_csv_lines(CONFLICTS_HEADER, iter(await conflict_rows(import_id))))


def check_not_running(current: schemas.Import) -> None:
    if current.status == "running":
        raise Conflict("this import is running")
