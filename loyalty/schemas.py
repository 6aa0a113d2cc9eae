"""Shapes shared by every domain's schemas."""

from __future__ import annotations

import msgspec


class Input(msgspec.Struct, forbid_unknown_fields=True):
    """Base for request bodies: unknown fields are refused, not ignored."""


class Page(msgspec.Struct):
    """Pagination details of a list response."""

    limit: int
    next_cursor: str | None = None
