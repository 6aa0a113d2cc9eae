"""Import shapes: an import's status, progress and counts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec


class Import(msgspec.Struct):
    id: UUID
    kind: Literal["members", "purchases"]
    file_name: str
    status: Literal["queued", "running", "done", "failed"]
    bytes_total: int
    bytes_done: int
    progress: float  # 0..1, by bytes of the file read and merged
    rows_read: int
    created: int  # new members (purchases: purchases posted)
    merged: int  # rows folded into a member already in the database or the file
    skipped: int  # rows imported before (same row identity); purchases: replays
    errors: int
    conflicts: int
    points_entries: int
    failure: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ImportList(msgspec.Struct):
    items: list[Import]
