"""Audit trail shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class AuditEntry(msgspec.Struct, kw_only=True):
    id: UUID
    at: datetime
    actor_kind: str
    actor_id: UUID | None
    actor_label: str
    action: str
    subject_type: str
    subject_id: str | None
    summary: str
    before: Any = None
    after: Any = None
    request_id: str | None = None


class AuditFilter(msgspec.Struct, kw_only=True):
    """A read's conditions; each given one narrows the list."""

    actor: str | None = None  # part of the actor's label, e.g. "alice" or "staff:alice"
    action: str | None = None  # an action or its start, e.g. "tiers" or "tiers.update"
    subject: str | None = None  # a subject's id, or a subject type ("tier", "member")
    from_: datetime | None = None
    to: datetime | None = None
