"""The audit trail: every staff change recorded with who, when and what; configuration with
before and after; append-only in the database; read, filtered and exported by admins and
general managers only."""

from __future__ import annotations

import csv
import io

import asyncpg
import pytest

from loyalty.auth import member_principal
from loyalty.infrastructure import db
from loyalty.members import privacy
from tests.helpers.members import merge
from tests.helpers.purchases import purchase_body
from tests.helpers.rewards import add_reward


async def trail(client, admin, **filters) -> list[dict]:
    response = await client.get("/api/v1/audit", params=filters, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


async def only(client, admin, action: str) -> dict:
    """The one record of `action` (it must be exactly one)."""
    found = [e for e in await trail(client, admin, action=action) if e["action"] == action]
    assert len(found) == 1, found
    return found[0]


async def settings_change(client, admin, path: str, **changes) -> None:
    current = (await client.get(path, headers=admin)).json()
    body = {k: v for k, v in current.items() if k not in ("updated_at", "updated_by")}
    response = await client.put(path, json={**body, **changes}, headers=admin)
    assert response.status_code == 200, response.text


async def test_the_trail_is_append_only_even_from_sql(client, admin):
    await settings_change(client, admin, "/api/v1/points/rules", pending_days=10)
    async with db.connection() as conn:
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("UPDATE audit_trail SET actor_label = 'someone else'")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("DELETE FROM audit_trail")
        assert await conn.fetchval("SELECT count(*) FROM audit_trail") >= 1


async def test_earning_rules_change_keeps_before_and_after(client, admin):
    await settings_change(client, admin, "/api/v1/points/rules", pending_days=10)
    entry = await only(client, admin, "earning_rules.update")
    assert entry["before"]["pending_days"] == 14 and entry["after"]["pending_days"] == 10
    assert entry["actor_kind"] == "staff" and entry["actor_label"].startswith("staff:admin")
    assert entry["request_id"]


@pytest.mark.parametrize(
    ("path", "action", "field", "value"),
    [
        ("/api/v1/tier-settings", "tier_settings.update", "grace_days", 45),
        ("/api/v1/rep-settings", "rep_settings.update", "daily_pool_cap", 3),
        ("/api/v1/referral-settings", "referral_settings.update", "monthly_cap", 7),
        ("/api/v1/marketing-settings", "marketing_settings.update", "frequency_cap", 5),
    ],
)
async def test_settings_changes_keep_before_and_after(client, admin, path, action, field, value):
    await settings_change(client, admin, path, **{field: value})
    entry = await only(client, admin, action)
    assert entry["before"][field] != value and entry["after"][field] == value


async def test_tier_change_keeps_before_and_after(client, admin):
    gold = next(
        t for t in (await client.get("/api/v1/tiers", headers=admin)).json() if t["code"] == "gold"
    )
    body = {
        k: gold[k]
        for k in ("name", "rank", "threshold", "earn_multiplier", "enabled", "service_level")
    }
    response = await client.put("/api/v1/tiers/gold", json={**body, "name": "Gold+"}, headers=admin)
    assert response.status_code == 200, response.text
    entry = await only(client, admin, "tiers.update")
    assert (entry["subject_type"], entry["subject_id"]) == ("tier", "gold")
    assert entry["before"]["name"] == "Gold" and entry["after"]["name"] == "Gold+"


async def test_staff_and_api_key_changes_hide_secrets(client, admin):
    created = await client.post(
        "/api/v1/staff", json={"username": "newrep", "role": "rep"}, headers=admin
    )
    staff_id = created.json()["staff"]["id"]
    [entry] = await trail(client, admin, action="staff.create", subject=staff_id)
    assert entry["subject_id"] == staff_id and entry["after"]["role"] == "rep"
    assert entry["after"]["password_hash"] == "(hidden)"
    await client.patch(f"/api/v1/staff/{staff_id}", json={"role": "service"}, headers=admin)
    entry = await only(client, admin, "staff.update")
    assert (entry["before"]["role"], entry["after"]["role"]) == ("rep", "service")
    assert entry["after"]["password_hash"] == "(hidden)"  # unchanged
    await client.patch(
        f"/api/v1/staff/{staff_id}", json={"password": "a new long passphrase 42"}, headers=admin
    )
    [entry, _] = await trail(client, admin, action="staff.update")
    assert (entry["before"]["password_hash"], entry["after"]["password_hash"]) == (
        "(hidden)",
        "(changed)",
    )
    await client.patch(f"/api/v1/staff/{staff_id}", json={"active": False}, headers=admin)
    entry = await only(client, admin, "staff.deactivate")
    assert (entry["before"]["active"], entry["after"]["active"]) == (True, False)

    key = await client.post(
        "/api/v1/api-keys", json={"name": "Till 4", "scopes": ["members:read"]}, headers=admin
    )
    key_id = key.json()["api_key"]["id"]
    entry = await only(client, admin, "api_keys.create")
    assert entry["after"]["name"] == "Till 4" and entry["after"]["key_hash"] == "(hidden)"
    assert key.json()["key"] not in str(entry)
    await client.delete(f"/api/v1/api-keys/{key_id}", headers=admin)
    entry = await only(client, admin, "api_keys.revoke")
    assert entry["subject_id"] == key_id and entry["after"]["revoked_at"]


async def test_rewards_and_vouchers_are_recorded(client, admin):
    reward = await add_reward(client, admin, kind="voucher", voucher_source="pool")
    entry = await only(client, admin, "rewards.create")
    assert entry["subject_id"] == reward["id"] and entry["after"]["points_cost"] == 100
    await client.patch(f"/api/v1/rewards/{reward['id']}", json={"points_cost": 150}, headers=admin)
    entry = await only(client, admin, "rewards.update")
    assert (entry["before"]["points_cost"], entry["after"]["points_cost"]) == (100, 150)
    await client.post(
        f"/api/v1/rewards/{reward['id']}/vouchers", json={"codes": ["SECRET-1"]}, headers=admin
    )
    entry = await only(client, admin, "rewards.vouchers_import")
    assert entry["after"]["imported"] == 1 and "SECRET-1" not in str(entry)


async def test_webhook_changes_keep_before_and_after_without_the_secret(client, admin):
    created = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://example.com/hook", "events": ["member.enrolled"]},
        headers=admin,
    )
    subscription = created.json()["subscription"]
    entry = await only(client, admin, "webhooks.create")
    assert entry["after"]["secret"] == "(hidden)"
    await client.patch(
        f"/api/v1/webhooks/{subscription['id']}", json={"active": False}, headers=admin
    )
    entry = await only(client, admin, "webhooks.update")
    assert (entry["before"]["active"], entry["after"]["active"]) == (True, False)


