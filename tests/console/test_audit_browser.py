"""An admin finds a colleague's configuration change in the audit trail with a filter, in a
real browser, in English and Chinese (screenshots under test-artifacts/console/)."""

from __future__ import annotations

from tests.browser import browser_page, staff_sign_in
from tests.browser import shot as browser_shot


async def test_an_admin_finds_a_change_in_the_audit_trail(served, client, bearer, make_staff):
    otto = await bearer("admin", username="otto")
    rules = (await client.get("/api/v1/points/rules", headers=otto)).json()
    body = {k: v for k, v in rules.items() if k not in ("updated_at", "updated_by")}
    changed = await client.put(
        "/api/v1/points/rules", json={**body, "pending_days": 7}, headers=otto
    )
    assert changed.status_code == 200, changed.text
    await client.post("/api/v1/members", json={"name": "Noise"}, headers=otto)
    await make_staff("ada", "admin")

    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await page.goto(f"{served}/console/audit")
        assert await page.locator("li[data-entry]").count() >= 3  # the rules, a member, ada
        await page.get_by_label("Who").fill("otto")
        await page.get_by_label("What", exact=True).select_option("earning_rules")
        await page.get_by_role("button", name="Show").click()
        await page.wait_for_url("**/console/audit?actor=otto**")
        entries = page.locator("li[data-entry]")
        assert await entries.count() == 1
        entry = entries.first
        assert "Earning rules changed" in await entry.inner_text()
        assert "staff:otto" in await entry.inner_text()
        row = entry.locator("tr", has_text="pending_days")
        assert [c.strip() for c in await row.locator("td").all_inner_texts()] == ["14", "7"]
        await browser_shot(page, "console", "audit-trail")

        await page.get_by_role("link", name="中文").click()
        await page.get_by_role("heading", name="审计记录").first.wait_for()
        # The switch keeps the filter.
        assert await page.get_by_label("操作人").input_value() == "otto"
        assert await page.locator("li[data-entry]").count() == 1
        assert "积分规则已更改" in await page.locator("li[data-entry]").first.inner_text()
        await browser_shot(page, "console", "audit-trail-zh")

        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{served}/console/audit?actor=otto&what=earning_rules&lang=en")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        await browser_shot(page, "console", "audit-trail-phone")
