"""The ledger's books, checked from the database."""

from __future__ import annotations

from loyalty.infrastructure import db


async def assert_ledger_consistent() -> None:
    """Every account's buckets and total equal what its ledger entries say."""
    async with db.connection() as conn:
        wrong = await conn.fetch(
            """
        SELECT a.member, a.total, a.available + a.pending - a.debt AS buckets,
               coalesce((SELECT sum(points) FROM points_ledger e WHERE e.member = a.member), 0)
                   AS entries
        FROM points_accounts a
        WHERE a.total <> coalesce((SELECT sum(points) FROM points_ledger e
                                   WHERE e.member = a.member), 0)
           OR a.total <> a.available + a.pending - a.debt
           OR a.available < 0 OR a.pending < 0 OR a.debt < 0
            """
        )
    assert [dict(row) for row in wrong] == []