async def test_adjustment_merge_closure_and_reassignment_are_recorded(
    client, admin, bearer, make_staff
):
    # Enrolled by a rep, so the move below is a transfer between reps (not from the pool).
    first_rep = await bearer("rep", username="repone", department="east")
    survivor = (await client.post("/api/v1/members", json={"name": "A"}, headers=first_rep)).json()
    duplicate = (await client.post("/api/v1/members", json={"name": "B"}, headers=admin)).json()
    await client.post(
        f"/api/v1/members/{survivor['id']}/points/adjustments",
        json={"points": 25, "reason": "goodwill"},
        headers=admin,
    )
    entry = await only(client, admin, "points.adjust")
    assert entry["subject_id"] == survivor["id"] and entry["after"]["points"] == 25
    assert entry["summary"] == "goodwill"

    await merge(client, admin, survivor["id"], duplicate["id"])
    entry = await only(client, admin, "members.merge")
    assert entry["before"]["duplicate_id"] == duplicate["id"]

    rep = await make_staff("reptwo", "rep", "east")
    moved = await client.put(
        f"/api/v1/members/{survivor['id']}/assignment",
        json={"rep_id": str(rep.id), "reason": "closer"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    entry = await only(client, admin, "assignments.transfer")
    assert entry["subject_id"] == survivor["id"] and entry["after"]["rep"] == str(rep.id)
    assert entry["before"] == {survivor["id"]: survivor["assigned_rep_id"]}

    await privacy.request_closure(member_principal(survivor["id"], survivor["number"]), "bye")
    pending = (await client.get("/api/v1/closure-requests?status=pending", headers=admin)).json()
    await client.post(f"/api/v1/closure-requests/{pending[0]['id']}/reject", headers=admin)
    entry = await only(client, admin, "closures.reject")
    assert (entry["before"]["status"], entry["after"]["status"]) == ("pending", "rejected")


async def test_other_staff_writes_get_a_generic_record_and_reads_none(client, admin):
    member = (await client.post("/api/v1/members", json={"name": "Li"}, headers=admin)).json()
    entry = await only(client, admin, "POST /api/v1/members")
    assert entry["subject_id"] is None
    await client.patch(f"/api/v1/members/{member['id']}", json={"name": "Li Lei"}, headers=admin)
    entry = await only(client, admin, "PATCH /api/v1/members/{member_id}")
    assert (entry["subject_type"], entry["subject_id"]) == ("member", member["id"])
    refused = await client.patch(
        f"/api/v1/members/{member['id']}", json={"name": ""}, headers=admin
    )
    assert refused.status_code in (400, 422)
    assert len(await trail(client, admin, action="PATCH /api/v1/members")) == 1
    assert await trail(client, admin, action="GET") == []


async def test_a_failed_change_leaves_no_record(client, admin):
    response = await client.put(
        "/api/v1/points/rules",
        json={
            "points_per_unit": "0",
            "category_multipliers": {},
            "pending_days": 1,
            "expiry_months": 1,
        },
        headers=admin,
    )
    assert response.status_code == 422
    assert await trail(client, admin, action="earning_rules") == []


async def test_filters_and_csv(client, admin, bearer):
    other = await bearer("admin", username="otheradmin")
    await settings_change(client, admin, "/api/v1/points/rules", pending_days=10)
    await settings_change(client, other, "/api/v1/tier-settings", grace_days=40)
    by_other = await trail(client, admin, actor="otheradmin")
    assert [e["action"] for e in by_other] == ["tier_settings.update"]
    assert [e["action"] for e in await trail(client, admin, action="earning_rules")] == [
        "earning_rules.update"
    ]
    assert [e["action"] for e in await trail(client, admin, subject="tier_settings")] == [
        "tier_settings.update"
    ]
    assert await trail(client, admin, **{"from": "2999-01-01T00:00:00Z"}) == []
    bad = await client.get("/api/v1/audit", params={"from": "yesterday"}, headers=admin)
    assert bad.status_code == 400

    response = await client.get("/api/v1/audit.csv", params={"actor": "otheradmin"}, headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["action"], r["actor_label"]) for r in rows] == [
        ("tier_settings.update", "staff:otheradmin")
    ]
    assert '"grace_days": 40' in rows[0]["after"] or '"grace_days":40' in rows[0]["after"]


@pytest.mark.parametrize("role", ["manager", "rep", "service", "marketing"])
async def test_only_admins_and_general_managers_read_the_trail(client, bearer, role):
    headers = await bearer(role, department="east")
    assert (await client.get("/api/v1/audit", headers=headers)).status_code == 403
    assert (await client.get("/api/v1/audit.csv", headers=headers)).status_code == 403


async def test_general_manager_reads_the_trail(client, bearer):
    headers = await bearer("general_manager")
    assert (await client.get("/api/v1/audit", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/audit")).status_code == 401


async def test_an_api_key_is_the_actor_and_sales_get_no_generic_record(client, admin, pos):
    member = (await client.post("/api/v1/members", json={"name": "Till"}, headers=pos)).json()
    [entry] = await trail(client, admin, action="POST /api/v1/members")
    assert (entry["actor_kind"], entry["actor_label"]) == ("api_key", "api_key:POS")
    sold = await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    assert sold.status_code == 201, sold.text
    assert await trail(client, admin, action="POST /api/v1/purchases") == []


async def test_odd_filters_are_answered_never_a_500(client, admin):
    for params in (
        {"actor": "%"},
        {"actor": "_\\"},
        {"action": "' OR 1=1 --"},
        {"subject": "x" * 200},
        {"from": "2026-01-01T00:00:00+08:00", "to": "2026-01-01T00:00:00+08:00"},
        {"limit": "0"},
        {"offset": "100001"},
        {"actor": "x" * 201},
        {"to": "10000-01-01T00:00:00Z"},
    ):
        for path in ("/api/v1/audit", "/api/v1/audit.csv"):
            response = await client.get(path, params=params, headers=admin)
            assert response.status_code in (200, 400, 422), (path, params, response.text)
    assert await trail(client, admin, actor="%") == []  # a literal percent sign: nobody
    same = await client.get(
        "/api/v1/audit",
        params={"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=admin,
    )
    assert same.status_code == 422 and same.json()["field"] == "to"


async def test_a_job_acts_as_the_system(client, admin, bearer):
    from datetime import UTC, date, datetime

    from loyalty.reps import reclaim

    rep = await bearer("rep", username="quietrep", department="east")
    member = (await client.post("/api/v1/members", json={"name": "Quiet"}, headers=rep)).json()
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE assignments SET started_at = $2 WHERE member = $1::uuid",
            member["id"],
            datetime(2026, 1, 10, 3, tzinfo=UTC),
        )
    assert (await reclaim.reclaim_members(date(2026, 4, 1))).reclaimed == 1
    [entry] = await trail(client, admin, action="assignments.")
    assert (entry["actor_kind"], entry["actor_label"]) == ("system", "system")
    assert entry["subject_id"] == member["id"] and entry["after"]["rep"] is None
    assert entry["before"] == {member["id"]: member["assigned_rep_id"]}
