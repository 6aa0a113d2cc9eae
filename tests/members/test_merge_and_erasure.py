"""A merge keeps everything of the duplicate with the survivor (contact log, archive,
consents, portal password) and records what it changed; erasing a member erases the
archives merged into it too."""

from __future__ import annotations

from loyalty.auth import member_principal
from loyalty.members import privacy
from loyalty.portal import service as portal
from tests.helpers.members import find, merge


async def _enrol(client, headers, body):
    response = await client.post("/api/v1/members", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _merge(client, admin, survivor, duplicate):
    return await merge(client, admin, survivor["id"], duplicate["id"])


# --- merges ---------------------------------------------------------------------------------


async def test_merge_moves_the_duplicates_contact_log_to_the_survivor(client, admin):
    survivor = await _enrol(client, admin, {"name": "Zhao Lei"})
    duplicate = await _enrol(client, admin, {"name": "Zhao Lei (dup)"})
    logged = await client.post(
        f"/api/v1/members/{duplicate['id']}/contacts",
        json={"kind": "visit", "channel": "visit", "body": "Visited the showroom, wants a sofa"},
        headers=admin,
    )
    assert logged.status_code == 201, logged.text
    await _merge(client, admin, survivor, duplicate)
    contacts = await client.get(f"/api/v1/members/{survivor['id']}/contacts", headers=admin)
    assert contacts.status_code == 200
    assert [c["body"] for c in contacts.json()] == ["Visited the showroom, wants a sofa"]


async def test_merge_keeps_the_duplicates_archive_and_consent_on_the_survivor(client, admin):
    survivor = await _enrol(client, admin, {"name": "Qian Hui"})
    duplicate = await _enrol(
        client,
        admin,
        {
            "name": "Qian Hui",
            "email": "qian.hui@example.com",
            "address": {"line1": "5 Garden Road", "city": "Hangzhou"},
            "household": {"spouse": "Sun Tao"},
            "notes": "Allergic to lilies",
            "hobbies": ["calligraphy"],
            "contact_preferences": {
                "channels": ["email"],
                "consents": [{"channel": "email", "granted": True, "method": "paper form"}],
            },
        },
    )
    result = await _merge(client, admin, survivor, duplicate)
    merged = result["survivor"]
    assert merged["email"] == "qian.hui@example.com"  # this part does move
    lost = {
        field: merged[field]
        for field, empty in (
            ("address", None),
            ("household", None),
            ("hobbies", []),
        )
        if merged[field] == empty
    }
    if "Allergic to lilies" not in merged["notes"]:
        lost["notes"] = merged["notes"]
    if not merged["contact_preferences"]["consents"]:
        lost["consents"] = merged["contact_preferences"]
    assert lost == {}, f"the survivor lost the duplicate's {sorted(lost)}"


async def test_merge_keeps_the_duplicates_portal_password(client, admin, redis, settings):
    survivor = await _enrol(client, admin, {"name": "Feng Yu", "phone": "13900139000"})
    duplicate = await _enrol(client, admin, {"name": "Feng Yu", "email": "feng.yu@example.com"})
    password = "a-long-portal-password-77"
    await portal.set_password(member_principal(duplicate["id"], duplicate["number"]), password)
    before = await portal.sign_in_with_password(
        "feng.yu@example.com", password, redis=redis, client="10.0.0.7", settings=settings
    )
    assert str(before.id) == duplicate["id"]
    merged = (await _merge(client, admin, survivor, duplicate))["survivor"]
    assert merged["email"] == "feng.yu@example.com"
    # The same person signs in with the same email and password, now as the survivor.
    after = await portal.sign_in_with_password(
        "feng.yu@example.com", password, redis=redis, client="10.0.0.7", settings=settings
    )
    assert str(after.id) == survivor["id"]


async def test_merge_records_the_survivors_changed_tags(client, admin):
    survivor = await _enrol(client, admin, {"name": "He Ping", "tags": ["golf"]})
    duplicate = await _enrol(client, admin, {"name": "He Ping", "tags": ["wine"]})
    merged = (await _merge(client, admin, survivor, duplicate))["survivor"]
    assert merged["tags"] == ["golf", "wine"]
    changes = (await client.get(f"/api/v1/members/{survivor['id']}/changes", headers=admin)).json()
    merge = next(c for c in changes if c["action"] == "merge")
    recorded = repr(merge["changes"])
    assert "tags" in recorded and "wine" in recorded, merge["changes"]


# --- erasure --------------------------------------------------------------------------------


async def test_erasure_also_erases_the_archive_merged_into_the_member(client, admin):
    survivor = await _enrol(client, admin, {"name": "Xiaoming Zhangsan", "phone": "+8613912345678"})
    duplicate = await _enrol(
        client,
        admin,
        {
            "name": "Xiaoming Zhangsan",
            "email": "xiaoming.secret@example.com",
            "address": {"line1": "88 Secret Lane", "city": "Shanghai"},
            "household": {"spouse": "Meimei Spouse"},
        },
    )
    await _merge(client, admin, survivor, duplicate)
    principal = member_principal(survivor["id"], survivor["number"])
    await privacy.request_closure(principal, "moving abroad")
    pending = (await client.get("/api/v1/closure-requests?status=pending", headers=admin)).json()
    approved = await client.post(
        f"/api/v1/closure-requests/{pending[0]['id']}/approve", headers=admin
    )
    assert approved.status_code == 200, approved.text
    left = {
        value: await find(value)
        for value in (
            "Xiaoming Zhangsan",
            "+8613912345678",
            "xiaoming.secret@example.com",
            "88 Secret Lane",
            "Meimei Spouse",
        )
    }
    assert {k: v for k, v in left.items() if v} == {}
