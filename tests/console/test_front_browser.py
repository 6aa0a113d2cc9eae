"""The rep's front line in a real browser on a 390 x 844 phone, in English and Chinese: a rep
registers a customer and reads the member's first screen (everything before a visit above
the fold, nothing wider than the phone); another rep typing the same customer is told, while
typing, who registered it and when, and asks the manager for it. Screenshots go to
test-artifacts/front/."""

from __future__ import annotations

from tests.browser import ARTIFACTS, browser_page, staff_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.purchases import purchase_body

PHONE = {"width": 390, "height": 844}
# What a rep needs before a visit, each of which must be on the first screen.
FIRST_SCREEN = {
    "tier": ".first-screen h1 .tier-badge",
    "service level": "[data-glance=service]",
    "available points": "[data-testid=available]",
    "keeping and reaching a tier": "[data-glance=tiers]",
    "last contact": "[data-glance=last-contact]",
    "open follow-ups": "[data-glance=follow-ups]",
    "log contact": "[data-testid=log-contact-button]",
}


async def shot(page, name: str) -> None:
    await browser_shot(page, "front", name)
    # And the phone's screen as the rep sees it, without scrolling.
    await page.screenshot(path=str(ARTIFACTS / "front" / f"{name}-screen.png"))


async def assert_first_screen(page) -> None:
    await page.evaluate("window.scrollTo(0, 0)")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for what, selector in FIRST_SCREEN.items():
        box = await page.locator(selector).first.bounding_box()
        assert box is not None, f"{what} is shown"
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], (
            f"{what} is above the fold: {box}"
        )
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], what


async def test_a_rep_registers_a_customer_and_another_is_told_who_owns_it(
    served, client, pos, admin, make_staff
):
    from loyalty.reps.follow_ups import plan_follow_ups

    await make_staff("mia", "manager", "east")
    await make_staff("ravi", "rep", "east")
    await make_staff("rosa", "rep", "east")

    async with browser_page() as page:
        await page.set_viewport_size(PHONE)
        await staff_sign_in(page, served, "ravi")
        await page.get_by_role("link", name="Register a customer").click()
        await page.get_by_role("heading", name="Register a customer").wait_for()
        await page.locator("#name").fill("Wang Fang")
        await page.locator("#phone").fill("138 0013 8000")
        await page.locator("#email").fill("wang.fang@example.com")
        await page.locator("#city").fill("Hangzhou")
        await page.wait_for_timeout(600)  # the live check finds nobody: no panel
        assert await page.locator("[data-existing]").count() == 0
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(page, "register")
        await page.get_by_role("button", name="Register", exact=True).click()
        await page.get_by_text("The customer is registered.").wait_for()
        member_url = page.url.split("?")[0]

        # The first visit, logged from the button on the first screen.
        await page.get_by_test_id("log-contact-button").click()
        await page.get_by_label("Subject").first.fill("Welcome visit at the store")
        await page.get_by_role("button", name="Log contact").click()
        await page.get_by_text("The contact is logged.").wait_for()
        member_id = member_url.rsplit("/", 1)[-1]
        await client.post(
            "/api/v1/purchases",
            json=purchase_body(member_id, ("TEA-1", 1, "6000.00", "tea"), days_ago=8),
            headers=pos,
        )
        await plan_follow_ups()

        await page.goto(member_url)
        await assert_first_screen(page)
        glance = await page.locator(".first-screen").inner_text()
        assert "Welcome visit at the store" in glance and "To reach" in glance
        await shot(page, "member-first-screen")

        await page.get_by_role("link", name="中文").click()
        await page.get_by_role("link", name="登记新客户").wait_for()
        await assert_first_screen(page)
        assert "最近联系" in await page.locator(".first-screen").inner_text()
        await shot(page, "member-first-screen-zh")
        await page.get_by_role("link", name="English").click()
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(f"{served}/console/login")

        # Another rep meets the same customer: told while typing, no second record.
        await staff_sign_in(page, served, "rosa")
        await page.get_by_role("link", name="Register a customer").click()
        await page.locator("#name").fill("Fang Wang")
        await page.locator("#phone").fill("+86 138-0013-8000")
        panel = page.locator("[data-existing=phone]")
        await panel.wait_for()
        told = await panel.inner_text()
        assert "This phone is registered already." in told and "Registered by ravi on" in told
        assert "Wang Fang" not in told  # the archive is not rosa's to see
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(page, "register-existing")
        await panel.get_by_label("What happened (for your manager)").fill("She came to my stand")
        await panel.get_by_role("button", name="Ask the manager for this customer").click()
        await page.get_by_text("Your managers are told that you ask for this customer.").wait_for()

        # In Chinese, by the email this time.
        await page.get_by_role("link", name="中文").click()
        await page.locator("#email").fill("WANG.FANG@example.com")
        panel = page.locator("[data-existing=email]")
        await panel.wait_for()
        told = await panel.inner_text()
        assert "这个电子邮箱已经登记过。" in told and "由 ravi 于" in told
        await shot(page, "register-existing-zh")

    found = await client.get("/api/v1/members", params={"phone": "+8613800138000"}, headers=admin)
    assert len(found.json()["items"]) == 1
