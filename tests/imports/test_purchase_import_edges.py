"""Bad rows in a purchases file (a NUL character, sNaN or a huge exponent for a price, a cell
over the csv module's default limit) are reported; they never stop the import."""

from __future__ import annotations

import pytest

from loyalty.auth import staff_principal
from loyalty.imports import service
from loyalty.infrastructure import db

HEADER = "external_id,member_number,occurred_at,store,sku,category,quantity,unit_price\n"


async def _run(path, make_staff):
    staff = await make_staff("importer", "admin")
    principal = staff_principal(staff.id, "importer", "admin", None)
    imp = await service.create_import(path, path.name, principal, kind="purchases")
    await service.run_import(imp.id)
    return await service.get_import(imp.id)


async def _posted() -> list[str]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT external_id FROM purchases ORDER BY external_id")
    return [r["external_id"] for r in rows]


@pytest.mark.parametrize(
    ("name", "bad_row"),
    [
        ("nul_in_store", "BAD-1,{n},2026-03-01,Jing\x00an,TEA,general,1,10.00\n"),
        ("nul_in_sku", "BAD-1,{n},2026-03-01,Store,T\x00EA,general,1,10.00\n"),
        ("snan_price", "BAD-1,{n},2026-03-01,Store,TEA,general,1,sNaN\n"),
        ("overflow_price", "BAD-1,{n},2026-03-01,Store,TEA,general,10,9E+999999\n"),
    ],
)
async def test_bad_row_does_not_stop_purchase_import(
    client, admin, make_staff, tmp_path, name, bad_row
):
    member = (await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)).json()
    n = member["number"]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(
        (
            HEADER
            + f"GOOD-1,{n},2026-03-01,Store,TEA,general,1,10.00\n"
            + bad_row.format(n=n)
            + f"GOOD-2,{n},2026-03-02,Store,TEA,general,1,20.00\n"
        ).encode("utf-8")
    )
    done = await _run(path, make_staff)
    assert done.status == "done", done.failure
    assert done.errors == 1
    assert await _posted() == ["GOOD-1", "GOOD-2"]


async def test_oversized_cell_does_not_stop_purchase_import(client, admin, make_staff, tmp_path):
    member = (await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)).json()
    n = member["number"]
    path = tmp_path / "huge.csv"
    path.write_text(
        HEADER
        + f"GOOD-1,{n},2026-03-01,Store,TEA,general,1,10.00\n"
        + f"BAD-1,{n},2026-03-01,{'x' * 200_000},TEA,general,1,10.00\n"
        + f"GOOD-2,{n},2026-03-02,Store,TEA,general,1,20.00\n",
        encoding="utf-8",
    )
    done = await _run(path, make_staff)
    assert done.status == "done", done.failure
    assert done.errors == 1
    assert await _posted() == ["GOOD-1", "GOOD-2"]
