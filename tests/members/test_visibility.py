"""Who may see a member, asked along every path: the API's single member, the member list,
the members export, the tier distribution (console home page), the console member page, the
portal, and the visibility module itself. For each role the paths give the same members, and
the members this file expects; a rep's service-team members included.

The members, one per rule:
- A is served by ravi (rep, east); tess (a rep of another department) is on A's service team;
- B is served by wei (rep, west);
- C is in the pool, and is the member signed in to the portal;
- D is in the pool, waiting in west's handover queue (so not in east's pool).
"""

from __future__ import annotations

import csv
import io
import re
from uuid import UUID, uuid4

import pytest

from loyalty.auth import Principal, member_principal, staff_principal
from loyalty.infrastructure import db
from loyalty.members import visibility
from loyalty.tiers import service as tier_service
from tests.helpers.pages import csrf_from
from tests.helpers.staff import TEST_PASSWORD, staff_past_their_first_month

EVERYONE = {"A", "B", "C", "D"}
EXPECTED: dict[str, set[str]] = {
    "admin": EVERYONE,
    "general_manager": EVERYONE,
    "manager_east": {"A", "C"},
    "manager_west": {"B", "C", "D"},
    "rep_owner": {"A"},
    "rep_service_team": {"A"},
    "rep_other": {"B"},
    "service": EVERYONE,
    "marketing": set(),
    "member": {"C"},
    "api_key": EVERYONE,
}
# The staff behind each staff role: (username, role, department).
STAFF = {
    "admin": ("ada", "admin", None),
    "general_manager": ("gina", "general_manager", None),
    "manager_east": ("emma", "manager", "east"),
    "manager_west": ("walt", "manager", "west"),
    "rep_owner": ("ravi", "rep", "east"),
    "rep_service_team": ("tess", "rep", "north"),
    "rep_other": ("wei", "rep", "west"),
    "service": ("sam", "service", None),
    "marketing": ("mia", "marketing", "marketing"),
}
REFUSED = "refused"


async def _enrol(client, admin, name: str, **extra) -> dict:
    created = await client.post("/api/v1/members", json={"name": name, **extra}, headers=admin)
    assert created.status_code == 201, created.text
    return created.json()


async def _assign(client, admin, member_id: str, rep_id: UUID) -> None:
    moved = await client.put(
        f"/api/v1/members/{member_id}/assignment",
        json={"rep_id": str(rep_id), "reason": "test"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text


@pytest.fixture
async def world(client, admin, make_staff, mailbox):
    staff = {key: await make_staff(*spec) for key, spec in STAFF.items()}
    await staff_past_their_first_month()
    members = {
        "A": await _enrol(client, admin, "Ann Served"),
        "B": await _enrol(client, admin, "Bo West"),
        "C": await _enrol(client, admin, "Cai Pool", email="cai.pool@example.com"),
        "D": await _enrol(client, admin, "Du Queued"),
    }
    await _assign(client, admin, members["A"]["id"], staff["rep_owner"].id)
    await _assign(client, admin, members["B"]["id"], staff["rep_other"].id)
    team = await client.put(
        f"/api/v1/members/{members['A']['id']}/service-team",
        json={"lead_id": str(staff["rep_service_team"].id), "members": []},
        headers=admin,
    )
    assert team.status_code == 200, team.text
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO handovers (id, member, from_rep, department, reason, created_at, due_at)"
            " VALUES (gen_random_uuid(), $1, $2, 'west', 'departure', now(),"
            " now() + interval '7 days')",
            UUID(members["D"]["id"]),
            staff["rep_other"].id,
        )
    return {"staff": staff, "members": members}


# --- the paths ------------------------------------------------------------------------------


async def _api_single(client, headers, members) -> set[str] | str:
    found, statuses = set(), set()
    for key, member in members.items():
        response = await client.get(f"/api/v1/members/{member['id']}", headers=headers)
        statuses.add(response.status_code)
        if response.status_code == 200:
            found.add(key)
        else:
            assert response.status_code in (401, 403, 404), response.text
    return REFUSED if statuses <= {401, 403} else found


async def _api_list(client, headers, members) -> set[str] | str:
    response = await client.get("/api/v1/members", params={"limit": 200}, headers=headers)
    if response.status_code in (401, 403):
        return REFUSED
    assert response.status_code == 200, response.text
    ids = {item["id"] for item in response.json()["items"]}
    return {key for key, member in members.items() if member["id"] in ids}


async def _export(client, headers, members) -> set[str] | str:
    response = await client.get("/api/v1/exports/members.csv", headers=headers)
    if response.status_code in (401, 403):
        return REFUSED
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))[1:]
    numbers = {row[0] for row in rows}
    return {key for key, member in members.items() if member["number"] in numbers}


