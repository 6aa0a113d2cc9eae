"""Ledger: adjustments, statements, batches, the database's own guards, pending release and
expiry jobs run by a real arq worker, and merging members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from loyalty.infrastructure import db
from loyalty.infrastructure.db import engine
from loyalty.points.tables import LedgerEntry, PointsAccount, Purchase
from loyalty.workflows import sales
from tests.helpers.purchases import purchase_body


async def run_jobs(app, settings, *names: str) -> None:
    from loyalty.worker import create_worker

    for i, name in enumerate(names):
        await app.state.redis.enqueue_job(name, _job_id=f"{name}-{i}")
    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker.jobs_failed == 0


async def test_adjustments_need_a_manager_and_a_reason(client, bearer, member, balance_of):
    url = f"/api/v1/members/{member['id']}/points/adjustments"
    rep = await bearer("rep")
    assert (
        await client.post(url, json={"points": 50, "reason": "goodwill"}, headers=rep)
    ).status_code == 403
    manager = await bearer("admin")
    missing = await client.post(url, json={"points": 50}, headers=manager)
    assert missing.status_code == 400 and missing.json()["field"] == "reason"
    body = {"points": 50, "reason": "late delivery goodwill", "idempotency_key": "ticket-991"}
    created = await client.post(url, json=body, headers=manager)
    assert created.status_code == 201
    entry = created.json()["entry"]
    assert entry["kind"] == "adjustment" and entry["note"] == "late delivery goodwill"
    assert entry["actor"].startswith("staff:admin")
    replay = await client.post(url, json=body, headers=manager)
    assert replay.status_code == 200 and replay.json()["entry"]["id"] == entry["id"]
    balance = await balance_of(member["id"])
    assert balance["available"] == 50 and balance["total"] == 50
    clash = await client.post(url, json={**body, "points": 60}, headers=manager)
    assert clash.status_code == 409


async def test_deduction_beyond_balance_becomes_debt(client, admin, member, balance_of):
    url = f"/api/v1/members/{member['id']}/points/adjustments"
    await client.post(url, json={"points": 30, "reason": "welcome gift"}, headers=admin)
    await client.post(url, json={"points": -50, "reason": "clawback of a fraud"}, headers=admin)
    balance = await balance_of(member["id"])
    assert balance["available"] == 0 and balance["debt"] == 20 and balance["total"] == -20


async def test_statement_is_newest_first_filtered_and_paginated(client, pos, admin, member):
    for _ in range(5):
        await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"points": 7, "reason": "birthday"},
        headers=admin,
    )
    url = f"/api/v1/members/{member['id']}/points/entries"
    first = (await client.get(url, params={"limit": 4}, headers=admin)).json()
    assert next(e["kind"] for e in first["items"]) == "adjustment"
    second = (
        await client.get(url, params={"limit": 4, "cursor": first["next_cursor"]}, headers=admin)
    ).json()
    assert len(first["items"]) == 4 and len(second["items"]) == 2 and second["next_cursor"] is None
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert len(set(ids)) == 6
    only_purchases = (await client.get(url, params={"kind": "purchase_earn"}, headers=admin)).json()
    assert {e["kind"] for e in only_purchases["items"]} == {"purchase_earn"}
    assert len(only_purchases["items"]) == 5
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await client.get(url, params={"since": future}, headers=admin)).json()["items"] == []
    bad = await client.get(url, params={"kind": "gift"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["field"] == "kind"
    bad_cursor = await client.get(url, params={"cursor": "garbage"}, headers=admin)
    assert bad_cursor.status_code == 422


async def test_a_big_batch_posts_in_member_order_chunks_with_answers_in_its_own_order(
    client, pos, admin, member, balance_of, monkeypatch
):
    monkeypatch.setattr(sales, "BATCH_CHUNK", 3)
    other = (await client.post("/api/v1/members", json={"name": "Li Na"}, headers=admin)).json()
    mine = [
        purchase_body(member["id"], ("A", 1, f"{10 * (i + 1)}.00", "general")) for i in range(5)
    ]
    theirs = [purchase_body(other["id"], ("B", 1, f"{i + 1}.00", "general")) for i in range(4)]
    twice = {**mine[0]}
    # One external_id twice with different bodies: the first in posting order is posted,
    # even though the second names a member that comes first in member order.
    low, high = sorted([member["id"], other["id"]])
    original = purchase_body(high, ("C", 1, "7.00", "general"))
    copy = {
        **purchase_body(low, ("C", 1, "8.00", "general")),
        "external_id": original["external_id"],
    }
    unknown = purchase_body("00000000-0000-4000-8000-000000000000")
    batch = [
        theirs[0],
        original,
        mine[0],
        theirs[1],
        mine[1],
        unknown,
        mine[2],
        theirs[2],
        mine[3],
        twice,
        theirs[3],
        mine[4],
        copy,
    ]
    response = await client.post("/api/v1/purchases/batch", json={"purchases": batch}, headers=pos)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["index"] for i in items] == list(range(len(batch)))
    assert [i["external_id"] for i in items] == [b["external_id"] for b in batch]
    assert [i["status"] for i in items] == [
        201,
        201,
        201,
        201,
        201,
        422,
        201,
        201,
        201,
        200,
        201,
        201,
        409,
    ]
    seven = {high: 7, low: 0}
    assert (await balance_of(member["id"]))["total"] == 150 + seven[member["id"]]
    assert (await balance_of(other["id"]))["total"] == 10 + seven[other["id"]]
    # Posted in several transactions (purchases share their transaction's start).
    assert await Purchase.count(distinct=[Purchase.created_at]) > 1


async def test_batch_applies_items_independently(client, pos, member, balance_of):
    good = purchase_body(member["id"])
    bad_total = {**purchase_body(member["id"]), "total": "1.00"}
    wrong_type = {**purchase_body(member["id"]), "lines": "many"}
    response = await client.post(
        "/api/v1/purchases/batch",
        json={"purchases": [good, bad_total, wrong_type, good]},
        headers=pos,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert [i["status"] for i in result["items"]] == [201, 422, 400, 200]
    assert result["items"][1]["problem"]["field"] == "total"
    assert result["items"][2]["problem"]["field"] == "lines"
    assert (result["created"], result["replayed"], result["failed"]) == (1, 1, 2)
    assert (await balance_of(member["id"]))["total"] == 100


async def test_batch_of_1001_is_refused_whole(client, pos, member):
    body = purchase_body(member["id"])
    response = await client.post(
        "/api/v1/purchases/batch", json={"purchases": [body] * 1001}, headers=pos
    )
    assert response.status_code == 400 and response.json()["field"] == "purchases"
    assert await LedgerEntry.count() == 0


async def test_ledger_entries_cannot_be_updated_or_deleted(client, pos, member):
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    with pytest.raises(asyncpg.exceptions.RestrictViolationError, match="append-only"):
        await engine.run_ddl("UPDATE points_ledger SET points = 1000000")
    with pytest.raises(asyncpg.exceptions.RestrictViolationError, match="append-only"):
        await engine.run_ddl("DELETE FROM points_ledger")
    assert (await LedgerEntry.select(LedgerEntry.points).first())["points"] == 100


async def test_database_refuses_a_balance_that_disagrees_with_the_ledger(client, pos, member):
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    with pytest.raises(asyncpg.exceptions.CheckViolationError, match="out of balance"):
        await engine.run_ddl("UPDATE points_accounts SET pending = pending + 500")
    with pytest.raises(asyncpg.exceptions.CheckViolationError):
        await engine.run_ddl("UPDATE points_accounts SET available = -1, pending = pending + 1")
    # Checked at commit, on the row as it is then: out of balance for a moment is fine,
    # out of balance at the end is not, however balanced it was on the way.
    async with db.transaction() as conn:
        await conn.execute("UPDATE points_accounts SET pending = pending + 500")
        await conn.execute("UPDATE points_accounts SET pending = pending - 500")
    with pytest.raises(asyncpg.exceptions.CheckViolationError, match="out of balance"):
        async with db.transaction() as conn:
            await conn.execute("UPDATE points_accounts SET pending = pending")
            await conn.execute("UPDATE points_accounts SET pending = pending + 1")
    assert (await PointsAccount.select(PointsAccount.pending).first())["pending"] == 100


async def test_release_job_makes_points_available_once(
    app, settings, client, pos, member, balance_of
):
    await client.post(
        "/api/v1/purchases", json=purchase_body(member["id"], days_ago=15), headers=pos
    )
    await client.post(
        "/api/v1/purchases", json=purchase_body(member["id"], days_ago=1), headers=pos
    )
    # Posted late (a nightly upload): the 15-day-old purchase is already past its window.
    balance = await balance_of(member["id"])
    assert (balance["available"], balance["pending"]) == (100, 100)
    await engine.run_ddl(
        "UPDATE points_lots SET available_at = now() - interval '1 minute' WHERE NOT released"
    )
    await run_jobs(app, settings, "release_pending_points", "release_pending_points")
    balance = await balance_of(member["id"])
    assert (balance["available"], balance["pending"], balance["total"]) == (200, 0, 200)


async def test_expiry_job_expires_oldest_first_once(app, settings, client, pos, member, balance_of):
    old = purchase_body(member["id"], ("OLD", 1, "100.00", "general"), days_ago=740)
    newer = purchase_body(member["id"], ("NEW", 1, "40.00", "general"), days_ago=700)
    await client.post("/api/v1/purchases", json=old, headers=pos)
    await client.post("/api/v1/purchases", json=newer, headers=pos)
    balance = await balance_of(member["id"])
    assert balance["expiring"]["within_30_days"] == 140  # old is overdue, newer due in ~30 days
    await run_jobs(app, settings, "expire_points", "expire_points")
    balance = await balance_of(member["id"])
    assert balance["available"] == 40 and balance["total"] == 40
    expiries = await LedgerEntry.select().where(LedgerEntry.kind == "expiry")
    assert [e["points"] for e in expiries] == [-100]


async def test_merge_moves_points_purchases_and_history(client, pos, admin, balance_of):
    survivor = (
        await client.post(
            "/api/v1/members", json={"name": "Liu Yang", "phone": "13700001111"}, headers=admin
        )
    ).json()
    duplicate = (
        await client.post(
            "/api/v1/members", json={"name": "Liu Yang", "email": "ly@example.com"}, headers=admin
        )
    ).json()
    dup_purchase = purchase_body(duplicate["id"], ("X", 1, "80.00", "general"))
    await client.post("/api/v1/purchases", json=dup_purchase, headers=pos)
    await client.post("/api/v1/purchases", json=purchase_body(survivor["id"]), headers=pos)
    rep = await client.post(
        f"/api/v1/members/{survivor['id']}/merge",
        json={"duplicate_id": duplicate["id"], "reason": "same person"},
        headers=await _manager(client, admin),
    )
    assert rep.status_code == 403
    response = await client.post(
        f"/api/v1/members/{survivor['id']}/merge",
        json={"duplicate_id": duplicate["id"], "reason": "same person, two sign-ups"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["points_moved"] == 80 and result["purchases_moved"] == 1
    assert result["survivor"]["email"] == "ly@example.com"
    assert (await balance_of(survivor["id"]))["total"] == 180
    assert (await balance_of(duplicate["id"]))["total"] == 0
    entries = (
        await client.get(f"/api/v1/members/{survivor['id']}/points/entries", headers=admin)
    ).json()
    kinds = sorted(e["kind"] for e in entries["items"])
    assert kinds == ["purchase_earn", "purchase_earn", "transfer", "transfer"]
    # The duplicate's purchase can still be returned, and now reverses on the survivor.
    ret = await client.post(
        f"/api/v1/purchases/{dup_purchase['external_id']}/returns",
        json={"return_id": "R-DUP", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert ret.status_code == 201 and ret.json()["member_id"] == survivor["id"]
    assert (await balance_of(survivor["id"]))["total"] == 100
    # Purchases naming the duplicate land on the survivor.
    late = await client.post("/api/v1/purchases", json=purchase_body(duplicate["id"]), headers=pos)
    assert late.json()["member_id"] == survivor["id"]
    history = (await client.get(f"/api/v1/members/{survivor['id']}/changes", headers=admin)).json()
    assert history[0]["action"] == "merge" and history[0]["changes"]["reason"].startswith(
        "same person"
    )
    again = await client.post(
        f"/api/v1/members/{survivor['id']}/merge",
        json={"duplicate_id": duplicate["id"], "reason": "again"},
        headers=admin,
    )
    assert again.status_code == 409


async def test_a_merge_moves_the_duplicates_purchase_lines_and_returns(client, pos, admin):
    survivor = (
        await client.post("/api/v1/members", json={"name": "Wu Fang"}, headers=admin)
    ).json()
    duplicate = (await client.post("/api/v1/members", json={"name": "Wu F."}, headers=admin)).json()
    bystander = (await client.post("/api/v1/members", json={"name": "Zhou"}, headers=admin)).json()
    bought = purchase_body(duplicate["id"], ("X", 1, "30.00", "general"), ("Y", 2, "5.00", "toy"))
    assert (await client.post("/api/v1/purchases", json=bought, headers=pos)).status_code == 201
    other = purchase_body(bystander["id"])
    assert (await client.post("/api/v1/purchases", json=other, headers=pos)).status_code == 201
    returned = await client.post(
        f"/api/v1/purchases/{bought['external_id']}/returns",
        json={"return_id": "R-BEFORE-MERGE", "lines": [{"line_no": 2, "quantity": 1}]},
        headers=pos,
    )
    assert returned.status_code == 201, returned.text
    merged = await client.post(
        f"/api/v1/members/{survivor['id']}/merge",
        json={"duplicate_id": duplicate["id"], "reason": "same person"},
        headers=admin,
    )
    assert merged.status_code == 200, merged.text
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT 'line' AS kind, member FROM purchase_lines"
            " UNION ALL SELECT 'return', member FROM purchase_returns"
        )
    owners = sorted((row["kind"], str(row["member"])) for row in rows)
    mine = [("line", survivor["id"]), ("line", survivor["id"]), ("return", survivor["id"])]
    assert owners == sorted([*mine, ("line", bystander["id"])])


async def _manager(client, admin) -> dict:
    await client.post(
        "/api/v1/staff",
        json={"username": "mgr", "role": "manager", "password": "correct-horse-battery-staple-42"},
        headers=admin,
    )
    token = (
        await client.post(
            "/api/v1/auth/tokens",
            json={"username": "mgr", "password": "correct-horse-battery-staple-42"},
        )
    ).json()["token"]
    return {"Authorization": f"Bearer {token}"}


async def test_merge_racing_purchases_loses_nothing(client, pos, admin, balance_of):
    import asyncio

    survivor = (await client.post("/api/v1/members", json={"name": "A"}, headers=admin)).json()
    duplicate = (await client.post("/api/v1/members", json={"name": "A2"}, headers=admin)).json()
    bodies = [purchase_body(duplicate["id"], ("X", 1, "10.00", "general")) for _ in range(15)]
    merge = client.post(
        f"/api/v1/members/{survivor['id']}/merge",
        json={"duplicate_id": duplicate["id"], "reason": "duplicate"},
        headers=admin,
    )
    results = await asyncio.gather(
        *(client.post("/api/v1/purchases", json=b, headers=pos) for b in bodies[:8]),
        merge,
        *(client.post("/api/v1/purchases", json=b, headers=pos) for b in bodies[8:]),
    )
    assert all(r.status_code in (200, 201) for r in results), [r.text for r in results]
    assert (await balance_of(survivor["id"]))["total"] == 150
    assert (await balance_of(duplicate["id"]))["total"] == 0


def test_member_order_chunks_keep_each_members_purchases_together_from_a_random_start(
    monkeypatch,
):
    from types import SimpleNamespace
    from uuid import UUID

    monkeypatch.setattr(sales, "BATCH_CHUNK", 4)
    members = [UUID(int=n) for n in range(1, 8)]
    items = [
        sales.Sale(
            index, SimpleNamespace(external_id=f"p{index}", member_id=members[index * 5 % 7])
        )
        for index in range(40)
    ] + [sales.Sale(40 + n, SimpleNamespace(external_id=f"n{n}", member_id=None)) for n in range(6)]
    # The members as resolved (by id, number or phone); the last six match no member.
    members_of = {item.index: item.data.member_id for item in items if item.data.member_id}
    first_members = set()
    for _ in range(30):
        chunks = sales._in_member_order_chunks(items, members_of)
        posted = [item.index for chunk in chunks for item in chunk]
        assert sorted(posted) == list(range(len(items)))
        unmatched = [item.index for item in items if item.data.member_id is None]
        assert posted[-len(unmatched) :] == unmatched
        for member in members:
            holding = [c for c in chunks if any(i.data.member_id == member for i in c)]
            assert len(holding) == 1, "a member's purchases are split across transactions"
            theirs = [i.index for i in holding[0] if i.data.member_id == member]
            assert theirs == sorted(theirs)
        first_members.add(chunks[0][0].data.member_id)
    assert len(first_members) > 1, "every batch starts at the same member"


async def test_adjustment_replay_with_a_different_reason_is_a_conflict(client, admin, member):
    """A key reused with the same points but another reason is another correction, not a
    replay of the first: 409, as for purchases and returns (a replay would drop it)."""
    url = f"/api/v1/members/{member['id']}/points/adjustments"
    first = await client.post(
        url,
        json={"points": 50, "reason": "late delivery, order 1", "idempotency_key": "t-1"},
        headers=admin,
    )
    assert first.status_code == 201
    second = await client.post(
        url,
        json={"points": 50, "reason": "broken cup, order 2", "idempotency_key": "t-1"},
        headers=admin,
    )
    assert second.status_code == 409, second.json()
