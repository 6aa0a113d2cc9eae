"""Staff accounts as the tests create them."""

from __future__ import annotations

from loyalty.infrastructure import db

TEST_PASSWORD = "correct-horse-battery-staple-42"


async def staff_past_their_first_month() -> None:
    """Every staff member so far was hired 90 days ago: old enough for pool members."""
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET created_at = now() - interval '90 days'")
