"""Fixtures of the console tests: a team of managers and reps in two departments."""

from __future__ import annotations

import pytest

from tests.helpers.staff import staff_past_their_first_month


@pytest.fixture
async def team(client, make_staff, admin):
    """East: manager mia, reps ravi and rosa; west: manager wu, rep wei. One member each."""
    people = {
        "mia": await make_staff("mia", "manager", "east"),
        "ravi": await make_staff("ravi", "rep", "east"),
        "rosa": await make_staff("rosa", "rep", "east"),
        "wu": await make_staff("wu", "manager", "west"),
        "wei": await make_staff("wei", "rep", "west"),
        "ada": await make_staff("ada", "admin"),
    }
    await staff_past_their_first_month()
    members = {}
    for name, rep in (("Chen Jie", "ravi"), ("Lin Fang", "rosa"), ("Zhao Lei", "wei")):
        member = (
            await client.post(
                "/api/v1/members",
                json={"name": name, "email": f"{name.split()[1].lower()}@example.com"},
                headers=admin,
            )
        ).json()
        moved = await client.put(
            f"/api/v1/members/{member['id']}/assignment",
            json={"rep_id": str(people[rep].id), "reason": "test"},
            headers=admin,
        )
        assert moved.status_code == 200, moved.text
        members[name] = member
    pooled = (
        await client.post("/api/v1/members", json={"name": "Pool Person"}, headers=admin)
    ).json()
    members["Pool Person"] = pooled
    return {"staff": people, "members": members}
