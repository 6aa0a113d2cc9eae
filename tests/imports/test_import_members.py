"""Importing a messy members file: mixed encodings, duplicates in the file and against an
existing member, bad rows reported; re-import changes nothing; an interrupted import resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.imports import write_messy
from tests.helpers.ledger import assert_ledger_consistent


@pytest.fixture
async def setup(app, make_staff, tmp_path):
    from loyalty.auth import staff_principal
    from loyalty.members import schemas
    from loyalty.workflows.enrolment import enrol_member

    rep = await make_staff("rep.li", "rep", "East")
    admin = await make_staff("boss", "admin")
    principal = staff_principal(admin.id, "boss", "admin", None)
    existing = await enrol_member(
        schemas.MemberCreate(name="Existing Member", phone="13300133000"), principal
    )
    return {
        "rep": rep,
        "principal": principal,
        "existing": existing,
        "file": write_messy(tmp_path / "messy.csv"),
    }


async def run_file(path: Path, principal, **options):
    from loyalty.imports import service

    created = await service.create_import(path, path.name, principal)
    return await service.run_import(created.id, **options)


async def members_by_phone() -> dict:
    from loyalty.infrastructure import db

    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT m.*, a.available, a.total,
                   (SELECT count(*) FROM assignments s WHERE s.member = m.id) AS assignments,
                   (SELECT count(*) FROM member_tiers t WHERE t.member = m.id) AS tiers,
                   (SELECT count(*) FROM referral_codes r WHERE r.member = m.id) AS codes
            FROM members m JOIN points_accounts a ON a.member = m.id
            """
        )
    return {row["phone"]: dict(row) for row in rows}


async def snapshot() -> dict:
    from loyalty.infrastructure import db

    async with db.connection() as conn:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in (
                "members",
                "points_ledger",
                "points_lots",
                "assignments",
                "member_tiers",
                "referral_codes",
                "member_changes",
                "import_rows",
            )
        } | {"points": await conn.fetchval("SELECT sum(total) FROM points_accounts")}


async def test_a_messy_file_gives_the_documented_result(setup, settings):
    from loyalty.imports import service

    result = await run_file(setup["file"], setup["principal"])
    assert result.status == "done"
    assert (result.rows_read, result.created, result.merged, result.errors) == (9, 3, 3, 3)
    assert result.conflicts == 3 and result.points_entries == 4 and result.progress == 1.0

    errors = await service.error_rows(result.id)
    assert [(r[0], r[1]) for r in errors] == [(5, "phone"), (6, "birthday"), (7, "rep")]
    assert "valid phone" in errors[0][3]
    conflicts = await service.conflict_rows(result.id)
    by_row = {(c[0], c[2]): c for c in conflicts}
    assert by_row[(4, "name")][3:] == ["Wang Wei", "王伟"]  # the first registration wins
    assert by_row[(3, "name")][3:] == ["Zhang Wei Early", "张伟"]  # earlier registered_at wins
    assert by_row[(8, "name")][3:] == ["Existing Member", "Other Name"]  # existing wins
    assert by_row[(8, "name")][1] == setup["existing"].number

    members = await members_by_phone()
    assert len(members) == 4
    wang = members["+8613800138000"]
    assert (wang["name"], wang["email"], wang["available"], wang["total"]) == (
        "Wang Wei",
        "wang@example.com",
        1250,
        1250,
    )
    assert wang["assigned_rep"] == setup["rep"].id and wang["assignments"] == 1
    assert wang["registration_channel"] == "import" and len(wang["number"]) == 10
    assert (wang["tiers"], wang["codes"]) == (1, 1)
    zhang = members["+8613900139000"]
    assert (zhang["name"], zhang["email"], zhang["gender"]) == (
        "Zhang Wei Early",
        "zw@example.com",
        "male",
    )
    assert str(zhang["registered_at"].astimezone(settings.tz).date()) == "2018-01-01"
    assert zhang["total"] == 300
    assert zhang["address"] == '{"city": "上海"}' or zhang["address"] == {"city": "上海"}
    li = members["+8613100131000"]
    assert (li["name"], li["gender"], li["total"]) == ("李娜", "female", 0)
    existing = members["+8613300133000"]
    assert existing["id"] == setup["existing"].id
    assert (existing["name"], existing["email"], existing["gender"]) == (
        "Existing Member",
        "exist@example.com",
        "female",
    )
    assert existing["total"] == 500 and existing["assignments"] == 0
    await assert_ledger_consistent()

    from loyalty.infrastructure import db

    async with db.connection() as conn:
        entry = await conn.fetchrow(
            "SELECT * FROM points_ledger WHERE member = $1", setup["existing"].id
        )
        lot = await conn.fetchrow("SELECT * FROM points_lots WHERE entry = $1", entry["id"])
    assert (entry["kind"], entry["cause_type"], entry["points"]) == ("adjustment", "import", 500)
    assert entry["occurred_at"].astimezone(settings.tz).year == 2024 and entry[
        "idempotency_key"
    ].startswith("import:")
    assert lot["released"] and lot["remaining"] == 500

    csv_text = await service.errors_csv(result.id)
    assert csv_text.startswith("\ufeffrow,column,value,reason")
    assert "7,rep,nobody,is not a rep's username or id" in csv_text


async def test_reimporting_the_same_file_changes_nothing(setup):
    first = await run_file(setup["file"], setup["principal"])
    before = await snapshot()
    again = await run_file(setup["file"], setup["principal"])
    assert again.id != first.id and again.status == "done"
    assert (again.created, again.merged, again.skipped, again.points_entries) == (0, 0, 6, 0)
    assert await snapshot() == before
    await assert_ledger_consistent()


async def test_an_interrupted_import_resumes_without_duplicates(setup, monkeypatch):
    from loyalty.imports import members, service

    real = members._merge
    calls = {"n": 0}

    async def failing(conn, run, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the power went out")
        return await real(conn, run, *args)

    monkeypatch.setattr(members, "_merge", failing)
    created = await service.create_import(setup["file"], "messy.csv", setup["principal"])
    with pytest.raises(RuntimeError):
        await service.run_import(created.id, chunk_rows=2)
    failed = await service.get_import(created.id)
    assert failed.status == "failed" and "power" in (failed.failure or "")
    partial = await snapshot()
    assert 1 < partial["members"] < 4

    # The same file again resumes the same import and skips what was merged.
    resumed = await service.create_import(setup["file"], "messy.csv", setup["principal"])
    assert resumed.id == created.id
    result = await service.run_import(resumed.id, chunk_rows=2)
    assert result.status == "done"
    assert (result.created, result.merged, result.skipped, result.errors) == (3, 3, 0, 3)
    members = await members_by_phone()
    assert len(members) == 4
    assert members["+8613800138000"]["total"] == 1250
    assert members["+8613900139000"]["name"] == "Zhang Wei Early"
    assert members["+8613900139000"]["total"] == 300
    assert members["+8613300133000"]["total"] == 500
    await assert_ledger_consistent()
    state = await snapshot()
    again = await run_file(setup["file"], setup["principal"])
    assert again.created == 0 and await snapshot() == state
