"""The one clock: the current time in UTC, the business day, and calendar arithmetic."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime

from loyalty.settings import get_settings


def now() -> datetime:
    return datetime.now(UTC)


def local_today(at: datetime | None = None) -> date:
    """The date in the business time zone (`LOYALTY_TIMEZONE`) at `at`, or now."""
    return (at or now()).astimezone(get_settings().tz).date()


def first_of_month(day: date, months_later: int = 0) -> date:
    index = day.month - 1 + months_later
    return date(day.year + index // 12, index % 12 + 1, 1)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later (or earlier), clamped to the month's last day."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
