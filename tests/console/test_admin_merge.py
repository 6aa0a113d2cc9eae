"""Merging duplicates in the console: the preview shows both archives and what moves and
writes nothing; the merge needs the tick box and a reason (errors beside the field, nothing
merged); a second click merges once; admins only."""

from __future__ import annotations

import re

from tests.helpers.console import post_form, sign_in
from tests.helpers.purchases import purchase_body


async def _pair(client, admin, pos):
    survivor = (
        await client.post(
            "/api/v1/members",
            json={"name": "Li Na", "phone": "+8613900000001", "hobbies": ["tea"]},
            headers=admin,
        )
    ).json()
    duplicate = (
        await client.post(
            "/api/v1/members",
            json={
                "name": "Li Na",
                "email": "lina@example.com",
                "hobbies": ["golf"],
                "contact_preferences": {
                    "channels": ["email"],
                    "consents": [{"channel": "email", "granted": True, "method": "paper form"}],
                },
            },
            headers=admin,
        )
    ).json()
    bought = await client.post(
        "/api/v1/purchases", json=purchase_body(duplicate["id"]), headers=pos
    )
    assert bought.status_code == 201, bought.text
    return survivor, duplicate


async def test_preview_then_merge_once(client, admin, pos, make_client, make_staff):
    survivor, duplicate = await _pair(client, admin, pos)
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    preview = await browser.get(
        f"/console/merge/preview?survivor={survivor['number']}&duplicate={duplicate['number']}"
    )
    assert preview.status_code == 200
    text = preview.text
    assert 'data-side="survivor"' in text and 'data-side="duplicate"' in text
    assert "lina@example.com" in text and 'data-field="email"' in text  # the blank it takes
    assert re.search(r'data-move="purchases">\s*1 ', text)
    assert 'data-move="consents">' in text and "email." in text.split('data-move="consents">')[1]
    # The preview wrote nothing.
    again = (await client.get(f"/api/v1/members/{duplicate['id']}", headers=admin)).json()
    assert again["status"] == "active"
    form = {
        "survivor_id": survivor["id"],
        "duplicate_id": duplicate["id"],
        "survivor": survivor["number"],
        "duplicate": duplicate["number"],
        "reason": "same person, two cards",
        "confirm": "yes",
    }
    page = f"/console/merge/preview?survivor={survivor['number']}&duplicate={duplicate['number']}"
    first = await post_form(browser, "/console/merge", form, page)
    assert first.status_code == 303, first.text
    second = await post_form(browser, "/console/merge", form, "/console/merge")
    assert second.status_code == 303  # the second click: already done, no error
    merged = (await client.get(f"/api/v1/members/{survivor['id']}", headers=admin)).json()
    assert merged["email"] == "lina@example.com"
    history = (await client.get(f"/api/v1/members/{survivor['id']}/changes", headers=admin)).json()
    assert [c["action"] for c in history].count("merge") == 1
    done = await browser.get(second.headers["location"])
    assert "The duplicate is merged" in done.text


async def test_merge_needs_the_tick_box_and_a_reason(client, admin, pos, make_client, make_staff):
    survivor, duplicate = await _pair(client, admin, pos)
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    base = {
        "survivor_id": survivor["id"],
        "duplicate_id": duplicate["id"],
        "survivor": survivor["number"],
        "duplicate": duplicate["number"],
    }
    unticked = await post_form(browser, "/console/merge", {**base, "reason": "dup"})
    assert unticked.status_code == 422 and 'id="confirm-error"' in unticked.text
    assert 'data-side="survivor"' in unticked.text  # the preview again, with the reason typed
    assert ">dup</textarea>" in unticked.text
    no_reason = await post_form(browser, "/console/merge", {**base, "confirm": "yes"})
    assert no_reason.status_code == 422 and 'id="reason-error"' in no_reason.text
    same = await browser.get(
        f"/console/merge/preview?survivor={survivor['number']}&duplicate={survivor['number']}"
    )
    assert same.status_code == 422 and 'id="duplicate-error"' in same.text
    unknown = await browser.get("/console/merge/preview?survivor=123&duplicate=456")
    assert unknown.status_code == 422 and 'id="survivor-error"' in unknown.text
    still = (await client.get(f"/api/v1/members/{duplicate['id']}", headers=admin)).json()
    assert still["status"] == "active"
    no_csrf = await browser.post("/console/merge", data={**base, "confirm": "yes", "reason": "x"})
    assert no_csrf.status_code == 403


async def test_only_admins_merge(client, admin, pos, make_client, make_staff):
    survivor, duplicate = await _pair(client, admin, pos)
    await make_staff("mia", "manager", "east")
    browser = await sign_in(make_client(), "mia")
    assert (await browser.get("/console/merge")).status_code == 403
    refused = await post_form(
        browser,
        "/console/merge",
        {"survivor_id": survivor["id"], "duplicate_id": duplicate["id"], "confirm": "yes"},
    )
    assert refused.status_code == 403
