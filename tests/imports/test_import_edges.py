"""Import edges: two rows reaching one existing member in a chunk both fill its gaps; a
row holding a NUL character is refused without stopping the import."""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalty.infrastructure import db
from tests.helpers.ledger import assert_ledger_consistent


@pytest.fixture
async def boss(app, make_staff):
    from loyalty.auth import staff_principal

    admin = await make_staff("boss", "admin")
    return staff_principal(admin.id, "boss", "admin", None)


async def run_file(path: Path, principal, **options):
    from loyalty.imports import service

    created = await service.create_import(path, path.name, principal)
    return await service.run_import(created.id, **options)


async def test_two_rows_reaching_one_existing_member_in_one_chunk_both_fill_its_gaps(
    boss, tmp_path
):
    """Against a member already in the database, rows only fill its empty fields: one row
    matching it by phone and another (same chunk) by email both fill theirs; the second
    does not write the first one's birthday back to empty."""
    from loyalty.members import schemas
    from loyalty.workflows.enrolment import enrol_member

    existing = await enrol_member(
        schemas.MemberCreate(name="Chen Jie", phone="13300133000", email="chen@example.com"),
        boss,
    )
    path = tmp_path / "two.csv"
    path.write_text(
        "name,phone,email,birthday,gender\n"
        "Chen Jie,13300133000,,1985-04-12,\n"
        "Chen Jie,,chen@example.com,,female\n",
        encoding="utf-8",
    )
    result = await run_file(path, boss)
    assert result.status == "done" and result.created == 0
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT birthday, gender FROM members WHERE id = $1", existing.id)
    assert row["gender"] == "female"
    assert row["birthday"] is not None and row["birthday"].isoformat() == "1985-04-12"


async def test_a_nul_byte_in_one_row_does_not_stop_the_import(boss, tmp_path):
    """Bad rows never stop the import and the good rows land: a NUL character (which
    PostgreSQL text cannot hold) makes its row an error, not the chunk's COPY fail."""
    path = tmp_path / "nul.csv"
    path.write_bytes(b"name,phone\nGood Row,13800138000\nBad\x00Row,13900139000\n")
    try:
        result = await run_file(path, boss)
    except Exception as exc:
        pytest.fail(f"the import failed on one bad row: {type(exc).__name__}: {exc}")
    assert result.status == "done"
    async with db.connection() as conn:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM members")]
    assert "Good Row" in names
    await assert_ledger_consistent()
