"""Members: enrolment with normalised unique contacts, lookup, partial updates with a change
record, visibility by role, and merging duplicates."""

from __future__ import annotations

PERSON = {
    "name": "Li Wei",
    "phone": "138 0013 8000",
    "email": "Li.Wei@Example.COM",
    "gender": "male",
    "birthday": "1985-04-12",
    "address": {"line1": "88 Century Ave", "city": "Shanghai", "region": "SH", "country": "CN"},
    "household": {
        "spouse": "Zhang Min",
        "children": [{"name": "Li Xiao", "age": 9, "school": "Pudong No. 2 Primary"}],
        "elderly_parents": ["Li Guo (father, 72)"],
    },
    "hobbies": ["golf", "tea"],
    "consumption_preferences": ["prefers weekend delivery"],
    "notes": "Met at the spring fair.",
    "tags": ["vip-prospect"],
    "contact_preferences": {
        "channels": ["wechat", "email"],
        "consents": [{"channel": "email", "granted": True, "method": "signed paper form"}],
    },
}


async def test_enrol_a_person_with_normalised_contacts(client, bearer):
    admin = await bearer("admin")
    response = await client.post("/api/v1/members", json=PERSON, headers=admin)
    assert response.status_code == 201, response.text
    member = response.json()
    assert member["phone"] == "+8613800138000"
    assert member["email"] == "li.wei@example.com"
    assert len(member["number"]) == 10 and member["number"][0] != "0"
    assert member["household"]["children"][0]["school"] == "Pudong No. 2 Primary"
    assert member["registration"]["channel"] == "staff"
    assert member["registration"]["by"].startswith("staff:")
    consent = member["contact_preferences"]["consents"][0]
    assert consent["granted"] is True and consent["at"] is not None
    fetched = await client.get(f"/api/v1/members/{member['id']}", headers=admin)
    assert fetched.json() == member


