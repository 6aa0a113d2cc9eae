"""Shapes shared by every domain's schemas."""

from __future__ import annotations

from decimal import Decimal
from functools import cache

import msgspec

# What a decimal string in a request looks like: digits with an optional fraction and
# exponent (the way answers write decimals too: "12.50", "1E-8"), no spaces, no NaN or
# infinity (checked against the raw body by loyalty.web.StrictJsonRequest).
DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"

# A character that is neither whitespace nor a control character, spelled out so that
# Python's `re` (which checks requests) and ECMA-262 (which reads the schema) agree; their
# `\S` differ on \x1c-\x1f, \x85 and \ufeff.
VISIBLE = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"

# A calendar month, YYYY-MM, from 1900 to 2999.
MONTH_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"


@cache
def _decimal_fields(struct: type) -> tuple[str, ...]:
    def has_decimal(info: msgspec.inspect.Type) -> bool:
        if isinstance(info, msgspec.inspect.DecimalType):
            return True
        if isinstance(info, msgspec.inspect.UnionType):
            return any(has_decimal(t) for t in info.types)
        if isinstance(info, msgspec.inspect.DictType):
            return has_decimal(info.value_type)
        if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType)):
            return has_decimal(info.item_type)
        return False

    fields = msgspec.inspect.type_info(struct).fields  # type: ignore[union-attr]
    return tuple(f.name for f in fields if has_decimal(f.type))


def _finite(value: object) -> bool:
    if isinstance(value, Decimal):
        return value.is_finite()
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, set, frozenset, tuple)):
        return all(_finite(v) for v in value)
    return True


class Input(msgspec.Struct, forbid_unknown_fields=True):
    """Base for request bodies: unknown fields are refused, not ignored; decimals must be
    finite (msgspec alone would take "NaN" and "Infinity")."""

    def __post_init__(self) -> None:
        for name in _decimal_fields(type(self)):
            if not _finite(getattr(self, name)):
                raise ValueError(f"Expected a finite decimal number - at `$.{name}`")


class Page(msgspec.Struct):
    """Pagination details of a list response."""

    limit: int
    next_cursor: str | None = None