def _chart_total(html: str) -> int:
    values = re.findall(
        r'data-tier="[a-z]+".*?<span class="chart-value">([\d,]+)</span>', html, re.S
    )
    return sum(int(value.replace(",", "")) for value in values)


async def _console(make_client, username: str, members) -> tuple[set[str] | str, int | str]:
    """(members whose console page opens, members counted on the home page's tier chart)."""
    browser = make_client()
    login = await browser.get("/console/login")
    signed = await browser.post(
        "/console/login",
        data={
            "username": username,
            "password": TEST_PASSWORD,
            "_csrf_token": csrf_from(login.text),
        },
    )
    assert signed.status_code == 303, signed.text
    pages, statuses = set(), set()
    for key, member in members.items():
        response = await browser.get(f"/console/members/{member['id']}")
        statuses.add(response.status_code)
        if response.status_code == 200:
            pages.add(key)
        else:
            assert response.status_code in (403, 404), response.status_code
    home = await browser.get("/console")
    assert home.status_code == 200, home.text
    if statuses == {403}:
        return REFUSED, REFUSED
    return pages, _chart_total(home.text)


async def _module(principal: Principal, members) -> tuple[set[str], set[str], int]:
    """The visibility module asked directly: one by one, as a set, and the tier counts."""
    one_by_one = {
        key for key, m in members.items() if await visibility.can_see(principal, UUID(m["id"]))
    }
    condition, args = visibility.condition(principal)
    async with db.connection() as conn:
        rows = await conn.fetch(f"SELECT m.id FROM members m WHERE {condition}", *args)
    ids = {str(row["id"]) for row in rows}
    as_set = {key for key, member in members.items() if member["id"] in ids}
    counted = sum(count for _, count in await tier_service.distribution(principal))
    return one_by_one, as_set, counted


async def _token(client, username: str) -> dict:
    response = await client.post(
        "/api/v1/auth/tokens", json={"username": username, "password": TEST_PASSWORD}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def _member_token(client, mailbox, email: str) -> dict:
    sent = await client.post("/api/v1/me/sign-in/code", json={"identifier": email})
    assert sent.status_code == 202, sent.text
    code = mailbox.last_code(email)
    response = await client.post("/api/v1/me/sign-in", json={"identifier": email, "code": code})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def _caller(role: str, world, client, admin, mailbox) -> tuple[dict, Principal]:
    members = world["members"]
    if role == "member":
        c = members["C"]
        headers = await _member_token(client, mailbox, "cai.pool@example.com")
        return headers, member_principal(UUID(c["id"]), c["number"])
    if role == "api_key":
        created = await client.post(
            "/api/v1/api-keys",
            json={"name": "reader", "scopes": ["members:read"]},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        principal = Principal(
            kind="api_key", id=uuid4(), label="key", permissions=frozenset({"members:read"})
        )
        return {"Authorization": f"Bearer {created.json()['key']}"}, principal
    person = world["staff"][role]
    principal = staff_principal(person.id, person.username, person.role, person.department)
    return await _token(client, person.username), principal


@pytest.mark.parametrize("role", list(EXPECTED))
async def test_every_path_shows_a_role_the_same_members(
    role, world, client, admin, make_client, mailbox
):
    members = world["members"]
    expected = EXPECTED[role]
    headers, principal = await _caller(role, world, client, admin, mailbox)
    seen: dict[str, set[str] | int | str] = {
        "GET /api/v1/members/{id}": await _api_single(client, headers, members),
        "GET /api/v1/members": await _api_list(client, headers, members),
        "GET /api/v1/exports/members.csv": await _export(client, headers, members),
    }
    one_by_one, as_set, counted = await _module(principal, members)
    seen["visibility.can_see"] = one_by_one
    seen["visibility.condition"] = as_set
    seen["tier distribution (count)"] = counted
    if role in STAFF:
        pages, chart = await _console(make_client, STAFF[role][0], members)
        seen["console member page"] = pages
        seen["console home tier chart (count)"] = chart
    if role == "member":
        me = await client.get("/api/v1/me", headers=headers)
        assert me.status_code == 200, me.text
        seen["portal GET /api/v1/me"] = {
            k for k, m in members.items() if m["id"] == me.json()["id"]
        }

    refused = {path for path, value in seen.items() if value == REFUSED}
    if principal.can("members:read"):
        assert refused == set(), seen
    else:  # marketing and members reach no staff member path
        assert all(path.startswith(("GET /api", "console")) for path in refused), seen
    answered = {path: value for path, value in seen.items() if value != REFUSED}
    wrong = {
        path: value
        for path, value in answered.items()
        if value != (len(expected) if isinstance(value, int) else expected)
    }
    assert wrong == {}, f"{role} should see {sorted(expected)}; these paths disagree: {wrong}"
