"""The services behind the service desk and the managers' pages, through the API and the
service layer: a repeated move changes nothing, managers set their own reps' levels only,
a request's clock follows the member's tier, and a request is answered once."""

from __future__ import annotations

from uuid import UUID

import pytest

from loyalty.auth import staff_principal
from loyalty.errors import Conflict, NotFound, PermissionDenied
from loyalty.infrastructure import db
from loyalty.reps import contacts, schemas, service_desk
from tests.helpers.members import enrol


async def test_moving_a_member_to_their_own_rep_changes_nothing(client, team):
    member = await enrol(client, team["headers"]["rep"])
    body = {"rep_id": team["ids"]["rep_east2"], "reason": "closer"}
    url = f"/api/v1/members/{member['id']}/assignment"
    first = await client.put(url, json=body, headers=team["headers"]["manager"])
    again = await client.put(url, json=body, headers=team["headers"]["manager"])
    assert first.json()["assigned"] == 1 and again.json()["assigned"] == 0
    history = (
        await client.get(
            f"/api/v1/members/{member['id']}/assignments", headers=team["headers"]["manager"]
        )
    ).json()
    assert [h["rep"] for h in history] == ["rep_east2", "rep_east"]


async def test_managers_set_their_own_reps_levels(client, team):
    manager = team["headers"]["manager"]
    listed = (await client.get("/api/v1/reps", headers=manager)).json()
    assert {r["username"] for r in listed} == {"rep_east", "rep_east2"}
    url = f"/api/v1/reps/{team['ids']['rep_east']}/level"
    saved = await client.put(url, json={"level": "senior"}, headers=manager)
    assert saved.status_code == 200 and saved.json()["level"] == "senior"
    bad = await client.put(url, json={"level": "boss"}, headers=manager)
    assert bad.status_code in (400, 422)
    west = f"/api/v1/reps/{team['ids']['rep_west']}/level"
    assert (await client.put(west, json={"level": "senior"}, headers=manager)).status_code == 404
    gm = await client.put(west, json={"level": "junior"}, headers=team["headers"]["gm"])
    assert gm.status_code == 200 and gm.json()["level"] == "junior"
    rep = await client.put(url, json={"level": "junior"}, headers=team["headers"]["rep"])
    assert rep.status_code == 403
    levels = dict(
        (r["username"], r["level"])
        for r in (await client.get("/api/v1/reps", headers=team["headers"]["gm"])).json()
    )
    assert levels == {"rep_east": "senior", "rep_east2": "regular", "rep_west": "junior"}


async def test_the_clock_follows_the_tier_and_a_request_is_answered_once(
    client,
    admin,
    make_staff,
    team,
):
    member = await enrol(client, team["headers"]["rep"], email="chen@example.com")
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tier_definitions SET response_time_hours = 4 WHERE code = 'gold'"
        )
        await conn.execute(
            "UPDATE member_tiers SET tier = 'gold' WHERE member = $1", UUID(member["id"])
        )
    sam = staff_principal((await make_staff("sam", "service")).id, "sam", "service", None)
    member_principal = staff_principal(UUID(team["ids"]["rep_west"]), "rep_west", "rep", "west")
    request_id = await contacts.log_contact(
        UUID(member["id"]),
        staff_principal(UUID(team["ids"]["rep_east"]), "rep_east", "rep", "east"),
        kind="complaint",
        channel="phone",
        direction="inbound",
        subject="Broken zip",
        body="",
    )
    found = await service_desk.get_request(request_id, sam)
    assert found.tier == "gold" and found.response_hours == 4 and found.status == "open"
    assert (found.due_at - found.received_at).total_seconds() == 4 * 3600
    # A rep of another department cannot reach it, nor a rep without the desk at all.
    with pytest.raises(PermissionDenied):
        await service_desk.get_request(request_id, member_principal)
    manager_west = staff_principal(UUID(int=8), "mgr_west", "manager", "west")
    with pytest.raises(NotFound):
        await service_desk.get_request(request_id, manager_west)

    reply = schemas.MessageCreate(channel="portal", subject="Sorry", body="A new one is on its way")
    await service_desk.reply(request_id, reply, sam)
    with pytest.raises(Conflict):
        await service_desk.reply(request_id, reply, sam)
    with pytest.raises(Conflict):
        await service_desk.resolve(request_id, schemas.ResolutionCreate(outcome="x"), sam)
    answered = await service_desk.get_request(request_id, sam)
    assert answered.status == "answered" and not answered.overdue
    assert await service_desk.counts(sam) == {"open": 0, "overdue": 0}
    contacts_api = (
        await client.get(f"/api/v1/members/{member['id']}/contacts", headers=admin)
    ).json()
    kinds = [(c["kind"], c["status"]) for c in contacts_api]
    assert ("complaint", "answered") in kinds and ("message", "closed") in kinds
