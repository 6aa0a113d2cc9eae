"""The import through its entry points: the CLI end to end, the API with the worker, the
console page."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from tests.helpers.database import with_database
from tests.helpers.imports import write_messy
from tests.helpers.pages import csrf_from
from tests.helpers.staff import TEST_PASSWORD

FRESH = "loyalty_import_cli_test"


@pytest.fixture(scope="module")
def fresh_env(backing_services):
    async def recreate():
        admin = await asyncpg.connect(with_database(backing_services["database_url"], "postgres"))
        await admin.execute(f"DROP DATABASE IF EXISTS {FRESH} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {FRESH}")
        await admin.close()

    asyncio.run(recreate())
    return {
        **os.environ,
        "LOYALTY_DATABASE_URL": with_database(backing_services["database_url"], FRESH),
    }


def loyalty(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loyalty", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_the_cli_imports_a_file_and_writes_the_reports(fresh_env, tmp_path):
    assert loyalty(fresh_env, "migrate").returncode == 0
    file = write_messy(tmp_path / "legacy.csv")
    result = loyalty(fresh_env, "import", "members", str(file), "--chunk-rows", "3")
    assert result.returncode == 0, result.stderr
    # A fresh database: no rep.li, so rows 2 and 4 are refused too.
    assert "9 rows read, 3 created, 1 merged, 0 skipped, 5 errors, 1 conflicts" in result.stdout
    errors = (tmp_path / "legacy.errors.csv").read_text(encoding="utf-8")
    assert "5,phone,12345," in errors and "2,rep,rep.li," in errors
    assert "张伟" in (tmp_path / "legacy.conflicts.csv").read_text(encoding="utf-8")
    again = loyalty(fresh_env, "import", "members", str(file))
    assert again.returncode == 0, again.stderr
    assert "0 created, 0 merged, 4 skipped" in again.stdout

    async def count():
        conn = await asyncpg.connect(fresh_env["LOYALTY_DATABASE_URL"])
        try:
            return await conn.fetchval("SELECT count(*) FROM members")
        finally:
            await conn.close()

    assert asyncio.run(count()) == 3


async def run_worker(settings):
    from loyalty.worker import create_worker

    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def test_upload_through_the_api_runs_in_the_worker(client, admin, settings, tmp_path, bearer):
    file = write_messy(tmp_path / "upload.csv")
    response = await client.post(
        "/api/v1/imports",
        files={"file": ("upload.csv", file.read_bytes(), "text/csv")},
        data={"kind": "members"},
        headers=admin,
    )
    assert response.status_code == 202, response.text
    import_id = response.json()["id"]
    assert response.json()["status"] == "queued"
    await run_worker(settings)
    progress = (await client.get(f"/api/v1/imports/{import_id}", headers=admin)).json()
    assert progress["status"] == "done" and progress["progress"] == 1.0
    assert progress["errors"] == 5  # no rep.li here: rows 2 and 4 are refused too
    errors = await client.get(f"/api/v1/imports/{import_id}/errors.csv", headers=admin)
    assert errors.status_code == 200 and "text/csv" in errors.headers["content-type"]
    assert "6,birthday" in errors.text
    conflicts = await client.get(f"/api/v1/imports/{import_id}/conflicts.csv", headers=admin)
    assert "张伟" in conflicts.text
    rep = await bearer("rep")
    denied = await client.get(f"/api/v1/imports/{import_id}", headers=rep)
    assert denied.status_code == 403


async def test_the_console_page_uploads_and_shows_progress(client, make_staff, tmp_path):
    await make_staff("gm1", "general_manager")
    login = await client.get("/console/login")
    signed = await client.post(
        "/console/login",
        data={"username": "gm1", "password": TEST_PASSWORD, "_csrf_token": csrf_from(login.text)},
    )
    assert signed.status_code in (302, 303)
    listing = await client.get("/console/imports")
    assert listing.status_code == 200 and 'type="file"' in listing.text
    file = write_messy(tmp_path / "console.csv")
    posted = await client.post(
        "/console/imports",
        files={"file": ("console.csv", file.read_bytes(), "text/csv")},
        data={"kind": "members", "_csrf_token": csrf_from(listing.text)},
    )
    assert posted.status_code == 303, posted.text
    detail = await client.get(posted.headers["location"])
    assert detail.status_code == 200
    assert 'http-equiv="refresh"' in detail.text and "console.csv" in detail.text
