"""Segments: counts from one SQL statement with bound parameters, saved segments, value
groups."""

from __future__ import annotations

from tests.helpers.marketing import buy, count, enrol


async def test_count_follows_each_condition(client, admin, pos, bearer):
    marketing = await bearer("marketing")
    a = await enrol(
        client,
        admin,
        "Big Spender",
        email="big@example.com",
        birthday="1980-03-15",
        tags=["vip"],
        address={"region": "Shanghai"},
        contact_preferences={
            "channels": ["email"],
            "consents": [{"channel": "email", "granted": True}],
        },
    )
    b = await enrol(client, admin, "Small Spender", birthday="1990-07-01", tags=["new"])
    await enrol(client, admin, "Never Bought")
    await buy(client, pos, a["id"], "6000.00", days_ago=5)
    await buy(client, pos, b["id"], "50.00", days_ago=100)

    assert await count(client, marketing) == 3
    assert await count(client, marketing, tiers=["silver"]) == 1
    assert await count(client, marketing, spend_min="1000") == 1
    assert await count(client, marketing, spend_max="100") == 2  # includes no purchases
    assert await count(client, marketing, purchases_min=1) == 2
    assert await count(client, marketing, purchases_min=1, window_days=30) == 1
    assert await count(client, marketing, days_since_purchase_min=30) == 2  # b and never
    assert await count(client, marketing, days_since_purchase_max=30) == 1
    assert await count(client, marketing, birthday_months=[3, 7]) == 2
    assert await count(client, marketing, regions=["Shanghai"]) == 1
    assert await count(client, marketing, tags=["vip", "other"]) == 1
    assert await count(client, marketing, consents=["email"]) == 1
    assert await count(client, marketing, consents=["email", "sms"]) == 0
    assert await count(client, marketing, points_min=1000) == 1
    assert await count(client, marketing, referrals_min=1) == 0
    assert await count(client, marketing, unassigned=True) == 3
    # Values travel as parameters: a quote is just a value.
    assert await count(client, marketing, tags=["x'); DROP TABLE members; --"]) == 0
    assert await count(client, marketing) == 3


async def test_bad_filters_are_refused(client, bearer):
    marketing = await bearer("marketing")
    for body, field in (
        ({"tiers": ["bronze"]}, "filter.tiers[0]"),
        ({"spend_min": "10", "spend_max": "5"}, "filter.spend_max"),
        ({"birthday_months": [13]}, None),
        ({"colour": "red"}, None),
    ):
        response = await client.post("/api/v1/segments/count", json=body, headers=marketing)
        assert response.status_code in (400, 422), response.text
        if field:
            assert response.json()["field"] == field


async def test_saved_segments_and_permissions(client, admin, bearer):
    marketing = await bearer("marketing")
    rep = await bearer("rep")
    await enrol(client, admin, "Someone", tags=["vip"])
    created = await client.post(
        "/api/v1/segments", json={"name": "VIPs", "filter": {"tags": ["vip"]}}, headers=marketing
    )
    assert created.status_code == 201, created.text
    segment = created.json()
    assert (
        segment["members"] == 1 and segment["filter"] == {"tags": ["vip"], "window_days": 365}
    ) or segment["filter"]["tags"] == ["vip"]
    changed = await client.put(
        f"/api/v1/segments/{segment['id']}", json={"filter": {"tags": ["none"]}}, headers=marketing
    )
    assert changed.status_code == 200 and changed.json()["members"] == 0
    assert changed.json()["name"] == "VIPs"
    listed = await client.get("/api/v1/segments", headers=marketing)
    assert [s["name"] for s in listed.json()] == ["VIPs"]
    assert (await client.get("/api/v1/segments", headers=rep)).status_code == 403
    assert (await client.post("/api/v1/segments/count", json={}, headers=rep)).status_code == 403


async def test_value_groups(client, admin, pos, bearer):
    marketing = await bearer("marketing")
    members = [await enrol(client, admin, f"M{i}") for i in range(10)]
    for i, m in enumerate(members[:8]):
        for k in range(i % 4 + 1):
            await buy(client, pos, m["id"], f"{100 * (i + 1)}.00", days_ago=10 + 30 * (i // 2) + k)
    response = await client.get("/api/v1/segments/value-groups", headers=marketing)
    assert response.status_code == 200, response.text
    data = response.json()
    assert [g["group"] for g in data["groups"]] == ["valuable", "rising", "declining", "at_risk"]
    assert sum(g["members"] for g in data["groups"]) == data["members"] == 10
    assert data["groups"][3]["members"] >= 2  # the two who never bought
    svg = await client.get("/api/v1/segments/value-groups.svg", headers=marketing)
    assert svg.status_code == 200 and svg.text.startswith("<svg")
