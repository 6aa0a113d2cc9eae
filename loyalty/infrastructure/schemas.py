"""Shapes shared by every domain's schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

import msgspec

# What a decimal string in a request looks like: digits with an optional fraction and
# exponent (the way answers write decimals too: "12.50", "1E-8"), no spaces, no NaN or
# infinity (checked against the raw body by loyalty.http.middleware.StrictJsonRequest).
DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"

# A character that is neither whitespace nor a control character, spelled out so that
# Python's `re` (which checks requests) and ECMA-262 (which reads the schema) agree; their
# `\S` differ on \x1c-\x1f, \x85 and \ufeff.
VISIBLE = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"

# A calendar month, YYYY-MM, from 1900 to 2999.
MONTH_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"


OUT_OF_RANGE = "is outside years 1 to 9999 in UTC"


@cache
def _checked_fields(struct: type) -> tuple[str, ...]:
    """Fields holding decimals or date-times, which `Input.__post_init__` checks."""

    def checked(info: msgspec.inspect.Type) -> bool:
        if isinstance(info, (msgspec.inspect.DecimalType, msgspec.inspect.DateTimeType)):
            return True
        if isinstance(info, msgspec.inspect.UnionType):
            return any(checked(t) for t in info.types)
        if isinstance(info, msgspec.inspect.DictType):
            return checked(info.value_type)
        if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType)):
            return checked(info.item_type)
        return False

    fields = msgspec.inspect.type_info(struct).fields  # type: ignore[union-attr]
    return tuple(f.name for f in fields if checked(f.type))


def _values(value: object) -> list[object]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _values(item)]
    if isinstance(value, (list, set, frozenset, tuple)):
        return [v for item in value for v in _values(item)]
    return [value]


def in_utc_range(value: datetime) -> bool:
    """RFC 3339 allows 0001-01-01T00:00:00+20:00, an instant before year 1 in UTC."""
    if value.tzinfo is None:
        return True
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


class Input(msgspec.Struct, forbid_unknown_fields=True):
    """Base for request bodies: unknown fields are refused, not ignored; decimals must be
    finite (msgspec alone would take "NaN" and "Infinity"); date-times must be instants
    Python can hold in UTC (OUT_OF_RANGE: loyalty.http.middleware answers 422 for it)."""

    def __post_init__(self) -> None:
        for name in _checked_fields(type(self)):
            value = getattr(self, name)
            # Most checked fields hold one value: no list made for it (a batch checks
            # thousands of structs).
            values = (value,) if isinstance(value, (Decimal, datetime)) else _values(value)
            for item in values:
                if isinstance(item, Decimal) and not item.is_finite():
                    raise ValueError(f"Expected a finite decimal number - at `$.{name}`")
                if isinstance(item, datetime) and not in_utc_range(item):
                    raise ValueError(f"{OUT_OF_RANGE} - at `$.{name}`")


class Page(msgspec.Struct):
    """Pagination details of a list response."""

    limit: int
    next_cursor: str | None = None
