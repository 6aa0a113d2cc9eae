"""The visibility matrix: every staff role against members inside and outside its reach, on
every member endpoint: allowed, or 404 (403 for a role without the permission), never a
leak through search, the brief or an error message."""

from __future__ import annotations

import pytest

from loyalty.infrastructure import db

ENDPOINTS = [
    "/api/v1/members/{id}",
    "/api/v1/members/{id}/changes",
    "/api/v1/members/{id}/points",
    "/api/v1/members/{id}/points/entries",
    "/api/v1/members/{id}/tier",
    "/api/v1/members/{id}/referrals",
    "/api/v1/members/{id}/rewards",
    "/api/v1/members/{id}/redemptions",
    "/api/v1/members/{id}/brief",
    "/api/v1/members/{id}/contacts",
    "/api/v1/members/{id}/assignments",
]

# Which of the four members each role reaches.
REACH = {
    "admin": {"own", "department", "west", "pool"},
    "general_manager": {"own", "department", "west", "pool"},
    "service": {"own", "department", "west", "pool"},
    "manager": {"own", "department", "pool"},
    "rep": {"own"},
    "marketing": None,  # no archive access at all: members through segments only
}


@pytest.fixture
async def world(client, admin, bearer):
    headers = {
        "admin": admin,
        "general_manager": await bearer("general_manager"),
        "service": await bearer("service"),
        "manager": await bearer("manager", department="east"),
        "rep": await bearer("rep", username="rep_own", department="east"),
        "marketing": await bearer("marketing"),
    }
    colleague = await bearer("rep", username="rep_colleague", department="east")
    westerner = await bearer("rep", username="rep_west", department="west")
    members = {}
    for key, enroler in (
        ("own", headers["rep"]),
        ("department", colleague),
        ("west", westerner),
        ("pool", admin),
    ):
        response = await client.post(
            "/api/v1/members", json={"name": f"Secret {key.title()}"}, headers=enroler
        )
        members[key] = response.json()["id"]
    return headers, members


@pytest.mark.parametrize("role", list(REACH))
async def test_every_member_endpoint_respects_the_role(client, world, role):
    headers, members = world
    reach = REACH[role]
    for key, member_id in members.items():
        for template in ENDPOINTS:
            url = template.format(id=member_id)
            response = await client.get(url, headers=headers[role])
            if reach is None:
                assert response.status_code == 403, (role, url)
            elif key in reach:
                assert response.status_code == 200, (role, key, url, response.text)
            else:
                assert response.status_code == 404, (role, key, url)
                assert "Secret" not in response.text


@pytest.mark.parametrize("role", list(REACH))
async def test_search_shows_only_members_in_reach(client, world, role):
    headers, members = world
    response = await client.get("/api/v1/members?q=Secret", headers=headers[role])
    if REACH[role] is None:
        assert response.status_code == 403
        return
    found = {item["id"] for item in response.json()["items"]}
    assert found == {members[key] for key in REACH[role]}


async def test_only_managers_and_above_reassign(client, world, bearer):
    headers, members = world
    rep_id = None
    async with db.connection() as conn:
        rep_id = str(await conn.fetchval("SELECT id FROM staff WHERE username = 'rep_colleague'"))
    for role in ("rep", "service", "marketing"):
        response = await client.put(
            f"/api/v1/members/{members['own']}/assignment",
            json={"rep_id": rep_id, "reason": "x"},
            headers=headers[role],
        )
        assert response.status_code == 403, role
    west = await client.put(
        f"/api/v1/members/{members['west']}/assignment",
        json={"rep_id": rep_id, "reason": "x"},
        headers=headers["manager"],
    )
    assert west.status_code == 404  # outside the department: not even visible


async def test_customer_service_can_log_contacts_everywhere(client, world):
    headers, members = world
    for member_id in members.values():
        response = await client.post(
            f"/api/v1/members/{member_id}/contacts",
            json={"kind": "complaint", "channel": "phone", "direction": "inbound"},
            headers=headers["service"],
        )
        assert response.status_code == 201
