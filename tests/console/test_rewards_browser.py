"""Administration journeys in a real browser (Debian's Chromium through Playwright): an admin
adds an event with seats, a member redeems a seat in the portal and the admin fulfils it;
an admin approves a held referral. In English and Chinese; screenshots under
test-artifacts/rewards/."""

from __future__ import annotations

from tests.browser import browser_page, staff_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.rewards import give_points


async def shot(page, name: str) -> None:
    await browser_shot(page, "rewards", name)


async def portal_sign_in(page, base: str, mailbox, email: str) -> None:
    await page.goto(f"{base}/portal/sign-in")
    await page.get_by_label("Phone or email").first.fill(email)
    await page.get_by_role("button", name="Send me a code").click()
    await page.get_by_label("Code", exact=True).wait_for()
    await page.get_by_label("Code", exact=True).fill(mailbox.last_code(email))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/portal")


async def test_an_event_seat_is_added_redeemed_in_the_portal_and_fulfilled(
    served, client, admin, make_staff, mailbox
):
    await make_staff("ada", "admin")
    member = (
        await client.post(
            "/api/v1/members", json={"name": "Li Na", "email": "li@example.com"}, headers=admin
        )
    ).json()
    await give_points(client, admin, member["id"], 1000)

    async with browser_page() as page:
        # The admin adds the event with 12 seats.
        await staff_sign_in(page, served, "ada")
        await page.get_by_role("link", name="Administration").click()
        await page.get_by_role("link", name="Rewards", exact=True).click()
        await page.get_by_label("Kind").select_option("event_seat")
        await page.get_by_label("Reward name", exact=True).fill("Autumn tea tasting")
        await page.get_by_label("Points", exact=True).fill("300")
        await page.get_by_label("Stock (blank: unlimited)").fill("12")
        await page.get_by_label("Event date and time (event seats)").fill("2031-10-01T19:00")
        await page.get_by_label("Description").fill("An evening with the growers")
        await shot(page, "add-event")
        await page.get_by_role("button", name="Add the reward").click()
        await page.get_by_text("The reward is added to the catalog.").wait_for()
        assert await page.get_by_test_id("stock").inner_text() == "12"
        await shot(page, "event-added")

        # The member redeems a seat in the portal and gets a ticket.
        member_page = await page.context.browser.new_page()  # its own cookies
        await portal_sign_in(member_page, served, mailbox, "li@example.com")
        await member_page.get_by_role("link", name="Rewards").click()
        await member_page.get_by_role("link", name="Redeem").click()
        await member_page.get_by_role("button", name="Redeem now").click()
        ticket = await member_page.locator("code.voucher").inner_text()
        assert ticket.startswith("S-")
        await browser_shot(member_page, "rewards", "portal-seat-redeemed")
        await member_page.close()

        # The admin finds it in the redemptions and fulfils it.
        await page.get_by_role("link", name="Redemptions", exact=True).click()
        row = page.locator("tr[data-redemption]", has_text="Li Na")
        assert await row.count() == 1 and ticket in await row.inner_text()
        await shot(page, "redemptions-open")
        await row.get_by_role("button", name="Fulfil").click()
        await page.get_by_text("The redemption is marked fulfilled.").wait_for()
        assert await page.locator("tr[data-redemption]").count() == 0
        await page.get_by_label("Status").select_option("fulfilled")
        await page.get_by_role("button", name="Show").click()
        done = page.locator("tr[data-redemption]", has_text="Li Na")
        assert await done.locator('[data-status="fulfilled"]').count() == 1
        await shot(page, "redemptions-fulfilled")

        # The seat count went down by one; the same pages in Chinese.
        await page.get_by_role("link", name="中文").click()
        await page.get_by_role("link", name="礼品兑换", exact=True).click()
        assert "礼品目录" in await page.content()
        assert "11" in await page.locator("tr[data-reward]").inner_text()
        await shot(page, "rewards-zh")
        await page.get_by_role("link", name="兑换单", exact=True).click()
        assert "兑换单" in await page.content()
        await shot(page, "redemptions-zh")

        # The member's redemptions from the member page.
        await page.goto(f"{served}/console/members/{member['id']}")
        await page.get_by_role("link", name="兑换单", exact=True).last.click()
        assert "Li Na 的兑换单" in await page.content()
        assert await page.locator('li[data-status="fulfilled"]').count() == 1
        await shot(page, "member-redemptions-zh")

        # At a phone's width, the member's redemptions and points fit without sideways
        # scrolling (tables scroll inside their own box).
        await page.set_viewport_size({"width": 390, "height": 844})
        for url, name in (
            (f"/console/members/{member['id']}/redemptions", "member-redemptions-phone-zh"),
            (f"/console/members/{member['id']}/points", "member-points-phone-zh"),
        ):
            await page.goto(f"{served}{url}")
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390, url
            await shot(page, name)
        assert "积分明细" in await page.content()


async def test_an_admin_approves_a_held_referral(served, client, admin, make_staff):
    await make_staff("ada", "admin")
    home = {"line1": "12 Garden Road", "city": "Shanghai", "postcode": "200000"}
    referrer = (
        await client.post(
            "/api/v1/members",
            json={"name": "Zhou Min", "address": home},
            headers=admin,
        )
    ).json()
    code = (await client.get(f"/api/v1/members/{referrer['id']}/referrals", headers=admin)).json()
    # The "friend" signs up from the same address: held for review.
    await client.post(
        "/api/v1/members",
        json={"name": "Zhou Lei", "address": home, "referral_code": code["code"]},
        headers=admin,
    )

    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await page.get_by_role("link", name="Administration").click()
        await page.get_by_role("link", name="Referrals", exact=True).click()
        held = page.locator("li[data-referral]", has_text="Zhou Lei")
        assert await held.count() == 1
        assert "shares an address with the referrer" in await held.inner_text()
        await shot(page, "referral-held")

        # Approving needs a reason: the browser asks for it before sending.
        await held.get_by_role("button", name="Approve").click()
        assert await page.locator("li[data-referral]").count() == 1
        await held.get_by_label("Reason for the decision").fill("Different flats, checked")
        await held.get_by_role("button", name="Approve").click()
        await page.get_by_text("The referral is approved.").wait_for()
        assert await page.locator("li[data-referral]").count() == 0
        await shot(page, "referral-approved")

        await page.get_by_label("Status").select_option("pending")
        await page.get_by_role("button", name="Show").click()
        approved = page.locator("li[data-referral]", has_text="Zhou Lei")
        assert "Different flats, checked" in await approved.inner_text()

        # In Chinese: the queue and the programme's figures with their chart.
        await page.get_by_role("link", name="中文").click()
        assert "待审核的推荐" in await page.content()
        await shot(page, "referrals-zh")
        await page.get_by_role("link", name="推荐数据").click()
        assert await page.locator(".team-row[data-month]").count() == 1
        await shot(page, "referral-figures-zh")
