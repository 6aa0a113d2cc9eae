"""The access matrix: every endpoint of the API, generated from the app's own routes and
guards, called without credentials, with another member's session, with each staff role and
with an API key lacking the scope. Refusals are 401/403/404 problem details, nothing in the
database changes, and no error body carries another member's personal details."""

from __future__ import annotations

import secrets
import uuid

import pytest

from loyalty.auth import API_KEY_SCOPES, ROLE_PERMISSIONS, ROLES, staff_principal
from tests.helpers.database import all_tables
from tests.helpers.purchases import purchase_body
from tests.reliability.routes import PUBLIC, Route, api_routes

VICTIM = {"name": "Zhao Privatename", "email": "zhao.private@example.com", "phone": "13912345678"}
SECRETS = ("Privatename", "zhao.private", "13912345678", "+86 139", "+8613912345678")


async def table_counts() -> dict[str, int]:
    from loyalty.infrastructure import db

    counts = {}
    async with db.connection() as conn:
        for table in all_tables():
            counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
        counts["ledger_sum"] = await conn.fetchval(
            "SELECT coalesce(sum(points), 0) FROM points_ledger"
        )
    return counts


async def member_token(client, mailbox, email: str) -> dict:
    sent = await client.post("/api/v1/me/sign-in/code", json={"identifier": email})
    assert sent.status_code == 202, sent.text
    code = mailbox.last_code(email)
    response = await client.post("/api/v1/me/sign-in", json={"identifier": email, "code": code})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def api_key(client, admin, scopes) -> dict:
    response = await client.post(
        "/api/v1/api-keys", json={"name": f"key {scopes}", "scopes": sorted(scopes)}, headers=admin
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


@pytest.fixture
async def world(client, admin, bearer, mailbox, make_staff):
    """Objects that belong to a victim member, and callers who must not touch them."""
    victim = await client.post("/api/v1/members", json=VICTIM, headers=admin)
    assert victim.status_code == 201, victim.text
    victim = victim.json()
    attacker = (
        await client.post(
            "/api/v1/members",
            json={"name": "Li Other", "email": "li.other@example.com"},
            headers=admin,
        )
    ).json()
    vid = victim["id"]
    adjusted = await client.post(
        f"/api/v1/members/{vid}/points/adjustments",
        json={"points": 1000, "reason": "welcome gift", "idempotency_key": "seed"},
        headers=admin,
    )
    assert adjusted.status_code == 201, adjusted.text
    purchase = purchase_body(vid)
    pos_key = await api_key(client, admin, {"purchases:write"})
    assert (await client.post("/api/v1/purchases", json=purchase, headers=pos_key)).status_code in (
        200,
        201,
    )
    reward = await client.post(
        "/api/v1/rewards",
        json={"name": "Tea set", "kind": "goods", "points_cost": 100, "stock": 10},
        headers=admin,
    )
    assert reward.status_code == 201, reward.text
    reward = reward.json()
    redemption = await client.post(
        f"/api/v1/members/{vid}/redemptions",
        json={"reward_id": reward["id"], "quantity": 1, "idempotency_key": "r1"},
        headers=admin,
    )
    assert redemption.status_code == 201, redemption.text
    other_staff = await make_staff(f"other{secrets.token_hex(3)}", "rep", "north")
    keys = (await client.get("/api/v1/api-keys", headers=admin)).json()
    key_id = (keys["items"] if isinstance(keys, dict) else keys)[0]["id"]
    callers = {role: await bearer(role, department="sales") for role in ROLES}
    callers["marketing_manager"] = await bearer("manager", department="marketing")
    return {
        "values": {
            "member_id": vid,
            "external_id": purchase["external_id"],
            "reward_id": reward["id"],
            "redemption_id": redemption.json()["id"],
            "staff_id": str(other_staff.id),
            "key_id": key_id,
            "code": "silver",
            "month": "2025-01",
        },
        "staff": callers,
        "member": await member_token(client, mailbox, "li.other@example.com"),
        "attacker": attacker,
        "key_without_members_read": await api_key(client, admin, API_KEY_SCOPES - {"members:read"}),
        "key_with_members_read_only": await api_key(client, admin, {"members:read"}),
    }


def role_permissions(role: str) -> frozenset[str]:
    """What the permission table in loyalty/auth.py grants (a manager of the marketing
    department also gets marketing's permissions)."""
    if role == "marketing_manager":
        return staff_principal(uuid.uuid4(), "m", "manager", "marketing").permissions
    return ROLE_PERMISSIONS[role]


def assert_refused(response, statuses: tuple[int, ...], what: str) -> None:
    assert response.status_code in statuses, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    for secret in SECRETS:
        assert secret.lower() not in response.text.lower(), f"{what} leaks {secret}"


async def call(client, route: Route, values: dict, headers: dict | None):
    # An empty JSON object: enough to reach the guards, never a valid change on its own.
    body = {} if route.method in ("POST", "PUT", "PATCH") else None
    return await client.request(route.method, route.fill(values), json=body, headers=headers)


def test_every_route_is_classified(app):
    routes = api_routes(app)
    assert len(routes) > 100
    public = {(r.method, r.path) for r in routes if r.access == "public"}
    assert public == PUBLIC, "a new endpoint without a guard: add it to PUBLIC or guard it"


async def test_access_matrix(app, client, world):
    routes = [r for r in api_routes(app) if r.access != "public"]
    values = world["values"]
    before = await table_counts()
    checked = 0
    for route in routes:
        what = f"{route.method} {route.path}"
        # 1. No credentials at all.
        assert_refused(await call(client, route, values, None), (401,), f"anonymous {what}")
        # 2. Another member's own session on the staff API.
        if route.access == "permission":
            response = await call(client, route, values, world["member"])
            assert_refused(response, (403,), f"member {what}")
        # 3. API keys: never on the member's API; never past their scopes.
        if route.access == "member":
            for key in ("key_without_members_read", "key_with_members_read_only"):
                assert_refused(await call(client, route, values, world[key]), (403,), what)
        if route.access == "permission":
            needed = set(route.permissions)
            if needed - {"members:read"}:
                key = world["key_with_members_read_only"]
            else:
                key = world["key_without_members_read"]
            assert_refused(await call(client, route, values, key), (403,), f"key {what}")
        # 4. Every staff role.
        for role, headers in world["staff"].items():
            if route.access == "member":
                assert_refused(await call(client, route, values, headers), (403,), role + what)
            elif route.access == "permission" and not set(route.permissions) <= role_permissions(
                role
            ):
                assert_refused(await call(client, route, values, headers), (403,), role + what)
        checked += 1
    assert await table_counts() == before
    assert checked == len(routes)


async def test_allowed_reads_never_fail(app, client, world):
    """Roles that hold a read's permission get an answer (or 403/404 from the object-level
    rules: a rep sees only assigned members; 400 for missing query parameters), never 5xx."""
    values = world["values"]
    before = await table_counts()
    for route in api_routes(app):
        if not route.is_read or route.access not in ("permission", "authenticated"):
            continue
        for role, headers in world["staff"].items():
            if not set(route.permissions) <= role_permissions(role):
                continue
            response = await call(client, route, values, headers)
            what = f"{role} {route.method} {route.path}"
            # 400: a read with required query parameters, called without them.
            assert response.status_code in (200, 400, 403, 404), f"{what}: {response.text[:300]}"
            if response.status_code != 200:
                assert_refused(response, (400, 403, 404), what)
    after = await table_counts()
    # Reading an archive is audited (member_views); nothing else may change.
    before.pop("member_views", None), after.pop("member_views", None)
    assert after == before


async def test_a_member_cannot_reach_another_members_objects(client, world):
    member = world["member"]
    values = world["values"]
    before = await table_counts()
    cancel = await client.post(
        f"/api/v1/me/redemptions/{values['redemption_id']}/cancel",
        json={"reason": "changed my mind"},
        headers=member,
    )
    assert_refused(cancel, (404,), "cancel another member's redemption")
    me = await client.get("/api/v1/me", headers=member)
    assert me.status_code == 200 and me.json()["id"] == world["attacker"]["id"]
    for secret in SECRETS:
        assert secret.lower() not in me.text.lower()
    for path in ("/api/v1/me/redemptions", "/api/v1/me/points/entries", "/api/v1/me/export"):
        response = await client.get(path, headers=member)
        assert response.status_code == 200, response.text
        assert values["redemption_id"] not in response.text
        for secret in SECRETS:
            assert secret.lower() not in response.text.lower(), path
    assert await table_counts() == before
