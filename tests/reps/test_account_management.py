"""The account-manager system: rep levels matched to member value on every assignment path,
lifecycle stages on a fixed clock, archive completeness deadlines, and the scorecard checked
against hand-computed figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty.infrastructure import db
from loyalty.reps import follow_ups, performance
from tests.helpers.purchases import purchase_body


@pytest.fixture
async def team(client, bearer):
    headers = {
        "manager": await bearer("manager", username="mgr", department="east"),
        "junior": await bearer("rep", username="junior", department="east"),
        "senior": await bearer("rep", username="senior", department="east"),
        "gm": await bearer("general_manager", username="gm"),
    }
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET created_at = now() - interval '90 days'")
        await conn.execute("UPDATE staff SET level = 'junior' WHERE username = 'junior'")
        await conn.execute("UPDATE staff SET level = 'senior' WHERE username = 'senior'")
        ids = {k: str(v) for k, v in await conn.fetch("SELECT username, id FROM staff")}
    return headers, ids


async def make_gold(member_id: str) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE member_tiers SET tier = 'gold' WHERE member = $1::uuid", member_id
        )


async def test_gold_members_only_go_to_senior_reps_on_every_path(client, admin, team):
    headers, ids = team
    gold = (await client.post("/api/v1/members", json={"name": "Gold"}, headers=admin)).json()
    await make_gold(gold["id"])
    pool = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": [gold["id"]], "rep_id": ids["junior"], "reason": "x"},
        headers=headers["manager"],
    )
    assert pool.status_code == 409 and "need a senior rep" in pool.json()["detail"]
    moved = await client.put(
        f"/api/v1/members/{gold['id']}/assignment",
        json={"rep_id": ids["junior"], "reason": "x"},
        headers=headers["manager"],
    )
    assert moved.status_code == 409
    ok = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": [gold["id"]], "rep_id": ids["senior"], "reason": "vip"},
        headers=headers["manager"],
    )
    assert ok.status_code == 200
    # A swap that would give the gold member to the junior is refused at approval.
    plain = await client.post("/api/v1/members", json={"name": "Plain"}, headers=headers["junior"])
    swap = await client.post(
        "/api/v1/swaps",
        json={"member_a": gold["id"], "member_b": plain.json()["id"], "reason": "x"},
        headers=headers["senior"],
    )
    refused = await client.post(
        f"/api/v1/swaps/{swap.json()['id']}/approve", json={}, headers=headers["manager"]
    )
    assert refused.status_code == 409
    # A handover too.
    await client.patch(f"/api/v1/staff/{ids['senior']}", json={"active": False}, headers=admin)
    (handover,) = (await client.get("/api/v1/handovers", headers=headers["manager"])).json()
    to_junior = await client.post(
        f"/api/v1/handovers/{handover['id']}/assign",
        json={"rep_id": ids["junior"], "reason": "x"},
        headers=headers["manager"],
    )
    assert to_junior.status_code == 409


async def test_a_member_outgrowing_the_rep_is_flagged(client, admin, pos, team):
    headers, _ = team
    member = (
        await client.post("/api/v1/members", json={"name": "Rising"}, headers=headers["junior"])
    ).json()
    assert (await client.get("/api/v1/reassignment-flags", headers=headers["manager"])).json() == []
    await client.post(
        "/api/v1/purchases",
        json=purchase_body(member["id"], ("CAR", 1, "25000.00", "general")),
        headers=pos,
    )
    (flag,) = (await client.get("/api/v1/reassignment-flags", headers=headers["manager"])).json()
    assert (flag["tier"], flag["rep"], flag["needed_level"]) == ("gold", "junior", "senior")


async def stage_of(client, admin, member_id: str) -> str:
    response = await client.get(f"/api/v1/members/{member_id}/lifecycle", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["stage"]


async def test_stages_follow_purchases_and_intent(client, admin, pos, team):
    headers, _ = team
    member = (
        await client.post("/api/v1/members", json={"name": "Prospect"}, headers=headers["junior"])
    ).json()
    assert await stage_of(client, admin, member["id"]) == "prospect_without_intent"
    await client.post(
        f"/api/v1/members/{member['id']}/contacts",
        json={"kind": "call", "channel": "phone", "intent": "intent"},
        headers=headers["junior"],
    )
    assert await stage_of(client, admin, member["id"]) == "prospect_with_intent"
    for days_ago, stage in ((400, "lost"), (250, "lapsing"), (100, "regular"), (10, "regular")):
        body = purchase_body(member["id"])
        body["occurred_at"] = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
        await client.post("/api/v1/purchases", json=body, headers=pos)
        assert await stage_of(client, admin, member["id"]) == stage, days_ago
    fresh = (await client.post("/api/v1/members", json={"name": "New"}, headers=admin)).json()
    await client.post("/api/v1/purchases", json=purchase_body(fresh["id"]), headers=pos)
    assert await stage_of(client, admin, fresh["id"]) == "new_customer"


async def test_a_refusal_schedules_the_next_attempt_later_not_never(client, admin, team):
    headers, _ = team
    member = (
        await client.post("/api/v1/members", json={"name": "Busy"}, headers=headers["junior"])
    ).json()
    await client.post(
        f"/api/v1/members/{member['id']}/contacts",
        json={"kind": "call", "channel": "phone", "intent": "refused", "outcome": "not now"},
        headers=headers["junior"],
    )
    today = datetime.now(UTC).date()
    assert (
        await follow_ups.plan_follow_ups(today + timedelta(days=5), horizon_days=0)
    ).created == 0
    run = await follow_ups.plan_follow_ups(today + timedelta(days=15), horizon_days=0)
    assert run.created == 1
    async with db.connection() as conn:
        rule = await conn.fetchval(
            "SELECT rule FROM follow_ups WHERE member = $1::uuid", member["id"]
        )
    assert rule == "refused"


async def test_archive_completeness_and_its_deadline(client, admin, pos, team):
    headers, _ = team
    member = (
        await client.post(
            "/api/v1/members",
            json={"name": "Half Known", "phone": "+8613800001111", "occupation": "Teacher"},
            headers=headers["junior"],
        )
    ).json()
    body = purchase_body(member["id"])
    body["occurred_at"] = (datetime.now(UTC) - timedelta(days=70)).isoformat()
    await client.post("/api/v1/purchases", json=body, headers=pos)
    life = (await client.get(f"/api/v1/members/{member['id']}/lifecycle", headers=admin)).json()
    completeness = life["completeness"]
    assert completeness["complete"] == 3 and completeness["required"] == 10
    assert "birthday" in completeness["missing"] and "name" not in completeness["missing"]
    assert completeness["overdue"] is True
    listed = (await client.get("/api/v1/incomplete-archives", headers=headers["junior"])).json()
    assert [(a["name"], a["overdue"]) for a in listed] == [("Half Known", True)]
    await follow_ups.plan_follow_ups()
    async with db.connection() as conn:
        rules = {r["rule"] for r in await conn.fetch("SELECT rule FROM follow_ups")}
    assert "archive" in rules


async def test_scorecard_matches_hand_computed_figures(client, admin, pos, team):
    headers, ids = team
    month = (
        datetime.now(UTC)
        .astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
        .strftime("%Y-%m")
    )
    a = (await client.post("/api/v1/members", json={"name": "A"}, headers=headers["junior"])).json()
    b = (await client.post("/api/v1/members", json={"name": "B"}, headers=headers["junior"])).json()
    for member, amount in ((a, "100.00"), (a, "50.00"), (b, "30.00")):
        await client.post(
            "/api/v1/purchases",
            json=purchase_body(member["id"], ("X", 1, amount, "general")),
            headers=pos,
        )
    await client.post(
        f"/api/v1/members/{a['id']}/contacts",
        json={"kind": "complaint", "channel": "phone", "direction": "inbound"},
        headers=headers["junior"],
    )
    await client.post(
        f"/api/v1/members/{b['id']}/contacts",
        json={"kind": "praise", "channel": "visit"},
        headers=headers["junior"],
    )
    await client.put(
        f"/api/v1/members/{b['id']}/assignment",
        json={"rep_id": ids["senior"], "reason": "rebalance"},
        headers=headers["manager"],
    )
    rows = (
        await client.get(f"/api/v1/scorecards?month={month}", headers=headers["manager"])
    ).json()
    junior = next(r for r in rows if r["rep"] == "junior")
    assert junior["members"] == 1 and junior["gained"] == 2 and junior["lost"] == 1
    assert (
        junior["spend"] == "180.00" and junior["purchases"] == 3 and junior["buying_members"] == 2
    )
    assert junior["complaints"] == 1 and junior["praise"] == 1 and junior["contacts"] == 2
    senior = next(r for r in rows if r["rep"] == "senior")
    assert senior["members"] == 1 and senior["gained"] == 1 and senior["spend"] == "0.00"
    csv_text = (
        await client.get(f"/api/v1/scorecards.csv?month={month}", headers=headers["manager"])
    ).text
    assert csv_text.lstrip("\ufeff").startswith("rep,department,members,gained,lost,spend")
    assert (
        await client.get(f"/api/v1/scorecards?month={month}", headers=headers["junior"])
    ).status_code == 403
    bad = await client.get("/api/v1/scorecards?month=2026-13", headers=headers["manager"])
    assert bad.status_code in (400, 422)


def test_month_bounds_are_local_months():
    start, end = performance.month_bounds("2026-02")
    assert start.isoformat() == "2026-02-01T00:00:00+08:00"
    assert end.isoformat() == "2026-03-01T00:00:00+08:00"


async def test_rotation_respects_levels_never_returns_members_and_applies_once(
    client, admin, pos, team, bearer
):
    headers, ids = team
    third = await bearer("rep", username="regular", department="east")
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET created_at = now() - interval '90 days'")
    async with db.connection() as conn:
        ids = {k: str(v) for k, v in await conn.fetch("SELECT username, id FROM staff")}
    book = {}
    for owner in ("junior", "senior", "regular"):
        enroler = headers.get(owner) or third
        for i in range(2):
            member = (
                await client.post("/api/v1/members", json={"name": f"{owner}-{i}"}, headers=enroler)
            ).json()
            book[member["id"]] = owner
    gold = next(m for m, owner in book.items() if owner == "senior")
    await make_gold(gold)
    # The regular rep served one of the junior's members before: it must not go back there.
    returning = next(m for m, owner in book.items() if owner == "junior")
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, started_at,"
            " ended_at, end_reason) VALUES (gen_random_uuid(), $1::uuid, $2::uuid, 'pool', 'x',"
            " 'test', now() - interval '2 years', now() - interval '1 year', 'transfer')",
            returning,
            ids["regular"],
        )
    proposal = await client.post(
        "/api/v1/rotations", json={"department": "east"}, headers=headers["manager"]
    )
    assert proposal.status_code == 201, proposal.text
    plan = proposal.json()
    moves = {m["member_id"]: m for m in plan["moves"]}
    assert set(moves) == set(book)
    for member_id, move in moves.items():
        assert move["to_rep"] != book[member_id]  # everyone moves away from the current rep
    assert moves[gold]["to_rep"] is None  # gold needs a senior, and the only senior serves it
    assert moves[returning]["to_rep"] not in ("regular", "junior")
    after = {load["rep"]: load["members_after"] for load in plan["loads"]}
    assert sum(after.values()) == 6 and max(after.values()) - min(after.values()) <= 1

    # Adjusting to a rep who served the member before is refused.
    refused = await client.put(
        f"/api/v1/rotations/{plan['id']}/moves/{returning}",
        json={"rep_id": ids["regular"]},
        headers=headers["manager"],
    )
    assert refused.status_code == 409

    applied = await client.post(f"/api/v1/rotations/{plan['id']}/apply", headers=headers["manager"])
    assert applied.status_code == 200 and applied.json()["status"] == "applied"
    again = await client.post(f"/api/v1/rotations/{plan['id']}/apply", headers=headers["manager"])
    assert again.status_code == 200
    async with db.connection() as conn:
        rotations = await conn.fetchval("SELECT count(*) FROM assignments WHERE kind = 'rotation'")
        intros = await conn.fetchval("SELECT count(*) FROM follow_ups WHERE rule = 'introduction'")
    moved = sum(1 for m in moves.values() if m["to_rep"])
    assert rotations == moved == intros == 5
    assert (
        await client.post(
            "/api/v1/rotations", json={"department": "east"}, headers=headers["junior"]
        )
    ).status_code == 403


async def test_a_service_team_sees_its_member_and_appears_on_the_brief(client, admin, team):
    headers, ids = team
    gold = (
        await client.post("/api/v1/members", json={"name": "Big Client"}, headers=headers["senior"])
    ).json()
    await make_gold(gold["id"])
    assert (
        await client.get(f"/api/v1/members/{gold['id']}", headers=headers["junior"])
    ).status_code == 404
    response = await client.put(
        f"/api/v1/members/{gold['id']}/service-team",
        json={
            "lead_id": ids["senior"],
            "members": [{"staff_id": ids["junior"], "role": "settlement"}],
        },
        headers=headers["manager"],
    )
    assert response.status_code == 200, response.text
    assert [(p["username"], p["role"]) for p in response.json()["people"]] == [
        ("senior", "lead"),
        ("junior", "settlement"),
    ]
    # The junior is on the team: they see the member now (and nobody else's).
    assert (
        await client.get(f"/api/v1/members/{gold['id']}", headers=headers["junior"])
    ).status_code == 200
    brief = (
        await client.get(f"/api/v1/members/{gold['id']}/brief", headers=headers["junior"])
    ).json()
    assert [p["role"] for p in brief["service_team"]] == ["lead", "settlement"]
    assert brief["executive_sponsor"] == "Sales director"
    # The manager names the executive sponsor the tier promises; the brief shows them.
    named = await client.put(
        f"/api/v1/members/{gold['id']}/service-team",
        json={
            "lead_id": ids["senior"],
            "members": [
                {"staff_id": ids["mgr"], "role": "sponsor"},
                {"staff_id": ids["junior"], "role": "settlement"},
            ],
        },
        headers=headers["manager"],
    )
    assert named.status_code == 200, named.text
    brief = (
        await client.get(f"/api/v1/members/{gold['id']}/brief", headers=headers["junior"])
    ).json()
    assert [p["role"] for p in brief["service_team"]] == ["lead", "sponsor", "settlement"]
    denied = await client.put(
        f"/api/v1/members/{gold['id']}/service-team",
        json={"lead_id": ids["junior"]},
        headers=headers["junior"],
    )
    assert denied.status_code == 403


async def test_weekly_follow_ups_stop_when_the_three_new_customer_months_end(
    client, admin, pos, team
):
    """Weekly while the member is a new customer; a weekly date past the three months is a
    regular customer's monthly follow-up instead."""
    headers, _ = team
    ending = (await client.post("/api/v1/members", json={"name": "Ending"}, headers=admin)).json()
    fresh = (await client.post("/api/v1/members", json={"name": "Fresh"}, headers=admin)).json()
    for member, days_ago in ((ending, 88), (fresh, 10)):
        body = purchase_body(member["id"])
        body["occurred_at"] = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
        assert (await client.post("/api/v1/purchases", json=body, headers=pos)).status_code == 201
        visit = await client.post(
            f"/api/v1/members/{member['id']}/contacts",
            json={"kind": "visit", "channel": "visit"},
            headers=headers["gm"],
        )
        assert visit.status_code == 201, visit.text
    today = datetime.now(UTC).date()
    await follow_ups.plan_follow_ups(today, horizon_days=40)
    async with db.connection() as conn:
        tasks = {
            row["name"]: (row["rule"], (row["due_on"] - today).days)
            for row in await conn.fetch(
                "SELECT m.name, f.rule, f.due_on FROM follow_ups f"
                " JOIN members m ON m.id = f.member WHERE f.closed_at IS NULL"
            )
        }
    assert tasks["Fresh"][0] == "new_customer" and 6 <= tasks["Fresh"][1] <= 8
    assert tasks["Ending"][0] == "regular" and 29 <= tasks["Ending"][1] <= 31
