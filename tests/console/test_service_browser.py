"""Service desk and manager journeys in a real browser, in English and Chinese: customer
service answers a portal request within its clock and the member reads the reply; a manager
moves a member to another rep. Screenshots under test-artifacts/service/."""

from __future__ import annotations

from tests.browser import browser_page, shot, staff_sign_in
from tests.helpers.portal import sign_in as member_sign_in
from tests.helpers.portal import signed_in_browser


async def test_service_answers_a_portal_request_within_its_clock(
    served, client, make_client, make_staff, team, mailbox
):
    await make_staff("sam", "service")
    member = await member_sign_in(client, mailbox, "jie@example.com")
    for subject in ("Change my address", "Birthday gift"):
        sent = await client.post(
            "/api/v1/me/requests",
            json={"kind": "request", "subject": subject, "body": "Please help."},
            headers=member,
        )
        assert sent.status_code == 201, sent.text

    async with browser_page() as page:
        await staff_sign_in(page, served, "sam")
        await page.get_by_role("link", name="Service desk", exact=True).first.click()
        await page.get_by_role("link", name="Requests", exact=True).click()
        row = page.locator("tr[data-request]", has_text="Change my address")
        assert await row.get_attribute("data-status") == "open"
        assert "within 48 h" in await row.inner_text()
        assert await row.get_attribute("class") != "overdue"  # just arrived: in its clock
        await shot(page, "service", "requests")

        await row.get_by_role("link", name="Change my address").click()
        await page.get_by_label("Channel").select_option("portal")
        await page.get_by_label("Message").fill("Your new address is saved.")
        await page.get_by_role("button", name="Send the reply").click()
        await page.get_by_text("the request is answered").wait_for()
        assert "in time" in await page.get_by_test_id("status").inner_text()
        await shot(page, "service", "request-answered")

        # The same in Chinese, on a phone.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{served}/console/service/requests?lang=zh")
        row = page.locator("tr[data-request]", has_text="Birthday gift")
        assert "48 小时内" in await row.inner_text()
        await shot(page, "service", "requests-zh")
        await row.get_by_role("link", name="Birthday gift").click()
        await page.get_by_label("内容").fill("礼物已寄出。")
        await page.get_by_role("button", name="发送回复").click()
        await page.get_by_text("该请求已答复").wait_for()
        await shot(page, "service", "request-answered-zh")

        await page.goto(f"{served}/console/service?q=Chen")
        assert await page.locator("tr[data-member]", has_text="Chen Jie").count() == 1
        await shot(page, "service", "desk-zh")

    portal = await signed_in_browser(make_client, mailbox, "jie@example.com")
    inbox = (await portal.get("/portal/messages")).text
    assert "Your new address is saved." in inbox and "礼物已寄出。" in inbox


async def test_a_manager_moves_a_member(served, team):
    chen = team["members"]["Chen Jie"]["id"]
    async with browser_page() as page:
        await staff_sign_in(page, served, "mia")
        await page.goto(f"{served}/console/members/{chen}")
        await page.get_by_role("link", name="Move to another rep").click()
        await page.get_by_label("New rep").select_option(label="rosa (rosa, east) · regular")
        await page.get_by_role("button", name="Move the member").click()
        await page.get_by_label("Reason").wait_for()
        assert await page.locator("#reason-error").count() == 1  # the reason is required
        await shot(page, "service", "move-error")
        await page.get_by_label("Reason").fill("Lives next to Rosa's shop")
        await page.get_by_role("button", name="Move the member").click()
        await page.get_by_text("The member has a new rep.").wait_for()
        assert await page.locator('tr[data-period="rosa"]').count() == 1
        await shot(page, "service", "move-done")

        lin = team["members"]["Lin Fang"]["id"]
        await page.goto(f"{served}/console/members/{lin}/move?lang=zh")
        await page.get_by_label("新代表").select_option(label="ravi (ravi, east) · 中级")
        await page.get_by_label("原因").fill("轮换")
        await page.get_by_role("button", name="转移会员").click()
        await page.get_by_text("该会员已有新的销售代表").wait_for()
        await shot(page, "service", "move-done-zh")

        await page.goto(f"{served}/console/team/reps?lang=en")
        rosa = page.locator('tr[data-rep="rosa"]')
        await rosa.get_by_label("Level of rosa").select_option("senior")
        await rosa.get_by_role("button", name="Save").click()
        await page.get_by_text("The rep's level is saved.").wait_for()
        assert await page.locator('tr[data-rep="rosa"][data-level="senior"]').count() == 1
        await shot(page, "service", "reps-and-sponsors")

        await page.goto(f"{served}/console/members/{chen}/views")
        assert await page.locator('tr[data-viewer="mia"]').count() >= 1
        await shot(page, "service", "archive-views")
