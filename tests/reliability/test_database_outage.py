"""A database outage: a real `loyalty serve` against its own embedded PostgreSQL answers 503
problem+json (not 500, not a hang) while PostgreSQL is stopped, and the same process serves
again once it is back, without a restart."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loyalty.infrastructure.embedded import EmbeddedPostgres
from tests.helpers.purchases import purchase_body
from tests.reliability.processes import PROJECT, WebServer, child_env

LOYALTY = str(Path(sys.executable).parent / "loyalty")


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [LOYALTY, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def own_postgres(tmp_path):
    postgres = EmbeddedPostgres(tmp_path / "postgres")
    postgres.ensure_running()
    try:
        yield postgres, postgres.ensure_database("loyalty_outage")
    finally:
        postgres.stop()


def _post(server: WebServer, headers: dict, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/purchases", json=body, headers=headers, timeout=5)


def test_database_outage_answers_503_and_recovers(backing_services, own_postgres, tmp_path):
    postgres, database_url = own_postgres
    env = child_env(database_url, backing_services["redis_url"])
    _cli(env, "migrate")
    output = _cli(
        env, "create-api-key", "--name", "POS", "--scopes", "purchases:write,members:write"
    )
    key = re.search(r"key \(shown once\): (\S+)", output).group(1)
    headers = {"Authorization": f"Bearer {key}"}

    server = WebServer(env, tmp_path / "serve.log").start()
    try:
        server.wait_ready()
        made = httpx.post(
            f"{server.url}/api/v1/members", json={"name": "Chen Jie"}, headers=headers, timeout=5
        )
        assert made.status_code == 201, made.text
        member_id = made.json()["id"]
        first = _post(server, headers, purchase_body(member_id))
        assert first.status_code in (200, 201), first.text

        postgres.stop()
        for _ in range(3):  # the pool's idle connections die first, then new connects fail
            try:
                during = _post(server, headers, purchase_body(member_id))
            except httpx.TimeoutException:
                pytest.fail(f"the request hung while PostgreSQL was down:\n{server.tail()}")
            assert during.status_code == 503, f"{during.status_code} {during.text}"
            assert during.headers["content-type"].startswith("application/problem+json")
            assert during.json()["status"] == 503
        assert server.alive

        postgres.ensure_running()
        deadline = time.monotonic() + 20
        statuses = []
        while True:
            again = _post(server, headers, purchase_body(member_id))
            statuses.append(again.status_code)
            if again.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert again.status_code == 201, f"{statuses} {again.text}\n{server.tail()}"
        assert 500 not in statuses, statuses
    finally:
        server.stop()
