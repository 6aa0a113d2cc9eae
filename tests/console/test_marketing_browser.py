"""Marketing journeys in a real browser: a marketer builds a gold segment and watches the
count follow the form without a reload, then saves it (English and Chinese, and at phone
width); a marketing manager acts on the movement report and the rep finds the task on their
list. Screenshots go to test-artifacts/marketing/."""

from __future__ import annotations

from tests.browser import browser_page, staff_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.marketing import buy
from tests.helpers.staff import staff_past_their_first_month


async def shot(page, name: str) -> None:
    await browser_shot(page, "marketing", name)


async def enrol(client, admin, name: str, **fields) -> dict:
    response = await client.post("/api/v1/members", json={"name": name, **fields}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def live_count(page) -> int:
    return int(await page.locator("#live-count strong[data-count]").get_attribute("data-count"))


async def wait_for_count(page, expected: int) -> None:
    await page.wait_for_selector(f'#live-count strong[data-count="{expected}"]', timeout=10_000)


async def test_a_marketer_builds_a_gold_segment_with_a_live_count(
    served, client, admin, pos, make_staff
):
    await make_staff("mark", "marketing", "marketing")
    consent = {"channels": ["email"], "consents": [{"channel": "email", "granted": True}]}
    for i in range(2):
        gold = await enrol(
            client, admin, f"Gold {i}", email=f"g{i}@example.com", contact_preferences=consent
        )
        await buy(client, pos, gold["id"], "25000.00", days_ago=3)
    silver = await enrol(client, admin, "Silver One")
    await buy(client, pos, silver["id"], "6000.00", days_ago=3)
    await enrol(client, admin, "Normal One")

    async with browser_page() as page:
        await staff_sign_in(page, served, "mark")
        await page.get_by_role("link", name="Segments").first.click()
        await page.get_by_role("link", name="New segment").click()
        await wait_for_count(page, 4)
        loads = []
        page.on("load", lambda _: loads.append(1))

        await page.get_by_label("Gold").check()
        await wait_for_count(page, 2)  # without a reload
        breakdown = page.locator('#live-count [data-breakdown="channel"]')
        assert "Email" in await breakdown.inner_text()
        await page.get_by_label("Silver").check()
        await wait_for_count(page, 3)
        await page.get_by_label("Silver").uncheck()
        await page.get_by_label("Spend at least").fill("1000")
        await wait_for_count(page, 2)
        assert loads == [], "the count changed without reloading the page"
        await page.get_by_label("Segment name").fill("Gold customers")
        await shot(page, "segment-builder")

        await page.get_by_role("button", name="Save segment").click()
        await page.get_by_text("The segment is saved.").wait_for()
        assert await live_count(page) == 2
        html = await page.content()
        assert "Gold 0" not in html and "g0@example.com" not in html

        await page.get_by_role("link", name="All segments").click()
        row = page.locator("tr[data-segment]", has_text="Gold customers")
        assert "2" in await row.inner_text()
        await page.locator(".pyramid svg").wait_for()
        await shot(page, "segments")

        # Chinese, at phone width: the same builder, the count still live.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.get_by_role("link", name="中文").click()
        await page.get_by_role("link", name="新建分群").click()
        await wait_for_count(page, 4)
        await page.get_by_label("黄金").check()
        await wait_for_count(page, 2)
        assert "可触达渠道" in await page.content()
        await shot(page, "segment-builder-zh-phone")


async def test_the_movement_report_gives_reps_follow_up_tasks(
    served, client, admin, pos, make_staff
):
    await make_staff("mona", "manager", "marketing")
    ravi = await make_staff("ravi", "rep", "east")
    await staff_past_their_first_month()
    chen = await enrol(client, admin, "Chen Jie")
    moved = await client.put(
        f"/api/v1/members/{chen['id']}/assignment",
        json={"rep_id": str(ravi.id), "reason": "territory"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    await buy(client, pos, chen["id"], "6000.00", days_ago=40)  # silver, nothing this month

    async with browser_page() as page:
        await staff_sign_in(page, served, "mona")
        await page.goto(f"{served}/console/movement")
        await page.get_by_label("Their reps call within (days)").fill("3")
        await page.get_by_role("button", name="Give their reps a follow-up task").click()
        await page.get_by_text("1 follow-up tasks were given to reps").wait_for()
        await page.get_by_role("button", name="Make a segment of them").click()
        await page.get_by_text("1 were added now").wait_for()
        await shot(page, "movement-actions")
        await page.get_by_role("link", name="中文").click()
        assert "采取行动" in await page.content()
        await shot(page, "movement-actions-zh")

    async with browser_page() as page:
        await staff_sign_in(page, served, "ravi")
        await page.get_by_role("link", name="My tasks").click()
        task = page.locator("tr[data-task]", has_text="Chen Jie")
        assert await task.count() == 1
        assert "Valuable member declining: call" in await task.inner_text()
        await shot(page, "rep-task-from-movement")
        await page.get_by_role("link", name="中文").click()
        task = page.locator("tr[data-task]", has_text="Chen Jie")
        assert "价值会员下滑：请致电" in await task.inner_text()
        await shot(page, "rep-task-from-movement-zh")
