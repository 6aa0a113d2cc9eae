"""Staff journeys in a real browser (Debian's Chromium through Playwright) against the app
served on a local port: a rep's morning, and a manager approving a swap. Screenshots of the
main pages are saved under test-artifacts/console/."""

from __future__ import annotations

from tests.browser import browser_page, staff_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.purchases import purchase_body
from tests.helpers.staff import notice_for, staff_past_their_first_month


async def shot(page, name: str) -> None:
    await browser_shot(page, "console", name)


async def member_of(client, admin, name: str, rep_id) -> dict:
    member = (await client.post("/api/v1/members", json={"name": name}, headers=admin)).json()
    await staff_past_their_first_month()  # a pool member goes by the pool's rules
    moved = await client.put(
        f"/api/v1/members/{member['id']}/assignment",
        json={"rep_id": str(rep_id), "reason": "territory"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    return member


async def test_a_reps_morning(served, client, admin, pos, make_staff):
    from loyalty.reps.follow_ups import plan_follow_ups

    ravi = await make_staff("ravi", "rep", "east")
    chen = await member_of(client, admin, "Chen Jie", ravi.id)
    await member_of(client, admin, "Lin Fang", ravi.id)
    await client.post("/api/v1/purchases", json=purchase_body(chen["id"], days_ago=8), headers=pos)
    await plan_follow_ups()

    async with browser_page() as page:
        await staff_sign_in(page, served, "ravi")
        assert "Follow-ups due today" in await page.content()
        await shot(page, "rep-home")

        await page.get_by_role("link", name="My tasks").click()
        task = page.locator("tr[data-task]", has_text="Chen Jie")
        assert await task.count() == 1
        await shot(page, "rep-tasks")

        await task.get_by_role("link", name="Chen Jie").click()
        await page.get_by_role("heading", name="Log a contact").wait_for()
        assert await page.locator("[data-follow-up]").count() == 1
        assert await page.get_by_test_id("available").count() == 1
        await shot(page, "member-brief")

        await page.get_by_label("What", exact=True).select_option("visit")
        await page.get_by_label("How", exact=True).select_option("visit")
        await page.get_by_label("Subject").first.fill("Tea tasting at the store")
        await page.get_by_label("Outcome").fill("Wants the autumn oolong")
        await page.get_by_label("Next step").fill("Call when it arrives")
        await page.get_by_role("button", name="Log contact").click()
        await page.get_by_text("The contact is logged.").wait_for()
        assert await page.locator("[data-follow-up]").count() == 0
        assert "Tea tasting at the store" in await page.locator("#contacts").inner_text()
        await shot(page, "member-after-visit")

        await page.get_by_role("link", name="My tasks").click()
        assert await page.locator("tr[data-task]", has_text="Chen Jie").count() == 0
        assert "Nothing due" in await page.content()

        await page.get_by_role("link", name="My members").click()
        assert await page.locator("tr[data-member]").count() == 2
        await shot(page, "rep-members")

        # The same console in Chinese.
        await page.get_by_role("link", name="中文").click()
        assert "我的会员" in await page.content()
        await shot(page, "rep-members-zh")


async def test_a_manager_approves_a_swap(served, client, admin, make_staff, make_client):
    await make_staff("mia", "manager", "east")
    ravi = await make_staff("ravi", "rep", "east")
    rosa = await make_staff("rosa", "rep", "east")
    chen = await member_of(client, admin, "Chen Jie", ravi.id)
    lin = await member_of(client, admin, "Lin Fang", rosa.id)

    async with browser_page() as page:
        # The rep asks from the member page.
        await staff_sign_in(page, served, "ravi")
        await page.goto(f"{served}/console/members/{chen['id']}")
        await page.get_by_label("The other member's number").fill(lin["number"])
        await page.get_by_label("Reason", exact=True).fill("Lin Fang lives next to my store")
        await page.get_by_role("button", name="Ask for the swap").click()
        await page.get_by_text("Your swap request is with your manager.").wait_for()
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(f"{served}/console/login")

        # The manager approves it.
        await staff_sign_in(page, served, "mia")
        await page.get_by_role("link", name="Team", exact=True).click()
        await page.get_by_role("link", name="Swaps").click()
        request = page.locator("li[data-swap]", has_text="Lin Fang lives next to my store")
        assert await request.count() == 1
        await shot(page, "manager-swaps")
        await request.get_by_role("textbox", name="Note").fill("Fine by me")
        await request.get_by_role("button", name="Approve").click()
        await page.get_by_text("The swap is approved").wait_for()
        assert await page.locator("li[data-status=approved]").count() == 1

        await page.get_by_role("link", name="Team activity").click()
        assert await page.locator(".team-row[data-rep=ravi]").count() == 1
        await shot(page, "manager-team")

    rows = await client.get(f"/api/v1/members/{lin['id']}/assignments", headers=admin)
    assert rows.json()[0]["rep"] == "ravi" and rows.json()[0]["kind"] == "swap"


async def test_a_rep_reads_notices_on_a_phone(served, client, admin, make_staff):
    ravi = await make_staff("ravi", "rep", "east")
    chen = await member_of(client, admin, "Chen Jie", ravi.id)
    await notice_for(
        ravi.id,
        "Chen Jie returns to the pool on 2026-12-15",
        hours_ago=26,
        member_id=chen["id"],
        body="No purchase or referral since the assignment began.",
    )
    await notice_for(ravi.id, "Follow-up overdue: call Chen Jie", hours_ago=2)

    async with browser_page() as page:
        await page.set_viewport_size({"width": 390, "height": 844})
        await staff_sign_in(page, served, "ravi")
        notices_link = page.locator('nav.tabs a[href="/console/notices"]')
        assert (await notices_link.inner_text()).split() == ["Notices", "2"]
        await notices_link.click()
        await page.get_by_role("heading", name="Notices").wait_for()
        listed = page.locator("li[data-notice]")
        assert "Follow-up overdue" in await listed.first.inner_text()  # newest first
        assert await page.locator("li[data-unread]").count() == 2
        # Nothing is wider than the phone.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await shot(page, "rep-notices")

        older = page.locator("li[data-notice]", has_text="returns to the pool")
        await older.get_by_role("button", name="Mark as read").click()
        await page.get_by_text("The notice is marked as read.").wait_for()
        assert (await notices_link.inner_text()).split() == ["Notices", "1"]
        assert await page.locator("li[data-unread]").count() == 1

        await page.get_by_role("link", name="中文").click()
        assert "全部标为已读" in await page.content()
        assert (await notices_link.inner_text()).split() == ["通知", "1"]
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await shot(page, "rep-notices-zh")
