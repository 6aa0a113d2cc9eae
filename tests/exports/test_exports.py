"""CSV exports respect who is asking; the liability report values outstanding points by tier
and by expiry month."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from loyalty.infrastructure import db
from tests.helpers.purchases import purchase_body


def rows(response) -> list[dict]:
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))


async def test_member_export_only_holds_members_in_reach(client, admin, bearer):
    rep = await bearer("rep", username="rep_a", department="east")
    other = await bearer("rep", username="rep_b", department="east")
    await client.post("/api/v1/members", json={"name": "张伟 Mine"}, headers=rep)
    await client.post("/api/v1/members", json={"name": "Theirs"}, headers=other)
    mine = rows(await client.get("/api/v1/exports/members.csv", headers=rep))
    assert [r["name"] for r in mine] == ["张伟 Mine"] and mine[0]["assigned_rep"] == "rep_a"
    everything = rows(await client.get("/api/v1/exports/members.csv", headers=admin))
    assert {r["name"] for r in everything} == {"张伟 Mine", "Theirs"}
    marketing = await bearer("marketing")
    assert (await client.get("/api/v1/exports/members.csv", headers=marketing)).status_code == 403


async def test_ledger_export_for_a_period(client, admin, pos, member, bearer):
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    now = datetime.now(UTC)
    window = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }
    found = rows(await client.get("/api/v1/exports/ledger.csv", params=window, headers=admin))
    assert [(r["kind"], r["points"]) for r in found] == [("purchase_earn", "100")]
    later = {"from": (now + timedelta(hours=1)).isoformat()}
    assert rows(await client.get("/api/v1/exports/ledger.csv", params=later, headers=admin)) == []
    backwards = await client.get(
        "/api/v1/exports/ledger.csv",
        params={"from": window["to"], "to": window["from"]},
        headers=admin,
    )
    assert backwards.status_code == 422 and backwards.json()["field"] == "to"
    manager = await bearer("manager")
    assert (await client.get("/api/v1/exports/ledger.csv", headers=manager)).status_code == 403


async def test_points_liability_by_tier_and_expiry_month(client, admin, pos, member):
    await client.post(
        "/api/v1/purchases",
        json=purchase_body(member["id"], ("TV", 1, "6000.00", "general")),
        headers=pos,
    )
    await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"points": 500, "reason": "gift", "idempotency_key": "k"},
        headers=admin,
    )
    report = (
        await client.get("/api/v1/exports/liability?cost_per_point=0.02", headers=admin)
    ).json()
    # 6,000 x 1.0 (normal when bought; the purchase itself upgrades to silver) + 500.
    assert report["outstanding_points"] == 6500 and report["value"] == "130.00"
    assert [(t["tier"], t["outstanding"]) for t in report["by_tier"]] == [("silver", 6500)]
    assert sum(m["points"] for m in report["by_expiry_month"]) == 6500
    text = (await client.get("/api/v1/exports/liability.csv", headers=admin)).text
    assert "total,,,6500,65.00,CNY" in text  # the default 0.01 per point
    bad = await client.get("/api/v1/exports/liability?cost_per_point=-1", headers=admin)
    assert bad.status_code == 422


async def test_member_export_of_a_manager_leaves_out_another_departments_handover_queue(
    client, admin, bearer, make_staff
):
    """A manager exports the department and the pool, the same reach as the member
    endpoints: not a member waiting in another department's handover queue."""
    from loyalty.reps import handovers as reps

    north_rep = await bearer("rep", username="rep_north", department="north")
    created = await client.post(
        "/api/v1/members", json={"name": "North Customer"}, headers=north_rep
    )
    assert created.status_code == 201, created.text
    async with db.connection() as conn:
        rep_id = await conn.fetchval("SELECT id FROM staff WHERE username = 'rep_north'")
    assert await reps.hand_over(rep_id, reason="departure", department="north", by="test") == 1

    south_manager = await bearer("manager", username="mgr_south", department="south")
    listed = await client.get("/api/v1/members", headers=south_manager)
    assert listed.status_code == 200
    assert "North Customer" not in listed.text  # the member endpoints hide it
    exported = await client.get("/api/v1/exports/members.csv", headers=south_manager)
    names = [r["name"] for r in csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff")))]
    assert "North Customer" not in names
