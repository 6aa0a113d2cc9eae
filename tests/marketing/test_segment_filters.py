"""The filters the segment builder added: value group, lifecycle stage; and the count's
breakdown by tier and by the channel an offer reaches the members on."""

from __future__ import annotations

from tests.helpers.marketing import buy, count, enrol

EMAIL_CONSENT = {"channels": ["email"], "consents": [{"channel": "email", "granted": True}]}


async def test_value_group_and_lifecycle_stage_select_members(client, admin, pos, bearer):
    marketing = await bearer("marketing")
    members = [await enrol(client, admin, f"M{i}") for i in range(10)]
    for i, m in enumerate(members[:8]):
        for k in range(i % 4 + 1):
            await buy(client, pos, m["id"], f"{100 * (i + 1)}.00", days_ago=10 + 30 * (i // 2) + k)
    groups = (await client.get("/api/v1/segments/value-groups", headers=marketing)).json()
    by_group = {g["group"]: g["members"] for g in groups["groups"]}
    for name, expected in by_group.items():
        assert await count(client, marketing, value_groups=[name]) == expected, name
    assert await count(client, marketing, value_groups=["valuable", "rising"]) == (
        by_group["valuable"] + by_group["rising"]
    )
    assert await count(client, marketing, value_groups=list(by_group)) == 10

    # First purchase within three months: new customers (M0-M5); bought within six months:
    # regular (M6, M7, first bought over 100 days ago); never bought: prospects.
    assert await count(client, marketing, lifecycle_stages=["prospect_without_intent"]) == 2
    assert await count(client, marketing, lifecycle_stages=["new_customer"]) == 6
    assert await count(client, marketing, lifecycle_stages=["regular"]) == 2
    assert await count(client, marketing, lifecycle_stages=["lapsing", "lost"]) == 0
    # Never bought: at risk and prospects at once.
    assert (
        await count(
            client,
            marketing,
            lifecycle_stages=["prospect_without_intent"],
            value_groups=["at_risk"],
        )
        == 2
    )


async def test_unknown_groups_and_stages_are_refused_naming_the_field(client, bearer):
    marketing = await bearer("marketing")
    for body in ({"value_groups": ["golden"]}, {"lifecycle_stages": ["asleep"]}):
        response = await client.post("/api/v1/segments/count", json=body, headers=marketing)
        assert response.status_code in (400, 422), response.text
        assert next(iter(body)) in response.text


async def test_the_breakdown_counts_by_tier_and_reachable_channel(client, admin, pos, bearer):
    marketing = await bearer("marketing")
    rich = await enrol(
        client, admin, "Rich", email="rich@example.com", contact_preferences=EMAIL_CONSENT
    )
    await enrol(client, admin, "No Consent", email="nc@example.com")
    await enrol(client, admin, "No Email", contact_preferences=EMAIL_CONSENT)
    await buy(client, pos, rich["id"], "6000.00", days_ago=1)

    response = await client.post(
        "/api/v1/segments/count?breakdown=true", json={}, headers=marketing
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["members"] == 3
    assert data["by_tier"] == {"silver": 1, "normal": 2}
    # Consent without an address, or an address without consent: the portal only.
    assert data["by_channel"] == {"email": 1, "sms": 0, "portal_only": 2}
    plain = (await client.post("/api/v1/segments/count", json={}, headers=marketing)).json()
    assert plain["members"] == 3 and plain.get("by_tier") is None


async def test_referrals_made_select_the_referrers(client, admin, bearer):
    marketing = await bearer("marketing")
    host = await enrol(client, admin, "Host")
    code = (await client.get(f"/api/v1/members/{host['id']}/referrals", headers=admin)).json()[
        "code"
    ]
    for name in ("Friend One", "Friend Two"):
        await enrol(client, admin, name, referral_code=code)
    assert await count(client, marketing, referrals_min=1) == 1
    assert await count(client, marketing, referrals_min=2) == 1
    assert await count(client, marketing, referrals_min=3) == 0
    assert await count(client, marketing, referrals_min=0) == 3
