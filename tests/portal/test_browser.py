"""Member journeys in a real browser (Debian's Chromium through Playwright) against the app
served on a local port, with real PostgreSQL, Redis and an SMTP server that catches the
codes. Screenshots of the main pages are saved under test-artifacts/portal/."""

from __future__ import annotations

import re

from tests.browser import browser_page, member_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.purchases import purchase_body


async def shot(page, name: str) -> None:
    await browser_shot(page, "portal", name)


async def test_sign_up_with_a_referral_link_then_earn_redeem_and_switch_language(
    served, client, admin, pos, mailbox
):
    referrer = (
        await client.post(
            "/api/v1/members", json={"name": "Zhou Min", "email": "zhou@example.com"}, headers=admin
        )
    ).json()
    link = (await client.get(f"/api/v1/members/{referrer['id']}/referrals", headers=admin)).json()
    await client.post(
        "/api/v1/rewards",
        json={"name": "Jasmine tea tin", "kind": "voucher", "points_cost": 150},
        headers=admin,
    )
    async with browser_page() as page:
        # The referral link opens the sign-up with the code filled in.
        await page.goto(link["link"].replace("http://127.0.0.1:8000", served))
        assert await page.get_by_label("Referral code (optional)").input_value() == link["code"]
        await shot(page, "sign-up")
        await page.get_by_label("Your name").fill("Li Na")
        await page.get_by_role("textbox", name="Email").fill("li@example.com")
        await page.get_by_role("checkbox", name="Email").check()
        await page.get_by_role("button", name="Continue").click()
        await page.get_by_label("Code", exact=True).wait_for()
        await page.get_by_label("Code", exact=True).fill(mailbox.last_code("li@example.com"))
        await page.get_by_role("button", name="Finish joining").click()
        await page.wait_for_url(f"{served}/portal")
        assert "Hello, Li Na" in await page.content()

        # A purchase posted by the shop shows up as pending points.
        me = (await client.get("/api/v1/members?email=li@example.com", headers=admin)).json()
        member_id = me["items"][0]["id"]
        await client.post(
            "/api/v1/purchases",
            json=purchase_body(member_id, ("TEA", 2, "120.00", "general")),
            headers=pos,
        )
        await client.post(
            f"/api/v1/members/{member_id}/points/adjustments",
            json={"points": 200, "reason": "welcome", "idempotency_key": "w1"},
            headers=admin,
        )
        await page.reload()
        assert await page.get_by_test_id("pending").inner_text() == "440"  # 240 + 200 referral
        assert await page.get_by_test_id("available").inner_text() == "200"
        await shot(page, "home")

        # Redeem with confirmation; the voucher code is shown and the balance drops.
        await page.get_by_role("link", name="Rewards").click()
        await shot(page, "rewards")
        await page.get_by_role("link", name="Redeem").click()
        await page.get_by_role("button", name="Redeem now").click()
        voucher = await page.locator("code.voucher").inner_text()
        assert voucher.startswith("V-")
        assert "Points left to spend: 50" in await page.content()
        await page.get_by_role("link", name="Points").click()
        assert await page.locator("tr[data-kind=redemption]").count() == 1
        await shot(page, "points")

        # The referral page shows the member's own code and a QR code.
        await page.get_by_role("link", name="Refer a friend").click()
        assert await page.locator(".qr svg").count() == 1
        await shot(page, "referrals")

        # Chinese, from the switch on every page, remembered on the next page.
        await page.get_by_role("link", name="中文").click()
        assert "推荐好友" in await page.content()
        await page.goto(f"{served}/portal")
        assert "您的积分" in await page.content()
        await shot(page, "home-zh")


async def test_sign_in_with_a_code_and_change_email_with_verification(
    served, client, admin, mailbox
):
    await client.post(
        "/api/v1/members", json={"name": "Chen Jie", "email": "chen@example.com"}, headers=admin
    )
    async with browser_page() as page:
        await member_sign_in(page, served, mailbox, "chen@example.com")
        await page.get_by_role("link", name="Profile").click()
        await page.get_by_label("Change my").select_option("email")
        await page.get_by_label("New phone or email").fill("chen.new@example.com")
        await page.get_by_role("button", name="Send a code to confirm").click()
        assert await page.get_by_test_id("email").inner_text() == "chen@example.com"
        await page.get_by_label("Code", exact=True).wait_for()
        await page.get_by_label("Code", exact=True).fill(mailbox.last_code("chen.new@example.com"))
        await page.get_by_role("button", name="Confirm").click()
        assert await page.get_by_test_id("email").inner_text() == "chen.new@example.com"
        await shot(page, "profile")
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(f"{served}/portal/sign-in")
        # The old address gets no more codes; the new one signs in.
        sent_before = len(mailbox.to("chen@example.com"))
        await page.get_by_label("Phone or email").first.fill("chen@example.com")
        await page.get_by_role("button", name="Send me a code").click()
        assert "a code is on its way" in await page.content()
        assert len(mailbox.to("chen@example.com")) == sent_before
        await member_sign_in(page, served, mailbox, "chen.new@example.com")


async def test_a_second_member_cannot_open_the_first_members_pages(served, client, admin, mailbox):
    first = (
        await client.post(
            "/api/v1/members", json={"name": "Chen Jie", "email": "chen@example.com"}, headers=admin
        )
    ).json()
    await client.post(
        "/api/v1/members", json={"name": "Li Na", "email": "li@example.com"}, headers=admin
    )
    await client.post(
        f"/api/v1/members/{first['id']}/points/adjustments",
        json={"points": 500, "reason": "gift", "idempotency_key": "g"},
        headers=admin,
    )
    reward = (
        await client.post(
            "/api/v1/rewards",
            json={"name": "Cup", "kind": "voucher", "points_cost": 100},
            headers=admin,
        )
    ).json()
    theirs = (
        await client.post(
            f"/api/v1/members/{first['id']}/redemptions",
            json={"reward_id": reward["id"], "idempotency_key": "k"},
            headers=admin,
        )
    ).json()
    async with browser_page() as page:
        await member_sign_in(page, served, mailbox, "li@example.com")
        response = await page.goto(f"{served}/portal/redemptions/{theirs['id']}")
        assert response.status == 404
        content = await page.content()
        assert theirs["codes"][0] not in content and "Chen" not in content
        home = await page.goto(f"{served}/portal")
        assert home.status == 200 and "Hello, Li Na" in await page.content()
        assert re.search(r"Chen", await page.content()) is None
