"""Rotation applies only to reps still active in the department and within their level;
blank address and household fields do not count as complete."""

from __future__ import annotations

import pytest

from loyalty.infrastructure import db


@pytest.fixture
async def team(client, bearer):
    headers = {
        "manager": await bearer("manager", username="mgr", department="east"),
        "junior": await bearer("rep", username="junior", department="east"),
        "senior": await bearer("rep", username="senior", department="east"),
    }
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET created_at = now() - interval '90 days'")
        await conn.execute("UPDATE staff SET level = 'junior' WHERE username = 'junior'")
        await conn.execute("UPDATE staff SET level = 'senior' WHERE username = 'senior'")
        ids = {k: str(v) for k, v in await conn.fetch("SELECT username, id FROM staff")}
    return headers, ids


async def _two_books(client, headers):
    j = (await client.post("/api/v1/members", json={"name": "J"}, headers=headers["junior"])).json()
    s = (await client.post("/api/v1/members", json={"name": "S"}, headers=headers["senior"])).json()
    proposal = await client.post(
        "/api/v1/rotations", json={"department": "east"}, headers=headers["manager"]
    )
    assert proposal.status_code == 201, proposal.text
    moves = {m["member_id"]: m["to_rep"] for m in proposal.json()["moves"]}
    assert moves == {j["id"]: "senior", s["id"]: "junior"}
    return j, s, proposal.json()["id"]


async def _rep_of(member_id: str):
    async with db.connection() as conn:
        return await conn.fetchrow(
            "SELECT s.username, s.active, s.level FROM members m JOIN staff s"
            " ON s.id = m.assigned_rep WHERE m.id = $1::uuid",
            member_id,
        )


async def test_rotation_apply_never_gives_members_to_a_rep_deactivated_since_the_proposal(
    client, admin, team
):
    headers, ids = team
    _, s, rotation_id = await _two_books(client, headers)
    # The junior leaves after the proposal (their own members go to the handover queue).
    left = await client.patch(
        f"/api/v1/staff/{ids['junior']}", json={"active": False}, headers=admin
    )
    assert left.status_code == 200, left.text
    await client.post(f"/api/v1/rotations/{rotation_id}/apply", headers=headers["manager"])
    rep = await _rep_of(s["id"])
    assert rep is None or rep["active"], f"member S now served by inactive rep {rep['username']}"


async def test_rotation_apply_checks_levels_for_a_tier_that_rose_since_the_proposal(
    client, admin, team
):
    headers, _ = team
    _, s, rotation_id = await _two_books(client, headers)
    async with db.connection() as conn:  # S became gold after the proposal
        await conn.execute("UPDATE member_tiers SET tier = 'gold' WHERE member = $1::uuid", s["id"])
    applied = await client.post(
        f"/api/v1/rotations/{rotation_id}/apply", headers=headers["manager"]
    )
    rep = await _rep_of(s["id"])
    assert applied.status_code == 409 or rep["level"] == "senior", (
        f"gold member handed to {rep['username']} ({rep['level']}) by the rotation"
    )


async def test_blank_address_does_not_count_as_complete(client, admin, team):
    headers, _ = team
    member = await client.post(
        "/api/v1/members",
        json={"name": "Blank", "address": {"line1": "   "}, "household": {"spouse": "  "}},
        headers=headers["senior"],
    )
    assert member.status_code == 201, member.text
    life = (
        await client.get(f"/api/v1/members/{member.json()['id']}/lifecycle", headers=admin)
    ).json()
    missing = life["completeness"]["missing"]
    assert "address" in missing and "household" in missing, life["completeness"]
