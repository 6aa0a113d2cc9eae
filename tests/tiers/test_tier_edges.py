"""Tier edges: the points basis at the purchase, the top tier's grace ended by spending,
purchases dated a little ahead, cancelled redemptions under the points basis, and merged
duplicates off the ladder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty.tiers import evaluation
from tests.helpers.purchases import purchase_body

DAY = timedelta(days=1)


@pytest.fixture
def tier_of(client, admin):
    async def get(member_id: str) -> dict:
        response = await client.get(f"/api/v1/members/{member_id}/tier", headers=admin)
        assert response.status_code == 200, response.text
        return response.json()

    return get


async def new_member(client, admin, name="Review Tier") -> str:
    return (await client.post("/api/v1/members", json={"name": name}, headers=admin)).json()["id"]


async def post(client, pos, body) -> dict:
    response = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert response.status_code == 201, response.text
    return response.json()


async def return_lines(client, pos, external_id: str, return_id: str, *line_nos: int) -> None:
    response = await client.post(
        f"/api/v1/purchases/{external_id}/returns",
        json={"return_id": return_id, "lines": [{"line_no": n, "quantity": 1} for n in line_nos]},
        headers=pos,
    )
    assert response.status_code == 201, response.text


# --- 1. points_earned basis: the purchase path counts money, not points -------------------


async def test_points_basis_upgrade_at_once_counts_points(client, admin, pos, tier_of):
    response = await client.put(
        "/api/v1/tier-settings",
        json={"basis": "points_earned", "window_months": 12, "grace_days": 30},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    member = await new_member(client, admin)
    await post(client, pos, purchase_body(member, ("A", 1, "5000.00", "general")))
    assert (await tier_of(member))["tier"] == "silver"  # 5,000 points
    crossing = await post(client, pos, purchase_body(member, ("B", 1, "14000.00", "general")))
    assert crossing["points"] == 15400  # silver earns 1.1x: 20,400 points in the window
    status = await tier_of(member)
    assert status["basis"] == "points_earned" and status["qualifying_value"] == "20400.00"
    # The purchase that crossed 20,000 points upgrades at once (not at the next evaluation).
    assert status["tier"] == "gold", status


# --- 2. a top-tier member spending back above the threshold keeps the grace ---------------


async def test_top_tier_spending_back_above_cancels_the_grace(client, admin, pos, tier_of):
    member = await new_member(client, admin)
    body = purchase_body(
        member, ("A", 1, "19000.00", "general"), ("B", 1, "2000.00", "general"), days_ago=100
    )
    await post(client, pos, body)
    assert (await tier_of(member))["tier"] == "gold"
    await return_lines(client, pos, body["external_id"], "R-TOP", 2)  # 19,000: below gold
    assert (await evaluation.evaluate()).grace_started == 1
    assert (await tier_of(member))["below_threshold_since"] is not None
    await post(client, pos, purchase_body(member, ("C", 1, "1500.00", "general")))
    status = await tier_of(member)
    assert status["qualifying_value"] == "20500.00" and status["tier"] == "gold"
    # "Spending back above the threshold cancels the grace" (as it does for silver).
    assert status["below_threshold_since"] is None, status
    assert status["downgrade_possible_from"] is None


async def test_top_tier_grace_not_cancelled_leads_to_downgrade_without_new_grace(
    client, admin, pos, tier_of
):
    member = await new_member(client, admin)
    old = purchase_body(member, ("OLD", 1, "6000.00", "general"), days_ago=360)
    await post(client, pos, old)
    newer = purchase_body(
        member, ("A", 1, "13000.00", "general"), ("B", 1, "2000.00", "general"), days_ago=300
    )
    await post(client, pos, newer)
    assert (await tier_of(member))["tier"] == "gold"  # 21,000
    await return_lines(client, pos, newer["external_id"], "R-TOP2", 2)  # 19,000
    now = datetime.now(UTC)
    assert (await evaluation.evaluate(at=now - 29 * DAY)).grace_started == 1  # grace from day -29
    # Back above gold today: 20,500, so the grace is over.
    await post(client, pos, purchase_body(member, ("C", 1, "1500.00", "general")))
    assert (await tier_of(member))["qualifying_value"] == "20500.00"
    # Six days on, the 360-day-old purchase has left the window: 14,500, below gold again.
    # That starts a new 30-day grace; the member must not be downgraded on the spot.
    result = await evaluation.evaluate(at=now + 6 * DAY)
    assert result.downgraded == 0, result
    status = await tier_of(member)
    assert status["tier"] == "gold"


# --- 3. a crossing purchase stamped a little ahead (accepted clock skew) ------------------


async def test_crossing_purchase_with_accepted_clock_skew_upgrades_at_once(
    client, admin, pos, tier_of
):
    member = await new_member(client, admin)
    body = purchase_body(member, ("ITEM", 1, "5000.00", "general"))
    # The POS clock is two minutes ahead: accepted (the API allows 5 minutes of skew).
    body["occurred_at"] = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    await post(client, pos, body)
    status = await tier_of(member)
    assert status["tier"] == "silver", status


# --- 4. points_earned basis: a cancelled redemption counts as points earned ---------------


async def test_points_basis_cancelled_redemption_is_not_qualifying(client, admin, tier_of):
    response = await client.put(
        "/api/v1/tier-settings",
        json={"basis": "points_earned", "window_months": 12, "grace_days": 30},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    member = await new_member(client, admin)
    gift = await client.post(
        f"/api/v1/members/{member}/points/adjustments",
        json={"points": 6000, "reason": "welcome gift", "idempotency_key": f"{member}-gift"},
        headers=admin,
    )
    assert gift.status_code == 201, gift.text
    assert (await tier_of(member))["qualifying_value"] == "0.00"  # adjustments do not count
    reward = await client.post(
        "/api/v1/rewards",
        json={"name": "Tea set", "kind": "goods", "points_cost": 6000},
        headers=admin,
    )
    assert reward.status_code == 201, reward.text
    made = await client.post(
        f"/api/v1/members/{member}/redemptions",
        json={"reward_id": reward.json()["id"], "quantity": 1, "idempotency_key": "k1"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    cancelled = await client.post(
        f"/api/v1/redemptions/{made.json()['id']}/cancel",
        json={"reason": "changed mind"},
        headers=admin,
    )
    assert cancelled.status_code == 200, cancelled.text
    # Giving back spent points is not earning: nothing was earned, nothing qualifies.
    assert (await tier_of(member))["qualifying_value"] == "0.00"
    await evaluation.evaluate()
    assert (await tier_of(member))["tier"] == "normal"


# --- 5. merged duplicates stay on the ladder ---------------------------------------------


async def test_simulation_does_not_count_merged_duplicates(client, admin, pos):
    survivor = await new_member(client, admin, "Survivor")
    duplicate = await new_member(client, admin, "Duplicate")
    await post(client, pos, purchase_body(duplicate, ("A", 1, "6000.00", "general")))
    merged = await client.post(
        f"/api/v1/members/{survivor}/merge",
        json={"duplicate_id": duplicate, "reason": "same person"},
        headers=admin,
    )
    assert merged.status_code in (200, 201), merged.text
    ladder = [
        {"code": "normal", "rank": 0, "threshold": "0"},
        {"code": "silver", "rank": 1, "threshold": "5000"},
        {"code": "gold", "rank": 2, "threshold": "20000"},
    ]
    response = await client.post("/api/v1/tiers/simulate", json={"tiers": ladder}, headers=admin)
    assert response.status_code == 200, response.text
    # One member is left (the survivor, now silver); the merged record is not a member.
    assert response.json()["members"] == 1, response.json()
    assert response.json()["by_tier_now"] == {"silver": 1}
