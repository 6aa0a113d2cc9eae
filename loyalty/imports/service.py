"""Imports from CSV: recording an upload, running it (members or purchases) to the end,
and its error and conflict reports. Members are streamed, validated per row, staged with
COPY and merged set-based, one chunk per transaction (`imports.members`).

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput
from loyalty.imports import schemas
from loyalty.imports.members import CHUNK_ROWS, run_members
from loyalty.imports.purchases import run_purchase_import
from loyalty.imports.records import Progress, get_import, to_schema
from loyalty.infrastructure import db
from loyalty.settings import get_settings


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
    return to_schema(row)


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


# --- running -------------------------------------------------------------------------------


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
            await run_purchase_import(row, chunk_rows=min(chunk_rows, 1000), progress=progress)
        else:
            await run_members(row, chunk_rows=chunk_rows, progress=progress)
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


async def _report_rows(import_id: UUID, sql: str) -> list[list[Any]]:
    """The rows `sql` selects for an import (which must exist), each a list of its columns."""
    await get_import(import_id)
    async with db.connection() as conn:
        rows = await conn.fetch(sql, import_id)
    return [list(row.values()) for row in rows]


async def error_rows(import_id: UUID) -> list[list[Any]]:
    return await _report_rows(
        import_id,
        'SELECT row_no, "column", value, reason FROM import_errors WHERE import_id = $1 '
        'ORDER BY row_no, "column"',
    )


async def conflict_rows(import_id: UUID) -> list[list[Any]]:
    return await _report_rows(
        import_id,
        "SELECT row_no, member_number, field, kept, offered FROM import_conflicts "
        "WHERE import_id = $1 ORDER BY row_no, field",
    )


ERRORS_HEADER = ["row", "column", "value", "reason"]
CONFLICTS_HEADER = ["row", "member_number", "field", "kept", "offered"]


async def errors_csv(import_id: UUID) -> str:
    return "".join(_csv_lines(ERRORS_HEADER, iter(await error_rows(import_id))))


async def conflicts_csv(import_id: UUID) -> str:
    return "".join(_csv_lines(CONFLICTS_HEADER, iter(await conflict_rows(import_id))))


def check_not_running(current: schemas.Import) -> None:
    if current.status == "running":
        raise Conflict("this import is running")
