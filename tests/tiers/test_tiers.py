"""Tiers: the ladder API, upgrade at once, downgrade after grace one step at a time,
overrides, the what-if simulation, window boundaries and the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from loyalty.events.tables import Notification, OutboxEvent
from loyalty.tiers import evaluation
from loyalty.tiers.ladder import window_start
from tests.helpers.purchases import purchase_body

DAY = timedelta(days=1)


@pytest.fixture
async def buy(client, pos):
    async def purchase(member_id: str, amount: str, days_ago: float = 0, **extra) -> dict:
        body = purchase_body(member_id, ("ITEM", 1, amount, "general"), days_ago=days_ago, **extra)
        response = await client.post("/api/v1/purchases", json=body, headers=pos)
        assert response.status_code == 201, response.text
        return {**response.json(), "body": body}

    return purchase


@pytest.fixture
def tier_of(client, admin):
    async def get(member_id: str) -> dict:
        response = await client.get(f"/api/v1/members/{member_id}/tier", headers=admin)
        assert response.status_code == 200, response.text
        return response.json()

    return get


async def new_member(client, admin, name="Tier Test") -> str:
    return (await client.post("/api/v1/members", json={"name": name}, headers=admin)).json()["id"]


async def test_default_ladder(client, admin):
    ladder = (await client.get("/api/v1/tiers", headers=admin)).json()
    assert [(t["code"], t["threshold"], t["enabled"]) for t in ladder] == [
        ("normal", "0.00", True),
        ("silver", "5000.00", True),
        ("gold", "20000.00", True),
        ("platinum", "50000.00", False),
        ("diamond", "100000.00", False),
    ]
    assert ladder[2]["service_level"]["named_service_team"] is True


async def test_invalid_ladders_are_refused(client, admin):
    gold = next(
        t for t in (await client.get("/api/v1/tiers", headers=admin)).json() if t["code"] == "gold"
    )
    body = {
        k: gold[k]
        for k in ("name", "rank", "threshold", "earn_multiplier", "enabled", "service_level")
    }
    too_low = await client.put(
        "/api/v1/tiers/gold", json={**body, "threshold": "4000"}, headers=admin
    )
    assert too_low.status_code == 422 and too_low.json()["field"] == "threshold"
    assert "rise with rank" in too_low.json()["detail"]
    same_rank = await client.put("/api/v1/tiers/gold", json={**body, "rank": 1}, headers=admin)
    assert same_rank.status_code == 422 and same_rank.json()["field"] == "rank"
    normal_off = await client.put(
        "/api/v1/tiers/normal",
        json={**body, "name": "Normal", "rank": 0, "threshold": "0", "enabled": False},
        headers=admin,
    )
    assert normal_off.status_code == 422
    rep = await client.put("/api/v1/tiers/gold", json=body, headers=await _rep(client, admin))
    assert rep.status_code == 403
    ok = await client.put("/api/v1/tiers/gold", json={**body, "threshold": "25000"}, headers=admin)
    assert ok.status_code == 200 and ok.json()["threshold"] == "25000.00"


async def _rep(client, admin) -> dict:
    await client.post(
        "/api/v1/staff",
        json={"username": "tierrep", "role": "rep", "password": "correct-horse-battery-staple-42"},
        headers=admin,
    )
    token = (
        await client.post(
            "/api/v1/auth/tokens",
            json={"username": "tierrep", "password": "correct-horse-battery-staple-42"},
        )
    ).json()["token"]
    return {"Authorization": f"Bearer {token}"}


async def test_crossing_purchase_upgrades_at_once_and_multiplier_applies_next(
    client, admin, buy, tier_of
):
    member = await new_member(client, admin)
    await buy(member, "4999.00", days_ago=20)
    assert (await tier_of(member))["tier"] == "normal"
    crossing = await buy(member, "1.00")
    assert crossing["points"] == 1  # earned at the old (normal) multiplier
    status = await tier_of(member)
    assert status["tier"] == "silver" and status["qualifying_value"] == "5000.00"
    assert status["history"][0]["reason"] == "upgrade"
    assert status["next_tier"] == {
        **status["next_tier"],
        "code": "gold",
        "still_needed": "15000.00",
    }
    assert status["service_level"]["response_time_hours"] == 24
    following = await buy(member, "100.00")
    assert following["points"] == 110  # silver earns 1.1x


async def test_spend_exactly_at_the_threshold_qualifies(client, admin, buy, tier_of):
    member = await new_member(client, admin)
    await buy(member, "20000.00")
    assert (await tier_of(member))["tier"] == "gold"


async def test_return_below_threshold_does_not_downgrade_at_once(client, admin, pos, buy, tier_of):
    member = await new_member(client, admin)
    purchase = await buy(member, "6000.00")
    assert (await tier_of(member))["tier"] == "silver"
    response = await client.post(
        f"/api/v1/purchases/{purchase['external_id']}/returns",
        json={"return_id": "R-T", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert response.status_code == 201
    status = await tier_of(member)
    assert status["tier"] == "silver" and status["qualifying_value"] == "0.00"
    assert status["needed_to_keep"] == "5000.00"


async def test_downgrade_after_grace_one_step_at_a_time_and_idempotent(client, admin, buy, tier_of):
    member = await new_member(client, admin)
    await buy(member, "25000.00", days_ago=360)
    assert (await tier_of(member))["tier"] == "gold"
    start = datetime.now(UTC) + 10 * DAY  # the purchase has left the 12-month window
    first = await evaluation.evaluate(at=start)
    assert first.grace_started == 1 and first.downgraded == 0
    assert (await tier_of(member))["below_threshold_since"] is not None
    assert (await evaluation.evaluate(at=start + 29 * DAY)).downgraded == 0
    assert (await tier_of(member))["tier"] == "gold"
    after_grace = await evaluation.evaluate(at=start + 30 * DAY)
    assert after_grace.downgraded == 1
    assert (await tier_of(member))["tier"] == "silver"  # one step, although spend is 0
    again = await evaluation.evaluate(at=start + 30 * DAY)
    assert (again.upgraded, again.downgraded, again.grace_started) == (0, 0, 0)
    await evaluation.evaluate(at=start + 59 * DAY)
    assert (await tier_of(member))["tier"] == "silver"
    await evaluation.evaluate(at=start + 60 * DAY)
    status = await tier_of(member)
    assert status["tier"] == "normal"
    assert [h["reason"] for h in status["history"]] == [
        "downgrade",
        "downgrade",
        "upgrade",
        "initial",
    ]


async def test_spend_back_above_threshold_cancels_the_grace(client, admin, buy, tier_of):
    member = await new_member(client, admin)
    await buy(member, "6000.00", days_ago=360)
    await evaluation.evaluate(at=datetime.now(UTC) + 10 * DAY)
    assert (await tier_of(member))["below_threshold_since"] is not None
    await buy(member, "5000.00")
    assert (await tier_of(member))["below_threshold_since"] is None
    assert (await evaluation.evaluate(at=datetime.now(UTC) + 45 * DAY)).downgraded == 0


async def test_override_holds_then_ends(client, admin, buy, tier_of):
    member = await new_member(client, admin)
    await buy(member, "100.00")
    until = datetime.now(UTC) + 10 * DAY
    rep = await client.put(
        f"/api/v1/members/{member}/tier/override",
        json={"tier": "gold", "reason": "trial", "until": until.isoformat()},
        headers=await _rep(client, admin),
    )
    assert rep.status_code == 403
    response = await client.put(
        f"/api/v1/members/{member}/tier/override",
        json={"tier": "gold", "reason": "key account trial", "until": until.isoformat()},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert (
        response.json()["tier"] == "gold"
        and response.json()["override"]["reason"] == "key account trial"
    )
    assert (await evaluation.evaluate(at=until - DAY)).downgraded == 0
    assert (await tier_of(member))["tier"] == "gold"
    ended = await evaluation.evaluate(at=until + timedelta(minutes=1))
    assert ended.overrides_ended == 1
    status = await tier_of(member)
    assert status["tier"] == "normal" and status["override"] is None
    assert status["history"][0]["reason"] == "override_end"
    past = await client.put(
        f"/api/v1/members/{member}/tier/override",
        json={"tier": "gold", "reason": "oops", "until": "2020-01-01T00:00:00+00:00"},
        headers=admin,
    )
    assert past.status_code == 422 and past.json()["field"] == "until"


async def test_simulation_matches_the_evaluation_and_changes_nothing(client, admin, buy, tier_of):
    spends = ["100.00", "3000.00", "6000.00", "12000.00", "30000.00", "60000.00"]
    members = [await new_member(client, admin, f"S{i}") for i in range(len(spends))]
    for member, spend in zip(members, spends, strict=True):
        await buy(member, spend)
    ladder = [
        {"code": "normal", "rank": 0, "threshold": "0"},
        {"code": "silver", "rank": 1, "threshold": "2500"},
        {"code": "gold", "rank": 2, "threshold": "10000"},
        {"code": "platinum", "rank": 3, "threshold": "50000", "enabled": True},
        {"code": "diamond", "rank": 4, "threshold": "100000", "enabled": False},
    ]
    response = await client.post("/api/v1/tiers/simulate", json={"tiers": ladder}, headers=admin)
    assert response.status_code == 200, response.text
    simulation = response.json()
    assert simulation["by_tier_now"] == {"normal": 2, "silver": 2, "gold": 2}
    assert simulation["by_tier_after"] == {"normal": 1, "silver": 2, "gold": 2, "platinum": 1}
    assert (simulation["moving_up"], simulation["moving_down"]) == (3, 0)
    assert [(await tier_of(m))["tier"] for m in members] == [
        "normal",
        "normal",
        "silver",
        "silver",
        "gold",
        "gold",
    ]
    # Now apply that ladder for real and evaluate: the same outcome.
    current = {t["code"]: t for t in (await client.get("/api/v1/tiers", headers=admin)).json()}
    for tier in reversed(ladder):
        body = {k: current[tier["code"]][k] for k in ("name", "earn_multiplier", "service_level")}
        body.update(
            rank=tier["rank"], threshold=tier["threshold"], enabled=tier.get("enabled", True)
        )
        ok = await client.put(f"/api/v1/tiers/{tier['code']}", json=body, headers=admin)
        assert ok.status_code == 200, ok.text
    result = await evaluation.evaluate()
    assert (result.upgraded, result.downgraded) == (3, 0)
    after = [(await tier_of(m))["tier"] for m in members]
    assert {t: after.count(t) for t in set(after)} == simulation["by_tier_after"]


async def test_bad_simulations_are_refused(client, admin):
    response = await client.post(
        "/api/v1/tiers/simulate",
        json={"tiers": [{"code": "normal", "rank": 0, "threshold": "100"}]},
        headers=admin,
    )
    assert response.status_code == 422 and response.json()["field"] == "threshold"


async def test_window_starts_at_local_midnight_twelve_months_back(client, admin, pos, tier_of):
    shanghai = ZoneInfo("Asia/Shanghai")
    today = datetime.now(shanghai).date()
    # 00:30 in Shanghai is 16:30 UTC the day before: a UTC window would start 16 hours early.
    at = datetime.combine(today, datetime.min.time(), tzinfo=shanghai) + timedelta(minutes=30)
    start = window_start(at, 12)
    assert start.tzinfo == shanghai and (start.hour, start.minute) == (0, 0)
    assert (start.year, start.month) == ((today.year - 1), today.month)
    inside = await new_member(client, admin, "Inside")
    outside = await new_member(client, admin, "Outside")
    for member, when in ((inside, start), (outside, start - timedelta(seconds=1))):
        body = purchase_body(member, ("ITEM", 1, "5000.00", "general"))
        body["occurred_at"] = when.isoformat()
        assert (await client.post("/api/v1/purchases", json=body, headers=pos)).status_code == 201
    inside_status, outside_status = await tier_of(inside), await tier_of(outside)
    assert inside_status["qualifying_value"] == "5000.00" and inside_status["tier"] == "silver"
    assert outside_status["qualifying_value"] == "0.00" and outside_status["tier"] == "normal"
    result = await evaluation.evaluate(at=at)
    assert (result.upgraded, result.grace_started) == (0, 0)
    assert (await tier_of(outside))["tier"] == "normal"


async def test_tier_changes_reach_the_outbox_and_the_member_inbox(
    app, settings, client, admin, buy
):
    from loyalty.worker import create_worker

    member = await new_member(client, admin)
    await buy(member, "5000.00")
    events = await OutboxEvent.select().where(OutboxEvent.topic == "tier.changed")
    assert len(events) == 1 and events[0]["published_at"] is None
    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    await app.state.redis.enqueue_job("relay_outbox", _job_id="relay-1")
    try:
        await worker.main()
        await worker.main()  # the delivery the relay queued
    finally:
        await worker.close()
    inbox = await Notification.select().where(Notification.member == member)
    assert len(inbox) == 1 and inbox[0]["title"] == "Welcome to Silver"
    from loyalty.events.jobs import deliver

    await deliver(events[0]["id"])  # delivered twice: still one message
    assert await Notification.count().where(Notification.member == member) == 1


async def test_outbox_keeps_events_while_redis_is_down(app, client, admin, buy, tmp_path):
    from loyalty.app import redis_client
    from loyalty.events.service import relay
    from loyalty.infrastructure.embedded import EmbeddedRedis

    member = await new_member(client, admin)
    await buy(member, "5000.00")
    down = EmbeddedRedis(tmp_path / "redis")
    url = down.ensure_running()
    down.stop()
    client_to_nowhere = redis_client(url)
    with pytest.raises(Exception):  # noqa: B017 - any connection error will do
        await relay(client_to_nowhere)
    await client_to_nowhere.aclose()
    assert await OutboxEvent.count().where(OutboxEvent.published_at.is_null()) == 1
    assert await relay(app.state.redis) == 1
    assert await OutboxEvent.count().where(OutboxEvent.published_at.is_null()) == 0


async def test_the_relay_queues_events_by_the_hundred(app, redis, member):
    # A big evaluation makes tens of thousands of events: one job each held other jobs up.
    from arq.jobs import Job

    from loyalty.events import service as events
    from loyalty.infrastructure import db

    async with db.connection() as conn:
        await events.record_many(
            conn, "tier.changed", [(member["id"], {"n": i}) for i in range(250)]
        )
    queued_before = await redis.zcard("arq:queue")
    assert await events.relay(redis) == 250
    keys = await redis.zrange("arq:queue", 0, -1)
    assert len(keys) - queued_before == 3
    sizes = sorted(
        [len((await Job(key.decode(), redis).info()).args[0]) for key in keys], reverse=True
    )
    assert sizes[:3] == [100, 100, 50]
    assert await OutboxEvent.count().where(OutboxEvent.published_at.is_null()) == 0