async def test_enrol_an_organisation_with_sections(client, bearer):
    admin = await bearer("admin")
    response = await client.post(
        "/api/v1/members",
        json={
            "kind": "organisation",
            "name": "Huangpu Trading Co.",
            "email": "buyers@huangpu.example",
            "organisation": {
                "company_profile": "Wholesaler of tea",
                "operations": "3 warehouses",
                "owner": "Mr. Chen",
                "settlement_habits": "Monthly, 30 days",
                "key_staff": [{"name": "Ms. Wu", "role": "buyer"}],
            },
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    assert response.json()["organisation"]["key_staff"][0]["name"] == "Ms. Wu"


async def test_duplicate_phone_or_email_is_409_naming_the_owner(client, bearer):
    admin = await bearer("admin")
    first = (await client.post("/api/v1/members", json=PERSON, headers=admin)).json()
    again = await client.post(
        "/api/v1/members", json={"name": "Other", "phone": "+86 138-0013-8000"}, headers=admin
    )
    assert again.status_code == 409
    assert again.json()["field"] == "phone"
    assert first["number"] in again.json()["detail"]
    by_email = await client.post(
        "/api/v1/members", json={"name": "Other", "email": "LI.WEI@example.com"}, headers=admin
    )
    assert by_email.status_code == 409 and by_email.json()["field"] == "email"


async def test_duplicate_owned_by_someone_elses_rep_is_not_named(client, bearer):
    rep_a = await bearer("rep", department="east")
    rep_b = await bearer("rep", department="east")
    first = (await client.post("/api/v1/members", json=PERSON, headers=rep_a)).json()
    again = await client.post(
        "/api/v1/members", json={"name": "Other", "phone": PERSON["phone"]}, headers=rep_b
    )
    assert again.status_code == 409
    assert first["number"] not in again.text and first["id"] not in again.text


async def test_invalid_phone_and_email_name_the_field(client, bearer):
    admin = await bearer("admin")
    bad_phone = await client.post(
        "/api/v1/members", json={"name": "X", "phone": "12"}, headers=admin
    )
    assert bad_phone.status_code == 422 and bad_phone.json()["field"] == "phone"
    bad_email = await client.post(
        "/api/v1/members", json={"name": "X", "email": "not-an-email"}, headers=admin
    )
    assert bad_email.status_code == 422 and bad_email.json()["field"] == "email"
    listing = await client.get("/api/v1/members", headers=admin)
    assert listing.json()["items"] == []


async def test_patch_changes_only_sent_fields_and_records_the_change(client, bearer):
    admin = await bearer("admin")
    member = (await client.post("/api/v1/members", json=PERSON, headers=admin)).json()
    response = await client.patch(
        f"/api/v1/members/{member['id']}",
        json={"email": "NEW@example.com", "notes": "Moved to Beijing", "gender": None},
        headers=admin,
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["email"] == "new@example.com" and updated["gender"] is None
    assert updated["phone"] == member["phone"] and updated["household"] == member["household"]
    changes = (await client.get(f"/api/v1/members/{member['id']}/changes", headers=admin)).json()
    assert changes[0]["action"] == "update"
    assert changes[0]["changes"]["email"] == {"old": "li.wei@example.com", "new": "new@example.com"}
    assert set(changes[0]["changes"]) == {"email", "notes", "gender"}
    assert changes[0]["actor"].startswith("staff:admin")
    assert changes[-1]["action"] == "create"


async def test_lookup_by_phone_email_number_and_name(client, bearer):
    admin = await bearer("admin")
    member = (await client.post("/api/v1/members", json=PERSON, headers=admin)).json()
    await client.post("/api/v1/members", json={"name": "Wang Fang"}, headers=admin)
    for query in (
        {"phone": "13800138000"},
        {"email": "li.wei@EXAMPLE.com"},
        {"number": f"{member['number'][:4]} {member['number'][4:]}"},
        {"q": "wei"},
    ):
        found = (await client.get("/api/v1/members", params=query, headers=admin)).json()
        assert [m["id"] for m in found["items"]] == [member["id"]], query
    everyone = (await client.get("/api/v1/members", params={"limit": 1}, headers=admin)).json()
    assert len(everyone["items"]) == 1 and everyone["has_more"] is True


async def test_reps_see_only_their_own_members(client, bearer):
    rep_a = await bearer("rep", department="east")
    rep_b = await bearer("rep", department="east")
    manager_east = await bearer("manager", department="east")
    manager_west = await bearer("manager", department="west")
    mine = (await client.post("/api/v1/members", json=PERSON, headers=rep_a)).json()
    assert (await client.get(f"/api/v1/members/{mine['id']}", headers=rep_a)).status_code == 200
    assert (await client.get(f"/api/v1/members/{mine['id']}", headers=rep_b)).status_code == 404
    assert (
        await client.patch(f"/api/v1/members/{mine['id']}", json={"notes": "x"}, headers=rep_b)
    ).status_code == 404
    assert (await client.get("/api/v1/members", headers=rep_b)).json()["items"] == []
    assert (
        await client.get(f"/api/v1/members/{mine['id']}", headers=manager_east)
    ).status_code == 200
    assert (
        await client.get(f"/api/v1/members/{mine['id']}", headers=manager_west)
    ).status_code == 404


async def test_integration_enrolment_is_recorded_as_such(client, bearer):
    admin = await bearer("admin")
    key = (
        await client.post(
            "/api/v1/api-keys", json={"name": "Shop", "scopes": ["members:write"]}, headers=admin
        )
    ).json()["key"]
    response = await client.post(
        "/api/v1/members", json={"name": "Online Buyer"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201
    assert response.json()["registration"] == {
        **response.json()["registration"],
        "channel": "integration",
        "by": "api_key:Shop",
    }


async def test_unknown_and_wrong_fields_write_nothing(client, bearer):
    admin = await bearer("admin")
    for body, field in (
        ({"name": "X", "favourite_colour": "red"}, "favourite_colour"),
        ({"name": "X", "birthday": "not-a-date"}, "birthday"),
        ({"name": "X", "household": {"children": [{"age": -1}]}}, "household.children[0].age"),
        ({"phone": "13800138000"}, "name"),
    ):
        response = await client.post("/api/v1/members", json=body, headers=admin)
        assert response.status_code == 400, body
        assert response.json()["field"] == field, response.json()
    assert (await client.get("/api/v1/members", headers=admin)).json()["items"] == []
