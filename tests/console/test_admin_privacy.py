"""The closure requests page: approve only after ticking the confirmation (else the error
beside the box, nothing erased), reject, a second click does nothing more, admins only."""

from __future__ import annotations

from types import SimpleNamespace

from loyalty.auth import member_principal
from loyalty.members import privacy
from tests.helpers.console import post_form, sign_in


async def _ask(client, admin, name="Wang Fang") -> dict:
    member = (
        await client.post(
            "/api/v1/members", json={"name": name, "email": "wf@example.com"}, headers=admin
        )
    ).json()
    await privacy.request_closure(member_principal(member["id"], member["number"]), "moving")
    return member


async def test_approve_needs_the_tick_box_then_erases_once(client, admin, make_client, make_staff):
    member = await _ask(client, admin)
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    page = await browser.get("/console/privacy")
    assert member["number"] in page.text and 'data-status="pending"' in page.text
    [request] = await _requests(client, admin, "pending")
    unticked = await post_form(browser, f"/console/privacy/{request.id}/approve", {})
    assert unticked.status_code == 422
    assert f'id="confirm-{request.id}-error"' in unticked.text
    still = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert still["name"] == "Wang Fang"
    approved = await post_form(
        browser, f"/console/privacy/{request.id}/approve", {"confirm": "yes"}
    )
    assert approved.status_code == 303
    erased = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert erased["name"].startswith("Erased member") and erased["email"] is None
    again = await post_form(browser, f"/console/privacy/{request.id}/approve", {"confirm": "yes"})
    assert again.status_code == 409 and "approved already" in again.text
    done = await browser.get("/console/privacy?status=approved")
    assert 'data-status="approved"' in done.text


async def test_reject_keeps_the_member(client, admin, make_client, make_staff):
    member = await _ask(client, admin)
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    [request] = await _requests(client, admin, "pending")
    assert (await browser.post(f"/console/privacy/{request.id}/reject")).status_code == 403
    rejected = await post_form(browser, f"/console/privacy/{request.id}/reject", {})
    assert rejected.status_code == 303
    kept = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert kept["name"] == "Wang Fang"
    assert (await _requests(client, admin, "rejected"))[0].id == request.id


async def test_only_admins_decide(make_client, make_staff, client, admin):
    await _ask(client, admin)
    await make_staff("sam", "service")
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "sam")
    assert (await browser.get("/console/privacy")).status_code == 403
    [request] = await _requests(client, admin, "pending")
    refused = await post_form(browser, f"/console/privacy/{request.id}/approve", {"confirm": "yes"})
    assert refused.status_code == 403
    unknown = await post_form(
        await sign_in(make_client("10.0.0.3"), "ada"),
        "/console/privacy/00000000-0000-0000-0000-000000000000/reject",
        {},
    )
    assert unknown.status_code == 404


async def _requests(client, admin, status: str) -> list:
    found = await client.get(f"/api/v1/closure-requests?status={status}", headers=admin)
    return [SimpleNamespace(**r) for r in found.json()]
