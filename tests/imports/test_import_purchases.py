"""Historic purchases: one CSV row per line, earned exactly once with their original dates,
bad rows reported, a re-run changes nothing."""

from __future__ import annotations

from loyalty.auth import staff_principal
from loyalty.imports import service
from loyalty.infrastructure import db
from tests.helpers.ledger import assert_ledger_consistent


async def test_historic_purchases_earn_once_with_their_dates(client, admin, make_staff, tmp_path):
    member = (await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)).json()
    path = tmp_path / "purchases.csv"
    path.write_text(
        "external_id,member_number,occurred_at,store,sku,category,quantity,unit_price\n"
        f"OLD-1,{member['number']},2026-03-01 10:00,Jing'an,TEA,general,2,50.00\n"
        f"OLD-1,{member['number']},2026-03-01 10:00,Jing'an,CUP,general,1,20.00\n"
        f"OLD-2,{member['number']},2026-04-15,Online,TEA,general,1,30.00\n"
        f"OLD-3,{member['number']},not a date,Online,TEA,general,1,30.00\n"
        "OLD-4,0000000000,2026-04-15,Online,TEA,general,1,30.00\n",
        encoding="utf-8",
    )
    staff = await make_staff("importer", "admin")
    principal = staff_principal(staff.id, "importer", "admin", None)
    first = await service.create_import(path, "purchases.csv", principal, kind="purchases")
    done = await service.run_import(first.id)
    assert done.status == "done" and done.errors == 2
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT external_id, total, points, occurred_at FROM purchases ORDER BY external_id"
        )
    assert [(r["external_id"], str(r["total"]), r["points"]) for r in rows] == [
        ("OLD-1", "120.00", 120),
        ("OLD-2", "30.00", 30),
    ]
    assert rows[0]["occurred_at"].date().isoformat() == "2026-03-01"
    # The same file again: nothing is posted twice.
    again = await service.create_import(
        path, "purchases.csv", principal, kind="purchases", resume=False
    )
    await service.run_import(again.id)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM purchases") == 2
        assert await conn.fetchval("SELECT sum(points) FROM points_ledger") == 150
    await assert_ledger_consistent()
