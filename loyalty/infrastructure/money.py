"""Money: amounts as the database keeps them (numeric(14, 2)), checked one way everywhere."""

from __future__ import annotations

from decimal import Decimal

from loyalty.errors import InvalidInput

MAX_MONEY = Decimal("9999999999.99")
NO_MONEY = Decimal("0.00")  # as numeric(14, 2) reads back
CENT = Decimal("0.01")


def decimal_places(value: Decimal) -> int:
    """How many digits the value has after the point (0 for a whole or non-finite number)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def check_amount(value: Decimal, field: str, upper: Decimal) -> None:
    """A finite amount between 0 and `upper`, else the caller's input is at fault."""
    if not value.is_finite() or value < 0 or value > upper:
        raise InvalidInput(f"must be between 0 and {upper}", field=field)


def check_money(value: Decimal, field: str) -> None:
    """An amount of money the database can hold, in whole cents."""
    check_amount(value, field, MAX_MONEY)
    if decimal_places(value) > 2:
        raise InvalidInput("has more than 2 decimal places", field=field)
