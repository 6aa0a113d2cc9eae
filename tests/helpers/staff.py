"""Staff accounts as the tests create them."""

from __future__ import annotations

from loyalty.infrastructure import db

TEST_PASSWORD = "correct-horse-battery-staple-42"


async def staff_past_their_first_month() -> None:
    """Every staff member so far was hired 90 days ago: old enough for pool members."""
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET created_at = now() - interval '90 days'")


async def notice_for(
    staff_id, title: str, *, hours_ago: int = 0, member_id=None, body: str = ""
) -> str:
    """A notice to one staff user through the one writer, dated `hours_ago` so that tests
    know the newest-first order; its id."""
    from loyalty.reps.notices import notify_staff

    key = f"test:{title}"
    async with db.transaction() as conn:
        await notify_staff(
            conn, [staff_id], kind="test", key=key, title=title, body=body, member_id=member_id
        )
        return str(
            await conn.fetchval(
                """
                UPDATE staff_notices SET created_at = now() - make_interval(hours => $2)
                WHERE key = $1 RETURNING id
                """,
                f"{key}:{staff_id}",
                hours_ago,
            )
        )
