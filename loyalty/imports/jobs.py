"""arq job: run (or resume) an uploaded import. Safe to run twice: merged rows are skipped."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from loyalty.imports import service


async def run_import(ctx: dict[str, Any], import_id: str) -> dict[str, Any]:
    result = await service.run_import(UUID(import_id))
    return {"status": result.status, "created": result.created, "errors": result.errors}
