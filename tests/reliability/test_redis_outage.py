"""A Redis outage: real `loyalty serve` and `loyalty worker` processes against their own
embedded Redis, which is stopped and started again under them.

While Redis is down, purchases (single, sent again, and batch), returns, new members and
staff reads still answer 201/200 within seconds, balances equal the sum of their entries,
and the tier upgrades they cause wait as outbox rows; `/health` answers 503 naming Redis;
what needs Redis (staff sign-in with its attempt counter, member tokens, console sessions,
an import upload, an offer send) answers 503, not 500 and not a hang. Neither process dies.
Once Redis is back, without a restart of either process, `/health` is 200, every event
written during the outage is queued once and delivered once (one inbox message per upgrade),
and the refused import (resumed, not duplicated) and offer send, sent again, run."""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from loyalty.infrastructure.embedded import EmbeddedRedis
from tests.helpers.purchases import purchase_body
from tests.reliability.processes import PROJECT, WebServer, Worker, child_env

LOYALTY = str(Path(sys.executable).parent / "loyalty")
DATABASE = "loyalty_redis_outage"
QUICK = 4.0  # seconds: an answer slower than this during the outage counts as a hang
IMPORT_CSV = (
    b"external_id,name,kind\nRO-1,Outage Import One,person\nRO-2,Outage Import Two,person\n"
)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [LOYALTY, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _fresh_database(url: str) -> str:
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    return with_database(url, DATABASE)


@pytest.fixture
def own_redis(tmp_path):
    """Its own Redis: stopping it touches no other suite; it listens on the same socket
    each time it is started, as a restarted Redis server would."""
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.ensure_running()
    try:
        yield redis
    finally:
        redis.stop()


async def _timed(call, what: str):
    """An answer within QUICK seconds; a hang fails the test."""
    started = time.monotonic()
    try:
        response = await call
    except httpx.TimeoutException:
        pytest.fail(f"{what} hung while Redis was down")
    took = time.monotonic() - started
    assert took < QUICK, f"{what} took {took:.1f}s while Redis was down"
    return response


def _problem(response: httpx.Response, status: int, what: str) -> None:
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    assert response.json()["status"] == status, what


def _silver(member_id: str) -> dict:
    """A purchase of 6,000 crosses silver (5,000) in one go."""
    return purchase_body(member_id, ("SKU-9", 1, "6000.00", "general"))


async def _ledger_problems(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT a.member, a.total, a.available, a.pending, a.debt,
               coalesce((SELECT sum(points) FROM points_ledger e WHERE e.member = a.member), 0)
                 AS entries
        FROM points_accounts a
        """
    )
    return [
        f"account does not add up: {dict(row)}"
        for row in rows
        if row["total"] != row["entries"]
        or row["total"] != row["available"] + row["pending"] - row["debt"]
    ]


async def _until(check, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {timeout:g}s)")
        await asyncio.sleep(interval)


async def test_redis_outage_keeps_purchases_and_delivers_events_after(
    backing_services, own_redis, tmp_path
):
    database_url = await _fresh_database(backing_services["database_url"])
    redis_url = own_redis.url()
    env = child_env(
        database_url,
        redis_url,
        LOYALTY_DATA_DIR=str(tmp_path / "data"),
        LOYALTY_SECRET_KEY=secrets.token_urlsafe(48),
        LOYALTY_MODE="demo",
    )
    await asyncio.to_thread(_cli, env, "migrate")
    created = await asyncio.to_thread(
        _cli, env, "create-staff", "--username", "outageadmin", "--role", "admin"
    )
    password = re.search(r"password \(shown once\): (\S+)", created).group(1)
    # An offer's author never approves it: a marketer writes it, the admin approves.
    created = await asyncio.to_thread(
        _cli, env, "create-staff", "--username", "outagemarketer", "--role", "marketing"
    )
    marketer_password = re.search(r"password \(shown once\): (\S+)", created).group(1)

    web = WebServer(env, tmp_path / "serve.log")
    worker = Worker(env, tmp_path / "worker.log")
    conn: asyncpg.Connection | None = None
    try:
        web.start()
        worker.start()
        await asyncio.to_thread(web.wait_ready)
        await asyncio.to_thread(worker.wait_ready, redis_url)
        conn = await asyncpg.connect(database_url)
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            # --- before: a staff token, a POS key, members, an approved offer --------------
            signed_in = await http.post(
                "/api/v1/auth/tokens", json={"username": "outageadmin", "password": password}
            )
            assert signed_in.status_code == 201, signed_in.text
            admin = {"Authorization": f"Bearer {signed_in.json()['token']}"}
            signed_in = await http.post(
                "/api/v1/auth/tokens",
                json={"username": "outagemarketer", "password": marketer_password},
            )
            assert signed_in.status_code == 201, signed_in.text
            marketer = {"Authorization": f"Bearer {signed_in.json()['token']}"}
            made_key = await http.post(
                "/api/v1/api-keys",
                json={
                    "name": "POS",
                    "scopes": ["purchases:write", "members:read", "members:write"],
                },
                headers=admin,
            )
            assert made_key.status_code == 201, made_key.text
            pos = {"Authorization": f"Bearer {made_key.json()['key']}"}
            members = []
            for n in range(5):
                made = await http.post(
                    "/api/v1/members", json={"name": f"Outage Member {n}"}, headers=pos
                )
                assert made.status_code == 201, made.text
                members.append(made.json()["id"])
            now = datetime.now(UTC)
            offer = await http.post(
                "/api/v1/offers",
                json={
                    "title_en": "Tea week",
                    "body_en": "Double points on tea",
                    "valid_from": now.isoformat(),
                    "valid_until": (now + timedelta(days=7)).isoformat(),
                },
                headers=marketer,
            )
            assert offer.status_code == 201, offer.text
            offer_id = offer.json()["id"]
            approved = await http.post(f"/api/v1/offers/{offer_id}/approve", headers=admin)
            assert approved.status_code == 200, approved.text

            # The worker delivers while Redis is up: member 0 upgrades before the outage.
            before = await http.post("/api/v1/purchases", json=_silver(members[0]), headers=pos)
            assert before.status_code == 201, before.text

            async def first_delivered():
                return await conn.fetchval(
                    "SELECT count(*) FROM outbox_events WHERE topic = 'tier.changed'"
                    " AND delivered_at IS NOT NULL"
                )

            await _until(first_delivered, 30, "the upgrade before the outage was not delivered")

            # --- Redis stops ------------------------------------------------------------
            await asyncio.to_thread(own_redis.stop)
            outage_started = datetime.now(UTC)
            async with httpx.AsyncClient(base_url=web.url, timeout=QUICK + 2) as quick:
                health = await _timed(quick.get("/health"), "/health")
                assert health.status_code == 503, health.text
                assert health.json()["redis"].startswith("down"), health.json()
                assert health.json()["database"] == "ok", health.json()

                # Purchases, a batch, a return and a new member need no Redis.
                sent = []
                for member in members[1:3]:
                    body = _silver(member)
                    posted = await _timed(
                        quick.post("/api/v1/purchases", json=body, headers=pos), "a purchase"
                    )
                    assert posted.status_code == 201, posted.text
                    sent.append((body, posted.json()))
                small = purchase_body(members[4], ("SKU-1", 2, "50.00", "general"))
                batch = await _timed(
                    quick.post(
                        "/api/v1/purchases/batch",
                        json={"purchases": [_silver(members[3]), small]},
                        headers=pos,
                    ),
                    "a batch of purchases",
                )
                assert batch.status_code == 200, batch.text
                assert [item["status"] for item in batch.json()["items"]] == [201, 201]
                returned = await _timed(
                    quick.post(
                        f"/api/v1/purchases/{small['external_id']}/returns",
                        json={
                            "return_id": "RET-OUTAGE-1",
                            "lines": [{"line_no": 1, "quantity": 1}],
                        },
                        headers=pos,
                    ),
                    "a return",
                )
                assert returned.status_code == 201, returned.text
                assert returned.json()["points_reversed"] > 0, returned.text
                body, first = sent[0]
                again = await _timed(
                    quick.post("/api/v1/purchases", json=body, headers=pos),
                    "a purchase sent again",
                )
                assert again.status_code == 200, again.text  # the original, not a second
                assert again.json()["id"] == first["id"], again.text
                newcomer = await _timed(
                    quick.post("/api/v1/members", json={"name": "Outage Newcomer"}, headers=pos),
                    "a new member",
                )
                assert newcomer.status_code == 201, newcomer.text
                balance = await _timed(
                    quick.get(f"/api/v1/members/{members[4]}/points", headers=pos),
                    "a balance",
                )
                assert balance.status_code == 200, balance.text

                # What needs Redis answers 503 problem+json at once.
                sign_in = await _timed(
                    quick.post(
                        "/api/v1/auth/tokens",
                        json={"username": "outageadmin", "password": password},
                    ),
                    "staff sign-in",
                )
                _problem(sign_in, 503, "staff sign-in (its attempt counter is in Redis)")
                member_token = await _timed(
                    quick.get("/api/v1/me", headers={"Authorization": "Bearer mbr_unknown"}),
                    "a member token",
                )
                _problem(member_token, 503, "a member token (member tokens are in Redis)")
                upload = await _timed(
                    quick.post(
                        "/api/v1/imports",
                        files={"file": ("outage.csv", IMPORT_CSV, "text/csv")},
                        headers=admin,
                    ),
                    "an import upload",
                )
                _problem(upload, 503, "an import upload (its job goes to Redis)")
                refused = await conn.fetchrow("SELECT status, failure FROM imports")
                assert refused["status"] == "failed", "a refused upload is not left queued"
                assert "upload the file again" in refused["failure"], refused["failure"]
                send = await _timed(
                    quick.post(f"/api/v1/offers/{offer_id}/send", headers=admin),
                    "an offer send",
                )
                _problem(send, 503, "an offer send (its job goes to Redis)")
                # A console page with a session cookie: sessions are in Redis.
                page = await _timed(
                    quick.get(
                        "/console/",
                        headers={"Cookie": f"loyalty_session={secrets.token_hex(32)}"},
                        follow_redirects=False,
                    ),
                    "a console page with a session",
                )
                assert page.status_code == 503, f"{page.status_code} {page.text[:300]}"
                # A staff token needs no Redis: reads still work.
                listed = await _timed(quick.get("/api/v1/offers", headers=admin), "staff read")
                assert listed.status_code == 200, listed.text

                # The upgrades are in the outbox, waiting; the ledger adds up.
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM outbox_events WHERE topic = 'tier.changed'"
                    " AND published_at IS NULL AND created_at >= $1",
                    outage_started,
                )
                assert waiting == 3, waiting
                assert await _ledger_problems(conn) == []
                # Let the worker meet the outage (relay every 5 s, polls every 0.5 s).
                await asyncio.sleep(6)
                assert web.alive, f"loyalty serve died while Redis was down:\n{web.tail()}"
                assert worker.alive, f"loyalty worker died while Redis was down:\n{worker.tail()}"
                still = await _timed(quick.get("/health"), "/health")
                assert still.status_code == 503, still.text

            # --- Redis returns: the same processes carry on ------------------------------
            await asyncio.to_thread(own_redis.ensure_running)

            async def healthy():
                return (await http.get("/health")).status_code == 200

            await _until(healthy, 15, "/health did not return to 200")

            async def all_delivered():
                rows = await conn.fetch(
                    "SELECT delivered_at FROM outbox_events WHERE topic = 'tier.changed'"
                )
                return len(rows) == 4 and all(r["delivered_at"] for r in rows)

            await _until(
                all_delivered, 30, f"events not delivered after Redis returned:\n{worker.tail()}"
            )

            # The refused calls, sent again, go through and their jobs run.
            upload = await http.post(
                "/api/v1/imports",
                files={"file": ("outage.csv", IMPORT_CSV, "text/csv")},
                headers=admin,
            )
            assert upload.status_code == 202, upload.text
            import_id = upload.json()["id"]
            # The upload refused during the outage left its import failed ("not started");
            # this one resumes it rather than making a second.
            assert await conn.fetchval("SELECT count(*) FROM imports") == 1

            async def import_done():
                got = await http.get(f"/api/v1/imports/{import_id}", headers=admin)
                return got.json()["status"] in ("done", "failed") and got.json()

            finished = await _until(import_done, 30, "the import did not finish")
            assert finished["status"] == "done", finished
            assert finished["created"] == 2, finished
            send = await http.post(f"/api/v1/offers/{offer_id}/send", headers=admin)
            assert send.status_code == 202, send.text

            async def offer_sent():
                got = await http.get(f"/api/v1/offers/{offer_id}/results", headers=admin)
                body = got.json()
                return body["in_flight"] == 0 and body["delivered"].get("portal", 0) > 0 and body

            results = await _until(offer_sent, 30, "the offer was not sent")
            # Every member: 5, the newcomer of the outage, and the 2 imported after it.
            assert results["audience"] == results["delivered"]["portal"] == 8, results

        # --- exactly once, and nothing lost ---------------------------------------------
        rows = await conn.fetch(
            """
            SELECT m.id,
                   (SELECT count(*) FROM outbox_events o
                    WHERE o.member = m.id AND o.topic = 'tier.changed') AS events,
                   (SELECT count(*) FROM member_notifications n
                    WHERE n.member = m.id AND n.kind = 'tier.changed') AS notices,
                   (SELECT t.tier FROM member_tiers t WHERE t.member = m.id) AS tier
            FROM members m WHERE m.id = ANY($1::uuid[])
            """,
            members,
        )
        by_member = {str(r["id"]): r for r in rows}
        for member in members[:4]:
            row = by_member[member]
            assert (row["tier"], row["events"], row["notices"]) == ("silver", 1, 1), dict(row)
        assert by_member[members[4]]["events"] == 0
        # Each event was queued once: the relay runs that met no Redis left no trace.
        attempts = await conn.fetch(
            "SELECT attempts FROM outbox_events WHERE topic = 'tier.changed'"
        )
        assert [r["attempts"] for r in attempts] == [1, 1, 1, 1], attempts
        assert await _ledger_problems(conn) == []
        assert web.alive and worker.alive
        assert "unhandled error" not in web.log_path.read_text(), web.tail()
    finally:
        if conn is not None:
            await conn.close()
        web.stop()
        worker.stop()
