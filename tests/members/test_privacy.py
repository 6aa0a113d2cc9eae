"""Erasure on an approved closure request: no personal data left in any table (every text
and JSON column searched), while balances, tiers and purchases stay as they were."""

from __future__ import annotations

from datetime import timedelta

from loyalty.auth import member_principal
from loyalty.infrastructure.clock import add_months, now
from loyalty.marketing import expiry
from loyalty.members import privacy
from tests.helpers.members import find
from tests.helpers.purchases import purchase_body

SECRETS = [
    "Xiaoming Zhangsan",
    "+8613912345678",
    "xiaoming.secret@example.com",
    "88 Secret Lane",
    "Meimei Spouse",
    "loves oolong",
]


async def test_erasure_leaves_no_personal_data_and_keeps_the_books(client, admin, pos, bearer):
    member = (
        await client.post(
            "/api/v1/members",
            json={
                "name": "Xiaoming Zhangsan",
                "phone": "+8613912345678",
                "email": "xiaoming.secret@example.com",
                "address": {"line1": "88 Secret Lane", "city": "Shanghai"},
                "household": {"spouse": "Meimei Spouse"},
                "hobbies": ["loves oolong"],
                "contact_preferences": {
                    "channels": ["email"],
                    "consents": [{"channel": "email", "granted": True, "method": "paper form"}],
                },
            },
            headers=admin,
        )
    ).json()
    await client.patch(
        f"/api/v1/members/{member['id']}",
        json={"notes": "Xiaoming Zhangsan prefers mornings"},
        headers=admin,
    )
    await client.post(
        "/api/v1/purchases",
        json=purchase_body(member["id"], ("TV", 1, "6000.00", "general")),
        headers=pos,
    )
    await client.post(
        f"/api/v1/members/{member['id']}/contacts",
        json={
            "kind": "call",
            "channel": "phone",
            "body": "Called +8613912345678, Meimei Spouse answered",
        },
        headers=admin,
    )
    # An expiry warning by email keeps the address it went to, until the erasure.
    assert await expiry.run(at=add_months(now(), 24) - timedelta(days=10)) == 1
    before = (await client.get(f"/api/v1/members/{member['id']}/points", headers=admin)).json()
    tier_before = (await client.get(f"/api/v1/members/{member['id']}/tier", headers=admin)).json()
    assert tier_before["tier"] == "silver"
    for value in SECRETS:
        assert await find(value), value  # the search does find them before

    principal = member_principal(member["id"], member["number"])
    await privacy.request_closure(principal, "Xiaoming Zhangsan is moving abroad")
    pending = (await client.get("/api/v1/closure-requests?status=pending", headers=admin)).json()
    assert len(pending) == 1
    manager = await bearer("manager")
    denied = await client.post(
        f"/api/v1/closure-requests/{pending[0]['id']}/approve", headers=manager
    )
    assert denied.status_code == 403
    approved = await client.post(
        f"/api/v1/closure-requests/{pending[0]['id']}/approve", headers=admin
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"

    for value in SECRETS:
        assert await find(value) == [], value
    after = (await client.get(f"/api/v1/members/{member['id']}/points", headers=admin)).json()
    assert {k: after[k] for k in ("total", "available", "pending")} == {
        k: before[k] for k in ("total", "available", "pending")
    }
    erased = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert erased["name"] == f"Erased member {member['number']}" and erased["status"] == "erased"
    consents = erased["contact_preferences"]["consents"]
    assert consents[0]["method"] == "paper form"  # evidence kept
    changes = (await client.get(f"/api/v1/members/{member['id']}/changes", headers=admin)).json()
    assert changes[0]["action"] == "erase" and changes[0]["actor"].startswith("staff:")
    tier_after = (await client.get(f"/api/v1/members/{member['id']}/tier", headers=admin)).json()
    assert tier_after["tier"] == "silver"
    again = await client.post(f"/api/v1/closure-requests/{pending[0]['id']}/approve", headers=admin)
    assert again.status_code == 409


async def test_a_birthday_can_be_changed(client, admin, member):
    response = await client.patch(
        f"/api/v1/members/{member['id']}", json={"birthday": "1990-05-17"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["birthday"] == "1990-05-17"
