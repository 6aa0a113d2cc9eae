"""The segment builder's counts from the segment facts: after a rebuild they equal the live
counts for every filter kind; the API says how fresh they are; what the facts cannot answer
(another window, a fixed member list) and stale facts are counted live."""

from __future__ import annotations

import random
from datetime import date, timedelta

import msgspec

from loyalty.infrastructure import db
from loyalty.marketing import schemas, segment_facts, segments
from tests.helpers.marketing import buy, enrol

REGIONS = ["North", "South", "East"]
TAGS = ["vip", "tea", "golf", "wine"]
CHANNELS = ["email", "sms"]


async def _population(client, admin, pos, rng: random.Random) -> None:
    """Members with random archives, purchases (one distinct count each, so the value
    groups have no ties to split) and referrals."""
    code = None
    for i in range(16):
        channels = rng.sample(CHANNELS, rng.randint(0, 2))
        granted = rng.sample(CHANNELS, rng.randint(0, 2))
        fields: dict = {
            "tags": rng.sample(TAGS, rng.randint(0, 2)),
            "contact_preferences": {
                "channels": channels,
                "consents": [{"channel": c, "granted": rng.random() < 0.8} for c in granted],
            },
        }
        if rng.random() < 0.8:
            fields["birthday"] = date(1980 + i, rng.randint(1, 12), 5).isoformat()
        if rng.random() < 0.8:
            fields["address"] = {"region": rng.choice(REGIONS)}
        if rng.random() < 0.7:
            fields["email"] = f"m{i}@example.com"
        if rng.random() < 0.5:
            fields["phone"] = f"+86138000{i:05d}"
        if code is not None and rng.random() < 0.3:
            fields["referral_code"] = code
        member = await enrol(client, admin, f"Member {i}", **fields)
        if code is None:
            referrals = await client.get(f"/api/v1/members/{member['id']}/referrals", headers=admin)
            code = referrals.json()["code"]
        for k in range(i % 6):
            days = rng.choice([3, 40, 100, 200, 300, 500])
            amount = f"{rng.randint(5, 4000)}.{i:02d}"
            await buy(client, pos, member["id"], amount, days_ago=days + k * 0.01 + i * 0.001)


def _random_filter(rng: random.Random, tiers: list[str]) -> schemas.SegmentFilter:
    """One or two random conditions of every kind the builder offers."""
    choices = {
        "everyone": {},
        "tiers": {"tiers": rng.sample(tiers, rng.randint(1, len(tiers)))},
        "tier joined": {"tier_joined_within_days": rng.choice([1, 30])},
        "spend": {"spend_min": str(rng.randint(0, 6000)), "spend_max": "9000"},
        "purchases": {"purchases_min": rng.randint(0, 4)},
        "recency": {"days_since_purchase_max": rng.choice([10, 90, 400])},
        "lapsed": {"days_since_purchase_min": rng.choice([10, 90, 400])},
        "points": {"points_min": rng.randint(0, 3000), "points_max": 100000},
        "referrals": {"referrals_min": rng.randint(1, 3)},
        "birthday": {"birthday_months": rng.sample(range(1, 13), 4)},
        "regions": {"regions": rng.sample(REGIONS, 2)},
        "tags": {"tags": rng.sample(TAGS, 2)},
        "consents": {"consents": rng.sample(CHANNELS, rng.randint(1, 2))},
        "unassigned": {"unassigned": rng.random() < 0.5},
        "departments": {"departments": ["North sales"]},
        "value groups": {
            "value_groups": rng.sample(["valuable", "rising", "declining", "at_risk"], 2)
        },
        "stages": {
            "lifecycle_stages": rng.sample(
                ["new_customer", "regular", "lapsing", "lost", "prospect_without_intent"], 2
            )
        },
    }
    picked = rng.sample(list(choices), rng.randint(1, 3))
    body: dict = {}
    for name in picked:
        body.update(choices[name])
    return msgspec.convert(body, schemas.SegmentFilter)


async def test_counts_from_the_facts_equal_the_live_counts(client, admin, pos):
    rng = random.Random(21)
    await _population(client, admin, pos, rng)
    built = await segment_facts.rebuild()
    assert built.members == 16
    tiers = ["normal", "silver", "gold"]
    for _ in range(120):
        f = _random_filter(rng, tiers)
        live = await segments.count(f, breakdown=True)
        facts = await segment_facts.count_from_facts(f, breakdown=True)
        assert facts is not None, f
        assert facts.as_of == built.built_at
        assert (facts.members, facts.by_tier, facts.by_channel) == (
            live.members,
            live.by_tier,
            live.by_channel,
        ), msgspec.json.encode(f)
        plain = await segment_facts.count_from_facts(f, breakdown=False)
        assert plain is not None and plain.members == live.members


async def test_the_api_says_when_the_facts_were_built(client, admin, pos, bearer):
    marketing = await bearer("marketing")
    member = await enrol(client, admin, "Early", tags=["vip"])
    await buy(client, pos, member["id"], "80.00", days_ago=5)
    url = "/api/v1/segments/count?breakdown=true"

    # No facts yet: counted live, no `as_of`.
    answer = (await client.post(url, json={"tags": ["vip"]}, headers=marketing)).json()
    assert answer["members"] == 1 and answer["as_of"] is None

    built = await segment_facts.rebuild()
    await enrol(client, admin, "Late", tags=["vip"])  # after the build: not in the facts yet
    answer = (await client.post(url, json={"tags": ["vip"]}, headers=marketing)).json()
    assert answer["members"] == 1
    assert answer["as_of"].startswith(built.built_at.isoformat()[:19])

    # Another window or a fixed member list: the facts cannot answer, counted live.
    other = {"tags": ["vip"], "spend_min": "0", "window_days": 30}
    answer = (await client.post(url, json=other, headers=marketing)).json()
    assert answer["members"] == 2 and answer["as_of"] is None
    # The same condition over the facts' window is answered from them.
    same = {"tags": ["vip"], "spend_min": "0", "window_days": 365}
    assert (await client.post(url, json=same, headers=marketing)).json()["as_of"]

    # Facts older than MAX_AGE are not used.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE segment_facts_builds SET built_at = built_at - $1::interval",
            segment_facts.MAX_AGE + timedelta(minutes=1),
        )
    answer = (await client.post(url, json={"tags": ["vip"]}, headers=marketing)).json()
    assert answer["members"] == 2 and answer["as_of"] is None
