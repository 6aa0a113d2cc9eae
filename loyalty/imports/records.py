"""An import's own record (the `imports` row): reading it, and telling a watcher how far
the run has come. Below both kinds of import, which report their progress through it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from loyalty.errors import NotFound
from loyalty.imports import schemas
from loyalty.infrastructure import db

Progress = Callable[[schemas.Import], Awaitable[None] | None]


def to_schema(row: Any) -> schemas.Import:
    return db.from_row(
        schemas.Import,
        row,
        progress=round(row["bytes_done"] / row["bytes_total"], 4) if row["bytes_total"] else 0.0,
        failure=row["failure"] or None,
    )


async def get_import(import_id: UUID) -> schemas.Import:
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM imports WHERE id = $1", import_id)
    if row is None:
        raise NotFound("no such import")
    return to_schema(row)


async def recent_imports(limit: int = 20) -> list[schemas.Import]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM imports ORDER BY created_at DESC LIMIT $1", limit)
    return [to_schema(row) for row in rows]


async def report(progress: Progress | None, import_id: UUID) -> None:
    """Hand the import's current state to the watcher, if any (a plain or async callback)."""
    if progress is not None:
        result = progress(await get_import(import_id))
        if result is not None:
            await result
