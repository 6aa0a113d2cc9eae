"""A staff user's notices through the API: listed newest first, marked read one at a time
(only one's own: someone else's is a 404 and nothing changes) or all at once, and the unread
count the console's navigation shows."""

from __future__ import annotations

import uuid

from loyalty.auth import staff_principal
from loyalty.infrastructure import db
from loyalty.reps import notices
from tests.helpers.staff import TEST_PASSWORD, notice_for


async def token_of(client, username: str) -> dict:
    response = await client.post(
        "/api/v1/auth/tokens", json={"username": username, "password": TEST_PASSWORD}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def read_times() -> dict[str, object]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, read_at FROM staff_notices")
    return {str(row["id"]): row["read_at"] for row in rows}


async def test_marking_notices_read(client, make_staff):
    ravi = await make_staff("ravi", "rep", "east")
    rosa = await make_staff("rosa", "rep", "east")
    ravi_api, rosa_api = await token_of(client, "ravi"), await token_of(client, "rosa")
    old = await notice_for(ravi.id, "Older", hours_ago=5)
    new = await notice_for(ravi.id, "Newer", hours_ago=1)
    third = await notice_for(ravi.id, "Third", hours_ago=3)
    rosas = await notice_for(rosa.id, "Rosa's own")
    principal = staff_principal(ravi.id, "ravi", "rep", "east")
    assert await notices.unread_count(principal) == 3

    listed = (await client.get("/api/v1/notices", headers=ravi_api)).json()
    assert [n["title"] for n in listed] == ["Newer", "Third", "Older"]
    assert all(n["read_at"] is None for n in listed)

    read = await client.post(f"/api/v1/notices/{old}/read", headers=ravi_api)
    assert read.status_code == 200, read.text
    first_read = read.json()["read_at"]
    assert read.json()["id"] == old and first_read is not None
    # Marking it again keeps the first read time.
    again = await client.post(f"/api/v1/notices/{old}/read", headers=ravi_api)
    assert again.status_code == 200 and again.json()["read_at"] == first_read
    assert await notices.unread_count(principal) == 2
    unread = (await client.get("/api/v1/notices?unread=true", headers=ravi_api)).json()
    assert [n["id"] for n in unread] == [new, third]

    # Another staff user's notice, or an unknown one: 404, and nothing is written.
    before = await read_times()
    for notice_id in (rosas, str(uuid.uuid4())):
        refused = await client.post(f"/api/v1/notices/{notice_id}/read", headers=ravi_api)
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "Rosa" not in refused.text
    assert await read_times() == before

    # Mark all: only the caller's own, and the count says how many were unread.
    marked = await client.post("/api/v1/notices/read", headers=ravi_api)
    assert marked.status_code == 200 and marked.json() == {"marked": 2}
    assert await notices.unread_count(principal) == 0
    assert (await read_times())[old] == before[old]  # the first read time stays
    assert (await client.post("/api/v1/notices/read", headers=ravi_api)).json() == {"marked": 0}
    rosas_list = (await client.get("/api/v1/notices?unread=true", headers=rosa_api)).json()
    assert [n["id"] for n in rosas_list] == [rosas]


async def test_marking_needs_a_signed_in_caller(client):
    for url in (f"/api/v1/notices/{uuid.uuid4()}/read", "/api/v1/notices/read"):
        assert (await client.post(url)).status_code == 401
