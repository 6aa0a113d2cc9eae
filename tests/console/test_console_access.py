"""The console's access matrix, generated from the app's console routes (as
tests/reliability/test_access.py is for the API), so pages added later are covered too:

- without a session, every page sends the reader to the sign-in page, and every form post is
  refused without writing anything;
- a form post without the CSRF token is refused (403), nothing written;
- every route about a member, opened by staff of another department who could not reach the
  member through the API, answers 404 and shows nothing of the member;
- staff lacking the permission a page asks for (`staff(request, "...")`, read from the
  handler: tests/helpers/console_routes.py) get the 403 page, and their posts write nothing.
"""

from __future__ import annotations

import re
import uuid

import pytest

from loyalty.auth import ROLE_PERMISSIONS
from loyalty.infrastructure import db
from tests.helpers.console import sign_in
from tests.helpers.console_routes import ANY_STAFF, UNKNOWN, ConsoleRoute, console_routes
from tests.helpers.database import all_tables
from tests.helpers.pages import csrf_from

VICTIM = {"name": "Zhao Privatename", "email": "zhao.private@example.com", "phone": "13912345678"}
SECRETS = ("Privatename", "zhao.private", "13912345678")
# Staff by role; departments as tests/console/conftest.py's team (east and west).
PEOPLE = {
    "admin": ("ada", "admin", None),
    "general_manager": ("gus", "general_manager", None),
    "manager": ("mia", "manager", "east"),
    "rep": ("ravi", "rep", "east"),
    "service": ("sam", "service", None),
    "marketing": ("meg", "marketing", "marketing"),
}
# Of the other department: they hold a rep's and a manager's permissions, not the member.
OUTSIDERS = {"rep": ("wei", "rep", "west"), "manager": ("wu", "manager", "west")}


def fill(route: ConsoleRoute, member_id: str) -> str:
    values = {"member_id": member_id, "code": "silver", "decision": "approve"}

    def replace(match: re.Match) -> str:
        return values.get(match.group(1)) or str(uuid.uuid4())

    return re.sub(r"\{(\w+)(?::\w+)?\}", replace, route.path)


async def table_counts() -> dict[str, int]:
    async with db.connection() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in all_tables()}


def assert_private(response, what: str) -> None:
    for secret in SECRETS:
        assert secret.lower() not in response.text.lower(), f"{what} shows {secret}"


@pytest.fixture
async def world(client, admin, make_staff, make_client):
    """A member of rep ravi (east), and a signed-in browser for each role and outsider."""
    from tests.helpers.staff import staff_past_their_first_month

    people = {}
    for key, (username, role, department) in {
        **PEOPLE,
        **{f"outside_{k}": v for k, v in OUTSIDERS.items()},
    }.items():
        people[key] = (await make_staff(username, role, department), username)
    await staff_past_their_first_month()
    victim = (await client.post("/api/v1/members", json=VICTIM, headers=admin)).json()
    moved = await client.put(
        f"/api/v1/members/{victim['id']}/assignment",
        json={"rep_id": str(people["rep"][0].id), "reason": "territory"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    browsers = {}
    for key, (_, username) in people.items():
        browser = await sign_in(make_client(), username)
        browsers[key] = (browser, csrf_from((await browser.get("/console/notices")).text))
    return {"member_id": victim["id"], "browsers": browsers}


def test_every_console_route_says_what_it_needs(app):
    routes = console_routes(app)
    assert len(routes) > 40
    unknown = [f"{r.operation} ({r.handler})" for r in routes if r.permissions == UNKNOWN]
    assert not unknown, (
        "console handlers that never call staff(request, ...): call it (in the handler or a"
        " helper of its module), or declare opt={'permission': ...}: " + ", ".join(unknown)
    )


async def test_without_a_session_pages_lead_to_sign_in_and_posts_change_nothing(
    app, world, make_client
):
    anonymous = make_client()
    token = csrf_from((await anonymous.get("/console/login")).text)
    before = await table_counts()
    for route in console_routes(app):
        if route.permissions == "public":
            continue
        url = fill(route, world["member_id"])
        if route.method == "GET":
            response = await anonymous.get(url)
        else:
            response = await anonymous.post(url, data={"_csrf_token": token})
        assert response.status_code in (302, 303), f"anonymous {route.operation}"
        assert response.headers["location"].endswith("/console/login"), route.operation
        assert_private(response, route.operation)
    assert await table_counts() == before


async def test_posts_without_the_csrf_token_are_refused(app, world):
    browser, _ = world["browsers"]["admin"]
    before = await table_counts()
    for route in console_routes(app):
        if route.method != "POST":
            continue
        response = await browser.post(fill(route, world["member_id"]), data={"x": "1"})
        assert response.status_code == 403, f"{route.operation}: {response.status_code}"
        assert_private(response, route.operation)
    assert await table_counts() == before


async def test_another_departments_staff_get_404_for_every_member_route(app, world):
    member_routes = [r for r in console_routes(app) if r.has_member]
    assert member_routes
    before = await table_counts()
    checked = 0
    for route in member_routes:
        # Whoever of the other department holds what the page asks for.
        for key in ("outside_rep", "outside_manager"):
            role = key.removeprefix("outside_")
            if isinstance(route.permissions, frozenset) and not (
                route.permissions <= ROLE_PERMISSIONS[role]
            ):
                continue
            browser, token = world["browsers"][key]
            url = fill(route, world["member_id"])
            if route.method == "GET":
                response = await browser.get(url)
            else:
                response = await browser.post(url, data={"_csrf_token": token})
            assert response.status_code == 404, (
                f"{key} {route.operation}: {response.status_code} {response.text[-300:]}"
            )
            assert_private(response, f"{key} {route.operation}")
            checked += 1
    assert checked >= len(member_routes)
    assert await table_counts() == before


async def test_staff_lacking_a_pages_permission_get_403(app, world):
    before = await table_counts()
    checked = 0
    for route in console_routes(app):
        if not isinstance(route.permissions, frozenset):
            assert route.permissions in ("public", ANY_STAFF)
            continue
        for role in PEOPLE:
            if route.permissions & ROLE_PERMISSIONS[role]:
                continue  # holds one of what the page asks for
            browser, token = world["browsers"][role]
            url = fill(route, world["member_id"])
            if route.method == "GET":
                response = await browser.get(url)
            else:
                response = await browser.post(url, data={"_csrf_token": token})
            assert response.status_code == 403, (
                f"{role} {route.operation}: {response.status_code} {response.text[-300:]}"
            )
            assert_private(response, f"{role} {route.operation}")
            checked += 1
    assert checked > 50
    assert await table_counts() == before
