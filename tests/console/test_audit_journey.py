"""The staff journeys' changes, found again by an admin in the audit trail: a rep registers
a customer, a manager moves a member, an admin adds an event with seats, adjusts points and
merges a duplicate (console forms and API calls alike), then reads each in the trail with
its filters, in a real browser (screenshots under test-artifacts/audit/)."""

from __future__ import annotations

import re

from tests.browser import browser_page, shot, staff_sign_in
from tests.helpers.console import post_form, sign_in
from tests.helpers.members import merge

EVENT = {
    "kind": "event_seat",
    "name": "Autumn tea tasting",
    "points_cost": "300",
    "stock": "20",
    "per_member_limit": "2",
    "event_at": "2031-10-01T19:00",
    "active": "on",
}


def _key(html: str) -> str:
    return re.search(r'name="form_key" value="([^"]+)"', html).group(1)


async def test_an_admin_finds_the_days_changes_in_the_audit_trail(
    served, client, admin, make_client, team
):
    chen = team["members"]["Chen Jie"]["id"]
    rosa = str(team["staff"]["rosa"].id)

    ravi = await sign_in(make_client(), "ravi")
    form = await ravi.get("/console/register")
    registered = await post_form(
        ravi,
        "/console/register",
        {
            "kind": "person",
            "name": "Qian Yu",
            "email": "qian.yu@example.com",
            "form_key": _key(form.text),
        },
        "/console/register",
    )
    assert registered.status_code == 303, registered.text

    mia = await sign_in(make_client(), "mia")
    move = f"/console/members/{chen}/move"
    moved = await post_form(mia, move, {"rep_id": rosa, "reason": "closer to the shop"}, move)
    assert moved.headers["location"].endswith("saved=moved")

    ada = await sign_in(make_client(), "ada")
    catalog = await ada.get("/console/rewards")
    added = await post_form(
        ada, "/console/rewards", {**EVENT, "form_key": _key(catalog.text)}, "/console/rewards"
    )
    assert added.status_code == 303, added.text

    adjusted = await client.post(
        f"/api/v1/members/{chen}/points/adjustments",
        json={"points": 50, "reason": "a missed stamp card", "idempotency_key": "stamp"},
        headers=admin,
    )
    assert adjusted.status_code == 201, adjusted.text
    duplicate = (
        await client.post("/api/v1/members", json={"name": "Chen Jie (shop)"}, headers=admin)
    ).json()
    await merge(client, admin, chen, duplicate["id"])

    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await page.goto(f"{served}/console/audit")
        found = {}
        for what, actor in (
            ("assignments", "mia"),
            ("rewards", "ada"),
            ("points", ""),
            ("members.merge", ""),
            ("POST", "ravi"),
        ):
            await page.get_by_label("Who").fill(actor)
            await page.get_by_label("What", exact=True).select_option(what)
            await page.get_by_role("button", name="Show").click()
            await page.wait_for_url(f"**/console/audit?**what={what}**")
            entries = page.locator("li[data-entry]")
            found[what] = [await entries.nth(i).inner_text() for i in range(await entries.count())]
        await shot(page, "audit", "audit-journey")

        await page.get_by_role("link", name="中文").click()
        await page.wait_for_url("**lang=zh**")
        assert await page.locator("li[data-entry]").count() == len(found["POST"])
        await shot(page, "audit", "audit-journey-zh")

    assert any("closer to the shop" in e or "staff:mia" in e for e in found["assignments"])
    assert any("Reward added" in e and "Autumn tea tasting" in e for e in found["rewards"])
    assert any("Points adjusted" in e and "a missed stamp card" in e for e in found["points"])
    assert any("Members merged" in e for e in found["members.merge"])
    assert any("/console/register" in e and "staff:ravi" in e for e in found["POST"])
